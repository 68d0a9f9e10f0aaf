import gzip
import subprocess
import sys
from pathlib import Path

import pytest

from data.movielens import load_movielens, load_sequence_file
from data.schema import DataFormatError

ROOT = Path(__file__).resolve().parents[2]

ML1M_TEXTS = [
    "Title: Toy Story (1995); Genres: Animation, Children's, Comedy",
    "Title: Amélie: Le Fabuleux (2001); Genres: Comedy",
    "Title: Heat (1995); Genres: Action",
]


def test_ml1m_sorted_by_time_with_stable_ties(ml1m_root):
    data = load_movielens(str(ml1m_root), "ml-1m")
    # MovieIDs 1, 5, 9 -> 0, 1, 2. user 1: 5@50, 9@100, 1@100 (tie: file order); user 3: 1@200, 5@300.
    assert data.item_keys == ["1", "5", "9"]
    assert data.user_ids.tolist() == [1, 3]
    assert [s.tolist() for s in data.sequences] == [[1, 2, 0], [0, 1]]
    assert data.item_texts == ML1M_TEXTS


def test_ml32m_csv_with_quoted_titles(ml32m_root):
    data = load_movielens(str(ml32m_root), "ml-32m")
    assert [s.tolist() for s in data.sequences] == [[1, 2, 0], [0, 1]]
    assert data.item_texts == [
        "Title: Toy Story (1995); Genres: Adventure, Animation",
        "Title: Heat, the Movie (1995); Genres: Action",
        "Title: Nothing (2020)",
    ]


def test_malformed_ratings_line_names_file_and_line(ml1m_root):
    (ml1m_root / "ratings.dat").write_text("1::1::5::10\n1::x::5::11\n")
    with pytest.raises(DataFormatError, match=r"ratings.dat:2:"):
        load_movielens(str(ml1m_root), "ml-1m")


def test_malformed_movies_line_names_file_and_line(ml1m_root):
    (ml1m_root / "movies.dat").write_text("1::Toy Story (1995)::Comedy\nbroken line\n")
    with pytest.raises(DataFormatError, match=r"movies.dat:2:"):
        load_movielens(str(ml1m_root), "ml-1m")


def test_unknown_movie_is_an_error(ml1m_root):
    (ml1m_root / "ratings.dat").write_text("1::1::5::10\n1::77::5::11\n")
    with pytest.raises(DataFormatError, match=r"1 MovieIDs not in the movies file, e.g. \[77\]"):
        load_movielens(str(ml1m_root), "ml-1m")


def test_missing_files_name_the_binding(tmp_path):
    with pytest.raises(FileNotFoundError, match="load_movielens.root"):
        load_movielens(str(tmp_path), "ml-1m")


def test_sequence_file_keeps_line_order_and_numbers_by_movie_id(ml1m_root, tmp_path):
    path = tmp_path / "seqs.txt.gz"
    with gzip.open(path, "wt") as f:
        f.write("4 9 1 5\n2 5 9\n")
    data = load_sequence_file(str(path), str(ml1m_root / "movies.dat"))
    assert data.name == "seqs"
    assert data.user_ids.tolist() == [4, 2]
    assert [s.tolist() for s in data.sequences] == [[2, 0, 1], [1, 2]]
    assert data.item_texts == ML1M_TEXTS


def test_malformed_ratings_csv_line_names_file_and_line(ml32m_root):
    (ml32m_root / "ratings.csv").write_text("userId,movieId,rating,timestamp\n1,1,4.0,5\n1,x,4.0,6\n")
    with pytest.raises(DataFormatError, match=r"ratings.csv:3:"):
        load_movielens(str(ml32m_root), "ml-32m")


def test_registry_imports_without_polars_and_readers_say_it_is_missing(tmp_path):
    """The lent GPU machines have no polars: Amazon and `user item …` files must still load there."""
    script = (
        "import sys; sys.modules['polars'] = None\n"
        "import data.registry, data.movielens as ml\n"
        "assert ml.pl is None\n"
        "try:\n"
        f"    ml.read_ratings_dat(__import__('pathlib').Path({str(tmp_path / 'ratings.dat')!r}))\n"
        "except ImportError as err:\n"
        "    assert 'ratings.dat needs polars' in str(err), err\n"
        "else:\n"
        "    raise SystemExit('no error')\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 0, done.stderr
