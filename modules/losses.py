"""RQ-VAE losses as pure functions (per item; the caller reduces over the batch)."""

import torch

RECON_REDUCTIONS = ("sum", "mean")


def vq_loss(residual: torch.Tensor, codeword: torch.Tensor, beta: float) -> torch.Tensor:
    """VQ-VAE loss ‖sg(r) − e‖² + β‖r − sg(e)‖², summed over dims.

    The first (codebook) term trains only the codebook, the second (commitment) term only the encoder.
    Both terms have the same value ‖r − e‖², so the total is (1 + β)‖r − e‖².
    residual r, codeword e: [B, Z] -> [B].
    """
    codebook_term = (residual.detach() - codeword).pow(2).sum(-1)  # [B]
    commit_term = (residual - codeword.detach()).pow(2).sum(-1)  # [B]
    return codebook_term + beta * commit_term


def reconstruction_loss(recon: torch.Tensor, target: torch.Tensor, reduction: str = "sum") -> torch.Tensor:
    """Squared error per item, summed ("sum", as the reference) or averaged ("mean") over features.

    recon, target: [B, E] -> [B].
    """
    sq_err = (recon - target).pow(2)  # [B, E]
    if reduction == "sum":
        return sq_err.sum(-1)
    if reduction == "mean":
        return sq_err.mean(-1)
    raise ValueError(f"unknown reconstruction reduction {reduction!r}; expected one of {RECON_REDUCTIONS}")
