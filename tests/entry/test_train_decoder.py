import json

import pytest

import train_decoder
from data.files import load_tensors
from modules.decoder_only import DecoderOnlyModel
from training import decoder_setup
from training.guards import NonFiniteLossError
from training.retriever import load_run


@pytest.fixture
def semantic_ids(debug_stage1):
    return debug_stage1 / "semantic_ids.pt"


def run(out_dir, semantic_ids, *bindings):
    extra = sum([["--gin", b] for b in bindings], [])
    args = [
        "--gin",
        f'train_decoder.out_dir = "{out_dir}"',
        "--gin",
        f'train_decoder.semantic_ids = "{semantic_ids}"',
        *extra,
    ]
    return train_decoder.main(["configs/decoder_debug.gin", *args])


def rows(out_dir):
    return [json.loads(line) for line in (out_dir / "metrics.jsonl").read_text().splitlines()]


def test_loss_decreases_and_metrics_written(tmp_path, semantic_ids):
    summary = run(tmp_path, semantic_ids, "train_decoder.iterations = 80", "adamw.lr = 0.003")
    curve = {r["step"]: r["train/loss"] for r in rows(tmp_path) if "train/loss" in r}
    assert curve[80] < curve[10]
    saved = json.loads((tmp_path / "metrics.json").read_text())
    for key in ("test/recall@10", "test/ndcg@10", "pop/recall@10", "best_valid"):
        assert key in saved and key in summary
    assert 0.0 <= saved["test/recall@10"] <= 1.0
    assert any("valid/recall@10" in r for r in rows(tmp_path))
    assert (tmp_path / "best.pt").exists() and (tmp_path / "config.gin").exists()


def test_resume_equals_uninterrupted(tmp_path, semantic_ids):
    run(tmp_path / "full", semantic_ids)
    run(tmp_path / "split", semantic_ids, "train_decoder.iterations = 20")
    run(tmp_path / "split", semantic_ids)
    full = {r["step"]: r for r in rows(tmp_path / "full") if "train/loss" in r}
    split = {r["step"]: r for r in rows(tmp_path / "split") if "train/loss" in r}
    for step in (30, 40):
        assert split[step]["train/loss"] == pytest.approx(full[step]["train/loss"], rel=1e-5)
    assert split[40]["valid/recall@10"] == pytest.approx(full[40]["valid/recall@10"])


def test_nan_guard_keeps_checkpoint(tmp_path, semantic_ids, poison_train_step):
    run(tmp_path, semantic_ids, "train_decoder.iterations = 10")
    poison_train_step(train_decoder, after=3)
    with pytest.raises(NonFiniteLossError, match="step 20"):
        run(tmp_path, semantic_ids, "train_decoder.iterations = 30")
    assert load_tensors(tmp_path / "checkpoint.pt")["step"] == 10


def test_artifact_for_other_items_is_rejected(tmp_path, semantic_ids):
    with pytest.raises(ValueError, match="different item list"):
        run(tmp_path, semantic_ids, "load_synthetic.n_items = 150")


def test_metrics_record_the_commit_the_run_started_from(tmp_path, semantic_ids, monkeypatch):
    real_step, steps = train_decoder.train_step, []
    monkeypatch.setattr(train_decoder, "train_step", lambda *a: steps.append(1) or real_step(*a))
    monkeypatch.setattr(train_decoder, "git_commit", lambda: "changed-meanwhile" if steps else "at-start")
    run(tmp_path, semantic_ids, "train_decoder.iterations = 10")
    assert json.loads((tmp_path / "metrics.json").read_text())["commit"] == "at-start"


def test_best_is_chosen_on_the_full_validation_split(tmp_path, semantic_ids):
    summary = run(tmp_path, semantic_ids, "train_decoder.eval_users = 5", "train_decoder.finalists = 2")
    by_step = {int(s): v for s, v in summary["finalist_scores"].items()}
    assert len(by_step) == 2 and summary["selected_step"] in by_step
    assert summary["valid_full/recall@10"] == max(by_step.values())
    assert load_tensors(tmp_path / "best.pt")["step"] == summary["selected_step"]
    sampled = [r for r in rows(tmp_path) if "valid/users" in r]
    assert all(r["valid/users"] == 5 for r in sampled)
    assert summary["valid_full/users"] > 5 and "test/recall@10_se" in summary
    assert sorted(p.name for p in (tmp_path / "finalists").iterdir()) == sorted(
        f"step-{s}.pt" for s in by_step
    )


def test_patience_stops_on_a_plateau_and_a_rerun_stays_stopped(tmp_path, semantic_ids):
    # lr 1e-12: every validation scores the same, ties keep the earlier step, so the best stays at step 10
    flat = ("adamw.lr = 1e-12", "train_decoder.eval_every = 10", "train_decoder.patience = 2")
    summary = run(tmp_path, semantic_ids, *flat, "train_decoder.iterations = 100")
    assert summary["iterations"] == 30 and summary["stopped_early"] is True
    assert summary["examples"] == 30 * 32
    assert max(r["step"] for r in rows(tmp_path) if "train/loss" in r) == 30
    assert load_tensors(tmp_path / "checkpoint.pt")["step"] == 30
    before = (tmp_path / "metrics.json").read_text()
    again = run(tmp_path, semantic_ids, *flat, "train_decoder.iterations = 100")
    assert again["iterations"] == 30 and (tmp_path / "metrics.json").read_text() == before
    assert max(r["step"] for r in rows(tmp_path) if "train/loss" in r) == 30


