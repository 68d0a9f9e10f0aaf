import torch
from torch.testing import assert_close

from modules.embedding import (
    PAD_TOKEN,
    SemIdEmbedder,
    UserIdEmbedder,
    hash_user_ids,
    history_grid,
    token_id,
)

K, C = 8, 4


def _fmix32(x: int) -> int:
    """MurmurHash3 fmix32, written with Python ints."""
    x &= 0xFFFFFFFF
    x ^= x >> 16
    x = (x * 0x85EBCA6B) & 0xFFFFFFFF
    x ^= x >> 13
    x = (x * 0xC2B2AE35) & 0xFFFFFFFF
    return x ^ (x >> 16)


def test_token_id_is_level_times_k_plus_code_and_padding_is_pad():
    level = torch.arange(C).repeat_interleave(K)
    code = torch.arange(K).repeat(C)
    ids = token_id(level, code, K)
    assert ids.tolist() == [l * K + c for l, c in zip(level.tolist(), code.tolist())]
    assert sorted(ids.tolist()) == list(range(C * K))  # a bijection onto 0..C·K-1
    assert token_id(torch.tensor([2, 3]), torch.tensor([-1, 5]), K).tolist() == [PAD_TOKEN, 3 * K + 5]


def test_sem_id_embedder_rows_and_zero_pad_row():
    emb = SemIdEmbedder(C, K, 5)
    assert emb.table.weight.shape == (C * K + 1, 5)
    level, code = torch.tensor([[0, 3], [2, 1]]), torch.tensor([[7, 0], [-1, 4]])
    out = emb(level, code)
    assert_close(out[0, 0], emb.table.weight[7])
    assert_close(out[0, 1], emb.table.weight[3 * K])
    assert_close(out[1, 0], torch.zeros(5))  # padding -> the zero row C·K, not a wrapped index
    out.sum().backward()
    assert_close(emb.table.weight.grad[C * K], torch.zeros(5))  # the pad row never learns


def test_hash_matches_fmix32_written_by_hand():
    ids = torch.tensor([0, 1, 2, 22363, 2**31 + 5, 2**40 + 7])
    expected = [_fmix32(i) % 2000 for i in ids.tolist()]
    assert hash_user_ids(ids, 2000).tolist() == expected


def test_hash_spreads_consecutive_ids_and_is_not_modulo():
    ids = torch.arange(1, 20001)
    buckets = hash_user_ids(ids, 2000)
    assert buckets.min() >= 0 and buckets.max() < 2000
    counts = torch.bincount(buckets, minlength=2000)
    assert counts.max() <= 30  # mean 10; a uniform hash gives max ≈ 22
    assert (buckets != ids % 2000).float().mean() > 0.99


def test_user_embedder_uses_the_hash():
    emb = UserIdEmbedder(7, 3)
    ids = torch.tensor([5, 100, 12345])
    assert_close(emb(ids), emb.table.weight[hash_user_ids(ids, 7)])


def test_history_grid_positions_count_from_the_newest_item():
    history = torch.tensor([[[1, 2], [3, 4], [5, 6]], [[7, 0], [-1, -1], [-1, -1]]])  # [B=2, N=3, C=2]
    lengths = torch.tensor([3, 1])
    grid = history_grid(history, lengths, user_token=False)
    assert grid.lengths.tolist() == [6, 2]
    assert grid.code[0].tolist() == [1, 2, 3, 4, 5, 6]
    assert grid.level[0].tolist() == [0, 1, 0, 1, 0, 1]
    assert grid.position[0].tolist() == [2, 2, 1, 1, 0, 0]
    assert grid.position[1, :2].tolist() == [0, 0]  # a one-item history: its item is the newest, position 0
    with_user = history_grid(history, lengths, user_token=True)
    assert with_user.lengths.tolist() == [7, 3]
    assert with_user.code[:, 0].tolist() == [-1, -1]
    assert with_user.position[0, 1:].tolist() == grid.position[0].tolist()


def test_history_grid_valid_tokens_do_not_depend_on_pad_width():
    history = torch.tensor([[[1, 2], [3, 4]], [[5, 6], [-1, -1]]])
    lengths = torch.tensor([2, 1])
    wide = torch.cat([history, torch.full((2, 3, 2), 9)], dim=1)  # more padding, with garbage in it
    a, b = history_grid(history, lengths, True), history_grid(wide, lengths, True)
    for row, n in enumerate(a.lengths.tolist()):
        for field_a, field_b in zip(a[:3], b[:3]):
            assert field_a[row, :n].tolist() == field_b[row, :n].tolist()
