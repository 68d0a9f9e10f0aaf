import numpy as np
import pytest
import torch

from training.selection import Finalists, plateaued, sample_rows


def test_sample_rows_is_seeded_uniform_and_not_the_first_rows():
    a, b = sample_rows(1000, 100, seed=3), sample_rows(1000, 100, seed=3)
    np.testing.assert_array_equal(a, b)
    assert len(np.unique(a)) == 100 and np.all(np.diff(a) > 0)
    assert not np.array_equal(a, np.arange(100))  # never "the first N"
    assert not np.array_equal(a, sample_rows(1000, 100, seed=4))
    np.testing.assert_array_equal(sample_rows(50, None, 0), np.arange(50))
    np.testing.assert_array_equal(sample_rows(50, 80, 0), np.arange(50))
    # uniform: over many seeds every row is drawn about max_rows / n of the time
    counts = np.bincount(np.concatenate([sample_rows(20, 5, s) for s in range(2000)]), minlength=20)
    assert counts.min() > 0.8 * 500 and counts.max() < 1.2 * 500


def test_sample_rows_rejects_an_empty_sample():
    with pytest.raises(ValueError, match="at least one"):
        sample_rows(10, 0, 0)


def weights(value: float) -> dict:
    return {"w": torch.full((2,), value)}


def test_finalists_keep_the_best_and_delete_the_rest(tmp_path):
    keep = Finalists(tmp_path, size=2)
    for step, score in [(10, 0.1), (20, 0.3), (30, 0.2), (40, 0.05), (50, 0.3)]:
        keep.offer(score, step, weights(step))
    assert keep.entries == [(0.3, 20), (0.3, 50)]  # ties keep the earlier step first
    assert sorted(p.name for p in tmp_path.glob("*.pt")) == ["step-20.pt", "step-50.pt"]
    assert not keep.offer(float("nan"), 60, weights(60))


def test_rescore_picks_the_best_on_the_new_scores(tmp_path):
    keep = Finalists(tmp_path, size=3)
    for step, score in [(1, 0.5), (2, 0.4), (3, 0.3)]:
        keep.offer(score, step, weights(step))
    loaded = {}
    full = {1.0: 0.20, 2.0: 0.25, 3.0: 0.25}  # the sample's favourite loses on the full split
    step, scores, by_step = keep.rescore(
        lambda w: loaded.update(v=float(w["w"][0])), lambda: {"m": full[loaded["v"]]}, "m"
    )
    assert step == 2 and scores == {"m": 0.25} and by_step == {1: 0.20, 2: 0.25, 3: 0.25}
    step, _, by_step = keep.rescore(
        lambda w: loaded.update(v=float(w["w"][0])), lambda: {"m": 0.0}, "m", top=1
    )
    assert step == 1 and list(by_step) == [1]


def test_resumed_finalists_drop_files_written_after_the_checkpoint(tmp_path):
    keep = Finalists(tmp_path, size=2)
    keep.offer(0.1, 10, weights(10))
    state = keep.state_dict()
    keep.offer(0.2, 20, weights(20))  # written, then the run is killed before its checkpoint
    resumed = Finalists(tmp_path, size=2)
    resumed.load_state_dict(state)
    assert resumed.entries == [(0.1, 10)]
    assert [p.name for p in tmp_path.glob("*.pt")] == ["step-10.pt"]


def test_plateaued_counts_validations_since_the_best():
    entries = [(0.3, 200), (0.2, 100)]  # best first
    assert not plateaued(entries, 300, 2, 100)  # one validation since the best
    assert plateaued(entries, 400, 2, 100)  # two
    assert not plateaued(entries, 10_000, None, 100)  # patience off
    assert not plateaued([], 10_000, 1, 100)  # nothing validated yet
