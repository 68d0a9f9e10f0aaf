"""Stage 2's set-up: the model sized by the stage-1 artifact, resumed from a run's checkpoint when there is
one, the training batches, the finalists and the validation loaders, all checked before config.gin is
written (train_decoder.py runs the loop over them)."""

from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

import torch
from accelerate.utils import compile_regions
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from data.artifact import SemanticIds
from evaluate.metrics import with_standard_errors
from evaluate.retrieval import evaluate_retrieval
from training.checkpoint import check_checkpoint, load_checkpoint, resume_from
from training.cli import ConfigError
from training.distributed import cross_process, pool_shard_means
from training.logger import make_logger
from training.loop import adamw
from training.provenance import write_config
from training.retriever import (
    DecoderLoop,
    TrainBatches,
    eval_loader,
    load_data,
    make_model,
    retrieval_targets,
)
from training.selection import Finalists


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


class Parts(NamedTuple):
    """What the loop and the final selection work on, built by setup()."""

    dataset: object  # data.registry.Dataset
    sem: SemanticIds
    model: torch.nn.Module  # the unwrapped model: validation, selection, checkpoints
    step_model: torch.nn.Module  # the prepared (maybe compiled) one the train step calls
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LambdaLR
    batches: TrainBatches
    finalists: Finalists
    retrieval: Callable  # loader -> pooled metrics with standard errors
    valid: DataLoader  # the sampled validation users
    monitor: DataLoader | None  # test users scored beside validation (monitor_test_users)
    logger: object
    config: str
    start: int
    best: float
    wall: float  # training + validation seconds, summed over resumes


def setup(loop: DecoderLoop, run: Path, accelerator) -> Parts:
    """Data, model, optimizer and finalists (resumed from the run's checkpoint when it exists), then
    config.gin; every check that can fail on the data or the bindings runs before that file is written."""
    device, is_main = accelerator.device, accelerator.is_main_process
    dataset, sem, train_data = load_data(loop.semantic_ids)
    item_codes = sem.codes.to(device)  # [I, C]
    trie, cold = retrieval_targets(sem, dataset, loop.cold_epsilons)
    if cold is not None and accelerator.num_processes > 1:
        raise ConfigError("a cold-start artifact's evaluation runs in one process (its group metrics)")
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
    retrieval = pooled_retrieval(plain, item_codes, trie.to(device), cold, loop.beam_width, accelerator)
    wall = float(resumed.get("train_wall_s", 0.0))
    return Parts(
        dataset, sem, plain, step_model, optimizer, scheduler, batches, chosen, retrieval, valid, monitor,
        logger, config, start, best, wall,
    )  # fmt: skip


def pooled_retrieval(model, item_codes, trie, cold, beam_width: int, accelerator) -> Callable:
    """loader -> constrained-beam-search metrics of `model` pooled over processes, with standard errors."""

    def retrieval(loader):
        scores = evaluate_retrieval(
            model, loader, item_codes, trie, beam_width=beam_width, device=accelerator.device, cold=cold
        )
        pooled = pool_shard_means(scores, "eval/users", cross_process(accelerator, "sum"))
        return with_standard_errors(pooled, "eval/users")

    return retrieval
