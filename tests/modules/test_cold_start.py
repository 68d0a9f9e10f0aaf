import pytest
import torch

from modules.cold_start import (
    collision_codes_warm_first,
    matching_cold,
    n_reserved,
    reserve_cold,
)
from modules.semantic_ids import append_collision_code


def test_warm_items_keep_the_ids_they_get_without_cold_items():
    gen = torch.Generator().manual_seed(0)
    codes = torch.randint(0, 3, (40, 2), generator=gen)
    cold = torch.rand(40, generator=gen) < 0.3
    ids = collision_codes_warm_first(codes, 16, cold)
    assert torch.equal(ids[:, :2], codes)
    assert torch.unique(ids, dim=0).shape[0] == 40  # every C-tuple unique
    assert torch.equal(ids[~cold], append_collision_code(codes[~cold], 16))


@pytest.mark.parametrize(
    ("k", "epsilon", "expected"), [(10, 0.0, 0), (10, 0.1, 1), (10, 0.25, 3), (5, 1.0, 5)]
)
def test_n_reserved_is_the_ceiling_of_epsilon_k(k, epsilon, expected):
    assert n_reserved(k, epsilon) == expected


def test_matching_cold_orders_by_first_matching_beam_then_item():
    beams = torch.tensor([[[1, 2, 0], [3, 4, 0], [1, 2, 1], [-1, -1, -1]]])  # [1, W=4, C=3]
    cold_codes = torch.tensor([[3, 4, 1], [1, 2, 5], [9, 9, 0], [1, 2, 6]])
    cold_ids = torch.tensor([20, 31, 40, 22])
    out = matching_cold(beams, cold_codes, cold_ids, limit=5)
    # beam 0 (prefix 1, 2) matches items 31 and 22 -> 22, 31; beam 1 (3, 4) matches 20; 40 matches none
    assert out.tolist() == [[22, 31, 20, -1, -1]]
    assert matching_cold(beams, cold_codes, cold_ids, limit=2).tolist() == [[22, 31]]


def test_deeper_shared_prefixes_rank_first_and_the_first_code_must_match():
    beams = torch.tensor([[[1, 2, 3, 0], [4, 5, 6, 0], [7, 8, 9, 0]]])  # [1, W=3, C=4]
    cold_codes = torch.tensor([[1, 0, 0, 1], [7, 8, 0, 1], [4, 5, 6, 1], [2, 2, 2, 0]])
    cold_ids = torch.tensor([10, 11, 12, 13])
    out = matching_cold(beams, cold_codes, cold_ids, limit=4)
    # 12 shares all 3 codes (beam 1), 11 two (beam 2), 10 one (beam 0); 13 shares no first code
    assert out.tolist() == [[12, 11, 10, -1]]


def test_padding_beams_match_nothing():
    beams = torch.full((1, 2, 3), -1)
    out = matching_cold(beams, torch.tensor([[-1, -1, 0]]), torch.tensor([7]), limit=1)
    assert out.tolist() == [[-1]]


def test_reserve_cold_fills_the_last_slots_with_the_found_cold_items():
    warm = torch.tensor([[1, 2, 3, 4, 5], [6, 7, 8, 9, 10], [11, 12, 13, 14, 15]])
    cold = torch.tensor([[50, 51], [60, -1], [-1, -1]])
    out = reserve_cold(warm, cold, k=4)
    assert out.tolist() == [[1, 2, 50, 51], [6, 7, 8, 60], [11, 12, 13, 14]]
    assert reserve_cold(warm, cold[:, :0], k=4).tolist() == warm[:, :4].tolist()
