"""Items become semantic-ID codes here, and only here."""

from typing import NamedTuple

import torch


class TokenBatch(NamedTuple):
    """A batch of user histories written as semantic-ID codes.

    history: [B, N, C] int64, codes of each history item (oldest first, left-aligned); -1 where padded.
    lengths: [B] int64, number of valid history items per row (>= 1).
    user_ids: [B] int64, the dataset's user numbers (hashed by the model, if it uses them).
    target: [B, C] int64, codes of the item to predict; -1 rows are allowed only at inference.
    """

    history: torch.Tensor
    lengths: torch.Tensor
    user_ids: torch.Tensor
    target: torch.Tensor


def items_to_codes(items: torch.Tensor, item_codes: torch.Tensor) -> torch.Tensor:
    """Look up the codes of item indices.

    items: [...] int64 item indices, -1 where padded. item_codes: [I, C] int64.
    Returns [..., C] int64 with -1 wherever `items` is -1. Raises on indices outside [-1, I).
    """
    n_items = item_codes.shape[0]
    if items.numel() and (int(items.min()) < -1 or int(items.max()) >= n_items):
        raise IndexError(
            f"item index outside [-1, {n_items}): min {int(items.min())}, max {int(items.max())}"
        )
    valid = items >= 0
    codes = item_codes[items.clamp(min=0)]  # [..., C]
    return torch.where(valid.unsqueeze(-1), codes, torch.full_like(codes, -1))


def tokenize(
    items: torch.Tensor,
    lengths: torch.Tensor,
    user_ids: torch.Tensor,
    targets: torch.Tensor,
    item_codes: torch.Tensor,
) -> TokenBatch:
    """SeqBatch fields -> TokenBatch. items: [B, N]; lengths, user_ids, targets: [B]; item_codes: [I, C]."""
    return TokenBatch(
        history=items_to_codes(items, item_codes),
        lengths=lengths,
        user_ids=user_ids,
        target=items_to_codes(targets, item_codes),
    )
