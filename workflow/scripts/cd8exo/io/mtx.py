"""A Matrix Market count matrix (10x layout: genes x cells) into a CSR ``.h5ad``, a block at a time.

``scipy.io.mmread`` holds every entry in memory, as COO and again as CSR: a million cells of
~1,500 detected genes are 1.5 billion entries, ~18 GB as COO. :func:`write_mtx_h5ad`
instead reads the text a block of entries at a time (pandas' C parser) and appends each
finished block of cells to the ``X`` group of an ``.h5ad`` (CSR, cells x genes, float32),
so memory is bounded by the block, whatever the file's size:

- a file whose entries come cell by cell (column-major, as Cell Ranger and
  ``scipy.io.mmwrite`` of a genes x cells CSC matrix write them) is read once;
- any other order is detected at the first entry out of order; the file is then read once
  to count each cell's entries and once per window of cells holding at most
  ``window_values`` entries (a few passes for 10^9 entries).

Within a cell, genes are sorted and duplicated (gene, cell) entries are summed, as the
COO -> CSR conversion of the in-memory reader does, so both give the same matrix.
"""

from __future__ import annotations

import gzip
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import scipy.sparse as sp

from cd8exo._utils import is_gzip
from cd8exo.errors import InputError
from cd8exo.io.h5csr import CsrWriter, write_anndata_parts

logger = logging.getLogger(__name__)

__all__ = ["MtxHeader", "read_mtx_header", "write_mtx_h5ad"]

#: Entries parsed per block of text.
BLOCK_ENTRIES = 4_000_000

#: Entries held at once when an unordered file is read window by window.
WINDOW_VALUES = 100_000_000

_FIELDS = ("integer", "real", "pattern")


@dataclass(frozen=True)
class MtxHeader:
    """The banner and size line of a Matrix Market coordinate file."""

    n_rows: int
    n_cols: int
    n_entries: int
    field: str
    #: lines before the first entry (banner, comments, size line)
    header_lines: int


def read_mtx_header(path: Path) -> MtxHeader:
    """The header of ``path`` (plain or gzip); an :class:`InputError` naming what is wrong."""
    path = Path(path)
    with gzip.open(path, "rb") if is_gzip(path) else path.open("rb") as handle:
        banner = handle.readline().decode("utf-8", "replace").strip()
        words = banner.lower().split()
        if len(words) != 5 or words[:3] != ["%%matrixmarket", "matrix", "coordinate"]:
            msg = (
                f"The count matrix {path} is not a Matrix Market coordinate file: its first "
                f"line is {banner[:80]!r}, not '%%MatrixMarket matrix coordinate integer "
                "general'. Export the matrix again (scipy.io.mmwrite, Cell Ranger, "
                "Matrix::writeMM)."
            )
            raise InputError(msg)
        if words[3] not in _FIELDS or words[4] != "general":
            msg = (
                f"The count matrix {path} holds '{words[3]} {words[4]}' values; a count "
                "matrix is 'integer general' (or 'real general' / 'pattern general')."
            )
            raise InputError(msg)
        for n_lines, raw in enumerate(handle, start=2):
            line = raw.decode("utf-8", "replace").strip()
            if not line or line.startswith("%"):
                continue
            try:
                n_rows, n_cols, n_entries = (int(word) for word in line.split()[:3])
            except ValueError:
                break
            return MtxHeader(n_rows, n_cols, n_entries, words[3], n_lines)
    msg = (
        f"The count matrix {path} has no size line ('<genes> <cells> <entries>') after its "
        "banner and comments; the file is truncated or not a Matrix Market file."
    )
    raise InputError(msg)


