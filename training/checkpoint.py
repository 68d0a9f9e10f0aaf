"""Atomic checkpoints with everything needed for an exact resume."""

import os
from pathlib import Path
from typing import Any

import torch


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
    """torch.save to a temp file then rename, so an interrupted write never leaves a corrupt file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(payload, tmp)
    os.replace(tmp, path)


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
    try:
        payload = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as err:
        raise RuntimeError(f"could not read checkpoint {path}: {err}") from err
    missing = {"model", "step", "rng"} - set(payload)
    if missing:
        raise RuntimeError(f"checkpoint {path} lacks {sorted(missing)}")
    model.load_state_dict(payload["model"])
    if optimizer is not None and payload.get("optimizer") is not None:
        optimizer.load_state_dict(payload["optimizer"])
    set_rng_state(payload["rng"])
    return payload
