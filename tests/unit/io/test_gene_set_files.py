"""GMT files and the target table: every problem is an InputError naming the file (and line)."""

from __future__ import annotations

import gzip
import logging

import pytest

from cd8exo.errors import InputError
from cd8exo.io.tables import read_gmt, read_targets, select_signatures


def _write(path, data: bytes):
    path.write_bytes(data)
    return path


def test_latin1_gmt_names_file_line_and_byte(tmp_path):
    gmt = _write(tmp_path / "sets.gmt", b"A\td\tCD8A\tGZMB\nB\td\tM\xfcller\tPRF1\n")
    with pytest.raises(InputError) as info:
        read_gmt(gmt)
    assert str(info.value) == (
        f"{gmt}, line 2: the GMT file is not UTF-8 text (byte 0xfc at position 6 of the line; "
        "a Latin-1 or Windows file, or not a text file at all). Save it as UTF-8 text."
    )


def test_gmt_with_byte_order_mark_and_gzip_reads(tmp_path):
    gmt = _write(tmp_path / "sets.gmt.gz", gzip.compress("\ufeffA\td\tCD8A\r\n".encode()))
    assert read_gmt(gmt) == {"A": ["CD8A"]}


def test_truncated_gzip_gmt_is_named(tmp_path):
    whole = gzip.compress(b"".join(b"SET%d\td\tCD8A\tGZMB\n" % i for i in range(2000)))
    gmt = _write(tmp_path / "sets.gmt.gz", whole[: len(whole) // 2])
    with pytest.raises(InputError, match=r"sets\.gmt\.gz, after line \d+: the GMT file is a "):
        read_gmt(gmt)


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        (b"A\td\tCD8A\nB\tdescription only\n", "line 2: gene set 'B' has no genes"),
        (b"A CD8A GZMB\n", "line 1: the line has no tab"),
        (b"A\td\tCD8A\n\td\tGZMB\n", "line 2: the gene set has no name"),
        (
            b"A\td\tCD8A\n# B\nA\td\tGZMB\n",
            "line 3: gene set 'A' is defined twice (first on line 1)",
        ),
    ],
    ids=["no genes", "no tab", "no name", "twice"],
)
def test_gmt_line_problems_name_file_and_line(tmp_path, content, problem):
    gmt = _write(tmp_path / "sets.gmt", content)
    with pytest.raises(InputError) as info:
        read_gmt(gmt)
    assert str(info.value).startswith(f"{gmt}, {problem}")


def test_empty_gmt_is_a_warning_or_an_error_as_asked(tmp_path, caplog):
    gmt = _write(tmp_path / "sets.gmt", b"# nothing here\n\n")
    with caplog.at_level(logging.WARNING, logger="cd8exo"):
        assert read_gmt(gmt) == {}
    assert f"{gmt} contains no gene sets" in caplog.text
    with pytest.raises(InputError, match=r"sets\.gmt: the GMT file contains no gene set"):
        read_gmt(gmt, allow_empty=False)


def test_missing_gmt(tmp_path):
    with pytest.raises(InputError, match=r"The GMT file .*nope\.gmt does not exist"):
        read_gmt(tmp_path / "nope.gmt")


def test_include_of_an_unknown_set_and_a_set_in_two_files():
    with pytest.raises(
        InputError, match=r"signatures\.include names set.* not found.*: B; available: A"
    ):
        select_signatures({"a.gmt": {"A": ["X"]}}, include=["B"])
    with pytest.raises(InputError, match=r"'A' is in both a\.gmt and b\.gmt"):
        select_signatures({"a.gmt": {"A": ["X"]}, "b.gmt": {"A": ["Y"]}})


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "The target gene table {path} is empty; it needs a header line"),
        (b"gene\n", "{path}: the target gene table has no rows; add one line per target gene."),
        (
            b"symbol\tnote\nPLP2\tx\n",
            "The target gene table {path} lacks the column(s) ['gene']; its columns are "
            "['symbol', 'note']. Add a header line with these names (tab-separated).",
        ),
        (b"gene\tnote\nPLP2\tM\xfcller\n", "{path}, line 2: the target gene table is not UTF-8"),
        (b"gene\tn\nPLP2\ta\n \tb\nCD274\tc\n", "{path}: the gene column is empty on line(s) [3]"),
        (
            b"gene\tnote\nPLP2\tx\tEXTRA\tMORE\n",
            "The target gene table {path} has a row with more fields than its header line",
        ),
        (b"gene\tnote\nA\tb\nC\td\te\n", "The target gene table {path} is not a tab-separated"),
    ],
    ids=["empty file", "no rows", "no gene column", "latin-1", "empty gene", "long row", "ragged"],
)
def test_target_table_problems(tmp_path, content, message):
    path = _write(tmp_path / "targets.tsv", content)
    with pytest.raises(InputError) as info:
        read_targets(path)
    assert str(info.value).startswith(message.format(path=path))
