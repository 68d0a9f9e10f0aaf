"""Stage 2: semantic_ids.pt + user histories -> encoder-decoder retrieval model -> Recall@K / NDCG@K.

    python train_decoder.py configs/decoder_amazon.gin [--gin "train_decoder.iterations = 1000"]

Validation recall (constrained beam search) selects the best checkpoint; test metrics come from it.
Writes out/<stage>/<dataset>/<run>/: config.gin, checkpoint.pt, best.pt, metrics.jsonl, metrics.json.
Re-running the same command resumes from checkpoint.pt.
"""

import time
from collections.abc import Sequence
from pathlib import Path

import torch
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from data.files import atomic_save, load_tensors, write_json
from evaluate.metrics import renamed
from evaluate.popularity import split_baseline
from training.checkpoint import CHECKPOINT_KEY, save_checkpoint
from training.cli import load_gin, parse_args, run_cli
from training.decoder_setup import Parts, setup
from training.distributed import cross_process, make_accelerator
from training.guards import check_intervals
from training.loop import MetricSums, interval_metrics, progress
from training.provenance import git_commit, machine, run_dir
from training.retriever import DecoderLoop, eval_loader, split_targets, train_step
from training.selection import Finalists, plateaued


def main(argv: Sequence[str] | None = None) -> dict[str, float]:
    args = parse_args(argv, "Train the generative retrieval model on semantic IDs")
    load_gin(args.configs, args.gin)
    return train(DecoderLoop())


def validate(retrieval, valid, model, finalists: Finalists, step: int, best: float, select_metric: str,
             is_main: bool):  # fmt: skip
    """Validation metrics on the (sampled) validation users; the step joins the finalists when it is
    among the best so far. -> (metrics, best sampled score)."""
    scores = renamed(retrieval(valid), "valid")
    score = scores[f"valid/{select_metric}"]  # the same pooled value on every process
    finalists.offer(score, step, model.state_dict(), write=is_main)
    return scores, max(best, score)


def select_best(run: Path, model, finalists: Finalists, retrieval, full_valid, select_metric, accelerator,
                sampled: bool = True, trained: bool = True):  # fmt: skip
    """Re-scores every finalist on the full validation split (only the best one when validation already
    used the whole split); the winner's weights become best.pt, which records the selection.
    -> summary entries: the winner's full-split validation metrics (with SEs), its step, every finalist's.
    A rerun that trained no step (`trained` False) reuses the selection recorded in best.pt."""
    accelerator.wait_for_everyone()  # every finalist file is complete before any process reads it
    best_file = run / "best.pt"
    if best_file.exists() and (not trained or not finalists.entries):
        return dict(load_tensors(best_file).get("selection", {}))  # a damaged best.pt is named here
    step, scores, by_step = finalists.rescore(
        model.load_state_dict,
        lambda: renamed(retrieval(full_valid), "valid_full"),
        f"valid_full/{select_metric}",
        top=None if sampled else 1,
    )
    selection = {**scores, "selected_step": step, "finalist_scores": {str(s): v for s, v in by_step.items()}}
    if accelerator.is_main_process:
        atomic_save({**load_tensors(finalists.path(step)), "selection": selection}, best_file)
    tqdm.write(f"best.pt: step {step} (full validation {select_metric} by finalist: {by_step})")
    return selection


def train(loop: DecoderLoop) -> dict[str, float]:
    """The stage-2 loop with the gin-bound settings `loop` (training.retriever.DecoderLoop)."""
    check_intervals("train_decoder", loop.log_every, eval_every=loop.eval_every, ckpt_every=loop.ckpt_every)
    torch.manual_seed(loop.seed)
    commit, accelerator = git_commit(), make_accelerator()  # commit: the code that starts the run
    run = run_dir(loop.out_dir)
    parts = setup(loop, run, accelerator)
    last, best = run_steps(loop, parts, run, accelerator)
    summary = conclude(loop, parts, run, accelerator, last, best)
    summary["commit"] = commit
    return finish(summary, run, parts.logger, accelerator)


