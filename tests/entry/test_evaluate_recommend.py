"""python -m evaluate.recommend: top-k items of a finished run == its own constrained beam search."""

import json

import pytest
import torch
from torch.testing import assert_close

from data.processed import SeqData
from data.registry import build_dataset
from data.schema import UnknownItemError
from data.text import text_title
from evaluate import recommend as rc
from evaluate.exact import exact_scores
from modules.generation import beam_search
from training.cli import load_gin, run_cli


@pytest.fixture(scope="module")
def rec(finished_run):
    return rc.load_recommender(finished_run, device="cpu")


@pytest.fixture(scope="module")
def user_histories(rec):
    """Item-key histories of the first 12 test users of the debug run's dataset (rebuilt from its keys)."""
    load_gin(["configs/decoder_debug.gin"], [])
    test = SeqData(build_dataset(), split="test")
    return [[rec.item_keys[i] for i in test[row][0]] for row in range(12)]


def direct_beam(rec, history: list[str], k: int, exclude: bool) -> list[tuple[int, float]]:
    """The same request written out: beam_search over the tokenized history, history items dropped."""
    items = rc.item_indices(history, rec.index_of)
    width = max(k, rec.beam_width) + (len(set(items)) if exclude else 0)
    batch = rc.history_batch(items, rec.model.max_items, rec.item_codes, 0)
    out = beam_search(rec.model, batch, rec.trie, width)
    found = [(i, s) for i, s in zip(out.items[0].tolist(), out.log_probs[0].tolist()) if i >= 0]
    return [(i, s) for i, s in found if not (exclude and i in items)][:k]


@pytest.mark.parametrize("mark_history", [False, True])
def test_recommend_equals_a_direct_beam_search(rec, user_histories, mark_history):
    for history in user_histories:
        recs = rc.recommend(rec, history, k=10, mark_history=mark_history)
        expected = direct_beam(rec, history, 10, exclude=not mark_history)
        assert [(r.index, r.score) for r in recs] == expected
        assert [r.rank for r in recs] == list(range(10))
        assert all(r.item == rec.item_keys[r.index] and r.text == rec.item_texts[r.index] for r in recs)
        assert all(r.title == text_title(r.text) and r.title for r in recs)
        assert [r.in_history for r in recs] == [r.item in history for r in recs]


def test_excluded_history_items_never_appear(rec, user_histories):
    for history in user_histories:
        recs = rc.recommend(rec, history, k=15)
        assert len(recs) == 15 and not {r.item for r in recs} & set(history)
        scores = [r.score for r in recs]
        assert scores == sorted(scores, reverse=True) and scores[0] <= 0.0


def test_scores_are_the_items_teacher_forced_log_probs(rec, user_histories):
    history = user_histories[0]
    batch = rc.history_batch(rc.item_indices(history, rec.index_of), rec.model.max_items, rec.item_codes, 0)
    exact = exact_scores(rec.model, batch, rec.trie)[0]  # [I]
    recs = rc.recommend(rec, history, k=10)
    assert_close(torch.tensor([r.score for r in recs]), exact[[r.index for r in recs]], atol=1e-5, rtol=0)


def test_the_model_sees_only_the_newest_max_items(rec, user_histories):
    history = user_histories[0]
    padded = history * (1 + rec.model.max_items // len(history))  # longer than max_items
    batch = rc.history_batch(rc.item_indices(padded, rec.index_of), rec.model.max_items, rec.item_codes, 0)
    assert int(batch.lengths[0]) == rec.model.max_items
    assert torch.equal(batch.history[0, -1], rec.item_codes[rec.index_of[padded[-1]]])


def test_unknown_ids_raise_naming_them(rec, user_histories, finished_run, capsys):
    with pytest.raises(UnknownItemError, match=r"2 unknown item id\(s\): nope-1, nope-2"):
        rc.recommend(rec, [user_histories[0][0], "nope-1", "nope-2", "nope-1"])
    with pytest.raises(SystemExit) as exit_info:
        run_cli(rc.main, [str(finished_run), "--history", "nope-3", "--device", "cpu"])
    assert exit_info.value.code == 1
    assert "error: 1 unknown item id(s): nope-3" in capsys.readouterr().err


def test_cli_histories_file_gives_one_json_line_per_history(rec, user_histories, finished_run, tmp_path,
                                                            capsys):  # fmt: skip
    path = tmp_path / "histories.txt"
    path.write_text(" ".join(user_histories[0]) + "\n" + ", ".join(user_histories[1]) + "\n")
    results = rc.main([str(finished_run), "--histories", str(path), "--k", "5", "--device", "cpu"])
    out, err = capsys.readouterr()
    rows = [json.loads(line) for line in out.splitlines()]
    assert [row["history"] for row in rows] == user_histories[:2]
    for row, recs, history in zip(rows, results, user_histories):
        assert [item["item"] for item in row["items"]] == [r.item for r in recs]
        assert [(r.index, r.score) for r in recs] == direct_beam(rec, history, 5, exclude=True)
        assert row["k"] == 5 and row["latency_ms"] > 0
    assert "latency per user over 2 users" in err


def test_cli_single_history_prints_a_table_and_its_latency(user_histories, finished_run, capsys):
    rc.main([str(finished_run), "--history", *user_histories[0][:2], "--mark-history", "--device", "cpu"])
    out = capsys.readouterr().out
    assert out.splitlines()[0].split() == ["rank", "item", "score", "title"]
    assert "latency:" in out and "for a 2-item history" in out


def test_unknown_ids_in_a_histories_file_name_the_line(user_histories, finished_run, tmp_path):
    path = tmp_path / "histories.txt"
    path.write_text(" ".join(user_histories[0]) + "\nnope-4 " + user_histories[1][0] + "\n")
    with pytest.raises(UnknownItemError, match=r"histories.txt:2: 1 unknown item id\(s\): nope-4"):
        rc.main([str(finished_run), "--histories", str(path), "--device", "cpu"])


def test_empty_history_line_is_named(tmp_path):
    path = tmp_path / "histories.txt"
    path.write_text("syn00001\n\n")
    with pytest.raises(ValueError, match="histories.txt:2: empty history"):
        rc.read_histories(path)
