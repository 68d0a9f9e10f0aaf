"""The loop's bookkeeping, shared by every training loop: optimizer, its step, batch order, metric sums,
progress.

BatchOrder and MetricSums are written for P processes (training/distributed.py): each process takes 1/P of
the global batch, and the logged means are the same on every process.
"""

import sys
from collections.abc import Callable
from pathlib import Path

import gin
import torch
from tqdm.auto import tqdm

from training.cli import ConfigError
from training.guards import check_finite


@gin.configurable(denylist=["params"])
def adamw(
    params, lr: float = gin.REQUIRED, weight_decay: float = 0.0, betas=(0.9, 0.999), fused: bool = True
) -> torch.optim.AdamW:
    """AdamW; `fused` runs the whole update as one kernel per parameter group (CPU and CUDA), same math."""
    return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay, betas=tuple(betas), fused=fused)


def optimizer_step(model, optimizer, scheduler, batch, accelerator, loss_weight=None):
    """One training step: forward under the accelerator's autocast, backward, optimizer step, scheduler step
    (when there is one), gradients cleared -> the model's output (its `.loss`, unweighted, is logged).
    loss_weight: a [] tensor (see `target_weight`): the backward runs on loss · loss_weight; None: on loss.
    accelerator: an Accelerator, or anything with its `autocast()` and `backward(loss)` (bench/)."""
    with accelerator.autocast():
        out = model(batch)
    accelerator.backward(out.loss if loss_weight is None else out.loss * loss_weight)
    optimizer.step()
    if scheduler is not None:
        scheduler.step()
    optimizer.zero_grad(set_to_none=True)
    return out


class BatchOrder:
    """Example indices for a step, a pure function of (seed, step).

    Shuffled epochs, last partial batch dropped.

    Resuming at step s gives exactly the batches an uninterrupted run would have seen. `batch_size` is the
    global batch: process `rank` of `world` takes every `world`-th of its rows (batch_size / world rows),
    so P processes together see, step for step, the examples of one process at the same batch_size, and
    the mean of their (equal-sized) per-process mean losses is the global batch mean.

    lengths [X] and length_groups G > 0: each epoch's shuffled rows are cut into groups of G batches, each
    group is sorted by length and cut into batches, and the epoch's batches are shuffled (`length_grouped`),
    so a batch holds rows of similar length and its padding is small. Every row is still seen once an epoch.
    """

    def __init__(self, n_examples: int, batch_size: int, seed: int, rank: int = 0, world: int = 1,
                 lengths: torch.Tensor | None = None, length_groups: int = 0):  # fmt: skip
        if n_examples < batch_size:
            raise ConfigError(f"batch_size {batch_size} exceeds the {n_examples} training examples: lower it")
        if batch_size % world:
            raise ConfigError(
                f"the global batch_size {batch_size} must be divisible by the {world} processes"
            )
        if length_groups > 0 and (lengths is None or len(lengths) != n_examples):
            raise ValueError(f"length_groups = {length_groups} needs lengths of all {n_examples} examples")
        self.n, self.batch_size, self.seed, self.rank, self.world = n_examples, batch_size, seed, rank, world
        self.lengths, self.length_groups = lengths, length_groups
        self.steps_per_epoch = n_examples // batch_size
        self._epoch, self._perm = -1, torch.empty(0, dtype=torch.long)

    def indices(self, step: int) -> torch.Tensor:
        epoch, pos = divmod(step, self.steps_per_epoch)
        if epoch != self._epoch:  # a cache of a pure function of (seed, epoch)
            gen = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
            self._epoch, self._perm = epoch, torch.randperm(self.n, generator=gen)
            if self.length_groups > 0:
                self._perm = length_grouped(
                    self._perm, self.lengths, self.batch_size, self.length_groups, gen
                )
        rows = self._perm[pos * self.batch_size : (pos + 1) * self.batch_size]
        return rows[self.rank :: self.world]


def target_weight(targets_per_row: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
    """[] weight of a batch whose loss is a mean over its targets: its targets over the expected number,
    Σ targets_per_row[rows] / (|rows| · mean(targets_per_row)). A length-grouped order puts rows with few
    targets together; weighting each batch mean by this gives every target the same weight in the gradient
    whatever batch it lands in, as uniform shuffling does in expectation. targets_per_row: [X] float."""
    return targets_per_row[rows].sum() / (len(rows) * targets_per_row.mean())


def length_grouped(perm: torch.Tensor, lengths: torch.Tensor, batch_size: int, groups: int,
                   generator: torch.Generator) -> torch.Tensor:  # fmt: skip
    """perm [X] shuffled rows, lengths [X] -> [steps·B] rows (steps = X // B, the remainder dropped): each
    run of `groups`·B rows of perm stably sorted by length, cut into batches of B, the batches shuffled."""
    steps = len(perm) // batch_size
    kept = perm[: steps * batch_size]
    chunks = []
    for chunk in kept.split(groups * batch_size):
        chunks.append(chunk[torch.argsort(lengths[chunk], stable=True)])
    batches = torch.cat(chunks).view(steps, batch_size)  # [steps, B]
    return batches[torch.randperm(steps, generator=generator)].reshape(-1)


class MetricSums:
    """On-device sums of per-step scalars; one host sync per flush.

    reduce: applied to the stacked interval means before the sync; pass cross_process(accelerator, "mean")
    so every process reports (and NaN-checks) the mean over all processes.
    """

    def __init__(self, reduce: Callable[[torch.Tensor], torch.Tensor] | None = None):
        self.sums: dict[str, torch.Tensor] = {}
        self.count = 0
        self.reduce = reduce

    def add(self, values: dict[str, torch.Tensor]) -> None:
        for key, value in values.items():
            value = value.detach().float()
            self.sums[key] = self.sums[key] + value if key in self.sums else value.clone()
        self.count += 1

    def flush(self) -> dict[str, float]:
        if not self.sums:
            return {}
        keys = list(self.sums)
        means = torch.stack([self.sums[k] for k in keys]) / self.count  # [M]
        if self.reduce is not None:
            means = self.reduce(means)
        self.sums, self.count = {}, 0
        return dict(zip(keys, means.tolist()))


def interval_metrics(
    sums: MetricSums, step: int, run: Path, steps_per_s: float, optimizer
) -> dict[str, float]:
    """Means of the interval's metrics (one host sync), NaN guard, LR and speed."""
    metrics = sums.flush()
    check_finite(metrics, step, run)
    return {**metrics, "train/lr": optimizer.param_groups[0]["lr"], "perf/steps_per_s": steps_per_s}


def progress(start: int, iterations: int):
    """Steps start..iterations-1, with a progress bar on an interactive terminal only."""
    return tqdm(range(start, iterations), initial=start, total=iterations, disable=not sys.stderr.isatty())
