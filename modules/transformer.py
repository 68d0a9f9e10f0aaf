"""Encoder and decoder stacks on length-grouped jagged batches, with a KV cache for incremental decoding.

Encoder: packed tokens `[ΣS, D]` (rows sorted by length, ops/jagged.py `LengthGroups`); norms, projections and
the feed-forward run on the packed tokens, bidirectional self-attention runs per equal-length block.
Decoder: dense `[B, T, D]` (every row has the same T = C positions, in the encoder's sorted row order); causal
self-attention, cross-attention to the encoder tokens of the same row, feed-forward.
Each block is pre-norm (default) or post-norm; each stack ends with a final norm. No biases.

Incremental decoding (`Decoder.step`): one new position per row; the self-attention K/V of earlier positions
and the cross-attention K/V of the encoder output are explicit tensors passed in and returned. The
self-attention cache is layer-major, `[L, R, H, t, Dh]`: each step makes one grown copy (`grow_cache`) whose
last position every layer fills in place, where a concatenation per layer and a stack over the layers made
two copies.
"""

from typing import NamedTuple

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from ops.attention import attention, grouped_attention, grouped_self_attention
from ops.dropout import dropout
from ops.jagged import LengthGroups
from ops.norm import rms_norm

ACTIVATIONS = {"silu": F.silu, "gelu": F.gelu}


def grow_cache(cache: torch.Tensor) -> torch.Tensor:
    """Layer-major K or V cache [L, R, H, t, Dh] -> a new [L, R, H, t+1, Dh] holding `cache` in its first t
    positions; the last one is unset, for the layers' `forward_step` to fill in place."""
    grown = cache.new_empty(cache.shape[:3] + (cache.shape[3] + 1,) + cache.shape[4:])
    grown[..., :-1, :] = cache
    return grown


class BlockConfig(NamedTuple):
    """Sizes and options shared by every block. dim: D; n_heads: H; head_dim: Dh (H·Dh need not equal D);
    ffn_dim: feed-forward width; activation: "silu" | "gelu"; norm: "rms" | "layer"; norm_first: pre-norm;
    dropout: residual and feed-forward dropout; attn_dropout: dropout on attention weights."""

    dim: int
    n_heads: int
    head_dim: int
    ffn_dim: int
    activation: str = "silu"
    norm: str = "rms"
    norm_first: bool = True
    dropout: float = 0.0
    attn_dropout: float = 0.0


class RMSNorm(nn.RMSNorm):
    """nn.RMSNorm (same parameters and state_dict); the fast path ops.norm.rms_norm for floating inputs of the
    weight's dtype, F.rms_norm otherwise. Bound to F.rms_norm by tests/modules/test_transformer.py."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dtype != self.weight.dtype:
            return super().forward(x)
        return rms_norm(x, self.weight, self.eps)


def make_norm(kind: str, dim: int) -> nn.Module:
    """Norm by name: "rms" -> RMSNorm, "layer" -> LayerNorm without bias; eps 1e-6."""
    if kind == "rms":
        return RMSNorm(dim, eps=1e-6)
    if kind == "layer":
        return nn.LayerNorm(dim, eps=1e-6, bias=False)
    raise ValueError(f"unknown norm {kind!r}: expected 'rms' or 'layer'")


class Dropout(nn.Dropout):
    """nn.Dropout with the CPU fast path of ops.dropout.dropout."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return dropout(x, self.p, self.training)


