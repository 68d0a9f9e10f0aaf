"""Attention of decoding rows over a shared prefix cache plus each row's own keys (decoder-only decoding).

G rows (beams) per user share the user's cached history K/V (the prefix, S positions, some invalid where the
history is padded) and each row has t keys of its own (the codes it generated). One softmax runs over the
S + t keys. The fast path scores all G rows of a user against one copy of the prefix;
`prefix_attention_reference` copies the prefix per row and calls ops/attention.py's naive reference, and a
test binds the two.
"""

import torch
from einops import rearrange, repeat

from ops.attention import naive_attention


def prefix_attention(
    q: torch.Tensor,
    prefix_k: torch.Tensor,
    prefix_v: torch.Tensor,
    prefix_valid: torch.Tensor,
    own_k: torch.Tensor,
    own_v: torch.Tensor,
) -> torch.Tensor:
    """q: [B, G, H, Dh]; prefix_k, prefix_v: [B, H, S, Dh]; prefix_valid: [B, S] bool (True = attend);
    own_k, own_v: [B, G, H, t, Dh] -> [B, G, H, Dh]. Scale Dh^-0.5; softmax in float32.

    The prefix products are batched over (B, H) with the G rows of a user as the matrix rows, so a
    contiguous prefix (a layer-major cache's slice) is read in place, never copied per row or per call."""
    n_prefix = prefix_k.shape[2]
    scale = q.shape[-1] ** -0.5
    q_heads = rearrange(q, "b g h d -> b h g d")
    prefix_scores = torch.matmul(q_heads, prefix_k.transpose(-1, -2)).float() * scale  # [B, H, G, S]
    prefix_scores.masked_fill_(~prefix_valid[:, None, None, :], float("-inf"))
    own_scores = torch.matmul(q.unsqueeze(-2), own_k.transpose(-1, -2)).float() * scale  # [B, G, H, 1, t]
    own_scores = rearrange(own_scores, "b g h 1 t -> b h g t")
    weights = torch.cat([prefix_scores, own_scores], dim=-1).softmax(dim=-1).to(q.dtype)  # [B, H, G, S+t]
    from_prefix = torch.matmul(weights[..., :n_prefix], prefix_v)  # [B, H, G, Dh]
    own_weights = rearrange(weights[..., n_prefix:], "b h g t -> b g h 1 t")
    from_own = torch.matmul(own_weights, own_v).squeeze(-2)  # [B, G, H, Dh]
    return rearrange(from_prefix, "b h g d -> b g h d") + from_own


def prefix_attention_reference(q, prefix_k, prefix_v, prefix_valid, own_k, own_v) -> torch.Tensor:
    """Same contract as `prefix_attention`, through naive_attention on a per-row copy of the prefix."""
    n_rows = q.shape[1]
    keys = torch.cat([repeat(prefix_k, "b h s d -> b g h s d", g=n_rows), own_k], dim=3)
    values = torch.cat([repeat(prefix_v, "b h s d -> b g h s d", g=n_rows), own_v], dim=3)
    own_valid = torch.ones(own_k.shape[:2] + own_k.shape[3:4], dtype=torch.bool, device=q.device)
    valid = torch.cat([repeat(prefix_valid, "b s -> b g s", g=n_rows), own_valid], dim=2)  # [B, G, S+t]
    out = naive_attention(rearrange(q, "b g h d -> b g h 1 d"), keys, values, key_mask=valid)
    return rearrange(out, "b g h 1 d -> b g h d")
