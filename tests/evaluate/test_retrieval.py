import math
from typing import NamedTuple

import torch

from evaluate.popularity import popularity_baseline, popularity_hit_rank
from evaluate.retrieval import evaluate_retrieval
from modules.prefix_trie import PrefixTrie
from modules.tokens import TokenBatch

K, C = 4, 4
# Every item has a sibling sharing its first 3 codes (collision code 0 vs 1).
PREFIXES = torch.tensor([[0, 1, 2], [1, 3, 0], [2, 2, 2], [3, 0, 1], [0, 1, 3], [1, 0, 0]])
ITEM_CODES = torch.cat([torch.cat([PREFIXES, torch.full((6, 1), c)], 1) for c in (0, 1)])  # [12, 4]


class SeqBatch(NamedTuple):
    items: torch.Tensor
    lengths: torch.Tensor
    user_ids: torch.Tensor
    targets: torch.Tensor


class FavourState(NamedTuple):
    favoured: torch.Tensor  # [R, C]
    level: int


class FavouringModel(torch.nn.Module):
    """Fake decoder that puts a large logit on the target's code at each level; with flip_last it favours
    the sibling (collision code XOR 1) at the last level. Earlier levels weigh more, so the sibling is
    ranked first and the target second."""

    def __init__(self, flip_last: bool):
        super().__init__()
        self.flip_last = flip_last

    def start(self, batch: TokenBatch) -> FavourState:
        favoured = batch.target.clone()
        if self.flip_last:
            favoured[:, -1] ^= 1
        return FavourState(favoured, -1)

    def step(self, state: FavourState, codes):
        level = state.level + 1
        logits = 20.0 * (C - level) * torch.nn.functional.one_hot(state.favoured[:, level], K).float()
        return logits, FavourState(state.favoured, level)

    def reorder(self, state: FavourState, index: torch.Tensor) -> FavourState:
        return FavourState(state.favoured[index], state.level)


def make_loader(targets: torch.Tensor, batch_size: int) -> list[SeqBatch]:
    batches = []
    for start in range(0, len(targets), batch_size):
        t = targets[start : start + batch_size]
        items = torch.stack([(t + 1) % 12, torch.full_like(t, -1)], 1)  # [B, 2], one history item
        batches.append(SeqBatch(items, torch.ones_like(t), torch.arange(len(t)), t))
    return batches


def run(model, targets, width=10, **kwargs):
    trie = PrefixTrie.from_codes(ITEM_CODES, K)
    loader = make_loader(targets, batch_size=4)
    return evaluate_retrieval(model, loader, ITEM_CODES, trie, width, disable_progress=True, **kwargs)


def test_oracle_model_scores_one_and_restores_training_mode():
    model = FavouringModel(flip_last=False).train()
    out = run(model, torch.arange(12))
    assert model.training
    for key in ("eval/recall@1", "eval/recall@5", "eval/recall@10", "eval/ndcg@5", "eval/ndcg@10"):
        assert out[key] == 1.0
    assert (
        out["eval/recall@10_prefix3"] == 1.0 and out["eval/invalid_rate"] == 0.0 and out["eval/users"] == 12
    )


def test_sibling_model_misses_at_one_but_prefix_metric_counts_it():
    out = run(FavouringModel(flip_last=True), torch.arange(12))
    assert out["eval/recall@1"] == 0.0 and out["eval/recall@1_prefix3"] == 1.0
    assert out["eval/recall@5"] == 1.0  # the target is the second beam
    assert math.isclose(out["eval/ndcg@5"], 1 / math.log2(3), rel_tol=1e-6)


def test_max_batches_and_invalid_rate_with_padding():
    out = run(FavouringModel(flip_last=False), torch.arange(12), width=15, max_batches=2)
    assert out["eval/users"] == 8
    assert math.isclose(out["eval/invalid_rate"], 3 / 15, rel_tol=1e-6)  # 12 items, 15 beams


def test_popularity_baseline_by_hand():
    counts = torch.tensor([5, 1, 5, 3, 0])  # ranking: 0, 2 (tie, lower index first), 3, 1, 4
    targets = torch.tensor([2, 4, 1, -1])
    assert popularity_hit_rank(counts, targets).tolist() == [1, 4, 3, -1]
    out = popularity_baseline(counts, targets, ks=(1, 2))
    assert out["pop/recall@1"] == 0.0 and out["pop/recall@2"] == 0.25
    assert math.isclose(out["pop/ndcg@2"], (1 / math.log2(3)) / 4, rel_tol=1e-6)


def test_popularity_exclusion_removes_history_items_once():
    counts = torch.tensor([5, 1, 5, 3, 0])
    targets = torch.tensor([1, 2, 3])
    exclude = torch.tensor([[0, 0, 2, -1], [2, -1, -1, -1], [4, 1, -1, -1]])
    # user 0: 0 and 2 removed (0 twice) -> 1 ranks 3 - 2; user 1: its target excluded; user 2: nothing ahead
    assert popularity_hit_rank(counts, targets, exclude).tolist() == [1, -1, 2]
