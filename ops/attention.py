"""Scaled dot-product attention: a naive reference, the fast kernel choice, and length-grouped attention.

Layout: heads before positions, `[*, H, S, Dh]`, as in F.scaled_dot_product_attention. Masks are bool with
True = attend (valid). The default scale is Dh^-0.5.

Kernel choice in `attention` (measured on a 2-core AMD EPYC (Zen 4), torch 2.13 CPU, the length-grouped blocks
of one Beauty-shaped batch, fwd+bwd per encoder layer): fp32 -> F.scaled_dot_product_attention (flash CPU
kernel, 55 ms; the plain math below takes 86 ms); bf16 on CPU -> the plain math with an fp32 softmax (32 ms;
SDPA's bf16 backward alone takes 88 ms). Both are bound to `naive_attention` by tests/ops/test_attention.py.
"""

import torch
import torch.nn.functional as F
from einops import einsum, rearrange

from ops.jagged import offsets_to_lengths, split_groups


def _mask(
    key_mask: torch.Tensor | None, causal: bool, n_queries: int, n_keys: int, device
) -> torch.Tensor | None:
    """-> bool mask broadcastable to [*, H, Sq, Sk] (True = attend), or None when everything is attended."""
    mask = None if key_mask is None else key_mask[..., None, None, :]  # [*, 1, 1, Sk]
    if causal:
        if n_queries != n_keys:
            raise ValueError(f"causal attention needs Sq == Sk, got {n_queries} and {n_keys}")
        lower = torch.ones(n_queries, n_keys, dtype=torch.bool, device=device).tril()  # [Sq, Sk]
        mask = lower if mask is None else mask & lower
    return mask


def naive_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    key_mask: torch.Tensor | None = None,
    causal: bool = False,
    scale: float | None = None,
) -> torch.Tensor:
    """Reference: softmax(Q Kᵀ · scale + M) V with M = 0 where attended, -inf elsewhere.

    q: [*, H, Sq, Dh]; k, v: [*, H, Sk, Dh]; key_mask: [*, Sk] bool (True = valid key) or None;
    causal: query i attends keys j ≤ i (needs Sq == Sk). Returns [*, H, Sq, Dh] in q's dtype.
    """
    scale = q.shape[-1] ** -0.5 if scale is None else scale
    scores = einsum(q.float(), k.float(), "... h q d, ... h k d -> ... h q k") * scale
    mask = _mask(key_mask, causal, q.shape[-2], k.shape[-2], q.device)
    if mask is not None:
        scores = scores + torch.zeros_like(scores).masked_fill(~mask, float("-inf"))
    weights = scores.softmax(dim=-1)
    return einsum(weights, v.float(), "... h q k, ... h k d -> ... h q d").to(q.dtype)


def _math_attention(q, k, v, mask, dropout_p: float) -> torch.Tensor:
    """Plain matmul attention with an fp32 softmax, for low-precision CPU tensors."""
    scores = torch.matmul(q, k.transpose(-1, -2)) * q.shape[-1] ** -0.5  # [*, H, Sq, Sk], q's dtype
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    weights = F.dropout(scores.softmax(dim=-1, dtype=torch.float32), p=dropout_p)
    return torch.matmul(weights.to(v.dtype), v)


def attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    key_mask: torch.Tensor | None = None,
    causal: bool = False,
    dropout_p: float = 0.0,
) -> torch.Tensor:
    """Fast path of `naive_attention` (default scale), plus dropout `dropout_p` on the attention weights.

    q: [*, H, Sq, Dh]; k, v: [*, H, Sk, Dh]; key_mask: [*, Sk] bool or None -> [*, H, Sq, Dh].
    The caller passes dropout_p = 0 in eval mode.
    """
    if q.device.type == "cpu" and q.dtype in (torch.bfloat16, torch.float16):
        return _math_attention(
            q, k, v, _mask(key_mask, causal, q.shape[-2], k.shape[-2], q.device), dropout_p
        )
    if key_mask is None:
        return F.scaled_dot_product_attention(q, k, v, dropout_p=dropout_p, is_causal=causal)
    mask = _mask(key_mask, causal, q.shape[-2], k.shape[-2], q.device)
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout_p)


def _attend_blocks(blocks, dropout_p: float) -> torch.Tensor:
    """blocks: iterable of (q [b, s, H, Dh], k, v [b, s', H, Dh]) -> outputs concatenated, [Σ b·s, H, Dh]."""
    outs = []
    for q, k, v in blocks:
        heads_first = [rearrange(t, "b s h d -> b h s d") for t in (q, k, v)]
        out = attention(*heads_first, dropout_p=dropout_p)  # [b, H, s, Dh]
        outs.append(rearrange(out, "b h s d -> (b s) h d"))
    return torch.cat(outs)


def grouped_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    rows: tuple[int, ...],
    q_sizes: tuple[int, ...],
    kv_sizes: tuple[int, ...],
    dropout_p: float = 0.0,
) -> torch.Tensor:
    """Bidirectional attention inside each row of a length-grouped packed batch; no mask, no padding.

    Group g holds rows[g] rows, each with q_sizes[g] queries and kv_sizes[g] keys, stored row after row:
    q: [Σ rows_g·q_sizes_g, H, Dh]; k, v: [Σ rows_g·kv_sizes_g, H, Dh] -> [Σ rows_g·q_sizes_g, H, Dh].
    """
    blocks = zip(
        split_groups(q, rows, q_sizes), split_groups(k, rows, kv_sizes), split_groups(v, rows, kv_sizes)
    )
    return _attend_blocks(blocks, dropout_p)


def grouped_self_attention(
    qkv: torch.Tensor, rows: tuple[int, ...], sizes: tuple[int, ...], dropout_p: float = 0.0
) -> torch.Tensor:
    """`grouped_attention(q, k, v, rows, sizes, sizes)` on a fused qkv: [T, 3, H, Dh] -> [T, H, Dh].

    Splitting the fused tensor once per group (rather than q, k and v separately) halves the copies in the
    backward pass.
    """
    blocks = (blk.unbind(2) for blk in split_groups(qkv, rows, sizes))  # [b, s, H, Dh] each
    return _attend_blocks(blocks, dropout_p)


def jagged_attention_reference(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    q_offsets: torch.Tensor,
    kv_offsets: torch.Tensor,
) -> torch.Tensor:
    """Reference for `grouped_attention`, row by row with `naive_attention`.

    q: [Tq, H, Dh] packed by q_offsets [B+1]; k, v: [Tk, H, Dh] packed by kv_offsets [B+1] -> [Tq, H, Dh].
    """
    outs = []
    q_rows = q.split(offsets_to_lengths(q_offsets).tolist())
    k_rows = k.split(offsets_to_lengths(kv_offsets).tolist())
    v_rows = v.split(offsets_to_lengths(kv_offsets).tolist())
    for qb, kb, vb in zip(q_rows, k_rows, v_rows):
        out = naive_attention(*(rearrange(t, "s h d -> h s d") for t in (qb, kb, vb)))  # [H, s, Dh]
        outs.append(rearrange(out, "h s d -> s h d"))
    return torch.cat(outs)
