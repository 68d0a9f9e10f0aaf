"""Stage 2: semantic_ids.pt + user histories -> encoder-decoder retrieval model -> Recall@K / NDCG@K.

    python train_decoder.py configs/decoder_amazon.gin [--gin "train_decoder.iterations = 1000"]

Validation recall (constrained beam search) selects the best checkpoint; test metrics come from it.
Writes out/<stage>/<dataset>/<run>/: config.gin, checkpoint.pt, best.pt, metrics.jsonl, metrics.json.
Re-running the same command resumes from checkpoint.pt.
"""

import time
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

import torch
from accelerate.utils import compile_regions
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from data.artifact import SemanticIds
from data.files import atomic_save, load_tensors, write_json
from evaluate.metrics import renamed, with_standard_errors
from evaluate.popularity import split_baseline
from evaluate.retrieval import evaluate_retrieval
from training.checkpoint import (
    CHECKPOINT_KEY,
    check_checkpoint,
    load_checkpoint,
    resume_from,
    save_checkpoint,
)
from training.cli import ConfigError, load_gin, parse_args, run_cli
from training.distributed import cross_process, make_accelerator, pool_shard_means
from training.guards import check_intervals
from training.logger import make_logger
from training.loop import MetricSums, adamw, interval_metrics, progress
from training.provenance import git_commit, machine, run_dir, write_config
from training.retriever import (
    DecoderLoop,
    TrainBatches,
    eval_loader,
    load_data,
    make_model,
    retrieval_targets,
    split_targets,
    train_step,
)
from training.selection import Finalists, plateaued


def main(argv: Sequence[str] | None = None) -> dict[str, float]:
    args = parse_args(argv, "Train the generative retrieval model on semantic IDs")
    load_gin(args.configs, args.gin)
    return train(DecoderLoop())


class Components(NamedTuple):
    """Everything the loop needs, built from gin and (when present) the run's checkpoint."""

    model: torch.nn.Module  # RetrievalModel or DecoderOnlyModel (make_model.architecture)
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LambdaLR
    start: int
    best: float
    resumed: dict  # the checkpoint's payload ({} for a fresh run): finalists, training wall time


