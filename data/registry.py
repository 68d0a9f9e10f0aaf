"""The gin entry point for datasets: `build_dataset()` calls whichever loader the config binds.

Importing this module registers every data configurable (loaders, item_embeddings, SeqData), so parse
configs/data/*.gin after `import data.registry`. Check a config from the shell with training/show_data.py.
"""

from collections.abc import Callable

import gin
import numpy as np

import data.amazon  # noqa: F401  (registers load_amazon)
import data.embed  # noqa: F401  (registers item_embeddings)
import data.movielens  # noqa: F401  (registers load_movielens, load_sequence_file)
import data.processed  # noqa: F401  (registers SeqData)
import data.synthetic  # noqa: F401  (registers load_synthetic)
from data.processed import MIN_ITEMS
from data.schema import RawDataset


@gin.configurable
def build_dataset(loader: Callable[[], RawDataset] = gin.REQUIRED) -> RawDataset:
    """The RawDataset of the bound loader, e.g. `build_dataset.loader = @load_amazon`."""
    return loader()


def summary(dataset: RawDataset) -> str:
    """One line of counts: users, items, interactions, history length quantiles, users too short to split."""
    lengths = np.array([len(s) for s in dataset.sequences])
    q50, q90 = np.percentile(lengths, [50, 90]) if len(lengths) else (0, 0)
    return (
        f"{dataset.name}: {len(lengths):,} users / {len(dataset.item_keys):,} items / "
        f"{int(lengths.sum()):,} interactions; items per user min {lengths.min()} median {q50:g} "
        f"p90 {q90:g} max {lengths.max()}; {int((lengths < MIN_ITEMS).sum()):,} users with "
        f"< {MIN_ITEMS} items (left out of every split)"
    )
