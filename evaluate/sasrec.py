"""SASRec on TIGER's split, scored by the same metrics: the model users would pick instead, and the check that
the split and the metrics are right (published on Beauty: R@10 0.0605 / N@10 0.0318 in TIGER's table).

    python -m evaluate.sasrec configs/sasrec_amazon.gin [--gin 'load_amazon.root = "..."'] [--gin ...]

Trains on every training target of a user in one causal pass (the decoder's sliding targets), scores the
full validation split every `eval_every` steps (all I items ranked, history items included, as beam
search may return them too), keeps best.pt on validation recall, stops once `patience` validations have
run since the best one (training.selection.plateaued, the decoder's rule), then scores the test split once
from best.pt beside the popularity baseline.
Writes out/sasrec/<dataset>/<run>/: config.gin, checkpoint.pt (exact resume), best.pt, metrics.jsonl,
metrics.json.
"""

import shlex
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import gin
import torch

from data.files import atomic_save, load_tensors, write_json
from data.registry import build_dataset
from data.windows import Windows, windows
from evaluate.metrics import KS, hit_rank, ranking_metrics, second_moments, with_standard_errors
from evaluate.popularity import split_baseline
from modules.sasrec import SasRec
from training.checkpoint import load_checkpoint, save_checkpoint
from training.cli import load_gin, parse_args, run_cli
from training.guards import check_finite
from training.logger import make_logger
from training.loop import BatchOrder, adamw, progress
from training.provenance import git_commit, machine, run_dir, write_config
from training.selection import plateaued


def main(argv: Sequence[str] | None = None) -> dict:
    args = parse_args(argv, "Train and score the SASRec baseline on the leave-one-out split")
    load_gin(args.configs, args.gin)
    command = "python -m evaluate.sasrec " + shlex.join(sys.argv[1:] if argv is None else argv)
    return train(command=command)


@torch.inference_mode()
def score_split(model: SasRec, split: Windows, batch_size: int, prefix: str) -> dict[str, float]:
    """Recall@k / NDCG@k (with SEs) of ranking all items for every user of a valid / test split."""
    was_training = model.training
    model.eval()
    ranks = []
    for start in range(0, len(split.targets), batch_size):
        items = torch.from_numpy(split.items[start : start + batch_size])
        top = model.scores(items).topk(max(KS), dim=-1).indices  # [B, k]
        ranks.append(hit_rank(top, torch.from_numpy(split.targets[start : start + batch_size])))
    model.train(was_training)
    rank = torch.cat(ranks)
    metrics = {
        **ranking_metrics(rank, KS, prefix),
        **second_moments(rank, KS, prefix),
        f"{prefix}users": len(rank),
    }
    return with_standard_errors(metrics, f"{prefix}users")


def train_step(model, optimizer, train: Windows, rows: torch.Tensor, generator) -> torch.Tensor:
    loss = model.loss(torch.from_numpy(train.items[rows]), torch.from_numpy(train.targets[rows]), generator)
    loss.backward()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return loss.detach()


@gin.configurable("train_sasrec", denylist=["command"])
def train(
    out_dir: str = gin.REQUIRED,
    iterations: int = 35_000,
    batch_size: int = 128,
    log_every: int = 100,
    eval_every: int = 1_000,
    patience: int = 5,
    eval_batch_size: int = 1024,
    seed: int = 42,
    use_wandb: bool = False,
    command: str = "",
) -> dict:
    """Step-based loop over users (one row = all of a user's training targets); loop settings only.
    command: how the run was started, recorded in metrics.json (not a binding)."""
    torch.manual_seed(seed)
    commit, run, dataset = git_commit(), run_dir(out_dir), build_dataset()
    model = SasRec(n_items=len(dataset.item_keys))
    splits = {s: windows(dataset.sequences, s, model.max_len) for s in ("train", "valid", "test")}
    order = BatchOrder(len(splits["train"].users), batch_size, seed)
    optimizer = adamw(model.parameters())
    state = {"step": 0, "best": -1.0, "best_step": 0, "train_wall_s": 0.0}
    ckpt = run / "checkpoint.pt"
    if ckpt.exists():
        state = resumed_state(load_checkpoint(ckpt, model=model, optimizer=optimizer), eval_every)
    config = write_config(run, True)
    logger = make_logger(run, "tiger-sasrec", {"gin": config}, use_wandb, True, state["step"])
    t_log, losses = time.perf_counter(), []
    for step in progress(state["step"], iterations):
        if plateaued([(state["best"], state["best_step"])], step, patience, eval_every):
            break
        gen = torch.Generator().manual_seed(seed * 1_000_003 + step)  # negatives: a function of the step
        losses.append(train_step(model, optimizer, splits["train"], order.indices(step), gen))
        done = step + 1
        if done % log_every and done % eval_every and done != iterations:
            continue
        metrics = {"train/loss": float(torch.stack(losses).mean()), "perf/examples": done * batch_size}
        check_finite(metrics, done, run)
        if done % eval_every == 0 or done == iterations:
            metrics.update(score_split(model, splits["valid"], eval_batch_size, "valid/"))
            if metrics["valid/recall@10"] > state["best"]:
                state.update(best=metrics["valid/recall@10"], best_step=done)
                atomic_save({"model": model.state_dict(), "step": done}, run / "best.pt")
        state["train_wall_s"] += time.perf_counter() - t_log
        state["step"] = done
        logger.log({**metrics, "perf/train_wall_s": state["train_wall_s"]}, done)
        t_log, losses = time.perf_counter(), []
        if done % eval_every == 0 or done == iterations:
            save_checkpoint(ckpt, model=model, optimizer=optimizer, step=done, config=config, extra=state)
    provenance = {"command": command, "commit": commit}
    return finish(run, model, dataset, splits, eval_batch_size, state, provenance, logger, batch_size)


def resumed_state(payload: dict, eval_every: int) -> dict:
    """The loop state of a checkpoint. One written before `best_step` was stored (it counted validations
    without a new best instead) gets the step that count implies, so its patience runs on unchanged."""
    state = {k: payload[k] for k in ("step", "best", "train_wall_s")}
    state["best_step"] = payload.get("best_step", payload["step"] - payload.get("bad_evals", 0) * eval_every)
    return state


def finish(run: Path, model, dataset, splits, batch_size: int, state, provenance, logger, rows) -> dict:
    """Validation (with SEs) and test metrics from best.pt beside the popularity baseline; metrics.json."""
    best = load_tensors(run / "best.pt")
    model.load_state_dict(best["model"])
    scores = score_split(model, splits["valid"], batch_size, "valid_full/")
    scores.update(score_split(model, splits["test"], batch_size, "test/"))
    pop = split_baseline(dataset, "test", torch.from_numpy(splits["test"].targets))
    summary = {
        **scores, **pop, "best_valid": state["best"], "selected_step": best["step"],
        "steps": state["step"], "examples": state["step"] * rows, "train_wall_s": state["train_wall_s"],
        "dataset": dataset.name, "run": str(run), **provenance, "machine": machine(),
        "date": time.strftime("%Y-%m-%d"),
    }  # fmt: skip
    write_json(run / "metrics.json", summary)
    logger.log({k: v for k, v in summary.items() if isinstance(v, float)}, state["step"])
    logger.close()
    print(", ".join(f"{k} {v:.4f}" for k, v in summary.items() if "@10" in k and not k.endswith("_se")))
    return summary


if __name__ == "__main__":
    run_cli(main)
