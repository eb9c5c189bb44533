"""Losses of the self-adaptation stage: contrastive (InfoNCE), relation energies, adversarial."""
