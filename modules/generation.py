"""Constrained decoding of semantic IDs: deterministic beam search and temperature / top-k sampling.

Both drive a model through the decoding protocol of docs/architecture.md:
`start(batch) -> state` (B rows), `step(state, codes [R] | None) -> (logits [R, K], state)` (one level per
call), `reorder(state, index [R']) -> state`.

Scoring. The model's distribution at each level is `log_softmax` over all K logits; invalid codes (no item
has the extended prefix) are then masked to -inf. Beams are ranked by the cumulative log-probability of the
model, sum_l log p(c_l | c_<l), i.e. the quantity teacher-forced training maximises. We do not renormalise
over the valid codes: that would hand items in sparse branches probability mass the model never gave them.
With a trie every surviving beam is a real item; a beam whose score is -inf is padding (fewer than W valid
items reachable) and is returned with codes -1 and item -1.
"""

from typing import Any, NamedTuple, Protocol

import torch
from einops import rearrange, repeat

from modules.prefix_trie import PrefixTrie
from modules.tokens import TokenBatch


class DecodingModel(Protocol):
    """What generation needs from a retrieval model (modules/model.py implements it)."""

    def start(self, batch: TokenBatch) -> Any: ...  # encoder once; state with B rows

    def step(self, state: Any, codes: torch.Tensor | None) -> tuple[torch.Tensor, Any]: ...  # [R, K] logits

    def reorder(self, state: Any, index: torch.Tensor) -> Any: ...  # rows index [R'] of the state


def check_step(level: int, n_codes: int, codes: torch.Tensor | None) -> None:
    """The protocol's `step` contract: codes None exactly at level 0, and no step past level C-1."""
    if level >= n_codes or (codes is None) != (level == 0):
        raise ValueError(f"step at level {level} of {n_codes} needs codes {'None' if level == 0 else '[R]'}")