def _blocks(
    path: Path, header: MtxHeader, *, block_entries: int
) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """(cells, genes, values) of ``block_entries`` entries at a time, 0-based, checked."""
    pattern = header.field == "pattern"
    names = ["gene", "cell"] if pattern else ["gene", "cell", "value"]
    dtypes = {"gene": np.int64, "cell": np.int64, "value": np.float32}
    seen = 0
    reader = None
    while True:
        try:
            if reader is None:
                reader = pd.read_csv(
                    path,
                    sep=r"\s+",
                    header=None,
                    names=names,
                    usecols=range(len(names)),
                    dtype={name: dtypes[name] for name in names},
                    skiprows=header.header_lines,
                    chunksize=block_entries,
                    compression="gzip" if is_gzip(path) else None,
                )
            block = next(reader, None)
        except (ValueError, EOFError, OSError) as error:
            msg = (
                f"The count matrix {path} cannot be read past entry {seen:,} of "
                f"{header.n_entries:,} ({type(error).__name__}: {error}); each line after "
                "the size line must be '<gene> <cell> <value>'. The file may be truncated: "
                "download or export it again."
            )
            raise InputError(msg) from error
        if block is None:
            break
        genes = block["gene"].to_numpy() - 1
        cells = block["cell"].to_numpy() - 1
        values = (
            np.ones(len(block), dtype=np.float32)
            if pattern
            else block["value"].to_numpy(np.float32)
        )
        _check_block(path, header, cells=cells, genes=genes, values=values, first=seen)
        seen += len(block)
        yield cells, genes, values
    if seen != header.n_entries:
        msg = (
            f"The count matrix {path} has {seen:,} entries but its size line announces "
            f"{header.n_entries:,}; the file is truncated or was edited. Download or export "
            "it again."
        )
        raise InputError(msg)


def _check_block(
    path: Path,
    header: MtxHeader,
    *,
    cells: np.ndarray,
    genes: np.ndarray,
    values: np.ndarray,
    first: int,
) -> None:
    bad = (genes < 0) | (genes >= header.n_rows) | (cells < 0) | (cells >= header.n_cols)
    if bad.any():
        k = int(np.flatnonzero(bad)[0])
        msg = (
            f"The count matrix {path}: entry {first + k + 1:,} is at gene {genes[k] + 1}, "
            f"cell {cells[k] + 1}, outside the {header.n_rows} genes x {header.n_cols} cells "
            "of its size line; the file is damaged or its size line is wrong."
        )
        raise InputError(msg)
    if not np.isfinite(values).all():
        msg = f"The count matrix {path} has NaN or infinite values (entries {first + 1:,}-)."
        raise InputError(msg)


class _EntryWriter:
    """Entries of whole cells, each cell after every cell written before, as CSR rows."""

    def __init__(self, group: h5py.Group, *, n_genes: int) -> None:
        self.n_genes = n_genes
        self.csr = CsrWriter(group, n_genes, chunks=1 << 20)

    def append(self, cells: np.ndarray, genes: np.ndarray, values: np.ndarray) -> None:
        if not len(cells):
            return
        keys = cells * self.n_genes + genes
        if not (np.diff(keys) > 0).all():  # genes out of order within a cell, or repeated
            order = np.argsort(keys, kind="stable")
            keys, values = keys[order], values[order]
            keys, starts = np.unique(keys, return_index=True)
            values = np.add.reduceat(values, starts) if len(values) else values
        cells, genes = np.divmod(keys, self.n_genes)
        first = self.csr.n_rows  # cells without entries since the last block stay empty rows
        n_rows = int(cells[-1]) + 1 - first
        indptr = np.zeros(n_rows + 1, dtype=np.int64)
        np.cumsum(np.bincount(cells - first, minlength=n_rows), out=indptr[1:])
        block = sp.csr_matrix(
            (values.astype(np.float32, copy=False), genes, indptr), shape=(n_rows, self.n_genes)
        )
        self.csr.append(block)


