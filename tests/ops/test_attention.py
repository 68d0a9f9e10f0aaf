import math

import pytest
import torch
from einops import rearrange
from torch.testing import assert_close

from ops.attention import (
    _math_attention,
    attention,
    grouped_attention,
    grouped_self_attention,
    jagged_attention_reference,
    naive_attention,
)
from ops.jagged import lengths_to_offsets


def _qkv(*shape, dtype=torch.float32):
    return [torch.randn(*shape, dtype=dtype, requires_grad=True) for _ in range(3)]


def _grads(out, inputs, upstream):
    return torch.autograd.grad(out, inputs, upstream)


def test_naive_attention_matches_formula_by_hand():
    q, k, v = torch.randn(1, 1, 2, 3), torch.randn(1, 1, 4, 3), torch.randn(1, 1, 4, 3)
    out = naive_attention(q, k, v)
    for i in range(2):
        scores = [sum(q[0, 0, i, d] * k[0, 0, j, d] for d in range(3)) / math.sqrt(3) for j in range(4)]
        weights = [math.exp(s) for s in scores]
        expected = sum(w * v[0, 0, j] for j, w in enumerate(weights)) / sum(weights)
        assert_close(out[0, 0, i], expected)


def test_naive_key_mask_equals_dropping_keys_and_causal_equals_prefix():
    q, k, v = torch.randn(2, 2, 5, 4), torch.randn(2, 2, 5, 4), torch.randn(2, 2, 5, 4)
    mask = torch.tensor([[True, True, False, True, False], [True] * 5])
    out = naive_attention(q, k, v, key_mask=mask)
    keep = [0, 1, 3]
    assert_close(out[0], naive_attention(q[0], k[0][:, keep], v[0][:, keep]))
    assert_close(out[1], naive_attention(q[1], k[1], v[1]))
    causal = naive_attention(q, k, v, causal=True)
    for i in range(5):
        assert_close(
            causal[..., i, :],
            naive_attention(q[..., i : i + 1, :], k[..., : i + 1, :], v[..., : i + 1, :])[..., 0, :],
        )


@pytest.mark.parametrize("mode", ["plain", "key_mask", "causal", "both"])
def test_attention_matches_naive_forward_backward(mode):
    q, k, v = _qkv(3, 2, 6, 8)
    mask = torch.rand(3, 6) > 0.3
    mask[:, 0] = True
    key_mask = mask if mode in ("key_mask", "both") else None
    causal = mode in ("causal", "both")
    fast = attention(q, k, v, key_mask=key_mask, causal=causal)
    ref = naive_attention(q, k, v, key_mask=key_mask, causal=causal)
    assert_close(fast, ref)
    upstream = torch.randn_like(ref)
    for a, b in zip(_grads(fast, (q, k, v), upstream), _grads(ref, (q, k, v), upstream)):
        assert_close(a, b)


def test_math_attention_matches_naive_in_float32_and_bf16():
    q, k, v = _qkv(2, 2, 5, 8)
    mask = torch.tensor([True, True, True, False, False]).expand(1, 1, 5, 5)
    ref = naive_attention(q, k, v, key_mask=mask[0, 0, :1].expand(2, 5))
    fast = _math_attention(q, k, v, mask, 0.0)
    assert_close(fast, ref)
    upstream = torch.randn_like(ref)
    for a, b in zip(_grads(fast, (q, k, v), upstream), _grads(ref, (q, k, v), upstream)):
        assert_close(a, b)
    low = [t.detach().bfloat16().requires_grad_() for t in (q, k, v)]
    out = attention(*low)  # the bf16 CPU path
    assert out.dtype == torch.bfloat16
    assert_close(out.float(), naive_attention(q, k, v), atol=3e-2, rtol=3e-2)
    for a, b in zip(
        _grads(out, low, upstream.bfloat16()), _grads(naive_attention(q, k, v), (q, k, v), upstream)
    ):
        assert_close(a.float(), b, atol=5e-2, rtol=5e-2)


