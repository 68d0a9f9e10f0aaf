import pytest
import torch
from torch.testing import assert_close

from modules.decoder_only import DecoderOnlyModel, append_target
from modules.generation import beam_search, user_major_groups
from modules.prefix_trie import PrefixTrie
from modules.tokens import TokenBatch
from ops.jagged import valid_mask

K, C, N = 8, 4, 5
TINY = dict(embed_dim=12, d_model=16, n_heads=2, head_dim=8, n_layers=2, ffn_dim=32, max_items=N)


def _model(**overrides) -> DecoderOnlyModel:
    torch.manual_seed(0)
    return DecoderOnlyModel(K, C, **{**TINY, "user_buckets": 7, **overrides}).eval()


def _batch(lengths=(1, 3, 5, 2, 3), seed=1) -> TokenBatch:
    gen = torch.Generator().manual_seed(seed)
    lengths = torch.tensor(lengths)
    history = torch.randint(0, K, (len(lengths), N, C), generator=gen)
    history[~valid_mask(lengths, N)] = -1
    target = torch.randint(0, K, (len(lengths), C), generator=gen)
    return TokenBatch(history, lengths, torch.arange(len(lengths)) * 13 + 2, target)


def test_append_target_writes_after_the_last_item():
    batch = _batch()
    items, n_items = append_target(batch)
    assert items.shape == (5, N + 1, C)
    assert n_items.tolist() == (batch.lengths + 1).tolist()
    for b, n in enumerate(batch.lengths.tolist()):
        assert torch.equal(items[b, :n], batch.history[b, :n])
        assert torch.equal(items[b, n], batch.target[b])
        assert (items[b, n + 1 :] == -1).all()


@pytest.mark.parametrize("user_buckets", [7, 0])
def test_cached_decoding_equals_teacher_forcing(user_buckets, decode_all):
    model, batch = _model(user_buckets=user_buckets), _batch()
    assert_close(decode_all(model, batch), model(batch).logits)


def test_every_target_loss_is_the_mean_of_each_prefix_single_target_loss():
    """Causality + positions counted from the oldest item: the CE of item j in the every-target pass equals
    the single-target CE of the example (items[:j] -> item j); each level averages over the predictions."""
    every, single = _model(), _model(every_target=False)
    batch = _batch()
    items, n_items = append_target(batch)
    per_example = []
    for b in range(items.shape[0]):
        for j in range(1, int(n_items[b])):
            history = torch.full((1, N, C), -1)
            history[0, :j] = items[b, :j]
            one = TokenBatch(history, torch.tensor([j]), batch.user_ids[b : b + 1], items[b, j : j + 1])
            per_example.append(single(one).loss_per_level)
    expected = torch.stack(per_example).mean(0)  # [C]
    out = every(batch)
    assert_close(out.loss_per_level, expected)
    assert_close(out.loss, expected.sum())


def test_single_target_loss_is_sum_over_levels_of_batch_mean_ce():
    model, batch = _model(every_target=False), _batch()
    out = model(batch)
    log_p = out.logits.log_softmax(-1)  # [B, C, K]
    nll = -log_p.gather(-1, batch.target.unsqueeze(-1)).squeeze(-1)  # [B, C]
    assert_close(out.loss_per_level, nll.mean(0))


def test_padding_width_and_garbage_do_not_matter():
    model, batch = _model(), _batch(lengths=(1, 3, 2))
    narrow = batch._replace(history=batch.history[:, :3].clone())
    wide = batch._replace(history=batch.history.clone())
    wide.history[~valid_mask(batch.lengths, N)] = 5  # garbage beyond each row's length
    wide = wide._replace(history=torch.where(valid_mask(batch.lengths, N).unsqueeze(-1), wide.history, -1))
    assert_close(model(narrow).logits, model(wide).logits)
    assert_close(model(narrow).loss, model(wide).loss)


def test_user_major_groups():
    assert user_major_groups(torch.arange(3).repeat_interleave(4), 3) == 4
    assert user_major_groups(torch.tensor([0, 1, 0, 1]), 2) is None
    assert user_major_groups(torch.arange(5), 2) is None


@pytest.mark.parametrize("index", [[0, 0, 1, 1, 2, 2, 3, 3, 4, 4], [3, 0, 0, 4, 1, 1, 2]])
def test_reorder_then_step_equals_teacher_forcing_on_the_picked_rows(index):
    """User-major (shared prefix) and any other layout (per-row copy) give the same logits."""
    model, batch = _model(), _batch()
    index = torch.tensor(index)
    state = model.start(batch)
    _, state = model.step(state, None)
    state = model.reorder(state, index)
    codes = torch.randint(0, K, (len(index),))
    logits, state = model.step(state, codes)
    picked = TokenBatch(
        batch.history[index], batch.lengths[index], batch.user_ids[index], batch.target[index].clone()
    )
    picked.target[:, 0] = codes
    assert_close(logits, model(picked).logits[:, 1])


def test_step_checks_its_level():
    model, batch = _model(), _batch()
    state = model.start(batch)
    with pytest.raises(ValueError, match="level 0"):
        model.step(state, batch.target[:, 0])
    _, state = model.step(state, None)
    with pytest.raises(ValueError, match="level 1"):
        model.step(state, None)


def test_full_width_beam_search_equals_exhaustive_teacher_forced_scores():
    model, batch = _model(), _batch(lengths=(2, 4))
    codes = torch.unique(torch.randint(0, K, (12, C)), dim=0)
    n_items = codes.shape[0]
    out = beam_search(model, batch, PrefixTrie.from_codes(codes, K), n_items)
    for b in range(2):
        rows = TokenBatch(
            batch.history[b : b + 1].expand(n_items, -1, -1),
            batch.lengths[b : b + 1].expand(n_items),
            batch.user_ids[b : b + 1].expand(n_items),
            codes,
        )
        log_p = model(rows).logits.log_softmax(-1).gather(-1, codes.unsqueeze(-1)).squeeze(-1).sum(-1)
        expected = log_p.sort(descending=True)
        assert_close(out.log_probs[b], expected.values)
        assert torch.equal(out.codes[b], codes[expected.indices])


def test_overfits_a_tiny_batch():
    model, batch = _model(dropout=0.0).train(), _batch()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    first = model(batch).loss.item()
    for _ in range(150):
        optimizer.zero_grad()
        loss = model(batch).loss
        loss.backward()
        optimizer.step()
    assert loss.item() < 0.1 * first