class FeedForward(nn.Module):
    """x -> down(dropout(act(up(x)))); [*, D] -> [*, D]."""

    def __init__(self, cfg: BlockConfig):
        super().__init__()
        if cfg.activation not in ACTIVATIONS:
            raise ValueError(f"unknown activation {cfg.activation!r}: expected one of {sorted(ACTIVATIONS)}")
        self.act = ACTIVATIONS[cfg.activation]
        self.up = nn.Linear(cfg.dim, cfg.ffn_dim, bias=False)
        self.down = nn.Linear(cfg.ffn_dim, cfg.dim, bias=False)
        self.drop = Dropout(cfg.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down(self.drop(self.act(self.up(x))))


class SelfAttention(nn.Module):
    """Multi-head self-attention: fused qkv projection [D -> 3·H·Dh], output projection [H·Dh -> D]."""

    def __init__(self, cfg: BlockConfig):
        super().__init__()
        self.n_heads, self.attn_dropout = cfg.n_heads, cfg.attn_dropout
        self.qkv = nn.Linear(cfg.dim, 3 * cfg.n_heads * cfg.head_dim, bias=False)
        self.out = nn.Linear(cfg.n_heads * cfg.head_dim, cfg.dim, bias=False)

    def _p(self) -> float:
        return self.attn_dropout if self.training else 0.0

    def _qkv(self, x: torch.Tensor) -> torch.Tensor:
        """[*, D] -> [3, *, H, Dh]."""
        return rearrange(self.qkv(x), "... (three h d) -> three ... h d", three=3, h=self.n_heads)

    def forward_grouped(self, x: torch.Tensor, groups: LengthGroups) -> torch.Tensor:
        """Bidirectional within each row. x: [ΣS, D] packed, sorted by length -> [ΣS, D]."""
        qkv = rearrange(self.qkv(x), "t (three h d) -> t three h d", three=3, h=self.n_heads)
        out = grouped_self_attention(qkv, groups.rows, groups.sizes, self._p())  # [ΣS, H, Dh]
        return self.out(rearrange(out, "t h d -> t (h d)"))

    def forward_causal(self, x: torch.Tensor) -> torch.Tensor:
        """Causal. x: [B, T, D] -> [B, T, D]."""
        q, k, v = (rearrange(t, "b s h d -> b h s d") for t in self._qkv(x))
        out = attention(q, k, v, causal=True, dropout_p=self._p())  # [B, H, T, Dh]
        return self.out(rearrange(out, "b h s d -> b s (h d)"))

    def forward_step(self, x: torch.Tensor, cache_k: torch.Tensor, cache_v: torch.Tensor) -> torch.Tensor:
        """One new position per row. x: [R, D]; cache_k, cache_v: [R, H, t+1, Dh], the K/V of the t earlier
        positions followed by a slot this call fills (in place) with the new position's -> out [R, D]."""
        q, k, v = self._qkv(x)  # [R, H, Dh] each
        cache_k[:, :, -1] = k
        cache_v[:, :, -1] = v
        q = rearrange(q, "r h d -> r h 1 d")
        out = attention(q, cache_k, cache_v, dropout_p=self._p())  # [R, H, 1, Dh]; every key is earlier
        return self.out(rearrange(out, "r h 1 d -> r (h d)"))


class CrossAttention(nn.Module):
    """Decoder positions attend to the encoder tokens of their own row. q: [D -> H·Dh], kv: [D -> 2·H·Dh]."""

    def __init__(self, cfg: BlockConfig):
        super().__init__()
        self.n_heads, self.attn_dropout = cfg.n_heads, cfg.attn_dropout
        self.q = nn.Linear(cfg.dim, cfg.n_heads * cfg.head_dim, bias=False)
        self.kv = nn.Linear(cfg.dim, 2 * cfg.n_heads * cfg.head_dim, bias=False)
        self.out = nn.Linear(cfg.n_heads * cfg.head_dim, cfg.dim, bias=False)

    def _p(self) -> float:
        return self.attn_dropout if self.training else 0.0

    def forward_grouped(self, x: torch.Tensor, k: torch.Tensor, v: torch.Tensor, groups: LengthGroups):
        """x: [B, Tq, D] rows in groups' order; k, v: [ΣS, H, Dh] packed encoder memory -> [B, Tq, D]."""
        batch, n_queries, _ = x.shape
        q = rearrange(self.q(x), "b s (h d) -> (b s) h d", h=self.n_heads)
        q_sizes = (n_queries,) * len(groups.rows)
        out = grouped_attention(q, k, v, groups.rows, q_sizes, groups.sizes, self._p())
        return self.out(rearrange(out, "(b s) h d -> b s (h d)", b=batch))

    def forward_step(self, x: torch.Tensor, k: torch.Tensor, v: torch.Tensor, groups: LengthGroups):
        """x: [R, D], R = B·G rows, user-major (row r belongs to memory row r // G, original order);
        k, v: [ΣS, H, Dh] packed memory of the B rows in groups' order -> [R, D].
        The G rows of a memory row attend to one shared copy of it (no per-row K/V)."""
        x = rearrange(x, "(b g) d -> b g d", b=len(groups.order))[groups.order]  # [B, G, D], sorted
        out = self.forward_grouped(x, k, v, groups)[groups.inverse]  # [B, G, D], original order
        return rearrange(out, "b g d -> (b g) d")


class _Block(nn.Module):
    """Residual wiring: pre-norm `x + drop(f(norm(x)))` or post-norm `norm(x + drop(f(x)))`."""

    def __init__(self, cfg: BlockConfig):
        super().__init__()
        self.norm_first = cfg.norm_first
        self.drop = Dropout(cfg.dropout)

    def _in(self, x: torch.Tensor, norm: nn.Module) -> torch.Tensor:
        return norm(x) if self.norm_first else x

    def _out(self, x: torch.Tensor, y: torch.Tensor, norm: nn.Module) -> torch.Tensor:
        return x + self.drop(y) if self.norm_first else norm(x + self.drop(y))


class EncoderLayer(_Block):
    def __init__(self, cfg: BlockConfig):
        super().__init__(cfg)
        self.attn, self.ffn = SelfAttention(cfg), FeedForward(cfg)
        self.attn_norm, self.ffn_norm = make_norm(cfg.norm, cfg.dim), make_norm(cfg.norm, cfg.dim)

    def forward(self, x: torch.Tensor, groups: LengthGroups) -> torch.Tensor:
        """x: [ΣS, D] packed, sorted by length -> [ΣS, D]."""
        x = self._out(x, self.attn.forward_grouped(self._in(x, self.attn_norm), groups), self.attn_norm)
        return self._out(x, self.ffn(self._in(x, self.ffn_norm)), self.ffn_norm)


class DecoderLayer(_Block):
    def __init__(self, cfg: BlockConfig):
        super().__init__(cfg)
        self.self_attn, self.cross_attn, self.ffn = SelfAttention(cfg), CrossAttention(cfg), FeedForward(cfg)
        self.self_norm, self.cross_norm, self.ffn_norm = (make_norm(cfg.norm, cfg.dim) for _ in range(3))

    def forward(self, x: torch.Tensor, memory: tuple[torch.Tensor, torch.Tensor], groups: LengthGroups):
        """x: [B, T, D] rows in groups' order; memory: (k, v), each [ΣS, H, Dh] -> [B, T, D]."""
        x = self._out(x, self.self_attn.forward_causal(self._in(x, self.self_norm)), self.self_norm)
        y = self.cross_attn.forward_grouped(self._in(x, self.cross_norm), *memory, groups)
        x = self._out(x, y, self.cross_norm)
        return self._out(x, self.ffn(self._in(x, self.ffn_norm)), self.ffn_norm)

    def step(self, x, cache_k, cache_v, memory, groups: LengthGroups) -> torch.Tensor:
        """x: [R, D] user-major; cache_k/v: [R, H, t+1, Dh] (SelfAttention.forward_step fills the last
        position); memory: (k, v) [ΣS, H, Dh] -> x [R, D]."""
        y = self.self_attn.forward_step(self._in(x, self.self_norm), cache_k, cache_v)
        x = self._out(x, y, self.self_norm)
        y = self.cross_attn.forward_step(self._in(x, self.cross_norm), *memory, groups)
        x = self._out(x, y, self.cross_norm)
        return self._out(x, self.ffn(self._in(x, self.ffn_norm)), self.ffn_norm)


class Encoder(nn.Module):
    """n_layers EncoderLayers + final norm. [ΣS, D] packed -> [ΣS, D]."""

    def __init__(self, n_layers: int, cfg: BlockConfig):
        super().__init__()
        self.layers = nn.ModuleList(EncoderLayer(cfg) for _ in range(n_layers))
        self.norm = make_norm(cfg.norm, cfg.dim)

    def forward(self, x: torch.Tensor, groups: LengthGroups) -> torch.Tensor:
        for layer in self.layers:
            x = layer(x, groups)
        return self.norm(x)


class Decoder(nn.Module):
    """n_layers DecoderLayers + final norm."""

    def __init__(self, n_layers: int, cfg: BlockConfig):
        super().__init__()
        self.layers = nn.ModuleList(DecoderLayer(cfg) for _ in range(n_layers))
        self.norm = make_norm(cfg.norm, cfg.dim)

    def memory(self, enc: torch.Tensor) -> torch.Tensor:
        """enc: [ΣS, D] encoder output -> cross-attention K/V of every layer, [ΣS, L, 2, H, Dh] (one GEMM with
        the layers' kv weights stacked); computed once per batch."""
        weight = torch.cat([layer.cross_attn.kv.weight for layer in self.layers])  # [L·2·H·Dh, D]
        n_layers, n_heads = len(self.layers), self.layers[0].cross_attn.n_heads
        return rearrange(F.linear(enc, weight), "t (l two h d) -> t l two h d", l=n_layers, two=2, h=n_heads)

    @staticmethod
    def _per_layer(memory: torch.Tensor) -> list[tuple[torch.Tensor, ...]]:
        """[ΣS, L, 2, H, Dh] -> per layer (k, v) views [ΣS, H, Dh]. unbind, not indexing: its backward is one
        stack into the GEMM's layout, not a zero-filled full-size gradient per view."""
        return [kv.unbind(1) for kv in memory.unbind(1)]

    def forward(self, x: torch.Tensor, memory: torch.Tensor, groups: LengthGroups) -> torch.Tensor:
        """Teacher-forced. x: [B, T, D] rows in groups' order; memory: [ΣS, L, 2, H, Dh] -> [B, T, D]."""
        for layer, kv in zip(self.layers, self._per_layer(memory)):
            x = layer(x, kv, groups)
        return self.norm(x)

    def step(self, x, past_k, past_v, memory: torch.Tensor, groups: LengthGroups):
        """x: [R, D] user-major; past_k/v: [L, R, H, t, Dh] (layer-major: a layer's slice is contiguous);
        memory: [ΣS, L, 2, H, Dh] -> (out [R, D], k [L, R, H, t+1, Dh], v [L, R, H, t+1, Dh])."""
        cache_k, cache_v = grow_cache(past_k), grow_cache(past_v)
        for i, (layer, kv) in enumerate(zip(self.layers, self._per_layer(memory))):
            # indexing, not unbind: unbind's views may not be filled in place under autograd
            x = layer.step(x, cache_k[i], cache_v[i], kv, groups)
        return self.norm(x), cache_k, cache_v
