"""Stage 1: item text embeddings -> RQ-VAE (or RQ-KMeans) -> semantic_ids.pt.

    python train_rqvae.py configs/rqvae_amazon.gin [--gin "train_rqvae.iterations = 1000"]

Writes out/<stage>/<dataset>/<run>/: config.gin, checkpoint.pt, metrics.jsonl, metrics.json, semantic_ids.pt.
Re-running the same command resumes from checkpoint.pt.
"""

import time
from collections.abc import Sequence
from pathlib import Path

import gin
import torch
from tqdm.auto import tqdm

from data.artifact import SemanticIds
from data.cold_start import cold_items
from data.embed import item_embeddings
from data.files import write_json
from data.registry import build_dataset
from modules.cold_start import collision_codes_warm_first
from modules.rq_kmeans import RqKMeans
from modules.rqvae import RqVae
from modules.rqvae_metrics import codes_summary
from training.checkpoint import resume_from, save_checkpoint
from training.cli import load_gin, parse_args, run_cli
from training.distributed import cross_process, make_accelerator
from training.guards import check_intervals
from training.logger import make_logger
from training.loop import BatchOrder, MetricSums, interval_metrics, optimizer_step, progress
from training.provenance import git_commit, machine, run_dir, write_config
from training.rqvae_setup import build, check_init_items, embedding_probe, kmeans_sample, split_items


def main(argv: Sequence[str] | None = None) -> dict[str, float]:
    args = parse_args(argv, "Train the RQ-VAE tokenizer and write semantic_ids.pt")
    load_gin(args.configs, args.gin)
    return train()


def code_metrics(codes: torch.Tensor, codebook_size: int) -> dict[str, float]:
    """Code statistics of [I, Q] codes under the rqvae/ namespace."""
    return {f"rqvae/{k}": v for k, v in codes_summary(codes, codebook_size).items()}


def train_step(model, optimizer, x: torch.Tensor, accelerator) -> dict[str, torch.Tensor]:
    out = optimizer_step(model, optimizer, None, x, accelerator)
    # No per-batch p_unique_ids: torch.unique would sync with the host every step; evaluate() reports it
    # over all items.
    return {"train/loss": out.loss, "rqvae/recon_loss": out.recon_loss, "rqvae/commit_loss": out.quant_loss}


@torch.inference_mode()
def evaluate(
    model: RqVae, emb: torch.Tensor, eval_idx: torch.Tensor, batch_size: int = 1024
) -> dict[str, float]:
    """Held-out reconstruction/quantization loss and code statistics over every item."""
    was_training = model.training
    model.eval()
    sums = MetricSums()
    for rows in eval_idx.split(batch_size):
        out = model(emb[rows])
        sums.add({"eval/recon_loss": out.recon_loss, "eval/quant_loss": out.quant_loss})
    codes = torch.cat([model.encode_codes(chunk) for chunk in emb.split(batch_size)])
    model.train(was_training)
    return {**sums.flush(), **code_metrics(codes.cpu(), model.codebook_size)}


@gin.configurable("train_rqvae")
def train(
    out_dir: str = gin.REQUIRED,
    tokenizer: str = "rqvae",
    iterations: int = 400_000,
    batch_size: int = 64,
    log_every: int = 100,
    eval_every: int = 5000,
    ckpt_every: int = 5000,
    eval_fraction: float = 0.05,
    kmeans_items: int = 20_000,
    seed: int = 42,
    compile: bool = False,
    use_wandb: bool = True,
    cold_start: bool = False,
) -> dict[str, float]:
    """Step-based training loop (loop settings only; model sizes live on RqVae / RqKMeans).
    cold_start: withhold the items that occur only as validation / test targets (data/cold_start.py) from
    training and from the codebook initialisation; they still get codes from the trained encoder, and
    collision codes after the warm items', and the artifact lists them (SemanticIds.cold_items)."""
    check_intervals("train_rqvae", log_every, eval_every=eval_every, ckpt_every=ckpt_every)
    torch.manual_seed(seed)
    commit, accelerator = git_commit(), make_accelerator()  # commit: the code that starts the run
    dataset = build_dataset()  # data errors stop the run before its folder exists
    run = run_dir(out_dir)
    emb = item_embeddings(dataset).float()  # [I, E]
    cold = torch.zeros(len(emb), dtype=torch.bool)
    if cold_start:
        cold = torch.from_numpy(cold_items(dataset.sequences, len(emb)))
    train_idx, eval_idx = split_items(len(emb), eval_fraction, seed, cold)
    init_idx = kmeans_sample(train_idx, kmeans_items, seed)
    if tokenizer == "rq_kmeans":  # no gradient training: one process fits and writes, the others stop
        summary = (
            fit_rq_kmeans(run, dataset, emb, init_idx, seed, cold) if accelerator.is_main_process else {}
        )
        accelerator.end_training()
        return summary

    order = BatchOrder(len(train_idx), batch_size, seed, accelerator.process_index, accelerator.num_processes)
    ckpt = run / "checkpoint.pt"
    model, optimizer, start, metrics = build(emb, init_idx, seed, resume_from(ckpt))
    config = write_config(run, accelerator.is_main_process)  # after every check that can stop the run
    model, optimizer = accelerator.prepare(model, optimizer)
    step_model = torch.compile(model) if compile else model
    emb_all = emb.to(accelerator.device)  # [I, E], moved once; evaluation reads every item
    emb_train = emb_all[train_idx.to(accelerator.device)]
    logger = make_logger(run, "tiger-rqvae", {"gin": config}, use_wandb, accelerator.is_main_process, start)
    sums, t_log = MetricSums(cross_process(accelerator, "mean")), time.perf_counter()
    for step in progress(start, iterations):
        x = emb_train[order.indices(step).to(accelerator.device)]
        sums.add(train_step(step_model, optimizer, x, accelerator))
        done = step + 1
        if done % log_every == 0 or done == iterations:
            metrics = interval_metrics(sums, done, run, log_every / (time.perf_counter() - t_log), optimizer)
            if done % eval_every == 0 or done == iterations:
                metrics.update(evaluate(accelerator.unwrap_model(model), emb_all, eval_idx))
            logger.log(metrics, done)
            t_log = time.perf_counter()
        if (done % ckpt_every == 0 or done == iterations) and accelerator.is_main_process:
            save_state(ckpt, accelerator.unwrap_model(model), optimizer, done, config, metrics, emb)
    summary = {**metrics, "iterations": iterations, "commit": commit, "machine": machine()}
    if accelerator.is_main_process:  # the artifact and metrics.json are the main process's
        model = accelerator.unwrap_model(model)
        summary.update(write_artifact(run, dataset, model, emb, str(ckpt), config, cold))
        write_json(run / "metrics.json", summary)
    logger.close()
    accelerator.end_training()  # destroys the process group: a process exiting with gloo threads aborts
    return summary


