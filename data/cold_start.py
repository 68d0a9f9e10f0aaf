"""Cold-start items (LIGER, Yang et al. 2024): items that occur only as validation or test targets.

An item is cold when it occurs in some user's sequence and every occurrence is a validation or test target,
i.e. at position L-2 or L-1 of a user with L >= MIN_ITEMS items. Such items are never in a training history
nor a training target, so withholding them from both stages' training (train_rqvae's and train_decoder's
`cold_start` bindings) loses no training example; stage 1 still gives them semantic IDs with its trained
encoder. Items that occur nowhere stay warm (they are in the catalogue, as in a normal run).
"""

from collections.abc import Sequence

import numpy as np

from data.processed import visible_mask
from data.schema import MIN_ITEMS


def cold_items(sequences: Sequence[np.ndarray], n_items: int) -> np.ndarray:
    """[I] bool: True for the items that occur only as validation or test targets (module docstring)."""
    lengths = np.array([len(s) for s in sequences], dtype=np.int64)
    flat = np.concatenate(list(sequences)) if len(sequences) else np.zeros(0, dtype=np.int64)
    trained = visible_mask(lengths, "train") | np.repeat(lengths < MIN_ITEMS, lengths)  # [ΣL]
    occurs = np.bincount(flat, minlength=n_items) > 0
    warm = np.bincount(flat[trained], minlength=n_items) > 0
    return occurs & ~warm
