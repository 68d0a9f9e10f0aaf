"""Multi-process runs: the accelerator, cross-process reductions and the split of evaluation rows.

Multi-process runs (`accelerate launch --multi_gpu --num_processes P ...`, or torchrun): every process
builds the same model and sees the same step sequence; BatchOrder (training/loop.py) gives each process 1/P
of the global batch; MetricSums and pool_shard_means make every process hold the same logged numbers, so the
NaN guard and best-checkpoint choice agree everywhere; only the main process writes files and logs.
"""

from collections.abc import Callable

import gin
import torch
from accelerate import Accelerator
from accelerate.utils import get_int_from_env


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
