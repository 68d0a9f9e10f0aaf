"""Fixtures: tiny dataset folders in each supported layout (contents in tests/data/files.py)."""

import json
from pathlib import Path

import pytest

from tests.data.files import (
    MOVIES_DAT,
    P5_ASINS,
    P5_META,
    P5_SEQUENCES,
    RATINGS_DAT,
    REVIEWS,
    reviews_text,
    write_gz,
)


@pytest.fixture
def p5_root(tmp_path: Path) -> Path:
    """P5 layout: sequential_data.txt + datamaps.json (both maps) + meta.json.gz of Python literals."""
    root = tmp_path / "beauty"
    root.mkdir()
    (root / "sequential_data.txt").write_text(P5_SEQUENCES)
    maps = {"item2id": {a: str(i + 1) for i, a in enumerate(P5_ASINS)}}
    maps["id2item"] = {v: k for k, v in maps["item2id"].items()}
    (root / "datamaps.json").write_text(json.dumps(maps))
    write_gz(root / "meta.json.gz", "".join(repr(m) + "\n" for m in P5_META))
    return root


@pytest.fixture
def raw_root(tmp_path: Path) -> Path:
    """Raw McAuley layout: reviews_Beauty_5.json.gz + meta_Beauty.json.gz (JSON lines here)."""
    root = tmp_path / "raw"
    write_gz(root / "reviews_Beauty_5.json.gz", reviews_text(REVIEWS))
    meta = [{"asin": a, "title": f"Item {a}"} for a in "WXYZ"]
    write_gz(root / "meta_Beauty.json.gz", "".join(json.dumps(m) + "\n" for m in meta))
    return root


@pytest.fixture
def ml1m_root(tmp_path: Path) -> Path:
    root = tmp_path / "ml-1m"
    root.mkdir()
    (root / "movies.dat").write_bytes(MOVIES_DAT.encode("iso-8859-1"))
    (root / "ratings.dat").write_text(RATINGS_DAT)
    return root


@pytest.fixture
def ml32m_root(tmp_path: Path) -> Path:
    root = tmp_path / "ml-32m"
    root.mkdir()
    (root / "movies.csv").write_text(
        'movieId,title,genres\n1,Toy Story (1995),Adventure|Animation\n5,"Heat, the Movie (1995)",Action\n'
        "9,Nothing (2020),(no genres listed)\n"
    )
    (root / "ratings.csv").write_text(
        "userId,movieId,rating,timestamp\n3,5,4.0,300\n1,9,5.0,100\n1,1,3.5,100\n3,1,2.0,200\n1,5,4.0,50\n"
    )
    return root
