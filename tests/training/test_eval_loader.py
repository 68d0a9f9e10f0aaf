"""training.retriever.eval_loader: seeded user samples, length-sorted trimmed batches, same metrics."""

import itertools

import gin
import pytest
import torch
from torch.utils.data import DataLoader

from data.processed import SeqData
from data.synthetic import load_synthetic
from evaluate.retrieval import evaluate_retrieval
from modules.decoder_only import DecoderOnlyModel
from modules.model import RetrievalModel
from modules.prefix_trie import PrefixTrie
from training.retriever import eval_loader

K, C, N = 8, 3, 6  # codebook size, codes per item, history items kept
DATASET = load_synthetic(n_items=60, n_users=80, min_len=3, max_len=12)


@pytest.fixture(autouse=True)
def _max_items():
    gin.bind_parameter("SeqData.max_items", N)


def item_codes() -> torch.Tensor:
    """[I, C] distinct code tuples for the synthetic shop's items."""
    tuples = torch.tensor(list(itertools.product(range(K), repeat=C)))
    return tuples[torch.randperm(len(tuples), generator=torch.Generator().manual_seed(3))[:60]]


def models() -> dict[str, torch.nn.Module]:
    torch.manual_seed(0)
    small = dict(embed_dim=12, d_model=16, n_heads=2, ffn_dim=32, dropout=0.0, max_items=N, user_buckets=5)
    return {
        "encoder_decoder": RetrievalModel(K, C, n_encoder_layers=1, n_decoder_layers=1, **small).eval(),
        "decoder_only": DecoderOnlyModel(K, C, head_dim=8, n_layers=2, **small).eval(),
    }


def test_each_process_sees_its_share_shortest_first_and_batches_are_trimmed():
    split = SeqData(DATASET, split="test")
    seen = []
    for rank in range(2):
        loader = eval_loader(DATASET, "test", 7, 50, rank=rank, world=2, seed=4)
        batches = list(loader)
        lengths = torch.cat([b.lengths for b in batches])
        assert torch.equal(lengths, lengths.sort().values)  # shortest history first
        assert all(b.items.shape[1] == int(b.lengths.max()) for b in batches)  # no column of padding only
        seen += [int(u) for b in batches for u in b.user_ids]
    sampled = eval_loader(DATASET, "test", 7, 50, seed=4)
    assert sorted(seen) == sorted(int(u) for b in sampled for u in b.user_ids)  # the shards cover the sample
    assert len(set(seen)) == 50 and max(split.history_lengths()) == N  # some histories fill max_items


@pytest.mark.parametrize("name", ["encoder_decoder", "decoder_only"])
def test_sorted_trimmed_batches_give_the_metrics_of_split_order_padded_batches(name):
    model, codes = models()[name], item_codes()
    trie = PrefixTrie.from_codes(codes, K)
    split = SeqData(DATASET, split="valid")
    plain = DataLoader(split, batch_size=16, shuffle=False, collate_fn=split.collate)  # split order, [B, N]
    expected = evaluate_retrieval(model, plain, codes, trie, beam_width=10, disable_progress=True)
    sorted_trimmed = eval_loader(DATASET, "valid", 16, None)
    assert evaluate_retrieval(model, sorted_trimmed, codes, trie, beam_width=10, disable_progress=True) == (
        pytest.approx(expected, rel=1e-6)
    )
    assert expected["eval/recall@10"] > 0  # the comparison covers hits, not only misses
