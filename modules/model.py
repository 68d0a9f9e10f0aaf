"""TIGER retrieval model: a jagged encoder over the history's semantic-ID tokens and a C-step decoder.

Encoder tokens per row: [user token] + C tokens per history item. A history token is
`code_embedding(token_id(l, c)) + position_embedding(newest = 0) + level_embedding(l)`; the user token is
`user_embedding(hash(user_id))`.
Decoder positions t = 0..C-1: BOS, then the codes of levels 0..C-2 (teacher forcing), each plus
`target_level_embedding(t)`; position t predicts the code of level t with its own head, `head[t]: [K, D]`
(row c of head[t] is token token_id(t, c, K); untied from the input embeddings, which are E-wide).
Both inputs go through norm -> dropout -> Linear(E -> D) (the reference's hard-coded 0.5 input dropout is
replaced by the configured `dropout`).

Internally rows are sorted by history length (ops/jagged.py LengthGroups: no padding anywhere, attention per
equal-length block); outputs come back in the batch's order.

Loss: cross-entropy per level, averaged over the rows whose target is given (target -1 is ignored);
`loss_per_level [C]` holds those means and `loss = loss_per_level.sum()`, i.e. the mean over the batch of the
sum over levels (≈ C·ln K at initialisation), as in the reference.
"""

from typing import NamedTuple

import gin
import torch
import torch.nn.functional as F
from einops import einsum, rearrange
from torch import nn

from modules.embedding import SemIdEmbedder, UserIdEmbedder, history_grid
from modules.generation import check_step, user_major_groups
from modules.tokens import TokenBatch
from modules.transformer import BlockConfig, Decoder, Dropout, Encoder, make_norm
from ops.jagged import LengthGroups, length_groups, pack


class ModelOutput(NamedTuple):
    """loss: [] Σ_l loss_per_level; loss_per_level: [C] mean CE per level; logits: [B, C, K] float32."""

    loss: torch.Tensor
    loss_per_level: torch.Tensor
    logits: torch.Tensor


class DecodeState(NamedTuple):
    """Incremental-decoding state (see `RetrievalModel.start/step/reorder`).

    memory: [ΣS, L, 2, H, Dh] cross-attention K/V of every decoder layer over the packed encoder tokens, one
    copy per user (users sorted by length, `groups`); groups: LengthGroups of the B users (tensors and ints);
    self_k, self_v: [L, R, H, t, Dh] decoder self-attention cache of the t positions fed so far;
    row_user: [R] int64, the user (original batch row) of each decoding row.
    """

    memory: torch.Tensor
    groups: LengthGroups
    self_k: torch.Tensor
    self_v: torch.Tensor
    row_user: torch.Tensor

    @property
    def level(self) -> int:
        """The level the next `step` predicts (= decoder positions already fed)."""
        return self.self_k.shape[3]


# Checkpoints written before 2026-12-02 named the embedding tables after their data; they still load.
OLD_NAMES = {
    "codes.": "code_embedding.",
    "item_position.": "position_embedding.",
    "level.": "level_embedding.",
    "user.": "user_embedding.",
    "target_level.": "target_level_embedding.",
}


def upgrade_old_names(module: nn.Module, state_dict: dict, prefix: str, *_) -> None:
    """load_state_dict pre-hook: renames OLD_NAMES keys under `prefix` in place."""
    for key in list(state_dict):
        for old, new in OLD_NAMES.items():
            if key.startswith(prefix + old):
                state_dict[prefix + new + key[len(prefix + old) :]] = state_dict.pop(key)


