"""Loss and validation-recall curves of runs, from their metrics.jsonl, as one PNG.

    python -m bench.plot_curves out/decoder/beauty/cpu-paper out/decoder/beauty/cpu-reference \
        --out docs/curves_beauty_cpu.png [--x step | examples | wall]

Time to quality (one PNG per headline run): --x examples and --x wall put the training examples seen
(perf/examples) or the training + validation wall time in hours (perf/train_wall_s) on the x axis, e.g.
    --keys valid/recall@10 test_monitor/recall@10 --x examples
"""

import argparse
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

X_AXES = {"step": ("step", 1.0), "examples": ("perf/examples", 1e-6), "wall": ("perf/train_wall_s", 1 / 3600)}
X_LABELS = {"step": "step", "examples": "training examples (millions)", "wall": "wall time (hours)"}


def read_series(run: Path, key: str, x: str = "step") -> tuple[list[float], list[float]]:
    """(x values, `key` values) of the rows of <run>/metrics.jsonl that hold both; x: a key of X_AXES."""
    x_key, scale = X_AXES[x]
    xs, values = [], []
    for line in (run / "metrics.jsonl").read_text().splitlines():
        row = json.loads(line)
        if key in row and x_key in row:
            xs.append(row[x_key] * scale)
            values.append(row[key])
    return xs, values


def plot_panel(ax, series: list[tuple[str, list[float], list[float]]], title: str, xlabel: str) -> None:
    for label, xs, values in series:
        ax.plot(xs, values, marker="o" if len(xs) < 30 else None, label=label)
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.grid(alpha=0.3)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("runs", nargs="+", type=Path)
    parser.add_argument("--keys", nargs="+", default=["train/loss", "valid/recall@10", "valid/ndcg@10"])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--x", nargs="+", choices=sorted(X_AXES), default=["step"], help="x axes")
    parser.add_argument(
        "--overlay", action="store_true",
        help="one panel per x axis with every key of every run in it (time-to-quality plots)",
    )  # fmt: skip
    args = parser.parse_args(argv)
    if args.overlay:
        panels = [(X_LABELS[x], x, args.keys) for x in args.x]
    else:
        panels = [(key, x, [key]) for x in args.x for key in args.keys]
    fig, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 3.6), squeeze=False)
    for ax, (title, x, keys) in zip(axes[0], panels):
        series = [
            (f"{run.parent.name}/{run.name} {key}" if args.overlay else f"{run.parent.name}/{run.name}",
             *read_series(run, key, x))
            for run in args.runs
            for key in keys
        ]  # fmt: skip
        plot_panel(ax, series, title, X_LABELS[x])
    axes[0][0].legend(fontsize=8)
    fig.tight_layout()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=110)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