def run_steps(loop: DecoderLoop, parts: Parts, run: Path, accelerator) -> tuple[int, float]:
    """Train steps from parts.start to loop.iterations (or a plateau): metrics every log_every steps,
    validation every eval_every, checkpoints every ckpt_every. -> (last step trained, best sampled score)."""
    is_main, chosen, best, wall = accelerator.is_main_process, parts.finalists, parts.best, parts.wall
    sums, t_log = MetricSums(cross_process(accelerator, "mean")), time.perf_counter()
    stopped = plateaued(chosen.entries, parts.start, loop.patience, loop.eval_every)  # a resumed early stop
    last = parts.start
    for step in progress(parts.start, parts.start if stopped else loop.iterations):
        batch, weight = parts.batches(step)
        sums.add(train_step(parts.step_model, parts.optimizer, parts.scheduler, batch, accelerator, weight))
        done = step + 1
        if done % loop.log_every == 0 or done == loop.iterations:
            steps_per_s = loop.log_every / (time.perf_counter() - t_log)
            metrics = interval_metrics(sums, done, run, steps_per_s, parts.optimizer)
            if done % loop.eval_every == 0 or done == loop.iterations:
                scores, best = validate(
                    parts.retrieval, parts.valid, parts.model, chosen, done, best, loop.select_metric, is_main
                )
                metrics.update(scores)
                if parts.monitor is not None:
                    metrics.update(renamed(parts.retrieval(parts.monitor), "test_monitor"))
            wall += time.perf_counter() - t_log
            metrics.update({"perf/examples": done * loop.batch_size, "perf/train_wall_s": wall})
            parts.logger.log(metrics, done)
            t_log = time.perf_counter()
        last = done
        stop = plateaued(chosen.entries, done, loop.patience, loop.eval_every)
        if (done % loop.ckpt_every == 0 or done == loop.iterations or stop) and is_main:
            save_state(run, parts, done, best, wall)
        if stop:
            tqdm.write(f"stopped at step {done}: {loop.patience} validations without a new best")
            break
    return last, best


def conclude(loop: DecoderLoop, parts: Parts, run: Path, accelerator, last: int, best: float) -> dict:
    """best.pt chosen among the finalists on the full validation split, then the test split scored once
    from it. -> the summary (no timings, so a rerun of a finished run writes the same metrics.json)."""
    shard_of = (accelerator.process_index, accelerator.num_processes)
    full_valid = eval_loader(parts.dataset, "valid", loop.eval_batch_size, None, *shard_of)
    sampled = len(parts.valid.dataset) < len(full_valid.dataset)  # (per process) a sample, not the split
    summary = select_best(
        run, parts.model, parts.finalists, parts.retrieval, full_valid, loop.select_metric, accelerator,
        sampled, trained=last > parts.start,
    )  # fmt: skip
    test = eval_loader(parts.dataset, "test", loop.eval_batch_size, None, *shard_of)
    summary.update(final_test(run, parts.model, parts.dataset, parts.retrieval, test, accelerator))
    summary.update({"iterations": last, "examples": last * loop.batch_size, "best_valid": best})
    summary["stopped_early"] = last < loop.iterations
    return summary


def save_state(run: Path, parts: Parts, step: int, best: float, wall: float) -> None:
    """checkpoint.pt: everything an exact resume needs, plus the fingerprint of the semantic IDs used."""
    extra = {
        "scheduler": parts.scheduler.state_dict(), "best": best, CHECKPOINT_KEY: parts.sem.fingerprint(),
        "finalists": parts.finalists.state_dict(), "train_wall_s": wall,
    }  # fmt: skip
    save_checkpoint(
        run / "checkpoint.pt", model=parts.model, optimizer=parts.optimizer, step=step, config=parts.config,
        extra=extra,
    )  # fmt: skip


def finish(summary: dict, run: Path, logger, accelerator) -> dict[str, float]:
    """Writes metrics.json (main process), logs the summary, closes the logger and the process group."""
    summary["machine"] = machine()
    if accelerator.is_main_process:
        write_json(run / "metrics.json", summary)
        logger.log({k: v for k, v in summary.items() if isinstance(v, float)}, summary["iterations"])
    logger.close()
    accelerator.end_training()  # destroys the process group: a process exiting with gloo threads aborts
    return summary


def final_test(run: Path, model, dataset, retrieval, test: DataLoader, accelerator) -> dict[str, float]:
    """Test metrics from the best-validation weights, beside the popularity baseline on the same split."""
    accelerator.wait_for_everyone()  # best.pt is complete before any process reads it
    best = run / "best.pt"
    if best.exists():
        model.load_state_dict(load_tensors(best)["model"])
    scores = renamed(retrieval(test), "test")
    pop = split_baseline(dataset, "test", split_targets(test))
    tqdm.write(comparison_table(scores, pop))
    return {**scores, **pop}


def comparison_table(scores: dict[str, float], pop: dict[str, float]) -> str:
    """Test metrics of the model beside the popularity baseline, one metric per line."""
    names = [k.split("/", 1)[1] for k in scores if k.startswith("test/") and "@" in k and "prefix" not in k]
    lines = [f"{'test split':<12} {'model':>8} {'popularity':>11}"]
    lines += [
        f"{name:<12} {scores[f'test/{name}']:>8.4f} {pop.get(f'pop/{name}', float('nan')):>11.4f}"
        for name in names
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    run_cli(main)
