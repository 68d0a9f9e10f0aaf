"""The stage-1 artifact semantic_ids.pt: codes [I, C], K, levels and item keys, as stage 2 reads them.

Checks, each raising SemanticIdsError that names the file and what disagrees: `SemanticIds.load` (format,
version, fields; codes int64 [I, n_levels + 1] in [0, K), unique rows, one item key per row; a damaged or
unsafe file raises data.files's RunFileError, naming what to do) and `check_items` (against the dataset's
item list); training.checkpoint.check_checkpoint refuses to resume a stage-2 checkpoint on another artifact
(it records K, C, I and a hash of the codes). Stage-2 configs cannot state K or C: RetrievalModel denylists
them, so a binding fails in gin.
"""

import hashlib
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from data.files import atomic_save, load_tensors
from data.schema import TigerError
from modules.semantic_ids import append_collision_code, group_tuples

FORMAT = "tiger.semantic_ids"
VERSION = 1
_FIELDS = ("codes", "codebook_size", "n_levels", "item_keys", "source", "config", "metrics")


class SemanticIdsError(ValueError, TigerError):
    """A semantic-ID artifact is unreadable or disagrees with the data, the config or a checkpoint."""


@dataclass
class SemanticIds:
    """The stage-1 artifact read by stage 2.

    codes: [I, C] int64, C = n_levels + 1 (last column = collision code), every row unique, values in [0, K).
    item_keys: dataset item key of each row (ASIN / MovieID); source: where the codes came from (checkpoint
    path); config: operative gin config text; metrics: code statistics (plain floats); cold_items: sorted
    indices of the items withheld from stage-1 training (train_rqvae.cold_start; data/cold_start.py),
    empty otherwise (and in artifacts written before the field existed).
    """

    codes: torch.Tensor
    codebook_size: int
    n_levels: int
    item_keys: list[str]
    source: str = ""
    config: str = ""
    metrics: dict[str, float] = field(default_factory=dict)
    cold_items: list[int] = field(default_factory=list)

    def __post_init__(self):
        c = self.codes
        cold = list(self.cold_items)
        if cold != sorted(set(cold)) or (cold and (cold[0] < 0 or cold[-1] >= c.shape[0])):
            raise SemanticIdsError(f"cold_items must be sorted distinct indices in [0, {c.shape[0]})")
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

    def warm_items(self) -> torch.Tensor:
        """[I - |cold|] int64 indices of the items stage 1 trained on (all items without cold start)."""
        warm = torch.ones(self.codes.shape[0], dtype=torch.bool)
        warm[torch.tensor(self.cold_items, dtype=torch.long)] = False
        return warm.nonzero().squeeze(1)

    @property
    def n_codes(self) -> int:
        """C = Q + 1."""
        return self.n_levels + 1

    def fingerprint(self) -> dict[str, Any]:
        """What a stage-2 checkpoint records about its artifact: K, C, I and a 16-hex sha256 of the codes."""
        digest = hashlib.sha256(self.codes.cpu().numpy().tobytes()).hexdigest()[:16]
        return {"codebook_size": self.codebook_size, "n_codes": self.n_codes,
                "n_items": self.codes.shape[0], "codes_sha256": digest}  # fmt: skip

    def save(self, path: str | os.PathLike) -> None:
        """Atomic write (data.files.atomic_save) of plain types and one tensor."""
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
            "cold_items": [int(i) for i in self.cold_items],
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
            return cls(**{name: payload[name] for name in _FIELDS}, cold_items=payload.get("cold_items", []))
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
