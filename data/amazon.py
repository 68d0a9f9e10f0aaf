"""Amazon 2014 (McAuley lab) categories -> RawDataset, from the P5 layout or from the raw McAuley files.

P5 / S3-Rec layout (what /work/shared/data holds), in `root`:
    sequential_data.txt (or sequential.txt): `user item item ...` per line, oldest first, ids from 1.
        item index = P5 item id - 1; user ids are kept as written.
    datamaps.json: `id2item` and/or `item2id` (P5 item id <-> ASIN).
Raw McAuley layout, in `root`:
    reviews_<Category>_5.json.gz: one JSON review per line (reviewerID, asin, unixReviewTime).
    "P5-style" numbering, our own deterministic rule: users in order of first appearance in the file; each
    user's reviews sorted by unixReviewTime, ties kept in file order; items numbered in order of first
    appearance along that walk (user by user); user ids 1..U in that order. P5's own numbering cannot be
    rebuilt from the reviews file alone, so the numbers differ from P5's in general (counts do not).
Metadata (either layout) is joined by ASIN, never by row order: `meta_path` (relative to `root` unless
absolute), or else the first of meta.json.gz, meta_<Category>.json.gz,
derived/item_meta_by_asin.jsonl.gz found in `root`. Lines may be Python literals (2014 McAuley format,
read with ast.literal_eval) or JSON.
Items without metadata get "ASIN: <asin>" as text and are counted in one DataWarning; when no item has
metadata the load stops (DataFormatError naming the file names looked for and other JSON files in `root`)
unless `load_amazon.allow_missing_metadata = True`.
"""

import ast
import json
import shutil
import urllib.request
import warnings
from pathlib import Path
from typing import Any

import gin
import numpy as np

from data.files import atomic_write
from data.schema import DataFormatError, DataWarning, RawDataset, check_dataset, shown
from data.text import amazon_item_text
from data.textio import numbered_lines, read_sequence_file, read_text

CATEGORIES = {"beauty": "Beauty", "sports": "Sports_and_Outdoors", "toys": "Toys_and_Games"}
MCAULEY_2014_URL = "https://snap.stanford.edu/data/amazon/productGraph/categoryFiles/"
P5_SEQUENCE_FILES = ("sequential_data.txt", "sequential.txt")


def read_datamaps(path: Path) -> list[str]:
    """ASINs from datamaps.json, index = P5 item id - 1. Needs id2item or item2id covering ids 1..I."""
    try:
        maps = json.loads(read_text(path))
    except json.JSONDecodeError as err:
        raise DataFormatError(f"{path}:{err.lineno}: not valid JSON ({err.msg})") from None
    if not isinstance(maps, dict):
        raise DataFormatError(
            f"{path}: expected a JSON object with 'id2item' and/or 'item2id', got {shown(maps)}"
        )
    try:
        id2item = {int(k): str(v) for k, v in maps.get("id2item", {}).items()}
        item2id = {str(asin): int(k) for asin, k in maps.get("item2id", {}).items()}
    except (AttributeError, TypeError, ValueError) as err:  # not a mapping, or an id that is not an integer
        raise DataFormatError(f"{path}: id2item / item2id must map integer ids to ASINs ({err})") from None
    for asin, key in item2id.items():
        if id2item.setdefault(key, asin) != asin:
            raise DataFormatError(
                f"{path}: id2item and item2id disagree on item id {key}: {id2item[key]!r} vs {asin!r}"
            )
    if not id2item:
        raise DataFormatError(f"{path}: neither 'id2item' nor 'item2id' found (keys: {shown(list(maps))})")
    expected = set(range(1, len(id2item) + 1))
    if set(id2item) != expected:
        outside = min(set(id2item) - expected)
        raise DataFormatError(
            f"{path}: item ids must be exactly 1..{len(id2item)}, but item id {outside} is there and "
            f"{min(expected - set(id2item))} is not"
        )
    return [id2item[i] for i in range(1, len(id2item) + 1)]


