import json

import pytest

from data.files import load_tensors
from evaluate import sasrec


def run(out_dir, *bindings):
    args = ["--gin", f'train_sasrec.out_dir = "{out_dir}"']
    for binding in bindings:
        args += ["--gin", binding]
    return sasrec.main(["configs/sasrec_debug.gin", *args])


def rows(out_dir):
    return [json.loads(line) for line in (out_dir / "metrics.jsonl").read_text().splitlines()]


def test_trains_selects_on_validation_and_scores_test(tmp_path):
    summary = run(tmp_path, "train_sasrec.patience = 100")
    curve = [r["train/loss"] for r in rows(tmp_path) if "train/loss" in r]
    assert curve[-1] < curve[0]
    valid = {r["step"]: r["valid/recall@10"] for r in rows(tmp_path) if "valid/recall@10" in r}
    best_step = min(valid, key=lambda s: (-valid[s], s))
    assert summary["selected_step"] == best_step == load_tensors(tmp_path / "best.pt")["step"]
    assert summary["best_valid"] == valid[best_step]
    for key in ("test/recall@10", "test/ndcg@10", "test/recall@10_se", "pop/recall@10"):
        assert key in summary and key in json.loads((tmp_path / "metrics.json").read_text())


def test_resume_equals_uninterrupted(tmp_path):
    full = run(tmp_path / "full")
    run(tmp_path / "split", "train_sasrec.iterations = 20")
    split = run(tmp_path / "split")
    assert split["test/recall@10"] == pytest.approx(full["test/recall@10"])
    a = {r["step"]: r["train/loss"] for r in rows(tmp_path / "full") if "train/loss" in r}
    b = {r["step"]: r["train/loss"] for r in rows(tmp_path / "split") if "train/loss" in r}
    assert a.keys() == b.keys() and all(b[s] == pytest.approx(a[s], rel=1e-5) for s in a)


def test_patience_stops_early(tmp_path):
    summary = run(tmp_path, "train_sasrec.patience = 1", "adamw.lr = 1e-30")  # no update survives float32
    assert summary["steps"] == 40  # step 20 sets the best, step 40 does not improve on it


def test_a_checkpoint_that_counted_bad_validations_resumes_with_the_best_step_it_implies():
    legacy = {"step": 60, "best": 0.1, "bad_evals": 2, "train_wall_s": 3.0}
    assert sasrec.resumed_state(legacy, eval_every=20) == {
        "step": 60, "best": 0.1, "train_wall_s": 3.0, "best_step": 20,
    }  # fmt: skip
    assert sasrec.resumed_state({**legacy, "best_step": 40}, eval_every=20)["best_step"] == 40
