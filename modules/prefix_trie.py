"""Valid semantic-ID prefixes as dense per-level transition tables, for constrained decoding.

Nodes at depth l are the distinct l-code prefixes of the catalogue, numbered in lexicographic order
(depth 0 holds only the root, node 0). `children[l][node, code]` is the depth-(l+1) node reached by
appending `code`, or -1 when no item starts with that prefix. Depth-C nodes are whole items.

Memory: Σ_{l<C} P_l · K · 4 bytes (int32 tables; P_l = number of distinct l-code prefixes, P_0 = 1).
Beauty (I = 12,101, C = 4, K = 256): P_l ≤ 1 + 256 + 2·I → ≤ 25 MB. For ~90k items this is ≤ 190 MB,
still fine; a much larger catalogue would want a CSR layout (sorted codes + searchsorted) instead.
"""

from __future__ import annotations

import torch


def _unique_prefixes(codes: torch.Tensor, depth: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Distinct `depth`-code prefixes (lexicographic) and the node of every item.

    codes: [I, C] int64. Returns (prefixes [P, depth], node_of_item [I] int64).
    """
    if depth == 0:
        return codes[:1, :0], torch.zeros(codes.shape[0], dtype=torch.long, device=codes.device)
    prefixes, node_of_item = torch.unique(codes[:, :depth], dim=0, return_inverse=True)
    return prefixes, node_of_item


class PrefixTrie:
    """Per-level transition tables over the catalogue's code tuples.

    children: C tensors, children[l]: [P_l, K] int32, depth-(l+1) node or -1.
    leaf_item: [P_C] int64, the item index of each depth-C node (P_C = I).
    """

    def __init__(self, children: list[torch.Tensor], leaf_item: torch.Tensor, codebook_size: int):
        assert all(table.shape[1] == codebook_size for table in children), "children tables must be [P_l, K]"
        self.children = children
        self.leaf_item = leaf_item
        self.codebook_size = codebook_size

    @property
    def n_codes(self) -> int:
        """C, the number of codes per item."""
        return len(self.children)

    @property
    def n_nodes(self) -> list[int]:
        """[P_0, ..., P_C]: number of distinct prefixes at each depth."""
        return [table.shape[0] for table in self.children] + [self.leaf_item.shape[0]]

    @classmethod
    def from_codes(
        cls, codes: torch.Tensor, codebook_size: int, items: torch.Tensor | None = None
    ) -> PrefixTrie:
        """Build from codes [I, C] int64 in [0, K). Raises if two items share a C-tuple. items: [I'] int64,
        build over those rows only (leaves keep their item index: e.g. the warm items of a cold-start run)."""
        if items is not None:
            trie = cls.from_codes(codes[items], codebook_size)
            return cls(trie.children, items.to(trie.leaf_item.device)[trie.leaf_item], codebook_size)
        assert codes.ndim == 2 and codes.shape[0] > 0, f"codes must be [I, C] with I > 0, got {codes.shape}"
        codes = codes.long()
        if int(codes.min()) < 0 or int(codes.max()) >= codebook_size:
            raise ValueError(f"codes must lie in [0, {codebook_size})")
        n_items, n_codes = codes.shape
        leaves, leaf_of_item = _unique_prefixes(codes, n_codes)
        if leaves.shape[0] != n_items:
            counts = torch.bincount(leaf_of_item, minlength=leaves.shape[0])
            dup = leaves[int(counts.argmax())].tolist()
            raise ValueError(f"{n_items - leaves.shape[0]} items repeat another item's codes, e.g. {dup}")
        children = []
        parent_prefixes, parent_of_item = _unique_prefixes(codes, 0)
        for level in range(n_codes):
            child_prefixes, child_of_item = _unique_prefixes(codes, level + 1)
            table = torch.full(
                (parent_prefixes.shape[0], codebook_size), -1, dtype=torch.int32, device=codes.device
            )
            table[parent_of_item, codes[:, level]] = child_of_item.to(
                torch.int32
            )  # repeats write equal values
            children.append(table)
            parent_prefixes, parent_of_item = child_prefixes, child_of_item
        leaf_item = torch.empty(n_items, dtype=torch.long, device=codes.device)
        leaf_item[leaf_of_item] = torch.arange(n_items, device=codes.device)
        return cls(children, leaf_item, codebook_size)

    def to(self, device: torch.device | str) -> PrefixTrie:
        """A copy with every table on `device`."""
        children = [table.to(device) for table in self.children]
        return PrefixTrie(children, self.leaf_item.to(device), self.codebook_size)

    def valid_mask(self, level: int, nodes: torch.Tensor) -> torch.Tensor:
        """nodes: [R] int64 at depth `level`, -1 for a dead row -> [R, K] bool, True where the code extends
        the prefix towards some item (all False for dead rows)."""
        table = self.children[level]
        alive = nodes >= 0
        mask = table[nodes.clamp(min=0)] >= 0  # [R, K]
        return mask & alive.unsqueeze(1)

    def advance(self, level: int, nodes: torch.Tensor, codes: torch.Tensor) -> torch.Tensor:
        """nodes: [R] int64 at depth `level`; codes: [R] int64 -> [R] int64 depth-(level+1) nodes, -1 where
        the node is dead, the code is outside [0, K) or no item has the extended prefix."""
        table = self.children[level]
        ok = (nodes >= 0) & (codes >= 0) & (codes < self.codebook_size)
        child = table[nodes.clamp(min=0), codes.clamp(0, self.codebook_size - 1)].long()  # [R]
        return torch.where(ok, child, torch.full_like(child, -1))

    def items_of_nodes(self, nodes: torch.Tensor) -> torch.Tensor:
        """nodes: [...] int64 at depth C, -1 for dead -> [...] item indices, -1 for dead."""
        items = self.leaf_item[nodes.clamp(min=0)]
        return torch.where(nodes >= 0, items, torch.full_like(items, -1))

    def item_of(self, codes: torch.Tensor) -> torch.Tensor:
        """codes: [R, C] int64 -> [R] int64 item index, -1 where the tuple is not an item."""
        assert codes.ndim == 2 and codes.shape[1] == self.n_codes, f"expected [R, {self.n_codes}]"
        nodes = torch.zeros(codes.shape[0], dtype=torch.long, device=codes.device)
        for level in range(self.n_codes):
            nodes = self.advance(level, nodes, codes[:, level])
        return self.items_of_nodes(nodes)
