"""Cold start end to end on the debug shop with 40 users (so that some items occur only as validation or
test targets): stage 1 withholds the cold items, stage 2 reserves slots for them."""

import numpy as np
import pytest

import train_decoder
import train_rqvae
from data.artifact import SemanticIds, SemanticIdsError
from data.cold_start import cold_items
from data.registry import build_dataset
from modules.semantic_ids import append_collision_code
from training.cli import ConfigError, load_gin

FEW_USERS = "load_synthetic.n_users = 40"


@pytest.fixture(scope="module")
def cold_stage1(tmp_path_factory, embed_cache):
    out = tmp_path_factory.mktemp("rqvae_cold")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TIGER_CACHE_DIR", str(embed_cache))
        train_rqvae.main([
            "configs/rqvae_debug.gin", "--gin", f'train_rqvae.out_dir = "{out}"',
            "--gin", "train_rqvae.cold_start = True", "--gin", FEW_USERS,
        ])  # fmt: skip
    return out


def test_stage1_lists_the_datasets_cold_items_and_keeps_warm_ids(cold_stage1):
    sem = SemanticIds.load(cold_stage1 / "semantic_ids.pt")
    load_gin(["configs/rqvae_debug.gin"], [FEW_USERS])
    dataset = build_dataset()
    expected = np.flatnonzero(cold_items(dataset.sequences, len(dataset.item_keys))).tolist()
    assert sem.cold_items == expected and len(expected) > 0
    warm = sem.warm_items()
    assert len(warm) + len(expected) == sem.codes.shape[0]
    q = sem.n_levels
    assert (append_collision_code(sem.codes[warm, :q], sem.codebook_size) == sem.codes[warm]).all()


def test_stage2_reserves_slots_for_cold_items(cold_stage1, tmp_path, embed_cache, monkeypatch):
    monkeypatch.setenv("TIGER_CACHE_DIR", str(embed_cache))
    summary = train_decoder.main([
        "configs/decoder_debug.gin", "--gin", f'train_decoder.out_dir = "{tmp_path}"',
        "--gin", f'train_decoder.semantic_ids = "{cold_stage1 / "semantic_ids.pt"}"',
        "--gin", "train_decoder.cold_epsilons = (0.0, 0.3)", "--gin", FEW_USERS,
    ])  # fmt: skip
    assert summary["test/cold_users"] > 0
    assert summary["test/eps0/cold/recall@10"] == 0.0  # beam search over the warm items only
    assert summary["test/eps0/all/recall@10"] == pytest.approx(summary["test/recall@10"])
    n_cold, n_users = summary["test/cold_users"], summary["test/users"]
    pooled = (summary["test/eps0.3/warm/recall@10"] * (n_users - n_cold)
              + summary["test/eps0.3/cold/recall@10"] * n_cold) / n_users  # fmt: skip
    assert summary["test/eps0.3/all/recall@10"] == pytest.approx(pooled)
    assert summary["test/eps0.3/warm/recall@10"] <= summary["test/eps0/warm/recall@10"]  # fewer warm slots


def test_an_artifact_with_other_cold_items_is_refused(cold_stage1, tmp_path, embed_cache, monkeypatch):
    """The 300-user shop has other cold items (none) than the 40-user one the artifact was built on."""
    monkeypatch.setenv("TIGER_CACHE_DIR", str(embed_cache))
    with pytest.raises(SemanticIdsError, match="cold items"):
        train_decoder.main([
            "configs/decoder_debug.gin", "--gin", f'train_decoder.out_dir = "{tmp_path}"',
            "--gin", f'train_decoder.semantic_ids = "{cold_stage1 / "semantic_ids.pt"}"',
        ])  # fmt: skip
    assert not (tmp_path / "checkpoint.pt").exists()


def test_cold_epsilons_outside_the_unit_interval_stop_before_training(tmp_path):
    with pytest.raises(ConfigError, match="cold_epsilons"):
        load_gin(["configs/decoder_debug.gin"], ["train_decoder.cold_epsilons = (0.1, 1.5)"])
