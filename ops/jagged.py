"""Variable-length (jagged) batches: plain PyTorch reference ops and the length-grouped layout.

A jagged batch of B rows has two forms:
- padded (canonical): `[B, S, ...]` plus `lengths [B]`; row b is valid at positions `s < lengths[b]`;
- packed: `values [T, ...]` with T = Σ lengths plus `offsets [B+1]`; row b owns
  `values[offsets[b]:offsets[b+1]]`.

`valid_mask` is the one place a padding mask is derived (True = valid).

Fast path: `LengthGroups`. The transformer sorts rows by length (stable) and packs them in that order;
runs of rows with equal length are then contiguous, dense blocks `[rows, length, ...]` of the packed values,
free to view. Position-wise layers run on the packed values (no padding FLOPs) and attention runs per block
with no mask at all (ops/attention.py). `length_groups` reads the lengths on the host once per batch.
"""

from typing import NamedTuple

import torch
import torch.nn.functional as F


def lengths_to_offsets(lengths: torch.Tensor) -> torch.Tensor:
    """lengths: [B] int64 -> offsets: [B+1] int64, offsets[0] = 0, offsets[b+1] = Σ_{i≤b} lengths[i]."""
    return F.pad(lengths.cumsum(0), (1, 0))


def offsets_to_lengths(offsets: torch.Tensor) -> torch.Tensor:
    """offsets: [B+1] int64 -> lengths: [B] int64."""
    return offsets[1:] - offsets[:-1]


def valid_mask(lengths: torch.Tensor, max_len: int) -> torch.Tensor:
    """lengths: [B] int64 -> [B, max_len] bool, True where position s < lengths[b] (valid)."""
    positions = torch.arange(max_len, device=lengths.device)  # [S]
    return positions.unsqueeze(0) < lengths.unsqueeze(1)


def pack(padded: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """padded: [B, S, *] with lengths [B] (each ≤ S) -> values [T, *], T = Σ lengths, rows in order.

    Reads only the valid positions: whatever sits in the padding is ignored.
    """
    return padded[valid_mask(lengths, padded.shape[1])]


def unpack(values: torch.Tensor, offsets: torch.Tensor, max_len: int) -> torch.Tensor:
    """values: [T, *], offsets: [B+1] -> padded [B, max_len, *], zeros at padding."""
    lengths = offsets_to_lengths(offsets)
    out = values.new_zeros(lengths.shape[0], max_len, *values.shape[1:])
    out[valid_mask(lengths, max_len)] = values
    return out


class LengthGroups(NamedTuple):
    """Rows of a batch sorted by length (stable), split into runs of equal length.

    order: [B] int64, sorted slot -> original row (sorted = original[order]).
    inverse: [B] int64, original row -> sorted slot (original = sorted[inverse]).
    lengths: [B] int64, lengths in sorted order; offsets: [B+1] int64 of the packed (sorted) values.
    rows: per group, the number of rows; sizes: per group, the common length. Python ints (host side), so
    the group views are static slices.
    """

    order: torch.Tensor
    inverse: torch.Tensor
    lengths: torch.Tensor
    offsets: torch.Tensor
    rows: tuple[int, ...]
    sizes: tuple[int, ...]

    @property
    def max_len(self) -> int:
        return max(self.sizes)

    @property
    def n_tokens(self) -> int:
        return sum(r * s for r, s in zip(self.rows, self.sizes))


def length_groups(lengths: torch.Tensor) -> LengthGroups:
    """lengths: [B] int64 (≥ 1) -> LengthGroups. One device->host copy of `lengths` (B ints)."""
    host = lengths.detach().cpu()
    order = torch.sort(host, stable=True).indices  # [B]
    sorted_lengths = host[order]
    sizes, rows = torch.unique_consecutive(sorted_lengths, return_counts=True)
    inverse = torch.empty_like(order)
    inverse[order] = torch.arange(order.shape[0])
    device = lengths.device
    return LengthGroups(
        order=order.to(device),
        inverse=inverse.to(device),
        lengths=sorted_lengths.to(device),
        offsets=lengths_to_offsets(sorted_lengths).to(device),
        rows=tuple(rows.tolist()),
        sizes=tuple(sizes.tolist()),
    )


def split_groups(values: torch.Tensor, rows: tuple[int, ...], sizes: tuple[int, ...]) -> list[torch.Tensor]:
    """values: [Σ rows_g·sizes_g, *] -> list of views [rows_g, sizes_g, *], one per group.

    Uses `split` (its backward is one concatenation), not per-group slicing (whose backward would write a
    full-size zero gradient per group).
    """
    chunks = values.split([r * s for r, s in zip(rows, sizes)])
    return [c.view(r, s, *values.shape[1:]) for c, r, s in zip(chunks, rows, sizes)]
