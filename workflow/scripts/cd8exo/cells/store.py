"""The cell matrix on disk, read a block of cells at a time.

A dataset's matrix is written once, by ``prepare_dataset`` (harmonised values, CSR float32
in an ``.h5ad``). Every later rule reads it from there through :class:`Cells`: the rows of
the cells it works on (QC-kept, annotated), normalised on the fly, a block of about
``max_values`` stored values at a time, so that memory is bounded by the block and not by
the dataset (a million cells of ~1,500 detected genes are ~12 GB as CSR). The rules in
between write only per-cell tables (``obs``), never another copy of the matrix.

:class:`Cells` behaves like the AnnData the package's functions take where they only read
(``obs``, ``var_names``, ``uns``, ``X``, ``n_obs``, row subsets ``cells[mask]``), and
:meth:`Cells.to_memory` loads a subset of cells as a real AnnData (``X`` = ln(CP10k+1),
``layers["counts"]``) for the steps that need one (graph, UMAP, CNV) on a subsample.
"""

from __future__ import annotations

import itertools
import logging
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

import anndata as ad
import h5py
import numpy as np
import pandas as pd
import scipy.sparse as sp
from anndata.io import read_elem

from cd8exo._utils import atomic_write
from cd8exo.errors import InputError

if TYPE_CHECKING:
    from collections.abc import Iterator

    from cd8exo.io.tables import PathLike

logger = logging.getLogger(__name__)

__all__ = [
    "CHUNK_VALUES",
    "CellMatrix",
    "Cells",
    "column_sums",
    "iter_rows",
    "malignant_cells",
    "open_cells",
    "write_cells",
    "write_matrix",
]

#: Stored values (non-zero entries) per block of cells.
CHUNK_VALUES = 4_000_000

#: The transforms a :class:`CellMatrix` applies to each block as it is read.
TRANSFORMS = ("none", "log1p_cp10k", "expm1", "tpm_from_log2")

_TARGET_SUM = 1e4


@dataclass(frozen=True)
class CellMatrix:
    """Rows ``rows`` of the CSR matrix ``X`` of an ``.h5ad`` file, transformed as read.

    Attributes
    ----------
    path
        The ``.h5ad`` holding ``X`` as CSR (``prepare_dataset``'s output).
    rows
        Positions (ascending) of the cells in the file.
    n_vars
        Number of genes.
    transform
        One of :data:`TRANSFORMS`: ``log1p_cp10k`` is ln(value / row total * 1e4 + 1)
        (counts -> the workflow's log-normalised values), ``expm1`` and ``tpm_from_log2``
        undo a log scale, ``none`` returns the stored values.
    """

    path: Path
    rows: np.ndarray
    n_vars: int
    transform: str = "none"
    indptr: np.ndarray = field(repr=False, default=None)  # the file's, int64

    @property
    def shape(self) -> tuple[int, int]:
        return (len(self.rows), self.n_vars)

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(np.float32)

    @property
    def nnz(self) -> int:
        """Stored values of the selected rows."""
        return int((self.indptr[self.rows + 1] - self.indptr[self.rows]).sum())

    def with_transform(self, transform: str) -> CellMatrix:
        if transform not in TRANSFORMS:
            msg = f"transform must be one of {TRANSFORMS}, got {transform!r}."
            raise ValueError(msg)
        return replace(self, transform=transform)

    def take(self, positions: np.ndarray) -> CellMatrix:
        """The rows at ``positions`` (of this matrix's rows; kept in file order)."""
        return replace(self, rows=np.sort(self.rows[np.asarray(positions)]))

    def blocks(self, *, max_values: int | None = None) -> Iterator[tuple[int, int, sp.csr_matrix]]:
        """``(start, stop, block)``: consecutive selected rows as CSR float32, transformed."""
        lengths = self.indptr[self.rows + 1] - self.indptr[self.rows]
        running = np.concatenate([[0], np.cumsum(lengths)])
        for start, stop in _bounds(running, len(self.rows), max_values=max_values or CHUNK_VALUES):
            yield start, stop, self.read(start, stop)

    def read(self, start: int = 0, stop: int | None = None) -> sp.csr_matrix:
        """Selected rows ``start:stop`` as one CSR float32 block, transformed."""
        rows = self.rows[start:stop]
        with h5py.File(self.path, "r") as f:
            block = _read_rows(f["X"], self.indptr, rows, n_vars=self.n_vars)
        return _transformed(block, self.transform)

    def to_csr(self) -> sp.csr_matrix:
        """All selected rows in memory (only for subsets known to be small)."""
        return self.read(0, None)


