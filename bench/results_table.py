"""The results tables (README, docs/results.md), rendered from results rows (bench.quality) and
re-evaluations (evaluate.run).

    python -m bench.results_table docs/results/beauty-cpu-paper.json docs/results/toys-cpu-paper.json ... \
        [--eval docs/results/beauty-cpu-paper-eval-test-beam20.json ...]

Prints one markdown table (published anchors first, marked as such; then one row per measured run, with the
popularity baseline of each dataset once) and, below it, the command behind every measured row. Nothing is
typed by hand: every measured number comes from a JSON file written by the run itself.
"""

import argparse
import json
from pathlib import Path

# Published values (P5 split of Amazon 2014: leave-one-out, full ranking, history <= 20), in the order
# R@5, N@5, R@10, N@10. Sources: Rajput et al. 2023 (TIGER) Table 2; genrec and RPG as quoted in issue 6.
PUBLISHED = [
    ("beauty", "TIGER paper", (0.0454, 0.0321, 0.0648, 0.0384)),
    ("beauty", "genrec (best independent TIGER reproduction)", (0.0465, 0.0297, 0.0721, 0.0378)),
    ("beauty", "RPG (best generative semantic-ID model with public code)", (0.0550, 0.0381, 0.0809, 0.0464)),
    ("sports", "TIGER paper", (0.0264, 0.0181, 0.0400, 0.0225)),
    ("toys", "TIGER paper", (0.0521, 0.0371, 0.0712, 0.0432)),
]
COLUMNS = ["#", "dataset", "run", "budget", "R@5", "N@5", "R@10", "N@10", "R@10 3-code prefix",
           "stage-2 wall", "date", "commit", "machine"]  # fmt: skip
HEADER = "| " + " | ".join(COLUMNS) + " |\n" + "|---" * len(COLUMNS) + "|"


def fmt(value: float | None) -> str:
    return "—" if value is None else f"{value:.4f}"


def metric_cells(m: dict, split: str) -> list[str]:
    keys = ("recall@5", "ndcg@5", "recall@10", "ndcg@10", "recall@10_prefix3")
    return [fmt(m.get(f"{split}/{k}")) for k in keys]


def budget(row: dict) -> str:
    b = row["budget"]
    rq_kmeans = 'tokenizer = "rq_kmeans"' in row["command"]  # fitted, not trained: no steps
    stage1 = "RQ-KMeans (fitted)" if rq_kmeans else f"RQ-VAE {b['rqvae_steps']:,} steps"
    return f"{stage1}; decoder {b['decoder_steps']:,} steps × 256"


def wall(row: dict) -> str:
    """Stage-2 wall time of the invocation that wrote the row; a resumed one says which steps it covers."""
    minutes, start = f"{row['wall_s']['decoder'] / 60:.0f} min", row.get("decoder_start_step", 0)
    if "decoder_resumed" not in row:  # written before bench.quality recorded resumes
        return f"{minutes} (last invocation; resume not recorded)"
    if start:
        return f"{minutes} (steps {start:,}–{row['budget']['decoder_steps']:,})"
    return minutes + (" (resumed: part of the run)" if row["decoder_resumed"] else "")


def measured_rows(paths: list[Path]) -> tuple[list[str], list[str]]:
    """Table lines and numbered commands for results rows, each dataset's popularity baseline once."""
    lines, commands, seen_pop = [], [], set()
    for path in paths:
        row = json.loads(path.read_text())
        n = len(commands) + 1
        run = f"{row['protocol']}-{row['tag']}"  # its directory under out/decoder/<dataset>/
        cells = [str(n), row["dataset"], run, budget(row), *metric_cells(row["metrics"], "test"), wall(row)]
        lines.append("| " + " | ".join([*cells, row["date"], f"`{row['commit']}`", row["machine"]]) + " |")
        commands.append(f"# {n}: {path.name}\n{row['command']}")
        if row["dataset"] not in seen_pop:
            seen_pop.add(row["dataset"])
            pop = metric_cells(row["metrics"], "pop")
            lines.append(f"| | {row['dataset']} | popularity (same test split) | — | " + " | ".join(pop)
                         + f" | — | {row['date']} | `{row['commit']}` | {row['machine']} |")  # fmt: skip
    return lines, commands


