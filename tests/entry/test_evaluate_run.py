"""python -m evaluate.run re-evaluates a finished stage-2 run as training did, at other beam widths."""

import json
import shutil

import pytest

from evaluate import run as evaluate_run


def test_same_beam_reproduces_the_training_test_metrics(finished_run):
    (row,) = evaluate_run.main([str(finished_run), "--beam-width", "10"])
    trained = json.loads((finished_run / "metrics.json").read_text())
    for key in ("test/recall@10", "test/ndcg@10", "test/recall@10_prefix3"):
        assert row[key] == pytest.approx(trained[key], abs=1e-7)
    assert row["pop/recall@10"] == pytest.approx(trained["pop/recall@10"])  # the same split's baseline
    assert row["split"] == "test"
    assert json.loads((finished_run / "eval-test-beam10.json").read_text())["beam_width"] == 10


def test_wider_beam_writes_one_row_per_width(finished_run):
    rows = evaluate_run.main([str(finished_run), "--beam-width", "10", "12", "--split", "valid"])
    assert [r["beam_width"] for r in rows] == [10, 12]
    assert all(0.0 <= r["valid/recall@10"] <= 1.0 for r in rows)
    assert (finished_run / "eval-valid-beam12.json").exists()


def test_missing_best_checkpoint_is_named(tmp_path):
    (tmp_path / "config.gin").write_text("")
    with pytest.raises(FileNotFoundError, match="best.pt"):
        evaluate_run.main([str(tmp_path), "--beam-width", "10"])


def test_beam_narrower_than_the_largest_k_is_refused(finished_run, capsys):
    with pytest.raises(SystemExit):
        evaluate_run.main([str(finished_run), "--beam-width", "4"])
    assert "must be >= 10" in capsys.readouterr().err


def test_a_run_whose_config_predates_cold_epsilons_is_re_evaluated(finished_run, tmp_path):
    """Runs trained before train_decoder.cold_epsilons existed have no binding for it: the default applies."""
    old = tmp_path / "old_run"
    shutil.copytree(finished_run, old, ignore=shutil.ignore_patterns("eval-*.json"))
    config = (old / "config.gin").read_text()
    assert "train_decoder.cold_epsilons" in config
    lines = [line for line in config.splitlines() if not line.startswith("train_decoder.cold_epsilons")]
    (old / "config.gin").write_text("\n".join(lines) + "\n")
    (row,) = evaluate_run.main([str(old), "--beam-width", "10"])
    trained = json.loads((finished_run / "metrics.json").read_text())
    assert row["test/recall@10"] == pytest.approx(trained["test/recall@10"], abs=1e-7)
