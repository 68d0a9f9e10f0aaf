"""Stage 1's set-up: the seeded item split, the k-means sample, the model and optimizer (resumed from a
run's checkpoint when there is one, after checking it was trained on the same item embeddings), all before
config.gin is written (train_rqvae.py runs the loop)."""

import time
from pathlib import Path

import torch
from tqdm.auto import tqdm

from data.files import load_tensors
from modules.rqvae import RqVae
from training.checkpoint import load_checkpoint
from training.cli import ConfigError
from training.loop import adamw


def split_items(
    n_items: int, eval_fraction: float, seed: int, withheld: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Seeded hold-out of items for the reconstruction eval: (train indices, eval indices). withheld [I]
    bool (cold-start items) are never training rows, nor therefore k-means seeds; the eval draw ignores it."""
    is_eval = torch.rand(n_items, generator=torch.Generator().manual_seed(seed)) < eval_fraction
    return (~is_eval & ~withheld).nonzero().squeeze(1), is_eval.nonzero().squeeze(1)


def kmeans_sample(train_idx: torch.Tensor, n: int, seed: int) -> torch.Tensor:
    """A seeded random sample of at most n training items for the codebook initialisation."""
    perm = torch.randperm(len(train_idx), generator=torch.Generator().manual_seed(seed + 1))
    return train_idx[perm[:n]]


def check_init_items(init_idx: torch.Tensor, codebook_size: int) -> None:
    """k-means needs at least K points per level: a catalogue smaller than that stops before anything is
    written, naming the bindings that set both sides."""
    if len(init_idx) < codebook_size:
        raise ConfigError(
            f"codebook_size {codebook_size} needs at least {codebook_size} training items for its k-means "
            f"initialisation, but only {len(init_idx)} are available: lower the codebook_size binding "
            "(RqVae / RqKMeans) or train_rqvae.eval_fraction, or raise train_rqvae.kmeans_items"
        )


PROBE_ROWS = 8  # a stage-1 checkpoint keeps the first rows of the embeddings it was trained on


def embedding_probe(emb: torch.Tensor) -> dict:
    """emb [I, E] -> {"n_items": I, "rows": emb[:PROBE_ROWS]}: recorded in every stage-1 checkpoint."""
    return {"n_items": emb.shape[0], "rows": emb[:PROBE_ROWS].clone()}


def check_embeddings(saved: dict | None, emb: torch.Tensor, ckpt: Path) -> None:
    """Refuses to resume `ckpt` on other item embeddings (another embedding model, item texts or catalog).

    Compared with a tolerance, so the same model's embeddings recomputed on another machine still match.
    A checkpoint written before the probe existed is not checked."""
    if saved is None:
        return
    rows = saved["rows"]
    same = saved["n_items"] == emb.shape[0] and rows.shape[1] == emb.shape[1]
    if not (same and torch.allclose(rows, emb[: len(rows)], atol=1e-3)):
        raise ConfigError(
            f"{ckpt} was trained on other item embeddings ({saved['n_items']} × {rows.shape[1]} then, "
            f"{emb.shape[0]} × {emb.shape[1]} now, or another embedding model / item text): set another "
            "train_rqvae.out_dir, or delete the checkpoint to start over"
        )


def build(emb: torch.Tensor, init_idx: torch.Tensor, seed: int, ckpt: Path):
    """RqVae + AdamW; resumed from `ckpt` when it exists, else codebooks set by k-means (an explicit call).
    -> (model, optimizer, start step, last logged metrics)."""
    model = RqVae(input_dim=emb.shape[1])
    optimizer = adamw(model.parameters())
    if ckpt.exists():
        check_embeddings(load_tensors(ckpt, mmap=True).get("embeddings"), emb, ckpt)
        payload = load_checkpoint(ckpt, model=model, optimizer=optimizer)
        tqdm.write(f"resumed from {ckpt} at step {payload['step']}")
        return model, optimizer, payload["step"], payload.get("metrics", {})
    check_init_items(init_idx, model.codebook_size)
    t0 = time.perf_counter()
    model.kmeans_init(emb[init_idx], generator=torch.Generator().manual_seed(seed))
    tqdm.write(f"k-means init on {len(init_idx)} items: {time.perf_counter() - t0:.2f} s")
    return model, optimizer, 0, {}
