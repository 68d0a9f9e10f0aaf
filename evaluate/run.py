"""Re-evaluate a finished stage-2 run (its best.pt) with other beam widths, without training.

    python -m evaluate.run out/decoder/beauty/cpu-paper --beam-width 20 30 [--split test] [--gin ...]

Reads the run's own config.gin (the operative config it was trained with), so the data, the semantic IDs and
the model sizes match the training run. Writes <run>/eval-<split>-beam<B>.json per width (metrics beside the
popularity baseline on the same split, commit, machine, wall time) and prints each comparison table.
"""

import argparse
import time
from collections.abc import Sequence
from pathlib import Path

import gin
import torch

import train_decoder  # registers the stage-2 configurables a run's config.gin binds; builds its model
from data.processed import popularity
from evaluate.metrics import KS
from evaluate.retrieval import evaluate_retrieval, popularity_baseline
from modules.prefix_trie import PrefixTrie
from training.bindings import resolve_macros
from training.checkpoint import load_tensors
from training.cli import load_gin, run_cli
from training.logger import write_json
from training.run import git_commit, machine


def parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run", help="a train_decoder.py output directory (holds config.gin and best.pt)")
    parser.add_argument("--beam-width", type=int, nargs="+", required=True)
    parser.add_argument("--split", choices=("valid", "test"), default="test")
    parser.add_argument("--gin", action="append", default=[], help="extra bindings after the run's config")
    args = parser.parse_args(argv)
    if min(args.beam_width) < max(KS):
        parser.error(f"--beam-width {min(args.beam_width)}: must be >= {max(KS)}, the largest k reported")
    return args


def load_run(run: Path, bindings: Sequence[str]):
    """(dataset, semantic IDs, model with best.pt weights) of a finished run."""
    for needed in ("config.gin", "best.pt"):
        if not (run / needed).exists():
            raise FileNotFoundError(f"{run / needed} not found: is {run} a finished train_decoder.py run?")
    load_gin([str(run / "config.gin")], bindings)
    semantic_ids = resolve_macros(gin.query_parameter("train_decoder.semantic_ids"))  # %SEMANTIC_IDS
    dataset, sem, train_data = train_decoder.load_data(semantic_ids)
    model = train_decoder.make_model(sem, train_data.max_items)
    model.load_state_dict(load_tensors(run / "best.pt")["model"])
    return dataset, sem, model.eval()


def main(argv: Sequence[str] | None = None) -> list[dict]:
    args = parse(argv)
    run = Path(args.run)
    dataset, sem, model = load_run(run, args.gin)
    loader = train_decoder.eval_loader(
        dataset, args.split, gin.query_parameter("train_decoder.eval_batch_size"), None
    )
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    trie = PrefixTrie.from_codes(sem.codes, sem.codebook_size).to(device)
    codes, model = sem.codes.to(device), model.to(device)
    pop = popularity_baseline(popularity(dataset, args.split), torch.from_numpy(loader.dataset.targets()))
    pop = {k.replace("pop/", f"pop_{args.split}/"): v for k, v in pop.items()}
    rows = []
    for width in args.beam_width:
        t0 = time.perf_counter()
        scores = evaluate_retrieval(model, loader, codes, trie, beam_width=width, device=device)
        row = {
            **{f"{args.split}/{k.split('/', 1)[1]}": v for k, v in scores.items()}, **pop,
            "beam_width": width, "wall_s": time.perf_counter() - t0, "run": str(run),
            "commit": git_commit(), "machine": machine(), "date": time.strftime("%Y-%m-%d"),
        }  # fmt: skip
        write_json(run / f"eval-{args.split}-beam{width}.json", row)
        print(f"beam {width}: " + ", ".join(f"{k} {v:.4f}" for k, v in row.items() if "@" in k))
        rows.append(row)
    return rows


if __name__ == "__main__":
    run_cli(main)