def test_subsequence_examples_train_and_resume_exactly(tmp_path, semantic_ids):
    sub = ('SeqData.train_examples = "subsequence"', "train_decoder.eval_every = 10")
    full = run(tmp_path / "full", semantic_ids, *sub, "train_decoder.iterations = 20")
    run(tmp_path / "split", semantic_ids, *sub, "train_decoder.iterations = 10")
    split = run(tmp_path / "split", semantic_ids, *sub, "train_decoder.iterations = 20")
    assert split["test/recall@10"] == pytest.approx(full["test/recall@10"])
    sliding = {r["step"]: r["train/loss"] for r in rows(tmp_path / "full") if "train/loss" in r}
    plain = run(tmp_path / "plain", semantic_ids, "train_decoder.iterations = 20")
    assert plain["iterations"] == 20
    other = {r["step"]: r["train/loss"] for r in rows(tmp_path / "plain") if "train/loss" in r}
    assert sliding[10] != other[10]  # the cut histories are really different batches


DECODER_ONLY = (
    "make_model.architecture = @DecoderOnlyModel",
    'SeqData.train_examples = "windows"',
    "DecoderOnlyModel.embed_dim = 16",
    "DecoderOnlyModel.d_model = 16",
    "DecoderOnlyModel.n_heads = 2",
    "DecoderOnlyModel.head_dim = 8",
    "DecoderOnlyModel.n_layers = 2",
    "DecoderOnlyModel.ffn_dim = 32",
)


def test_decoder_only_trains_evaluates_resumes_and_reloads(tmp_path, semantic_ids):
    full = run(tmp_path / "full", semantic_ids, *DECODER_ONLY, "adamw.lr = 0.003")
    run(tmp_path / "split", semantic_ids, *DECODER_ONLY, "adamw.lr = 0.003", "train_decoder.iterations = 20")
    split = run(tmp_path / "split", semantic_ids, *DECODER_ONLY, "adamw.lr = 0.003")
    assert split["test/recall@10"] == pytest.approx(full["test/recall@10"])
    curve = {r["step"]: r["train/loss"] for r in rows(tmp_path / "full") if "train/loss" in r}
    assert curve[max(curve)] < curve[min(curve)]
    _, _, model = load_run(tmp_path / "full", [])
    assert isinstance(model, DecoderOnlyModel)  # the run's config.gin rebuilds the same architecture


@pytest.mark.parametrize("architecture", [(), DECODER_ONLY], ids=["encoder_decoder", "decoder_only"])
def test_length_grouped_batches_train_and_resume_exactly(tmp_path, semantic_ids, architecture):
    grouped = (*architecture, "train_decoder.length_groups = 4", "train_decoder.eval_every = 10")
    full = run(tmp_path / "full", semantic_ids, *grouped, "train_decoder.iterations = 20")
    run(tmp_path / "split", semantic_ids, *grouped, "train_decoder.iterations = 10")
    split = run(tmp_path / "split", semantic_ids, *grouped, "train_decoder.iterations = 20")
    assert split["test/recall@10"] == pytest.approx(full["test/recall@10"])
    run(tmp_path / "plain", semantic_ids, *architecture, "train_decoder.iterations = 20")
    losses = [
        {r["step"]: r["train/loss"] for r in rows(d) if "train/loss" in r}
        for d in (tmp_path / "full", tmp_path / "plain")
    ]
    assert losses[0][10] != losses[1][10]  # the grouped order draws other batches


def test_compile_blocks_trains_a_regionally_compiled_copy_and_saves_the_eager_model(
    tmp_path, semantic_ids, monkeypatch
):
    """The wiring, without paying for a compile: the steps run what compile_regions returns, and the
    checkpoint holds the eager model's keys (the slow test below compiles for real)."""
    compiled = []

    def spy(model):
        compiled.append(model)
        return model

    monkeypatch.setattr(decoder_setup, "compile_regions", spy)
    run(tmp_path / "off", semantic_ids, "train_decoder.iterations = 10")
    assert compiled == []
    run(tmp_path / "on", semantic_ids, "train_decoder.iterations = 10", "train_decoder.compile_blocks = True")
    assert len(compiled) == 1
    keys = [sorted(load_tensors(tmp_path / r / "checkpoint.pt")["model"]) for r in ("off", "on")]
    assert keys[0] == keys[1]


@pytest.mark.slow
def test_compiled_blocks_train_like_the_eager_model(tmp_path, semantic_ids):
    """Real torch.compile (minutes on a CPU): without dropout the logged losses match the eager run's."""
    common = ("train_decoder.iterations = 20", "RetrievalModel.dropout = 0.0")
    run(tmp_path / "eager", semantic_ids, *common)
    run(tmp_path / "compiled", semantic_ids, *common, "train_decoder.compile_blocks = True")
    eager, compiled = (
        {r["step"]: r for r in rows(tmp_path / m) if "train/loss" in r} for m in ("eager", "compiled")
    )
    for step in (10, 20):
        assert compiled[step]["train/loss"] == pytest.approx(eager[step]["train/loss"], rel=1e-4)
    assert "_orig_mod" not in "".join(load_tensors(tmp_path / "compiled" / "checkpoint.pt")["model"])
