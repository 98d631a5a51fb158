"""What a file is, from its first bytes: the checks run on every input before it is read.

The dataset sheet names files by what they should be (an ``.h5ad``, a 10x folder, a
text matrix, a cell table); a download that returned a web page, a truncated copy, a CSV
saved under an ``.h5ad`` name or an empty file must stop with a message that names the
file and says what it looks like, not with a library's traceback. The checks here read
a few kilobytes of each file (never the whole of it), so they run at start-up, when the
sheet is validated (:func:`cd8exo.config.validate_datasets`), and again when a file is
read (:mod:`cd8exo.io.local`), and they never change a file.

Every ``*_problem`` function returns ``None`` for a file that looks right, else one
sentence (without the file name) saying what was found and what to do.
"""

from __future__ import annotations

import gzip
import os
import re
import zlib
from pathlib import Path

from cd8exo.errors import InputError

__all__ = [
    "WHITESPACE",
    "describe_start",
    "detect_separator",
    "folder_10x_problems",
    "h5ad_problem",
    "require",
    "separator_problem",
    "table_separator",
    "text_problem",
]

HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"
GZIP_MAGIC = b"\x1f\x8b"

#: The separator of a text matrix whose fields are separated by runs of spaces or tabs.
WHITESPACE = r"\s+"

#: Bytes inspected at the start of a file (decompressed, for gzip).
_HEAD_BYTES = 65536

#: gzip files up to this size are decompressed whole at start-up to find a truncation
#: (about 0.1 s); larger ones are checked when they are read.
_VERIFY_GZIP_BYTES = 4 << 20

#: 10x file names: role -> accepted names (one of them must be present, not two).
TENX_FILES = {
    "count matrix": ("matrix.mtx", "matrix.mtx.gz"),
    "gene/feature list": ("features.tsv", "features.tsv.gz", "genes.tsv", "genes.tsv.gz"),
    "barcode list": ("barcodes.tsv", "barcodes.tsv.gz"),
}

_SIGNATURES = (
    (HDF5_SIGNATURE, "an HDF5 file"),
    (GZIP_MAGIC, "gzip-compressed"),
    (b"PK\x03\x04", "a zip archive"),
    (b"BZh", "bzip2-compressed"),
    (b"\xfd7zXZ\x00", "xz-compressed"),
    (b"\x28\xb5\x2f\xfd", "zstd-compressed"),
    (b"%PDF", "a PDF document"),
    (b"\x89PNG", "a PNG image"),
    (b"%%MatrixMarket", "a Matrix Market matrix (10x matrix.mtx)"),
    (b"RDX", "an R data file (.rds/.RData)"),
    (b"\x93NUMPY", "a NumPy array file"),
)


# --------------------------------------------------------------------------- #
# Reading the start of a file
# --------------------------------------------------------------------------- #
def _head(path: Path, size: int = _HEAD_BYTES) -> bytes:
    with open(path, "rb") as handle:
        return handle.read(size)


def _gunzipped_head(path: Path, size: int = _HEAD_BYTES) -> tuple[bytes, str | None]:
    """The first (up to ``size``) decompressed bytes, and a problem if none can be read."""
    raw = _head(path, max(4 * size, _HEAD_BYTES))
    try:
        head = zlib.decompressobj(16 + zlib.MAX_WBITS).decompress(raw, size)
    except zlib.error as error:
        return b"", f"starts like gzip but is not a readable gzip stream ({error})"
    if not head and len(raw) < 64:
        return b"", "is gzip-compressed but ends within its first block: the file is truncated"
    return head, None


def _gzip_truncated(path: Path) -> str | None:
    """Whether a gzip file ends before its end marker (checked for files up to 4 MB only)."""
    if path.stat().st_size > _VERIFY_GZIP_BYTES:
        return None  # too large to decompress at start-up: the reader checks it
    try:
        with gzip.open(path, "rb") as handle:
            while handle.read(1 << 20):
                pass
    except EOFError:
        return (
            "is a truncated gzip file: its compressed data end before the gzip end marker "
            "(an interrupted copy or download?); copy or download it again"
        )
    except (OSError, zlib.error) as error:
        return f"is a damaged gzip file ({error}); copy or download it again"
    return None


