"""Tests of cd8exo.scoring against hand computations and scanpy.tl.score_genes."""

from __future__ import annotations

import logging

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scanpy as sc
import scipy.sparse as sp

from cd8exo.cells.harmonise import log_normalise
from cd8exo.scoring._chunks import gene_means
from cd8exo.scoring.prepare import signature_coverage
from cd8exo.scoring.score import score_signatures
from cd8exo.scoring.tirosh import control_genes, expression_bins


@pytest.fixture
def normalised(contract_adata) -> ad.AnnData:
    return log_normalise(contract_adata)


@pytest.fixture
def signatures(signature_genes) -> dict[str, list[str]]:
    return {
        "planted": signature_genes,
        "background": ["GENE0001", "GENE0050", "GENE0100", "GENE0150", "GENE0200"],
        "partly_missing": ["SIG1", "SIG2", "NOT_A_GENE"],
    }


def _scanpy_score(adata: ad.AnnData, genes: list[str], **kwargs) -> np.ndarray:
    scored = sc.tl.score_genes(adata, genes, copy=True, **kwargs)
    return scored.obs["score"].to_numpy()


# --------------------------------------------------------------------------- #
# Coverage
# --------------------------------------------------------------------------- #
def test_signature_coverage_by_name():
    coverage = signature_coverage(["A", "B", "C"], {"s1": ["A", "X", "C", "A"], "s2": ["Y", "Z"]})
    common = {"status": "scored", "reason": "", "n_rescued": 0, "n_overlap": 0}
    assert coverage.to_dict("records") == [
        {
            **common,
            "signature": "s1",
            "n_genes": 3,
            "n_found": 2,
            "n_missing": 1,
            "coverage": 2 / 3,
            "n_scored": 2,
            "genes_found": "A,C",
            "genes_rescued": "",
            "genes_missing": "X",
            "genes_overlap": "",
            "genes_scored": "A,C",
        },
        {
            **common,
            "signature": "s2",
            "n_genes": 2,
            "n_found": 0,
            "n_missing": 2,
            "coverage": 0.0,
            "n_scored": 0,
            "genes_found": "",
            "genes_rescued": "",
            "genes_missing": "Y,Z",
            "genes_overlap": "",
            "genes_scored": "",
        },
    ]


# --------------------------------------------------------------------------- #
# Hand computation
# --------------------------------------------------------------------------- #
def test_score_equals_hand_computation():
    # 4 cells x 6 genes. Gene means: G0 0.25, G1 0.5, G2 1, G3 2, G4 3, G5 10.
    x = np.array(
        [
            [1, 0, 0, 4, 2, 10],
            [0, 2, 1, 0, 4, 10],
            [0, 0, 2, 2, 6, 10],
            [0, 0, 1, 2, 0, 10],
        ],
        dtype=np.float32,
    )
    adata = ad.AnnData(X=sp.csr_matrix(x), var=pd.DataFrame(index=[f"G{i}" for i in range(6)]))
    # n_bins=3: bin size round(6 / 2) = 3; rank // 3 -> ranks 1..6 give bins 0,0,1,1,1,2.
    np.testing.assert_array_equal(
        expression_bins(gene_means(adata.X), n_bins=3), [0, 0, 1, 1, 1, 2]
    )
    # G3 (rank 4) is in bin 1 with G2 and G4; its controls are G2 and G4.
    controls = control_genes(adata.var_names, gene_means(adata.X), {"s": ["G3"]}, rng=0, n_bins=3)
    assert controls == {"s": ["G2", "G4"]}
    scores = score_signatures(adata, {"s": ["G3"]}, rng=0, n_bins=3)
    # Cell 1: 4 - (0 + 2) / 2 = 3; cell 2: 0 - (1 + 4) / 2 = -2.5; ...
    np.testing.assert_allclose(scores["s"].to_numpy(), [3.0, -2.5, -2.0, 1.5])
    # A signature spanning two bins (G0 in bin 0, G5 in bin 2): controls G1 only
    # (bin 2 holds only G5 itself, which is never its own control).
    scores = score_signatures(adata, {"t": ["G0", "G5"]}, rng=0, n_bins=3)
    np.testing.assert_allclose(scores["t"].to_numpy(), [5.5 - 0, 5.0 - 2, 5.0, 5.0])


