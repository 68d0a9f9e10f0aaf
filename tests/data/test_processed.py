import numpy as np
import pytest
import torch

from data.processed import (
    SeqBatch,
    SeqData,
    collate_seq,
    item_counts,
    popularity,
    random_suffix,
    split_examples,
    trim_padding,
)
from data.schema import DataWarning, RawDataset
from data.synthetic import load_synthetic

SEQS = [[10, 11, 12, 13, 14, 15], [20, 21, 22], [30, 31]]  # the last user is too short (< 3 items)


def dataset(seqs=SEQS) -> RawDataset:
    sequences = [np.array(s, dtype=np.int64) for s in seqs]
    user_ids = np.arange(100, 100 + len(seqs), dtype=np.int64)
    return RawDataset("toy", sequences, user_ids, [str(i) for i in range(40)], ["t"] * 40)


def rows(split, max_items=20, train_examples="sliding", seqs=SEQS):
    with pytest.warns(DataWarning, match="skipped 1 users with < 3 items"):
        data = SeqData(dataset(seqs), split, max_items=max_items, train_examples=train_examples)
    return [(h.tolist(), u, t) for h, u, t in (data[i] for i in range(len(data)))]


def test_leave_one_out_targets_by_hand():
    assert rows("test") == [([10, 11, 12, 13, 14], 100, 15), ([20, 21], 101, 22)]
    assert rows("valid") == [([10, 11, 12, 13], 100, 14), ([20], 101, 21)]
    assert rows("train") == [([10], 100, 11), ([10, 11], 100, 12), ([10, 11, 12], 100, 13)]
    assert rows("train", train_examples="last") == [([10, 11, 12], 100, 13)]


def test_truncation_keeps_the_most_recent_items():
    assert rows("test", max_items=2) == [([13, 14], 100, 15), ([20, 21], 101, 22)]
    assert rows("train", max_items=2) == [([10], 100, 11), ([10, 11], 100, 12), ([11, 12], 100, 13)]


@pytest.mark.parametrize("split", ["train", "valid", "test"])
def test_no_target_in_its_own_history_and_train_never_sees_valid_or_test(split):
    data = load_synthetic(n_items=60, n_users=40, seed=1, min_len=3, max_len=12)
    seq_data = SeqData(data, split, max_items=5)
    held_out = {(u, int(s[-1])) for u, s in zip(data.user_ids, data.sequences)}
    held_out |= {(u, int(s[-2])) for u, s in zip(data.user_ids, data.sequences)}
    for history, user, target in (seq_data[i] for i in range(len(seq_data))):
        assert 1 <= len(history) <= 5 and target not in history.tolist()
        if split == "train":
            assert (user, target) not in held_out
            assert not held_out & {(user, int(item)) for item in history}


def test_split_examples_sliding_count_is_sum_of_lengths_minus_three():
    lengths = np.array([6, 3, 2, 10, 4])
    examples = split_examples(lengths, "train")
    assert len(examples.rows) == (6 - 3) + 0 + (10 - 3) + (4 - 3)
    assert np.all(examples.ends >= 1) and np.all(examples.ends <= lengths[examples.rows] - 3)


def test_collate_pads_left_aligned_with_minus_one():
    batch = collate_seq([(np.array([1, 2, 3]), 7, 4), (np.array([5]), 8, 6), (np.arange(10, 16), 9, 1)], 4)
    expected = torch.tensor([[1, 2, 3, -1], [5, -1, -1, -1], [12, 13, 14, 15]])
    torch.testing.assert_close(batch.items, expected)
    torch.testing.assert_close(batch.lengths, torch.tensor([3, 1, 4]))
    torch.testing.assert_close(batch.user_ids, torch.tensor([7, 8, 9]))
    torch.testing.assert_close(batch.targets, torch.tensor([4, 6, 1]))
    assert all(t.dtype == torch.int64 for t in batch)
    with pytest.raises(ValueError, match="at least one item"):
        collate_seq([(np.array([], dtype=np.int64), 1, 2)], 4)


def test_dataloader_batches_have_documented_shapes():
    data = load_synthetic(n_items=50, n_users=30, seed=2)
    seq_data = SeqData(data, "train", max_items=8)
    batch = next(iter(torch.utils.data.DataLoader(seq_data, batch_size=16, collate_fn=seq_data.collate)))
    assert batch.items.shape == (16, 8) and batch.lengths.shape == batch.targets.shape == (16,)
    valid = torch.arange(8) < batch.lengths[:, None]
    assert bool((batch.items[valid] >= 0).all()) and bool((batch.items[~valid] == -1).all())


