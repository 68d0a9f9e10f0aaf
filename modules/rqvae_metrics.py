"""Code statistics of a tokenizer, as pure functions. codes: [I, Q] int64 in [0, K).

Meant for eval time (they sync with the host through torch.unique); `codes_summary` gives logging-ready
floats whose keys go under the `rqvae/` namespace.
"""

import torch
from einops import rearrange

from modules.semantic_ids import group_tuples


def p_unique_ids(codes: torch.Tensor) -> torch.Tensor:
    """Number of distinct Q-tuples / number of rows. -> [] float."""
    return torch.tensor(group_tuples(codes).counts.numel() / max(codes.shape[0], 1))


def code_counts(codes: torch.Tensor, codebook_size: int) -> torch.Tensor:
    """How often each code is used at each level. -> [Q, K] int64."""
    n_levels = codes.shape[1]
    offsets = torch.arange(n_levels, device=codes.device) * codebook_size  # [Q]
    flat = torch.bincount((codes + offsets).flatten(), minlength=n_levels * codebook_size)
    return rearrange(flat, "(q k) -> q k", q=n_levels)


def code_usage(codes: torch.Tensor, codebook_size: int) -> torch.Tensor:
    """Fraction of the K codes used at least once, per level. -> [Q] float."""
    return (code_counts(codes, codebook_size) > 0).float().mean(-1)


def code_perplexity(codes: torch.Tensor, codebook_size: int) -> torch.Tensor:
    """exp(entropy) of each level's code distribution, in [1, K]. -> [Q] float."""
    p = code_counts(codes, codebook_size).float()
    p = p / p.sum(-1, keepdim=True).clamp_min(1)
    entropy = -(p * p.clamp_min(1e-30).log()).sum(-1)
    return entropy.exp()


def id_entropy(codes: torch.Tensor) -> torch.Tensor:
    """Natural-log entropy of the distribution of whole Q-tuples. -> [] float."""
    p = group_tuples(codes).counts.float() / codes.shape[0]
    return -(p * p.log()).sum()


def collision_rate(codes: torch.Tensor) -> torch.Tensor:
    """Fraction of rows whose Q-tuple is shared with at least one other row. -> [] float."""
    groups = group_tuples(codes)
    return (groups.counts[groups.inverse] > 1).float().mean()


def max_collision_group(codes: torch.Tensor) -> torch.Tensor:
    """Size of the largest group of rows sharing a Q-tuple (a count; 1 = no collisions). -> [] int64."""
    return group_tuples(codes).counts.max()


def mean_latent_norm(latent: torch.Tensor) -> torch.Tensor:
    """Mean L2 norm of latent rows [B, Z]. -> []."""
    return latent.norm(dim=-1).mean()


def residual_norms(residuals: torch.Tensor) -> torch.Tensor:
    """Mean L2 norm of each level's input residual. residuals: [B, Q, Z] -> [Q]."""
    return residuals.norm(dim=-1).mean(0)


def codes_summary(codes: torch.Tensor, codebook_size: int) -> dict[str, float]:
    """All code statistics as floats: p_unique_ids, collision_rate, max_collision_group, id_entropy,
    usage_level{q}, perplexity_level{q}."""
    summary = {
        "p_unique_ids": float(p_unique_ids(codes)),
        "collision_rate": float(collision_rate(codes)),
        "max_collision_group": float(max_collision_group(codes)),
        "id_entropy": float(id_entropy(codes)),
    }
    usage = code_usage(codes, codebook_size).tolist()
    perplexity = code_perplexity(codes, codebook_size).tolist()
    for q in range(codes.shape[1]):
        summary[f"usage_level{q}"] = usage[q]
        summary[f"perplexity_level{q}"] = perplexity[q]
    return summary
