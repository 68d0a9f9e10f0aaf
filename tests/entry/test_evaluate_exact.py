"""python -m evaluate.exact on a finished run: its beam half reproduces training's test metrics, and a beam
as wide as the catalogue agrees with the exact ranking."""

import json

import pytest
import torch

from evaluate import exact


@pytest.fixture(scope="module")
def full_split(finished_run):
    """Every test user (the sample is capped at the split), the run's own beam width."""
    return exact.main([str(finished_run), "--users", "100000", "--batch-size", "64"])


def test_beam_half_reproduces_the_training_test_metrics(finished_run, full_split):
    trained = json.loads((finished_run / "metrics.json").read_text())
    assert full_split["users"] == trained["test/users"]
    for name in ("recall@1", "recall@10", "ndcg@10"):
        assert full_split[f"beam_test/{name}"] == pytest.approx(trained[f"test/{name}"], abs=1e-7)
    written = json.loads((finished_run / "eval-exact-test.json").read_text())
    assert written == pytest.approx(full_split) and written["beam_width"] == 10
    assert 0.0 <= full_split["exact_test/beam_overlap@10"] <= 1.0


def test_beam_as_wide_as_the_catalogue_equals_exact(finished_run, full_split):
    row = exact.main([str(finished_run), "--users", "40", "--beam-width", str(full_split["items"]),
                      "--split", "valid", "--chunk", "7"])  # fmt: skip
    assert row["users"] == 40 and row["exact_valid/beam_overlap@10"] == 1.0
    for name in ("recall@1", "recall@5", "recall@10", "ndcg@5", "ndcg@10"):
        assert row[f"exact_valid/{name}"] == pytest.approx(row[f"beam_valid/{name}"], abs=1e-7)


def test_user_sample_is_seeded(finished_run):
    first = exact.main([str(finished_run), "--users", "30", "--seed", "3", "--split", "valid"])
    again = exact.main([str(finished_run), "--users", "30", "--seed", "3", "--split", "valid"])
    assert first["users"] == 30
    assert {k: v for k, v in first.items() if "/" in k} == {k: v for k, v in again.items() if "/" in k}


def test_bf16_flag_runs_both_rankings_under_autocast_and_says_so(finished_run, monkeypatch):
    seen = []
    plain = exact.compare

    def spy(*args, **kwargs):
        seen.append(torch.is_autocast_enabled("cpu") and torch.get_autocast_dtype("cpu") == torch.bfloat16)
        return plain(*args, **kwargs)

    monkeypatch.setattr(exact, "compare", spy)
    row = exact.main([str(finished_run), "--users", "20", "--split", "valid", "--bf16"])
    assert seen == [True] and row["precision"] == "bf16" and row["users"] == 20
    assert 0.0 <= row["exact_valid/beam_overlap@10"] <= 1.0
    assert exact.main([str(finished_run), "--users", "20", "--split", "valid"])["precision"] == "fp32"
    assert seen == [True, False]
