"""RQ-VAE training throughput at the reference shapes (batch 64, E=768 -> [512,256,128] -> 32, 3 x 256,
rotation trick), on random unit-norm embeddings. Prints the machine line and the GEMM probe of this process,
then per mode steps/s (median of timed windows), the step's GEMM FLOPs (torch's FlopCounterMode, forward
and backward), the share of the GEMM rate of the mode's precision they reach, and peak RSS.

    python -m bench.rqvae_speed [--modes eager eager-bf16 compile compile-bf16] [--steps 300] [--profile]

Each mode runs train_rqvae.py's optimizer step (training.loop.optimizer_step, AdamW) on a fresh model.
"""

import argparse
import resource
import statistics
import time

import torch

from bench.hardware import CpuAccelerator, count_flops, machine_line, probe, share, top_ops
from modules.rqvae import RqVae
from training.loop import optimizer_step


def make_step(mode: str, batch_size: int, dim: int, fused: bool):
    torch.manual_seed(0)
    model = RqVae(input_dim=dim)
    data = torch.nn.functional.normalize(torch.randn(12_000, dim), dim=-1)
    model.kmeans_init(data[:11_500], generator=torch.Generator().manual_seed(0))
    optimizer = torch.optim.AdamW(model.parameters(), lr=5e-4, weight_decay=0.01, fused=fused)
    forward = torch.compile(model) if mode.startswith("compile") else model
    bf16 = mode.endswith("bf16")

    def step(i: int) -> torch.Tensor:
        x = data[(i * batch_size) % 11_500 :][:batch_size]
        return optimizer_step(forward, optimizer, None, x, CpuAccelerator(bf16)).loss.detach()

    return step


def measure(step, steps: int, windows: int = 5) -> float:
    for i in range(30):  # warm-up (and compilation)
        step(i)
    rates = []
    for w in range(windows):
        t0 = time.perf_counter()
        for i in range(steps):
            loss = step(i + w * steps)
        float(loss)  # one sync per window
        rates.append(steps / (time.perf_counter() - t0))
    return statistics.median(rates)


def profile(step, steps: int = 50) -> str:
    """The top ops by self CPU time (bench.hardware.top_ops) over `steps` steps (after the timed windows,
    so warm)."""

    def run():
        for i in range(steps):
            step(i)

    return top_ops(run)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--modes", nargs="+", default=["eager", "eager-bf16", "compile", "compile-bf16"])
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument(
        "--no-fused", dest="fused", action="store_false", help="foreach AdamW instead of fused"
    )
    parser.add_argument("--profile", action="store_true", help="each mode's top ops by self CPU time")
    args = parser.parse_args(argv)
    print(f"machine: {machine_line()}; batch {args.batch_size}; fused AdamW {args.fused}")
    gemm = probe()
    print("GEMM probe (1024^3, this process): " + ", ".join(f"{k} {v:.0f} GFLOP/s" for k, v in gemm.items()))
    eager = make_step("eager", args.batch_size, 768, args.fused)
    flops = count_flops(lambda: eager(0))  # the same GEMMs in every mode
    for mode in args.modes:
        t0 = time.perf_counter()
        step = make_step(mode, args.batch_size, 768, args.fused)
        setup = time.perf_counter() - t0
        rate = measure(step, args.steps)
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        precision = "bf16" if mode.endswith("bf16") else "fp32"
        print(
            f"{mode:>13}: {rate:7.1f} steps/s, {flops / 1e9:.2f} GFLOP/step = "
            f"{share(flops, rate, gemm[precision]):.0%} of the {precision} GEMM rate  "
            f"(setup incl. k-means init {setup:.1f} s, peak RSS {rss:.0f} MB)"
        )
        if args.profile:
            print(profile(step))


if __name__ == "__main__":
    main()
