import json

import pytest
import torch

import train_rqvae
from data.artifact import SemanticIds
from data.files import load_tensors
from training import rqvae_setup
from training.cli import ConfigError
from training.guards import NonFiniteLossError

CONFIG = "configs/rqvae_debug.gin"


def run(out_dir, *bindings):
    return train_rqvae.main(
        [CONFIG, "--gin", f'train_rqvae.out_dir = "{out_dir}"', *sum([["--gin", b] for b in bindings], [])]
    )


def losses(out_dir):
    rows = [json.loads(line) for line in (out_dir / "metrics.jsonl").read_text().splitlines()]
    return {row["step"]: row["train/loss"] for row in rows if "train/loss" in row}


def test_loss_decreases_and_artifact_is_complete(tmp_path):
    summary = run(tmp_path)
    curve = losses(tmp_path)
    assert curve[60] < curve[10]
    sem = SemanticIds.load(tmp_path / "semantic_ids.pt")
    assert sem.codes.shape == (200, 4) and sem.codes.dtype == torch.int64
    assert torch.unique(sem.codes, dim=0).shape[0] == 200  # the collision code makes every tuple unique
    assert sem.codebook_size == 32 and sem.n_levels == 3 and len(sem.item_keys) == 200
    assert "RqVae.codebook_size = 32" in sem.config
    assert json.loads((tmp_path / "metrics.json").read_text())["iterations"] == 60
    assert 0 < summary["rqvae/p_unique_ids"] <= 1


def test_resume_equals_uninterrupted(tmp_path):
    run(tmp_path / "full")
    run(tmp_path / "split", "train_rqvae.iterations = 30")
    run(tmp_path / "split")  # resumes from checkpoint.pt at step 30
    full, split = losses(tmp_path / "full"), losses(tmp_path / "split")
    for step in (40, 50, 60):
        assert split[step] == pytest.approx(full[step], rel=1e-5)
    a = SemanticIds.load(tmp_path / "full" / "semantic_ids.pt").codes
    assert torch.equal(a, SemanticIds.load(tmp_path / "split" / "semantic_ids.pt").codes)


def test_nan_loss_stops_and_keeps_last_good_checkpoint(tmp_path, poison_train_step):
    run(tmp_path, "train_rqvae.iterations = 20")
    good = load_tensors(tmp_path / "checkpoint.pt")
    poison_train_step(train_rqvae, after=5)
    with pytest.raises(NonFiniteLossError, match="step 30"):
        run(tmp_path, "train_rqvae.iterations = 40")
    kept = load_tensors(tmp_path / "checkpoint.pt")
    assert kept["step"] == 20
    torch.testing.assert_close(kept["model"], good["model"])


def test_rq_kmeans_tokenizer_writes_same_artifact(tmp_path):
    run(
        tmp_path,
        'train_rqvae.tokenizer = "rq_kmeans"',
        "RqKMeans.codebook_size = 32",
        "RqKMeans.n_levels = 3",
    )
    sem = SemanticIds.load(tmp_path / "semantic_ids.pt")
    assert sem.codes.shape == (200, 4)
    assert torch.unique(sem.codes, dim=0).shape[0] == 200


def test_metrics_record_the_commit_the_run_started_from(tmp_path, monkeypatch):
    real_step, steps = train_rqvae.train_step, []
    monkeypatch.setattr(train_rqvae, "train_step", lambda *a: steps.append(1) or real_step(*a))
    monkeypatch.setattr(train_rqvae, "git_commit", lambda: "changed-meanwhile" if steps else "at-start")
    run(tmp_path, "train_rqvae.iterations = 10")
    assert json.loads((tmp_path / "metrics.json").read_text())["commit"] == "at-start"


def test_resume_on_other_embeddings_of_the_same_shape_is_refused(tmp_path, monkeypatch):
    run(tmp_path, "train_rqvae.iterations = 10")
    real = train_rqvae.item_embeddings  # another embedding model of the same dimension, same catalog
    monkeypatch.setattr(train_rqvae, "item_embeddings", lambda dataset: real(dataset).roll(1, dims=1))
    before = (tmp_path / "checkpoint.pt").read_bytes()
    with pytest.raises(ConfigError, match="checkpoint.pt was trained on other item embeddings"):
        run(tmp_path, "train_rqvae.iterations = 20")
    assert (tmp_path / "checkpoint.pt").read_bytes() == before  # nothing already written is lost


def test_embedding_check_tolerates_recomputation_noise_and_old_checkpoints(tmp_path):
    emb = torch.randn(50, 16)
    saved = rqvae_setup.embedding_probe(emb)
    rqvae_setup.check_embeddings(saved, emb + 1e-5 * torch.randn_like(emb), tmp_path)  # same model
    rqvae_setup.check_embeddings(None, emb, tmp_path)  # written before the probe existed: not checked
    with pytest.raises(ConfigError, match="50 × 16 then, 49 × 16 now"):
        rqvae_setup.check_embeddings(saved, emb[1:], tmp_path)
