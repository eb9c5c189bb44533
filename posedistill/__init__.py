"""PoseDistill: self-supervised adaptation of 3D human pose estimation by non-local latent
relation distillation, with a frozen decoder from an adversarial pose-prior auto-encoder."""
__version__ = "0.1.0"
