"""Run files: atomic writes and tensors-only reads (checkpoints, best.pt, semantic_ids.pt, metrics files,
the embedding cache, downloads).

Writing (`atomic_write`, used for every file the project writes whole): a temp file beside the target, fsync,
then os.replace, so the target is always the old or the new file, whole. A write that fails (disk full, I/O
error) removes the temp file, leaves the target as it was and raises RunFileWriteError naming it.

Reading (`load_tensors`, used for every run file): `torch.load(weights_only=True)`, which runs no pickled
code. A file that pickles Python objects raises UnsafeCheckpointError; a truncated or damaged one
DamagedFileError; both name the file and say what to do (REMEDIES).
"""

import errno
import json
import os
import pickle
import re
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

import torch

from data.schema import TigerError


class RunFileError(RuntimeError, TigerError):
    """A run file cannot be read or written; the message names it and says what to do."""


class UnsafeCheckpointError(RunFileError):
    """The file pickles arbitrary Python objects; it is refused rather than executed."""


class DamagedFileError(RunFileError):
    """The file is empty, truncated or otherwise not a readable torch file; `reason` says which."""

    def __init__(self, path: Path, reason: str, remedy: str | None = None):
        remedy = remedy or REMEDIES.get(Path(path).name, DEFAULT_REMEDY)
        super().__init__(f"could not read {path}: {reason}; {remedy}")
        self.path, self.reason = Path(path), reason


class RunFileWriteError(RunFileError):
    """Writing a run file failed (e.g. the disk is full); the previous file is intact."""


# What to do about a damaged file, by file name.
REMEDIES = {
    "checkpoint.pt": "delete it to start this run over",
    "checkpoint.prev.pt": "delete it to start this run over",
    "best.pt": "it holds the best validation weights: restore it from a copy, or delete the run directory "
    "and train again",
    "semantic_ids.pt": "rerun train_rqvae.py (stage 1) with the same command to write it again",
}
DEFAULT_REMEDY = "delete it and rerun the command that wrote it"


def previous(path: Path) -> Path:
    """Where save_checkpoint keeps the checkpoint it replaced: checkpoint.pt -> checkpoint.prev.pt."""
    path = Path(path)
    return path.with_name(f"{path.stem}.prev{path.suffix}")


def atomic_write(
    path: Path, write: Callable[[IO[bytes]], None], keep_previous: bool = False, shared: bool = False
) -> None:
    """write(f) into `<path>.tmp`, fsync, os.replace: `path` is always the old or the new file, whole.

    keep_previous: the old `path` becomes `previous(path)` (with no old file, a stale previous is removed).
    shared: several processes may write `path` at once (a shared cache, a download): each writes a temp file
    of its own, `.<name>.<random>.tmp` (mode 0644), and the last os.replace wins.
    A `.tmp` left by a killed write is never read, and the next write overwrites it. Any other failure
    removes the temp file, leaves `path` as it was and raises RunFileWriteError.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _temp_file(path) if shared else path.with_name(path.name + ".tmp")
    try:
        with open(tmp, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        if keep_previous:
            keep_as_previous(path)
    except (OSError, RuntimeError) as err:  # torch's writer reports a failed write as a RuntimeError
        message = write_failure(path, err)  # before the temp file is removed: the free space it left
        tmp.unlink(missing_ok=True)
        raise RunFileWriteError(message) from err
    os.replace(tmp, path)


def _temp_file(path: Path) -> Path:
    """A new empty file of this process's own beside `path`, readable by all (mkstemp makes 0600)."""
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    os.chmod(name, 0o644)
    return Path(name)


def keep_as_previous(path: Path) -> None:
    """previous(path) becomes another name for the current `path` (hard link; a copy where links fail)."""
    prev = previous(path)
    if not path.exists():
        prev.unlink(missing_ok=True)  # a previous checkpoint of an earlier run must never be resumed
        return
    link = prev.with_name(prev.name + ".tmp")
    link.unlink(missing_ok=True)
    try:
        try:
            os.link(path, link)
        except OSError:  # a filesystem without hard links
            shutil.copy2(path, link)
        os.replace(link, prev)
    except OSError:
        link.unlink(missing_ok=True)
        raise


def write_failure(path: Path, err: BaseException) -> str:
    """The message of a failed write: the file, why, the free space, and whether the old file is intact."""
    try:
        free_bytes = shutil.disk_usage(path.parent).free
        free = f"{free_bytes / 2**20:,.0f} MiB free in {path.parent}"
    except OSError:
        free_bytes, free = None, "free space unknown"
    # torch's writer turns an ENOSPC into a RuntimeError without errno: then a nearly empty disk says it
    full = getattr(err, "errno", None) == errno.ENOSPC or (free_bytes is not None and free_bytes < 2**20)
    why = "the disk is full" if full else first_line(err)
    if full and not isinstance(err, OSError):
        why += f" ({first_line(err)})"
    kept = f"{path} still holds the previous version" if path.exists() else f"{path} was not written"
    return (
        f"could not write {path}: {why} ({free}); the temp file was removed and {kept}. "
        f"{'Free some space' if full else 'Fix the cause'} and rerun the same command: it resumes from the "
        "last complete checkpoint"
    )


def first_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return f"{type(err).__name__}: {text[0]}" if text else type(err).__name__


def atomic_save(payload: Any, path: Path, keep_previous: bool = False, shared: bool = False) -> None:
    """torch.save through atomic_write (see there)."""
    atomic_write(path, lambda f: torch.save(payload, f), keep_previous, shared)


def load_tensors(path: Path, mmap: bool = False) -> Any:
    """torch.load(weights_only=True) on CPU; errors name the file and say what to do (module docstring).
    mmap: map the file instead of reading it (for a look at a few records of a large checkpoint)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found")
    if path.stat().st_size == 0:
        raise DamagedFileError(path, "the file is empty")
    try:
        return torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
    except pickle.UnpicklingError as err:
        named = re.search(r"GLOBAL (\S+)", str(err))
        if named is None:  # a stream the weights-only unpickler cannot parse, e.g. a file cut to its header
            detail = re.search(r"WeightsUnpickler error:\s*(\S.*)", str(err))
            reason = detail.group(1) if detail else first_line(err)
            raise DamagedFileError(path, f"it is damaged, or not a tensors-only file ({reason})") from err
        raise UnsafeCheckpointError(
            f"{path} is not a tensors-only file: it pickles the Python object {named.group(1)}, and run "
            "files are only loaded with torch.load(weights_only=True), so none of it ran. Re-save it with "
            "plain tensors, dicts, lists, numbers and strings, or delete it"
        ) from err
    except Exception as err:  # torch's zip reader: OSError, RuntimeError, EOFError, ... on a cut file
        raise DamagedFileError(path, f"it is truncated or damaged ({first_line(err)})") from err


def write_json(path: Path, payload: dict[str, Any]) -> None:
    """Atomic JSON write (atomic_write: a failed write leaves the old file)."""
    text = json.dumps(payload, indent=2, sort_keys=True)
    atomic_write(Path(path), lambda f: f.write(text.encode("utf-8")))
