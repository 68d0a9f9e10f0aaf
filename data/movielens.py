"""MovieLens -> RawDataset: ML-1M (`::`-separated .dat, ISO-8859-1) and ML-20M/25M/32M (.csv), plus a generic
reader for `user item item ...` sequence files whose item ids are MovieIDs.

Rules, the same for both entry points:
- per-user sequences sorted by timestamp; equal timestamps keep file order (stable sort);
- items are the MovieIDs that occur in the interactions, numbered 0..I-1 in ascending MovieID order;
  movies that nobody rated are not in the catalogue;
- users come out in ascending user id; `user_ids` keeps the dataset's own user numbers;
- an interaction with a MovieID missing from the movies file is an error (DataFormatError listing ids);
- item text = data.text.movielens_item_text(title, genres).
Polars does the big parsing and the sort (ML-32M has 32M ratings). It is imported when present: a machine
without it (the lent GPU machines) can still load Amazon data; only the readers that need it say so.
"""

from __future__ import annotations

from pathlib import Path

import gin
import numpy as np

try:
    import polars as pl
except ImportError:  # only the MovieLens readers need it; they say so (_require_polars)
    pl = None

from data.schema import DataFormatError, RawDataset, check_dataset, shown
from data.text import movielens_item_text
from data.textio import check_decodes, numbered_lines, read_sequence_file

VARIANT_FILES = {  # variant -> (ratings file, movies file)
    "ml-1m": ("ratings.dat", "movies.dat"),
    "ml-20m": ("ratings.csv", "movies.csv"),
    "ml-25m": ("ratings.csv", "movies.csv"),
    "ml-32m": ("ratings.csv", "movies.csv"),
}
DAT_ENCODING = "iso-8859-1"


def _require_polars(path: Path) -> None:
    if pl is None:
        raise ImportError(f"reading {path} needs polars (pip install polars; it is in requirements.txt)")


def read_ratings_dat(path: Path) -> pl.DataFrame:
    """ML-1M ratings.dat (`UserID::MovieID::Rating::Timestamp`) -> (user, item, time) Int64, file order."""
    _require_polars(path)
    try:  # "::" splits into 7 ":"-fields, the even ones empty
        raw = pl.read_csv(path, separator=":", has_header=False, infer_schema=False, quote_char=None)
    except pl.exceptions.PolarsError as err:
        check_decodes(path)  # an empty file or a bad byte: names the line
        raise DataFormatError(f"{path}: {err}") from None
    if raw.width != 7:
        check_decodes(path)  # an empty file says so
        raise DataFormatError(
            f"{path}: expected `UserID::MovieID::Rating::Timestamp`, got {raw.width} fields"
        )
    frame = raw.select(
        pl.col(raw.columns[0]).alias("user"),
        pl.col(raw.columns[2]).alias("item"),
        pl.col(raw.columns[6]).alias("time"),
    )
    return _to_int(frame, path, first_line=1)


def read_ratings_csv(path: Path) -> pl.DataFrame:
    """ratings.csv (header userId,movieId,rating,timestamp) -> frame (user, item, time) Int64, file order."""
    _require_polars(path)
    names = {"userId": "user", "movieId": "item", "timestamp": "time"}
    try:  # fast path: typed read; on failure re-read as text to name the bad line
        return pl.read_csv(path, columns=list(names), schema_overrides=dict.fromkeys(names, pl.Int64)).rename(
            names
        )
    except pl.exceptions.PolarsError as err:
        check_decodes(path)  # an empty file or a bad byte: names the line
        message = f"{path}: {err}"
    try:
        raw = pl.read_csv(path, columns=list(names), infer_schema=False).rename(names)
    except pl.exceptions.PolarsError:
        raise DataFormatError(message) from None
    _to_int(raw, path, first_line=2)  # raises naming the line
    raise DataFormatError(message)


def _to_int(frame: pl.DataFrame, path: Path, first_line: int) -> pl.DataFrame:
    """Casts string columns to Int64; a field that is not an integer raises naming its line and value."""
    ints = frame.select(pl.all().str.strip_chars().cast(pl.Int64, strict=False))
    bad = ints.with_row_index("row").filter(pl.any_horizontal(pl.all().exclude("row").is_null()))
    if bad.height:
        row = int(bad["row"][0])
        column = next(name for name in ints.columns if bad[name][0] is None)
        value = frame[column][row]
        raise DataFormatError(
            f"{path}:{row + first_line}: expected integer user, movie and timestamp fields, got {column} "
            f"{shown(value)}"
        )
    return ints


