"""Evaluation speed of a finished stage-2 run: its best.pt, beam search over a split, timed.

    python -m bench.eval_run_speed out/decoder/beauty/cpu-decoder_only_grouped_dropout0.2_6000 \
        [--split test] [--users 0] [--beam 10] [--batch-size 512] [--bf16]

Unlike bench/decoder_speed.py (a fresh model on Beauty-shaped data), this times the trained weights on the
run's own data, in the evaluation order training uses (training/retriever.py eval_loader: shortest history
first, batches trimmed). `--users 0` is the whole split, else a seeded sample. One warm-up batch is run
first and not timed. Prints the machine, wall time, users/s, ms/user, peak RSS and the recall / NDCG it
measured (so two code versions can be compared on the same users).
"""

import argparse
import resource
import time
from pathlib import Path

from bench.hardware import machine_line
from evaluate.retrieval import bf16_autocast, evaluate_retrieval
from training.retriever import eval_loader, load_run, retrieval_targets


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run", help="a train_decoder.py output directory (config.gin, best.pt)")
    parser.add_argument("--split", choices=("valid", "test"), default="test")
    parser.add_argument("--users", type=int, default=0, help="0 = the whole split")
    parser.add_argument("--beam", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=512)
    parser.add_argument("--bf16", action="store_true", help="bf16 autocast, as the CPU protocol evaluates")
    args = parser.parse_args()
    dataset, sem, model = load_run(Path(args.run), [])
    loader = eval_loader(dataset, args.split, args.batch_size, args.users or None)
    trie, _ = retrieval_targets(sem, dataset, ())
    print(machine_line())
    with bf16_autocast("cpu", args.bf16):
        evaluate_retrieval(model, loader, sem.codes, trie, args.beam, max_batches=1, disable_progress=True)
        start = time.perf_counter()
        scores = evaluate_retrieval(model, loader, sem.codes, trie, args.beam, disable_progress=True)
        wall = time.perf_counter() - start
    users = int(scores["eval/users"])
    peak_gb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6
    print(
        f"{args.run} {args.split}: {users} users, beam {args.beam}, bf16 {args.bf16}: {wall:.1f} s "
        f"({users / wall:.0f} users/s, {1e3 * wall / users:.2f} ms/user), peak RSS {peak_gb:.2f} GB; "
        f"R@10 {scores['eval/recall@10']:.4f} N@10 {scores['eval/ndcg@10']:.4f}"
    )


if __name__ == "__main__":
    main()
