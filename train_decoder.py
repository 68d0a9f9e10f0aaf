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

import gin
import torch
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from data.processed import SeqData, popularity, random_suffix
from data.registry import build_dataset
from data.schema import RawDataset
from evaluate.metrics import with_standard_errors
from evaluate.retrieval import evaluate_retrieval, popularity_baseline
from modules.model import RetrievalModel
from modules.prefix_trie import PrefixTrie
from modules.semantic_ids import CHECKPOINT_KEY, SemanticIds, check_checkpoint, check_items
from modules.tokens import tokenize
from training.checkpoint import atomic_save, load_checkpoint, load_tensors, resume_from, save_checkpoint
from training.cli import load_gin, parse_args, run_cli
from training.guards import check_intervals
from training.logger import make_logger, write_json
from training.run import (
    BatchOrder,
    MetricSums,
    adamw,
    cross_process,
    git_commit,
    interval_metrics,
    machine,
    make_accelerator,
    pool_shard_means,
    progress,
    run_dir,
    shard,
    write_config,
)
from training.schedule import inverse_sqrt
from training.selection import Finalists, sample_rows


def main(argv: Sequence[str] | None = None) -> dict[str, float]:
    args = parse_args(argv, "Train the generative retrieval model on semantic IDs")
    load_gin(args.configs, args.gin)
    return train()


def load_data(semantic_ids: str) -> tuple[RawDataset, SemanticIds, SeqData]:
    """The gin-bound dataset, its stage-1 artifact and the training split."""
    dataset = build_dataset()
    return dataset, load_semantic_ids(semantic_ids, dataset.item_keys), SeqData(dataset, split="train")


def load_semantic_ids(path: str, item_keys: Sequence[str]) -> SemanticIds:
    """The stage-1 artifact, checked against the dataset's item order."""
    sem = SemanticIds.load(path)
    check_items(sem, path, item_keys)
    return sem


def train_step(model, optimizer, scheduler, batch, accelerator) -> dict[str, torch.Tensor]:
    with accelerator.autocast():
        out = model(batch)
    accelerator.backward(out.loss)
    optimizer.step()
    scheduler.step()
    optimizer.zero_grad(set_to_none=True)
    return {"train/loss": out.loss, **{f"train/loss_level{c}": v for c, v in enumerate(out.loss_per_level)}}


def eval_loader(
    dataset, split: str, batch_size: int, max_users: int | None, rank: int = 0, world: int = 1,
    seed: int = 0,
) -> DataLoader:  # fmt: skip
    """`max_users` users of `split` drawn uniformly at random with `seed` (all when None; never "the first
    N", whose histories are longer than average in the P5 numbering); process `rank` of `world` gets every
    `world`-th of them (pool the per-process metrics with pool_shard_means). The loader's dataset is the
    SeqData itself when it holds the whole split, else a Subset of it."""
    data = SeqData(dataset, split=split)
    users = sample_rows(len(data), max_users, seed)
    if world == 1 and len(users) == len(data):
        return DataLoader(data, batch_size=batch_size, shuffle=False, collate_fn=data.collate)
    rows = torch.utils.data.Subset(data, users[list(shard(len(users), rank, world))].tolist())
    return DataLoader(rows, batch_size=batch_size, shuffle=False, collate_fn=data.collate)


class Components(NamedTuple):
    """Everything the loop needs, built from gin and (when present) the run's checkpoint."""

    model: RetrievalModel
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LambdaLR
    start: int
    best: float
    resumed: dict  # the checkpoint's payload ({} for a fresh run): finalists, training wall time


def make_model(sem: SemanticIds, max_items: int) -> RetrievalModel:
    """The gin-configured retriever, sized by the stage-1 artifact (K, C) and the history length."""
    return RetrievalModel(codebook_size=sem.codebook_size, n_levels=sem.codes.shape[1], max_items=max_items)


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


def renamed(scores: dict[str, float], prefix: str) -> dict[str, float]:
    """ "eval/<m>" keys -> "<prefix>/<m>"."""
    return {f"{prefix}/{k.split('/', 1)[1]}": v for k, v in scores.items()}


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


