"""Re-evaluate a finished stage-2 run (its best.pt) with other beam widths, without training.

    python -m evaluate.run out/decoder/beauty/cpu-paper --beam-width 20 30 [--split test] [--gin ...]

Reads the run's own config.gin (the operative config it was trained with), so the data, the semantic IDs and
the model sizes match the training run. Writes <run>/eval-<split>-beam<B>.json per width (metrics beside the
popularity baseline on the same split under pop/, the split, commit, machine, wall time) and prints each
comparison table.
"""

import argparse
import time
from collections.abc import Sequence
from pathlib import Path

import torch

from data.files import write_json
from evaluate.metrics import KS, renamed
from evaluate.popularity import split_baseline
from evaluate.retrieval import evaluate_retrieval
from training.cli import run_cli
from training.provenance import git_commit, machine
from training.retriever import DecoderLoop, eval_loader, load_run, retrieval_targets, split_targets


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


def main(argv: Sequence[str] | None = None) -> list[dict]:
    args = parse(argv)
    run = Path(args.run)
    dataset, sem, model = load_run(run, args.gin)
    loop = DecoderLoop()  # the run's settings, defaults for those its config.gin predates (cold_epsilons)
    loader = eval_loader(dataset, args.split, loop.eval_batch_size, None)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    trie, cold = retrieval_targets(sem, dataset, loop.cold_epsilons)
    trie = trie.to(device)  # the warm items' trie for a cold-start run, as in training
    codes, model = sem.codes.to(device), model.to(device)
    pop = split_baseline(dataset, args.split, split_targets(loader))
    rows = []
    for width in args.beam_width:
        t0 = time.perf_counter()
        scores = evaluate_retrieval(model, loader, codes, trie, beam_width=width, device=device, cold=cold)
        row = {
            **renamed(scores, args.split), **pop,
            "split": args.split, "beam_width": width, "wall_s": time.perf_counter() - t0, "run": str(run),
            "commit": git_commit(), "machine": machine(), "date": time.strftime("%Y-%m-%d"),
        }  # fmt: skip
        write_json(run / f"eval-{args.split}-beam{width}.json", row)
        print(f"beam {width}: " + ", ".join(f"{k} {v:.4f}" for k, v in row.items() if "@" in k))
        rows.append(row)
    return rows


if __name__ == "__main__":
    run_cli(main)
