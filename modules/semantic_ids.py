"""Semantic IDs: per-item code tuples, the collision code that makes them unique, and the stage-1 artifact.

Shapes: codes [I, Q] (RQ-VAE / RQ-KMeans output) -> codes [I, C] with C = Q + 1.

Checks on the artifact, each raising SemanticIdsError that names the file and what disagrees:
`SemanticIds.load` (format, version, fields; codes int64 [I, n_levels + 1] in [0, K), unique rows, one item
key per row; a damaged or unsafe file raises training.checkpoint's RunFileError, naming what to do),
`check_items` (against the dataset's item list) and `check_checkpoint` (a stage-2 checkpoint
records the artifact it was trained on, K, C, I and a hash of the codes; resuming it on another artifact is
refused). Stage-2 configs cannot state K or C: RetrievalModel denylists them, so a binding fails in gin.
"""

import hashlib
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import torch

from training.checkpoint import atomic_save, load_tensors

FORMAT = "tiger.semantic_ids"
CHECKPOINT_KEY = "semantic_ids"  # where a stage-2 checkpoint stores `SemanticIds.fingerprint()`
VERSION = 1
_FIELDS = ("codes", "codebook_size", "n_levels", "item_keys", "source", "config", "metrics")


class SemanticIdsError(ValueError):
    """A semantic-ID artifact is unreadable or disagrees with the data, the config or a checkpoint."""


class TupleGroups(NamedTuple):
    inverse: torch.Tensor  # [I] int64 group index of each item's tuple (groups sorted lexicographically)
    counts: torch.Tensor  # [G] int64 items per group
    tuples: torch.Tensor  # [G, Q] the distinct tuples


def group_tuples(codes: torch.Tensor) -> TupleGroups:
    """Group identical rows of codes [I, Q]."""
    tuples, inverse, counts = torch.unique(codes, dim=0, return_inverse=True, return_counts=True)
    return TupleGroups(inverse=inverse, counts=counts, tuples=tuples)


def collision_rank(codes: torch.Tensor) -> torch.Tensor:
    """Rank of each item among the items with the same tuple, in item-index order (0, 1, 2, ...).

    Sort-based: a stable sort by group keeps item order inside each group. codes [I, Q] -> [I] int64.
    """
    groups = group_tuples(codes)
    order = torch.argsort(groups.inverse, stable=True)  # [I] items, grouped, index order within a group
    group_start = torch.cumsum(groups.counts, 0) - groups.counts  # [G] first sorted position of each group
    sorted_rank = torch.arange(codes.shape[0], device=codes.device) - group_start[groups.inverse[order]]
    return torch.empty_like(sorted_rank).scatter_(0, order, sorted_rank)


def append_collision_code(codes: torch.Tensor, codebook_size: int) -> torch.Tensor:
    """codes [I, Q] int64 -> [I, C = Q + 1]: last column = `collision_rank`, so every C-tuple is unique.

    Raises ValueError if a tuple is shared by more than K = codebook_size items (the rank must be < K).
    """
    if codes.ndim != 2:
        raise ValueError(f"codes must be [I, Q], got shape {tuple(codes.shape)}")
    if codes.shape[0] == 0:
        return codes.new_zeros(0, codes.shape[1] + 1)
    groups = group_tuples(codes)
    largest = int(groups.counts.argmax())
    if int(groups.counts[largest]) > codebook_size:
        raise ValueError(
            f"{int(groups.counts[largest])} items share the code tuple {groups.tuples[largest].tolist()}, "
            f"more than the codebook size K={codebook_size}; the collision code cannot make them unique"
        )
    return torch.cat([codes, collision_rank(codes).unsqueeze(1)], dim=1)


