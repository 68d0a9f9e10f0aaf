"""Run plumbing shared by both scripts: accelerator, optimizer, batch order, metric sums, run dirs."""

import platform
import subprocess
from pathlib import Path

import gin
import torch
from accelerate import Accelerator

from training.guards import check_finite


@gin.configurable
def make_accelerator(mixed_precision: str = "no", cpu: bool = False) -> Accelerator:
    """Accelerate owns device placement, mixed precision ("no" | "bf16" | "fp16") and multi-process."""
    return Accelerator(mixed_precision=mixed_precision, cpu=cpu)


@gin.configurable(denylist=["params"])
def adamw(
    params, lr: float = gin.REQUIRED, weight_decay: float = 0.0, betas=(0.9, 0.999), fused: bool = True
) -> torch.optim.AdamW:
    """AdamW; `fused` runs the whole update as one kernel per parameter group (CPU and CUDA), same math."""
    return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay, betas=tuple(betas), fused=fused)


class BatchOrder:
    """Example indices for a step, a pure function of (seed, step).

    Shuffled epochs, last partial batch dropped.

    Resuming at step s gives exactly the batches an uninterrupted run would have seen. Each process of a
    multi-process run takes every `world`-th row of the global batch.
    """

    def __init__(self, n_examples: int, batch_size: int, seed: int, rank: int = 0, world: int = 1):
        if n_examples < batch_size:
            raise ValueError(f"batch_size {batch_size} exceeds the {n_examples} training examples")
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
    """On-device sums of per-step scalars; one host sync per flush."""

    def __init__(self):
        self.sums: dict[str, torch.Tensor] = {}
        self.count = 0

    def add(self, values: dict[str, torch.Tensor]) -> None:
        for key, value in values.items():
            value = value.detach().float()
            self.sums[key] = self.sums[key] + value if key in self.sums else value.clone()
        self.count += 1

    def flush(self) -> dict[str, float]:
        if not self.sums:
            return {}
        keys = list(self.sums)
        means = (torch.stack([self.sums[k] for k in keys]) / self.count).tolist()
        self.sums, self.count = {}, 0
        return dict(zip(keys, means))


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


def run_dir(out_dir: str) -> Path:
    path = Path(out_dir)
    path.mkdir(parents=True, exist_ok=True)
    return path
