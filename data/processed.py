"""Leave-one-out splits, the sequence Dataset and its collate, and item popularity.

Leave-one-out per user with L items (positions 0..L-1, oldest first):
    test target = position L-1, valid target = position L-2,
    train targets = positions 1..L-3 ("sliding": one example per position, its prefix as history)
                    or only position L-3 ("last": one example per user, dropped when L-3 < 1);
                    "subsequence": the sliding examples, each history cut at training time to a random
                    contiguous run of its newest items (random_suffix; GRID's random sub-sequences);
                    "windows": one example per non-overlapping window of max_items + 1 items, the last
                    ending at position L-3 (targets L-3, L-3-max_items, ... >= 1); a model that predicts
                    every item of its input (modules/decoder_only.py, every_target) then trains each of
                    positions 1..L-3 exactly once per epoch.
    The history of a target at position t is seq[max(0, t - max_items) : t]: the most recent `max_items`
    items before it, never the target itself, never anything after it.
Users with fewer than MIN_ITEMS = 3 items have no valid history and are skipped in every split (their items
stay in the catalogue and in stage 1). SeqData reports how many: its `skipped_users` field, and a
DataWarning "<dataset>: skipped N users with < 3 items" on stderr when a split is built (Python shows a
repeated warning once per call site). Split logic is pure numpy (lengths in, index arrays out).
"""

import warnings
from collections.abc import Sequence
from typing import NamedTuple

import gin
import numpy as np
import torch
from torch.utils.data import Dataset

from data.schema import MIN_ITEMS, DataFormatError, DataWarning, RawDataset

SPLITS = ("train", "valid", "test")
TRAIN_EXAMPLES = ("sliding", "last", "subsequence", "windows")


class Examples(NamedTuple):
    """The examples of one split. rows: [X] int64 user row; ends: [X] int64 target position in that row."""

    rows: np.ndarray
    ends: np.ndarray


class SeqBatch(NamedTuple):
    """items: [B, N] int64 item indices, left-aligned oldest -> newest, -1 where padded (N = max_items);
    lengths: [B] int64 (>= 1); user_ids: [B] int64; targets: [B] int64."""

    items: torch.Tensor
    lengths: torch.Tensor
    user_ids: torch.Tensor
    targets: torch.Tensor


def split_examples(
    lengths: np.ndarray, split: str, train_examples: str = "sliding", max_items: int | None = None
) -> Examples:
    """Which (user row, target position) pairs form `split`, for sequence lengths [U] (module docstring).
    max_items: the window of "windows" (required there, unused otherwise)."""
    if split not in SPLITS or train_examples not in TRAIN_EXAMPLES:
        raise ValueError(f"split must be in {SPLITS} and train_examples in {TRAIN_EXAMPLES}")
    lengths = np.asarray(lengths, dtype=np.int64)
    kept = np.flatnonzero(lengths >= MIN_ITEMS)
    if split != "train" or train_examples == "last":  # "subsequence" has the sliding example set
        offset = {"test": 1, "valid": 2, "train": 3}[split]
        ends = lengths[kept] - offset
        keep = ends >= 1
        return Examples(kept[keep], ends[keep])
    counts = lengths[kept] - 3  # positions 1..L-3
    if train_examples == "windows":
        return window_examples(kept, counts, max_items)
    rows = np.repeat(kept, counts)
    first = np.repeat(np.cumsum(counts) - counts, counts)
    return Examples(rows, np.arange(len(rows), dtype=np.int64) - first + 1)