# --------------------------------------------------------------------------- #
# Agreement with scanpy
# --------------------------------------------------------------------------- #
def test_equals_scanpy_when_controls_are_whole_bins(normalised, signatures):
    # With ctrl_size above every bin size, both implementations take every gene of the
    # signature's bins except the signature's own: the controls are the same, so the
    # scores must be too (this also checks the binning).
    ours = score_signatures(normalised, signatures, rng=0, ctrl_size=10_000)
    for name, genes in signatures.items():
        present = [g for g in genes if g in normalised.var_names]
        reference = _scanpy_score(normalised, present, ctrl_size=10_000)
        np.testing.assert_allclose(ours[name].to_numpy(), reference, rtol=1e-5, atol=1e-6)
        assert np.corrcoef(ours[name], reference)[0, 1] >= 0.999


def test_equals_numpy_formula_with_our_controls(normalised, signatures):
    scores = score_signatures(normalised, signatures, rng=3)
    controls = control_genes(normalised.var_names, gene_means(normalised.X), signatures, rng=3)
    x = pd.DataFrame(
        normalised.X.toarray().astype(np.float64),
        index=normalised.obs_names,
        columns=normalised.var_names,
    )
    for name, genes in signatures.items():
        present = [g for g in genes if g in x.columns]
        # scanpy's formula: mean over the signature genes minus mean over the controls.
        expected = x[present].mean(axis=1) - x[controls[name]].mean(axis=1)
        np.testing.assert_allclose(scores[name].to_numpy(), expected.to_numpy(), atol=1e-10)
        assert np.corrcoef(scores[name], expected)[0, 1] >= 0.999


def test_controls_are_drawn_per_bin_and_exclude_the_signature(contract_factory):
    adata = log_normalise(contract_factory(seed=1, n_background=1500, n_patients=3))
    means = gene_means(adata.X)
    bins = pd.Series(expression_bins(means, n_bins=25), index=adata.var_names)
    signature = ["SIG1", "SIG2", "GENE0010", "GENE0700"]
    controls = control_genes(adata.var_names, means, {"s": signature}, rng=0, ctrl_size=7)["s"]
    assert not set(controls) & set(signature)
    signature_bins = set(bins[signature])
    assert set(bins[controls]) == signature_bins
    for cut in signature_bins:
        available = int(((bins == cut) & ~bins.index.isin(signature)).sum())
        assert int((bins[controls] == cut).sum()) == min(7, available)


@pytest.mark.filterwarnings("ignore::FutureWarning")
def test_ranks_cells_like_scanpy_with_its_own_random_controls(contract_factory):
    # Enough genes that both draw 50 of ~60 genes per bin at random: different controls.
    adata = log_normalise(contract_factory(seed=2, n_background=1500, n_patients=4))
    genes = [f"SIG{i}" for i in range(1, 7)]
    ours = score_signatures(adata, {"planted": genes}, rng=11)["planted"].to_numpy()
    reference = _scanpy_score(adata, genes, random_state=5)
    assert np.corrcoef(ours, reference)[0, 1] > 0.95
    # The planted signal itself: CD8_T cells score higher than the others.
    is_cd8 = (adata.obs["cell_type"] == "CD8_T").to_numpy()
    assert ours[is_cd8].mean() > ours[~is_cd8].mean() + 1.0


# --------------------------------------------------------------------------- #
# Invariances and reproducibility
# --------------------------------------------------------------------------- #
def test_dense_and_sparse_give_the_same_scores(normalised, signatures):
    sparse_scores = score_signatures(normalised, signatures, rng=0)
    dense = normalised.copy()
    dense.X = normalised.X.toarray()
    dense_scores = score_signatures(dense, signatures, rng=0)
    np.testing.assert_allclose(dense_scores.to_numpy(), sparse_scores.to_numpy(), atol=1e-10)


def test_cell_order_does_not_matter(normalised, signatures):
    scores = score_signatures(normalised, signatures, rng=0)
    order = np.random.default_rng(1).permutation(normalised.n_obs)
    shuffled = score_signatures(normalised[order].copy(), signatures, rng=0)
    pd.testing.assert_frame_equal(shuffled.loc[scores.index], scores, atol=1e-10, rtol=0)