def parse_record(line: str, path: Path, lineno: int) -> dict[str, Any]:
    """One metadata/review line: JSON, else a Python literal (safe: ast.literal_eval, never eval)."""
    try:
        record = json.loads(line)
    except ValueError:
        try:
            record = ast.literal_eval(line)
        except (ValueError, SyntaxError, MemoryError, RecursionError):
            raise DataFormatError(f"{path}:{lineno}: neither JSON nor a Python literal") from None
    if not isinstance(record, dict):
        raise DataFormatError(
            f"{path}:{lineno}: expected a dict, got {type(record).__name__} {shown(record)}"
        )
    return record


def read_meta(path: Path) -> dict[str, dict[str, Any]]:
    """ASIN -> metadata record. Every line must be a dict with an 'asin' key."""
    meta = {}
    for lineno, line in numbered_lines(path):
        record = parse_record(line, path, lineno)
        if "asin" not in record:
            raise DataFormatError(f"{path}:{lineno}: record has no 'asin' (keys: {shown(list(record))})")
        meta[str(record["asin"])] = record
    return meta


def read_reviews(path: Path) -> list[tuple[str, str, int]]:
    """(reviewerID, asin, unixReviewTime) per review, in file order."""
    rows = []
    for lineno, line in numbered_lines(path):
        record = parse_record(line, path, lineno)
        missing = [key for key in ("reviewerID", "asin", "unixReviewTime") if key not in record]
        if missing:
            raise DataFormatError(f"{path}:{lineno}: review has no {missing} (keys: {shown(list(record))})")
        try:
            rows.append((str(record["reviewerID"]), str(record["asin"]), int(record["unixReviewTime"])))
        except (TypeError, ValueError):
            raise DataFormatError(
                f"{path}:{lineno}: unixReviewTime must be an integer, got {shown(record['unixReviewTime'])}"
            ) from None
    return rows


def number_reviews(reviews: list[tuple[str, str, int]]) -> tuple[list[np.ndarray], list[str]]:
    """The P5-style numbering of the module docstring. Returns (item indices per user, item keys).

    Users come out in order of first appearance; each user's items by time, ties in input order.
    """
    by_user: dict[str, list[tuple[int, str]]] = {}
    for user, asin, time in reviews:
        by_user.setdefault(user, []).append((time, asin))
    item_index: dict[str, int] = {}
    sequences = []
    for events in by_user.values():
        events.sort(key=lambda event: event[0])  # stable: equal times keep file order
        seq = [item_index.setdefault(asin, len(item_index)) for _, asin in events]
        sequences.append(np.array(seq, dtype=np.int64))
    return sequences, list(item_index)


def download_file(url: str, dest: Path) -> Path:
    """Streams `url` to `dest` atomically (data.files.atomic_write, with a temp file of its own)."""
    with urllib.request.urlopen(url, timeout=60) as response:
        atomic_write(dest, lambda out: shutil.copyfileobj(response, out, 1 << 20), shared=True)
    return dest


def meta_names(name: str) -> list[str]:
    """The metadata file names looked for in `root`, in order (module docstring)."""
    return ["meta.json.gz", f"meta_{name}.json.gz", "derived/item_meta_by_asin.jsonl.gz"]


def other_json_files(root: Path, limit: int = 5) -> list[str]:
    """JSON-like files in `root` and `root/derived` that the loader does not read: maybe the metadata."""
    used = {"datamaps.json", *P5_SEQUENCE_FILES}
    names = sorted(
        str(path.relative_to(root))
        for folder in (root, root / "derived")
        if folder.is_dir()
        for path in folder.iterdir()
        if ".json" in path.name and path.name not in used
    )
    return names[:limit]


