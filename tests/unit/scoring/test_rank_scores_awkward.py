"""UCell and AUCell on awkward cells: equal to the definitions and to pyucell/decoupler.

The references are the definitions written out per cell on the dense matrix (ranks from
``scipy.stats.rankdata`` or a lexicographic sort, next to each assertion), and the
reference packages. The cells are chosen to reach every branch of the compiled kernel:
an empty cell, cells with fewer detected genes than ``max_rank``/``n_up`` (AUCell's zero
genes ranked in tie order), a cell of hundreds of distinct values (radix sort), a cell
of two values only (tie groups holding many signature genes: bitmap counts), explicit
and negative zeros, a gene never detected, a signature gene absent from the data and a
gene in several signatures.
"""

from __future__ import annotations

import warnings

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from scipy.stats import rankdata

from cd8exo.scoring.rank import aucell_scores, detected_genes, ucell_scores

N_GENES = 300
GENES = [f"G{i:03d}" for i in range(N_GENES)]
SIGNATURES = {
    "absent_and_undetected": ["G007", "G003", "G050", "NOPE"],
    "even": GENES[:60:2],
    "single": [GENES[120]],
    "wide": GENES[10:200:3],  # shares G010, G016, ... with "even"
}


def _awkward_counts(seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    counts = rng.poisson(rng.gamma(0.3, 2.0, N_GENES), size=(14, N_GENES)).astype(float)
    counts[0] = 0.0  # an empty cell
    counts[1] = 0.0
    counts[1, [3, 50, 120]] = [1.0, 1.0, 4.0]  # three detected genes
    counts[2] = rng.random(N_GENES) * 100 * (rng.random(N_GENES) < 0.8)  # ~240 distinct values
    counts[3] = rng.choice([0.0, 1.0, 1.0, 2.0], N_GENES)  # two tie groups of ~75 and ~150
    counts[4] = 0.0
    counts[4, :40] = rng.poisson(3.0, 40) + 1.0  # 40 detected genes
    counts[:, 7] = 0.0  # a gene never detected
    return counts


def _awkward(dtype=np.float32) -> sp.csr_matrix:
    counts = _awkward_counts()
    totals = np.maximum(counts.sum(axis=1, keepdims=True), 1.0)
    return sp.csr_matrix(np.log1p(counts / totals * 1e4).astype(dtype))


def _columns(signatures, usable):
    index = {g: i for i, g in enumerate(GENES)}
    return [
        [index[g] for g in dict.fromkeys(genes) if g in index and usable[index[g]]]
        for genes in signatures.values()
    ]


def _ucell_by_definition(dense: np.ndarray, signatures, max_rank: int) -> np.ndarray:
    """Ranks among the cell's non-zero values (ties averaged), zeros and ranks above
    ``max_rank`` at ``max_rank``; U = 1 - (sum r - n(n+1)/2) / (n max_rank - n(n+1)/2)."""
    columns = _columns(signatures, np.ones(N_GENES, dtype=bool))
    out = np.zeros((dense.shape[0], len(columns)))
    for i, row in enumerate(dense):
        ranks = np.full(N_GENES, float(max_rank))
        positive = row > 0
        ranks[positive] = rankdata(-row[positive], method="average")
        ranks = np.minimum(ranks, max_rank)
        for j, cols in enumerate(columns):
            n = len(cols)
            out[i, j] = 1 - (ranks[cols].sum() - n * (n + 1) / 2) / (n * max_rank - n * (n + 1) / 2)
    return out


def _aucell_by_definition(
    dense: np.ndarray, signatures, n_up: int, ties: str, tie_order: np.ndarray | None = None
) -> np.ndarray:
    """Ranks over the detected genes: ties broken by ``tie_order`` ("order") or each gene's
    gain averaged over the ranks of its tie group ("mean"); AUC = sum max(0, n_up - r)
    over the signature's detected genes / (k n_up - k(k+1)/2), k = min(n, n_up - 1)."""
    detected = (dense != 0).any(axis=0)
    columns = _columns(signatures, detected)
    kept = np.flatnonzero(detected)
    priority = np.arange(N_GENES) if tie_order is None else tie_order
    out = np.zeros((dense.shape[0], len(columns)))
    for i, row in enumerate(dense):
        values = row[kept]
        gain = np.zeros(N_GENES)
        if ties == "order":
            order = np.lexsort((priority[kept], -values))  # value high to low, then tie order
            ranks = np.empty(kept.size)
            ranks[order] = np.arange(1, kept.size + 1)
            gain[kept] = np.maximum(0, n_up - ranks)
        else:
            for g, v in zip(kept, values, strict=True):
                low = (values > v).sum() + 1
                high = (values >= v).sum()
                gain[g] = np.maximum(0, n_up - np.arange(low, high + 1)).mean()
        for j, cols in enumerate(columns):
            k = min(len(cols), n_up - 1)
            out[i, j] = gain[cols].sum() / (k * n_up - k * (k + 1) / 2)
    return out


def _tie_order(seed: int = 3) -> np.ndarray:
    return np.random.default_rng(seed).permutation(N_GENES)


def _variants():
    """The same matrix as float32 CSR, float64 CSR, integer-valued CSR, dense, CSC,
    with explicit and negative zeros stored, and with each row's columns reversed."""
    x = _awkward()
    padded = x.tolil()
    padded[5, 8] = 0.0
    padded = sp.csr_matrix(padded)
    padded.data[padded.indptr[6] : padded.indptr[6] + 3] = 0.0  # explicit zeros
    padded.data[padded.indptr[7]] = -0.0
    reversed_rows = x.copy()
    for i in range(x.shape[0]):
        part = slice(x.indptr[i], x.indptr[i + 1])
        reversed_rows.indices[part] = x.indices[part][::-1]
        reversed_rows.data[part] = x.data[part][::-1]
    reversed_rows.has_sorted_indices = False
    return {
        "float32": (x, {}),
        "float64": (sp.csr_matrix(x, dtype=np.float64), {}),
        "dense": (x.toarray(), {}),
        "csc": (x.tocsc(), {}),
        "chunks_of_3": (x, {"chunk_size": 3}),
        "zeros_stored": (padded, {}),
        "unsorted_indices": (reversed_rows, {}),
    }


def _dense(x) -> np.ndarray:
    return np.asarray(x.toarray() if sp.issparse(x) else x, dtype=np.float64)


@pytest.mark.parametrize("variant", list(_variants()))
def test_ucell_equals_its_definition(variant):
    x, options = _variants()[variant]
    dense = _dense(x)
    for max_rank in (70, 150, 400):
        np.testing.assert_allclose(
            ucell_scores(x, GENES, SIGNATURES, max_rank=max_rank, **options),
            _ucell_by_definition(dense, SIGNATURES, max_rank),
            atol=1e-12,
            rtol=0,
        )


@pytest.mark.parametrize("variant", list(_variants()))
def test_aucell_equals_its_definition(variant):
    x, options = _variants()[variant]
    dense = _dense(x)
    for n_up in (5, 40, 150, 290):
        np.testing.assert_allclose(
            aucell_scores(x, GENES, SIGNATURES, n_up=n_up, ties="mean", **options),
            _aucell_by_definition(dense, SIGNATURES, n_up, "mean"),
            atol=1e-12,
            rtol=0,
        )
        for tie_order in (None, _tie_order()):
            np.testing.assert_allclose(
                aucell_scores(
                    x, GENES, SIGNATURES, n_up=n_up, ties="order", tie_order=tie_order, **options
                ),
                _aucell_by_definition(dense, SIGNATURES, n_up, "order", tie_order),
                atol=1e-12,
                rtol=0,
            )


def test_integer_counts_rank_like_their_logs():
    # log1p(c / total * 1e4) is increasing in c within a cell: the same ranks
    counts = sp.csr_matrix(_awkward_counts().round())
    logs = counts.multiply(1e4 / np.maximum(counts.sum(axis=1), 1.0)).log1p().tocsr()
    np.testing.assert_allclose(
        ucell_scores(counts.astype(np.int64), GENES, SIGNATURES, max_rank=150),
        ucell_scores(logs, GENES, SIGNATURES, max_rank=150),
        atol=1e-12,
    )
    np.testing.assert_allclose(
        aucell_scores(counts.astype(np.int32), GENES, SIGNATURES, n_up=40, ties="order"),
        aucell_scores(logs, GENES, SIGNATURES, n_up=40, ties="order"),
        atol=1e-12,
    )


def _adata(x: sp.csr_matrix) -> ad.AnnData:
    return ad.AnnData(
        X=x.copy(),
        obs=pd.DataFrame(index=[f"c{i}" for i in range(x.shape[0])]),
        var=pd.DataFrame(index=GENES),
    )


def test_ucell_equals_pyucell_on_awkward_cells():
    pyucell = pytest.importorskip("pyucell")
    x = _awkward()
    adata = _adata(x)
    for max_rank in (70, 150, 400):
        pyucell.compute_ucell_scores(
            adata, SIGNATURES, max_rank=max_rank, missing_genes="skip", n_jobs=1
        )
        reference = adata.obs[[f"{s}_UCell" for s in SIGNATURES]].to_numpy(dtype=np.float64)
        # pyucell sums ranks and divides in float32
        np.testing.assert_allclose(
            ucell_scores(x, GENES, SIGNATURES, max_rank=max_rank), reference, atol=1e-6, rtol=0
        )


def test_aucell_equals_decoupler_on_awkward_cells():
    dc = pytest.importorskip("decoupler")
    x = _awkward()
    adata = _adata(x)
    net = pd.DataFrame(
        [(s, g) for s, genes in SIGNATURES.items() for g in genes], columns=["source", "target"]
    )
    # decoupler's tie order: never-detected genes dropped, the rest shuffled with seed 0
    detected = np.flatnonzero(detected_genes(x))
    shuffle = np.random.default_rng(seed=0).choice(
        np.arange(detected.size), detected.size, replace=False
    )
    positions = np.empty(N_GENES, dtype=np.int64)
    positions[detected[shuffle]] = np.arange(detected.size)
    undetected = np.setdiff1d(np.arange(N_GENES), detected)
    positions[undetected] = np.arange(detected.size, N_GENES)
    for n_up in (5, 40, 150):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            result = dc.mt.aucell(adata, net, tmin=1, n_up=n_up)
        reference = (adata if result is None else result).obsm["score_aucell"]
        assert "c0" not in reference.index  # decoupler drops the empty cell
        ours = pd.DataFrame(
            aucell_scores(x, GENES, SIGNATURES, n_up=n_up, ties="order", tie_order=positions),
            index=adata.obs_names,
            columns=list(SIGNATURES),
        )
        np.testing.assert_allclose(
            ours.loc[reference.index, reference.columns].to_numpy(),
            reference.to_numpy(),
            atol=1e-12,
            rtol=0,
        )


def test_negative_value_names_its_cell():
    x = _awkward()
    x.data[x.indptr[9] + 2] = -0.5
    with pytest.raises(ValueError, match="Cell 9 has negative or NaN values"):
        ucell_scores(x, GENES, SIGNATURES, max_rank=150)
    with pytest.raises(ValueError, match="Cell 9 has negative or NaN values"):
        aucell_scores(x, GENES, SIGNATURES, n_up=40, ties="order", chunk_size=4)
