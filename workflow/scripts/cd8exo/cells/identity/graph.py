"""The kNN graph, Leiden clusters and graph smoothing that the CD8 and malignant calls share."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence

import anndata as ad
import numpy as np
import pandas as pd
import scanpy as sc
import scipy.sparse as sp

from cd8exo._utils import RNGLike, as_rng, seed_from

logger = logging.getLogger(__name__)

__all__ = ["MIN_GRAPH_CELLS", "embed_cells"]

#: Fewest cells a kNN graph (and so any inferred label) is built from.
MIN_GRAPH_CELLS = 10


# --------------------------------------------------------------------------- #
# Small helpers
# --------------------------------------------------------------------------- #
def _check_log_normalised(adata: ad.AnnData, *, where: str) -> None:
    info = adata.uns.get("cd8exo", {}) if isinstance(adata.uns, Mapping) else {}
    if info.get("log_normalised", False):
        return
    x = adata.X
    top = float(x.max()) if x.shape[0] and x.shape[1] else 0.0
    low = float(x.min()) if x.shape[0] and x.shape[1] else 0.0
    # ln(CP10k+1) never exceeds ln(1e4+1) ~ 9.2; raw counts and TPM routinely do.
    if top > 20 or low < 0:
        msg = (
            f"{where}: X does not look like ln(CP10k+1) values (range {low:g}..{top:g}). "
            "Normalise first (cd8exo.harmonise.log_normalise, or scanpy.pp.normalize_total"
            "(target_sum=1e4) followed by scanpy.pp.log1p)."
        )
        raise ValueError(msg)


def _gene_columns(
    var_names: pd.Index, genes: Sequence[str], *, what: str
) -> tuple[np.ndarray, list[str]]:
    """Column indices of the genes present; logs the missing ones by name."""
    present = [g for g in dict.fromkeys(genes) if g in var_names]
    missing = [g for g in dict.fromkeys(genes) if g not in var_names]
    if missing:
        logger.info("%s: %d marker(s) not in the data: %s", what, len(missing), ", ".join(missing))
    return var_names.get_indexer(present), present


def _module_mean(x, columns: np.ndarray) -> np.ndarray:
    """Mean log-expression over ``columns`` for every row (0 when no column is given)."""
    if len(columns) == 0:
        return np.zeros(x.shape[0])
    sub = x[:, columns]
    return np.asarray(sub.mean(axis=1)).ravel().astype(float)


def _any_detected(x, columns: np.ndarray) -> np.ndarray:
    if len(columns) == 0:
        return np.zeros(x.shape[0], dtype=bool)
    sub = x[:, columns]
    if sp.issparse(sub):
        return np.asarray((sub > 0).sum(axis=1)).ravel() > 0
    return np.asarray((sub > 0).any(axis=1)).ravel()


def _smoother(connectivities) -> sp.csr_matrix:
    """Row-normalised kNN connectivities with each cell included in its own neighbourhood."""
    c = sp.csr_matrix(connectivities, dtype=float) + sp.eye(connectivities.shape[0], format="csr")
    rowsum = np.asarray(c.sum(axis=1)).ravel()
    return sp.csr_matrix(sp.diags(1.0 / rowsum) @ c)


def _smooth(smoother: sp.csr_matrix, values: np.ndarray, *, steps: int = 2) -> np.ndarray:
    out = np.asarray(values, dtype=float)
    for _ in range(steps):
        out = smoother @ out
    return out


def _otsu(values: np.ndarray) -> tuple[float, float]:
    """Otsu's threshold of 1-D values and its separation eta (between/total variance, 0-1)."""
    x = np.sort(np.asarray(values, dtype=float))
    n = len(x)
    splits = np.nonzero(np.diff(x) > 0)[0]
    if n < 2 or len(splits) == 0:
        return (float(x[0]) if n else 0.0), 0.0
    csum = np.cumsum(x)
    n0 = splits + 1.0
    n1 = n - n0
    m0 = csum[splits] / n0
    m1 = (csum[-1] - csum[splits]) / n1
    between = n0 * n1 * (m0 - m1) ** 2 / n**2
    best = int(np.argmax(between))
    threshold = (x[splits[best]] + x[splits[best] + 1]) / 2
    total = x.var()
    return float(threshold), float(between[best] / total) if total > 0 else 0.0


