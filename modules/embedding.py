"""Embeddings of semantic-ID tokens, hashed user ids and history positions.

Token ids. Level l ∈ [0, C), code c ∈ [0, K) is token `l·K + c` (`token_id`, the one mapping); padding
(code -1) is token -1 there, and `SemIdEmbedder` sends it to its own zero row C·K (never to a wrapped index).

Positions. `history_grid` numbers history items from the NEWEST one: the most recent item always has
position 0, the one before it 1, and so on. The reference numbered tokens from the oldest item of a
left-aligned window, so the newest item's position depended on the history length and differed between
short training windows and full test histories; counting from the newest item removes that mismatch.
"""

from typing import NamedTuple

import torch
from einops import rearrange, repeat
from torch import nn

PAD_TOKEN = -1

_MASK32 = 0xFFFFFFFF
_FMIX32_MULTIPLIERS = (0x85EBCA6B, 0xC2B2AE35)


def token_id(level: torch.Tensor | int, code: torch.Tensor, codebook_size: int) -> torch.Tensor:
    """level·K + code where code ≥ 0; PAD_TOKEN (-1) where code < 0. Shapes broadcast; int64."""
    ids = level * codebook_size + code
    return torch.where(code >= 0, ids, torch.full_like(ids, PAD_TOKEN))


def _mul32(x: torch.Tensor, multiplier: int) -> torch.Tensor:
    """(x · multiplier) mod 2^32 for 0 ≤ x < 2^32, in int64 without overflow (16-bit halves)."""
    low = x * (multiplier & 0xFFFF)
    high = ((x * (multiplier >> 16)) & 0xFFFF) << 16
    return (low + high) & _MASK32


def hash_user_ids(user_ids: torch.Tensor, n_buckets: int) -> torch.Tensor:
    """user_ids: [*] int64 (≥ 0) -> buckets [*] int64 in [0, n_buckets).

    MurmurHash3's 32-bit finalizer (fmix32: xor-shift, multiply, xor-shift, multiply, xor-shift) of the low 32
    bits of the id, then mod n_buckets. fmix32 is a bijection on 32-bit ints that spreads consecutive ids
    uniformly, unlike `id % n_buckets`, which maps consecutive dataset ids to consecutive buckets.
    """
    x = user_ids & _MASK32
    x = x ^ (x >> 16)
    x = _mul32(x, _FMIX32_MULTIPLIERS[0])
    x = x ^ (x >> 13)
    x = _mul32(x, _FMIX32_MULTIPLIERS[1])
    x = x ^ (x >> 16)
    return x % n_buckets


class SemIdEmbedder(nn.Module):
    """Table of C·K + 1 rows: token `token_id(l, c, K)` at row l·K + c, padding at the zero row C·K."""

    def __init__(self, n_codes: int, codebook_size: int, dim: int):
        super().__init__()
        self.n_codes, self.codebook_size = n_codes, codebook_size
        self.pad_row = n_codes * codebook_size
        self.table = nn.Embedding(self.pad_row + 1, dim, padding_idx=self.pad_row)

    def forward(self, level: torch.Tensor | int, code: torch.Tensor) -> torch.Tensor:
        """level, code: [*] int64 (code -1 = padding) -> [*, dim]; padding embeds to zeros."""
        ids = token_id(level, code, self.codebook_size)
        return self.table(torch.where(ids == PAD_TOKEN, torch.full_like(ids, self.pad_row), ids))


class UserIdEmbedder(nn.Module):
    """Hashing trick: user id -> `hash_user_ids(id, n_buckets)` -> one of n_buckets learned vectors."""

    def __init__(self, n_buckets: int, dim: int):
        super().__init__()
        self.n_buckets = n_buckets
        self.table = nn.Embedding(n_buckets, dim)

    def forward(self, user_ids: torch.Tensor) -> torch.Tensor:
        """user_ids: [*] int64 -> [*, dim]."""
        return self.table(hash_user_ids(user_ids, self.n_buckets))


class HistoryGrid(NamedTuple):
    """Encoder token fields on the padded grid [B, S], S = u + N·C (u = 1 with a user token, else 0).

    code: int64, the token's code (-1 for the user token and for padding); level: int64 in [0, C);
    position: int64, item position counted from the newest item (0 = newest);
    lengths: [B] int64, tokens per row = u + C·n_items. The user token, if any, is slot 0 of each row (its
    code, level and position fields are -1, 0, 0 and unused). Values at padded slots are meaningless.
    """

    code: torch.Tensor
    level: torch.Tensor
    position: torch.Tensor
    lengths: torch.Tensor


def history_grid(history: torch.Tensor, lengths: torch.Tensor, user_token: bool) -> HistoryGrid:
    """history: [B, N, C] int64 (-1 padded, oldest first), lengths: [B] items -> HistoryGrid [B, u + N·C]."""
    batch, n_items, n_codes = history.shape
    item = torch.arange(n_items, device=history.device)  # [N]
    position = (lengths.unsqueeze(1) - 1 - item).clamp(min=0)  # [B, N], 0 = newest
    fields = (
        rearrange(history, "b n c -> b (n c)"),
        repeat(torch.arange(n_codes, device=history.device), "c -> b (n c)", b=batch, n=n_items),
        repeat(position, "b n -> b (n c)", c=n_codes),
    )
    if user_token:
        fields = tuple(
            torch.cat([torch.full_like(f[:, :1], fill), f], dim=1) for f, fill in zip(fields, (-1, 0, 0))
        )
    return HistoryGrid(*fields, lengths=lengths * n_codes + int(user_token))
