"""A UMAP of the cells for the figures (the statistics never use it)."""

from __future__ import annotations

import logging

import anndata as ad
import numpy as np
import pandas as pd
import scanpy as sc

from cd8exo.cells.identity.graph import MIN_GRAPH_CELLS

logger = logging.getLogger(__name__)

__all__ = ["MIN_EMBED_GENES", "embedding_problem", "umap_coordinates"]

#: Fewest genes a UMAP is computed from (PCA needs at least one component).
MIN_EMBED_GENES = 2

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
    Cells x [UMAP1, UMAP2, patient, cell_type]. Data too small to embed
    (:func:`embedding_problem`) is not an error: the coordinates are NaN, a column
    ``note`` says why (the figure shows it) and a warning is logged.
    """
    if not adata.uns.get("cd8exo", {}).get("log_normalised", False):
        msg = (
            "umap_coordinates expects log-normalised data; run cd8exo.harmonise.log_normalise first"
        )
        raise ValueError(msg)
    problem = embedding_problem(adata)
    if problem:
        logger.warning("No UMAP: %s", problem)
        coords = pd.DataFrame(np.nan, index=adata.obs_names.copy(), columns=["UMAP1", "UMAP2"])
        coords.index.name = "cell"
        return coords.join(adata.obs[["patient", "cell_type"]]).assign(note=f"no UMAP: {problem}")
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


def embedding_problem(adata: ad.AnnData) -> str | None:
    """Why ``adata`` is too small for a UMAP (None when it is not).

    A kNN graph needs at least :data:`~cd8exo.cells.identity.graph.MIN_GRAPH_CELLS`
    cells and PCA at least :data:`MIN_EMBED_GENES` genes.
    """
    if adata.n_obs == 0:
        return "no cell passed QC"
    if adata.n_obs < MIN_GRAPH_CELLS:
        return f"only {adata.n_obs} cells (at least {MIN_GRAPH_CELLS} are needed)"
    if adata.n_vars < MIN_EMBED_GENES:
        return f"only {adata.n_vars} gene(s) (at least {MIN_EMBED_GENES} are needed)"
    return None
