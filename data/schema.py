"""The one in-memory form of a dataset that every loader returns, plus the data errors and warnings.

TigerError is the base of every error in the input (data files, the semantic-ID artifact, run files, gin
configs, a non-finite loss): the CLIs (training.cli.run_cli) print one without a traceback. It lives here,
in the lowest module that raises one; ops/ and modules/ raise only built-in errors.
"""

from typing import Any, NamedTuple

import numpy as np

MIN_ITEMS = 3  # a user needs this many items to have a test target, a validation target and a history


class RawDataset(NamedTuple):
    """A dataset as loaded from disk, before any split.

    name: short dataset name, e.g. "amazon-beauty", "ml-1m", "synthetic".
    sequences: one array per user, item indices 0..I-1, oldest first, int64.
    user_ids: [U] int64, unique: the dataset's own user numbers (row u of `sequences` is user_ids[u]'s).
    item_keys: I strings, the dataset's own item ids (ASIN, MovieID); index = item index.
    item_texts: I strings, the text embedded for each item; index = item index.

    Items are numbered 0..I-1 once, in the loader; nothing downstream renumbers.
    """

    name: str
    sequences: list[np.ndarray]
    user_ids: np.ndarray
    item_keys: list[str]
    item_texts: list[str]


class TigerError(Exception):
    """An error in the input, whose message names the file, line, binding or value at fault."""


class DataFormatError(ValueError, TigerError):
    """A data file does not have the expected format. The message names the file and line."""


class UnknownItemError(KeyError, TigerError):
    """Item ids that are not in the dataset's item keys; the message names them."""

    def __str__(self) -> str:  # KeyError would print the repr of its message
        return str(self.args[0]) if self.args else ""


class DataWarning(UserWarning):
    """Something in the data was skipped or filled in; the message says how many rows were affected."""


def shown(value: Any, limit: int = 80) -> str:
    """repr(value) for an error message, cut to `limit` characters: every message names its value."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def check_dataset(data: RawDataset) -> RawDataset:
    """Checks the invariants of RawDataset and returns it unchanged. Raises DataFormatError when there is
    nothing to train or evaluate on (no item, no user with MIN_ITEMS items), ValueError naming any other
    fault (a loader bug)."""
    n_items = len(data.item_keys)
    if n_items == 0 or len(data.sequences) == 0:
        raise DataFormatError(
            f"{data.name}: {len(data.sequences)} users and {n_items} items; nothing to train on"
        )
    longest = max(len(seq) for seq in data.sequences)
    if longest < MIN_ITEMS:
        raise DataFormatError(
            f"{data.name}: no user has at least {MIN_ITEMS} items (the longest history has {longest}), so "
            "no user has a history, a validation and a test item; nothing to train or evaluate on"
        )
    if len(data.item_texts) != n_items:
        raise ValueError(f"{data.name}: {n_items} item keys but {len(data.item_texts)} item texts")
    if len(data.sequences) != len(data.user_ids):
        raise ValueError(f"{data.name}: {len(data.sequences)} sequences but {len(data.user_ids)} user ids")
    users, counts = np.unique(data.user_ids, return_counts=True)
    if (counts > 1).any():
        user = users[counts > 1][0]
        rows = np.flatnonzero(data.user_ids == user)[:2].tolist()
        raise ValueError(
            f"{data.name}: user id {user} is in rows {rows[0]} and {rows[1]}; user ids must be unique"
        )
    for row, seq in enumerate(data.sequences):
        if seq.dtype != np.int64 or seq.ndim != 1:
            raise ValueError(
                f"{data.name}: sequence {row} is {seq.dtype} with shape {seq.shape}, not int64 [L]"
            )
        if seq.size and (seq.min() < 0 or seq.max() >= n_items):
            bad = seq[(seq < 0) | (seq >= n_items)][0]
            raise ValueError(
                f"{data.name}: user {data.user_ids[row]} (row {row}) has item index {bad}, "
                f"outside [0, {n_items})"
            )
    return data
