"""Contents of the tiny dataset files the tests write, and writers for .gz files and whole dataset folders."""

import gzip
import json
from pathlib import Path

# P5 ids 1..5 -> ASINs; user 7's line is out of user order on purpose (user ids are kept, not renumbered).
P5_SEQUENCES = "1 1 2 3 4\n2 2 3 5\n\n7 4 1 5 2 3\n"
P5_ASINS = ["A1", "B2", "C3", "D4", "E5"]
# Python-literal metadata (McAuley 2014 style), in a different order than the item ids; E5 has none;
# "ZZ" is not in the catalogue. Quotes, unicode, HTML entities, nested category paths, a missing price.
P5_META = [
    {"asin": "C3", "title": "Shampoo", "categories": [["Beauty", "Hair Care"]], "price": 4.0},
    {"asin": "A1", "title": 'Rose "Red" Lipstick &amp; Gloss', "brand": "L'Oréal",
     "categories": [["Beauty", "Makeup", "Lips"], ["Gifts"]], "price": 9.5},
    {"asin": "ZZ", "title": "Not in the catalogue"},
    {"asin": "B2", "title": "Nail Polish", "brand": "Unknown", "categories": [["Beauty"]], "price": 3},
    {"asin": "D4", "title": "Crème \u00e9t\u00e9 \u2013 50 ml", "brand": "Caudalie"},
]  # fmt: skip
A1_TEXT = (
    'Title: Rose "Red" Lipstick & Gloss; Brand: L\'Oréal; Categories: Beauty, Makeup, Lips; Price: $9.50'
)


def write_gz(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with gzip.open(path, "wt", encoding="utf-8") as f:
        f.write(text)
    return path


# Raw McAuley reviews: user u2 appears first; u1 has a timestamp tie (X then Y in file order).
REVIEWS = [
    ("u2", "Y", 30), ("u1", "X", 20), ("u2", "Z", 10), ("u1", "Y", 20), ("u1", "W", 5), ("u3", "X", 1),
    ("u3", "W", 2), ("u3", "Z", 3),
]  # fmt: skip


def reviews_text(reviews: list[tuple[str, str, int]]) -> str:
    rows = [{"reviewerID": u, "asin": a, "unixReviewTime": t, "overall": 5.0} for u, a, t in reviews]
    return "".join(json.dumps(r) + "\n" for r in rows)


MOVIES_DAT = (
    "1::Toy Story (1995)::Animation|Children's|Comedy\n"
    "5::Am\u00e9lie: Le Fabuleux (2001)::Comedy\n"  # ISO-8859-1 on disk; ':' inside a title
    "9::Heat (1995)::Action\n"
)
# user 3 rates first in the file; user 1 has a timestamp tie (movie 9 then movie 1 in file order).
RATINGS_DAT = "3::5::4::300\n1::9::5::100\n1::1::3::100\n3::1::2::200\n1::5::4::50\n"


def write_p5_root(root: Path) -> Path:
    """P5 layout in `root`: sequential_data.txt, datamaps.json (both maps), meta.json.gz (Python literals)."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "sequential_data.txt").write_text(P5_SEQUENCES)
    maps = {"item2id": {a: str(i + 1) for i, a in enumerate(P5_ASINS)}}
    maps["id2item"] = {v: k for k, v in maps["item2id"].items()}
    (root / "datamaps.json").write_text(json.dumps(maps))
    write_gz(root / "meta.json.gz", "".join(repr(m) + "\n" for m in P5_META))
    return root


def write_ml1m_root(root: Path) -> Path:
    """ML-1M layout in `root`: movies.dat (ISO-8859-1) + ratings.dat."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "movies.dat").write_bytes(MOVIES_DAT.encode("iso-8859-1"))
    (root / "ratings.dat").write_text(RATINGS_DAT)
    return root
