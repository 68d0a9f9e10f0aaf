import torch
from torch.testing import assert_close

from ops.jagged import (
    length_groups,
    lengths_to_offsets,
    offsets_to_lengths,
    pack,
    split_groups,
    unpack,
    valid_mask,
)


def _padded(lengths: list[int], max_len: int, dim: int = 3) -> torch.Tensor:
    x = torch.randn(len(lengths), max_len, dim)
    for b, n in enumerate(lengths):
        x[b, n:] = 1e6  # garbage in the padding: must never be read
    return x


def test_offsets_by_hand():
    lengths = torch.tensor([2, 0, 3, 1])
    offsets = lengths_to_offsets(lengths)
    assert offsets.tolist() == [0, 2, 2, 5, 6]
    assert offsets_to_lengths(offsets).tolist() == [2, 0, 3, 1]


def test_valid_mask_by_hand():
    assert valid_mask(torch.tensor([1, 3, 0]), 3).tolist() == [
        [True, False, False],
        [True, True, True],
        [False, False, False],
    ]


def test_pack_is_row_concatenation_and_ignores_padding():
    lengths = [2, 4, 1]
    x = _padded(lengths, 5)
    expected = torch.cat([x[b, :n] for b, n in enumerate(lengths)])
    assert_close(pack(x, torch.tensor(lengths)), expected)


def test_unpack_inverts_pack_with_zero_padding():
    lengths = torch.tensor([2, 4, 1])
    x = _padded(lengths.tolist(), 5)
    values = pack(x, lengths)
    out = unpack(values, lengths_to_offsets(lengths), 5)
    mask = valid_mask(lengths, 5).unsqueeze(-1)
    assert_close(out, torch.where(mask, x, torch.zeros_like(x)))
    assert_close(pack(out, lengths), values)


def test_pack_unpack_backward_match_row_slicing():
    lengths = [3, 1, 2]
    x = _padded(lengths, 4).requires_grad_()
    weights = torch.randn(6, 3)
    (grad_fast,) = torch.autograd.grad((pack(x, torch.tensor(lengths)) * weights).sum(), x)
    reference = torch.cat([x[b, :n] for b, n in enumerate(lengths)])
    (grad_ref,) = torch.autograd.grad((reference * weights).sum(), x)
    assert_close(grad_fast, grad_ref)

    values = torch.randn(6, 3, requires_grad=True)
    upstream = torch.randn(3, 4, 3)
    (grad_unpack,) = torch.autograd.grad(
        (unpack(values, lengths_to_offsets(torch.tensor(lengths)), 4) * upstream).sum(), values
    )
    assert_close(grad_unpack, pack(upstream, torch.tensor(lengths)))


def test_length_groups_sort_stably_and_invert():
    lengths = torch.tensor([3, 1, 3, 2, 1, 3])
    groups = length_groups(lengths)
    assert groups.order.tolist() == [1, 4, 3, 0, 2, 5]  # stable: equal lengths keep their original order
    assert groups.lengths.tolist() == [1, 1, 2, 3, 3, 3]
    assert groups.rows == (2, 1, 3) and groups.sizes == (1, 2, 3)
    assert groups.offsets.tolist() == lengths_to_offsets(groups.lengths).tolist()
    assert groups.max_len == 3 and groups.n_tokens == 13
    assert_close(groups.order[groups.inverse], torch.arange(6))


def test_split_groups_are_dense_blocks_of_the_sorted_rows():
    lengths = torch.tensor([3, 1, 3, 2, 1])
    x = _padded(lengths.tolist(), 4)
    groups = length_groups(lengths)
    values = pack(x[groups.order], groups.lengths)  # [T, 3]
    row = 0
    for block, n_rows, size in zip(
        split_groups(values, groups.rows, groups.sizes), groups.rows, groups.sizes
    ):
        assert block.shape == (n_rows, size, 3)
        assert_close(block, x[groups.order[row : row + n_rows], :size])
        row += n_rows
