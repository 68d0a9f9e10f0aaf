import gin
import pytest
import torch
from einops import rearrange
from torch.testing import assert_close

from modules.embedding import hash_user_ids, history_grid
from modules.model import DecodeState, RetrievalModel
from modules.tokens import TokenBatch
from ops.attention import naive_attention
from ops.jagged import valid_mask

K, C, N = 8, 4, 5
TINY = dict(
    embed_dim=12, d_model=16, n_heads=2, n_encoder_layers=2, n_decoder_layers=2, ffn_dim=32, max_items=N
)


def _model(**overrides) -> RetrievalModel:
    return RetrievalModel(K, C, **{**TINY, "user_buckets": 7, **overrides}).eval()


def _batch(lengths=(1, 3, 5, 2, 3)) -> TokenBatch:
    lengths = torch.tensor(lengths)
    history = torch.randint(0, K, (len(lengths), N, C))
    history[~valid_mask(lengths, N)] = -1
    return TokenBatch(
        history, lengths, torch.arange(len(lengths)) * 13 + 2, torch.randint(0, K, (len(lengths), C))
    )


@pytest.mark.parametrize("user_buckets", [7, 0])
def test_cached_decoding_equals_teacher_forcing(user_buckets, decode_all):
    model, batch = _model(user_buckets=user_buckets), _batch()
    assert (model.user_embedding is None) == (user_buckets == 0)
    assert_close(decode_all(model, batch), model(batch).logits)


def test_loss_is_sum_over_levels_of_batch_mean_ce():
    model, batch = _model(), _batch()
    out = model(batch)
    log_p = out.logits.log_softmax(-1)  # [B, C, K]
    nll = -log_p.gather(-1, batch.target.unsqueeze(-1)).squeeze(-1)  # [B, C]
    assert_close(out.loss_per_level, nll.mean(0))
    assert_close(out.loss, nll.sum(1).mean())
    target = batch.target.clone()
    target[0] = -1  # an unknown target row is ignored
    partial = model(batch._replace(target=target))
    assert_close(partial.loss_per_level, nll[1:].mean(0), atol=1e-5, rtol=1e-5)


def test_label_smoothing_mixes_nll_with_the_mean_over_codes():
    eps = 0.1
    model, batch = _model(label_smoothing=eps), _batch()
    out = model(batch)
    log_p = out.logits.log_softmax(-1)  # [B, C, K]
    nll = -log_p.gather(-1, batch.target.unsqueeze(-1)).squeeze(-1)  # [B, C]
    smooth = (1 - eps) * nll - eps * log_p.mean(-1)  # target 1 - eps + eps/K, every code eps/K
    assert_close(out.loss_per_level, smooth.mean(0))
    with pytest.raises(ValueError, match="label_smoothing"):
        _model(label_smoothing=1.0)


def test_decoder_is_causal():
    model, batch = _model(), _batch()
    base = model(batch).logits
    for t in range(C - 1):
        target = batch.target.clone()
        target[:, t] = (target[:, t] + 1) % K
        changed = model(batch._replace(target=target)).logits
        assert_close(changed[:, : t + 1], base[:, : t + 1])  # logits ≤ t never see code t
        assert not torch.allclose(changed[:, t + 1 :], base[:, t + 1 :])


def test_padding_width_and_garbage_do_not_matter():
    model, batch = _model(max_items=N + 3), _batch()
    base = model(batch).logits
    wider = torch.cat([batch.history, torch.full((5, 3, C), -1)], dim=1)
    assert_close(model(batch._replace(history=wider)).logits, base)
    padding = ~valid_mask(batch.lengths, N)  # [B, N] padded item slots
    garbage = batch.history.clone()
    garbage[padding] = torch.randint(0, 10 * K, (int(padding.sum()), C))  # even out-of-range codes
    assert_close(model(batch._replace(history=garbage)).logits, base)


def _padded_encoder_reference(model, batch) -> tuple[torch.Tensor, torch.Tensor]:
    """The encoder on the padded grid [B, S, D], with a key-padding mask and naive attention."""
    grid = history_grid(batch.history, batch.lengths, user_token=True)
    x = model.code_embedding(grid.level, grid.code) + model.level_embedding(grid.level)
    x = x + model.position_embedding(grid.position)
    x[:, 0] = model.user_embedding(batch.user_ids)
    x = model.encoder_input(x)
    mask = valid_mask(grid.lengths, x.shape[1])
    for layer in model.encoder.layers:
        q, k, v = rearrange(
            layer.attn.qkv(layer.attn_norm(x)), "b s (three h d) -> three b h s d", three=3, h=2
        )
        out = rearrange(naive_attention(q, k, v, key_mask=mask), "b h s d -> b s (h d)")
        x = x + layer.attn.out(out)
        x = x + layer.ffn(layer.ffn_norm(x))
    return model.encoder.norm(x), mask


def test_jagged_encoder_equals_padded_reference_at_valid_positions():
    model, batch = _model(), _batch()
    enc, groups = model._encode(batch)
    reference, mask = _padded_encoder_reference(model, batch)
    assert_close(enc, reference[groups.order][mask[groups.order]])