def _bounds(running: np.ndarray, n_rows: int, *, max_values: int) -> list[tuple[int, int]]:
    """Cut ``n_rows`` rows where the running count of stored values passes ``max_values``."""
    cuts = np.searchsorted(running, np.arange(max_values, running[-1], max_values))
    bounds = np.unique(np.concatenate([[0], cuts, [n_rows]])).astype(int)
    return list(itertools.pairwise(bounds.tolist()))


def _read_rows(
    group: h5py.Group, indptr: np.ndarray, rows: np.ndarray, *, n_vars: int
) -> sp.csr_matrix:
    """Rows ``rows`` (ascending) of an on-disk CSR group, read as few contiguous spans.

    Neighbouring selected rows are read in one span (and the rows between them dropped)
    unless the gap between them or the span itself grows past a bound: many small reads
    are slow (each decompresses a chunk of a compressed file), one huge read is memory.
    """
    if not len(rows):
        return sp.csr_matrix((0, n_vars), dtype=np.float32)
    starts, ends = indptr[rows], indptr[rows + 1]
    lengths = ends - starts
    # a read of an uncompressed file costs little; one of a compressed file a chunk's inflation
    compressed = group["data"].compression is not None
    max_gap = _MAX_GAP if compressed else _MAX_GAP_UNCOMPRESSED
    parts_d, parts_i = [], []
    for first, last in _spans(starts, ends, max_gap=max_gap):
        a, b = int(starts[first]), int(ends[last - 1])
        data, indices = group["data"][a:b], group["indices"][a:b]
        take = _row_positions(starts[first:last] - a, lengths[first:last])
        parts_d.append(data[take])
        parts_i.append(indices[take])
    data, indices = np.concatenate(parts_d), np.concatenate(parts_i)
    new_indptr = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    return sp.csr_matrix(
        (data.astype(np.float32, copy=False), indices, new_indptr), shape=(len(rows), n_vars)
    )


#: A gap (stored values) between selected rows above which they are read separately
#: (compressed file; uncompressed) ...
_MAX_GAP = 1_000_000
_MAX_GAP_UNCOMPRESSED = 50_000
#: ... and the most stored values one read spans.
_MAX_SPAN = 16_000_000


def _spans(starts: np.ndarray, ends: np.ndarray, *, max_gap: int) -> list[tuple[int, int]]:
    """Groups ``[first, last)`` of selected rows to read each as one span."""
    breaks = np.flatnonzero(starts[1:] - ends[:-1] > max_gap) + 1
    groups = []
    for group in np.split(np.arange(len(starts)), breaks):
        first = int(group[0])
        for position in group[1:]:
            if ends[position] - starts[first] > _MAX_SPAN:
                groups.append((first, int(position)))
                first = int(position)
        groups.append((first, int(group[-1]) + 1))
    return groups


