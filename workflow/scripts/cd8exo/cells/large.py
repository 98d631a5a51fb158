"""Harmonise a large ``.h5ad`` without loading its matrix: ``prepare_dataset`` for 10^5-10^6 cells.

:func:`cd8exo.cells.harmonise.harmonise` holds the matrix in memory several times over
(as read, as CSR float32, merged); a million cells of ~1,500 genes are ~12 GB per copy.
For an ``.h5ad`` whose matrix is stored as CSR, :func:`harmonise_h5ad` instead

1. reads ``obs`` and ``var`` only, repairs the gene names as :func:`read_dataset` does,
   and joins the cell table if there is one;
2. decides the value scale (and counts layer vs ``X``) on an evenly spaced sample of
   cells, by the same rules as :func:`harmonise`;
3. builds the harmonised ``obs``/``var``/``uns`` with :func:`harmonise` itself on the
   real ``obs`` and an all-zero matrix of the same shape (so every label rule is the same);
4. copies the matrix a block of cells at a time into the output (values checked for the
   scale block by block, duplicated symbols of counts summed), never holding more than one
   block.

A 10x Matrix Market folder of as many cells (:func:`harmonise_10x`) is first written as
CSR to a temporary ``.h5ad``, a block of entries at a time, then harmonised the same way.

Files it cannot stream (dense or CSC ``X``, duplicated symbols of non-count values, whose
merge needs a first pass) return ``None`` and take the in-memory path.
"""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

import anndata as ad
import h5py
import numpy as np
import pandas as pd
import scipy.sparse as sp
from anndata.io import read_elem, sparse_dataset, write_elem

from cd8exo._utils import atomic_write
from cd8exo.cells.harmonise import _counts_layer_or_x, _resolve_value_scale, harmonise
from cd8exo.cells.scale import _value_summary
from cd8exo.cells.store import CHUNK_VALUES, _bounds, _read_rows
from cd8exo.errors import InputError
from cd8exo.io.h5csr import write_anndata_parts
from cd8exo.io.local import (
    _check_anndata_layout,
    _join_cell_table,
    _read_cell_table,
    _repair_var_names,
    read_10x_listing,
)
from cd8exo.io.mtx import write_mtx_h5ad
from cd8exo.io.sniff import h5ad_problem, require

if TYPE_CHECKING:
    from collections.abc import Mapping

    from cd8exo.io.tables import PathLike

logger = logging.getLogger(__name__)

__all__ = ["STREAM_MIN_CELLS", "harmonise_10x", "harmonise_h5ad"]

#: Cells from which an ``.h5ad`` is harmonised block by block (below: in memory, as always).
STREAM_MIN_CELLS = 50_000

#: Cells read to decide the value scale.
_SAMPLE_CELLS = 20_000


def _csr_group(f: h5py.File, key: str) -> h5py.Group | None:
    node = f.get(key)
    if isinstance(node, h5py.Group) and node.attrs.get("encoding-type", "") == "csr_matrix":
        return node
    return None


