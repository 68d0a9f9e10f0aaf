"""Stage 2: semantic_ids.pt + user histories -> encoder-decoder retrieval model -> Recall@K / NDCG@K.

    python train_decoder.py configs/decoder_amazon.gin [--gin "train.iterations = 1000"]

Validation recall (constrained beam search) selects the best checkpoint; test metrics come from it.
Writes out/<stage>/<dataset>/<run>/: config.gin, checkpoint.pt, best.pt, metrics.jsonl, metrics.json.
Re-running the same command resumes from checkpoint.pt.
"""

import sys
import time
from collections.abc import Sequence
from pathlib import Path

import gin
import torch
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from data.processed import SeqData, popularity
from data.registry import build_dataset
from evaluate.retrieval import evaluate_retrieval, popularity_baseline
from modules.model import RetrievalModel
from modules.prefix_trie import PrefixTrie
from modules.semantic_ids import SemanticIds
from modules.tokens import tokenize
from training.checkpoint import atomic_save, load_checkpoint, save_checkpoint
from training.cli import load_gin, operative_config, parse_args
from training.guards import check_finite
from training.logger import make_logger, write_json
from training.run import BatchOrder, MetricSums, adamw, git_commit, machine, make_accelerator, run_dir
from training.schedule import inverse_sqrt


def main(argv: Sequence[str] | None = None) -> dict[str, float]:
    args = parse_args(argv, "Train the generative retrieval model on semantic IDs")
    load_gin(args.configs, args.gin)
    return train()


def load_semantic_ids(path: str, item_keys: Sequence[str]) -> SemanticIds:
    """The stage-1 artifact, checked against the dataset's item order."""
    sem = SemanticIds.load(path)
    if list(sem.item_keys) != list(item_keys):
        raise ValueError(
            f"{path} was built for a different item list ({len(sem.item_keys)} items) than the dataset "
            f"({len(item_keys)} items); bind train.semantic_ids to the artifact of this dataset"
        )
    return sem


def train_step(model, optimizer, scheduler, batch, accelerator) -> dict[str, torch.Tensor]:
    with accelerator.autocast():
        out = model(batch)
    accelerator.backward(out.loss)
    optimizer.step()
    scheduler.step()
    optimizer.zero_grad(set_to_none=True)
    return {"train/loss": out.loss, **{f"train/loss_level{c}": v for c, v in enumerate(out.loss_per_level)}}


def eval_loader(dataset, split: str, batch_size: int, max_users: int | None) -> DataLoader:
    data = SeqData(dataset, split=split)
    rows = data if max_users is None or max_users >= len(data) else torch.utils.data.Subset(data, range(max_users))
    return DataLoader(rows, batch_size=batch_size, shuffle=False, collate_fn=data.collate)


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
    beam_width: int = 10,
    select_metric: str = "recall@10",
    schedule=inverse_sqrt,
    seed: int = 42,
    use_wandb: bool = True,
) -> dict[str, float]:
    """Step-based loop (loop settings only; model sizes live on RetrievalModel)."""
    torch.manual_seed(seed)
    accelerator = make_accelerator()
    run, device = run_dir(out_dir), accelerator.device
    dataset = build_dataset()
    sem = load_semantic_ids(semantic_ids, dataset.item_keys)
    item_codes = sem.codes.to(device)  # [I, C]
    trie = PrefixTrie.from_codes(sem.codes, sem.codebook_size).to(device)
    train_data = SeqData(dataset, split="train")
    model = RetrievalModel(codebook_size=sem.codebook_size, n_levels=sem.codes.shape[1])
    optimizer = adamw(model.parameters())
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
    ckpt, start, best = run / "checkpoint.pt", 0, -1.0
    if ckpt.exists():
        payload = load_checkpoint(ckpt, model=model, optimizer=optimizer)
        scheduler.load_state_dict(payload["scheduler"])
        start, best = payload["step"], payload["best"]
        tqdm.write(f"resumed from {ckpt} at step {start}")
    config = operative_config()
    (run / "config.gin").write_text(config)
    model, optimizer = accelerator.prepare(model, optimizer)
    valid = eval_loader(dataset, "valid", eval_batch_size, eval_users)
    order = BatchOrder(len(train_data), batch_size, seed, accelerator.process_index, accelerator.num_processes)
    logger = make_logger(run, "tiger-decoder", {"gin": config}, use_wandb, accelerator.is_main_process)
    sums, t_log = MetricSums(), time.perf_counter()

    def retrieval(loader):
        return evaluate_retrieval(
            accelerator.unwrap_model(model), loader, item_codes, trie, beam_width=beam_width, device=device
        )

    for step in tqdm(range(start, iterations), initial=start, total=iterations, disable=not sys.stderr.isatty()):
        rows = train_data.collate([train_data[i] for i in order.indices(step).tolist()])
        batch = tokenize(*(t.to(device) for t in rows), item_codes)
        sums.add(train_step(model, optimizer, scheduler, batch, accelerator))
        done = step + 1
        if done % log_every == 0 or done == iterations:
            metrics = sums.flush()
            check_finite(metrics, done, run)
            metrics.update({"train/lr": scheduler.get_last_lr()[0], "perf/steps_per_s": log_every / (time.perf_counter() - t_log)})
            if done % eval_every == 0 or done == iterations:
                scores = {f"valid/{k.split('/', 1)[1]}": v for k, v in retrieval(valid).items()}
                metrics.update(scores)
                if scores[f"valid/{select_metric}"] > best and accelerator.is_main_process:
                    best = scores[f"valid/{select_metric}"]
                    atomic_save({"model": accelerator.unwrap_model(model).state_dict(), "step": done}, run / "best.pt")
            logger.log(metrics, done)
            t_log = time.perf_counter()
        if (done % ckpt_every == 0 or done == iterations) and accelerator.is_main_process:
            extra = {"scheduler": scheduler.state_dict(), "best": best}
            save_checkpoint(ckpt, model=accelerator.unwrap_model(model), optimizer=optimizer, step=done, config=config, extra=extra)
    summary = final_test(run, accelerator.unwrap_model(model), dataset, retrieval, eval_batch_size)
    summary.update({"iterations": iterations, "commit": git_commit(), "machine": machine(), "best_valid": best})
    if accelerator.is_main_process:
        write_json(run / "metrics.json", summary)
        logger.log({k: v for k, v in summary.items() if isinstance(v, float)}, iterations)
    logger.close()
    return summary


def final_test(run: Path, model, dataset, retrieval, eval_batch_size: int) -> dict[str, float]:
    """Test metrics from the best-validation weights, beside the popularity baseline on the same split."""
    best = run / "best.pt"
    if best.exists():
        model.load_state_dict(torch.load(best, map_location="cpu", weights_only=False)["model"])
    test = eval_loader(dataset, "test", eval_batch_size, None)
    scores = {f"test/{k.split('/', 1)[1]}": v for k, v in retrieval(test).items()}
    targets = torch.cat([batch.targets for batch in test])
    pop = popularity_baseline(popularity(dataset, "test"), targets)
    tqdm.write("test: " + ", ".join(f"{k} {v:.4f}" for k, v in {**scores, **pop}.items() if "@" in k))
    return {**scores, **pop}


if __name__ == "__main__":
    main()