def _row_positions(starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Positions ``starts[i] + 0 .. lengths[i]-1`` of every row, concatenated."""
    total = int(lengths.sum())
    offsets = np.repeat(starts - np.concatenate([[0], np.cumsum(lengths)[:-1]]), lengths)
    return np.arange(total, dtype=np.int64) + offsets


def log1p_scaled(
    block: sp.csr_matrix, *, target_sum: float = _TARGET_SUM
) -> tuple[np.ndarray, np.ndarray]:
    """ln(value / row total * ``target_sum`` + 1) of a CSR block's stored values.

    The workflow's one log-normalisation (ln(CP10k+1) by default), for the cells on disk
    and in memory alike (:func:`cd8exo.cells.normalise.log_normalise`). Returns the new
    values (float32, in ``block.data``'s order) and the row totals (float64); a row
    without counts stays all zero.
    """
    values = block.data.astype(np.float64)
    lengths = np.diff(block.indptr)
    totals = np.bincount(
        np.repeat(np.arange(block.shape[0]), lengths), weights=values, minlength=block.shape[0]
    )
    factors = np.divide(target_sum, totals, out=np.zeros_like(totals), where=totals > 0)
    return np.log1p(values * np.repeat(factors, lengths)).astype(np.float32), totals


def _transformed(block: sp.csr_matrix, transform: str) -> sp.csr_matrix:
    if transform == "none":
        return block
    if transform == "log1p_cp10k":
        block.data, _ = log1p_scaled(block)
        return block
    values = block.data.astype(np.float64)
    if transform == "expm1":
        block.data = np.expm1(values).astype(np.float32)
    else:  # tpm_from_log2: GEO Smart-seq2 tables are log2(TPM/10+1)
        block.data = (10.0 * (np.exp2(values) - 1.0)).astype(np.float32)
    return block


def iter_rows(x, *, max_values: int | None = None, chunk_size: int | None = None):
    """``(start, stop, block)`` over the cells of ``x`` (CSR, dense or :class:`CellMatrix`).

    Sparse input is sliced without copying its values; a :class:`CellMatrix` is read from
    disk block by block. A block holds ``chunk_size`` cells, or, when it is ``None``, about
    ``max_values`` stored values.
    """
    if chunk_size is not None and chunk_size < 1:
        msg = f"chunk_size must be a positive number of cells, got {chunk_size}."
        raise ValueError(msg)
    max_values = max_values or CHUNK_VALUES
    if isinstance(x, CellMatrix):
        if chunk_size is None:
            yield from x.blocks(max_values=max_values)
        else:
            for start in range(0, x.shape[0], chunk_size):
                stop = min(start + chunk_size, x.shape[0])
                yield start, stop, x.read(start, stop)
        return
    if sp.issparse(x) and x.format != "csr":
        x = sp.csr_matrix(x)
    n_cells = x.shape[0]
    if sp.issparse(x):
        indptr = np.asarray(x.indptr, dtype=np.int64)
        if chunk_size is None:
            bounds = _bounds(indptr, n_cells, max_values=max_values)
        else:
            edges = np.unique(np.concatenate([np.arange(0, n_cells, chunk_size), [n_cells]]))
            bounds = list(itertools.pairwise(edges.astype(int).tolist()))
        for start, stop in bounds:
            first, last = indptr[start], indptr[stop]
            chunk = sp.csr_matrix(
                (x.data[first:last], x.indices[first:last], indptr[start : stop + 1] - first),
                shape=(int(stop - start), x.shape[1]),
                copy=False,
            )
            yield int(start), int(stop), chunk
        return
    step = chunk_size or max(1, max_values // max(1, x.shape[1]))
    for start in range(0, n_cells, step):
        stop = min(start + step, n_cells)
        yield start, stop, sp.csr_matrix(np.asarray(x[start:stop]))


def column_sums(x, *, binary: bool = False, max_values: int | None = None) -> np.ndarray:
    """Per-gene sums over all cells of ``x`` in float64 (``binary``: cells with a value > 0)."""
    sums = np.zeros(x.shape[1])
    for _, _, block in iter_rows(x, max_values=max_values):
        weights = (block.data > 0).astype(np.float64) if binary else block.data.astype(np.float64)
        sums += np.bincount(block.indices, weights=weights, minlength=x.shape[1])
    return sums


@dataclass(frozen=True)
class Cells:
    """The cells a rule works on: their ``obs`` and their rows of the matrix on disk.

    Behaves like a read-only AnnData for the package's functions: ``obs``, ``var``,
    ``var_names``, ``obs_names``, ``uns``, ``n_obs``, ``n_vars``, ``shape``, ``layers``
    (empty), row subsets (``cells[mask]``) and ``X``, the log-normalised values as a
    :class:`CellMatrix`. :attr:`linear` gives the linear-scale values (counts, or the
    undone log scale) the pseudobulk and QC sum.
    """

    matrix: CellMatrix  # stored values, no transform
    obs: pd.DataFrame
    var: pd.DataFrame
    uns: dict

    @property
    def n_obs(self) -> int:
        return len(self.obs)

    @property
    def n_vars(self) -> int:
        return len(self.var)

    @property
    def shape(self) -> tuple[int, int]:
        return (self.n_obs, self.n_vars)

    @property
    def obs_names(self) -> pd.Index:
        return self.obs.index

    @property
    def var_names(self) -> pd.Index:
        return self.var.index

    @property
    def layers(self) -> dict:
        return {}

    @property
    def value_scale(self) -> str:
        return self.uns["cd8exo"]["value_scale"]

    @property
    def X(self) -> CellMatrix:
        """ln(CP10k+1) of counts; other scales as stored (they are log scales already)."""
        return self.matrix.with_transform("log1p_cp10k" if self.value_scale == "counts" else "none")

    @property
    def linear(self) -> CellMatrix:
        """Counts, or the values of a log scale brought back to linear (see linear_values)."""
        transform = {"counts": "none", "log1p_norm": "expm1", "log2_tpm10": "tpm_from_log2"}
        return self.matrix.with_transform(transform[self.value_scale])

    def __getitem__(self, mask) -> Cells:
        """The cells selected by a boolean mask or integer positions (kept in order)."""
        positions = np.asarray(mask)
        if positions.dtype == bool:
            positions = np.flatnonzero(positions)
        positions = np.sort(positions)
        return replace(
            self,
            matrix=replace(self.matrix, rows=self.matrix.rows[positions]),
            obs=self.obs.iloc[positions].copy(),
        )

    def to_memory(self) -> ad.AnnData:
        """These cells as an in-memory AnnData, as ``filter_cells`` used to write it.

        ``X`` is ln(CP10k+1) (or the stored log values), ``layers["counts"]`` holds the
        counts, ``uns["cd8exo"]["log_normalised"]`` is True.
        """
        stored = self.matrix.to_csr()
        info = dict(self.uns["cd8exo"])
        info["log_normalised"] = True
        adata = ad.AnnData(X=stored, obs=self.obs.copy(), var=self.var.copy(), uns={"cd8exo": info})
        if self.value_scale == "counts":
            adata.layers["counts"] = stored.copy()
            adata.X = _transformed(stored, "log1p_cp10k")
            info["target_sum"] = _TARGET_SUM
        return adata


def _obs_index(group: h5py.Group) -> pd.Index:
    """The index (cell ids) of an ``obs`` group of an ``.h5ad``, without its columns."""
    return pd.Index(read_elem(group[group.attrs["_index"]]))


def open_cells(matrix_path: PathLike, cells: PathLike | None = None) -> Cells:
    """The cells of a cell table (default: every cell) in ``prepare_dataset``'s matrix.

    Parameters
    ----------
    matrix_path
        A harmonised ``.h5ad`` with ``X`` stored as CSR (:func:`write_matrix`).
    cells
        An ``.h5ad`` without ``X`` written by :func:`write_cells` (e.g. ``filter_cells``'
        or ``annotate_cells``' output): the cells to use, their ``obs`` and ``uns``. Its
        cell ids must be cell ids of the matrix file.
    """
    path = Path(matrix_path)
    obs = None
    if cells is not None:
        with h5py.File(cells, "r") as f:
            obs = read_elem(f["obs"])
            cells_uns = read_elem(f["uns"]) if "uns" in f else {}
    with h5py.File(path, "r") as f:
        group = f["X"]
        encoding = group.attrs.get("encoding-type", "") if isinstance(group, h5py.Group) else ""
        if encoding != "csr_matrix":
            msg = (
                f"{path}: X is stored as {encoding or 'a dense array'}, not CSR; this file "
                "was not written by prepare_dataset. Re-run the workflow from prepare_dataset."
            )
            raise InputError(msg)
        indptr = group["indptr"][:].astype(np.int64)
        # with a cell table, only the matrix's cell ids are needed (its obs may be large)
        file_obs = read_elem(f["obs"]) if obs is None else None
        file_ids = file_obs.index if file_obs is not None else _obs_index(f["obs"])
        var = read_elem(f["var"])
        uns = read_elem(f["uns"]) if "uns" in f else {}
    if cells is not None:
        uns = {**uns, **cells_uns}
    if "cd8exo" not in uns:
        msg = f"{path}: no uns['cd8exo']; this file was not harmonised by prepare_dataset."
        raise InputError(msg)
    if obs is None:
        obs, rows = file_obs, np.arange(len(file_ids))
    else:
        rows = file_ids.get_indexer(obs.index)
        if (rows < 0).any():
            missing = obs.index[rows < 0][:3].tolist()
            msg = (
                f"{(rows < 0).sum()} cells of the table given (e.g. {missing}) are not in "
                f"{path}; the cell tables and the matrix come from different runs. Re-run "
                "the workflow from prepare_dataset."
            )
            raise InputError(msg)
        if (np.diff(rows) <= 0).any():
            order = np.argsort(rows, kind="stable")
            obs, rows = obs.iloc[order], rows[order]
    matrix = CellMatrix(path=path, rows=rows, n_vars=len(var), indptr=indptr)
    return Cells(matrix=matrix, obs=obs, var=var, uns=uns)


def write_matrix(adata: ad.AnnData, path: PathLike) -> None:
    """Write a harmonised AnnData as the dataset's one matrix file (``prepare_dataset``).

    ``X`` (CSR float32) holds the harmonised values; ``layers["counts"]``, a copy of ``X``
    for counts, is not written twice (:class:`Cells` normalises ``X`` as it reads it).
    """
    light = ad.AnnData(X=adata.X, obs=adata.obs, var=adata.var, uns=adata.uns)
    atomic_write(Path(path), lambda tmp: light.write_h5ad(tmp))


def write_cells(cells: Cells | ad.AnnData, path: PathLike) -> None:
    """Write the cells' ``obs``, ``var`` and ``uns`` as an ``.h5ad`` without ``X``.

    What the rules after ``prepare_dataset`` pass on: which cells, with which labels; the
    matrix itself stays in ``prepare_dataset``'s file (:func:`open_cells` joins the two).
    """
    table = ad.AnnData(obs=cells.obs, var=cells.var, uns=cells.uns)
    atomic_write(Path(path), lambda tmp: table.write_h5ad(tmp))


def malignant_cells(cells: Cells) -> Cells:
    """The malignant cells (``obs["malignant"]``) of ``cells``; only their rows are ever read.

    Raises
    ------
    InputError
        When ``obs`` has no ``malignant`` column (the cells are not annotated).
    """
    if "malignant" not in cells.obs:
        msg = (
            f"{cells.matrix.path}: the cell table has no 'malignant' column; the receiver side "
            "reads the annotated cells (rule annotate_cells)."
        )
        raise InputError(msg)
    subset = cells[cells.obs["malignant"].to_numpy(dtype=bool)]
    logger.info("%d malignant of %d cells", subset.n_obs, cells.n_obs)
    return subset
