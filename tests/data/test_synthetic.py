import numpy as np

from data.synthetic import CATEGORIES, category_transitions, load_synthetic


def test_same_seed_same_data_other_seed_other_data():
    a, b, c = load_synthetic(seed=3), load_synthetic(seed=3), load_synthetic(seed=4)
    assert a.item_texts == b.item_texts and a.item_keys == b.item_keys
    assert all(np.array_equal(x, y) for x, y in zip(a.sequences, b.sequences))
    assert a.item_texts != c.item_texts


def test_shape_lengths_and_no_repeats():
    data = load_synthetic(n_items=120, n_users=50, min_len=5, max_len=9)
    assert len(data.item_keys) == len(data.item_texts) == 120 and data.user_ids.tolist() == list(range(1, 51))
    for seq in data.sequences:
        assert 5 <= len(seq) <= 9 and len(set(seq.tolist())) == len(seq)


def test_transitions_are_stochastic_with_the_stated_mass():
    t = category_transitions(4, p_next=0.6, p_stay=0.2)
    np.testing.assert_allclose(t.sum(axis=1), np.ones(4))
    np.testing.assert_allclose(t[1, 2], 0.6 + 0.2 / 4)
    np.testing.assert_allclose(t[1, 1], 0.2 + 0.2 / 4)


def category_of(text: str) -> str:
    return text.split("Categories: ")[1].split(";")[0]


def test_next_category_follows_the_markov_chain():
    """The fraction of steps into the successor category is near p_next + rest/K, far above chance 1/K."""
    data = load_synthetic(n_items=600, n_users=400, n_categories=12)
    names = [f"{d}, {c}" for d, c, _ in CATEGORIES[:12]]
    cat = np.array([names.index(category_of(t)) for t in data.item_texts])
    pairs = np.concatenate([np.stack([cat[s[:-1]], cat[s[1:]]], axis=1) for s in data.sequences])
    to_successor = np.mean(pairs[:, 1] == (pairs[:, 0] + 1) % 12)
    assert 0.5 < to_successor < 0.7  # expected 0.6 + 0.15 / 12 ~= 0.61 (minus rare used-up categories)