def harmonise_h5ad(
    path: PathLike,
    out: PathLike,
    *,
    dataset: str,
    patient_column: str,
    sample_column: str | None = None,
    cell_type_column: str | None = None,
    malignant_column: str | None = None,
    label_map: Mapping[str, str] | None = None,
    value_scale: str = "auto",
    cell_table: PathLike | None = None,
    cell_id_column: str | None = None,
    min_cells: int = STREAM_MIN_CELLS,
    max_values: int = CHUNK_VALUES,
) -> ad.AnnData | None:
    """Harmonise the ``.h5ad`` at ``path`` into ``out`` a block of cells at a time.

    Arguments as :func:`cd8exo.cells.harmonise.harmonise` and
    :func:`cd8exo.io.local.read_dataset`. Returns the harmonised AnnData without ``X``
    (``obs``, ``var``, ``uns``) once ``out`` is written, or ``None`` when the file has
    fewer than ``min_cells`` cells or cannot be streamed (nothing is written then).
    """
    path = Path(path)
    layout = _read_layout(path, min_cells=min_cells)
    if layout is None:
        return None
    obs, var, shape, indptrs, probe_x, layers = layout
    if cell_table is not None:
        table = _read_cell_table(cell_table, cell_id_column=cell_id_column)
        obs = _join_cell_table(obs, table, source=f"{path}", table_path=cell_table)
    # gene names repaired exactly as the in-memory reader does (on a light AnnData)
    named = _repair_var_names(
        ad.AnnData(obs=pd.DataFrame(index=obs.index[: probe_x.shape[0]]), var=var),
        source=path,
        tables=None,
    )
    var = named.var
    probe = ad.AnnData(X=probe_x, var=var, layers=layers)
    source, scale = _source_and_scale(probe, value_scale=value_scale, dataset=dataset)
    if scale != "counts" and not pd.Index(var.index.astype(str).str.strip()).is_unique:
        # merging duplicated non-count symbols keeps the highest-mean gene: that needs a
        # pass over every cell first, which the in-memory path makes
        logger.info("Dataset %r: duplicated symbols of non-count values; read in memory", dataset)
        return None
    empty = ad.AnnData(X=sp.csr_matrix(shape, dtype=np.float32), obs=obs, var=var)
    harmonised = harmonise(
        empty,
        dataset=dataset,
        patient_column=patient_column,
        sample_column=sample_column,
        cell_type_column=cell_type_column,
        malignant_column=malignant_column,
        label_map=label_map,
        value_scale=scale,
    )
    merge = _merge_matrix(var.index, harmonised.var_names)
    info = harmonised.uns["cd8exo"]
    # as AnnData.write_h5ad does on the in-memory path (a cell table's text columns)
    harmonised.strings_to_categoricals()
    atomic_write(
        Path(out),
        lambda tmp: _copy_blocks(
            path,
            tmp,
            source=source,
            indptr=indptrs[source],
            shape=shape,
            merge=merge,
            meta=harmonised,
            scale=info["value_scale"],
            dataset=dataset,
            max_values=max_values,
        ),
    )
    logger.info(
        "Dataset %r: %d cells x %d genes harmonised block by block (%d-value blocks) from %s",
        dataset,
        harmonised.n_obs,
        harmonised.n_vars,
        max_values,
        "layers['counts']" if source == "counts" else "X",
    )
    return harmonised


def harmonise_10x(
    folder: PathLike,
    out: PathLike,
    *,
    cell_table: PathLike | None = None,
    cell_id_column: str | None = None,
    min_cells: int = STREAM_MIN_CELLS,
    max_values: int = CHUNK_VALUES,
    **options,
) -> ad.AnnData | None:
    """Harmonise a 10x Matrix Market folder into ``out`` without holding its matrix.

    The matrix is first written as CSR to a temporary ``.h5ad`` beside ``out``
    (:func:`cd8exo.io.mtx.write_mtx_h5ad`, a block of entries at a time), which
    :func:`harmonise_h5ad` then harmonises block by block; the temporary file is removed
    in any case. ``options`` are :func:`harmonise_h5ad`'s. Returns as
    :func:`harmonise_h5ad` does (``None``: fewer than ``min_cells`` cells, or a file that
    cannot be streamed; nothing is written then).
    """
    listing = read_10x_listing(folder, cell_table=cell_table, cell_id_column=cell_id_column)
    if listing.header.n_cols < min_cells:
        return None
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    # the temporary CSR file holds 8 bytes per entry, and the output about as much again
    needed = 16 * listing.header.n_entries + 2**28
    free = shutil.disk_usage(out.parent).free
    if free < needed:
        msg = (
            f"Not enough free disk space in {out.parent} to convert {listing.matrix} "
            f"({listing.header.n_entries:,} entries): about {needed / 2**30:.1f} GB are needed "
            f"for the temporary CSR copy and the harmonised matrix, {free / 2**30:.1f} GB are "
            "free. Free some space, or run the workflow on a larger file system."
        )
        raise InputError(msg)
    csr = out.with_name(f".{out.name}.csr-{os.getpid()}.tmp.h5ad")
    try:
        write_mtx_h5ad(
            listing.matrix,
            csr,
            obs=listing.obs,
            var=listing.var,
            header=listing.header,
            block_entries=max_values,
        )
        return harmonise_h5ad(csr, out, min_cells=0, max_values=max_values, **options)
    finally:
        csr.unlink(missing_ok=True)


class _Layout(NamedTuple):
    obs: pd.DataFrame
    var: pd.DataFrame
    shape: tuple[int, int]
    indptrs: dict[str, np.ndarray]  # "X" (and "counts") -> the file's row pointers
    probe_x: sp.csr_matrix  # X of the sampled cells
    layers: dict[str, sp.csr_matrix]  # counts of the sampled cells, if the file has them


