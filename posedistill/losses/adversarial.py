"""Feature-adversarial alignment (DANN, Ganin & Lempitsky 2015): gradient reversal + domain loss."""
from __future__ import annotations

import torch
import torch.nn.functional as F


class _GradReverse(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, scale: float) -> torch.Tensor:
        ctx.scale = scale
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        return -ctx.scale * grad, None


def grad_reverse(x: torch.Tensor, scale: float = 1.0) -> torch.Tensor:
    """Identity forward; multiplies the gradient by −scale backward."""
    return _GradReverse.apply(x, scale)


def domain_loss(source_logits: torch.Tensor, target_logits: torch.Tensor) -> torch.Tensor:
    """Binary cross-entropy of the domain classifier: source → 1, target → 0 (mean of the two)."""
    return 0.5 * (
        F.binary_cross_entropy_with_logits(source_logits, torch.ones_like(source_logits))
        + F.binary_cross_entropy_with_logits(target_logits, torch.zeros_like(target_logits))
    )
