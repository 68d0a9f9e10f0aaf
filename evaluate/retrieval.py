"""Retrieval evaluation: beam search over a split, exact item matching, Recall@k / NDCG@k."""

import contextlib
from collections.abc import Iterable, Sequence
from typing import NamedTuple

import torch
from tqdm.auto import tqdm

from evaluate.metrics import KS, hit_rank, prefix_hit_rank, ranking_metrics, second_moments
from modules.cold_start import matching_cold, n_reserved, reserve_cold
from modules.generation import beam_search
from modules.prefix_trie import PrefixTrie
from modules.tokens import tokenize


def bf16_autocast(device_type: str, enabled: bool) -> contextlib.AbstractContextManager:
    """bf16 autocast on `device_type` ("cpu", "cuda") when enabled (the matmuls in bf16; code that asks for
    float32, e.g. scores through `.float()`, stays float32), else a context that changes nothing."""
    return torch.autocast(device_type, dtype=torch.bfloat16) if enabled else contextlib.nullcontext()


class ColdStart(NamedTuple):
    """Cold-start retrieval (modules/cold_start.py): codes [Ic, C] and items [Ic] of the cold items; the
    shares ε of the top max(ks) reserved for them, one evaluation per ε."""

    codes: torch.Tensor
    items: torch.Tensor
    epsilons: tuple[float, ...]


def cold_ranks(out, targets: torch.Tensor, cold: ColdStart, k: int) -> list[torch.Tensor]:
    """Per ε: [B] rank of the target in the top k with ⌈ε·k⌉ slots reserved for matching cold items
    (cold on the beams' device)."""
    ranks = []
    for epsilon in cold.epsilons:
        found = matching_cold(out.codes, cold.codes, cold.items, n_reserved(k, epsilon))
        ranks.append(hit_rank(reserve_cold(out.items, found, k), targets))
    return ranks


def cold_metrics(ranks: list[torch.Tensor], is_cold: torch.Tensor, cold: ColdStart, ks) -> dict[str, float]:
    """eval/eps{ε}/{all,warm,cold}/recall@k etc. and .../users (users whose target is warm / cold),
    eval/cold_users."""
    metrics = {"eval/cold_users": int(is_cold.sum())}
    for epsilon, rank in zip(cold.epsilons, ranks):
        for group, rows in (("all", slice(None)), ("warm", ~is_cold), ("cold", is_cold)):
            if rank[rows].numel():
                prefix = f"eval/eps{epsilon:g}/{group}/"
                metrics.update(ranking_metrics(rank[rows], ks, prefix=prefix))
                metrics[f"{prefix}users"] = rank[rows].numel()  # the n of this group's standard errors
    return metrics


def _to_device(seq: NamedTuple, device: torch.device) -> NamedTuple:
    """SeqBatch-like NamedTuple (items [B, N], lengths [B], user_ids [B], targets [B]) -> same on device."""
    return seq._replace(**{name: getattr(seq, name).to(device) for name in seq._fields})


def _n_batches(loader: Iterable, max_batches: int | None) -> int | None:
    """Number of batches the loop will see, if known (for tqdm)."""
    total = len(loader) if hasattr(loader, "__len__") else None
    if max_batches is None:
        return total
    return max_batches if total is None else min(total, max_batches)


@torch.inference_mode()
def evaluate_retrieval(
    model: torch.nn.Module,
    loader: Iterable,
    item_codes: torch.Tensor,
    trie: PrefixTrie,
    beam_width: int,
    ks: Sequence[int] = KS,
    device: torch.device | str | None = None,
    max_batches: int | None = None,
    constrained: bool = True,
    disable_progress: bool = False,
    cold: ColdStart | None = None,
) -> dict[str, float]:
    """Beam-search every batch of `loader` (SeqBatch-like: items [B, N] -1 padded, lengths, user_ids,
    targets [B]) and score the W beams against the target item. item_codes: [I, C] int64.

    Returns eval/recall@k, eval/ndcg@k (k > 1), eval/recall@k_prefix{Q} (first Q = C - 1 codes only: the
    reference's inflated metric, for ablation), eval/ndcg@k_sq (per-user second moments: pool them like the
    means, then evaluate.metrics.with_standard_errors turns them into SEs), eval/invalid_rate (fraction of
    the B·W returned beams that are not items: padding, or non-items when constrained=False) and eval/users.
    With `cold` (a cold-start run: the trie holds the warm items only) also cold_metrics' keys; those are
    exact for one process (pool_shard_means weights them by eval/users, not by the group's users).
    """
    assert beam_width >= max(ks), f"beam_width {beam_width} < max k {max(ks)}"
    device = torch.device(device) if device is not None else item_codes.device
    item_codes, trie = item_codes.to(device), trie.to(device)
    if cold is not None:
        cold = cold._replace(codes=cold.codes.to(device), items=cold.items.to(device))
    n_prefix = item_codes.shape[1] - 1
    was_training = model.training
    model.eval()
    ranks, prefix_ranks, per_epsilon, targets = [], [], [], []
    n_invalid = torch.zeros((), dtype=torch.long, device=device)
    batches = tqdm(loader, desc="eval", total=_n_batches(loader, max_batches), disable=disable_progress)
    for index, seq in enumerate(batches):
        if max_batches is not None and index >= max_batches:
            break
        seq = _to_device(seq, device)
        tokens = tokenize(seq.items, seq.lengths, seq.user_ids, seq.targets, item_codes)
        out = beam_search(model, tokens, trie, beam_width, constrained=constrained)
        ranks.append(hit_rank(out.items, seq.targets))
        prefix_ranks.append(prefix_hit_rank(out.codes, tokens.target, n_prefix))
        n_invalid += (out.items < 0).sum()
        if cold is not None:
            per_epsilon.append(cold_ranks(out, seq.targets, cold, max(ks)))
            targets.append(seq.targets)
    model.train(was_training)
    if not ranks:
        raise ValueError("the loader yielded no batches")
    rank, prefix_rank = torch.cat(ranks), torch.cat(prefix_ranks)  # [U]
    metrics = {**ranking_metrics(rank, ks, prefix="eval/"), **second_moments(rank, ks, prefix="eval/")}
    prefix_metrics = ranking_metrics(prefix_rank, ks, prefix="eval/")
    metrics.update({f"eval/recall@{k}_prefix{n_prefix}": prefix_metrics[f"eval/recall@{k}"] for k in ks})
    metrics["eval/invalid_rate"] = float(n_invalid) / max(rank.shape[0] * beam_width, 1)
    metrics["eval/users"] = rank.shape[0]
    if cold is not None:
        is_cold = torch.isin(torch.cat(targets), cold.items)
        metrics.update(cold_metrics([torch.cat(r) for r in zip(*per_epsilon)], is_cold, cold, ks))
    return metrics
