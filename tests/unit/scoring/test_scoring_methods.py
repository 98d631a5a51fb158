"""UCell, AUCell and ssGSEA scoring: known answers, invariances, reference implementations.

Reference values come from the hand computations written next to each assertion, from
brute force (AUCell's mean over every tie order) and from the reference packages
(pyucell, decoupler, gseapy) run on the same small seeded data.
"""

from __future__ import annotations

import itertools
import warnings

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from synthetic_data import make_raw

from cd8exo.cells.harmonise import log_normalise
from cd8exo.pl.scoring import concordance_figure
from cd8exo.scoring._chunks import cell_chunks
from cd8exo.scoring.concordance import concordance_table, method_scores
from cd8exo.scoring.rank import aucell_scores, detected_genes, ucell_scores
from cd8exo.scoring.score import METHODS, score_signatures
from cd8exo.scoring.ssgsea import group_sums, ssgsea_scores

# Genes A..F of two cells. Cell 0: A=5, B=3, C=3, D=0, E=1, F=0.5; cell 1 expresses D only.
HAND = np.array([[5.0, 3.0, 3.0, 0.0, 1.0, 0.5], [0.0, 0.0, 0.0, 2.0, 0.0, 0.0]])
HAND_GENES = list("ABCDEF")


def _toy_log_normalised(seed: int = 1, n_cells: int = 120, n_genes: int = 60) -> sp.csr_matrix:
    """Seeded ln(CP10k+1) of Poisson counts: many zeros and many ties (counts of 1)."""
    rng = np.random.default_rng(seed)
    counts = rng.poisson(rng.gamma(0.4, 1.5, n_genes), size=(n_cells, n_genes)).astype(float)
    counts[:, 7] = 0.0  # a gene never detected
    counts[5] = 0.0
    counts[5, :3] = 1.0  # a cell with three detected genes
    totals = np.maximum(counts.sum(axis=1, keepdims=True), 1.0)
    return sp.csr_matrix(np.log1p(counts / totals * 1e4).astype(np.float32))


@pytest.fixture
def toy() -> tuple[sp.csr_matrix, list[str], dict[str, list[str]]]:
    x = _toy_log_normalised()
    genes = [f"G{i:02d}" for i in range(x.shape[1])]
    rng = np.random.default_rng(2)
    signatures = {
        f"s{j}": sorted(rng.choice(genes, size=size, replace=False).tolist())
        for j, size in enumerate([3, 5, 8, 13])
    }
    signatures["with_undetected"] = ["G07", "G01", "G02"]
    return x, genes, signatures


@pytest.fixture
def normalised(contract_adata) -> ad.AnnData:
    return log_normalise(contract_adata)


SIGNATURES = {
    "planted": [f"SIG{i}" for i in range(1, 7)],
    "background": ["GENE0001", "GENE0050", "GENE0100", "GENE0150", "GENE0200"],
}


# --------------------------------------------------------------------------- #
# Known answers by hand
# --------------------------------------------------------------------------- #
def test_ucell_by_hand():
    # Cell 0, non-zero values ranked high to low: A 1, B and C tied at 2-3 (2.5 each), E 4,
    # F 5; D is zero (counts as max_rank). U score = 1 - (sum r - n(n+1)/2) / (n max - n(n+1)/2).
    x = sp.csr_matrix(HAND)
    scores = ucell_scores(x, HAND_GENES, {"AD": ["A", "D"], "BE": ["B", "E"]}, max_rank=4)
    # AD: ranks 1, 4 -> 1 - (5 - 3) / (8 - 3) = 0.6; BE: 2.5, 4 -> 1 - 3.5 / 5 = 0.3
    np.testing.assert_allclose(scores[0], [0.6, 0.3])
    # Cell 1: D ranks 1, A counts 4 -> 0.6 again; B and E count 4 -> 0.
    np.testing.assert_allclose(scores[1], [0.6, 0.0])
    # max_rank 3: E (rank 4) and D count as 3 -> AD 1 - (4 - 3)/(6 - 3) = 2/3, BE 1 - 2.5/3
    scores = ucell_scores(x, HAND_GENES, {"AD": ["A", "D"], "BE": ["B", "E"]}, max_rank=3)
    np.testing.assert_allclose(scores[0], [2 / 3, 1 / 6])


