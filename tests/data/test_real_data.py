"""Opt-in checks on the real datasets in ../shared/data (pytest -m data)."""

from pathlib import Path

import numpy as np
import pytest

from data.amazon import load_amazon
from data.movielens import load_sequence_file
from data.processed import SeqData

SHARED = Path(__file__).resolve().parents[3] / "shared" / "data"
pytestmark = [
    pytest.mark.data,
    pytest.mark.skipif(not SHARED.is_dir(), reason=f"{SHARED} not present"),
]


def counts(data) -> tuple[int, int, int]:
    return len(data.sequences), len(data.item_keys), sum(len(s) for s in data.sequences)


@pytest.mark.parametrize(
    "category, expected", [("beauty", (22_363, 12_101, 198_502)), ("toys", (19_412, 11_924, 167_597))]
)
def test_amazon_counts_and_every_item_has_metadata(category, expected):
    data = load_amazon(str(SHARED / f"amazon-2014-{category}"), category)
    assert counts(data) == expected
    assert len(set(np.concatenate(data.sequences).tolist())) == expected[1]  # every item is used
    assert not any(text.startswith("ASIN: ") for text in data.item_texts)


def test_beauty_first_item_is_the_documented_asin():
    data = load_amazon(str(SHARED / "amazon-2014-beauty"), "beauty")
    assert data.item_keys[0] == "B004756YJA" and data.item_texts[0].startswith("Title: OPI Nail Lacquer")
    assert len(SeqData(data, "test", max_items=20)) == 22_363


def test_ml1m_derived_counts():
    root = SHARED / "ml-1m"
    data = load_sequence_file(
        str(root / "derived" / "ml-1m_user_sequences_derived.txt.gz"), str(root / "movies.dat")
    )
    assert counts(data) == (6_040, 3_416, 999_611)
