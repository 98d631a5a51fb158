"""kNN graphs at the size of real datasets (issue 11, "Real-size data").

Regression test for the lock: scanpy 1.11.5 switches to approximate neighbours
(pynndescent) above 8,192 cells (``identity``) or above
``embedding.EXACT_NEIGHBOURS_MAX_CELLS`` (``embedding``), and pynndescent 0.7.0 returns a
``scipy.sparse.csr_array``, on which scanpy calls ``getnnz`` (a ``csr_matrix``-only
method): every dataset above ~8,200 cells then failed with ``AttributeError: 'csr_array'
object has no attribute 'getnnz'``. No test ran more than a few thousand cells, so nothing
caught it. These build the graph exactly as the two callers do, on 20,000 cells with
planted groups, and check the graph, not only that it was built.
"""

from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from sklearn.metrics import adjusted_rand_score

from cd8exo.cells import embedding, identity

# ~40 s on 2 cores, the slowest unit tests: `make test` runs them, `make test-fast` does not.
pytestmark = pytest.mark.heavy

N_CELLS = 20_000
N_GROUPS = 4


@pytest.fixture(scope="module")
def planted() -> tuple[ad.AnnData, np.ndarray]:
    """20,000 cells x 300 genes, ln(CP10k+1), four groups each with 60 marker genes."""
    rng = np.random.default_rng(11)
    n_genes = 300
    group = rng.integers(N_GROUPS, size=N_CELLS)
    rate = np.full((N_GROUPS, n_genes), 0.3)
    for g in range(N_GROUPS):
        rate[g, g * 60 : (g + 1) * 60] = 4.0
    counts = rng.poisson(rate[group]).astype(np.float32)
    totals = counts.sum(axis=1, keepdims=True)
    x = np.log1p(counts / np.maximum(totals, 1) * 1e4).astype(np.float32)
    obs = pd.DataFrame(
        {
            "patient": pd.Categorical([f"P{i % 20:02d}" for i in range(N_CELLS)]),
            "cell_type": pd.Categorical([f"type{g}" for g in group]),
        },
        index=[f"cell{i}" for i in range(N_CELLS)],
    )
    adata = ad.AnnData(X=sp.csr_matrix(x), obs=obs)
    adata.var_names = [f"G{j}" for j in range(n_genes)]
    adata.uns["cd8exo"] = {"log_normalised": True}
    return adata, group


def test_identity_graph_on_20000_cells_recovers_the_planted_groups(planted):
    adata, group = planted
    light = identity.embed_cells(adata, rng=0, n_neighbors=15, resolution=0.1)
    conn = light.obsp["connectivities"]
    assert conn.shape == (N_CELLS, N_CELLS)
    # UMAP connectivities are symmetric and every cell has neighbours
    assert abs(conn - conn.T).max() < 1e-6
    assert (np.diff(conn.indptr) >= 14).all()
    # clusters follow the planted groups (finer Leiden splits would lower ARI a little)
    assert adjusted_rand_score(group, light.obs["cluster"].to_numpy()) > 0.9


def test_umap_graph_on_20000_cells_with_approximate_neighbours(planted, monkeypatch):
    adata, group = planted
    # the approximate-neighbour path that embedding takes above its exact-kNN limit
    monkeypatch.setattr(embedding, "EXACT_NEIGHBOURS_MAX_CELLS", 10_000)
    coords = embedding.umap_coordinates(adata, n_top_genes=300, n_pcs=10, rng=0)
    assert coords.shape == (N_CELLS, 4)
    assert np.isfinite(coords[["UMAP1", "UMAP2"]].to_numpy()).all()
    # the planted groups lie apart: each cell's group centroid is its nearest one
    xy = coords[["UMAP1", "UMAP2"]].to_numpy()
    centroids = np.stack([xy[group == g].mean(axis=0) for g in range(N_GROUPS)])
    nearest = np.argmin(((xy[:, None, :] - centroids[None]) ** 2).sum(axis=2), axis=1)
    assert (nearest == group).mean() > 0.99
