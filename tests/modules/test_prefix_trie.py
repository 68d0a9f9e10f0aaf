import itertools

import pytest
import torch

from modules.prefix_trie import PrefixTrie

# K = 4, C = 3, items deliberately not in lexicographic order.
CODES = torch.tensor([[3, 0, 1], [0, 1, 2], [3, 0, 0], [0, 2, 0], [0, 1, 3]])
K = 4


def test_children_tables_by_hand():
    trie = PrefixTrie.from_codes(CODES, K)
    # depth-1 nodes: (0) (3); depth-2: (0,1) (0,2) (3,0); leaves: (0,1,2) (0,1,3) (0,2,0) (3,0,0) (3,0,1)
    assert trie.n_nodes == [1, 2, 3, 5]
    torch.testing.assert_close(trie.children[0].long(), torch.tensor([[0, -1, -1, 1]]))
    torch.testing.assert_close(trie.children[1].long(), torch.tensor([[-1, 0, 1, -1], [2, -1, -1, -1]]))
    expected = torch.tensor([[-1, -1, 0, 1], [2, -1, -1, -1], [3, 4, -1, -1]])
    torch.testing.assert_close(trie.children[2].long(), expected)
    torch.testing.assert_close(trie.leaf_item, torch.tensor([1, 4, 3, 2, 0]))
    assert trie.children[0].dtype == torch.int32


def test_valid_mask_and_advance_by_hand():
    trie = PrefixTrie.from_codes(CODES, K)
    nodes = torch.tensor([0, 1, -1])  # depth 1: prefix (0), prefix (3), dead row
    expected = torch.tensor([[0, 1, 1, 0], [1, 0, 0, 0], [0, 0, 0, 0]], dtype=torch.bool)
    torch.testing.assert_close(trie.valid_mask(1, nodes), expected)
    # (0)+2 -> (0,2) = node 1; (3)+1 invalid; dead stays dead; code outside [0, K) is invalid
    assert trie.advance(1, torch.tensor([0, 1, -1, 0]), torch.tensor([2, 1, 0, 7])).tolist() == [
        1,
        -1,
        -1,
        -1,
    ]


def test_item_of_roundtrip_and_non_items():
    trie = PrefixTrie.from_codes(CODES, K)
    torch.testing.assert_close(trie.item_of(CODES), torch.arange(5))
    assert trie.item_of(torch.tensor([[0, 1, 0], [1, 0, 0], [3, 0, -1]])).tolist() == [-1, -1, -1]


def test_valid_mask_equals_brute_force_on_random_codes():
    n_codes, k = 3, 5
    all_tuples = torch.tensor(list(itertools.product(range(k), repeat=n_codes)))
    codes = all_tuples[torch.randperm(len(all_tuples))[:40]]
    trie = PrefixTrie.from_codes(codes, k)
    for level in range(n_codes):
        prefixes = torch.unique(codes[:, :level], dim=0) if level else codes[:1, :0]
        nodes = torch.zeros(len(prefixes), dtype=torch.long)
        for l in range(level):  # walk each prefix down to its node
            nodes = trie.advance(l, nodes, prefixes[:, l])
        assert (nodes >= 0).all()
        # brute force: code c is valid after prefix p iff some item starts with p + (c,)
        starts = (codes[None, :, :level] == prefixes[:, None, :]).all(-1)  # [P, I]
        brute = torch.zeros(len(prefixes), k, dtype=torch.bool)
        for c in range(k):
            brute[:, c] = (starts & (codes[None, :, level] == c)).any(-1)
        torch.testing.assert_close(trie.valid_mask(level, nodes), brute)
    torch.testing.assert_close(trie.item_of(codes), torch.arange(len(codes)))


def test_duplicate_tuple_raises():
    codes = torch.cat([CODES, CODES[2:3]])
    with pytest.raises(ValueError, match="repeat"):
        PrefixTrie.from_codes(codes, K)


def test_codes_out_of_range_raise():
    with pytest.raises(ValueError):
        PrefixTrie.from_codes(CODES, 3)


def test_a_trie_over_some_items_keeps_their_item_indices():
    codes = torch.tensor([[0, 1], [1, 0], [1, 1], [2, 2]])
    items = torch.tensor([3, 1])
    trie = PrefixTrie.from_codes(codes, 3, items)
    assert sorted(trie.leaf_item.tolist()) == [1, 3]
    assert trie.valid_mask(0, torch.tensor([0])).tolist() == [[False, True, True]]  # codes 1 and 2 start
    node = trie.advance(0, torch.tensor([0]), torch.tensor([1]))
    assert trie.valid_mask(1, node).tolist() == [[True, False, False]]  # only (1, 0): item 1
