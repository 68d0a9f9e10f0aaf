"""Most-popular baseline: every user gets the same ranking, items ordered by their training count.

TIGER does not remove a user's history items from its predictions, so by default nothing is excluded here
either; pass `exclude` (e.g. the history) to measure the filtered variant.
"""

from collections.abc import Sequence

import torch

from data.processed import popularity
from data.schema import RawDataset
from evaluate.metrics import KS, ranking_metrics


def popularity_rank_of_item(counts: torch.Tensor) -> torch.Tensor:
    """counts [I] -> [I] int64 0-based rank of each item: count descending, ties by lower item index."""
    order = counts.sort(descending=True, stable=True).indices  # [I], most popular first
    rank = torch.empty_like(order)
    rank[order] = torch.arange(order.shape[0], device=order.device)
    return rank


def _excluded_ahead(rank_of_item: torch.Tensor, target_rank: torch.Tensor, exclude: torch.Tensor):
    """Distinct excluded items ranked before the target, and whether the target itself is excluded.

    rank_of_item [I], target_rank [U], exclude [U, M] (-1 padded) -> ([U] int64, [U] bool)."""
    n_items = rank_of_item.shape[0]
    excl_rank = torch.where(exclude >= 0, rank_of_item[exclude.clamp(min=0)], n_items)  # [U, M]
    excl_rank = excl_rank.sort(dim=1).values
    first = torch.ones_like(excl_rank, dtype=torch.bool)
    first[:, 1:] = excl_rank[:, 1:] != excl_rank[:, :-1]  # count repeated history items once
    ahead = (first & (excl_rank < target_rank.unsqueeze(1))).sum(dim=1)
    target_excluded = (excl_rank == target_rank.unsqueeze(1)).any(dim=1)
    return ahead, target_excluded


def popularity_hit_rank(
    train_item_counts: torch.Tensor, targets: torch.Tensor, exclude: torch.Tensor | None = None
) -> torch.Tensor:
    """train_item_counts [I], targets [U] (-1 = unknown), exclude [U, M] item indices (-1 padded) or None
    -> [U] int64 0-based rank of the target in the popularity ranking (after removing `exclude`), -1 for a
    miss (unknown target, or target excluded)."""
    rank_of_item = popularity_rank_of_item(train_item_counts)
    known = targets >= 0
    rank = rank_of_item[targets.clamp(min=0)]  # [U]
    if exclude is not None:
        ahead, target_excluded = _excluded_ahead(rank_of_item, rank, exclude)
        rank = rank - ahead
        known = known & ~target_excluded
    return torch.where(known, rank, torch.full_like(rank, -1))


def popularity_baseline(
    train_item_counts: torch.Tensor,
    targets: torch.Tensor,
    exclude: torch.Tensor | None = None,
    ks: Sequence[int] = KS,
) -> dict[str, float]:
    """{"pop/recall@k", "pop/ndcg@k"} of the most-popular ranking (see popularity_hit_rank)."""
    rank = popularity_hit_rank(train_item_counts, targets, exclude)
    return ranking_metrics(rank, ks, prefix="pop/")


def split_baseline(dataset: RawDataset, split: str, targets: torch.Tensor) -> dict[str, float]:
    """The baseline every script reports beside its model: items ranked by their count in what is visible
    before `split`'s targets (data.processed.popularity), scored on those targets [U] -> pop/recall@k, ..."""
    return popularity_baseline(popularity(dataset, split), targets)
