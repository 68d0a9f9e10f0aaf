"""Checkpoint selection by validation without the bias of "the first N users".

During training a seeded random sample of validation users (or the whole split) scores each validation;
the `size` best of those validations keep their weights as finalists (<run>/finalists/step-<s>.pt). At the
end every finalist is re-scored on the *full* validation split and the winner becomes best.pt, so the
final choice never rests on a small, noisy sample. The test split is never consulted.
"""

import math
from collections.abc import Callable
from pathlib import Path

import numpy as np

from data.files import atomic_save, load_tensors


def sample_rows(n: int, max_rows: int | None, seed: int) -> np.ndarray:
    """[min(n, max_rows)] int64 sorted row indices: all n rows when max_rows is None or >= n, else a
    uniform random subset drawn with `seed` (the same seed gives the same rows)."""
    if max_rows is None or max_rows >= n:
        return np.arange(n, dtype=np.int64)
    if max_rows < 1:
        raise ValueError(f"a validation sample needs at least one user, got {max_rows}")
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(n, size=max_rows, replace=False)).astype(np.int64)


def plateaued(entries: list[tuple[float, int]], step: int, patience: int | None, eval_every: int) -> bool:
    """True when `patience` validations (one every `eval_every` steps) have run since the best one in
    `entries` (Finalists.entries, best first) without beating it, counted at `step`; False when patience is
    None or nothing has been validated."""
    if patience is None or not entries:
        return False
    return step - entries[0][1] >= patience * eval_every


class Finalists:
    """The `size` best validation scores so far, [(score, step)] best first, each with its model weights on
    disk. Ties keep the earlier step. state_dict() holds the list, so a resumed run keeps its finalists."""

    def __init__(self, directory: Path, size: int = 3):
        if size < 1:
            raise ValueError(f"train_decoder.finalists must be >= 1, got {size}")
        self.directory, self.size = Path(directory), size
        self.entries: list[tuple[float, int]] = []

    def path(self, step: int) -> Path:
        return self.directory / f"step-{step}.pt"

    def offer(self, score: float, step: int, weights: dict, write: bool = True) -> bool:
        """Keeps (score, step) if it is among the `size` best; writes its weights (main process: write)."""
        if math.isnan(score):
            return False
        ranked = sorted([*self.entries, (score, step)], key=lambda e: (-e[0], e[1]))
        kept = ranked[: self.size]
        if (score, step) not in kept:
            return False
        if write:
            self.directory.mkdir(parents=True, exist_ok=True)
            atomic_save({"model": weights, "step": step, "score": score}, self.path(step))
            for _, dropped in set(self.entries) - set(kept):
                self.path(dropped).unlink(missing_ok=True)
        self.entries = kept
        return True

    def state_dict(self) -> dict:
        return {"entries": [list(e) for e in self.entries], "size": self.size}

    def load_state_dict(self, state: dict, clean: bool = True) -> None:
        """Restores the list; with `clean`, deletes finalist files written after that state was saved."""
        self.entries = [(float(s), int(t)) for s, t in state["entries"]]
        if clean and self.directory.exists():
            kept = {self.path(step).name for _, step in self.entries}
            for file in self.directory.glob("step-*.pt"):
                if file.name not in kept:
                    file.unlink()

    def rescore(self, load: Callable[[dict], None], score: Callable[[], dict[str, float]], metric: str,
                top: int | None = None):  # fmt: skip
        """Loads each of the `top` best finalists (all when None) with `load(weights)`, scores it (`score()`
        -> metrics) and returns (winner's step, winner's metrics, {step: metric value}): the best `metric`,
        ties to the earlier step."""
        if not self.entries:
            raise ValueError("no validation has been recorded: nothing to select from")
        results = {}
        for _, step in sorted(self.entries[:top], key=lambda e: e[1]):
            load(load_tensors(self.path(step))["model"])
            results[step] = score()
        winner = min(results, key=lambda s: (-results[s][metric], s))
        return winner, results[winner], {s: r[metric] for s, r in results.items()}
