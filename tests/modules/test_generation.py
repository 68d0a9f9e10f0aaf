import itertools
from typing import NamedTuple

import pytest
import torch

from modules.generation import beam_search, beam_step, beam_step_reference, sample
from modules.prefix_trie import PrefixTrie
from modules.tokens import TokenBatch

K, C, N_USERS = 4, 3, 3


class TableState(NamedTuple):
    user: torch.Tensor  # [R]
    prefix: torch.Tensor  # [R, l]


class PrefixTableModel(torch.nn.Module):
    """Fake decoder: logits are a fixed random function of (user, code prefix)."""

    def __init__(self, n_users: int = N_USERS, seed: int = 0):
        super().__init__()
        gen = torch.Generator().manual_seed(seed)
        self.table = 2 * torch.randn(n_users, sum(K**l for l in range(C)), K, generator=gen)
        self.n_steps = 0

    def logits_of(self, user: torch.Tensor, prefix: torch.Tensor) -> torch.Tensor:
        length = prefix.shape[1]
        weights = torch.tensor([K ** (length - 1 - j) for j in range(length)], dtype=torch.long)
        prefix_id = sum(K**l for l in range(length)) + (prefix * weights).sum(-1)
        return self.table[user, prefix_id]

    def start(self, batch: TokenBatch) -> TableState:
        return TableState(batch.user_ids.clone(), batch.user_ids.new_zeros(len(batch.user_ids), 0))

    def step(self, state: TableState, codes):
        self.n_steps += 1
        if codes is not None:
            state = TableState(state.user, torch.cat([state.prefix, codes.unsqueeze(1)], dim=1))
        return self.logits_of(state.user, state.prefix), state

    def reorder(self, state: TableState, index: torch.Tensor) -> TableState:
        return TableState(state.user[index], state.prefix[index])


def make_batch(users: torch.Tensor) -> TokenBatch:
    b = len(users)
    history = torch.zeros(b, 1, C, dtype=torch.long)
    return TokenBatch(history, torch.ones(b, dtype=torch.long), users, torch.full((b, C), -1))


def make_codes(n_items: int = 20, seed: int = 1) -> torch.Tensor:
    tuples = torch.tensor(list(itertools.product(range(K), repeat=C)))
    return tuples[torch.randperm(len(tuples), generator=torch.Generator().manual_seed(seed))[:n_items]]


def item_log_probs(model: PrefixTableModel, user: int, codes: torch.Tensor) -> torch.Tensor:
    """Σ_l log_softmax(logits(user, c_<l))[c_l] for every row of codes [I, C] -> [I]."""
    users = torch.full((len(codes),), user)
    terms = [
        model.logits_of(users, codes[:, :l]).log_softmax(-1).gather(1, codes[:, l : l + 1]) for l in range(C)
    ]
    return torch.cat(terms, dim=1).sum(1)


def greedy(model: PrefixTableModel, user: int, codes: torch.Tensor) -> torch.Tensor:
    """Constrained greedy decoding by hand: at each level the valid code with the largest logit."""
    prefix = torch.zeros(0, dtype=torch.long)
    for l in range(C):
        starts = (codes[:, :l] == prefix).all(1)
        valid = torch.zeros(K, dtype=torch.bool)
        valid[codes[starts, l]] = True
        logits = model.logits_of(torch.tensor([user]), prefix.reshape(1, l))[0]
        best = logits.masked_fill(~valid, float("-inf")).argmax()
        prefix = torch.cat([prefix, best.reshape(1)])
    return prefix


def test_full_width_equals_exhaustive_enumeration_and_pads():
    codes, model = make_codes(), PrefixTableModel()
    width = len(codes) + 5
    out = beam_search(model, make_batch(torch.arange(N_USERS)), PrefixTrie.from_codes(codes, K), width)
    assert model.n_steps == C  # level 0 runs once for B rows, then one step per level
    for user in range(N_USERS):
        scores = item_log_probs(model, user, codes)
        order = scores.argsort(descending=True)
        torch.testing.assert_close(out.items[user, : len(codes)], order)
        torch.testing.assert_close(out.log_probs[user, : len(codes)], scores[order])
        torch.testing.assert_close(out.codes[user, : len(codes)], codes[order])
        assert (out.items[user, len(codes) :] == -1).all() and (out.codes[user, len(codes) :] == -1).all()
        assert torch.isneginf(out.log_probs[user, len(codes) :]).all()


def test_width_one_is_greedy():
    codes, model = make_codes(), PrefixTableModel()
    out = beam_search(model, make_batch(torch.arange(N_USERS)), PrefixTrie.from_codes(codes, K), 1)
    for user in range(N_USERS):
        torch.testing.assert_close(out.codes[user, 0], greedy(model, user, codes))


def test_beams_are_items_sorted_deterministic_and_batch_invariant():
    codes, model = make_codes(), PrefixTableModel()
    trie, users = PrefixTrie.from_codes(codes, K), torch.arange(N_USERS)
    out = beam_search(model, make_batch(users), trie, 5)
    assert (out.items >= 0).all()
    torch.testing.assert_close(codes[out.items], out.codes)
    assert (out.log_probs[:, 1:] <= out.log_probs[:, :-1]).all()
    for user in range(N_USERS):
        torch.testing.assert_close(out.log_probs[user], item_log_probs(model, user, codes)[out.items[user]])
        alone = beam_search(model, make_batch(users[user : user + 1]), trie, 5)
        torch.testing.assert_close(alone.items[0], out.items[user])
    again = beam_search(model, make_batch(users), trie, 5)
    assert torch.equal(again.items, out.items) and torch.equal(again.log_probs, out.log_probs)


