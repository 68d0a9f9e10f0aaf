"""Whole-pipeline quality run on a real dataset with a stated budget: embeddings (cached) -> stage 1 ->
stage 2 (best-validation checkpoint) -> test metrics beside the popularity baseline -> one results row.

    python -m bench.quality --dataset beauty --root ../shared/data/amazon-2014-beauty \
        --protocol cpu --rqvae-steps 20000 --decoder-steps 2000
        [--decoder-config configs/decoder_amazon_paper.gin] [--gin "Binding = value" ...]

Both stages resume from their own checkpoints, so re-running the same command continues an interrupted run.
Writes out/results/<dataset>-<protocol>-<tag>.json: metrics, the command, budget, wall time per stage, commit
and machine. Extra --gin bindings go to both stages (e.g. make_accelerator.mixed_precision = "bf16").
"""

import argparse
import json
import shlex
import subprocess
import sys
import time
from pathlib import Path

from data.files import load_tensors, write_json
from training.provenance import git_commit, machine

DATASETS = {  # name -> (stage-1 config, stage-2 config, root binding)
    "beauty": ("configs/rqvae_amazon.gin", "configs/decoder_amazon.gin", "load_amazon.root"),
    "toys": ("configs/rqvae_toys.gin", "configs/decoder_toys.gin", "load_amazon.root"),
    "sports": ("configs/rqvae_sports.gin", "configs/decoder_sports.gin", "load_amazon.root"),
    "ml1m": ("configs/rqvae_ml1m.gin", "configs/decoder_ml1m.gin", None),
}


def root_bindings(dataset: str, root: str) -> list[str]:
    if DATASETS[dataset][2]:
        return [f'{DATASETS[dataset][2]} = "{root}"']
    derived = Path(root) / "derived" / "ml-1m_user_sequences_derived.txt.gz"
    return [
        f'load_sequence_file.path = "{derived}"',
        f'load_sequence_file.movies_path = "{Path(root) / "movies.dat"}"',
    ]


def as_args(bindings: list[str]) -> list[str]:
    return [arg for b in bindings for arg in ("--gin", b)]


def run_stage(script: str, configs: list[str], bindings: list[str], out_dir: str) -> dict:
    """One stage in its own process (each owns its Accelerator); returns its metrics.json."""
    subprocess.run([sys.executable, script, *configs, *as_args(bindings)], check=True)
    return json.loads((Path(out_dir) / "metrics.json").read_text())


def last_value(run_dir: str, key: str) -> float | None:
    """The last logged value of `key` in <run_dir>/metrics.jsonl (None if never logged)."""
    values = [
        json.loads(line).get(key) for line in (Path(run_dir) / "metrics.jsonl").read_text().splitlines()
    ]
    return next((v for v in reversed(values) if v is not None), None)


def start_step(run_dir: str) -> int:
    """The step a stage resumes from: its checkpoint's, or 0 for a fresh run."""
    ckpt = Path(run_dir) / "checkpoint.pt"
    return int(load_tensors(ckpt, mmap=True)["step"]) if ckpt.exists() else 0


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--dataset", choices=sorted(DATASETS), required=True)
    parser.add_argument("--root", required=True)
    parser.add_argument("--protocol", default="cpu", help="label of the budget, e.g. cpu / h100-full")
    parser.add_argument("--tag", default="default", help="run name (ablations use distinct tags)")
    parser.add_argument(
        "--rqvae-tag", default=None,
        help="stage-1 run to use (default: --tag); ablations of stage 2 share one stage-1 run this way",
    )  # fmt: skip
    parser.add_argument("--rqvae-steps", type=int, required=True)
    parser.add_argument("--decoder-steps", type=int, required=True)
    parser.add_argument(
        "--decoder-config", nargs="+", default=None,
        help="stage-2 config files, composed in order (default: the dataset's), e.g. a model then a recipe",
    )  # fmt: skip
    parser.add_argument("--rqvae-gin", action="append", default=[], help="bindings for stage 1 only")
    parser.add_argument("--decoder-gin", action="append", default=[], help="bindings for stage 2 only")
    parser.add_argument("--gin", action="append", default=[], help="bindings for both stages")
    args = parser.parse_args(argv)
    rq_config, dec_config, _ = DATASETS[args.dataset]
    rq_dir = f"out/rqvae/{args.dataset}/{args.protocol}-{args.rqvae_tag or args.tag}"
    dec_dir = f"out/decoder/{args.dataset}/{args.protocol}-{args.tag}"
    common = root_bindings(args.dataset, args.root) + args.gin
    t0, commit = time.perf_counter(), git_commit()  # the code that runs: the tree may change meanwhile
    rq_bindings = [f'train_rqvae.out_dir = "{rq_dir}"', f"train_rqvae.iterations = {args.rqvae_steps}"]
    rq = run_stage("train_rqvae.py", [rq_config], common + args.rqvae_gin + rq_bindings, rq_dir)
    t1 = time.perf_counter()
    dec_bindings = [
        f'train_decoder.out_dir = "{dec_dir}"',
        f'train_decoder.semantic_ids = "{rq_dir}/semantic_ids.pt"',
        f"train_decoder.iterations = {args.decoder_steps}",
    ]
    dec_configs = args.decoder_config or [dec_config]
    dec_start = start_step(dec_dir)
    dec = run_stage("train_decoder.py", dec_configs, common + args.decoder_gin + dec_bindings, dec_dir)
    t2 = time.perf_counter()
    row = {
        "dataset": args.dataset, "protocol": args.protocol, "tag": args.tag,
        "budget": {"rqvae_steps": args.rqvae_steps, "decoder_steps": args.decoder_steps},
        "metrics": {k: v for k, v in dec.items() if k.startswith(("test/", "pop/", "valid_full/"))},
        "selected_step": dec.get("selected_step"), "examples": dec.get("examples"),
        "train_wall_s": last_value(dec_dir, "perf/train_wall_s"),
        "rqvae": {k: v for k, v in rq.items() if k.startswith("rqvae/")},
        "best_valid": dec.get("best_valid"), "wall_s": {"rqvae": t1 - t0, "decoder": t2 - t1},
        "decoder_resumed": dec_start > 0,  # wall_s["decoder"] covers steps decoder_start_step..decoder_steps
        "decoder_start_step": dec_start,
        "command": "python -m bench.quality " + shlex.join(sys.argv[1:] if argv is None else argv),
        "commit": commit, "commit_at_end": git_commit(), "machine": machine(),
        "date": time.strftime("%Y-%m-%d"),
    }  # fmt: skip
    out = Path("out/results")
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / f"{args.dataset}-{args.protocol}-{args.tag}.json", row)
    print(json.dumps(row["metrics"], indent=1))
    return row


if __name__ == "__main__":
    main()
