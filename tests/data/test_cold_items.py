import numpy as np

from data.cold_start import cold_items


def test_cold_items_occur_only_as_valid_or_test_targets():
    sequences = [
        np.array([0, 1, 2, 3, 4]),  # train part 0, 1, 2; valid 3; test 4
        np.array([1, 5, 6]),  # train part 1; valid 5; test 6
        np.array([6, 7]),  # too short: skipped in every split, so 6 and 7 count as warm
        np.array([2, 0, 3, 8]),  # train part 2, 0; valid 3; test 8
    ]
    cold = cold_items(sequences, n_items=10)
    # 3, 4, 5, 8 occur only at positions L-2 / L-1; 9 occurs nowhere (warm); 6 is in a short user's sequence
    assert np.flatnonzero(cold).tolist() == [3, 4, 5, 8]


def test_an_item_once_in_a_training_part_is_warm():
    cold = cold_items([np.array([0, 1, 2, 3]), np.array([2, 3, 4, 5, 0])], n_items=6)
    assert not cold[2] and not cold[3]  # the first user's valid / test targets, in the second's training part
    assert not cold[0]  # the second user's test target, in the first user's training part
    assert np.flatnonzero(cold).tolist() == [5]