def _read_layout(path: Path, *, min_cells: int) -> _Layout | None:
    """obs, var, row pointers and a sample of cells; None when the file is not to be streamed."""
    require(h5ad_problem(path), what="The h5ad file", path=path)
    _check_anndata_layout(path)
    with h5py.File(path, "r") as f:
        x_group = _csr_group(f, "X")
        counts_group = _csr_group(f, "layers/counts")
        shape = tuple(int(n) for n in x_group.attrs["shape"]) if x_group is not None else None
        if shape is None or shape[0] < min_cells:
            return None
        sample = _sample_rows(shape[0])
        indptrs = {"X": x_group["indptr"][:].astype(np.int64)}
        layers = {}
        if counts_group is not None:
            indptrs["counts"] = counts_group["indptr"][:].astype(np.int64)
            layers["counts"] = _read_rows(counts_group, indptrs["counts"], sample, n_vars=shape[1])
        probe_x = _read_rows(x_group, indptrs["X"], sample, n_vars=shape[1])
        return _Layout(read_elem(f["obs"]), read_elem(f["var"]), shape, indptrs, probe_x, layers)


def _sample_rows(n_cells: int, *, n_blocks: int = 10) -> np.ndarray:
    """About ``_SAMPLE_CELLS`` cells in ``n_blocks`` evenly spaced runs of consecutive cells.

    Runs, not single cells: each read of a compressed file decompresses whole chunks.
    """
    size = max(1, min(_SAMPLE_CELLS, n_cells) // n_blocks)
    firsts = np.linspace(0, max(0, n_cells - size), n_blocks).astype(int)
    return np.unique(np.concatenate([np.arange(f, min(f + size, n_cells)) for f in firsts]))


def _source_and_scale(probe: ad.AnnData, *, value_scale: str, dataset: str) -> tuple[str, str]:
    """Which matrix to copy (``X`` or ``counts``) and its value scale, decided on the sample."""
    x, scale = _counts_layer_or_x(probe, value_scale=value_scale, dataset=dataset)
    source = "counts" if "counts" in probe.layers and x is probe.layers["counts"] else "X"
    return source, _resolve_value_scale(x, value_scale=scale, dataset=dataset)


def _merge_matrix(symbols: pd.Index, unique: pd.Index) -> sp.csr_matrix | None:
    """Genes in -> genes out, summing duplicated symbols (None when every symbol is unique)."""
    names = pd.Index(symbols.astype(str).str.strip())
    if names.is_unique:
        return None
    codes = unique.get_indexer(names)
    return sp.csr_matrix(
        (np.ones(len(names), dtype=np.float32), (np.arange(len(names)), codes)),
        shape=(len(names), len(unique)),
    )


def _copy_blocks(
    path: Path,
    tmp: str,
    *,
    source: str,
    indptr: np.ndarray,
    shape: tuple[int, int],
    merge: sp.csr_matrix | None,
    meta: ad.AnnData,
    scale: str,
    dataset: str,
    max_values: int,
) -> None:
    """Write ``meta``'s obs/var/uns and the source matrix, block by block, into ``tmp``."""
    key = "layers/counts" if source == "counts" else "X"
    n_out = shape[1] if merge is None else merge.shape[1]
    with h5py.File(path, "r") as src, h5py.File(tmp, "w") as dst:
        group = src[key]
        write_anndata_parts(dst, obs=meta.obs, var=meta.var, uns=meta.uns)
        out = None
        for start, stop in _bounds(indptr, shape[0], max_values=max_values):
            block = _read_rows(group, indptr, np.arange(start, stop), n_vars=shape[1])
            _check_block(block, scale=scale, dataset=dataset, first_cell=start)
            if merge is not None:
                block = sp.csr_matrix(block @ merge, dtype=np.float32)
                block.sort_indices()
            if out is None:
                write_elem(dst, "X", block)
                out = sparse_dataset(dst["X"])
            else:
                out.append(block)
        if out is None:
            write_elem(dst, "X", sp.csr_matrix((0, n_out), dtype=np.float32))


def _check_block(block: sp.csr_matrix, *, scale: str, dataset: str, first_cell: int) -> None:
    """The rules of :func:`harmonise` for the scale, on one block of cells."""
    summary = _value_summary(block)
    where = f"cells {first_cell + 1}-{first_cell + block.shape[0]}"
    if not summary.finite:
        msg = f"Dataset {dataset!r}: the expression matrix has NaN or infinite values ({where})."
        raise InputError(msg)
    if summary.size and summary.minimum < 0:
        msg = (
            f"Dataset {dataset!r}: the expression matrix has negative values ({where}; scaled "
            "data?); give counts or log-normalised values."
        )
        raise InputError(msg)
    if scale == "counts" and not summary.integer:
        msg = (
            f"Dataset {dataset!r}: the values are counts, but {summary.n_fractional} values "
            f"of {where} are not integers (e.g. {summary.fractional_examples}). Declare the "
            "scale the values are on ('log1p_norm', 'log2_tpm10') or give raw counts."
        )
        raise InputError(msg)
