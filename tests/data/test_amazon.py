import functools
import http.server
import json
import threading

import numpy as np
import pytest

from data.amazon import load_amazon, number_reviews, read_meta, read_sequence_file
from data.schema import DataFormatError, DataWarning
from tests.data.files import A1_TEXT, P5_ASINS, REVIEWS, reviews_text, write_gz


def assert_sequences(actual, expected):
    assert [s.tolist() for s in actual] == expected
    assert all(s.dtype == np.int64 for s in actual)


def test_p5_layout_ids_shift_to_zero_and_meta_joins_by_asin(p5_root):
    with pytest.warns(DataWarning, match="1 of 5 items have no metadata"):
        data = load_amazon(str(p5_root), "beauty")
    assert data.name == "amazon-beauty"
    assert data.user_ids.tolist() == [1, 2, 7]
    assert_sequences(data.sequences, [[0, 1, 2, 3], [1, 2, 4], [3, 0, 4, 1, 2]])
    assert data.item_keys == P5_ASINS
    assert data.item_texts == [
        A1_TEXT,
        "Title: Nail Polish; Categories: Beauty; Price: $3.00",
        "Title: Shampoo; Categories: Beauty, Hair Care; Price: $4.00",
        "Title: Crème été – 50 ml; Brand: Caudalie",
        "ASIN: E5",
    ]


def test_p5_sequential_txt_and_id2item_only_with_jsonl_meta(p5_root):
    (p5_root / "sequential_data.txt").rename(p5_root / "sequential.txt")
    (p5_root / "meta.json.gz").unlink()
    (p5_root / "datamaps.json").write_text(
        json.dumps({"id2item": {str(i + 1): a for i, a in enumerate(P5_ASINS)}})
    )
    rows = [
        {"asin": a, "title": f"T{a}", "brand": None, "categories": ["C"], "price": None} for a in P5_ASINS
    ]
    write_gz(p5_root / "derived" / "item_meta_by_asin.jsonl.gz", "".join(json.dumps(r) + "\n" for r in rows))
    data = load_amazon(str(p5_root), "beauty")
    assert data.item_texts == [f"Title: T{a}; Categories: C" for a in P5_ASINS]
    assert_sequences(data.sequences, [[0, 1, 2, 3], [1, 2, 4], [3, 0, 4, 1, 2]])


def test_explicit_meta_path_is_relative_to_root(p5_root):
    (p5_root / "meta.json.gz").rename(p5_root / "other.json.gz")
    with pytest.warns(DataWarning):
        data = load_amazon(str(p5_root), "beauty", meta_path="other.json.gz")
    assert data.item_texts[0] == A1_TEXT
    with pytest.raises(FileNotFoundError, match="load_amazon.meta_path"):
        load_amazon(str(p5_root), "beauty", meta_path="missing.json.gz")


@pytest.mark.parametrize("bad_line", ["3 1 x 2", "4"])
def test_malformed_sequence_line_names_file_and_line(p5_root, bad_line):
    path = p5_root / "sequential_data.txt"
    path.write_text("1 1 2\n\n" + bad_line + "\n")
    with pytest.raises(DataFormatError, match=r"sequential_data.txt:3:"):
        read_sequence_file(path)


def test_malformed_meta_line_names_file_and_line(tmp_path):
    path = write_gz(tmp_path / "meta.json.gz", "{'asin': 'A'}\n{'asin': 'B', 'title': __import__('os')}\n")
    with pytest.raises(DataFormatError, match=r"meta.json.gz:2:"):
        read_meta(path)
    path = write_gz(tmp_path / "meta2.json.gz", "{'asin': 'A'}\n[1, 2]\n{'title': 'no asin'}\n")
    with pytest.raises(DataFormatError, match=r"meta2.json.gz:2: expected a dict"):
        read_meta(path)


def test_item_id_outside_datamaps_is_an_error(p5_root):
    (p5_root / "sequential_data.txt").write_text("1 1 2\n2 6\n")
    with pytest.raises(
        DataFormatError, match=r"sequential_data.txt:2: item id 6 is not in datamaps.json \(ids 1..5\)"
    ):
        load_amazon(str(p5_root), "beauty")


def test_number_reviews_rule_first_appearance_and_stable_time_order():
    sequences, keys = number_reviews(REVIEWS)
    # u2: Z(10) Y(30); u1: W(5) X(20) Y(20) (tie: X before Y, file order); u3: X W Z.
    assert keys == ["Z", "Y", "W", "X"]
    assert_sequences(sequences, [[0, 1], [2, 3, 1], [3, 2, 0]])


def test_raw_mcauley_layout(raw_root):
    data = load_amazon(str(raw_root), "beauty")
    assert data.user_ids.tolist() == [1, 2, 3]
    assert data.item_keys == ["Z", "Y", "W", "X"]
    assert data.item_texts == [f"Title: Item {a}" for a in "ZYWX"]
    assert_sequences(data.sequences, [[0, 1], [2, 3, 1], [3, 2, 0]])


def test_malformed_review_names_file_and_line(raw_root):
    write_gz(raw_root / "reviews_Beauty_5.json.gz", reviews_text(REVIEWS[:2]) + '{"reviewerID": "u9"}\n')
    with pytest.raises(DataFormatError, match=r"reviews_Beauty_5.json.gz:3:"):
        load_amazon(str(raw_root), "beauty")


def test_missing_files_error_lists_names_and_binding(tmp_path):
    with pytest.raises(FileNotFoundError) as info:
        load_amazon(str(tmp_path), "toys")
    for expected in [
        "sequential_data.txt",
        "datamaps.json",
        "reviews_Toys_and_Games_5.json.gz",
        "load_amazon.root",
    ]:
        assert expected in str(info.value)


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


def test_download_from_local_http_server(raw_root, tmp_path):
    handler = functools.partial(QuietHandler, directory=str(raw_root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        root = tmp_path / "fresh"
        url = f"http://127.0.0.1:{server.server_address[1]}/"
        data = load_amazon(str(root), "beauty", download=True, base_url=url)
    finally:
        server.shutdown()
        server.server_close()
    assert sorted(p.name for p in root.iterdir()) == ["meta_Beauty.json.gz", "reviews_Beauty_5.json.gz"]
    assert (root / "reviews_Beauty_5.json.gz").read_bytes() == (
        raw_root / "reviews_Beauty_5.json.gz"
    ).read_bytes()
    assert data.item_keys == ["Z", "Y", "W", "X"]
