import numpy as np

from bench.scale import MIN_RATINGS, measure_data, user_lengths, write_synthetic_ml32m
from data.movielens import load_movielens


def test_user_lengths_follow_the_movielens_floor_and_mean():
    lengths = user_lengths(50_000, np.random.default_rng(0))
    assert lengths.min() >= MIN_RATINGS
    assert abs(lengths.mean() - 32_000_204 / 200_948) < 2.0  # the ML-32M mean, up to truncation


def test_synthetic_files_load_through_the_real_loader(tmp_path):
    made = write_synthetic_ml32m(str(tmp_path), 0.0005)
    dataset = load_movielens(str(tmp_path), "ml-32m")
    lengths = np.array([len(s) for s in dataset.sequences])
    assert len(lengths) == made["users"] and lengths.sum() == made["ratings"]
    got = measure_data(str(tmp_path), n_batches=2, batch_size=8, max_items=200)
    assert got["examples"] == (lengths - 3).sum()  # sliding examples: positions 1..L-3 of every user
    assert 1 <= got["history"] <= 200
