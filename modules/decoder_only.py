"""Decoder-only TIGER variant: one causal Transformer over a user's concatenated semantic-ID tokens.

Tokens per row: [user token] + C tokens per item, oldest item first; an item token is
`codes(token_id(l, c)) + level(l) + item_position(j)` with j = 0 for the oldest item of the row (positions
count from the oldest: every prefix of a row then looks as it does at inference). The hidden state at token
(item j, level l) predicts the next token, level l + 1 of item j or level 0 of item j + 1, with head[level].

Training (`forward`): the row is the history followed by the target item. With `every_target` the loss covers
the C tokens of every item after the first (all targets of a window in one pass, as in SASRec), otherwise
only the target item's (the encoder-decoder's objective). loss_per_level[l] is the mean cross-entropy of the
level-l predictions and loss = Σ_l, ≈ C·ln K at initialisation, as in modules/model.py.

Decoding follows the protocol of modules/generation.py: `start` runs the history once and keeps every
layer's K/V per user; each `step` feeds one code and attends to the user's cached history plus its own
row's codes (ops/prefix_attention.py), so the W beams of a user share one copy of the history.
Pre-norm blocks only.
"""

from typing import NamedTuple

import gin
import torch
import torch.nn.functional as F
from einops import einsum, rearrange, repeat
from torch import nn

from modules.embedding import SemIdEmbedder, UserIdEmbedder
from modules.generation import check_step, user_major_groups
from modules.model import InputProjection, ModelOutput
from modules.tokens import TokenBatch
from modules.transformer import BlockConfig, Dropout, FeedForward, SelfAttention, grow_cache, make_norm
from ops.attention import attention
from ops.prefix_attention import prefix_attention


class DecoderOnlyState(NamedTuple):
    """prefix_k, prefix_v: [L, B, H, S, Dh] every layer's K/V of each user's history tokens;
    prefix_valid: [B, S] bool; own_k, own_v: [L, R, H, t', Dh] K/V of the codes each row has fed.
    Layer-major, so a layer's slice is contiguous: attention reads it in place, with no copy per call;
    last: [B, D] final hidden state at each user's last history token (it predicts level 0);
    position: [B] int64 item position of the item being generated; row_user: [R] int64 user of each row;
    level: the level the next `step` predicts."""

    prefix_k: torch.Tensor
    prefix_v: torch.Tensor
    prefix_valid: torch.Tensor
    own_k: torch.Tensor
    own_v: torch.Tensor
    last: torch.Tensor
    position: torch.Tensor
    row_user: torch.Tensor
    level: int


class CausalLayer(nn.Module):
    """Pre-norm block: x + drop(attn(norm(x))), then x + drop(ffn(norm(x)))."""

    def __init__(self, cfg: BlockConfig):
        super().__init__()
        self.attn, self.ffn = SelfAttention(cfg), FeedForward(cfg)
        self.attn_norm, self.ffn_norm = make_norm(cfg.norm, cfg.dim), make_norm(cfg.norm, cfg.dim)
        self.drop = Dropout(cfg.dropout)

    def _finish(self, x: torch.Tensor, heads: torch.Tensor) -> torch.Tensor:
        """x: [*, D], heads: [*, H, Dh] attention output -> block output [*, D]."""
        x = x + self.drop(self.attn.out(rearrange(heads, "... h d -> ... (h d)")))
        return x + self.drop(self.ffn(self.ffn_norm(x)))

    def forward(self, x: torch.Tensor, valid: torch.Tensor):
        """x: [B, S, D], valid: [B, S] bool -> (x [B, S, D], k [B, H, S, Dh], v [B, H, S, Dh])."""
        q, k, v = (rearrange(t, "b s h d -> b h s d") for t in self.attn._qkv(self.attn_norm(x)))
        out = attention(q, k, v, key_mask=valid, causal=True, dropout_p=self.attn._p())  # [B, H, S, Dh]
        return self._finish(x, rearrange(out, "b h s d -> b s h d")), k, v

    def step(self, x, prefix_k, prefix_v, prefix_valid, own_k, own_v):
        """x: [B, G, D] (G rows per prefix row); prefix_*: [B, H, S, Dh], [B, S]; own_k/v: [B, G, H, t+1, Dh]
        whose last position this layer fills with its own K/V (in place) -> x [B, G, D]."""
        q, k, v = self.attn._qkv(self.attn_norm(x))  # [B, G, H, Dh] each
        own_k[..., -1, :] = k
        own_v[..., -1, :] = v
        out = prefix_attention(q, prefix_k, prefix_v, prefix_valid, own_k, own_v)  # [B, G, H, Dh]
        return self._finish(x, out)