def _looks_like_html(head: bytes) -> bool:
    text = head.lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    return text.startswith((b"<!doctype html", b"<html", b"<head", b"<body")) or (
        text.startswith(b"<") and b"<html" in text[:1024]
    )


def _first_line(head: bytes) -> str:
    text = head.decode("utf-8", errors="replace").lstrip("\ufeff")
    return text.splitlines()[0] if text.strip() else ""


def _shown(line: str, width: int = 40) -> str:
    return repr(line if len(line) <= width else line[:width] + "...")


def describe_start(head: bytes, *, with_start: bool = True) -> str:
    """What the first bytes of a file look like, as a phrase (``"an HTML page ..."``).

    ``head`` is the file's first bytes (after decompression for a gzip file whose
    content is described); text is described with its first line unless ``with_start``
    is False.
    """
    if not head:
        return "empty (0 bytes)"
    for signature, what in _SIGNATURES:
        if head.startswith(signature):
            return what
    if _looks_like_html(head):
        return (
            "an HTML page (a web page saved instead of the data: a failed, redirected or "
            "login-protected download?)"
        )
    if head.lstrip().startswith(b"<?xml"):
        return "an XML document"
    if b"\x00" in head[:4096]:
        return f"binary data (first bytes {head[:8].hex(' ')})"
    line = _first_line(head)
    kind = {"\t": "tab-separated text", ",": "comma-separated text (a CSV)"}.get(
        _separator_of(line) or "", "text"
    )
    return f"{kind} starting with {_shown(line)}" if with_start else kind


def _separator_of(line: str) -> str | None:
    if "\t" in line:
        return "\t"
    if "," in line:
        return ","
    if len(line.split()) > 1:
        return WHITESPACE
    return None


# --------------------------------------------------------------------------- #
# Checks
# --------------------------------------------------------------------------- #
def _kind_problem(path: Path, *, want: str) -> str | None:
    """Missing, a folder where a file is wanted, or empty."""
    if not path.exists():
        return "does not exist"
    if path.is_dir():
        return f"is a folder, not a file; {want}"
    if path.stat().st_size == 0:
        return f"is empty (0 bytes); {want}"
    if not os.access(path, os.R_OK):
        return "cannot be read (permission denied); make it readable (chmod +r)"
    return None


def h5ad_problem(path: str | Path) -> str | None:
    """Problem with a file that should be an ``.h5ad`` (HDF5) file, or None.

    Checks: it exists, is a file, is not empty, starts with the HDF5 signature, and is
    at least as long as the end-of-file address its HDF5 superblock records (a shorter
    file is truncated: an interrupted copy or download).
    """
    path = Path(path)
    want = "format 'h5ad' expects an AnnData .h5ad file"
    problem = _kind_problem(path, want=want)
    if problem is not None:
        if path.is_dir() and any((path / n).exists() for n in TENX_FILES["count matrix"]):
            problem += " (this folder holds a 10x matrix.mtx: use format '10x_mtx')"
        elif path.is_dir() and ((path / ".zattrs").exists() or (path / "zarr.json").exists()):
            problem += (
                " (this folder is a zarr store: convert it with "
                "anndata.read_zarr(path).write_h5ad('file.h5ad'))"
            )
        return problem
    head = _head(path, 4096)
    # HDF5 allows a user block of 512, 1024, 2048 ... bytes before the superblock
    offset = next((n for n in (0, 512, 1024, 2048) if head[n:].startswith(HDF5_SIGNATURE)), 0)
    head = head[offset:]
    if not head.startswith(HDF5_SIGNATURE):
        found, hint = describe_start(head, with_start=False), _not_hdf5_hint(path, head)
        if _is_text(found):
            return f"starts with {_shown(_first_line(head))} - {found}, not HDF5{hint}"
        return f"is {found}, not HDF5{hint}"
    size, needed = path.stat().st_size, _hdf5_stored_size(head)
    if needed is not None and size < needed:
        return (
            f"is truncated: {size:,} bytes, but its HDF5 header says the file is {needed:,} "
            "bytes (an interrupted copy or download?); copy or download it again"
        )
    return None