def test_reorder_selects_and_repeats_rows():
    model, batch = _model(), _batch()
    index = torch.tensor([3, 0, 0, 4, 1, 1, 2])  # not user-major: exercises the gathered cross K/V
    state = model.start(batch)
    _, state = model.step(state, None)
    state = model.reorder(state, index)
    assert state.row_user.tolist() == index.tolist()
    logits, state = model.step(state, batch.target[index, 0])
    picked = batch._replace(
        **{f: getattr(batch, f)[index] for f in ("history", "lengths", "user_ids", "target")}
    )
    assert_close(logits, model(picked).logits[:, 1])


def test_beam_layout_shares_cross_attention_memory():
    model, batch = _model(), _batch()
    width = 3
    state = model.start(batch)
    _, state = model.step(state, None)
    rows = torch.arange(5).repeat_interleave(width)  # user-major, as in beam search
    state = model.reorder(state, rows)
    memory, _ = model._memory_for_rows(state)
    assert memory is state.memory  # one copy per user, not per beam
    codes = torch.randint(0, K, (5 * width,))
    logits, _ = model.step(state, codes)
    target = batch.target[rows].clone()
    target[:, 0] = codes
    repeated = batch._replace(
        history=batch.history[rows], lengths=batch.lengths[rows], user_ids=batch.user_ids[rows]
    )
    assert_close(logits, model(repeated._replace(target=target)).logits[:, 1])


def test_step_checks_its_level():
    model, batch = _model(), _batch()
    state = model.start(batch)
    assert isinstance(state, DecodeState) and state.level == 0
    with pytest.raises(ValueError):
        model.step(state, batch.target[:, 0])
    _, state = model.step(state, None)
    with pytest.raises(ValueError):
        model.step(state, None)


def test_overfits_a_tiny_batch():
    model, batch = _model(dropout=0.0).train(), _batch()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    first = model(batch).loss.item()
    for _ in range(40):
        optimizer.zero_grad()
        model(batch).loss.backward()
        optimizer.step()
    assert model(batch).loss.item() < 0.1 * first


def test_variants_build_and_run(decode_all):
    batch = _batch()
    paper = _model(n_heads=3, head_dim=8, activation="gelu", norm="layer", norm_first=False, user_buckets=0)
    assert paper.decoder.layers[0].self_attn.qkv.weight.shape == (3 * 3 * 8, 16)
    assert_close(decode_all(paper, batch), paper(batch).logits)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        low = _model()(batch)
    assert low.logits.dtype == torch.float32 and torch.isfinite(low.loss)


def test_gin_binds_hyperparameters_but_not_artifact_sizes():
    gin.parse_config("RetrievalModel.d_model = 24\nRetrievalModel.n_heads = 3\nRetrievalModel.embed_dim = 8")
    assert RetrievalModel(K, C).decoder.layers[0].ffn.up.weight.shape[1] == 24
    gin.clear_config()
    with pytest.raises(ValueError, match="denylisted"):
        gin.parse_config("RetrievalModel.codebook_size = 16")


def test_history_longer_than_position_table_is_rejected():
    with pytest.raises(ValueError):
        _model(max_items=3)(_batch())


def test_every_embedding_gets_gradient():
    model, batch = _model(), _batch()
    model(batch).loss.backward()
    users = model.user_embedding.table.weight.grad.abs().sum(-1)
    assert (users > 0).sum() == len(set(hash_user_ids(batch.user_ids, 7).tolist()))
    tables = (model.code_embedding.table, model.position_embedding, model.level_embedding)
    for param in (*(table.weight for table in tables), model.bos):
        assert param.grad.abs().sum() > 0
    assert model.code_embedding.table.weight.grad[C * K].abs().sum() == 0  # padding row


@pytest.mark.gpu
def test_cuda_matches_cpu(decode_all):
    model, batch = _model(), _batch()
    expected = model(batch)
    on_gpu = model.cuda()(TokenBatch(*(t.cuda() for t in batch)))
    assert_close(on_gpu.logits.cpu(), expected.logits, atol=1e-4, rtol=1e-4)
    assert_close(
        decode_all(model, TokenBatch(*(t.cuda() for t in batch))).cpu(),
        expected.logits,
        atol=1e-4,
        rtol=1e-4,
    )


def test_checkpoints_with_the_old_table_names_load_unchanged():
    """Before 2026-12-02 the tables were named codes / item_position / level / user / target_level."""
    model, batch = _model(), _batch()
    old = {}
    for key, value in model.state_dict().items():
        for new, former in (("code_embedding.", "codes."), ("position_embedding.", "item_position."),
                            ("target_level_embedding.", "target_level."), ("level_embedding.", "level."),
                            ("user_embedding.", "user.")):  # fmt: skip
            if key.startswith(new):
                key = former + key[len(new) :]
                break
        old[key] = value.clone()
    assert "codes.table.weight" in old and "target_level.weight" in old and "user.table.weight" in old
    fresh = RetrievalModel(K, C, **{**TINY, "user_buckets": 7}).eval()
    fresh.load_state_dict(old)
    assert_close(fresh(batch).logits, model(batch).logits)
