"""Semantic IDs: per-item code tuples, the collision code that makes them unique, and tuple -> item lookup.

Shapes: codes [I, Q] (RQ-VAE / RQ-KMeans output) -> codes [I, C] with C = Q + 1. The stage-1 artifact that
stores them is data/artifact.py.
"""

from typing import NamedTuple

import torch


class TupleGroups(NamedTuple):
    inverse: torch.Tensor  # [I] int64 group index of each item's tuple (groups sorted lexicographically)
    counts: torch.Tensor  # [G] int64 items per group
    tuples: torch.Tensor  # [G, Q] the distinct tuples


def group_tuples(codes: torch.Tensor) -> TupleGroups:
    """Group identical rows of codes [I, Q]."""
    tuples, inverse, counts = torch.unique(codes, dim=0, return_inverse=True, return_counts=True)
    return TupleGroups(inverse=inverse, counts=counts, tuples=tuples)


def collision_rank(codes: torch.Tensor) -> torch.Tensor:
    """Rank of each item among the items with the same tuple, in item-index order (0, 1, 2, ...).

    Sort-based: a stable sort by group keeps item order inside each group. codes [I, Q] -> [I] int64.
    """
    groups = group_tuples(codes)
    order = torch.argsort(groups.inverse, stable=True)  # [I] items, grouped, index order within a group
    group_start = torch.cumsum(groups.counts, 0) - groups.counts  # [G] first sorted position of each group
    sorted_rank = torch.arange(codes.shape[0], device=codes.device) - group_start[groups.inverse[order]]
    return torch.empty_like(sorted_rank).scatter_(0, order, sorted_rank)


def append_collision_code(codes: torch.Tensor, codebook_size: int) -> torch.Tensor:
    """codes [I, Q] int64 -> [I, C = Q + 1]: last column = `collision_rank`, so every C-tuple is unique.

    Raises ValueError if a tuple is shared by more than K = codebook_size items (the rank must be < K).
    """
    if codes.ndim != 2:
        raise ValueError(f"codes must be [I, Q], got shape {tuple(codes.shape)}")
    if codes.shape[0] == 0:
        return codes.new_zeros(0, codes.shape[1] + 1)
    groups = group_tuples(codes)
    largest = int(groups.counts.argmax())
    if int(groups.counts[largest]) > codebook_size:
        raise ValueError(
            f"{int(groups.counts[largest])} items share the code tuple {groups.tuples[largest].tolist()}, "
            f"more than the codebook size K={codebook_size}; the collision code cannot make them unique"
        )
    return torch.cat([codes, collision_rank(codes).unsqueeze(1)], dim=1)