def window_examples(rows: np.ndarray, last: np.ndarray, max_items: int | None) -> Examples:
    """One example per window: targets last, last - max_items, ... >= 1 of each row (last [U] >= 0)."""
    if not max_items or max_items < 1:
        raise ValueError(f'train_examples = "windows" needs max_items >= 1, got {max_items}')
    counts = -(-last // max_items)  # ceil(last / max_items) windows per row
    first = np.repeat(np.cumsum(counts) - counts, counts)
    index = np.arange(counts.sum(), dtype=np.int64) - first  # 0, 1, ... within each row
    return Examples(np.repeat(rows, counts), np.repeat(last, counts) - index * max_items)


def visible_mask(lengths: np.ndarray, split: str) -> np.ndarray:
    """[ΣL] bool over the concatenated sequences: items seen before `split`'s targets (users with >= 3 items).

    train/valid: positions < L-2 (the training part); test: positions < L-1 (the valid target is known).
    """
    lengths = np.asarray(lengths, dtype=np.int64)
    cutoff = np.where(lengths >= MIN_ITEMS, lengths - (1 if split == "test" else 2), 0)
    position = np.arange(lengths.sum()) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    return position < np.repeat(cutoff, lengths)


def item_counts(sequences: Sequence[np.ndarray], n_items: int, split: str) -> np.ndarray:
    """[I] int64 interaction counts over the part of each sequence visible before `split`'s targets."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    lengths = np.array([len(s) for s in sequences], dtype=np.int64)
    flat = np.concatenate(list(sequences)) if len(sequences) else np.zeros(0, dtype=np.int64)
    return np.bincount(flat[visible_mask(lengths, split)], minlength=n_items).astype(np.int64)


def popularity(dataset: RawDataset, split: str) -> torch.Tensor:
    """[I] int64 item counts visible before `split`'s targets (see item_counts)."""
    return torch.from_numpy(item_counts(dataset.sequences, len(dataset.item_keys), split))


def random_suffix(batch: SeqBatch, generator: torch.Generator) -> SeqBatch:
    """Each history cut to its newest n items, n uniform in 1..length (drawn with `generator`): the
    history of a random contiguous sub-sequence that ends at the target; items stay left-aligned, -1 padded.
    """
    lengths = batch.lengths
    keep = (torch.rand(lengths.shape, generator=generator) * lengths).long().clamp(max=lengths - 1) + 1  # [B]
    column = torch.arange(batch.items.shape[1])  # [N]
    source = (lengths - keep).unsqueeze(1) + column  # [B, N] column of the original that lands here
    valid = column < keep.unsqueeze(1)
    items = batch.items.gather(1, source.clamp(max=batch.items.shape[1] - 1)).masked_fill(~valid, -1)
    return batch._replace(items=items, lengths=keep)


def trim_padding(batch: SeqBatch) -> SeqBatch:
    """The batch with its items cut to the longest history in it: [B, N] -> [B, max(lengths)] (host)."""
    return batch._replace(items=batch.items[:, : int(batch.lengths.max())])


def newest(history: Sequence, max_items: int) -> Sequence:
    """The last `max_items` items of `history` (oldest first): all of them when it is shorter."""
    return history[max(0, len(history) - max_items) :]


def collate_seq(rows: Sequence[tuple[np.ndarray, int, int]], max_items: int) -> SeqBatch:
    """(history, user_id, target) rows -> SeqBatch padded to [B, max_items]; keeps the newest max_items."""
    items = np.full((len(rows), max_items), -1, dtype=np.int64)
    lengths = np.zeros(len(rows), dtype=np.int64)
    for b, (history, _, _) in enumerate(rows):
        recent = newest(np.asarray(history, dtype=np.int64), max_items)
        items[b, : len(recent)] = recent
        lengths[b] = len(recent)
    if len(rows) and lengths.min() < 1:
        raise ValueError("every row needs a history of at least one item")
    user_ids = torch.tensor([int(row[1]) for row in rows], dtype=torch.int64)
    targets = torch.tensor([int(row[2]) for row in rows], dtype=torch.int64)
    return SeqBatch(torch.from_numpy(items), torch.from_numpy(lengths), user_ids, targets)


@gin.configurable(denylist=["dataset", "split"])
class SeqData(Dataset):
    """Rows (history [n] int64 with 1 <= n <= max_items, user_id, target) of one leave-one-out split.

    skipped_users: users left out of every split for having fewer than MIN_ITEMS items (also warned).
    """

    def __init__(self, dataset: RawDataset, split: str, max_items: int = gin.REQUIRED,
                 train_examples: str = "sliding") -> None:  # fmt: skip
        lengths = np.array([len(s) for s in dataset.sequences], dtype=np.int64)
        self.skipped_users = int((lengths < MIN_ITEMS).sum())
        if self.skipped_users:
            message = f"{dataset.name}: skipped {self.skipped_users} users with < {MIN_ITEMS} items"
            warnings.warn(message, DataWarning, 2)
        self.split, self.max_items, self.train_examples = split, max_items, train_examples
        self.examples = split_examples(lengths, split, train_examples, max_items)
        if len(self.examples.rows) == 0:
            need = MIN_ITEMS + 1 if split == "train" else MIN_ITEMS
            raise DataFormatError(
                f"{dataset.name}: the {split} split has no examples: it needs a user with at least {need} "
                f"items, and the longest history has {lengths.max(initial=0)}"
            )
        self.offsets = np.concatenate([[0], np.cumsum(lengths)])  # [U + 1]
        self.flat = np.concatenate(dataset.sequences) if len(lengths) else np.zeros(0, dtype=np.int64)
        self.user_ids = np.asarray(dataset.user_ids, dtype=np.int64)

    def __len__(self) -> int:
        return len(self.examples.rows)

    def __getitem__(self, index: int) -> tuple[np.ndarray, int, int]:
        row, end = int(self.examples.rows[index]), int(self.examples.ends[index])
        base = int(self.offsets[row])
        history = self.flat[base + max(0, end - self.max_items) : base + end]
        return history, int(self.user_ids[row]), int(self.flat[base + end])

    def history_lengths(self) -> np.ndarray:
        """[X] int64 history length of every example, in example order (1 <= n <= max_items)."""
        return np.minimum(self.examples.ends, self.max_items)

    def targets(self) -> np.ndarray:
        """[X] int64 target item of every example, in example order (what __getitem__ returns third)."""
        return self.flat[self.offsets[self.examples.rows] + self.examples.ends]

    def collate(self, rows: Sequence[tuple[np.ndarray, int, int]]) -> SeqBatch:
        """collate_seq with this split's max_items; pass as DataLoader(collate_fn=data.collate)."""
        return collate_seq(rows, self.max_items)

    def collate_trimmed(self, rows: Sequence[tuple[np.ndarray, int, int]]) -> SeqBatch:
        """`collate` cut to the batch's longest history ([B, max(lengths)]): for length-sorted batches."""
        return trim_padding(self.collate(rows))