def build(sem: SemanticIds, max_items: int, schedule, ckpt: Path) -> Components:
    """Model sized by the stage-1 artifact (K, C) and the history length; resumes from `ckpt` if it exists."""
    model = make_model(sem, max_items)
    optimizer = adamw(model.parameters())
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
    if not ckpt.exists():
        return Components(model, optimizer, scheduler, 0, -1.0, {})
    check_checkpoint(ckpt, sem, "train_decoder.semantic_ids")  # refuses a run trained on other codes
    payload = load_checkpoint(ckpt, model=model, optimizer=optimizer)
    scheduler.load_state_dict(payload["scheduler"])
    tqdm.write(f"resumed from {ckpt} at step {payload['step']}")
    return Components(model, optimizer, scheduler, payload["step"], payload["best"], payload)


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
    run, device, is_main = run_dir(loop.out_dir), accelerator.device, accelerator.is_main_process
    dataset, sem, train_data = load_data(loop.semantic_ids)
    item_codes = sem.codes.to(device)  # [I, C]
    trie, cold = retrieval_targets(sem, dataset, loop.cold_epsilons)
    if cold is not None and accelerator.num_processes > 1:
        raise ConfigError("a cold-start artifact's evaluation runs in one process (its group metrics)")
    trie = trie.to(device)
    model, optimizer, scheduler, start, best, resumed = build(
        sem, train_data.max_items, loop.schedule, resume_from(run / "checkpoint.pt")
    )
    chosen = Finalists(run / "finalists", loop.finalists)
    if "finalists" in resumed:
        chosen.load_state_dict(resumed["finalists"], clean=is_main)
    shard_of = (accelerator.process_index, accelerator.num_processes)
    batches = TrainBatches(
        train_data, item_codes, model, loop.batch_size, loop.seed, loop.length_groups, *shard_of
    )  # the rows of all processes; a batch larger than the split stops here, before config.gin is written
    config = write_config(run, is_main)
    model, optimizer = accelerator.prepare(model, optimizer)
    plain = accelerator.unwrap_model(model)
    step_model = compile_regions(model) if loop.compile_blocks else model  # same parameters as `plain`
    valid = eval_loader(dataset, "valid", loop.eval_batch_size, loop.eval_users, *shard_of, seed=loop.seed)
    monitor = None
    if loop.monitor_test_users > 0:
        monitor = eval_loader(
            dataset, "test", loop.eval_batch_size, loop.monitor_test_users, *shard_of, seed=loop.seed + 1
        )
    logger = make_logger(run, "tiger-decoder", {"gin": config}, loop.use_wandb, is_main, start)
    sums, t_log = MetricSums(cross_process(accelerator, "mean")), time.perf_counter()
    wall = float(resumed.get("train_wall_s", 0.0))  # training + validation seconds, summed over resumes

    def retrieval(loader):
        scores = evaluate_retrieval(
            plain, loader, item_codes, trie, beam_width=loop.beam_width, device=device, cold=cold
        )
        pooled = pool_shard_means(scores, "eval/users", cross_process(accelerator, "sum"))
        return with_standard_errors(pooled, "eval/users")

    stopped = plateaued(chosen.entries, start, loop.patience, loop.eval_every)  # a resumed early stop
    last = start
    for step in progress(start, start if stopped else loop.iterations):
        batch, weight = batches(step)
        sums.add(train_step(step_model, optimizer, scheduler, batch, accelerator, weight))
        done = step + 1
        if done % loop.log_every == 0 or done == loop.iterations:
            metrics = interval_metrics(
                sums, done, run, loop.log_every / (time.perf_counter() - t_log), optimizer
            )
            if done % loop.eval_every == 0 or done == loop.iterations:
                scores, best = validate(
                    retrieval, valid, plain, chosen, done, best, loop.select_metric, is_main
                )
                metrics.update(scores)
                if monitor is not None:
                    metrics.update(renamed(retrieval(monitor), "test_monitor"))
            wall += time.perf_counter() - t_log
            metrics.update({"perf/examples": done * loop.batch_size, "perf/train_wall_s": wall})
            logger.log(metrics, done)
            t_log = time.perf_counter()
        last = done
        stop = plateaued(chosen.entries, done, loop.patience, loop.eval_every)
        if (done % loop.ckpt_every == 0 or done == loop.iterations or stop) and is_main:
            save_state(run, plain, optimizer, scheduler, done, config, best, sem, chosen, wall)
        if stop:
            tqdm.write(f"stopped at step {done}: {loop.patience} validations without a new best")
            break
    full_valid = eval_loader(dataset, "valid", loop.eval_batch_size, None, *shard_of)
    sampled = len(valid.dataset) < len(full_valid.dataset)  # (per process) a sample, not the whole split
    trained = last > start
    summary = select_best(
        run, plain, chosen, retrieval, full_valid, loop.select_metric, accelerator, sampled, trained
    )
    test = eval_loader(dataset, "test", loop.eval_batch_size, None, *shard_of)
    summary.update(final_test(run, plain, dataset, retrieval, test, accelerator))
    # no timings in the summary, so a rerun of a finished run writes the same metrics.json
    summary.update({"iterations": last, "examples": last * loop.batch_size, "best_valid": best})
    summary["stopped_early"] = last < loop.iterations
    summary["commit"] = commit
    return finish(summary, run, logger, accelerator)


def save_state(run: Path, model, optimizer, scheduler, step: int, config: str, best: float, sem,
               finalists: Finalists, wall: float) -> None:  # fmt: skip
    """checkpoint.pt: everything an exact resume needs, plus the fingerprint of the semantic IDs used."""
    extra = {
        "scheduler": scheduler.state_dict(), "best": best, CHECKPOINT_KEY: sem.fingerprint(),
        "finalists": finalists.state_dict(), "train_wall_s": wall,
    }  # fmt: skip
    save_checkpoint(
        run / "checkpoint.pt", model=model, optimizer=optimizer, step=step, config=config, extra=extra
    )


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
