"""A UMAP of the cells for the figures (the statistics never use it)."""

from __future__ import annotations

import logging

import anndata as ad
import numpy as np
import pandas as pd
import scanpy as sc

logger = logging.getLogger(__name__)

__all__ = ["umap_coordinates"]

#: Above this many cells the kNN graph uses approximate neighbours (pynndescent).
EXACT_NEIGHBOURS_MAX_CELLS = 50_000


def umap_coordinates(
    adata: ad.AnnData,
    *,
    n_top_genes: int = 2000,
    n_pcs: int = 30,
    n_neighbors: int = 15,
    rng: int = 0,
) -> pd.DataFrame:
    """UMAP coordinates of every cell from the standard scanpy recipe.

    Highly variable genes (Seurat flavour, on the log-normalised ``X``), scaled, PCA,
    a kNN graph and UMAP (McInnes et al. 2018), all seeded with ``rng``.

    Parameters
    ----------
    adata
        Log-normalised data (``uns["cd8exo"]["log_normalised"]`` set).
    n_top_genes, n_pcs, n_neighbors
        Parameters of the recipe; ``n_top_genes`` and ``n_pcs`` are capped by the data size.
    rng
        Seed of PCA, neighbours and UMAP.

    Returns
    -------
    Cells x [UMAP1, UMAP2, patient, cell_type].
    """
    if not adata.uns.get("cd8exo", {}).get("log_normalised", False):
        msg = (
            "umap_coordinates expects log-normalised data; run cd8exo.harmonise.log_normalise first"
        )
        raise ValueError(msg)
    work = ad.AnnData(X=adata.X.copy(), obs=adata.obs[["patient", "cell_type"]].copy())
    work.var_names = adata.var_names
    n_top = min(n_top_genes, work.n_vars)
    sc.pp.highly_variable_genes(work, n_top_genes=n_top, flavor="seurat", subset=True)
    sc.pp.scale(work, max_value=10)
    n_comps = int(min(n_pcs, work.n_vars - 1, work.n_obs - 1))
    # randomized SVD: the figure needs the leading components only, and it is several
    # times faster than ARPACK on a dense scaled matrix
    sc.tl.pca(work, n_comps=n_comps, random_state=rng, svd_solver="randomized")
    # exact neighbours (sklearn) are fast below ~50k cells and avoid compiling pynndescent
    transformer = "sklearn" if work.n_obs <= EXACT_NEIGHBOURS_MAX_CELLS else None
    sc.pp.neighbors(
        work, n_neighbors=n_neighbors, n_pcs=n_comps, random_state=rng, transformer=transformer
    )
    sc.tl.umap(work, random_state=rng)
    logger.info(
        "UMAP of %d cells from %d highly variable genes and %d PCs", work.n_obs, n_top, n_comps
    )
    coords = pd.DataFrame(
        np.asarray(work.obsm["X_umap"]), index=work.obs_names, columns=["UMAP1", "UMAP2"]
    )
    coords.index.name = "cell"
    return coords.join(work.obs[["patient", "cell_type"]])
