"""Checkpoints for an exact resume, on the run files of data/files.py.

`save_checkpoint` keeps the checkpoint it replaces as `<name>.prev.pt` (a hard link, so no copy), and
`resume_from` falls back, with a warning, from a damaged checkpoint to the previous one. A stage-2
checkpoint records the semantic IDs it was trained on (`check_checkpoint`).
"""

import os
import warnings
from pathlib import Path
from typing import Any

import torch

from data.artifact import SemanticIds, SemanticIdsError
from data.files import REMEDIES, DamagedFileError, atomic_save, load_tensors, previous

CHECKPOINT_KEY = "semantic_ids"  # where a stage-2 checkpoint stores `SemanticIds.fingerprint()`


class FallbackWarning(UserWarning):
    """A damaged checkpoint was skipped for the previous one."""


def rng_state() -> dict[str, Any]:
    state = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def resume_from(path: Path) -> Path:
    """The checkpoint a rerun resumes from: `path` when it reads (or does not exist: a fresh start); when it
    is damaged, previous(path) with a FallbackWarning. Raises DamagedFileError when neither reads."""
    path = Path(path)
    if not path.exists():
        return path
    try:
        load_tensors(path, mmap=True)  # maps the file: reads the zip directory and the records, no tensors
        return path
    except DamagedFileError as err:
        damaged = err
    prev = previous(path)
    try:
        step = load_tensors(prev, mmap=True)["step"]
    except (DamagedFileError, FileNotFoundError, KeyError, TypeError):
        reason = f"{damaged.reason}, and there is no readable {prev.name} to fall back to"
        raise DamagedFileError(path, reason) from damaged
    message = (
        f"could not read {path}: {damaged.reason}; resuming from the previous checkpoint {prev} (step {step})"
    )
    warnings.warn(message, FallbackWarning, stacklevel=2)
    return prev


def save_checkpoint(
    path: Path, *, model, optimizer, step: int, config: str, extra: dict | None = None
) -> None:
    """{model, optimizer, step, rng, config, **extra}; model is the unwrapped module. The checkpoint it
    replaces is kept as previous(path)."""
    payload = {
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict() if optimizer is not None else None,
        "step": step,
        "rng": rng_state(),
        "config": config,
        **(extra or {}),
    }
    atomic_save(payload, path, keep_previous=True)


def load_checkpoint(path: Path, *, model, optimizer=None) -> dict[str, Any]:
    """Restores model (and optimizer, RNG) in place; returns the payload for the caller's extras."""
    path = Path(path)
    payload = load_tensors(path)
    missing = {"model", "step", "rng"} - set(payload if isinstance(payload, dict) else ())
    if missing:
        raise DamagedFileError(path, f"it lacks the records {sorted(missing)}", REMEDIES["checkpoint.pt"])
    model.load_state_dict(payload["model"])
    if optimizer is not None and payload.get("optimizer") is not None:
        optimizer.load_state_dict(payload["optimizer"])
    set_rng_state(payload["rng"])
    return payload


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
