import math

import pytest
import torch

from evaluate.metrics import (
    hit_rank,
    ndcg_at_k,
    prefix_hit_rank,
    ranking_metrics,
    recall_at_k,
    second_moments,
    with_standard_errors,
)


def test_hit_rank_by_hand_with_padding_and_unknown_target():
    pred = torch.tensor([[5, 3, -1], [-1, -1, -1], [7, 8, 9], [2, 2, 4]])
    target = torch.tensor([3, -1, 1, 2])
    assert hit_rank(pred, target).tolist() == [1, -1, -1, 0]  # -1 never matches -1; first occurrence


def test_recall_and_ndcg_on_hand_worked_ranks():
    rank = torch.tensor([0, 3, -1, 9, 10])
    torch.testing.assert_close(recall_at_k(rank, 1), torch.tensor(1 / 5))
    torch.testing.assert_close(recall_at_k(rank, 5), torch.tensor(2 / 5))
    torch.testing.assert_close(recall_at_k(rank, 10), torch.tensor(3 / 5))
    torch.testing.assert_close(ndcg_at_k(rank, 5), torch.tensor((1 + 1 / math.log2(5)) / 5))
    torch.testing.assert_close(
        ndcg_at_k(rank, 10), torch.tensor((1 + 1 / math.log2(5) + 1 / math.log2(11)) / 5)
    )
    torch.testing.assert_close(ndcg_at_k(rank, 1), recall_at_k(rank, 1))


def test_ranking_metrics_keys_and_values():
    rank = torch.tensor([0, 3, -1, 9])
    out = ranking_metrics(rank, (1, 5, 10), prefix="eval/")
    assert set(out) == {"eval/recall@1", "eval/recall@5", "eval/recall@10", "eval/ndcg@5", "eval/ndcg@10"}
    assert math.isclose(out["eval/recall@10"], 3 / 4, rel_tol=1e-6)
    assert math.isclose(out["eval/ndcg@5"], (1 + 1 / math.log2(5)) / 4, rel_tol=1e-6)


def test_collided_prefix_is_a_hit_only_for_the_prefix_metric():
    item_codes = torch.tensor([[1, 2, 3, 0], [1, 2, 3, 1], [0, 2, 3, 0]])  # items 0 and 1 collide on 3 codes
    pred_items = torch.tensor([[1, 2], [2, 0]])
    target = torch.tensor([0, 0])
    pred_codes = item_codes[pred_items]
    assert hit_rank(pred_items, target).tolist() == [-1, 1]
    assert prefix_hit_rank(pred_codes, item_codes[target], 3).tolist() == [0, 1]
    assert (
        prefix_hit_rank(pred_codes, item_codes[target], 4).tolist() == hit_rank(pred_items, target).tolist()
    )
    assert prefix_hit_rank(pred_codes, item_codes[target], 1).tolist() == [0, 1]  # item 2 starts with 0


def test_prefix_hit_rank_ignores_padding():
    pred_codes = torch.full((1, 2, 4), -1)
    assert prefix_hit_rank(pred_codes, torch.full((1, 4), -1), 3).tolist() == [-1]


def test_standard_errors_equal_the_sample_formula():
    rank = torch.tensor([0, 3, -1, 12, 1, -1, 9, 2])  # 8 users
    metrics = {**ranking_metrics(rank, (5, 10)), **second_moments(rank, (5, 10)), "users": 8}
    out = with_standard_errors(metrics, "users")
    assert not any(k.endswith("_sq") for k in out)
    for k in (5, 10):
        hits = ((rank >= 0) & (rank < k)).double()
        gains = torch.where(hits.bool(), 1.0 / torch.log2(rank.clamp(min=0).double() + 2), 0.0)
        assert math.isclose(out[f"recall@{k}_se"], float(hits.std() / math.sqrt(8)), rel_tol=1e-6)
        assert math.isclose(out[f"ndcg@{k}_se"], float(gains.std() / math.sqrt(8)), rel_tol=1e-5)


def test_a_group_metric_takes_its_standard_error_from_the_groups_own_count():
    metrics = {"eval/users": 1000, "eval/recall@10": 0.1, "eval/g/recall@10": 0.5, "eval/g/users": 11}
    out = with_standard_errors(metrics, "eval/users")
    assert out["eval/recall@10_se"] == pytest.approx((0.1 * 0.9 / 999) ** 0.5)
    assert out["eval/g/recall@10_se"] == pytest.approx((0.5 * 0.5 / 10) ** 0.5)
