"""evaluate/exact.py: prefix-shared exact scoring == one teacher-forced forward per item; beam == exact."""

import itertools

import pytest
import torch
from torch.testing import assert_close

from evaluate.exact import (
    exact_scores,
    exact_scores_reference,
    extend_scores,
    items_from_leaves,
    topk_overlap,
    trie_links,
)
from modules.decoder_only import DecoderOnlyModel
from modules.generation import beam_search, topk_lowest_index
from modules.model import RetrievalModel
from modules.prefix_trie import PrefixTrie
from modules.tokens import TokenBatch

K, C, N = 4, 3, 5


def tiny_model(seed: int = 0) -> RetrievalModel:
    torch.manual_seed(seed)
    model = RetrievalModel(
        codebook_size=K, n_codes=C, embed_dim=16, d_model=16, n_heads=2, n_encoder_layers=1,
        n_decoder_layers=1, ffn_dim=32, dropout=0.0, max_items=N, user_buckets=4,
    )  # fmt: skip
    return model.eval()


def tiny_decoder_only(seed: int = 0) -> DecoderOnlyModel:
    torch.manual_seed(seed)
    model = DecoderOnlyModel(
        codebook_size=K, n_codes=C, embed_dim=16, d_model=16, n_heads=2, head_dim=8, n_layers=2,
        ffn_dim=32, dropout=0.0, max_items=N, user_buckets=4, every_target=False,
    )  # fmt: skip
    return model.eval()


ARCHITECTURES = {"encoder_decoder": tiny_model, "decoder_only": tiny_decoder_only}


def catalogue(n_items: int, seed: int = 1) -> torch.Tensor:
    """[I, C] distinct code tuples drawn from K^C: many share prefixes."""
    tuples = torch.tensor(list(itertools.product(range(K), repeat=C)))
    return tuples[torch.randperm(len(tuples), generator=torch.Generator().manual_seed(seed))[:n_items]]


def histories(codes: torch.Tensor, lengths: list[int], seed: int = 2) -> TokenBatch:
    """Rows of random catalogue items, left-aligned, -1 padded to N; target unknown (-1)."""
    gen = torch.Generator().manual_seed(seed)
    items = torch.randint(len(codes), (len(lengths), N), generator=gen)
    valid = torch.arange(N) < torch.tensor(lengths).unsqueeze(1)  # [B, N]
    history = torch.where(valid.unsqueeze(-1), codes[items], torch.full_like(codes[items], -1))
    n_rows = len(lengths)
    return TokenBatch(history, torch.tensor(lengths), torch.arange(n_rows) + 7, torch.full((n_rows, C), -1))


def test_trie_links_invert_the_children_tables():
    codes = catalogue(30)
    trie = PrefixTrie.from_codes(codes, K)
    for level in range(C):
        parent, code = trie_links(trie, level)
        assert_close(trie.children[level][parent, code].long(), torch.arange(trie.n_nodes[level + 1]))


def test_extend_scores_is_parent_score_plus_code_log_prob():
    scores = torch.tensor([[0.0, -1.0]])  # [B=1, P=2]
    log_probs = torch.tensor([[[-0.1, -0.2, -0.3], [-1.5, -2.5, -3.5]]])  # [1, 2, K=3]
    parent, code = torch.tensor([0, 1, 1]), torch.tensor([2, 0, 1])
    assert_close(extend_scores(scores, log_probs, parent, code), torch.tensor([[-0.3, -2.5, -3.5]]))


def test_items_from_leaves_puts_each_leaf_at_its_item():
    out = items_from_leaves(torch.tensor([[1.0, 2.0, 3.0]]), torch.tensor([2, 0, 1]))
    assert_close(out, torch.tensor([[2.0, 3.0, 1.0]]))


def test_topk_overlap_counts_shared_items_and_ignores_padding():
    a = torch.tensor([[1, 2, 3, -1], [4, 5, 6, 7]])
    b = torch.tensor([[3, 1, -1, 9], [7, 6, 5, 4]])
    assert_close(topk_overlap(a, b), torch.tensor([0.5, 1.0]))


@pytest.mark.parametrize("architecture", sorted(ARCHITECTURES))
@pytest.mark.parametrize("chunk", [1, 3, 4096])
def test_exact_scores_equal_one_teacher_forced_forward_per_item(chunk, architecture):
    model, codes = ARCHITECTURES[architecture](), catalogue(30)
    batch = histories(codes, [1, 3, 5])
    exact = exact_scores(model, batch, PrefixTrie.from_codes(codes, K), chunk=chunk)  # [B, I]
    brute = exact_scores_reference(model, batch, codes)
    assert exact.shape == (3, 30)
    assert_close(exact, brute, atol=1e-5, rtol=1e-5)
    assert torch.equal(exact.argsort(dim=1, descending=True), brute.argsort(dim=1, descending=True))


def test_exact_scores_feed_at_most_users_times_chunk_rows_per_decoder_call():
    """The walk is depth first in chunks: no decoder call sees a whole level of a big catalogue."""
    model, codes = tiny_model(), catalogue(K**C)  # 4 + 16 + 64 nodes below the root
    batch, fed = histories(codes, [2, 4, 5]), []
    step = model.step

    def counting_step(state, codes_):
        logits, state = step(state, codes_)
        fed.append(logits.shape[0])
        return logits, state

    model.step = counting_step
    exact = exact_scores(model, batch, PrefixTrie.from_codes(codes, K), chunk=2)
    assert max(fed) == 3 * 2 and len(fed) == 1 + 2 + 8  # root, 4 depth-1 nodes by 2, 16 depth-2 by 2
    assert_close(exact, exact_scores_reference(tiny_model(), batch, codes), atol=1e-5, rtol=1e-5)


def test_exact_probabilities_sum_to_one_over_the_full_code_space():
    """With every K^C tuple an item, Σ_i p(i) = Π_l Σ_c p(c | prefix) = 1; a sub-catalogue gets < 1."""
    model, full = tiny_model(), catalogue(K**C)
    batch = histories(full, [2, 4])
    total = exact_scores(model, batch, PrefixTrie.from_codes(full, K)).logsumexp(dim=1)
    assert_close(total, torch.zeros(2), atol=1e-5, rtol=0)
    part = exact_scores(model, batch, PrefixTrie.from_codes(full[:20], K)).logsumexp(dim=1)
    assert bool((part < 0).all())


def test_beam_as_wide_as_the_catalogue_returns_the_exact_ranking():
    model, codes = tiny_model(seed=5), catalogue(30)
    batch, trie = histories(codes, [2, 5, 1, 4]), PrefixTrie.from_codes(codes, K)
    exact = exact_scores(model, batch, trie)
    beam = beam_search(model, batch, trie, beam_width=len(codes))
    assert torch.equal(beam.items, topk_lowest_index(exact, len(codes)))  # every item, in exact order
    assert_close(beam.log_probs, exact.gather(1, beam.items), atol=1e-5, rtol=1e-5)
    narrow = beam_search(model, batch, trie, beam_width=10)  # its scores are still exact scores
    assert_close(narrow.log_probs, exact.gather(1, narrow.items), atol=1e-5, rtol=1e-5)