def test_aucell_by_hand():
    # All six genes are detected. n_up = 3: AUC = sum(max(0, 3 - r)) / max, where
    # max = k*3 - k(k+1)/2 with k = min(n, 2) = 2 -> 3.
    x = sp.csr_matrix(HAND)
    # ties by column order, cell 0: A 1, B 2, C 3, E 4, F 5, D 6 -> set {A, C}: (2 + 0) / 3
    order = aucell_scores(x, HAND_GENES, {"AC": ["A", "C"]}, n_up=3, ties="order")
    assert order[0, 0] == pytest.approx(2 / 3)
    # mean over tie orders: C is at 2 or 3 -> gain (1 + 0) / 2 -> (2 + 0.5) / 3
    mean = aucell_scores(x, HAND_GENES, {"AC": ["A", "C"]}, n_up=3, ties="mean")
    assert mean[0, 0] == pytest.approx(2.5 / 3)
    # cell 1: D first, then five zeros tied at ranks 2-6. Order: A 2, C 4 -> (1 + 0) / 3.
    assert order[1, 0] == pytest.approx(1 / 3)
    # Mean: each zero gains the mean of max(0, 3 - r) over r = 2..6 = 1/5 -> (2/5) / 3.
    assert mean[1, 0] == pytest.approx(0.4 / 3)


def test_aucell_mean_is_the_average_over_every_tie_order():
    # Brute force: ordinal AUC averaged over all 6! column orders = expectation over
    # uniformly random tie breaking, which ties="mean" computes in closed form.
    rng = np.random.default_rng(4)
    values = rng.choice([0.0, 0.0, 1.0, 1.0, 2.0], size=(5, 6))
    values[:, 0] = np.maximum(values[:, 0], 1.0)  # every gene detected somewhere
    values[0, 1:] = values[0, 1:] + (values[0, 1:] == 0)
    x = sp.csr_matrix(values)
    sets = {"a": ["A", "B"], "b": ["C", "D", "E"], "c": ["F"]}
    mean = aucell_scores(x, HAND_GENES, sets, n_up=3, ties="mean")
    total = np.zeros_like(mean)
    permutations = list(itertools.permutations(range(6)))
    for order in permutations:
        order = list(order)
        total += aucell_scores(
            x[:, order], [HAND_GENES[i] for i in order], sets, n_up=3, ties="order"
        )
    np.testing.assert_allclose(mean, total / len(permutations), atol=1e-12)


# --------------------------------------------------------------------------- #
# Reference implementations
# --------------------------------------------------------------------------- #
def test_ucell_equals_pyucell(toy):
    pyucell = pytest.importorskip("pyucell")
    x, genes, signatures = toy
    adata = ad.AnnData(X=x.copy(), var=pd.DataFrame(index=genes))
    for max_rank in (15, 40):
        pyucell.compute_ucell_scores(
            adata, signatures, max_rank=max_rank, missing_genes="skip", n_jobs=1, chunk_size=50
        )
        reference = adata.obs[[f"{s}_UCell" for s in signatures]].to_numpy(dtype=np.float64)
        ours = ucell_scores(x, genes, signatures, max_rank=max_rank)
        # pyucell sums ranks and divides in float32
        np.testing.assert_allclose(ours, reference, atol=1e-6, rtol=0)


