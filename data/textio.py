"""Reading raw text files (plain or .gz) so that every fault names the file, and the line where it is known.

- a file with no non-blank line is an error (an empty download, a truncated copy);
- bytes that are not valid in the file's encoding: DataFormatError naming the file and line (lines are
  read as bytes and decoded one by one, so the line number is exact);
- a .gz file that is truncated or not gzip: DataFormatError naming the file and the last complete line;
- `user item item ...` sequence lines: integer tokens only, at least one item, each user on one line
  only, and (when the caller knows the catalogue) every item id in it.
"""

import gzip
import zlib
from collections.abc import Container, Iterator
from pathlib import Path
from typing import BinaryIO

import numpy as np

from data.schema import DataFormatError, shown

GZIP_ERRORS = (EOFError, gzip.BadGzipFile, zlib.error)  # truncated stream, bad header / CRC, bad data


def open_binary(path: Path) -> BinaryIO:
    """Opens a file for reading bytes, gunzipping it when the name ends in .gz."""
    return gzip.open(path, "rb") if str(path).endswith(".gz") else open(path, "rb")


def numbered_lines(path: Path, encoding: str = "utf-8") -> Iterator[tuple[int, str]]:
    """(1-based line number, stripped line) for every non-blank line of a text or .gz file.

    Raises DataFormatError naming the file when it has no non-blank line, a line is not valid `encoding`
    (with its line number), or the gzip stream is truncated or corrupt (with the last line read).
    """
    lineno, found = 0, False
    try:
        with open_binary(path) as f:
            for lineno, raw in enumerate(f, start=1):
                try:
                    line = raw.decode(encoding).strip()
                except UnicodeDecodeError as err:
                    raise DataFormatError(
                        f"{path}:{lineno}: not valid {encoding} text (byte {err.start} of the line)"
                    ) from None
                if line:
                    found = True
                    yield lineno, line
    except GZIP_ERRORS as err:
        raise DataFormatError(
            f"{path}: truncated or corrupt gzip file after line {lineno} ({type(err).__name__}: {err})"
        ) from None
    if not found:
        raise DataFormatError(f"{path}: the file is empty (no non-blank line)")


def read_text(path: Path, encoding: str = "utf-8") -> str:
    """The whole file as text; DataFormatError naming the file (and line) when empty or not `encoding`."""
    data = Path(path).read_bytes()
    try:
        text = data.decode(encoding)
    except UnicodeDecodeError as err:
        line = data[: err.start].count(b"\n") + 1
        raise DataFormatError(f"{path}:{line}: not valid {encoding} text") from None
    if not text.strip():
        raise DataFormatError(f"{path}: the file is empty")
    return text


def check_decodes(path: Path, encoding: str = "utf-8") -> None:
    """Reads every line of `path`; raises DataFormatError naming the first undecodable line, if any."""
    for _ in numbered_lines(path, encoding):
        pass


INT64 = np.iinfo(np.int64)


def bad_token(tokens: list[str]) -> str:
    """What is wrong with the first token of a `user item item ...` line that is not an int64, naming it."""
    for position, token in enumerate(tokens):
        what = "user id" if position == 0 else f"item id (token {position + 1})"
        if not token.lstrip("+-").isdigit():
            return f"expected integers `user item item ...`, got {what} {shown(token)}"
        if not INT64.min <= int(token) <= INT64.max:
            return f"{what} {token} does not fit in int64"
    return f"expected integers `user item item ...`, got {shown(' '.join(tokens))}"


def read_sequence_file(
    path: Path, known_items: Container[int] | None = None, catalogue: str = "the catalogue"
) -> tuple[np.ndarray, list[np.ndarray]]:
    """Reads `user item item ...` lines. Returns (user ids [U] int64, raw item ids per user, int64).

    Every token must be an integer, every line needs at least one item, and a user id on a second line
    raises DataFormatError naming both lines (a user's history is one line; two would score the user
    twice). With `known_items`, an item id not in it raises DataFormatError naming the file, line and id;
    `catalogue` says where ids come from.
    """
    users, seqs, line_of_user = [], [], {}
    for lineno, line in numbered_lines(path):
        tokens = line.split()
        try:
            ids = np.array(tokens, dtype=np.int64)
        except (ValueError, OverflowError):
            raise DataFormatError(f"{path}:{lineno}: {bad_token(tokens)}") from None
        if ids.size < 2:
            raise DataFormatError(f"{path}:{lineno}: user {ids[0]} has no items")
        first = line_of_user.setdefault(int(ids[0]), lineno)
        if first != lineno:
            raise DataFormatError(
                f"{path}:{lineno}: user {ids[0]} already has a sequence on line {first}; "
                "each user's history must be one line"
            )
        if known_items is not None:
            unknown = [i for i in ids[1:].tolist() if i not in known_items]
            if unknown:
                raise DataFormatError(f"{path}:{lineno}: item id {unknown[0]} is not in {catalogue}")
        users.append(ids[0])
        seqs.append(ids[1:])
    return np.array(users, dtype=np.int64), seqs
