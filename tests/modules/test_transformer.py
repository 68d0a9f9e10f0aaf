import pytest
import torch
import torch.nn.functional as F
from einops import rearrange
from torch.testing import assert_close

from modules.transformer import (
    BlockConfig,
    CrossAttention,
    Decoder,
    Encoder,
    EncoderLayer,
    FeedForward,
    RMSNorm,
    SelfAttention,
    grow_cache,
    make_norm,
)
from ops.attention import naive_attention
from ops.jagged import length_groups

D, H = 16, 2
CFG = BlockConfig(dim=D, n_heads=H, head_dim=8, ffn_dim=32)


def _mha_reference(attn, x_q, x_kv, q_weight, kv_weight, key_mask=None, causal=False):
    """Multi-head attention written out: out = W_o · concat_h softmax(Q_h K_hᵀ/√Dh + M) V_h."""
    q = rearrange(x_q @ q_weight.T, "... s (h d) -> ... h s d", h=H)
    k, v = rearrange(x_kv @ kv_weight.T, "... s (two h d) -> two ... h s d", two=2, h=H)
    out = naive_attention(q, k, v, key_mask=key_mask, causal=causal)
    return rearrange(out, "... h s d -> ... s (h d)") @ attn.out.weight.T


def _split_qkv(attn):
    w = attn.qkv.weight
    return w[: w.shape[0] // 3], w[w.shape[0] // 3 :]


def _rows(lengths):
    return [torch.randn(n, D) for n in lengths]


def _packed(rows):
    groups = length_groups(torch.tensor([len(r) for r in rows]))
    return torch.cat([rows[i] for i in groups.order.tolist()]), groups


def test_rms_norm_fast_path_matches_functional_forward_backward():
    norm = RMSNorm(D, eps=1e-6)
    with torch.no_grad():
        norm.weight.copy_(1 + 0.1 * torch.randn(D))
    x = torch.randn(3, 5, D, requires_grad=True)
    fast = norm(x)
    ref = F.rms_norm(x, (D,), norm.weight, 1e-6)
    assert_close(fast, ref)
    upstream = torch.randn_like(ref)
    for a, b in zip(
        torch.autograd.grad(fast, (x, norm.weight), upstream),
        torch.autograd.grad(ref, (x, norm.weight), upstream),
    ):
        assert_close(a, b)


def test_make_norm_kinds():
    assert isinstance(make_norm("rms", D), RMSNorm)
    layer = make_norm("layer", D)
    assert isinstance(layer, torch.nn.LayerNorm) and layer.bias is None
    with pytest.raises(ValueError):
        make_norm("batch", D)


@pytest.mark.parametrize("activation", ["silu", "gelu"])
def test_feed_forward_formula(activation):
    ffn = FeedForward(CFG._replace(activation=activation))
    x = torch.randn(4, D)
    act = F.silu if activation == "silu" else F.gelu
    assert_close(ffn(x), act(x @ ffn.up.weight.T) @ ffn.down.weight.T)


def test_grouped_self_attention_equals_per_row_mha():
    attn = SelfAttention(CFG)
    rows = _rows([3, 1, 3, 5])
    x, groups = _packed(rows)
    out = attn.forward_grouped(x, groups)
    q_w, kv_w = _split_qkv(attn)
    expected = torch.cat([_mha_reference(attn, rows[i], rows[i], q_w, kv_w) for i in groups.order.tolist()])
    assert_close(out, expected)


def test_causal_self_attention_and_cached_steps():
    attn = SelfAttention(CFG)
    x = torch.randn(3, 4, D)
    q_w, kv_w = _split_qkv(attn)
    full = attn.forward_causal(x)
    assert_close(full, _mha_reference(attn, x, x, q_w, kv_w, causal=True))
    k = v = torch.zeros(1, 3, H, 0, 8)  # layer-major [L, R, H, t, Dh], one layer
    for t in range(4):
        k, v = grow_cache(k), grow_cache(v)
        out = attn.forward_step(x[:, t], k[0], v[0])
        assert k.shape == (1, 3, H, t + 1, 8)
        assert_close(out, full[:, t])


def test_cross_attention_grouped_and_step_equal_per_row_mha():
    attn = CrossAttention(CFG)
    rows = _rows([2, 4, 2])
    enc, groups = _packed(rows)
    k, v = rearrange(attn.kv(enc), "t (two h d) -> two t h d", two=2, h=H)
    queries = torch.randn(3, 4, D)  # [B, C, D], original row order
    out = attn.forward_grouped(queries[groups.order], k, v, groups)  # rows in groups' order
    expected = torch.stack(
        [_mha_reference(attn, queries[i], rows[i], attn.q.weight, attn.kv.weight) for i in range(3)]
    )
    assert_close(out, expected[groups.order])
    # step: rows user-major in original order, G = 4 rows per user sharing one memory copy
    step = attn.forward_step(rearrange(queries, "b g d -> (b g) d"), k, v, groups)
    assert_close(step, rearrange(expected, "b g d -> (b g) d"))


@pytest.mark.parametrize("norm_first", [True, False])
def test_encoder_layer_residual_wiring(norm_first):
    layer = EncoderLayer(CFG._replace(norm_first=norm_first)).eval()
    x, groups = _packed(_rows([2, 3]))
    attn = layer.attn.forward_grouped
    if norm_first:
        h = x + attn(layer.attn_norm(x), groups)
        expected = h + layer.ffn(layer.ffn_norm(h))
    else:
        h = layer.attn_norm(x + attn(x, groups))
        expected = layer.ffn_norm(h + layer.ffn(h))
    assert_close(layer(x, groups), expected)


def test_encoder_packed_equals_each_row_alone():
    encoder = Encoder(2, CFG._replace(norm="layer")).eval()
    rows = _rows([3, 1, 4, 3])
    x, groups = _packed(rows)
    out = encoder(x, groups)
    alone = [encoder(r, length_groups(torch.tensor([len(r)]))) for r in rows]
    assert_close(out, torch.cat([alone[i] for i in groups.order.tolist()]))
    assert encoder.norm is not None  # final norm after the stack


@pytest.mark.parametrize("norm_first", [True, False])
def test_decoder_cached_steps_equal_teacher_forcing(norm_first):
    cfg = CFG._replace(norm_first=norm_first, head_dim=6)  # H·Dh = 12 ≠ D
    decoder = Decoder(2, cfg).eval()
    rows = _rows([2, 5, 2])
    enc, groups = _packed(rows)
    x = torch.randn(3, 4, D)
    full = decoder(x, decoder.memory(enc), groups)
    x_users = x[groups.inverse]  # step rows are users in original order
    k = v = torch.zeros(2, 3, H, 0, 6)  # [L, R, H, t, Dh]
    for t in range(4):
        out, k, v = decoder.step(x_users[:, t], k, v, decoder.memory(enc), groups)
        assert k.shape == (2, 3, H, t + 1, 6)
        assert_close(out, full[groups.inverse, t])


def test_decoder_memory_is_each_layers_kv_projection():
    decoder = Decoder(2, CFG)
    enc = torch.randn(7, D)
    memory = decoder.memory(enc)
    for i, layer in enumerate(decoder.layers):
        k, v = rearrange(layer.cross_attn.kv(enc), "t (two h d) -> two t h d", two=2, h=H)
        assert_close(memory[:, i, 0], k)
        assert_close(memory[:, i, 1], v)


def test_dropout_config_reaches_every_block():
    encoder = Encoder(1, CFG._replace(dropout=0.5, attn_dropout=0.5)).train()
    x, groups = _packed(_rows([3, 3]))
    assert not torch.equal(encoder(x, groups), encoder(x, groups))
    encoder.eval()
    assert torch.equal(encoder(x, groups), encoder(x, groups))
    layer = encoder.layers[0]
    assert layer.drop.p == 0.5 and layer.ffn.drop.p == 0.5 and layer.attn.attn_dropout == 0.5
