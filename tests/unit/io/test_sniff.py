"""cd8exo.io.sniff: what a file is from its first bytes (the start-up checks of issue 12)."""

from __future__ import annotations

import gzip

import h5py
import numpy as np
import pytest

from cd8exo.errors import InputError
from cd8exo.io import sniff


@pytest.mark.parametrize(
    ("userblock", "libver"), [(0, "earliest"), (512, "earliest"), (0, "latest"), (1024, "latest")]
)
def test_hdf5_with_or_without_user_block_and_any_superblock_is_whole_until_cut(
    tmp_path, userblock, libver
):
    path = tmp_path / "x.h5ad"
    with h5py.File(path, "w", userblock_size=userblock, libver=libver) as handle:
        handle["x"] = np.arange(1000)
    assert sniff.h5ad_problem(path) is None
    path.write_bytes(path.read_bytes()[:-100])
    assert "is truncated" in sniff.h5ad_problem(path)


def test_gzip_is_verified_whole_only_up_to_the_start_up_limit(tmp_path, monkeypatch):
    path = tmp_path / "m.tsv.gz"
    data = gzip.compress(b"".join(b"G%d\t%d\t%d\n" % (i, i, i + 1) for i in range(20000)))
    path.write_bytes(data[: len(data) // 2])
    assert "is a truncated gzip file" in sniff.text_problem(path)
    monkeypatch.setattr(sniff, "_VERIFY_GZIP_BYTES", len(data) // 4)
    assert sniff.text_problem(path) is None  # too large to check at start-up: the reader does


@pytest.mark.parametrize(
    ("line", "sep"),
    [("gene\tc1\tc2", "\t"), ("gene,c1,c2", ","), ("gene  c1 c2", sniff.WHITESPACE)],
)
def test_separator_is_detected_from_the_header(tmp_path, line, sep):
    path = tmp_path / "m.txt"
    path.write_text(f"{line}\nA 1 2\n")
    assert sniff.detect_separator(path) == sep


def test_no_separator_is_an_input_error_naming_the_file(tmp_path):
    path = tmp_path / "m.txt"
    path.write_text("gene\nA\n")
    with pytest.raises(InputError, match=r"m\.txt has no tab, comma or whitespace"):
        sniff.detect_separator(path)


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (b"", "empty (0 bytes)"),
        (b"PK\x03\x04rest", "a zip archive"),
        (b"  <!DOCTYPE HTML>\n<html>", "an HTML page"),
        (b"\x00\x01\x02\x03binary", "binary data"),
        (b"a,b,c\n1,2,3\n", "comma-separated text (a CSV) starting with 'a,b,c'"),
        (b"%%MatrixMarket matrix", "a Matrix Market matrix"),
    ],
)
def test_describe_start(content, expected):
    assert expected in sniff.describe_start(content)
