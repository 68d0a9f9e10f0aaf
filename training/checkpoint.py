"""Atomic, tensors-only checkpoints with everything needed for an exact resume.

Every payload is plain data (tensors, dicts, lists, numbers, strings), so every load uses
`torch.load(weights_only=True)`, which runs no pickled code. A file that needs arbitrary pickled objects is
refused with `UnsafeCheckpointError`.
"""

import os
import re
from pathlib import Path
from typing import Any

import torch


class UnsafeCheckpointError(RuntimeError):
    """The file pickles arbitrary Python objects; it is refused rather than executed."""


def rng_state() -> dict[str, Any]:
    state = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def atomic_save(payload: Any, path: Path) -> None:
    """torch.save to `<path>.tmp`, fsync, then os.replace: `path` is always the old or the new file, whole.

    A `.tmp` left by a killed write is never read, and the next save overwrites it.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        torch.save(payload, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def load_tensors(path: Path, mmap: bool = False) -> Any:
    """torch.load(weights_only=True) on CPU; errors name the file and say why it was not loaded.
    mmap: map the file instead of reading it (for a look at a few records of a large checkpoint)."""
    path = Path(path)
    try:
        return torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
    except Exception as err:
        unsafe = re.search(r"Unsupported global: GLOBAL (\S+)", str(err))
        if unsafe:
            raise UnsafeCheckpointError(
                f"{path} is not a tensors-only checkpoint: it pickles the Python object {unsafe.group(1)}, "
                "and checkpoints are only loaded with torch.load(weights_only=True). Re-save it with "
                "plain tensors, dicts, lists, numbers and strings."
            ) from err
        raise RuntimeError(f"could not read checkpoint {path}: {err}") from err


def save_checkpoint(
    path: Path, *, model, optimizer, step: int, config: str, extra: dict | None = None
) -> None:
    """{model, optimizer, step, rng, config, **extra}; model is the unwrapped module."""
    payload = {
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict() if optimizer is not None else None,
        "step": step,
        "rng": rng_state(),
        "config": config,
        **(extra or {}),
    }
    atomic_save(payload, path)


def load_checkpoint(path: Path, *, model, optimizer=None) -> dict[str, Any]:
    """Restores model (and optimizer, RNG) in place; returns the payload for the caller's extras."""
    path = Path(path)
    payload = load_tensors(path)
    missing = {"model", "step", "rng"} - set(payload if isinstance(payload, dict) else ())
    if missing:
        raise RuntimeError(f"checkpoint {path} lacks {sorted(missing)}")
    model.load_state_dict(payload["model"])
    if optimizer is not None and payload.get("optimizer") is not None:
        optimizer.load_state_dict(payload["optimizer"])
    set_rng_state(payload["rng"])
    return payload
