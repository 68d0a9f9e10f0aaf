"""SASRec (Kang & McAuley, ICDM 2018): a causal Transformer over item ids, TIGER's reference baseline.

Each row is one user's item sequence, right-aligned in a window of T = max_len positions (padding first, the
newest item at position T-1); position t predicts the item at t+1. Training reads every target of a user in
one pass (causal attention); scoring reads the last position. Padding never reaches a valid position: a
query attends to the valid keys at or before it, and a padded query to itself only (no empty softmax).
Logits are dot products with the (tied) item embeddings.

Losses (`loss`): "bce", the paper's — log σ(s⁺) + log(1 − σ(s⁻)) with one uniformly sampled negative item
per position; "ce", full softmax cross-entropy over all I items.
"""

import gin
import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from modules.transformer import Dropout
from ops.dropout import dropout


def trim_padding(items: torch.Tensor, *others: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """Drops the leading columns that are padding (-1) in every row of `items` (and the same columns of
    `others`); right-aligned rows keep every item, and SasRec.hidden gives the kept columns the same
    positions. One host sync."""
    first = int((items >= 0).any(0).int().argmax()) if items.numel() else 0
    return tuple(t[:, first:] for t in (items, *others))


def attention_mask(valid: torch.Tensor) -> torch.Tensor:
    """valid: [B, T] bool -> [B, 1, T, T] bool, True = may attend: key s ≤ query t and s valid, or s == t."""
    t = valid.shape[1]
    causal = torch.ones(t, t, dtype=torch.bool, device=valid.device).tril()
    eye = torch.eye(t, dtype=torch.bool, device=valid.device)
    return ((causal & valid[:, None, :]) | eye)[:, None]


class Block(nn.Module):
    """Pre-norm block: x + attn(norm(x)), then x + ffn(norm(x)) (GELU), dropout on both branches."""

    def __init__(self, d: int, n_heads: int, p: float):
        super().__init__()
        self.n_heads, self.p = n_heads, p
        self.norm1, self.norm2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.qkv, self.out = nn.Linear(d, 3 * d), nn.Linear(d, d)
        self.ffn = nn.Sequential(nn.Linear(d, d), nn.GELU(), Dropout(p), nn.Linear(d, d))

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """x: [B, T, D]; mask: [B, 1, T, T] bool (attention_mask) -> [B, T, D]."""
        qkv = rearrange(self.qkv(self.norm1(x)), "b t (three h e) -> three b h t e", three=3, h=self.n_heads)
        p = self.p if self.training else 0.0
        h = F.scaled_dot_product_attention(qkv[0], qkv[1], qkv[2], attn_mask=mask, dropout_p=p)
        x = x + dropout(self.out(rearrange(h, "b h t e -> b t (h e)")), p, self.training)
        return x + dropout(self.ffn(self.norm2(x)), p, self.training)


@gin.configurable(denylist=["n_items"])
class SasRec(nn.Module):
    """n_items I (from the dataset); defaults: the SASRec paper's Beauty settings (d 50, 2 blocks, 1 head,
    dropout 0.5, T = 50, BCE with one negative). init_std: item and position embeddings start N(0, init_std²);
    torch's N(0, 1) makes the tied logits ≈ √d large and training stalls (Beauty, full-softmax CE, 600 steps:
    valid R@10 0.0147 with N(0, 1) against 0.0575 with init_std 0.05, measured 2026-12-02)."""

    def __init__(self, n_items: int, d_model: int = 50, n_layers: int = 2, n_heads: int = 1,
                 dropout: float = 0.5, max_len: int = 50, loss: str = "bce",
                 init_std: float = 0.05) -> None:  # fmt: skip
        super().__init__()
        if loss not in ("bce", "ce"):
            raise ValueError(f'SasRec.loss must be "bce" or "ce", got {loss!r}')
        self.n_items, self.max_len, self.loss_kind = n_items, max_len, loss
        self.item_embedding = nn.Embedding(n_items + 1, d_model, padding_idx=n_items)  # row I = padding
        self.position_embedding = nn.Embedding(max_len, d_model)
        self.drop = Dropout(dropout)
        self.blocks = nn.ModuleList(Block(d_model, n_heads, dropout) for _ in range(n_layers))
        self.norm = nn.LayerNorm(d_model)
        for table in (self.item_embedding, self.position_embedding):
            nn.init.normal_(table.weight, std=init_std)
        with torch.no_grad():
            self.item_embedding.weight[n_items].zero_()  # the padding row

    def hidden(self, items: torch.Tensor) -> torch.Tensor:
        """items: [B, T] int64 right-aligned, -1 = padding, T ≤ max_len -> [B, T, D] (padded positions
        zeroed). Column t has position max_len - T + t: a window cut to its last T columns (trim_padding)
        gives the same outputs there."""
        valid = items >= 0
        x = (
            self.item_embedding(items.masked_fill(~valid, self.n_items))
            * self.item_embedding.embedding_dim**0.5
        )
        x = self.drop(x + self.position_embedding.weight[self.max_len - items.shape[1] :]) * valid.unsqueeze(
            -1
        )
        mask = attention_mask(valid)
        for block in self.blocks:
            x = block(x, mask) * valid.unsqueeze(-1)
        return self.norm(x)

    def loss(self, items: torch.Tensor, targets: torch.Tensor, generator: torch.Generator | None = None):
        """items, targets: [B, T] (-1 = none) -> [] mean loss over the positions with a target."""
        items, targets = trim_padding(items, targets)
        h = self.hidden(items)[targets >= 0]  # [P, D]
        pos = targets[targets >= 0]  # [P]
        if self.loss_kind == "ce":
            return F.cross_entropy(h @ self.item_embedding.weight[: self.n_items].T, pos)
        neg = torch.randint(0, self.n_items, pos.shape, generator=generator, device=pos.device)
        s_pos = (h * self.item_embedding(pos)).sum(-1)
        s_neg = (h * self.item_embedding(neg)).sum(-1)
        return F.softplus(-s_pos).mean() + F.softplus(s_neg).mean()  # -log σ(s⁺) - log(1 - σ(s⁻))

    def scores(self, items: torch.Tensor) -> torch.Tensor:
        """items: [B, T] right-aligned histories -> [B, I] score of every item as the next one."""
        return self.hidden(*trim_padding(items))[:, -1] @ self.item_embedding.weight[: self.n_items].T