def user_major_groups(row_user: torch.Tensor, n_users: int) -> int | None:
    """G if decoding row r belongs to user r // G for every row (the beam-search layout, where the G rows
    of a user can share one copy of its per-user state), else None. One host sync."""
    n_rows = row_user.shape[0]
    if n_rows % n_users:
        return None
    users = torch.arange(n_users, device=row_user.device).repeat_interleave(n_rows // n_users)
    return n_rows // n_users if torch.equal(row_user, users) else None


class BeamOutput(NamedTuple):
    """codes: [B, W, C] int64 (-1 for padding); items: [B, W] int64 (-1 for padding);
    log_probs: [B, W] float32, cumulative model log-prob, sorted descending (-inf for padding)."""

    codes: torch.Tensor
    items: torch.Tensor
    log_probs: torch.Tensor


class BeamStep(NamedTuple):
    """scores: [B, W] cumulative log-probs, sorted descending; parent: [B, W] beam each extends;
    code: [B, W] code it appends."""

    scores: torch.Tensor
    parent: torch.Tensor
    code: torch.Tensor


def candidate_scores(scores: torch.Tensor, log_probs: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """scores [B, W], log_probs [B, W, K], valid [B, W, K] bool -> [B, W·K] flat index w·K + k;
    score[w] + log_prob[w, k] where valid, else -inf."""
    cand = scores.unsqueeze(-1) + log_probs  # [B, W, K]
    cand = cand.masked_fill(~valid, float("-inf"))
    return rearrange(cand, "b w k -> b (w k)")


def topk_lowest_index(values: torch.Tensor, k: int) -> torch.Tensor:
    """values [B, L] (no NaN) -> indices [B, k] of the k largest, sorted by value descending, ties broken
    by lower index. Same result as a stable descending sort cut at k (`beam_step_reference`), at the cost
    of a topk; only when ties straddle the k-th place does it pay for a cumsum. One host sync per call."""
    top = values.topk(k, dim=1)
    kth = top.values[:, -1:]  # [B, 1], the k-th largest value
    if bool(((values >= kth).sum(dim=1) == k).all()):  # the top-k set is unambiguous: only reorder it
        index = top.indices.sort(dim=1).values  # [B, k], ascending index
        order = values.gather(1, index).sort(dim=1, descending=True, stable=True).indices
        return index.gather(1, order)
    length = values.shape[1]
    above = values > kth
    ties = values == kth
    n_ties_taken = k - above.sum(dim=1, keepdim=True)  # [B, 1]
    chosen = above | (ties & (ties.cumsum(dim=1) <= n_ties_taken))  # [B, L], exactly k per row
    lower_first = torch.arange(length, 0, -1, device=values.device)  # distinct keys, larger = lower index
    index = torch.where(chosen, lower_first, 0).topk(k, dim=1).indices  # [B, k], ascending index
    order = values.gather(1, index).sort(dim=1, descending=True, stable=True).indices
    return index.gather(1, order)


def beam_step(
    scores: torch.Tensor, log_probs: torch.Tensor, valid: torch.Tensor, beam_width: int
) -> BeamStep:
    """One beam-search level. scores [B, W], log_probs [B, W, K], valid [B, W, K] bool.
    Keeps the top `beam_width` of the W·K candidates per row (ties: lower flat index w·K + k)."""
    n_codes = log_probs.shape[-1]
    cand = candidate_scores(scores, log_probs, valid)  # [B, W·K]
    flat = topk_lowest_index(cand, beam_width)  # [B, W']
    return BeamStep(cand.gather(1, flat), flat // n_codes, flat % n_codes)


def beam_step_reference(
    scores: torch.Tensor, log_probs: torch.Tensor, valid: torch.Tensor, beam_width: int
) -> BeamStep:
    """Plain reference for `beam_step`: full stable descending sort of the candidates."""
    n_codes = log_probs.shape[-1]
    cand = candidate_scores(scores, log_probs, valid)
    flat = cand.sort(dim=1, descending=True, stable=True).indices[:, :beam_width]
    return BeamStep(cand.gather(1, flat), flat // n_codes, flat % n_codes)


def _gather_beams(x: torch.Tensor, parent: torch.Tensor) -> torch.Tensor:
    """x [B, W, *] -> x[b, parent[b, w], *]."""
    index = parent.reshape(*parent.shape, *([1] * (x.ndim - 2))).expand(-1, -1, *x.shape[2:])
    return x.gather(1, index)


def _finish(codes: torch.Tensor, scores: torch.Tensor, trie: PrefixTrie) -> BeamOutput:
    """codes [B, W, C], scores [B, W] -> BeamOutput; -inf rows become padding (codes -1, item -1)."""
    batch, width = scores.shape
    live = scores > float("-inf")
    items = trie.item_of(rearrange(codes, "b w c -> (b w) c")).view(batch, width)
    items = torch.where(live, items, torch.full_like(items, -1))
    codes = codes.masked_fill(~live.unsqueeze(-1), -1)
    return BeamOutput(codes, items, scores)


@torch.no_grad()
def beam_search(
    model: DecodingModel, batch: TokenBatch, trie: PrefixTrie, beam_width: int, constrained: bool = True
) -> BeamOutput:
    """Deterministic beam search of width W over C levels -> BeamOutput [B, W, ...].

    constrained=False drops the trie mask (ablation): beams may then be non-items (item -1, finite score).
    """
    state = model.start(batch)
    logits, state = model.step(state, None)  # [B, K]
    n_users, n_codes = logits.shape
    width, device = beam_width, logits.device
    user = torch.arange(n_users, device=device)
    # W beams per user, only the first live: level 0 then needs no special case.
    scores = torch.full((n_users, width), float("-inf"), device=device)
    scores[:, 0] = 0.0
    log_probs = repeat(logits.float().log_softmax(-1), "b k -> b w k", w=width)
    nodes = torch.zeros(n_users, width, dtype=torch.long, device=device)
    codes = torch.zeros(n_users, width, 0, dtype=torch.long, device=device)
    for level in range(trie.n_codes):
        if level > 0:
            logits, state = model.step(state, rearrange(codes[:, :, -1], "b w -> (b w)"))  # [B·W, K]
            log_probs = rearrange(logits.float().log_softmax(-1), "(b w) k -> b w k", w=width)
        if constrained:
            valid = trie.valid_mask(level, nodes.flatten()).view(n_users, width, n_codes)
        else:
            valid = torch.ones_like(log_probs, dtype=torch.bool)
        step = beam_step(scores, log_probs, valid, width)
        scores = step.scores
        codes = torch.cat([_gather_beams(codes, step.parent), step.code.unsqueeze(-1)], dim=-1)
        nodes = trie.advance(level, _gather_beams(nodes, step.parent).flatten(), step.code.flatten())
        nodes = nodes.view(n_users, width)
        if level + 1 < trie.n_codes:
            rows = user.unsqueeze(1) if level == 0 else user.unsqueeze(1) * width + step.parent  # [B, W]
            state = model.reorder(state, rows.expand(n_users, width).flatten())
    return _finish(codes, scores, trie)


def sample_codes(
    logits: torch.Tensor,
    valid: torch.Tensor,
    temperature: float,
    top_k: int | None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Draw one valid code per row. logits [R, K], valid [R, K] bool (≥ 1 True per row) -> [R] int64.

    p ∝ exp(logit / temperature) over the valid codes, restricted to the `top_k` largest of those
    (None: no restriction; ties with the k-th value are kept)."""
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    scaled = (logits.float() / temperature).masked_fill(~valid, float("-inf"))  # [R, K]
    if top_k is not None:
        kth = scaled.topk(min(top_k, scaled.shape[-1]), dim=-1).values[:, -1:]  # [R, 1]
        scaled = scaled.masked_fill(scaled < kth, float("-inf"))
    # Gumbel-max: argmax(scaled + G), G = -log(-log U), is an exact draw from softmax(scaled).
    uniform = torch.rand(scaled.shape, generator=generator, device=scaled.device)
    return (scaled - torch.log(-torch.log(uniform))).argmax(dim=-1)


@torch.no_grad()
def sample(
    model: DecodingModel,
    batch: TokenBatch,
    trie: PrefixTrie,
    n_samples: int,
    temperature: float,
    top_k: int | None,
    generator: torch.Generator | None = None,
) -> BeamOutput:
    """Constrained ancestral sampling of S = n_samples items per user -> BeamOutput [B, S, ...].

    Every sample is a real item (duplicates possible). log_probs is the model's own cumulative log-prob
    (full-K softmax at temperature 1, as in beam search); samples are sorted by it, descending, stably.
    """
    state = model.start(batch)
    logits, state = model.step(state, None)  # [B, K]
    n_users = logits.shape[0]
    user_rows = repeat(torch.arange(n_users, device=logits.device), "b -> (b s)", s=n_samples)
    state = model.reorder(state, user_rows)
    logits = logits[user_rows]  # [B·S, K]
    nodes = torch.zeros_like(user_rows)
    total = torch.zeros(user_rows.shape[0], device=logits.device)
    codes = []
    for level in range(trie.n_codes):
        if level > 0:
            logits, state = model.step(state, codes[-1])
        code = sample_codes(logits, trie.valid_mask(level, nodes), temperature, top_k, generator)  # [B·S]
        total = total + logits.float().log_softmax(-1).gather(1, code.unsqueeze(1)).squeeze(1)
        nodes = trie.advance(level, nodes, code)
        codes.append(code)
    codes = rearrange(torch.stack(codes, dim=-1), "(b s) c -> b s c", s=n_samples)
    total = rearrange(total, "(b s) -> b s", s=n_samples)
    order = total.sort(dim=1, descending=True, stable=True).indices
    return _finish(_gather_beams(codes, order), total.gather(1, order), trie)
