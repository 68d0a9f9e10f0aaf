import numpy as np
import torch
from torch.testing import assert_close

from data.processed import split_examples
from data.windows import right_align, windows
from modules.sasrec import SasRec, attention_mask, trim_padding

SEQS = [np.arange(n, dtype=np.int64) + 10 * u for u, n in enumerate([3, 4, 7, 12, 5])]


def test_training_targets_are_the_decoders_sliding_targets():
    w = windows(SEQS, "train", max_len=12)  # >= every sequence: no target truncated away
    got = {(int(w.users[r]), int(t)) for r in range(len(w.users)) for t in w.targets[r] if t >= 0}
    lengths = np.array([len(s) for s in SEQS])
    rows, ends = split_examples(lengths, "train")
    assert got == {(int(r), int(SEQS[r][e])) for r, e in zip(rows, ends)}
    for r in range(len(w.users)):  # each input position is followed by its target
        inputs, targets = w.items[r], w.targets[r]
        keep = targets >= 0
        assert_close(torch.from_numpy(targets[keep]), torch.from_numpy(inputs[keep] + 1))  # SEQS are runs


def test_eval_windows_hold_the_history_before_the_target():
    for split, back in (("valid", 2), ("test", 1)):
        w = windows(SEQS, split, max_len=5)
        for r, u in enumerate(w.users):
            seq = SEQS[u]
            assert w.targets[r] == seq[len(seq) - back]
            history = seq[: len(seq) - back][-5:]
            np.testing.assert_array_equal(w.items[r][5 - len(history) :], history)
            assert (w.items[r][: 5 - len(history)] == -1).all()


def test_right_align_keeps_the_newest():
    np.testing.assert_array_equal(right_align([np.array([1, 2, 3])], 2), [[2, 3]])
    np.testing.assert_array_equal(right_align([np.array([4])], 3), [[-1, -1, 4]])


def test_attention_mask_by_hand():
    mask = attention_mask(torch.tensor([[False, True, True]]))[0, 0]
    expected = torch.tensor([[True, False, False], [False, True, False], [False, True, True]])
    assert torch.equal(mask, expected)


def _model(**kw):
    torch.manual_seed(0)
    return SasRec(n_items=30, d_model=8, n_layers=2, n_heads=2, dropout=0.0, max_len=6, **kw).eval()


def test_causal_and_blind_to_padding():
    model = _model()
    items = torch.tensor([[-1, -1, 3, 4, 5, 6]])
    base = model.hidden(items)
    changed = model.hidden(torch.tensor([[-1, -1, 3, 4, 9, 6]]))
    assert_close(changed[:, :4], base[:, :4])  # positions before 4 never see it
    assert not torch.allclose(changed[:, 4:], base[:, 4:])
    assert (base[:, :2] == model.norm(torch.zeros(8))).all()  # padded positions carry nothing


def test_bce_loss_formula():
    model = _model()
    items, targets = torch.tensor([[-1, 1, 2, 3, 4, 5]]), torch.tensor([[-1, 2, 3, -1, 5, 6]])
    loss = model.loss(items, targets, torch.Generator().manual_seed(3))
    neg = torch.randint(0, 30, (4,), generator=torch.Generator().manual_seed(3))
    h = model.hidden(items)[targets >= 0]
    emb = model.item_embedding.weight
    pos = targets[targets >= 0]
    expected = -torch.log(torch.sigmoid((h * emb[pos]).sum(-1))).mean()
    expected = expected - torch.log(1 - torch.sigmoid((h * emb[neg]).sum(-1))).mean()
    assert_close(loss, expected)


def test_ce_loss_is_softmax_over_all_items():
    model = _model(loss="ce")
    items, targets = torch.tensor([[-1, 1, 2, 3, 4, 5]]), torch.tensor([[-1, 2, 3, -1, 5, 6]])
    h = model.hidden(items)[targets >= 0]
    log_p = (h @ model.item_embedding.weight[:30].T).log_softmax(-1)
    expected = -log_p.gather(1, targets[targets >= 0][:, None]).mean()
    assert_close(model.loss(items, targets), expected)
    assert_close(model.scores(items), model.hidden(items)[:, -1] @ model.item_embedding.weight[:30].T)


def test_trimmed_padding_gives_the_same_outputs():
    model = _model()
    items = torch.tensor([[-1, -1, -1, 3, 4, 5], [-1, -1, 7, 8, 9, 1]])
    (trimmed,) = trim_padding(items)
    assert trimmed.shape == (2, 4)
    assert_close(model.hidden(trimmed), model.hidden(items)[:, 2:])
    assert_close(model.scores(trimmed), model.scores(items))


def test_embeddings_start_small_and_padding_row_is_zero():
    model = SasRec(n_items=500, d_model=32, init_std=0.05)
    assert abs(float(model.item_embedding.weight[:500].detach().std()) - 0.05) < 0.005
    assert (model.item_embedding.weight[500] == 0).all()
