"""Normalisation of harmonised cells: ln(CP10k+1) of counts, and back to a linear scale.

:func:`log_normalise` makes the values every later step scores on; :func:`linear_values`
the values pseudobulk and QC sum. Both take an in-memory AnnData or a
:class:`cd8exo.cells.store.Cells` (the matrix on disk, normalised block by block as read).
"""

from __future__ import annotations

import dataclasses
import logging

import anndata as ad
import numpy as np
import scipy.sparse as sp

from cd8exo.cells.scale import _CHUNK_VALUES
from cd8exo.cells.store import CellMatrix, Cells, iter_rows, log1p_scaled
from cd8exo.errors import InputError

logger = logging.getLogger(__name__)

__all__ = ["linear_values", "log_normalise"]

_CHUNK_ROWS = 10_000


def log_normalise(adata: ad.AnnData | Cells, *, target_sum: float = 1e4) -> ad.AnnData | Cells:
    """Log-normalise raw counts to ln(counts / total * target_sum + 1).

    Parameters
    ----------
    adata
        Harmonised AnnData (see :func:`harmonise`); not modified.
    target_sum
        Library size each cell is scaled to (1e4: CP10k).

    Returns
    -------
    A copy whose ``X`` is ln(CP10k+1) computed from ``layers["counts"]`` when the
    values are counts, or unchanged when they are already log-scaled; either way
    ``uns["cd8exo"]["log_normalised"]`` is True. An object already flagged is
    returned unchanged, so nothing is ever log-transformed twice. Cells with no
    counts stay all zero.
    """
    if isinstance(adata, Cells):
        # cells on disk are normalised as they are read (Cells.X); nothing is copied
        if target_sum != 1e4:
            msg = "Cells on disk are read as ln(CP10k+1): target_sum must be 1e4."
            raise ValueError(msg)
        info = dict(adata.uns["cd8exo"])
        if info["value_scale"] == "counts":
            info["target_sum"] = float(target_sum)
        info["log_normalised"] = True
        return dataclasses.replace(adata, uns={**adata.uns, "cd8exo": info})
    info = _cd8exo_uns(adata)
    result = adata.copy()
    if info.get("log_normalised", False):
        logger.info("Dataset %r is already log-normalised; nothing to do", info.get("dataset"))
        return result
    new_info = dict(result.uns["cd8exo"])
    if info["value_scale"] == "counts":
        counts = result.layers.get("counts", result.X)
        result.X = _log1p_scaled(sp.csr_matrix(counts), target_sum=target_sum)
        new_info["target_sum"] = float(target_sum)
        logger.info(
            "Dataset %r: counts log-normalised to ln(CP%g+1)", info.get("dataset"), target_sum
        )
    else:
        logger.info(
            "Dataset %r is already on the %s scale; values left as they are",
            info.get("dataset"),
            info["value_scale"],
        )
    new_info["log_normalised"] = True
    result.uns["cd8exo"] = new_info
    return result


def linear_values(adata: ad.AnnData | Cells) -> sp.csr_matrix | CellMatrix:
    """Expression on a linear scale, for pseudobulk and QC.

    Parameters
    ----------
    adata
        Harmonised AnnData.

    Returns
    -------
    For :class:`~cd8exo.cells.store.Cells`, a :class:`~cd8exo.cells.store.CellMatrix`
    read from disk block by block (with :func:`~cd8exo.cells.store.iter_rows`).
    Otherwise CSR float32 cells x genes: ``layers["counts"]`` when present; otherwise
    ``expm1(X)`` for ``log1p_norm`` and ``10 * (2**X - 1)`` (TPM) for ``log2_tpm10``
    (zeros stay zeros); raw ``X`` for counts that were never normalised.
    """
    if isinstance(adata, Cells):
        # read from disk block by block (cd8exo.cells.store.iter_rows), never all at once
        return adata.linear
    info = _cd8exo_uns(adata)
    if "counts" in adata.layers:
        return sp.csr_matrix(adata.layers["counts"], dtype=np.float32)
    scale = info["value_scale"]
    if scale == "counts":
        if info.get("log_normalised", False):
            msg = (
                f"Dataset {info.get('dataset')!r}: values were counts but layers['counts'] is "
                "gone after normalisation; keep the counts layer."
            )
            raise InputError(msg)
        return sp.csr_matrix(adata.X, dtype=np.float32)
    x = sp.csr_matrix(adata.X, dtype=np.float32, copy=True)
    for start in range(0, x.data.size, _CHUNK_VALUES):
        chunk = x.data[start : start + _CHUNK_VALUES].astype(np.float64)
        if scale == "log1p_norm":
            x.data[start : start + _CHUNK_VALUES] = np.expm1(chunk)
        else:
            # GEO Smart-seq2 tables are log2(TPM/10+1): undo it to TPM.
            x.data[start : start + _CHUNK_VALUES] = 10.0 * (np.exp2(chunk) - 1.0)
    return x


def _log1p_scaled(counts: sp.csr_matrix, *, target_sum: float) -> sp.csr_matrix:
    """ln(counts / row total * target_sum + 1) as CSR float32, a block of rows at a time."""
    out = sp.csr_matrix(counts, dtype=np.float32, copy=True)
    totals = np.zeros(out.shape[0])
    for start, stop, block in iter_rows(out, chunk_size=_CHUNK_ROWS):
        # the same function normalises the cells read from disk (cells.store)
        values, totals[start:stop] = log1p_scaled(block, target_sum=target_sum)
        out.data[out.indptr[start] : out.indptr[stop]] = values
    n_empty = int((totals == 0).sum())
    if n_empty:
        logger.warning("%d cells have no counts; their values stay 0", n_empty)
    return out


def _cd8exo_uns(adata: ad.AnnData) -> dict:
    info = adata.uns.get("cd8exo")
    if not isinstance(info, dict) or "value_scale" not in info:
        msg = (
            "The AnnData has no uns['cd8exo'] with a value_scale: it has not been harmonised. "
            "Run cd8exo.harmonise.harmonise first."
        )
        raise InputError(msg)
    return info
