"""Fixtures: tiny dataset folders in each supported layout (contents in tests/data/files.py)."""

import json
from pathlib import Path

import pytest

from tests.data.files import REVIEWS, reviews_text, write_gz, write_ml1m_root, write_p5_root


@pytest.fixture
def p5_root(tmp_path: Path) -> Path:
    """P5 layout: sequential_data.txt + datamaps.json (both maps) + meta.json.gz of Python literals."""
    return write_p5_root(tmp_path / "beauty")


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
    return write_ml1m_root(tmp_path / "ml-1m")


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