def test_unconstrained_full_width_enumerates_all_tuples():
    codes, model = make_codes(), PrefixTableModel()
    all_tuples = torch.tensor(list(itertools.product(range(K), repeat=C)))
    out = beam_search(
        model, make_batch(torch.arange(1)), PrefixTrie.from_codes(codes, K), K**C, constrained=False
    )
    scores = item_log_probs(model, 0, all_tuples)
    order = scores.argsort(descending=True)
    torch.testing.assert_close(out.codes[0], all_tuples[order])
    is_item = (all_tuples[order][:, None] == codes[None]).all(-1).any(-1)
    assert torch.equal(out.items[0] >= 0, is_item)


def test_beam_step_by_hand():
    scores = torch.tensor([[-1.0, -2.0]])
    log_probs = torch.tensor([[[-0.5, -1.0, -3.0], [-0.1, -0.2, -5.0]]])
    valid = torch.tensor([[[True, False, True], [True, True, True]]])
    # candidates: w0: -1.5, (-2.0 masked), -4.0; w1: -2.1, -2.2, -7.0
    step = beam_step(scores, log_probs, valid, 3)
    torch.testing.assert_close(step.scores, torch.tensor([[-1.5, -2.1, -2.2]]))
    assert step.parent.tolist() == [[0, 1, 1]] and step.code.tolist() == [[0, 0, 1]]


def test_beam_step_ties_go_to_lower_flat_index():
    step = beam_step(torch.zeros(1, 2), torch.zeros(1, 2, 3), torch.ones(1, 2, 3, dtype=torch.bool), 4)
    assert step.parent.tolist() == [[0, 0, 0, 1]] and step.code.tolist() == [[0, 1, 2, 0]]


def test_beam_step_matches_stable_sort_reference_on_ties():
    scores = torch.randint(-3, 1, (64, 5)).float()
    log_probs = torch.randint(-3, 1, (64, 5, 6)).float()
    valid = torch.rand(64, 5, 6) > 0.7
    cases = [(scores, log_probs, valid), (torch.randn(64, 5), torch.randn(64, 5, 6), valid)]  # ties / none
    for (scores, log_probs, valid), width in itertools.product(cases, (1, 5, 12, 30)):
        fast, ref = (
            beam_step(scores, log_probs, valid, width),
            beam_step_reference(scores, log_probs, valid, width),
        )
        for a, b in zip(fast, ref):
            assert torch.equal(a, b)


def test_sampling_returns_items_with_model_log_probs():
    codes, model = make_codes(), PrefixTableModel()
    gen = torch.Generator().manual_seed(0)
    out = sample(model, make_batch(torch.arange(N_USERS)), PrefixTrie.from_codes(codes, K), 30, 0.7, 3, gen)
    assert out.items.shape == (N_USERS, 30) and (out.items >= 0).all()
    torch.testing.assert_close(codes[out.items], out.codes)
    assert (out.log_probs[:, 1:] <= out.log_probs[:, :-1]).all()
    for user in range(N_USERS):
        torch.testing.assert_close(out.log_probs[user], item_log_probs(model, user, codes)[out.items[user]])


def test_sampling_top_k_one_is_greedy_and_seeded_sampling_repeats():
    codes, model = make_codes(), PrefixTableModel()
    trie, batch = PrefixTrie.from_codes(codes, K), make_batch(torch.arange(N_USERS))
    out = sample(model, batch, trie, 4, 1.5, 1, torch.Generator().manual_seed(0))
    for user in range(N_USERS):
        assert (out.codes[user] == greedy(model, user, codes)).all()
    first = sample(model, batch, trie, 8, 1.0, None, torch.Generator().manual_seed(3))
    second = sample(model, batch, trie, 8, 1.0, None, torch.Generator().manual_seed(3))
    assert torch.equal(first.items, second.items)
    with pytest.raises(ValueError):
        sample(model, batch, trie, 4, 0.0, None)


def test_sampling_frequencies_follow_constrained_tempered_probabilities():
    codes, model, temperature, n = make_codes(), PrefixTableModel(), 2.0, 20000
    trie = PrefixTrie.from_codes(codes, K)
    out = sample(
        model, make_batch(torch.tensor([0])), trie, n, temperature, None, torch.Generator().manual_seed(1)
    )
    # P(item) = Π_l softmax over the valid codes of logits / T; code c is valid after item i's l-prefix
    # iff some item j shares that prefix and has c at level l.
    expected = torch.ones(len(codes))
    for l in range(C):
        logits = model.logits_of(torch.zeros(len(codes), dtype=torch.long), codes[:, :l]) / temperature
        same_prefix = (codes[:, None, :l] == codes[None, :, :l]).all(-1)  # [I, I]
        valid = (same_prefix[:, :, None] & (codes[None, :, l, None] == torch.arange(K))).any(1)  # [I, K]
        expected *= logits.masked_fill(~valid, float("-inf")).softmax(-1).gather(1, codes[:, l : l + 1])[:, 0]
    freq = torch.bincount(out.items[0], minlength=len(codes)).float() / n
    torch.testing.assert_close(freq, expected, atol=0.015, rtol=0)
