"""SASRec's view of the leave-one-out split: each user's history right-aligned in a window of T positions."""

from typing import NamedTuple

import numpy as np

from data.processed import newest, split_examples
from data.schema import MIN_ITEMS


class Windows(NamedTuple):
    """items: [U, T] int64 right-aligned history (-1 = padding); targets: [U, T] int64 next item of each
    position (-1 = none) for training, or [U] the held-out item for valid / test; users: [U] int64 rows."""

    items: np.ndarray
    targets: np.ndarray
    users: np.ndarray


def right_align(seqs: list[np.ndarray], max_len: int) -> np.ndarray:
    """[U, max_len] int64: the last max_len items of each sequence at the right end, -1 before them."""
    out = np.full((len(seqs), max_len), -1, dtype=np.int64)
    for u, seq in enumerate(seqs):
        recent = newest(seq, max_len)
        out[u, max_len - len(recent) :] = recent
    return out


def windows(sequences: list[np.ndarray], split: str, max_len: int) -> Windows:
    """The same leave-one-out split as data/processed.py (its module docstring), as SASRec windows.

    train: inputs = positions 0..L-4 of each user with L > MIN_ITEMS, targets = positions 1..L-3 (exactly the
    decoder's sliding training targets); valid / test: history before the target of split_examples.
    """
    lengths = np.array([len(s) for s in sequences], dtype=np.int64)
    if split == "train":
        users = np.flatnonzero(lengths > MIN_ITEMS)  # L = 3 users have no training target
        inputs = [sequences[u][: lengths[u] - 3] for u in users]
        targets = [sequences[u][1 : lengths[u] - 2] for u in users]
        return Windows(right_align(inputs, max_len), right_align(targets, max_len), users)
    rows, ends = split_examples(lengths, split)
    history = [sequences[r][:e] for r, e in zip(rows, ends)]
    targets = np.array([sequences[r][e] for r, e in zip(rows, ends)], dtype=np.int64)
    return Windows(right_align(history, max_len), targets, rows)
