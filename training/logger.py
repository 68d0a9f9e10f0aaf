"""Run logging: metrics.jsonl always, wandb when installed (offline unless WANDB_MODE says otherwise)."""

import json
import os
import uuid
from pathlib import Path
from typing import IO, Any, Protocol

from tqdm.auto import tqdm

from data.files import atomic_write


class Logger(Protocol):
    def log(self, metrics: dict[str, float], step: int) -> None: ...

    def close(self) -> None: ...


class JsonlLogger:
    """Appends every logged dict to `<run_dir>/metrics.jsonl` as one line with its step.

    A run (re)started at `start_step` drops the rows its checkpoint does not cover (see `trim_jsonl`), so a
    resumed file has no duplicate or out-of-order steps and equals an uninterrupted one. The file is
    trimmed and opened only at the first `log` (or at `close`): a rerun that fails before logging (a
    damaged best.pt in the final test, say) leaves the finished run's metrics.jsonl as it was.
    """

    def __init__(self, run_dir: Path, start_step: int = 0):
        self.path = Path(run_dir) / "metrics.jsonl"
        self.start_step = start_step
        self.file: IO[str] | None = None

    def _open(self) -> IO[str]:
        if self.file is None:
            trim_jsonl(self.path, self.start_step)
            self.file = self.path.open("a", encoding="utf-8")
        return self.file

    def log(self, metrics: dict[str, float], step: int) -> None:
        file = self._open()
        file.write(json.dumps({"step": step, **metrics}) + "\n")
        file.flush()

    def close(self) -> None:
        self._open().close()


def trim_jsonl(path: Path, step: int) -> None:
    """Keep the rows a checkpoint at `step` covers: those before `step` and the first one at `step` (the
    interval row, logged just before that checkpoint). Later rows and a torn last line are dropped."""
    if not path.exists():
        return
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    kept, seen_step = [], False
    for line in lines:
        try:
            row_step = json.loads(line)["step"]
        except (json.JSONDecodeError, KeyError, TypeError):
            break  # a write cut short by a kill: nothing after it is trusted
        if row_step > step or (row_step == step and seen_step):
            break
        kept.append(line if line.endswith("\n") else line + "\n")
        seen_step = seen_step or row_step == step
    if kept != lines:
        atomic_write(path, lambda f: f.write("".join(kept).encode("utf-8")))


class WandbLogger:
    """wandb run, offline by default so tests and CI never touch the network."""

    def __init__(self, run_dir: Path, project: str, config: dict[str, Any], resume_id: str | None):
        import wandb

        os.environ.setdefault("WANDB_MODE", "offline")
        self.run = wandb.init(
            project=project,
            dir=str(run_dir),
            config=config,
            id=resume_id,
            resume="allow" if resume_id else None,
        )

    def log(self, metrics: dict[str, float], step: int) -> None:
        self.run.log(metrics, step=step)

    def close(self) -> None:
        self.run.finish()


class MultiLogger:
    def __init__(self, loggers: list[Logger]):
        self.loggers = loggers

    def log(self, metrics: dict[str, float], step: int) -> None:
        for logger in self.loggers:
            logger.log(metrics, step)

    def close(self) -> None:
        for logger in self.loggers:
            logger.close()


def make_logger(
    run_dir: Path, project: str, config: dict[str, Any], use_wandb: bool, is_main: bool, start_step: int = 0
) -> Logger:
    """metrics.jsonl (trimmed to `start_step`) + optional wandb on the main process; a no-op elsewhere."""
    if not is_main:
        return MultiLogger([])
    loggers: list[Logger] = [JsonlLogger(run_dir, start_step)]
    if use_wandb:
        try:
            loggers.append(WandbLogger(run_dir, project, config, resume_id=_wandb_id(run_dir)))
        except ImportError:
            tqdm.write("wandb is not installed: logging to metrics.jsonl only")
    return MultiLogger(loggers)


def _wandb_id(run_dir: Path) -> str:
    """A stable wandb run id per run directory, so a resumed run continues the same curves."""
    id_file = Path(run_dir) / "wandb_id.txt"
    if not id_file.exists():
        id_file.write_text(uuid.uuid4().hex[:12])
    return id_file.read_text().strip()
