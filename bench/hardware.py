"""What the machine can do, measured in the same process as a benchmark: CPU model and ISA, GEMM rates in
fp32 and bf16, a workload's FLOPs per step, and the share of the GEMM rate it achieves.

    python -m bench.hardware            # prints the machine line and both GEMM rates

Every speed benchmark prints `machine_line()` and the GEMM probe beside its own figures, so a number is
always read against what the same machine did in the same run.
"""

import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

import torch
from torch.utils.flop_counter import FlopCounterMode

from evaluate.retrieval import bf16_autocast
from training.provenance import allocator

ISA_FLAGS = [  # (label, every /proc/cpuinfo flag it needs), most capable first
    ("AMX-BF16", ("amx_bf16", "amx_tile")),
    ("AVX-512 BF16", ("avx512_bf16",)),
    ("AVX-512", ("avx512f",)),
    ("AVX2", ("avx2",)),
]


class CpuAccelerator(NamedTuple):
    """What the scripts' train steps (training.loop.optimizer_step) use of an Accelerator, for one process on
    the CPU: `autocast()` to bf16 when `bf16` (else none) and a plain `backward`. Unlike an Accelerator, one
    process may hold several with different precisions."""

    bf16: bool = False

    def autocast(self):
        return bf16_autocast("cpu", self.bf16)

    def backward(self, loss: torch.Tensor) -> None:
        loss.backward()


def cpu_flags(cpuinfo: str | None = None) -> tuple[str, set[str]]:
    """(CPU model name, set of ISA flags) from /proc/cpuinfo text (read when None; empty where absent)."""
    if cpuinfo is None:
        path = Path("/proc/cpuinfo")
        cpuinfo = path.read_text() if path.exists() else ""
    model, flags = "unknown CPU", set()
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "model name" and model == "unknown CPU":
            model = value.strip()
        elif key.strip() == "flags" and not flags:
            flags = set(value.split())
    return model, flags


def isa(flags: set[str]) -> str:
    """The most capable matrix ISA among ISA_FLAGS that `flags` has ("none" if none)."""
    return next((label for label, need in ISA_FLAGS if all(f in flags for f in need)), "none")


def machine_line() -> str:
    model, flags = cpu_flags()
    threads = torch.get_num_threads()
    return f"{model}; ISA {isa(flags)}; {threads} threads; malloc {allocator()}; torch {torch.__version__}"


def gemm_rate(dtype: torch.dtype, n: int = 1024, seconds: float = 1.0) -> float:
    """GFLOP/s of n×n @ n×n matmuls in `dtype` on the CPU: median of 3 windows of about seconds/3 each."""
    a, b = torch.randn(n, n).to(dtype), torch.randn(n, n).to(dtype)
    a @ b  # warm-up (packing, thread pool)
    rates = []
    for _ in range(3):
        count, t0 = 0, time.perf_counter()
        while time.perf_counter() - t0 < seconds / 3:
            a @ b
            count += 1
        rates.append(2 * n**3 * count / (time.perf_counter() - t0) / 1e9)
    return statistics.median(rates)


def count_flops(fn: Callable[[], object]) -> int:
    """FLOPs of one call of `fn` (forward and backward if fn runs both), counted by torch's FlopCounterMode
    (matmuls, convolutions and attention: the GEMM work that the GEMM rate bounds)."""
    counter = FlopCounterMode(display=False)
    with counter:
        fn()
    return int(counter.get_total_flops())


def top_ops(fn: Callable[[], object], rows: int = 15) -> str:
    """torch.profiler's table of the ops that take the most self CPU time over one call of `fn`: where a
    workload's time goes that the GEMM rate does not bound."""
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        fn()
    return prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=rows)


def share(flops_per_step: float, steps_per_s: float, gemm_gflops: float) -> float:
    """Fraction of the GEMM rate achieved: flops_per_step · steps/s over the rate."""
    return flops_per_step * steps_per_s / (gemm_gflops * 1e9)


def probe() -> dict[str, float]:
    """{"fp32": GFLOP/s, "bf16": GFLOP/s} on this machine now."""
    return {"fp32": gemm_rate(torch.float32), "bf16": gemm_rate(torch.bfloat16)}


def main() -> None:
    print(machine_line())
    for name, rate in probe().items():
        print(f"GEMM 1024^3 {name}: {rate:.0f} GFLOP/s")


if __name__ == "__main__":
    main()