def test_aucell_equals_decoupler_given_its_gene_order(toy):
    dc = pytest.importorskip("decoupler")
    x, genes, signatures = toy
    names = pd.Index([f"c{i}" for i in range(x.shape[0])])
    adata = ad.AnnData(X=x.copy(), obs=pd.DataFrame(index=names), var=pd.DataFrame(index=genes))
    net = pd.DataFrame(
        [(s, g) for s, gs in signatures.items() for g in gs], columns=["source", "target"]
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        dc.mt.aucell(adata, net, tmin=1, n_up=6)
    reference = adata.obsm["score_aucell"]
    # decoupler drops never-detected genes, then shuffles the genes with seed 0 so that
    # ordinal ranks break ties at random; given that gene order the AUCs are equal.
    detected = detected_genes(x)
    kept = np.array(genes)[detected]
    shuffle = np.random.default_rng(seed=0).choice(np.arange(kept.size), kept.size, replace=False)
    ours = aucell_scores(
        x[:, np.flatnonzero(detected)[shuffle]],
        list(kept[shuffle]),
        signatures,
        n_up=6,
        ties="order",
    )
    ours = pd.DataFrame(ours, index=names, columns=list(signatures))
    np.testing.assert_allclose(
        ours.loc[reference.index, reference.columns].to_numpy(), reference.to_numpy(), atol=1e-12
    )
    # the same tie order given as positions, without reordering the matrix
    detected_columns = np.flatnonzero(detected)
    positions = np.empty(len(genes), dtype=np.int64)
    positions[detected_columns[shuffle]] = np.arange(kept.size)
    positions[np.flatnonzero(~detected)] = np.arange(kept.size, len(genes))
    in_place = aucell_scores(x, genes, signatures, n_up=6, ties="order", tie_order=positions)
    np.testing.assert_allclose(in_place, ours.to_numpy(), atol=1e-12)
    # ties="mean" differs from one arbitrary tie order (these toy cells are mostly ties:
    # counts of 0, 1 and 2), but ranks the cells alike
    mean = pd.DataFrame(aucell_scores(x, genes, signatures, n_up=6), index=names)
    mean.columns = list(signatures)
    for signature in reference.columns:
        r = np.corrcoef(mean.loc[reference.index, signature], reference[signature])[0, 1]
        assert r > 0.8


def test_ssgsea_equals_gseapy_on_hand_made_pseudobulks(normalised):
    import gseapy

    cd8 = (normalised.obs["cell_type"] == "CD8_T").to_numpy()
    counts = normalised.layers["counts"][cd8].toarray()
    patients = normalised.obs["patient"].astype(str).to_numpy()[cd8]
    profiles = pd.DataFrame(counts, columns=normalised.var_names).groupby(patients).sum()
    reference = gseapy.ssgsea(
        data=profiles.T,
        gene_sets=SIGNATURES,
        min_size=1,
        max_size=10_000,
        permutation_num=0,
        threads=1,
        outdir=None,
        no_plot=True,
    ).res2d
    reference = reference.astype({"ES": float}).pivot_table(
        index="Name", columns="Term", values="ES", aggfunc="first"
    )
    cells = score_signatures(normalised, SIGNATURES, rng=0, method="ssgsea")
    per_patient = cells[cd8].groupby(patients).mean()
    pd.testing.assert_frame_equal(
        per_patient[list(SIGNATURES)],
        reference.loc[per_patient.index, list(SIGNATURES)],
        check_names=False,
        atol=1e-9,
    )
    # one score per patient, on the CD8 T cells only
    assert cells[~cd8].isna().all().all()
    spread = cells[cd8].groupby(patients).agg(lambda v: v.max() - v.min())
    assert (spread == 0).all().all()


def test_group_sums_equal_dense_sums(toy):
    x, genes, _ = toy
    groups = np.array(["b", "a", None] * (x.shape[0] // 3), dtype=object)
    sums = group_sums(x, groups, var_names=genes, expm1=True)
    dense = np.expm1(x.toarray().astype(np.float64))
    assert list(sums.index) == ["a", "b"]
    np.testing.assert_allclose(sums.loc["a"], dense[groups == "a"].sum(axis=0), rtol=1e-12)
    np.testing.assert_allclose(sums.loc["b"], dense[groups == "b"].sum(axis=0), rtol=1e-12)


def test_ssgsea_scale_of_a_profile_does_not_matter():
    rng = np.random.default_rng(0)
    profiles = pd.DataFrame(
        rng.gamma(1.0, 1.0, size=(4, 300)), columns=[f"G{i}" for i in range(300)]
    )
    sets = {"s": [f"G{i}" for i in range(20)]}
    a = ssgsea_scores(profiles, sets, rng=0)
    b = ssgsea_scores(profiles * 7.5, sets, rng=0)
    pd.testing.assert_frame_equal(a, b)


# --------------------------------------------------------------------------- #
# Invariances
# --------------------------------------------------------------------------- #
@pytest.mark.parametrize(
    ("method", "options"),
    [
        ("tirosh", {"ctrl_size": 10_000}),
        ("ucell", {"max_rank": 50}),
        ("aucell", {"aucell_ties": "mean"}),
        ("aucell", {"aucell_ties": "order"}),
    ],
)
def test_sparse_dense_chunks_and_cell_order_do_not_matter(normalised, method, options):
    scores = score_signatures(normalised, SIGNATURES, rng=0, method=method, **options)
    dense = normalised.copy()
    dense.X = normalised.X.toarray()
    pd.testing.assert_frame_equal(
        score_signatures(dense, SIGNATURES, rng=0, method=method, **options), scores, atol=1e-12
    )
    chunked = score_signatures(
        normalised, SIGNATURES, rng=0, method=method, chunk_size=17, **options
    )
    pd.testing.assert_frame_equal(chunked, scores, atol=1e-12)
    order = np.random.default_rng(5).permutation(normalised.n_obs)
    shuffled = score_signatures(
        normalised[order].copy(), SIGNATURES, rng=0, method=method, **options
    )
    pd.testing.assert_frame_equal(shuffled.loc[scores.index], scores, atol=1e-12)


@pytest.mark.parametrize(
    ("method", "options"),
    [
        # whole-bin controls: no random draw, so the gene order cannot matter
        ("tirosh", {"ctrl_size": 10_000}),
        ("ucell", {}),
        ("aucell", {"aucell_ties": "mean"}),
    ],
)
def test_gene_order_does_not_matter(normalised, method, options):
    scores = score_signatures(normalised, SIGNATURES, rng=0, method=method, **options)
    order = np.random.default_rng(6).permutation(normalised.n_vars)
    shuffled = score_signatures(
        normalised[:, order].copy(), SIGNATURES, rng=0, method=method, **options
    )
    pd.testing.assert_frame_equal(shuffled, scores, atol=1e-12)


def test_float64_values_rank_like_float32(toy):
    x, genes, signatures = toy
    as64 = sp.csr_matrix(x, dtype=np.float64)
    np.testing.assert_allclose(
        ucell_scores(as64, genes, signatures), ucell_scores(x, genes, signatures)
    )
    np.testing.assert_allclose(
        aucell_scores(as64, genes, signatures, ties="order"),
        aucell_scores(x, genes, signatures, ties="order"),
    )


def test_explicit_zeros_are_zeros(toy):
    x, genes, signatures = toy
    padded = x.copy()
    padded.data[::5] = 0.0  # stored zeros
    clean = padded.copy()
    clean.eliminate_zeros()
    for ties in ("mean", "order"):
        np.testing.assert_allclose(
            aucell_scores(padded, genes, signatures, ties=ties),
            aucell_scores(clean, genes, signatures, ties=ties),
        )
    np.testing.assert_allclose(
        ucell_scores(padded, genes, signatures), ucell_scores(clean, genes, signatures)
    )


@pytest.mark.parametrize("method", METHODS)
def test_seed_reproduces_exactly(normalised, method):
    first = score_signatures(normalised, SIGNATURES, rng=42, method=method)
    again = score_signatures(normalised, SIGNATURES, rng=42, method=method)
    pd.testing.assert_frame_equal(first, again, check_exact=True)


@pytest.mark.parametrize("method", METHODS)
def test_every_method_finds_the_planted_signal(normalised, method):
    # SIG1..6 are raised in CD8 T cells in proportion to the patient's planted activation
    scores = score_signatures(normalised, SIGNATURES, rng=0, method=method)
    cd8 = (normalised.obs["cell_type"] == "CD8_T").to_numpy()
    patients = normalised.obs["patient"].astype(str).to_numpy()[cd8]
    per_patient = scores[cd8].groupby(patients).mean()["planted"]
    truth = pd.Series(make_raw(seed=0).uns["truth"]["activation"])  # the contract_adata seed
    rho = per_patient.rank().corr(truth.loc[per_patient.index].rank())
    assert rho > 0.8


def test_cell_chunks_cover_every_cell_once(toy):
    x, _, _ = toy
    for kwargs in ({"chunk_size": 7}, {"max_values": 100}, {}):
        pieces = list(cell_chunks(x, **kwargs))
        assert pieces[0][0] == 0
        assert pieces[-1][1] == x.shape[0]
        assert all(a[1] == b[0] for a, b in itertools.pairwise(pieces))
        stacked = sp.vstack([chunk for _, _, chunk in pieces]).toarray()
        np.testing.assert_array_equal(stacked, x.toarray())


# --------------------------------------------------------------------------- #
# Errors
# --------------------------------------------------------------------------- #
def test_negative_values_are_refused(toy):
    x, genes, signatures = toy
    scaled = x.copy()
    scaled.data[3] = -1.0
    with pytest.raises(ValueError, match="negative or NaN values; rank-based scores"):
        ucell_scores(scaled, genes, signatures)
    scaled.data[3] = np.nan
    with pytest.raises(ValueError, match="negative or NaN values"):
        aucell_scores(scaled, genes, signatures)


def test_ucell_signature_longer_than_max_rank():
    with pytest.raises(ValueError, match=r"more genes than max_rank=2"):
        ucell_scores(sp.csr_matrix(HAND), HAND_GENES, {"long": ["A", "B", "C"]}, max_rank=2)


def test_signature_without_genes_is_refused_by_the_rank_methods():
    with pytest.raises(ValueError, match=r"\['none'\] have no genes in the data"):
        ucell_scores(sp.csr_matrix(HAND), HAND_GENES, {"none": ["Z"]})
    with pytest.raises(ValueError, match=r"\['none'\] have no genes in the data"):
        aucell_scores(sp.csr_matrix(HAND), HAND_GENES, {"ok": ["A"], "none": ["Z"]}, n_up=2)


def test_aucell_signature_never_detected_is_nan(caplog):
    x = sp.csr_matrix(np.array([[1.0, 2.0, 0.0], [3.0, 0.0, 0.0]]))
    scores = aucell_scores(x, ["A", "B", "C"], {"c": ["C"], "a": ["A"]}, n_up=2)
    assert np.isnan(scores[:, 0]).all()
    np.testing.assert_allclose(scores[:, 1], [0.0, 1.0])  # A ranks 2 then 1 of 2 detected


def test_aucell_n_up_bounds():
    with pytest.raises(ValueError, match=r"n_up=9 must be between 2 and the number of detected"):
        aucell_scores(sp.csr_matrix(HAND), HAND_GENES, {"a": ["A"]}, n_up=9)
    with pytest.raises(ValueError, match="ties must be 'mean' or 'order'"):
        aucell_scores(sp.csr_matrix(HAND), HAND_GENES, {"a": ["A"]}, ties="random")
    with pytest.raises(ValueError, match=r"tie_order must be a permutation of 0\.\.5"):
        aucell_scores(
            sp.csr_matrix(HAND), HAND_GENES, {"a": ["A"]}, ties="order", tie_order=[0] * 6
        )


def test_unknown_method(normalised):
    with pytest.raises(ValueError, match="Unknown scoring method 'magic'"):
        score_signatures(normalised, SIGNATURES, rng=0, method="magic")


# --------------------------------------------------------------------------- #
# Concordance between methods
# --------------------------------------------------------------------------- #
def test_concordance_known_answers():
    cells = {
        "m1": pd.DataFrame({"s": [1.0, 2.0, 3.0, 4.0]}),
        "m2": pd.DataFrame({"s": [10.0, 20.0, 30.0, 400.0]}),  # same order, not linear
        "m3": pd.DataFrame({"s": [4.0, 3.0, 2.0, 1.0]}),
    }
    table = concordance_table(cells, {"m1": cells["m1"], "m3": cells["m3"]})
    row = table.set_index(["level", "method_a", "method_b"]).loc[("cell", "m1", "m2")]
    assert row["spearman"] == pytest.approx(1.0)
    assert row["pearson"] < 0.9
    assert row["n"] == 4
    patient = table.set_index(["level", "method_a", "method_b"]).loc[("patient", "m1", "m3")]
    assert patient["spearman"] == pytest.approx(-1.0)
    assert len(table) == 4  # three cell pairs + one patient pair


def test_method_scores_and_figure(normalised):
    cells, patients = method_scores(normalised, SIGNATURES, rng=0, min_cells=5)
    assert set(cells) == {"tirosh", "ucell", "aucell"}
    assert set(patients) == set(METHODS)
    n_cd8 = int((normalised.obs["cell_type"] == "CD8_T").sum())
    assert all(len(table) == n_cd8 for table in cells.values())
    table = concordance_table(cells, patients)
    planted = table[(table["signature"] == "planted") & (table["level"] == "patient")]
    assert len(planted) == 6
    # every scorer orders the patients by the planted activation
    assert (planted["spearman"] > 0.7).all(), planted
    figure = concordance_figure(table, title="synthetic")
    assert len(figure.axes) == 3  # two panels and the colour bar


def test_ssgsea_batches_and_sample_names_do_not_matter():
    rng = np.random.default_rng(3)
    profiles = pd.DataFrame(
        rng.gamma(1.0, 1.0, size=(9, 400)), columns=[f"G{i}" for i in range(400)]
    )
    profiles.iloc[:, :20] = 0.0  # ties at the bottom
    sets = {"a": [f"G{i}" for i in range(10, 40)], "b": [f"G{i}" for i in range(200, 205)]}
    whole = ssgsea_scores(profiles, sets, rng=0, batch_size=100)
    batched = ssgsea_scores(profiles, sets, rng=0, batch_size=4)
    pd.testing.assert_frame_equal(whole, batched)
    assert list(whole.index) == list(range(9))  # integer sample names are kept
    assert whole.notna().all().all()