class InputProjection(nn.Module):
    """[*, E] -> norm -> dropout -> Linear(E -> D) -> [*, D]. The output keeps the input's dtype, so under
    autocast the residual stream stays float32 (only the matmuls run in bf16)."""

    def __init__(self, norm: str, embed_dim: int, d_model: int, dropout: float):
        super().__init__()
        self.norm, self.drop = make_norm(norm, embed_dim), Dropout(dropout)
        self.proj = nn.Linear(embed_dim, d_model, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(self.drop(self.norm(x))).to(x.dtype)


@gin.configurable(denylist=["codebook_size", "n_codes", "max_items"])
class RetrievalModel(nn.Module):
    """Encoder-decoder over semantic IDs. codebook_size K and n_codes C come from the semantic-ID artifact.

    head_dim: per-head width Dh (None -> d_model // n_heads). user_buckets: hashed user-id buckets, 0 = no
    user token. max_items: history items the position table covers (N ≤ max_items). label_smoothing: ε of
    the per-level cross-entropy (target 1 − ε + ε/K, others ε/K; 0 = plain CE). Defaults: reference
    config (embed 128 -> d_model 512, 8 heads, 4+4 layers, FFN 1024, dropout 0.15, no attention dropout).
    """

    def __init__(
        self,
        codebook_size: int,
        n_codes: int,
        embed_dim: int = 128,
        d_model: int = 512,
        n_heads: int = 8,
        head_dim: int | None = None,
        n_encoder_layers: int = 4,
        n_decoder_layers: int = 4,
        ffn_dim: int = 1024,
        dropout: float = 0.15,
        attn_dropout: float = 0.0,
        activation: str = "silu",
        norm: str = "rms",
        norm_first: bool = True,
        max_items: int = 20,
        user_buckets: int = 2000,
        label_smoothing: float = 0.0,
    ):
        super().__init__()
        self.codebook_size, self.n_codes, self.max_items = codebook_size, n_codes, max_items
        if not 0.0 <= label_smoothing < 1.0:
            raise ValueError(f"RetrievalModel.label_smoothing must be in [0, 1), got {label_smoothing}")
        self.label_smoothing = label_smoothing
        head_dim = d_model // n_heads if head_dim is None else head_dim
        cfg = BlockConfig(
            d_model, n_heads, head_dim, ffn_dim, activation, norm, norm_first, dropout, attn_dropout
        )
        self.code_embedding = SemIdEmbedder(n_codes, codebook_size, embed_dim)
        self.position_embedding = nn.Embedding(max_items, embed_dim)
        self.level_embedding = nn.Embedding(n_codes, embed_dim)
        self.user_embedding = UserIdEmbedder(user_buckets, embed_dim) if user_buckets > 0 else None
        self.bos = nn.Parameter(torch.randn(embed_dim))
        self.target_level_embedding = nn.Embedding(n_codes, embed_dim)
        self.encoder_input = InputProjection(norm, embed_dim, d_model, dropout)
        self.decoder_input = InputProjection(norm, embed_dim, d_model, dropout)
        self.encoder = Encoder(n_encoder_layers, cfg)
        self.decoder = Decoder(n_decoder_layers, cfg)
        self.head = nn.Parameter(torch.randn(n_codes, codebook_size, d_model) * 0.02)  # [C, K, D]
        self.register_load_state_dict_pre_hook(upgrade_old_names)

    def _check(self, batch: TokenBatch) -> None:
        _, n_items, n_codes = batch.history.shape
        if n_codes != self.n_codes or n_items > self.max_items:
            raise ValueError(
                f"history {tuple(batch.history.shape)}: need C = {self.n_codes}, N ≤ {self.max_items}"
            )

    def _encode(self, batch: TokenBatch) -> tuple[torch.Tensor, LengthGroups]:
        """-> (encoder output [ΣS, D] packed, rows sorted by length; groups). Host syncs, once per batch: the
        token lengths (LengthGroups) and the packing mask (a no-op on CPU)."""
        self._check(batch)
        grid = history_grid(batch.history, batch.lengths, user_token=self.user_embedding is not None)
        groups = length_groups(grid.lengths)
        fields = torch.stack([grid.code, grid.level, grid.position], dim=-1)[groups.order]  # [B, S, 3]
        code, level, position = pack(fields, groups.lengths).unbind(-1)  # [ΣS] each
        x = self.code_embedding(level, code) + self.level_embedding(level) + self.position_embedding(position)
        if self.user_embedding is not None:  # the user token is the first token of each row
            x = x.index_copy(0, groups.offsets[:-1], self.user_embedding(batch.user_ids[groups.order]))
        return self.encoder(self.encoder_input(x), groups), groups

    def _decoder_tokens(self, target: torch.Tensor) -> torch.Tensor:
        """target: [B, C] codes -> decoder input [B, C, E]: BOS, codes of levels 0..C-2, plus
        target_level_embedding."""
        levels = torch.arange(self.n_codes - 1, device=target.device)
        prev = self.code_embedding(levels, target[:, :-1])  # [B, C-1, E]
        bos = self.bos.expand(target.shape[0], 1, -1)  # [B, 1, E]
        return torch.cat([bos, prev], dim=1) + self.target_level_embedding.weight

    def targets_per_row(self, lengths: torch.Tensor) -> torch.Tensor:
        """History lengths [X] -> [X] float: the items each training row's loss covers (one, the target)."""
        return torch.ones_like(lengths, dtype=torch.float32)

    def forward(self, batch: TokenBatch) -> ModelOutput:
        """Teacher-forced. batch.history [B, N, C] (-1 padded), lengths [B], user_ids [B], target [B, C]."""
        enc, groups = self._encode(batch)
        target = batch.target[groups.order]  # [B, C], sorted like the encoder rows
        x = self.decoder_input(self._decoder_tokens(target))  # [B, C, D]
        h = self.decoder(x, self.decoder.memory(enc), groups)  # [B, C, D]
        logits = einsum(h, self.head, "b c d, c k d -> b c k").float()
        ce = F.cross_entropy(
            rearrange(logits, "b c k -> b k c"),
            target,
            ignore_index=-1,
            reduction="none",
            label_smoothing=self.label_smoothing,
        )
        given = (target >= 0).float()  # [B, C]
        loss_per_level = (ce * given).sum(0) / given.sum(0).clamp(min=1.0)  # [C]
        return ModelOutput(loss_per_level.sum(), loss_per_level, logits[groups.inverse])

    def start(self, batch: TokenBatch) -> DecodeState:
        """Run the encoder once for B rows; precompute every decoder layer's cross-attention K/V per user."""
        enc, groups = self._encode(batch)
        memory = self.decoder.memory(enc)  # [ΣS, L, 2, H, Dh]
        _, n_layers, _, n_heads, head_dim = memory.shape
        empty = memory.new_zeros(n_layers, len(groups.order), n_heads, 0, head_dim)
        row_user = torch.arange(len(groups.order), device=memory.device)
        return DecodeState(memory, groups, empty, empty, row_user)

    def step(self, state: DecodeState, codes: torch.Tensor | None) -> tuple[torch.Tensor, DecodeState]:
        """Feed the code chosen at level t-1 (None at t = 0: BOS) -> (logits [R, K] of level t, state)."""
        t = state.level
        check_step(t, self.n_codes, codes)
        n_rows = state.row_user.shape[0]
        x = self.bos.expand(n_rows, -1) if codes is None else self.code_embedding(t - 1, codes)  # [R, E]
        x = self.decoder_input(x + self.target_level_embedding.weight[t])  # [R, D]
        h, self_k, self_v = self.decoder.step(x, state.self_k, state.self_v, *self._memory_for_rows(state))
        logits = (h @ self.head[t].T).float()  # [R, K]
        return logits, state._replace(self_k=self_k, self_v=self_v)

    @staticmethod
    def _memory_for_rows(state: DecodeState) -> tuple[torch.Tensor, LengthGroups]:
        """Cross-attention memory for the decoding rows. User-major rows (row r belongs to user r // G: the
        beam-search layout) share the per-user memory as is; any other layout gets a per-row copy. One small
        host sync tells the two apart."""
        if user_major_groups(state.row_user, len(state.groups.order)) is not None:
            return state.memory, state.groups
        slot = state.groups.inverse[state.row_user]  # [R] sorted slot of each row's user
        row_groups = length_groups(state.groups.lengths[slot])
        starts = state.groups.offsets[slot[row_groups.order]]  # [R] first token of each (sorted) row's user
        offsets = torch.arange(row_groups.max_len, device=starts.device)
        token = pack(starts.unsqueeze(1) + offsets, row_groups.lengths)  # [T_rows] into the packed memory
        return state.memory[token], row_groups

    @staticmethod
    def reorder(state: DecodeState, index: torch.Tensor) -> DecodeState:
        """index: [R'] int64 rows of `state` to keep (repeats allowed) -> state with R' rows."""
        return state._replace(
            self_k=state.self_k.index_select(1, index),
            self_v=state.self_v.index_select(1, index),
            row_user=state.row_user.index_select(0, index),
        )
