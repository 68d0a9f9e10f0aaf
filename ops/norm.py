"""RMSNorm over the last dim: the plain reference (F.rms_norm) and a CPU fast path with its own backward.

Bound forward and backward by tests/ops/test_norm.py, and through modules.transformer.RMSNorm by
tests/modules/test_transformer.py.
"""

import torch
import torch.nn.functional as F


def rms_norm_reference(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    """x [*, D], weight [D] -> [*, D]: x · rsqrt(mean(x²) + eps) · w (autograd through F.rms_norm)."""
    return F.rms_norm(x, (x.shape[-1],), weight, eps)


class _RMSNormFunction(torch.autograd.Function):
    """y = x · rsqrt(mean(x²) + eps) · w over the last dim, with a hand-written backward (fewer passes over
    memory than autograd through F.rms_norm, which has no fused CPU kernel)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
        mean_square = torch.linalg.vector_norm(x, dim=-1, keepdim=True).square_().div_(x.shape[-1])
        inv_rms = mean_square.add_(eps).rsqrt_()  # [*, 1]
        x_hat = x * inv_rms
        ctx.save_for_backward(x_hat, inv_rms, weight)
        return x_hat * weight

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        x_hat, inv_rms, weight = ctx.saved_tensors
        grad_weight = (grad * x_hat).flatten(0, -2).sum(0)
        grad_x_hat = grad * weight
        mean_dot = torch.linalg.vecdot(grad_x_hat, x_hat).unsqueeze(-1).div_(x_hat.shape[-1])  # [*, 1]
        return grad_x_hat.sub_(x_hat * mean_dot).mul_(inv_rms), grad_weight, None


def rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    """`rms_norm_reference` with the fast backward of _RMSNormFunction; x and weight of one floating dtype."""
    return _RMSNormFunction.apply(x, weight, eps)