def _not_hdf5_hint(path: Path, head: bytes) -> str:
    if head.startswith(GZIP_MAGIC):
        inner, _ = _gunzipped_head(path, 8)
        if inner.startswith(HDF5_SIGNATURE):
            return f" (a gzip-compressed h5ad: decompress it first, e.g. gunzip -k {path.name})"
        return " (decompress it and check what it holds)"
    if _looks_like_html(head) or head[:1] == b"\x00" or b"\x00" in head[:4096]:
        return "; download or export the .h5ad again"
    if _separator_of(_first_line(head)) is not None:
        return (
            "; a genes x cells text matrix is read with format 'text_matrix' (with a "
            "cell_table), or convert it to .h5ad"
        )
    return "; give the AnnData .h5ad file (anndata.AnnData.write_h5ad)"


def _hdf5_stored_size(head: bytes) -> int | None:
    """The end-of-file address recorded in an HDF5 superblock (None if unknown).

    ``head`` starts at the superblock. Versions 0/1 store (base, free-space, end-of-file,
    driver) addresses after 24 (v0) or 28 (v1) bytes; versions 2/3 store (base,
    extension, end-of-file) after 12. The library writes the file's size there (a user
    block included), so a shorter file has lost its end.
    """
    if len(head) < 16:
        return None
    version = head[8]
    if version in (0, 1):
        size_of_offsets = head[13]
        eof_at = (24 if version == 0 else 28) + 2 * size_of_offsets
    elif version in (2, 3):
        size_of_offsets = head[9]
        eof_at = 12 + 2 * size_of_offsets
    else:
        return None
    if size_of_offsets not in (2, 4, 8) or len(head) < eof_at + size_of_offsets:
        return None
    eof = int.from_bytes(head[eof_at : eof_at + size_of_offsets], "little")
    if eof == (1 << (8 * size_of_offsets)) - 1:  # the undefined address
        return None
    return eof


def text_problem(path: str | Path, *, what: str = "a text table") -> str | None:
    """Problem with a file that should hold delimited text (plain or gzip), or None.

    Checks: it exists, is a file, is not empty; a name ending in ``.gz`` starts with the
    gzip magic bytes, and a gzip file up to 4 MB is whole (not truncated); the
    (decompressed) start is text, not HTML, HDF5, an archive or other binary data.
    """
    path = Path(path)
    problem = _kind_problem(path, want=f"expected {what}")
    if problem is not None:
        return problem
    head = _head(path)
    named_gz = path.name.lower().endswith(".gz")
    if named_gz and not head.startswith(GZIP_MAGIC):
        return (
            f"is named .gz but is not gzip-compressed: it is {describe_start(head)}; "
            "compress it (gzip) or remove the .gz from its name"
        )
    if head.startswith(GZIP_MAGIC):
        head, problem = _gunzipped_head(path)
        problem = problem or _gzip_truncated(path)
        if problem is not None:
            return problem if "again" in problem else f"{problem}; copy or download it again"
        if not head:
            return f"is an empty gzip file; expected {what}"
    found = describe_start(head)
    if not _is_text(found):
        return f"is {found}, not {what}"
    return None


def _is_text(description: str) -> bool:
    return description.startswith(("tab-separated", "comma-separated", "text"))


def mtx_problem(path: Path) -> str | None:
    """Problem with a 10x ``matrix.mtx[.gz]``, or None (it must start ``%%MatrixMarket``)."""
    problem = _kind_problem(path, want="expected a Matrix Market file")
    if problem is not None:
        return problem
    head = _head(path, 64)
    if path.name.endswith(".gz"):
        if not head.startswith(GZIP_MAGIC):
            return f"is named .gz but is not gzip-compressed: it is {describe_start(head)}"
        head, problem = _gunzipped_head(path, 64)
        problem = problem or _gzip_truncated(path)
        if problem is not None:
            return problem if "again" in problem else f"{problem}; copy or download it again"
    if not head.startswith(b"%%MatrixMarket"):
        return f"is {describe_start(head)}, not a Matrix Market file (first line %%MatrixMarket)"
    return None


