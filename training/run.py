"""Run plumbing shared by both scripts: accelerator, optimizer, batch order, metric sums, run dirs.

Multi-process runs (`accelerate launch --multi_gpu --num_processes P ...`, or torchrun): every process
builds the same model and sees the same step sequence; BatchOrder gives each process 1/P of the global
batch; MetricSums and pool_shard_means make every process hold the same logged numbers, so the NaN guard
and best-checkpoint choice agree everywhere; only the main process writes files and logs.
"""

import platform
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import gin
import torch
from accelerate import Accelerator
from accelerate.utils import get_int_from_env
from tqdm.auto import tqdm

from training.cli import ConfigError, operative_config
from training.guards import check_finite


@gin.configurable
def make_accelerator(mixed_precision: str = "no", cpu: bool = False) -> Accelerator:
    """Accelerate owns device placement, mixed precision ("no" | "bf16" | "fp16") and multi-process.

    Launched as several processes (WORLD_SIZE or an MPI size > 1) on a machine without CUDA, the processes
    join one gloo group on the CPU: Accelerate does that only when asked for the CPU, and would otherwise run
    each process as an independent single-process job (all of them writing the same files). A launch that
    still forms no group of that size stops here.
    """
    world = get_int_from_env(["WORLD_SIZE", "PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "MV2_COMM_WORLD_SIZE"], 1)
    accelerator = Accelerator(
        mixed_precision=mixed_precision, cpu=cpu or (world > 1 and not torch.cuda.is_available())
    )
    if accelerator.num_processes != world:
        raise RuntimeError(
            f"launched as {world} processes (WORLD_SIZE / MPI size) but Accelerate formed a group of "
            f"{accelerator.num_processes}; check the launcher's backend settings"
        )
    return accelerator


def cross_process(accelerator: Accelerator, reduction: str) -> Callable[[torch.Tensor], torch.Tensor]:
    """t -> t reduced over processes ("sum" | "mean") on the accelerator's device; identity for 1 process."""
    if accelerator.num_processes == 1:
        return lambda t: t
    return lambda t: accelerator.reduce(t.to(accelerator.device), reduction=reduction)


@gin.configurable(denylist=["params"])
def adamw(
    params, lr: float = gin.REQUIRED, weight_decay: float = 0.0, betas=(0.9, 0.999), fused: bool = True
) -> torch.optim.AdamW:
    """AdamW; `fused` runs the whole update as one kernel per parameter group (CPU and CUDA), same math."""
    return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay, betas=tuple(betas), fused=fused)


class BatchOrder:
    """Example indices for a step, a pure function of (seed, step).

    Shuffled epochs, last partial batch dropped.

    Resuming at step s gives exactly the batches an uninterrupted run would have seen. `batch_size` is the
    global batch: process `rank` of `world` takes every `world`-th of its rows (batch_size / world rows),
    so P processes together see, step for step, the examples of one process at the same batch_size, and
    the mean of their (equal-sized) per-process mean losses is the global batch mean.
    """

    def __init__(self, n_examples: int, batch_size: int, seed: int, rank: int = 0, world: int = 1):
        if n_examples < batch_size:
            raise ConfigError(f"batch_size {batch_size} exceeds the {n_examples} training examples: lower it")
        if batch_size % world:
            raise ConfigError(
                f"the global batch_size {batch_size} must be divisible by the {world} processes"
            )
        self.n, self.batch_size, self.seed, self.rank, self.world = n_examples, batch_size, seed, rank, world
        self.steps_per_epoch = n_examples // batch_size
        self._epoch, self._perm = -1, torch.empty(0, dtype=torch.long)

    def indices(self, step: int) -> torch.Tensor:
        epoch, pos = divmod(step, self.steps_per_epoch)
        if epoch != self._epoch:  # a cache of a pure function of (seed, epoch)
            gen = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
            self._epoch, self._perm = epoch, torch.randperm(self.n, generator=gen)
        rows = self._perm[pos * self.batch_size : (pos + 1) * self.batch_size]
        return rows[self.rank :: self.world]


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


def pool_shard_means(
    metrics: dict[str, float], count_key: str, reduce_sum: Callable[[torch.Tensor], torch.Tensor]
) -> dict[str, float]:
    """Means over one shard of n_r users -> means over all shards, Σ_r n_r·m_r / Σ_r n_r; `count_key`
    holds n_r and becomes Σ_r n_r. reduce_sum: sum over processes (cross_process(accelerator, "sum"))."""
    keys = [k for k in metrics if k != count_key]
    n = float(metrics[count_key])
    local = torch.tensor([n * float(metrics[k]) for k in keys] + [n], dtype=torch.float64)  # [M + 1]
    total = reduce_sum(local).cpu()
    pooled = dict(zip(keys, (total[:-1] / total[-1].clamp(min=1.0)).tolist()))
    return {**pooled, count_key: int(total[-1])}


def shard(n: int, rank: int, world: int) -> range:
    """Process `rank`'s share of n rows (every `world`-th); every process needs at least one row."""
    if n < world:
        raise ValueError(f"{n} rows cannot be shared by {world} processes")
    return range(rank, n, world)


def interval_metrics(
    sums: MetricSums, step: int, run: Path, steps_per_s: float, optimizer
) -> dict[str, float]:
    """Means of the interval's metrics (one host sync), NaN guard, LR and speed."""
    metrics = sums.flush()
    check_finite(metrics, step, run)
    return {**metrics, "train/lr": optimizer.param_groups[0]["lr"], "perf/steps_per_s": steps_per_s}


def git_commit() -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=5
        )
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "-uno"], capture_output=True, text=True, timeout=5
        )
        return (
            out.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")
            if out.returncode == 0
            else "unknown"
        )
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def machine() -> str:
    """CPU model (and GPU name when one is used), for every reported number."""
    cpu = platform.processor() or "cpu"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    gpu = f", {torch.cuda.get_device_name(0)}" if torch.cuda.is_available() else ""
    return f"{cpu} ({torch.get_num_threads()} threads){gpu}"


def write_config(run: Path, is_main: bool) -> str:
    """The operative gin config (every binding read so far), saved as <run>/config.gin by the main process."""
    config = operative_config()
    if is_main:
        (run / "config.gin").write_text(config)
    return config


def progress(start: int, iterations: int):
    """Steps start..iterations-1, with a progress bar on an interactive terminal only."""
    return tqdm(range(start, iterations), initial=start, total=iterations, disable=not sys.stderr.isatty())


def run_dir(out_dir: str) -> Path:
    path = Path(out_dir)
    path.mkdir(parents=True, exist_ok=True)
    return path
