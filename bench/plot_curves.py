"""Loss and validation-recall curves of runs, from their metrics.jsonl, as one PNG.

    python -m bench.plot_curves out/decoder/beauty/cpu-paper out/decoder/beauty/cpu-reference \
        --out docs/curves_beauty_cpu.png
"""

import argparse
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def read_series(run: Path, key: str) -> tuple[list[int], list[float]]:
    steps, values = [], []
    for line in (run / "metrics.jsonl").read_text().splitlines():
        row = json.loads(line)
        if key in row:
            steps.append(row["step"])
            values.append(row[key])
    return steps, values


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("runs", nargs="+", type=Path)
    parser.add_argument("--keys", nargs="+", default=["train/loss", "valid/recall@10", "valid/ndcg@10"])
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    fig, axes = plt.subplots(1, len(args.keys), figsize=(5 * len(args.keys), 3.6))
    for ax, key in zip(axes, args.keys):
        for run in args.runs:
            steps, values = read_series(run, key)
            ax.plot(
                steps, values, marker="o" if len(steps) < 30 else None, label=f"{run.parent.name}/{run.name}"
            )
        ax.set_title(key)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=110)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