def _append_in_order(
    path: Path, header: MtxHeader, out: _EntryWriter, *, block_entries: int
) -> bool:
    """One pass, cell by cell; False (nothing usable written) at the first entry out of order."""
    held: tuple[np.ndarray, ...] | None = None  # the last cell of a block may go on
    last = -1
    for cells, genes, values in _blocks(path, header, block_entries=block_entries):
        if held is not None:
            cells, genes, values = (
                np.concatenate(pair) for pair in zip(held, (cells, genes, values), strict=True)
            )
        if (len(cells) and cells[0] <= last) or (np.diff(cells) < 0).any():
            return False
        cut = int(np.searchsorted(cells, cells[-1], side="left")) if len(cells) else 0
        out.append(cells[:cut], genes[:cut], values[:cut])
        if cut:
            last = int(cells[cut - 1])
        held = (cells[cut:], genes[cut:], values[cut:])
    if held is not None:
        out.append(*held)
    return True


def _append_by_windows(
    path: Path, header: MtxHeader, out: _EntryWriter, *, block_entries: int, window_values: int
) -> None:
    """An unordered file: count the entries of each cell, then a pass per window of cells."""
    counts = np.zeros(header.n_cols, dtype=np.int64)
    for cells, _, _ in _blocks(path, header, block_entries=block_entries):
        counts += np.bincount(cells, minlength=header.n_cols)
    bounds = np.concatenate([[0], np.cumsum(counts)])
    start, windows = 0, []
    while start < header.n_cols:
        stop = int(np.searchsorted(bounds, bounds[start] + window_values, side="right")) - 1
        stop = min(header.n_cols, max(stop, start + 1))
        windows.append((start, stop))
        start = stop
    logger.info(
        "%s: entries not in cell order; read in %d window(s) of cells (%d entries each at most)",
        path,
        len(windows),
        window_values,
    )
    for start, stop in windows:
        parts = [
            (cells[keep], genes[keep], values[keep])
            for cells, genes, values in _blocks(path, header, block_entries=block_entries)
            for keep in [(cells >= start) & (cells < stop)]
            if keep.any()
        ]
        if parts:
            out.append(*(np.concatenate(column) for column in zip(*parts, strict=True)))


def write_mtx_h5ad(
    matrix: Path,
    out: Path,
    *,
    obs: pd.DataFrame,
    var: pd.DataFrame,
    header: MtxHeader | None = None,
    block_entries: int = BLOCK_ENTRIES,
    window_values: int = WINDOW_VALUES,
) -> None:
    """Write the genes x cells Matrix Market ``matrix`` as the cells x genes CSR ``X`` of
    the ``.h5ad`` ``out`` (float32), with ``obs`` (one row per matrix column) and ``var``
    (one row per matrix row).

    ``out`` is written in place (give a temporary path and move it when whole).

    Raises
    ------
    InputError
        A damaged file: a bad header, an entry outside the matrix, an unreadable line, or
        fewer or more entries than the size line announces.
    """
    matrix, out = Path(matrix), Path(out)
    header = header or read_mtx_header(matrix)
    if (len(obs), len(var)) != (header.n_cols, header.n_rows):
        msg = (
            f"write_mtx_h5ad: {len(obs)} cells x {len(var)} genes given for {matrix}, "
            f"whose size line has {header.n_cols} cells x {header.n_rows} genes."
        )
        raise ValueError(msg)
    for attempt in ("in order", "by windows"):
        with h5py.File(out, "w") as dst:
            write_anndata_parts(dst, obs=obs, var=var)
            writer = _EntryWriter(dst.create_group("X"), n_genes=header.n_rows)
            if attempt == "in order":
                done = _append_in_order(matrix, header, writer, block_entries=block_entries)
            else:
                _append_by_windows(
                    matrix,
                    header,
                    writer,
                    block_entries=block_entries,
                    window_values=window_values,
                )
                done = True
            if done:
                writer.csr.close(n_rows=header.n_cols)
                logger.info(
                    "%s: %d entries of %d genes x %d cells written as CSR to %s (%s)",
                    matrix,
                    writer.csr.nnz,
                    header.n_rows,
                    header.n_cols,
                    out,
                    attempt,
                )
                return