def _neighbour_agreement(connectivities, calls: np.ndarray) -> np.ndarray:
    """Fraction of each cell's kNN neighbours (weighted) whose call equals its own."""
    c = sp.csr_matrix(connectivities, dtype=float)
    rowsum = np.asarray(c.sum(axis=1)).ravel()
    same = np.asarray(c @ calls.astype(float)).ravel()
    frac_true = np.divide(same, rowsum, out=np.full(len(calls), np.nan), where=rowsum > 0)
    agree = np.where(calls, frac_true, 1 - frac_true)
    return np.where(np.isnan(agree), 0.5, agree)


def _light(x, obs_names: pd.Index, var_names: pd.Index) -> ad.AnnData:
    """An AnnData that shares ``x`` (nothing here writes to X)."""
    light = ad.AnnData(X=x, obs=pd.DataFrame(index=obs_names), var=pd.DataFrame(index=var_names))
    return light


def _embed_light(
    light: ad.AnnData,
    *,
    rng: np.random.Generator,
    n_top_genes: int,
    n_pcs: int,
    n_neighbors: int,
    resolution: float,
) -> ad.AnnData:
    n_obs, n_vars = light.shape
    n_top = int(min(n_top_genes, n_vars))
    sc.pp.highly_variable_genes(light, n_top_genes=n_top, flavor="seurat")
    n_hvg = int(light.var["highly_variable"].sum())
    n_comps = int(max(2, min(n_pcs, n_obs - 2, n_hvg - 2)))
    sc.pp.pca(
        light,
        n_comps=n_comps,
        mask_var="highly_variable",
        svd_solver="arpack",
        random_state=seed_from(rng),
    )
    sc.pp.neighbors(
        light,
        n_neighbors=int(min(n_neighbors, n_obs - 1)),
        n_pcs=n_comps,
        random_state=seed_from(rng),
    )
    sc.tl.leiden(
        light,
        resolution=resolution,
        random_state=seed_from(rng),
        flavor="igraph",
        n_iterations=2,
        directed=False,
        key_added="cluster",
    )
    return light


def embed_cells(
    adata: ad.AnnData,
    *,
    rng: RNGLike = 0,
    n_top_genes: int = 2000,
    n_pcs: int = 30,
    n_neighbors: int = 15,
    resolution: float = 1.0,
) -> ad.AnnData:
    """kNN graph and Leiden clusters of all cells, shared by the two callers.

    Highly variable genes (Seurat flavour) of the log-normalised ``X``, PCA on them
    (not scaled, so the sparse matrix is never densified), a kNN graph (UMAP
    connectivities) and Leiden clustering (Traag et al. 2019), all seeded from ``rng``.

    Parameters
    ----------
    adata
        Contract AnnData (``X`` = ln(CP10k+1)); not modified.
    rng
        Generator or seed.
    n_top_genes, n_pcs, n_neighbors
        Recipe parameters, capped by the size of the data.
    resolution
        Leiden resolution.

    Returns
    -------
    A light AnnData sharing ``adata.X`` with ``obsp["connectivities"]``,
    ``obsm["X_pca"]`` and ``obs["cluster"]`` (categorical).
    """
    _check_log_normalised(adata, where="embed_cells")
    if adata.n_obs < MIN_GRAPH_CELLS:
        msg = (
            f"embed_cells: only {adata.n_obs} cells; at least {MIN_GRAPH_CELLS} are needed to "
            "build a kNN graph."
        )
        raise ValueError(msg)
    light = _light(adata.X, adata.obs_names, adata.var_names)
    gen = as_rng(rng)
    _embed_light(
        light,
        rng=gen,
        n_top_genes=n_top_genes,
        n_pcs=n_pcs,
        n_neighbors=n_neighbors,
        resolution=resolution,
    )
    logger.info(
        "kNN graph of %d cells: %d Leiden clusters at resolution %g",
        light.n_obs,
        light.obs["cluster"].nunique(),
        resolution,
    )
    return light


def _check_embedding(embedding: ad.AnnData, adata: ad.AnnData) -> None:
    if not embedding.obs_names.equals(adata.obs_names):
        msg = (
            "The embedding given does not have the same cells, in the same order, as the "
            "data; build it with embed_cells(adata) on this very AnnData."
        )
        raise ValueError(msg)
    if "connectivities" not in embedding.obsp or "cluster" not in embedding.obs:
        msg = "The embedding lacks obsp['connectivities'] or obs['cluster']; build it with embed_cells."
        raise ValueError(msg)