def _grouped_case(q_sizes_per_row, kv_sizes_per_row, heads=2, dim=4):
    """Rows already in grouped order -> (rows, q_sizes, kv_sizes, q, k, v, q_offsets, kv_offsets)."""
    pairs = list(zip(q_sizes_per_row, kv_sizes_per_row))
    rows, q_sizes, kv_sizes = [], [], []
    for pair in pairs:
        if rows and (q_sizes[-1], kv_sizes[-1]) == pair:
            rows[-1] += 1
        else:
            rows.append(1)
            q_sizes.append(pair[0])
            kv_sizes.append(pair[1])
    q = torch.randn(sum(q_sizes_per_row), heads, dim, requires_grad=True)
    k, v = (torch.randn(sum(kv_sizes_per_row), heads, dim, requires_grad=True) for _ in range(2))
    q_off = lengths_to_offsets(torch.tensor(q_sizes_per_row))
    kv_off = lengths_to_offsets(torch.tensor(kv_sizes_per_row))
    return tuple(rows), tuple(q_sizes), tuple(kv_sizes), q, k, v, q_off, kv_off


def test_grouped_attention_matches_row_by_row_reference():
    rows, q_sizes, kv_sizes, q, k, v, q_off, kv_off = _grouped_case([3, 3, 3, 3], [1, 1, 4, 6])
    fast = grouped_attention(q, k, v, rows, q_sizes, kv_sizes)
    ref = jagged_attention_reference(q, k, v, q_off, kv_off)
    assert_close(fast, ref)
    upstream = torch.randn_like(ref)
    for a, b in zip(_grads(fast, (q, k, v), upstream), _grads(ref, (q, k, v), upstream)):
        assert_close(a, b)


def test_grouped_self_attention_matches_row_by_row_reference():
    lengths = [1, 2, 2, 5, 5, 5]
    qkv = torch.randn(sum(lengths), 3, 2, 4, requires_grad=True)
    fast = grouped_self_attention(qkv, (1, 2, 3), (1, 2, 5))
    offsets = lengths_to_offsets(torch.tensor(lengths))
    ref = jagged_attention_reference(*qkv.unbind(1), offsets, offsets)
    assert_close(fast, ref)
    upstream = torch.randn_like(ref)
    assert_close(*(torch.autograd.grad(out, qkv, upstream)[0] for out in (fast, ref)))


def test_attention_dropout_drops_weights_and_rescales():
    q, k = torch.randn(1, 1, 6, 4), torch.randn(1, 1, 6, 4)
    v = torch.eye(6).reshape(1, 1, 6, 6)  # output row i = (dropped) attention weights of query i
    weights = naive_attention(q, k, v)
    out = _math_attention(q, k, v, None, 0.5)
    kept = out != 0
    assert_close(out[kept], 2 * weights[kept])  # kept weights are scaled by 1 / (1 - p)
    assert 0 < kept.sum() < 36


@pytest.mark.gpu
def test_grouped_attention_cuda_matches_reference():
    rows, q_sizes, kv_sizes, q, k, v, q_off, kv_off = _grouped_case([2, 2, 2], [3, 3, 7])
    ref = jagged_attention_reference(q, k, v, q_off, kv_off)
    dev = [t.detach().cuda().requires_grad_() for t in (q, k, v)]
    fast = grouped_attention(*dev, rows, q_sizes, kv_sizes)
    assert_close(fast.cpu(), ref, atol=1e-4, rtol=1e-4)
    upstream = torch.randn_like(ref)
    for a, b in zip(_grads(fast, dev, upstream.cuda()), _grads(ref, (q, k, v), upstream)):
        assert_close(a.cpu(), b, atol=1e-4, rtol=1e-4)
    assert rearrange(fast, "t h d -> t (h d)").is_cuda