def tuple_keys(codes: torch.Tensor, codebook_size: int) -> torch.Tensor:
    """Each C-tuple as one int64 Σ_j codes[..., j]·K^(C−1−j). codes [..., C] in [0, K) -> [...]."""
    n_codes = codes.shape[-1]
    if codebook_size**n_codes >= 2**63:
        raise ValueError(f"K={codebook_size} with C={n_codes} codes overflows an int64 key")
    powers = codebook_size ** torch.arange(n_codes - 1, -1, -1, device=codes.device)  # [C]
    return (codes.long() * powers).sum(-1)


class ItemLookup(NamedTuple):
    keys: torch.Tensor  # [I] int64 sorted tuple keys
    items: torch.Tensor  # [I] int64 item index of each key
    codebook_size: int


def build_item_lookup(codes: torch.Tensor, codebook_size: int) -> ItemLookup:
    """Index of unique item codes [I, C] for `lookup_items`."""
    keys, items = torch.sort(tuple_keys(codes, codebook_size))
    return ItemLookup(keys=keys, items=items, codebook_size=codebook_size)


def lookup_items(lookup: ItemLookup, codes: torch.Tensor) -> torch.Tensor:
    """Item index of each full C-tuple. codes [..., C] -> [...] int64, -1 where no item has that tuple."""
    if lookup.keys.numel() == 0:
        return torch.full(codes.shape[:-1], -1, dtype=torch.long, device=codes.device)
    valid = ((codes >= 0) & (codes < lookup.codebook_size)).all(-1)
    keys = tuple_keys(codes.clamp(0, lookup.codebook_size - 1), lookup.codebook_size)
    pos = torch.searchsorted(lookup.keys, keys).clamp_max(lookup.keys.shape[0] - 1)
    found = valid & (lookup.keys[pos] == keys)
    return torch.where(found, lookup.items[pos], torch.full_like(keys, -1))


@dataclass
class SemanticIds:
    """The stage-1 artifact read by stage 2.

    codes: [I, C] int64, C = n_levels + 1 (last column = collision code), every row unique, values in [0, K).
    item_keys: dataset item key of each row (ASIN / MovieID); source: where the codes came from (checkpoint
    path); config: operative gin config text; metrics: code statistics (plain floats).
    """

    codes: torch.Tensor
    codebook_size: int
    n_levels: int
    item_keys: list[str]
    source: str = ""
    config: str = ""
    metrics: dict[str, float] = field(default_factory=dict)

    def __post_init__(self):
        c = self.codes
        if c.dtype != torch.int64 or c.ndim != 2 or c.shape[1] != self.n_levels + 1:
            raise SemanticIdsError(
                f"codes must be int64 [I, {self.n_levels + 1}] (C = n_levels + 1 with n_levels = "
                f"{self.n_levels}), got {c.dtype} {tuple(c.shape)}"
            )
        if len(self.item_keys) != c.shape[0]:
            raise SemanticIdsError(f"{len(self.item_keys)} item keys for {c.shape[0]} code rows")
        if c.numel() and (int(c.min()) < 0 or int(c.max()) >= self.codebook_size):
            raise SemanticIdsError(
                f"codes outside [0, K = {self.codebook_size}): min {int(c.min())}, max {int(c.max())}"
            )
        duplicates = c.shape[0] - group_tuples(c).counts.shape[0] if c.numel() else 0
        if duplicates:
            raise SemanticIdsError(
                f"{duplicates} code rows repeat an earlier row; every C-tuple must be unique"
            )

    @classmethod
    def from_codes(cls, codes: torch.Tensor, codebook_size: int, item_keys: list[str], **extra: Any):
        """Build from tokenizer codes [I, Q] by appending the collision code."""
        full = append_collision_code(codes.long().cpu(), codebook_size)
        return cls(full, codebook_size, codes.shape[1], list(item_keys), **extra)

    @property
    def n_codes(self) -> int:
        """C = Q + 1."""
        return self.n_levels + 1

    def fingerprint(self) -> dict[str, Any]:
        """What a stage-2 checkpoint records about its artifact: K, C, I and a 16-hex sha256 of the codes."""
        digest = hashlib.sha256(self.codes.cpu().numpy().tobytes()).hexdigest()[:16]
        return {"codebook_size": self.codebook_size, "n_codes": self.n_codes,
                "n_items": self.codes.shape[0], "codes_sha256": digest}  # fmt: skip

    def lookup(self) -> ItemLookup:
        """Full C-tuple -> item index (see `lookup_items`)."""
        return build_item_lookup(self.codes, self.codebook_size)

    def save(self, path: str | os.PathLike) -> None:
        """Atomic write (training.checkpoint.atomic_save) of plain types and one tensor."""
        payload = {  # plain Python types only, so `load` can use weights_only=True
            "format": FORMAT,
            "version": VERSION,
            "codes": self.codes.cpu(),
            "codebook_size": int(self.codebook_size),
            "n_levels": int(self.n_levels),
            "item_keys": [str(key) for key in self.item_keys],
            "source": str(self.source),
            "config": str(self.config),
            "metrics": {str(k): float(v) for k, v in self.metrics.items()},
        }
        atomic_save(payload, path)

    @classmethod
    def load(cls, path: str | os.PathLike) -> "SemanticIds":
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"semantic-ID artifact not found: {path} (run train_rqvae.py first)")
        payload = load_tensors(path)  # a damaged or unsafe file: RunFileError naming it and what to do
        if not isinstance(payload, dict) or payload.get("format") != FORMAT:
            raise SemanticIdsError(f"{path} is not a semantic-ID artifact (expected format {FORMAT!r})")
        if payload.get("version") != VERSION:
            raise SemanticIdsError(
                f"{path} has artifact version {payload.get('version')}, expected {VERSION}"
            )
        missing = [name for name in _FIELDS if name not in payload]
        if missing:
            raise SemanticIdsError(f"{path} lacks fields {missing}")
        try:
            return cls(**{name: payload[name] for name in _FIELDS})
        except SemanticIdsError as err:
            raise SemanticIdsError(f"{path}: {err}") from None