def read_movies(path: Path) -> dict[int, str]:
    """movies.dat (`MovieID::Title::Genres`, ISO-8859-1) or movies.csv -> MovieID -> item text."""
    if path.suffix == ".csv":
        _require_polars(path)
        try:
            frame = pl.read_csv(
                path, schema_overrides={"movieId": pl.Int64, "title": pl.String, "genres": pl.String}
            )
        except pl.exceptions.PolarsError as err:
            check_decodes(path)
            raise DataFormatError(f"{path}: {err}") from None
        rows = zip(frame["movieId"].to_list(), frame["title"].to_list(), frame["genres"].to_list())
        return {int(movie): movielens_item_text(title, genres or "") for movie, title, genres in rows}
    movies = {}
    for lineno, line in numbered_lines(path, encoding=DAT_ENCODING):
        fields = line.split("::")
        if len(fields) != 3 or not fields[0].isdigit():
            raise DataFormatError(f"{path}:{lineno}: expected `MovieID::Title::Genres`, got {shown(line)}")
        movies[int(fields[0])] = movielens_item_text(fields[1], fields[2])
    return movies


def sequences_from_frame(frame: pl.DataFrame) -> tuple[np.ndarray, list[np.ndarray], np.ndarray]:
    """(user, item, time) rows in file order -> (user ids [U], item indices per user, MovieID per index [I]).

    Users ascending; each user's items by time, ties in file order; items numbered by ascending MovieID.
    """
    ordered = frame.sort(["user", "time"], maintain_order=True)
    users = ordered["user"].to_numpy()
    movie_ids = ordered["item"].to_numpy()
    catalogue = np.unique(movie_ids)  # [I] sorted MovieIDs
    items = np.searchsorted(catalogue, movie_ids).astype(np.int64)
    user_ids, starts = np.unique(users, return_index=True)
    return user_ids.astype(np.int64), np.split(items, starts[1:]), catalogue


def build_movielens(
    name: str, user_ids: np.ndarray, sequences: list, catalogue: np.ndarray, movies: dict, source: Path
) -> RawDataset:
    """Attaches item keys and texts; unknown MovieIDs raise a DataFormatError naming up to 5 of them."""
    unknown = [int(m) for m in catalogue if int(m) not in movies]
    if unknown:
        raise DataFormatError(f"{source}: {len(unknown)} MovieIDs not in the movies file, e.g. {unknown[:5]}")
    keys = [str(int(m)) for m in catalogue]
    texts = [movies[int(m)] for m in catalogue]
    return check_dataset(RawDataset(name, sequences, user_ids, keys, texts))


@gin.configurable
def load_movielens(root: str = gin.REQUIRED, variant: str = gin.REQUIRED) -> RawDataset:
    """Loads ML-1M ("ml-1m") or ML-20M/25M/32M from the GroupLens files in `root` (rules: see module)."""
    if variant not in VARIANT_FILES:
        raise ValueError(f"unknown MovieLens variant {variant!r}; expected one of {sorted(VARIANT_FILES)}")
    ratings_path, movies_path = (Path(root) / name for name in VARIANT_FILES[variant])
    for path in (ratings_path, movies_path):
        if not path.exists():
            raise FileNotFoundError(
                f"{path} not found: {variant} needs {' and '.join(VARIANT_FILES[variant])} in one folder "
                "(gin: load_movielens.root)"
            )
    reader = read_ratings_dat if ratings_path.suffix == ".dat" else read_ratings_csv
    user_ids, sequences, catalogue = sequences_from_frame(reader(ratings_path))
    return build_movielens(variant, user_ids, sequences, catalogue, read_movies(movies_path), ratings_path)


@gin.configurable
def load_sequence_file(
    path: str = gin.REQUIRED, movies_path: str = gin.REQUIRED, name: str | None = None
) -> RawDataset:
    """Loads `user movie movie ...` lines (oldest first, plain or .gz) with movies.dat / movies.csv texts.

    Each line's order is kept as written; items are numbered by ascending MovieID. `name` defaults to the
    file name without suffixes.
    """
    seq_path, movie_file = Path(path), Path(movies_path)
    for file, binding in ((seq_path, "path"), (movie_file, "movies_path")):
        if not file.exists():
            raise FileNotFoundError(f"{file} not found (gin: load_sequence_file.{binding})")
    movies = read_movies(movie_file)
    user_ids, raw = read_sequence_file(seq_path, movies, f"{movie_file.name} (unknown MovieID)")
    catalogue = np.unique(np.concatenate(raw))
    sequences = [np.searchsorted(catalogue, ids).astype(np.int64) for ids in raw]
    name = name or seq_path.name.split(".")[0]
    return build_movielens(name, user_ids, sequences, catalogue, movies, seq_path)