@gin.configurable("train_decoder")
def train(
    out_dir: str = gin.REQUIRED,
    semantic_ids: str = gin.REQUIRED,
    iterations: int = 200_000,
    batch_size: int = 256,
    log_every: int = 100,
    eval_every: int = 10_000,
    ckpt_every: int = 10_000,
    eval_batch_size: int = 512,
    eval_users: int | None = None,
    finalists: int = 3,
    monitor_test_users: int = 0,
    beam_width: int = 10,
    select_metric: str = "recall@10",
    schedule=inverse_sqrt,
    seed: int = 42,
    use_wandb: bool = True,
) -> dict[str, float]:
    """Step-based loop (loop settings only; model sizes live on RetrievalModel). batch_size is global: each of
    P processes takes batch_size / P rows of each batch; evaluation users are split and the metrics pooled.

    Selection: every eval_every steps, `eval_users` validation users drawn with `seed` (all when None) score
    the model; the `finalists` best steps keep their weights, and at the end each is re-scored on the full
    validation split, the winner becoming best.pt. `monitor_test_users` > 0 also logs test metrics on such
    a sample of test users (`test_monitor/...`, for time-to-quality curves only; never used to select).
    """
    check_intervals("train_decoder", log_every, eval_every=eval_every, ckpt_every=ckpt_every)
    torch.manual_seed(seed)
    commit, accelerator = git_commit(), make_accelerator()  # commit: the code that starts the run
    run, device, is_main = run_dir(out_dir), accelerator.device, accelerator.is_main_process
    dataset, sem, train_data = load_data(semantic_ids)
    item_codes = sem.codes.to(device)  # [I, C]
    trie = PrefixTrie.from_codes(sem.codes, sem.codebook_size).to(device)
    model, optimizer, scheduler, start, best, resumed = build(
        sem, train_data.max_items, schedule, resume_from(run / "checkpoint.pt")
    )
    chosen = Finalists(run / "finalists", finalists)
    if "finalists" in resumed:
        chosen.load_state_dict(resumed["finalists"], clean=is_main)
    config = write_config(run, is_main)
    model, optimizer = accelerator.prepare(model, optimizer)
    plain = accelerator.unwrap_model(model)
    shard_of = (accelerator.process_index, accelerator.num_processes)
    valid = eval_loader(dataset, "valid", eval_batch_size, eval_users, *shard_of, seed=seed)
    monitor = None
    if monitor_test_users > 0:
        monitor = eval_loader(dataset, "test", eval_batch_size, monitor_test_users, *shard_of, seed=seed + 1)
    order = BatchOrder(len(train_data), batch_size, seed, *shard_of)  # batch_size rows over all processes
    logger = make_logger(run, "tiger-decoder", {"gin": config}, use_wandb, is_main, start)
    sums, t_log = MetricSums(cross_process(accelerator, "mean")), time.perf_counter()
    wall = float(resumed.get("train_wall_s", 0.0))  # training + validation seconds, summed over resumes

    def retrieval(loader):
        scores = evaluate_retrieval(plain, loader, item_codes, trie, beam_width=beam_width, device=device)
        pooled = pool_shard_means(scores, "eval/users", cross_process(accelerator, "sum"))
        return with_standard_errors(pooled, "eval/users")

    for step in progress(start, iterations):
        batch = train_batch(train_data, order.indices(step), item_codes, crop_seed=(seed << 32) + step)
        sums.add(train_step(model, optimizer, scheduler, batch, accelerator))
        done = step + 1
        if done % log_every == 0 or done == iterations:
            metrics = interval_metrics(sums, done, run, log_every / (time.perf_counter() - t_log), optimizer)
            if done % eval_every == 0 or done == iterations:
                scores, best = validate(retrieval, valid, plain, chosen, done, best, select_metric, is_main)
                metrics.update(scores)
                if monitor is not None:
                    metrics.update(renamed(retrieval(monitor), "test_monitor"))
            wall += time.perf_counter() - t_log
            metrics.update({"perf/examples": done * batch_size, "perf/train_wall_s": wall})
            logger.log(metrics, done)
            t_log = time.perf_counter()
        if (done % ckpt_every == 0 or done == iterations) and is_main:
            save_state(run, plain, optimizer, scheduler, done, config, best, sem, chosen, wall)
    full_valid = eval_loader(dataset, "valid", eval_batch_size, None, *shard_of)
    sampled = len(valid.dataset) < len(full_valid.dataset)  # (per process) a sample, not the whole split
    trained = start < iterations
    summary = select_best(
        run, plain, chosen, retrieval, full_valid, select_metric, accelerator, sampled, trained
    )
    test = eval_loader(dataset, "test", eval_batch_size, None, *shard_of)
    summary.update(final_test(run, plain, dataset, retrieval, test, accelerator))
    # no timings in the summary, so a rerun of a finished run writes the same metrics.json
    summary.update({"iterations": iterations, "examples": iterations * batch_size, "best_valid": best})
    summary["commit"] = commit
    return finish(summary, run, logger, accelerator)


def train_batch(train_data: SeqData, rows: torch.Tensor, item_codes: torch.Tensor, crop_seed: int = 0):
    """The tokenized training batch of `rows` (indices into train_data), on item_codes' device. With
    SeqData.train_examples = "subsequence" each history is cut by random_suffix, drawn from `crop_seed`."""
    seq = train_data.collate([train_data[i] for i in rows.tolist()])
    if train_data.train_examples == "subsequence":
        seq = random_suffix(seq, torch.Generator().manual_seed(crop_seed))
    return tokenize(*(t.to(item_codes.device) for t in seq), item_codes)


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
    data = test.dataset.dataset if isinstance(test.dataset, torch.utils.data.Subset) else test.dataset
    targets = torch.from_numpy(data.targets())  # [U] the whole split, without collating it a second time
    pop = popularity_baseline(popularity(dataset, "test"), targets)
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