def check_items(sem: SemanticIds, path: str | os.PathLike, item_keys: Sequence[str]) -> None:
    """Raises SemanticIdsError naming `path` when the artifact's item list is not the dataset's (count, then
    the first item whose key differs: a reordered catalogue would silently swap every item's codes)."""
    if len(sem.item_keys) != len(item_keys):
        problem = f"{len(sem.item_keys)} items in the artifact, {len(item_keys)} in the dataset"
    elif list(sem.item_keys) != list(item_keys):
        first = next(i for i, (a, b) in enumerate(zip(sem.item_keys, item_keys)) if a != b)
        problem = (
            f"item {first} is {sem.item_keys[first]!r} in the artifact, {item_keys[first]!r} in the dataset"
        )
    else:
        return
    raise SemanticIdsError(
        f"{path} was built for a different item list ({problem}); bind train_decoder.semantic_ids to the "
        "artifact of this dataset"
    )


def check_checkpoint(ckpt: str | os.PathLike, sem: SemanticIds, binding: str) -> None:
    """Refuses to resume stage-2 checkpoint `ckpt` on an artifact other than the one it was trained on.

    Reads only the record `CHECKPOINT_KEY` (tensors memory-mapped, not loaded). Not checked here: a
    checkpoint without the record (written before it existed) and one that cannot be read (the checkpoint
    loader that runs next reports it). `binding` names where the artifact came from.
    """
    try:
        payload = torch.load(ckpt, map_location="cpu", weights_only=True, mmap=True)
    except Exception:
        return
    saved = payload.get(CHECKPOINT_KEY) if isinstance(payload, dict) else None
    if saved is None:
        return
    now = sem.fingerprint()
    diffs = [f"{k} {saved.get(k)} in the checkpoint, {v} now" for k, v in now.items() if saved.get(k) != v]
    if diffs:
        raise SemanticIdsError(
            f"{ckpt} was trained on other semantic IDs than {binding}: {'; '.join(diffs)}. "
            "Use a new train_decoder.out_dir, or bind the artifact this run started with."
        )