def test_item_counts_use_only_the_visible_part():
    counts = item_counts([np.array(s) for s in SEQS], 40, "train")
    expected = np.bincount([10, 11, 12, 13, 20], minlength=40)  # positions < L-2; short user skipped
    np.testing.assert_array_equal(counts, expected)
    np.testing.assert_array_equal(item_counts([np.array(s) for s in SEQS], 40, "valid"), expected)
    test_counts = np.bincount([10, 11, 12, 13, 14, 20, 21], minlength=40)
    np.testing.assert_array_equal(popularity(dataset(), "test").numpy(), test_counts)


@pytest.mark.parametrize("split", ["train", "valid", "test"])
def test_targets_equal_the_targets_of_every_example(split):
    data = SeqData(load_synthetic(n_items=60, n_users=40, seed=1), split, max_items=5)
    assert data.targets().tolist() == [data[i][2] for i in range(len(data))]


def test_random_suffix_keeps_a_random_run_of_the_newest_items():
    items = torch.tensor([[5, 6, 7, 8, -1], [1, -1, -1, -1, -1], [9, 8, 7, 6, 5]])
    batch = SeqBatch(items, torch.tensor([4, 1, 5]), torch.zeros(3, dtype=torch.long), torch.zeros(3))
    seen = {b: set() for b in range(3)}
    for seed in range(200):
        cut = random_suffix(batch, torch.Generator().manual_seed(seed))
        for b in range(3):
            n, full = int(cut.lengths[b]), items[b, : batch.lengths[b]]
            assert 1 <= n <= batch.lengths[b]
            assert torch.equal(cut.items[b, :n], full[len(full) - n :])  # the newest n, in order
            assert (cut.items[b, n:] == -1).all()
            seen[b].add(n)
    assert seen == {0: {1, 2, 3, 4}, 1: {1}, 2: {1, 2, 3, 4, 5}}  # every length can be drawn
    again = random_suffix(batch, torch.Generator().manual_seed(7))
    assert torch.equal(again.items, random_suffix(batch, torch.Generator().manual_seed(7)).items)


def test_trim_padding_cuts_to_the_longest_history_and_keeps_every_item():
    items = torch.tensor([[5, 6, -1, -1, -1], [1, -1, -1, -1, -1]])
    batch = SeqBatch(items, torch.tensor([2, 1]), torch.zeros(2, dtype=torch.long), torch.zeros(2))
    assert trim_padding(batch).items.tolist() == [[5, 6], [1, -1]]
    assert trim_padding(batch).lengths is batch.lengths


def test_history_lengths_are_the_lengths_of_the_histories():
    with pytest.warns(DataWarning):
        data = SeqData(dataset(), "train", max_items=2)
    assert data.history_lengths().tolist() == [len(data[i][0]) for i in range(len(data))]


def test_subsequence_examples_are_the_sliding_examples():
    lengths = np.array([3, 5, 8])
    sliding = split_examples(lengths, "train", "sliding")
    sub = split_examples(lengths, "train", "subsequence")
    np.testing.assert_array_equal(sub.rows, sliding.rows)
    np.testing.assert_array_equal(sub.ends, sliding.ends)


@pytest.mark.parametrize("max_items", [1, 2, 3, 20])
def test_windows_cover_every_training_target_exactly_once(max_items):
    """A window ending at target e predicts positions max(0, e - max_items) + 1 .. e (every item after its
    first); over a user's windows these are positions 1..L-3, each once."""
    lengths = np.array([2, 3, 4, 5, 9, 12, 25])
    examples = split_examples(lengths, "train", "windows", max_items)
    covered = {row: [] for row in range(len(lengths))}
    for row, end in zip(examples.rows.tolist(), examples.ends.tolist()):
        covered[row] += list(range(max(0, end - max_items) + 1, end + 1))
    for row, length in enumerate(lengths.tolist()):
        assert sorted(covered[row]) == list(range(1, max(length - 2, 1)))


def test_windows_need_max_items():
    with pytest.raises(ValueError, match="windows"):
        split_examples(np.array([5]), "train", "windows")