def append_target(batch: TokenBatch) -> tuple[torch.Tensor, torch.Tensor]:
    """-> (items [B, N+1, C]: the history with the target written after its last item, -1 elsewhere;
    n_items [B] = lengths + 1)."""
    padding = torch.full_like(batch.history[:, :1], -1)
    items = torch.cat([batch.history, padding], dim=1)  # [B, N+1, C]
    rows = torch.arange(items.shape[0], device=items.device)
    items[rows, batch.lengths] = batch.target
    return items, batch.lengths + 1


@gin.configurable(denylist=["codebook_size", "n_codes", "max_items"])
class DecoderOnlyModel(nn.Module):
    """Causal Transformer over semantic IDs; K and C come from the semantic-ID artifact.

    Sizes as RetrievalModel (n_layers causal blocks instead of an encoder and a decoder); max_items: history
    items N ≤ max_items (the position table covers N + 1, the target included); every_target: see above.
    Defaults: the paper's sizes (d_model 128, 6 heads × 64, FFN 1024, dropout 0.1) with 8 layers.
    """

    def __init__(
        self,
        codebook_size: int,
        n_codes: int,
        embed_dim: int = 128,
        d_model: int = 128,
        n_heads: int = 6,
        head_dim: int | None = 64,
        n_layers: int = 8,
        ffn_dim: int = 1024,
        dropout: float = 0.1,
        attn_dropout: float = 0.0,
        activation: str = "silu",
        norm: str = "rms",
        max_items: int = 20,
        user_buckets: int = 2000,
        every_target: bool = True,
        label_smoothing: float = 0.0,
    ):
        super().__init__()
        if not 0.0 <= label_smoothing < 1.0:
            raise ValueError(f"DecoderOnlyModel.label_smoothing must be in [0, 1), got {label_smoothing}")
        self.codebook_size, self.n_codes, self.max_items = codebook_size, n_codes, max_items
        self.every_target, self.label_smoothing = every_target, label_smoothing
        head_dim = d_model // n_heads if head_dim is None else head_dim
        cfg = BlockConfig(d_model, n_heads, head_dim, ffn_dim, activation, norm, True, dropout, attn_dropout)
        self.code_embedding = SemIdEmbedder(n_codes, codebook_size, embed_dim)
        self.level_embedding = nn.Embedding(n_codes, embed_dim)
        self.position_embedding = nn.Embedding(max_items + 1, embed_dim)
        self.user_embedding = UserIdEmbedder(user_buckets, embed_dim) if user_buckets > 0 else None
        self.input_projection = InputProjection(norm, embed_dim, d_model, dropout)
        self.layers = nn.ModuleList(CausalLayer(cfg) for _ in range(n_layers))
        self.norm = make_norm(norm, d_model)
        self.head = nn.Parameter(torch.randn(n_codes, codebook_size, d_model) * 0.02)  # [C, K, D]

    @property
    def n_user_tokens(self) -> int:
        return int(self.user_embedding is not None)

    def _item_tokens(self, level, code, position) -> torch.Tensor:
        """level, code, position: [*] int64 (code -1 = padding) -> [*, E]."""
        return (
            self.code_embedding(level, code) + self.level_embedding(level) + self.position_embedding(position)
        )

    def _embed(self, items: torch.Tensor, n_items: torch.Tensor, user_ids: torch.Tensor):
        """items [B, M, C] (-1 padded), n_items [B] -> (x [B, S, E], valid [B, S]); S = u + M·C."""
        batch, n_slots, n_codes = items.shape
        if n_codes != self.n_codes or n_slots > self.max_items + 1:
            raise ValueError(
                f"items {tuple(items.shape)}: need C = {self.n_codes}, at most {self.max_items + 1} items"
            )
        level = repeat(torch.arange(n_codes, device=items.device), "c -> b (m c)", b=batch, m=n_slots)
        position = repeat(torch.arange(n_slots, device=items.device), "m -> b (m c)", b=batch, c=n_codes)
        x = self._item_tokens(level, rearrange(items, "b m c -> b (m c)"), position)  # [B, M·C, E]
        valid = position < n_items.unsqueeze(1)  # [B, M·C]
        if self.user_embedding is not None:
            x = torch.cat([self.user_embedding(user_ids).unsqueeze(1), x], dim=1)
            valid = torch.cat([valid.new_ones(batch, 1), valid], dim=1)
        return x, valid

    def _run(self, x: torch.Tensor, valid: torch.Tensor):
        """x [B, S, E] -> (hidden [B, S, D] after the final norm, k and v [L, B, H, S, Dh])."""
        h, ks, vs = self.input_projection(x), [], []
        for layer in self.layers:
            h, k, v = layer(h, valid)
            ks, vs = ks + [k], vs + [v]
        return self.norm(h), torch.stack(ks), torch.stack(vs)

    def _loss_mask(self, items: torch.Tensor, n_items: torch.Tensor) -> torch.Tensor:
        """-> [B, M-1] bool: which of items 1..M-1 are predicted (every valid one, or only the target)."""
        index = torch.arange(1, items.shape[1], device=items.device)  # [M-1]
        if self.every_target:
            return index < n_items.unsqueeze(1)
        return index == (n_items - 1).unsqueeze(1)

    def targets_per_row(self, lengths: torch.Tensor) -> torch.Tensor:
        """History lengths [X] -> [X] float: the items each training row's loss covers (see every_target)."""
        return lengths.float() if self.every_target else torch.ones_like(lengths, dtype=torch.float32)

    def forward(self, batch: TokenBatch) -> ModelOutput:
        """Teacher-forced. batch.history [B, N, C] (-1 padded), lengths [B] ≥ 1, user_ids [B],
        target [B, C]."""
        items, n_items = append_target(batch)  # [B, M = N+1, C]
        x, valid = self._embed(items, n_items, batch.user_ids)
        hidden, _, _ = self._run(x, valid)
        start = self.n_user_tokens + self.n_codes - 1  # the slot predicting item 1, level 0
        predictors = rearrange(hidden[:, start : start + (items.shape[1] - 1) * self.n_codes],
                               "b (m c) d -> b m c d", c=self.n_codes)  # fmt: skip
        logits = einsum(predictors, self.head, "b m c d, c k d -> b m c k").float()  # [B, M-1, C, K]
        targets = items[:, 1:]  # [B, M-1, C]
        given = self._loss_mask(items, n_items).unsqueeze(-1) & (targets >= 0)  # [B, M-1, C]
        ce = F.cross_entropy(
            rearrange(logits, "b m c k -> b k m c"),
            targets.masked_fill(~given, -1),
            ignore_index=-1,
            reduction="none",
            label_smoothing=self.label_smoothing,
        )  # [B, M-1, C]
        counts = given.float().sum((0, 1))
        loss_per_level = ce.sum((0, 1)) / counts.clamp(min=1.0)  # [C]; ce is 0 where not given
        rows = torch.arange(items.shape[0], device=items.device)
        return ModelOutput(loss_per_level.sum(), loss_per_level, logits[rows, n_items - 2])

    def start(self, batch: TokenBatch) -> DecoderOnlyState:
        """Run the B histories once; keep every layer's K/V per user."""
        x, valid = self._embed(batch.history, batch.lengths, batch.user_ids)
        hidden, k, v = self._run(x, valid)
        rows = torch.arange(x.shape[0], device=x.device)
        last = hidden[rows, self.n_user_tokens + batch.lengths * self.n_codes - 1]  # [B, D]
        empty = k.new_zeros(k.shape[:3] + (0,) + k.shape[4:])  # [L, B, H, 0, Dh]
        return DecoderOnlyState(k, v, valid, empty, empty, last, batch.lengths, rows, 0)

    def step(self, state: DecoderOnlyState, codes: torch.Tensor | None):
        """Feed the code chosen at level t-1 (None at t = 0) -> (logits [R, K] of level t, state)."""
        t = state.level
        check_step(t, self.n_codes, codes)
        if codes is None:
            logits = (state.last[state.row_user] @ self.head[0].T).float()
            return logits, state._replace(level=1)
        level = torch.full_like(codes, t - 1)
        x = self.input_projection(self._item_tokens(level, codes, state.position[state.row_user]))  # [R, D]
        prefix_k, prefix_v, prefix_valid = state.prefix_k, state.prefix_v, state.prefix_valid
        groups = user_major_groups(state.row_user, state.last.shape[0])
        if groups is None:  # any other row layout: a per-row copy of the prefix
            prefix_k, prefix_v = prefix_k[:, state.row_user], prefix_v[:, state.row_user]
            prefix_valid, groups = prefix_valid[state.row_user], 1
        own_k, own_v = grow_cache(state.own_k), grow_cache(state.own_v)  # [L, R, H, t+1, Dh]
        split = "(b g) ... -> b g ..."
        h = rearrange(x, split, g=groups)
        for i, layer in enumerate(self.layers):
            own = (rearrange(o[i], split, g=groups) for o in (own_k, own_v))  # views [B, G, H, t+1, Dh]
            h = layer.step(h, prefix_k[i], prefix_v[i], prefix_valid, *own)
        h = rearrange(self.norm(h), "b g d -> (b g) d")
        logits = (h @ self.head[t].T).float()  # [R, K]
        return logits, state._replace(own_k=own_k, own_v=own_v, level=t + 1)

    @staticmethod
    def reorder(state: DecoderOnlyState, index: torch.Tensor) -> DecoderOnlyState:
        """index: [R'] int64 rows of `state` to keep (repeats allowed) -> state with R' rows."""
        return state._replace(
            own_k=state.own_k.index_select(1, index),
            own_v=state.own_v.index_select(1, index),
            row_user=state.row_user.index_select(0, index),
        )
