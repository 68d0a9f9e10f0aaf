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
    contiguous prefix (a layer-major cache's slice) is read in place, never copied per row or per call; the
    softmax runs over the two score blocks without concatenating them (joint_softmax)."""
    scale = q.shape[-1] ** -0.5
    q_heads = rearrange(q, "b g h d -> b h g d")
    prefix_scores = torch.matmul(q_heads, prefix_k.transpose(-1, -2)).float() * scale  # [B, H, G, S]
    prefix_scores.masked_fill_(~prefix_valid[:, None, None, :], float("-inf"))
    own_scores = torch.matmul(q.unsqueeze(-2), own_k.transpose(-1, -2)).float() * scale  # [B, G, H, 1, t]
    own_scores = rearrange(own_scores, "b g h 1 t -> b h g t")
    prefix_weights, own_weights = joint_softmax(prefix_scores, own_scores)
    from_prefix = torch.matmul(prefix_weights.to(q.dtype), prefix_v)  # [B, H, G, Dh]
    own_weights = rearrange(own_weights.to(q.dtype), "b h g t -> b g h 1 t")
    from_own = torch.matmul(own_weights, own_v).squeeze(-2)  # [B, G, H, Dh]
    return rearrange(from_prefix, "b h g d -> b g h d") + from_own


def joint_softmax(a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """softmax over the concatenation of a [*, Sa] and b [*, Sb] along the last axis, returned in two parts
    (the halves of softmax(cat([a, b]))), without building the concatenation. Every row needs one finite
    score. Overwrites a and b in place (inference only: autograd cannot go through it)."""
    peak = a.amax(-1, keepdim=True)  # [*, 1]
    if b.shape[-1]:
        peak = torch.maximum(peak, b.amax(-1, keepdim=True))
    a = a.sub_(peak).exp_()
    b = b.sub_(peak).exp_()
    total = a.sum(-1, keepdim=True) + b.sum(-1, keepdim=True)
    return a.div_(total), b.div_(total)


def prefix_attention_reference(q, prefix_k, prefix_v, prefix_valid, own_k, own_v) -> torch.Tensor:
    """Same contract as `prefix_attention`, through naive_attention on a per-row copy of the prefix."""
    n_rows = q.shape[1]
    keys = torch.cat([repeat(prefix_k, "b h s d -> b g h s d", g=n_rows), own_k], dim=3)
    values = torch.cat([repeat(prefix_v, "b h s d -> b g h s d", g=n_rows), own_v], dim=3)
    own_valid = torch.ones(own_k.shape[:2] + own_k.shape[3:4], dtype=torch.bool, device=q.device)
    valid = torch.cat([repeat(prefix_valid, "b s -> b g s", g=n_rows), own_valid], dim=2)  # [B, G, S+t]
    out = naive_attention(rearrange(q, "b g h d -> b g h 1 d"), keys, values, key_mask=valid)
    return rearrange(out, "b g h 1 d -> b g h d")
