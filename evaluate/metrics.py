"""Ranking metrics for next-item retrieval with one relevant item per user. Pure tensor functions.

A hit is an exact item match: predictions and targets are item indices, and items have unique C-code
tuples, so this is a full C-code match. `prefix_hit_rank` matches only the first n codes; it exists to show
how much the reference's 3-code-prefix recall overstates exact recall (an ablation, not a headline metric).
"""

from collections.abc import Sequence

import torch

KS = (1, 5, 10)  # the cutoffs k of every reported recall@k / ndcg@k; beam search needs a width >= max(KS)


def first_hit(match: torch.Tensor) -> torch.Tensor:
    """match [B, W] bool -> [B] int64: index of the first True, -1 if none."""
    rank = match.int().argmax(dim=1)  # first maximum: the first True when there is one
    return torch.where(match.any(dim=1), rank, torch.full_like(rank, -1))


def hit_rank(pred_items: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """pred_items [B, W] int64 (-1 = padding, never a hit), target [B] int64 -> [B] int64 0-based rank of
    the target among the predictions, -1 if absent."""
    assert pred_items.ndim == 2 and target.shape == pred_items.shape[:1], "expected [B, W] and [B]"
    match = (pred_items == target.unsqueeze(1)) & (pred_items >= 0) & (target.unsqueeze(1) >= 0)
    return first_hit(match)


def prefix_hit_rank(pred_codes: torch.Tensor, target_codes: torch.Tensor, n_codes: int) -> torch.Tensor:
    """pred_codes [B, W, C] (-1 = padding), target_codes [B, C] -> [B] int64 rank of the first prediction
    whose first `n_codes` codes equal the target's, -1 if none."""
    assert 1 <= n_codes <= pred_codes.shape[-1], f"n_codes must be in [1, C], got {n_codes}"
    pred, target = pred_codes[..., :n_codes], target_codes[:, None, :n_codes]  # [B, W, n], [B, 1, n]
    match = ((pred == target) & (target >= 0)).all(dim=-1)  # [B, W]
    return first_hit(match)


def recall_at_k(rank: torch.Tensor, k: int) -> torch.Tensor:
    """rank [B] (-1 = miss) -> [] float: fraction of users whose target ranks < k (= HR@k, one target)."""
    return ((rank >= 0) & (rank < k)).float().mean()


def ndcg_at_k(rank: torch.Tensor, k: int) -> torch.Tensor:
    """rank [B] (-1 = miss) -> [] float: mean of 1 / log2(rank + 2) over users with rank < k, 0 otherwise
    (one relevant item, so the ideal DCG is 1)."""
    hit = (rank >= 0) & (rank < k)
    gain = 1.0 / torch.log2(rank.clamp(min=0).double() + 2.0)
    return torch.where(hit, gain, torch.zeros_like(gain)).mean().float()


def metric_names(ks: Sequence[int] = KS) -> tuple[str, ...]:
    """The keys of ranking_metrics (without prefix): recall@k for every k, ndcg@k for every k > 1."""
    return (*(f"recall@{k}" for k in ks), *(f"ndcg@{k}" for k in ks if k > 1))


def ranking_metrics(rank: torch.Tensor, ks: Sequence[int] = KS, prefix: str = "") -> dict[str, float]:
    """{prefix + "recall@k"} for every k and {prefix + "ndcg@k"} for every k > 1 (ndcg@1 == recall@1)."""
    out = {f"{prefix}recall@{k}": float(recall_at_k(rank, k)) for k in ks}
    out.update({f"{prefix}ndcg@{k}": float(ndcg_at_k(rank, k)) for k in ks if k > 1})
    return out


def ndcg_sq_at_k(rank: torch.Tensor, k: int) -> torch.Tensor:
    """rank [B] -> [] float: mean over users of the squared per-user NDCG@k gain (its second moment)."""
    hit = (rank >= 0) & (rank < k)
    gain = 1.0 / torch.log2(rank.clamp(min=0).double() + 2.0)
    return torch.where(hit, gain * gain, torch.zeros_like(gain)).mean().float()


def second_moments(rank: torch.Tensor, ks: Sequence[int] = (1, 5, 10), prefix: str = "") -> dict[str, float]:
    """{prefix + "ndcg@k_sq"}: per-user second moments that, pooled like the means, give standard errors
    (with_standard_errors). Recall needs none: a per-user hit is 0/1, so its second moment is its mean."""
    return {f"{prefix}ndcg@{k}_sq": float(ndcg_sq_at_k(rank, k)) for k in ks if k > 1}


def with_standard_errors(metrics: dict[str, float], count_key: str) -> dict[str, float]:
    """Replaces every "<m>_sq" second moment by "<m>_se" and adds "recall@k_se" for every recall@k.

    SE of a mean over n users = sqrt((E[x²] − E[x]²) / (n − 1)); for recall, x ∈ {0, 1} so E[x²] = E[x].
    `count_key` holds n (e.g. "eval/users"); a metric of a group of users ("<group>/recall@k") uses the
    group's own "<group>/users" when there is one. Keys of prefix-match recalls are left without an SE.
    """
    out = {k: v for k, v in metrics.items() if not k.endswith("_sq")}

    def se(key: str, mean: float, mean_sq: float) -> float:
        n = float(metrics.get(f"{key.rsplit('/', 1)[0]}/users", metrics[count_key]))
        return max(mean_sq - mean * mean, 0.0) ** 0.5 / max(n - 1.0, 1.0) ** 0.5

    for key, value in metrics.items():
        name = key.rsplit("/", 1)[-1]
        if name.startswith("recall@") and name[len("recall@") :].isdigit():
            out[f"{key}_se"] = se(key, value, value)
        elif key.endswith("_sq"):
            mean_key = key.removesuffix("_sq")
            out[f"{mean_key}_se"] = se(mean_key, metrics[mean_key], value)
    return out


def renamed(scores: dict[str, float], prefix: str, namespace: str | None = None) -> dict[str, float]:
    """ "<namespace>/<m>" keys -> "<prefix>/<m>" (every "<x>/<m>" key when namespace is None); keys of other
    namespaces and keys without one are kept. The one place metric keys change namespace."""
    out = {}
    for key, value in scores.items():
        head, slash, name = key.partition("/")
        out[f"{prefix}/{name}" if slash and namespace in (None, head) else key] = value
    return out