def test_chunking_does_not_matter(normalised, signatures):
    whole = score_signatures(normalised, signatures, rng=0)
    chunked = score_signatures(normalised, signatures, rng=0, chunk_size=37)
    pd.testing.assert_frame_equal(chunked, whole, atol=1e-12, rtol=0)


def test_seed_reproduces_exactly_and_seeds_differ(normalised, signatures, raw_factory):
    first = score_signatures(normalised, signatures, rng=42)
    again = score_signatures(normalised, signatures, rng=np.random.default_rng(42))
    pd.testing.assert_frame_equal(first, again, check_exact=True)
    big = raw_factory(seed=3, n_background=1500, n_patients=2)
    means = gene_means(big.X)
    a = control_genes(big.var_names, means, {"s": ["SIG1", "GENE0001"]}, rng=1)
    b = control_genes(big.var_names, means, {"s": ["SIG1", "GENE0001"]}, rng=2)
    assert a != b


def test_controls_do_not_depend_on_other_signatures(normalised, signatures):
    means = gene_means(normalised.X)
    alone = control_genes(normalised.var_names, means, {"planted": signatures["planted"]}, rng=9)
    together = control_genes(normalised.var_names, means, signatures, rng=9)
    assert together["planted"] == alone["planted"]


def test_output_is_cells_by_signatures(normalised, signatures):
    scores = score_signatures(normalised, signatures, rng=0)
    assert scores.shape == (normalised.n_obs, 3)
    assert scores.index.equals(normalised.obs_names)
    assert list(scores.columns) == ["planted", "background", "partly_missing"]
    assert scores.dtypes.eq(np.float64).all()


# --------------------------------------------------------------------------- #
# Errors and logging
# --------------------------------------------------------------------------- #
def test_signature_without_genes_is_named(normalised, signatures):
    bad = dict(signatures, mouse_only=["Cd8a", "Gzmb"], empty_too=["NOPE"])
    with pytest.raises(
        ValueError, match=r"Signature\(s\) \['mouse_only', 'empty_too'\] have no genes in the data"
    ):
        score_signatures(normalised, bad, rng=0)


def test_missing_genes_are_logged_by_name(normalised, signatures, caplog):
    with caplog.at_level(logging.WARNING, logger="cd8exo.scoring"):
        score_signatures(normalised, signatures, rng=0)
    assert (
        "Signature 'partly_missing': 1 of 3 genes not in the data and ignored: NOT_A_GENE"
        in caplog.text
    )


def test_too_many_bins_for_the_genes():
    with pytest.raises(ValueError, match=r"Too few genes \(3\) for n_bins=25"):
        expression_bins(np.array([1.0, 2.0, 3.0]), n_bins=25)


def test_gene_means_in_chunks(normalised, monkeypatch):
    import cd8exo.scoring._chunks as scoring_module

    expected = normalised.X.toarray().astype(np.float64).mean(axis=0)
    monkeypatch.setattr(scoring_module, "_CHUNK_VALUES", 11)
    np.testing.assert_allclose(gene_means(normalised.X), expected, rtol=1e-12)
    np.testing.assert_allclose(gene_means(normalised.X.tocsc()), expected, rtol=1e-12)


def test_many_sets_take_the_sparse_product_with_the_same_scores(normalised):
    # 40 small sets: W is sparse and tirosh_scores multiplies by the sparse W
    rng = np.random.default_rng(8)
    sets = {
        f"set{i}": rng.choice(normalised.var_names, size=5, replace=False).tolist()
        for i in range(40)
    }
    scores = score_signatures(normalised, sets, rng=1)
    controls = control_genes(normalised.var_names, gene_means(normalised.X), sets, rng=1)
    x = pd.DataFrame(normalised.X.toarray().astype(np.float64), columns=normalised.var_names)
    for name, genes in sets.items():
        expected = x[genes].mean(axis=1) - x[controls[name]].mean(axis=1)
        np.testing.assert_allclose(scores[name].to_numpy(), expected.to_numpy(), atol=1e-10)