def check_metadata(item_keys: list[str], meta: dict, path: Path | None, root: Path, name: str, allow: bool):
    """No item with metadata is an error (unless `allow`: load_amazon.allow_missing_metadata); some items
    without it, a DataWarning. Both say where the loader looked."""
    missing = sum(asin not in meta for asin in item_keys)
    if not missing:
        return
    if path is not None:
        where = f"in {path}"
    else:
        others = other_json_files(root)
        where = (
            f"(no metadata file in {root}: looked for {', '.join(meta_names(name))}"
            + (f"; not read: {', '.join(others)}" if others else "")
            + "; set load_amazon.meta_path to name the file)"
        )
    message = f"{missing} of {len(item_keys)} items have no metadata {where}; their text is 'ASIN: <asin>'"
    if missing == len(item_keys) and not allow:
        raise DataFormatError(
            f"{message}, so their embeddings and semantic IDs would carry no item information. Set "
            "load_amazon.allow_missing_metadata = True to train on that anyway"
        )
    warnings.warn(message, DataWarning, stacklevel=3)


def _find_meta(root: Path, name: str, meta_path: str | None, fetch: bool, base_url: str) -> Path | None:
    """The metadata file to use (see module docstring); downloads meta_<Category>.json.gz if `fetch`."""
    if meta_path is not None:
        path = root / meta_path
        if not path.exists():
            raise FileNotFoundError(f"metadata file {path} not found (gin: load_amazon.meta_path)")
        return path
    found = [root / c for c in meta_names(name) if (root / c).exists()]
    if found:
        return found[0]
    if fetch:
        return download_file(base_url + f"meta_{name}.json.gz", root / f"meta_{name}.json.gz")
    return None


def _load_sequences(root: Path, name: str, download: bool, base_url: str) -> tuple[np.ndarray, list, list]:
    """(user ids, item indices per user, item keys) from the P5 layout or the raw reviews file."""
    for seq_name in P5_SEQUENCE_FILES:
        if (root / seq_name).exists():
            return _load_p5(root / seq_name, root / "datamaps.json")
    reviews = root / f"reviews_{name}_5.json.gz"
    if not reviews.exists() and download:
        download_file(base_url + reviews.name, reviews)
    if not reviews.exists():
        raise FileNotFoundError(
            f"no Amazon data in {root}: expected {' or '.join(P5_SEQUENCE_FILES)} + datamaps.json "
            "(P5 layout) "
            f"or {reviews.name} (+ meta_{name}.json.gz). Point gin `load_amazon.root` at the folder, "
            "or set `load_amazon.download = True` to fetch the McAuley files."
        )
    sequences, item_keys = number_reviews(read_reviews(reviews))
    return np.arange(1, len(sequences) + 1, dtype=np.int64), sequences, item_keys


def _load_p5(seq_path: Path, datamaps_path: Path) -> tuple[np.ndarray, list, list]:
    if not datamaps_path.exists():
        raise FileNotFoundError(f"{datamaps_path} is needed next to {seq_path.name} for the item ASINs")
    item_keys = read_datamaps(datamaps_path)
    known = range(1, len(item_keys) + 1)
    user_ids, raw = read_sequence_file(seq_path, known, f"{datamaps_path.name} (ids 1..{len(item_keys)})")
    return user_ids, [ids - 1 for ids in raw], item_keys


@gin.configurable
def load_amazon(
    root: str = gin.REQUIRED,
    category: str = gin.REQUIRED,
    meta_path: str | None = None,
    download: bool = False,
    base_url: str = MCAULEY_2014_URL,
    allow_missing_metadata: bool = False,
) -> RawDataset:
    """Loads one Amazon 2014 category ("beauty", "sports", "toys"); layouts and rules: module docstring.
    allow_missing_metadata: load even when no item has metadata (every text is then 'ASIN: <asin>')."""
    if category not in CATEGORIES:
        raise ValueError(f"unknown Amazon category {category!r}; expected one of {sorted(CATEGORIES)}")
    root_path, name = Path(root), CATEGORIES[category]
    user_ids, sequences, item_keys = _load_sequences(root_path, name, download, base_url)
    path = _find_meta(root_path, name, meta_path, download, base_url)
    meta = read_meta(path) if path is not None else {}
    check_metadata(item_keys, meta, path, root_path, name, allow_missing_metadata)
    texts = [amazon_item_text(asin, meta.get(asin)) for asin in item_keys]
    return check_dataset(RawDataset(f"amazon-{category}", sequences, user_ids, item_keys, texts))
