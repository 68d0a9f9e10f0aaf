import gzip

import pytest

from data.schema import DataFormatError
from data.textio import numbered_lines, read_sequence_file, read_text


def test_numbered_lines_counts_every_line_and_reads_crlf_and_gz_alike(tmp_path):
    plain, packed = tmp_path / "a.txt", tmp_path / "a.txt.gz"
    plain.write_bytes(b"first\r\n\r\n  second  \r\nthird")
    with gzip.open(packed, "wb") as f:
        f.write(b"first\n\n  second  \nthird\n")
    expected = [(1, "first"), (3, "second"), (4, "third")]
    assert list(numbered_lines(plain)) == expected == list(numbered_lines(packed))


def test_sequence_ids_checked_against_the_catalogue_line_by_line(tmp_path):
    path = tmp_path / "seq.txt"
    path.write_text("7 1 2\n8 2 3 1\n")
    users, seqs = read_sequence_file(path, known_items=range(1, 4))
    assert users.tolist() == [7, 8] and [s.tolist() for s in seqs] == [[1, 2], [2, 3, 1]]
    with pytest.raises(DataFormatError, match=r"seq.txt:2: item id 3 is not in ids 1..2"):
        read_sequence_file(path, known_items=range(1, 3), catalogue="ids 1..2")
    path.write_text("7 1 2\n8\n")
    with pytest.raises(DataFormatError, match=r"seq.txt:2: user 8 has no items"):
        read_sequence_file(path)


def test_read_text_names_the_line_of_a_bad_byte(tmp_path):
    path = tmp_path / "x.json"
    path.write_bytes(b'{\n"a": 1,\n"b": "\xff"\n}')
    with pytest.raises(DataFormatError, match=r"x.json:3: not valid utf-8"):
        read_text(path)