def folder_10x_problems(folder: str | Path) -> list[str]:
    """Problems with a folder that should hold a 10x Matrix Market export.

    It must hold exactly one count matrix (``matrix.mtx[.gz]``) and one gene list
    (``features.tsv[.gz]`` or ``genes.tsv[.gz]``), and at most one barcode list, each
    of them readable (not empty, gzip where named ``.gz``, not an HTML page).
    """
    folder = Path(folder)
    if not folder.exists():
        return ["does not exist"]
    if not folder.is_dir():
        kind = describe_start(_head(folder, 4096))
        return [
            f"is not a folder (it is a file: {kind}); format '10x_mtx' expects a folder with "
            "matrix.mtx[.gz], features.tsv[.gz] or genes.tsv[.gz] (and barcodes.tsv[.gz])"
        ]
    problems = []
    present = sorted(p.name for p in folder.iterdir())
    for role, names in TENX_FILES.items():
        found = [name for name in names if (folder / name).exists()]
        if not found and role != "barcode list":
            problems.append(
                f"has no {role} ({' or '.join(names)}); the folder holds {present[:20]}. "
                "Rename the file to its 10x name or point 'path' at the right folder"
            )
        elif len(found) > 1:
            problems.append(
                f"holds several files for its {role} {found}; keep only one (e.g. the .gz) so that it is "
                "clear which to read"
            )
        for name in found:
            check = mtx_problem if role == "count matrix" else text_problem
            problem = check(folder / name)
            if problem is not None:
                problems.append(f"has a bad {name}: it {problem}")
    return problems


def require(problem: str | None, *, what: str, path: str | Path) -> None:
    """Raise :class:`InputError` ``"<what> <path> <problem>."`` when there is a problem."""
    if problem is not None:
        msg = f"{what} {path} {problem}."
        raise InputError(msg)


# --------------------------------------------------------------------------- #
# Delimited text
# --------------------------------------------------------------------------- #
def detect_separator(path: str | Path, *, what: str = "text matrix") -> str:
    """The field separator of a delimited text file (plain or gzip): tab, comma or whitespace.

    Decided on the header line: tab if it holds a tab, else comma if it holds a comma,
    else runs of whitespace (the rows are checked against the header when read).

    Raises
    ------
    InputError
        When no separator splits the header line into at least two fields.
    """
    sep, problem = _separator(Path(path))
    if sep is None:
        msg = f"The {what} {path} {problem}."
        raise InputError(msg)
    return sep


def table_separator(path: str | Path) -> str:
    """The separator of a table with a header line: a comma for a ``.csv`` name or a
    header holding commas and no tab, else a tab."""
    path = Path(path)
    if path.name.lower().endswith((".csv", ".csv.gz")):
        return ","
    head = _head(path)
    if head.startswith(GZIP_MAGIC):
        head, _ = _gunzipped_head(path)
    header = _first_line(head)
    return "," if "," in header and "\t" not in header else "\t"


def separator_problem(path: str | Path) -> str | None:
    """Why no separator is found in a delimited text file (None when one is)."""
    return _separator(Path(path))[1]


def _separator(path: Path) -> tuple[str | None, str | None]:
    head = _head(path)
    if head.startswith(GZIP_MAGIC):
        head, _ = _gunzipped_head(path)
    lines = [line for line in head.decode("utf-8", errors="replace").splitlines() if line.strip()]
    header = lines[0].lstrip("\ufeff") if lines else ""
    for sep in ("\t", ",", WHITESPACE):
        if (sep == WHITESPACE or sep in header) and len(_split(header, sep)) >= 2:
            return sep, None
    problem = (
        f"has no tab, comma or whitespace separating its fields (first line {_shown(header)}); "
        "expected a header of cell ids, then one line per gene: its symbol and one value per cell"
    )
    return None, problem


def _split(line: str, sep: str) -> list[str]:
    return re.split(r"\s+", line.strip()) if sep == WHITESPACE else line.split(sep)