def eval_rows(paths: list[Path], first: int) -> tuple[list[str], list[str]]:
    """Table lines and commands for evaluate.run re-evaluations (other beam widths of a finished run)."""
    lines, commands = [], []
    for i, path in enumerate(paths, start=first):
        row = json.loads(path.read_text())
        run = Path(row["run"])
        cells = [str(i), run.parent.name, f"{run.name}, beam {row['beam_width']}", "same run, re-evaluated"]
        cells += metric_cells(row, "test") + ["—", row["date"], f"`{row['commit']}`", row["machine"]]
        lines.append("| " + " | ".join(cells) + " |")
        commands.append(f"# {i}: {path.name}\npython -m evaluate.run {run} --beam-width {row['beam_width']}")
    return lines, commands


STUDY_COLUMNS = [
    "#", "dataset", "run", "model / recipe", "examples", "selected step", "valid R@10", "valid N@10",
    "test R@5", "test N@5", "test R@10", "test N@10", "train wall", "date", "commit", "machine",
]  # fmt: skip


def with_se(m: dict, key: str) -> str:
    """ "0.0512 ± 0.0015" (value ± standard error), "—" when absent."""
    if key not in m:
        return "—"
    se = m.get(f"{key}_se")
    return fmt(m[key]) + ("" if se is None else f" ± {se:.4f}")


def recipe_of(command: str) -> str:
    """The config files of a run's command, without the folders: what the row trained."""
    words = command.replace("=", " ").split()
    return " + ".join(Path(w).stem for w in words if w.endswith(".gin") and "/" in w) or "—"


def study_row(n: int, row: dict) -> str:
    """One line of the selection-aware table: bench.quality rows and evaluate.sasrec metrics.json alike."""
    m = row.get("metrics", row)
    run = f"{row['protocol']}-{row['tag']}" if "tag" in row else Path(row["run"]).name
    hours = (row.get("train_wall_s") or 0) / 3600
    cells = [str(n), row["dataset"], run, recipe_of(row["command"]), f"{row.get('examples') or 0:,}",
             f"{row.get('selected_step') or '—'}", with_se(m, "valid_full/recall@10"),
             with_se(m, "valid_full/ndcg@10"), fmt(m.get("test/recall@5")), fmt(m.get("test/ndcg@5")),
             with_se(m, "test/recall@10"), with_se(m, "test/ndcg@10"), f"{hours:.2f} h", row["date"],
             f"`{row['commit']}`", row["machine"]]  # fmt: skip
    return "| " + " | ".join(cells) + " |"


def render_study(paths: list[Path]) -> str:
    """The table of runs selected on the full validation split: valid and test side by side (± SE)."""
    header = "| " + " | ".join(STUDY_COLUMNS) + " |\n" + "|---" * len(STUDY_COLUMNS) + "|"
    rows = [json.loads(p.read_text()) for p in paths]
    lines = [study_row(n, row) for n, row in enumerate(rows, start=1)]
    commands = [f"# {n}: {p.name}\n{row['command']}" for n, (p, row) in enumerate(zip(paths, rows), start=1)]
    return "\n".join([header, *lines]) + "\n\nCommands:\n\n```bash\n" + "\n".join(commands) + "\n```\n"


def render(results: list[Path], evals: list[Path]) -> str:
    published = [
        f"| | {ds} | **published**: {name} | paper schedule | " + " | ".join(f"{v:.4f}" for v in values)
        + " | — | — | — | — | — |"
        for ds, name, values in PUBLISHED
    ]  # fmt: skip
    lines, commands = measured_rows(results)
    more, more_commands = eval_rows(evals, len(commands) + 1)
    table = "\n".join([HEADER, *published, *lines, *more])
    return (
        table
        + "\n\nCommands (row number: command):\n\n```bash\n"
        + "\n".join(commands + more_commands)
        + "\n```\n"
    )


def main(argv=None) -> str:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("results", nargs="+", type=Path, help="bench.quality results rows (JSON)")
    parser.add_argument("--eval", nargs="*", default=[], type=Path, help="evaluate.run rows (JSON)")
    parser.add_argument(
        "--study", action="store_true",
        help="rows selected on the full validation split (bench.quality, evaluate.sasrec): valid, test ± SE",
    )  # fmt: skip
    args = parser.parse_args(argv)
    text = render_study(args.results) if args.study else render(args.results, args.eval)
    print(text)
    return text


if __name__ == "__main__":
    main()
