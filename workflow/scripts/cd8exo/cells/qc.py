"""Per-cell quality control: detected genes and mitochondrial fraction."""

from __future__ import annotations

import logging

import anndata as ad
import numpy as np
import pandas as pd
import scipy.sparse as sp

from cd8exo.cells.normalise import linear_values
from cd8exo.cells.store import Cells, iter_rows

logger = logging.getLogger(__name__)

__all__ = ["MITO_PREFIX", "filter_cells", "mito_genes", "qc_metrics"]

#: Human mitochondrial genes are named MT-xxx (HGNC).
MITO_PREFIX = "MT-"


def mito_genes(var_names: pd.Index) -> np.ndarray:
    """Boolean mask of mitochondrial genes (symbols starting with ``MT-``, any case)."""
    return np.asarray(
        pd.Index(var_names).astype(str).str.upper().str.startswith(MITO_PREFIX), dtype=bool
    )


def qc_metrics(adata: ad.AnnData) -> pd.DataFrame:
    """Quality metrics of every cell.

    Parameters
    ----------
    adata
        Harmonised AnnData.

    Returns
    -------
    Indexed by ``obs_names``: ``n_genes`` (genes with a non-zero value), ``total`` (sum of
    linear values, see :func:`cd8exo.harmonise.linear_values`) and ``mito_fraction``
    (share of the total on ``MT-`` genes; NaN when the data have no ``MT-`` gene or the
    cell's total is 0).
    """
    mito = mito_genes(adata.var_names)
    n_genes = np.zeros(adata.n_obs, dtype=np.int64)
    total = np.zeros(adata.n_obs)
    mito_total = np.zeros(adata.n_obs)
    # a block of cells at a time: the cells may be a million rows of a matrix on disk
    for start, stop, block in iter_rows(linear_values(adata)):
        values = sp.csr_matrix(block, copy=True)
        values.eliminate_zeros()
        n_genes[start:stop] = np.diff(values.indptr)
        total[start:stop] = np.asarray(values.sum(axis=1, dtype=np.float64)).ravel()
        if mito.any():
            mito_total[start:stop] = np.asarray(
                values[:, mito].sum(axis=1, dtype=np.float64)
            ).ravel()
    if mito.any():
        fraction = np.divide(mito_total, total, out=np.full_like(total, np.nan), where=total > 0)
    else:
        fraction = np.full(adata.n_obs, np.nan)
    return pd.DataFrame(
        {"n_genes": n_genes.astype(np.int64), "total": total, "mito_fraction": fraction},
        index=adata.obs_names.copy(),
    )


def filter_cells(
    adata: ad.AnnData, *, min_genes: int, max_mito_fraction: float
) -> tuple[ad.AnnData, pd.DataFrame]:
    """Remove cells with too few detected genes or too much mitochondrial RNA.

    Parameters
    ----------
    adata
        Harmonised AnnData; not modified.
    min_genes
        Cells with fewer detected genes are removed.
    max_mito_fraction
        Cells whose ``mito_fraction`` exceeds this are removed. Skipped, with a warning,
        when the data have no ``MT-`` genes (e.g. the authors removed them).

    Returns
    -------
    The kept cells (a copy), and one row per observed (``patient``, ``cell_type``):
    ``n_before``, ``n_removed_min_genes``, ``n_removed_mito`` (a cell failing both
    filters is counted once, under ``min_genes``) and ``n_after``.
    """
    if not 0 <= max_mito_fraction <= 1:
        msg = f"max_mito_fraction must be between 0 and 1, got {max_mito_fraction}."
        raise ValueError(msg)
    metrics = qc_metrics(adata)
    fail_genes = (metrics["n_genes"] < min_genes).to_numpy()
    if mito_genes(adata.var_names).any():
        fraction = metrics["mito_fraction"].to_numpy()
        fail_mito = ~fail_genes & (np.nan_to_num(fraction, nan=0.0) > max_mito_fraction)
    else:
        logger.warning(
            "Dataset %r has no MT- genes; the mitochondrial filter is skipped",
            adata.uns.get("cd8exo", {}).get("dataset"),
        )
        fail_mito = np.zeros(adata.n_obs, dtype=bool)
    keep = ~(fail_genes | fail_mito)

    flags = pd.DataFrame(
        {
            "patient": adata.obs["patient"].to_numpy(),
            "cell_type": adata.obs["cell_type"].to_numpy(),
            "n_before": 1,
            "n_removed_min_genes": fail_genes.astype(int),
            "n_removed_mito": fail_mito.astype(int),
            "n_after": keep.astype(int),
        }
    )
    table = flags.groupby(["patient", "cell_type"], observed=True, sort=True).sum().reset_index()
    table["patient"] = table["patient"].astype(str)
    table["cell_type"] = table["cell_type"].astype(str)
    logger.info(
        "QC: %d of %d cells kept (%d fewer than %d genes, %d above %.3g mitochondrial)",
        int(keep.sum()),
        adata.n_obs,
        int(fail_genes.sum()),
        min_genes,
        int(fail_mito.sum()),
        max_mito_fraction,
    )
    # cells on disk stay there (a subset of rows); an in-memory AnnData is copied
    return (adata[keep] if isinstance(adata, Cells) else adata[keep].copy()), table