def save_state(
    ckpt: Path, model, optimizer, step: int, config: str, metrics: dict, emb: torch.Tensor
) -> None:
    """checkpoint.pt: what an exact resume needs; `metrics` (the last logged dict) is what metrics.json
    reports when a rerun resumes at the end; the embedding probe makes a resume on other embeddings fail."""
    extra = {"metrics": metrics, "embeddings": embedding_probe(emb)}
    save_checkpoint(ckpt, model=model, optimizer=optimizer, step=step, config=config, extra=extra)


def fit_rq_kmeans(
    run: Path, dataset, emb: torch.Tensor, init_idx: torch.Tensor, seed: int, cold: torch.Tensor
) -> dict[str, float]:
    """RQ-KMeans: residual k-means on the embeddings, no gradient training; same artifact as the RQ-VAE."""
    model = RqKMeans(input_dim=emb.shape[1])
    check_init_items(init_idx, model.codebook_size)
    t0 = time.perf_counter()
    model.fit(emb[init_idx], generator=torch.Generator().manual_seed(seed))
    config = write_config(run, True)
    save_checkpoint(run / "checkpoint.pt", model=model, optimizer=None, step=0, config=config)
    final = write_artifact(run, dataset, model, emb, str(run / "checkpoint.pt"), config, cold)
    summary = {**final, "perf/fit_s": time.perf_counter() - t0, "commit": git_commit(), "machine": machine()}
    write_json(run / "metrics.json", summary)
    return summary


@torch.inference_mode()
def write_artifact(
    run: Path, dataset, model, emb: torch.Tensor, source: str, config: str, cold: torch.Tensor
) -> dict[str, float]:
    """Codes for every item in eval mode + collision code (cold [I] bool items ranked after the warm ones)
    -> semantic_ids.pt; returns the code metrics."""
    model.eval()
    device = next(iter(model.buffers()), emb).device
    codes = torch.cat([model.encode_codes(chunk.to(device)).cpu() for chunk in emb.split(4096)])  # [I, Q]
    metrics = code_metrics(codes, model.codebook_size)
    full = collision_codes_warm_first(codes, model.codebook_size, cold)  # [I, C]
    artifact = SemanticIds(
        codes=full,
        codebook_size=model.codebook_size,
        n_levels=codes.shape[1],
        item_keys=list(dataset.item_keys),
        source=source,
        config=config,
        metrics=metrics,
        cold_items=cold.nonzero().squeeze(1).tolist(),
    )
    artifact.save(run / "semantic_ids.pt")
    tqdm.write(f"wrote {run / 'semantic_ids.pt'}: codes {tuple(full.shape)}, " + _summary_line(metrics))
    return metrics


def _summary_line(metrics: dict[str, float]) -> str:
    keys = ("rqvae/p_unique_ids", "rqvae/collision_rate", "rqvae/max_collision_group")
    return ", ".join(f"{k.split('/')[1]} {metrics[k]:.4g}" for k in keys if k in metrics)


if __name__ == "__main__":
    run_cli(main)
