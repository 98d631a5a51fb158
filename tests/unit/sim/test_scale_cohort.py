"""cd8exo.sim.scale (the cohorts of make bench-scale) and its sparse negative-binomial sampler."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd
import pytest
from scipy import sparse, stats

from cd8exo.io.local import read_dataset
from cd8exo.sim import scale
from cd8exo.sim.cohort import AUTHOR_LABELS
from cd8exo.sim.scale import ScaleSpec, make_scale_cohort, simulate_scale_cohort
from cd8exo.sim.sparse_nb import sparse_nb

ACTIVATION = ["Chu2023_CD8_c2_Teff", "Cytotoxic_cells_Danaher2017"]
SMALL = ScaleSpec(n_cells=8000, n_genes=3000, n_patients=16, seed=11)


@pytest.fixture(scope="module")
def small():
    return simulate_scale_cohort(SMALL)


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    folder = tmp_path_factory.mktemp("scale")
    return make_scale_cohort(folder, SMALL, chunk_cells=700)


# --------------------------------------------------------------------------- #
# The sampler draws NB(mu, phi): mean mu, P(0) = (1 + mu phi)^(-1/phi), var mu + phi mu^2
# --------------------------------------------------------------------------- #
def test_sparse_nb_draws_the_negative_binomial():
    rng = np.random.default_rng(3)
    mu = np.array([1e-3, 0.05, 0.5, 3.0, 15.0, 25.0, 200.0])  # both branches (<= 20, > 20)
    phi = np.array([0.2, 0.5, 0.1, 1.0, 0.3, 0.2, 0.05])
    n = 200_000
    x = sparse_nb(
        mu[None, :], cell_types=np.zeros(n, int), scale=np.ones(n), dispersion=phi, rng=rng
    )
    assert x.dtype == np.float32
    assert np.array_equal(x.data, np.round(x.data))
    assert x.data.min() >= 1  # stored entries are the non-zeros
    dense = x.toarray().astype(float)
    np.testing.assert_allclose(dense.mean(0), mu, rtol=0.05)
    np.testing.assert_allclose(dense.var(0), mu + phi * mu**2, rtol=0.08)
    p_zero = (1 + mu * phi) ** (-1 / phi)
    np.testing.assert_allclose((dense == 0).mean(0), p_zero, atol=0.004)


def test_sparse_nb_scales_each_cell_and_type():
    rng = np.random.default_rng(4)
    n = 100_000
    fractions = np.array([[2.0, 0.0, 0.1], [0.0, 5.0, 0.1]])
    types = np.repeat([0, 1], n // 2)
    size = np.exp(rng.normal(0, 0.35, n))  # library sizes vary within a type
    x = sparse_nb(fractions, cell_types=types, scale=size, dispersion=np.full(3, 0.3), rng=rng)
    dense = x.toarray()
    # type 1 never expresses gene 0 (and type 0 gene 1): an exact zero
    assert dense[types == 1, 0].sum() == 0
    assert dense[types == 0, 1].sum() == 0
    for t in (0, 1):
        expected = fractions[t] * size[types == t].mean()
        np.testing.assert_allclose(dense[types == t].mean(0), expected, rtol=0.05)
    # a cell's counts follow its library size
    big = size > np.quantile(size, 0.8)
    small_ = size < np.quantile(size, 0.2)
    assert dense[big & (types == 0), 0].mean() > 2 * dense[small_ & (types == 0), 0].mean()


# --------------------------------------------------------------------------- #
# The cohort
# --------------------------------------------------------------------------- #
def test_layout_author_labels_and_integer_counts(small):
    adata = small.adata
    assert adata.shape == (8000, 3000)
    assert sparse.issparse(adata.X)
    assert adata.X.format == "csr"
    assert np.array_equal(adata.X.data, np.round(adata.X.data))
    assert set(adata.obs["author_cell_type"].cat.categories) == set(AUTHOR_LABELS)
    counts = adata.obs["author_cell_type"].value_counts()
    assert counts["T cells CD8+"] > 500
    assert counts["Cancer cells"] > 2000
    assert adata.obs["donor_id"].nunique() == 16
    assert adata.obs_names.is_unique
    assert {"PLP2", "CXCL9", "CD8A", "MIA", "MT-CO1"} <= set(adata.var_names)
    # the truth table of the demo's planted pairs, for check_truth
    truth = small.truth.set_index(["signature", "target"])["expected_sign"]
    assert truth[("Chu2023_CD8_c2_Teff", "PLP2")] == -1
    assert truth[("Chu2023_CD8_c2_Teff", "CXCL9")] == 1
    assert truth[("Tcell_exhaustion_SignatuR", "PLP2")] == 0
    assert set(small.truth["dataset"]) == {"scale_8000"}


def _pseudobulk(adata, label: str, genes: list[str]) -> pd.Series:
    """log1p of CPM of ``genes`` summed over each patient's cells of type ``label``."""
    cells = (adata.obs["author_cell_type"] == label).to_numpy()
    x = adata.X[cells]
    patients = adata.obs["donor_id"].to_numpy()[cells]
    columns = adata.var_names.get_indexer(genes)
    frame = pd.DataFrame(
        {
            "patient": patients,
            "genes": np.asarray(x[:, columns].sum(axis=1)).ravel(),
            "total": np.asarray(x.sum(axis=1)).ravel(),
        }
    )
    sums = frame.groupby("patient").sum()
    return np.log1p(1e6 * sums["genes"] / sums["total"])


def test_the_planted_pairs_hold_at_patient_level(small):
    adata = small.adata
    signatures = scale._plan(SMALL).signal.signatures
    activation = sorted({g for s in ACTIVATION for g in signatures[s]})
    exhaustion = list(signatures["Tcell_exhaustion_SignatuR"])
    latent = small.patients.set_index("patient")["activation"]
    usable = small.patients.set_index("patient")["n_cd8_t"] >= 10
    latent = latent[usable]
    sender = _pseudobulk(adata, "T cells CD8+", activation)[latent.index]
    independent = _pseudobulk(adata, "T cells CD8+", exhaustion)[latent.index]
    plp2 = _pseudobulk(adata, "Cancer cells", ["PLP2"])[latent.index]
    cxcl9 = _pseudobulk(adata, "Cancer cells", ["CXCL9", "CXCL10", "STAT1"])[latent.index]
    # the sender follows a_p; the receivers follow it down (PLP2) and up (IFN-gamma genes)
    assert stats.spearmanr(sender, latent)[0] > 0.8
    assert stats.spearmanr(sender, plp2)[0] < -0.6
    assert stats.spearmanr(sender, cxcl9)[0] > 0.6
    # the exhaustion signature follows e_p, uncorrelated with a_p by construction
    assert abs(stats.spearmanr(independent, plp2)[0]) < 0.5


def test_about_1500_detected_genes_per_cell_at_20000_genes():
    spec = ScaleSpec(n_cells=800, n_genes=20_000, n_patients=8, seed=5)
    adata = simulate_scale_cohort(spec).adata
    assert adata.n_vars == 20_000
    good = ~adata.obs_names.isin(adata.uns["simulation"]["low_quality_cells"])
    detected = np.median(np.diff(adata.X.indptr)[good])
    assert 1200 < detected < 1800


def test_written_file_equals_the_one_shot_cohort(small, written):
    back = ad.read_h5ad(written["h5ad"])
    assert (back.X != small.adata.X).nnz == 0
    assert back.X.dtype == np.float32
    pd.testing.assert_frame_equal(back.obs, small.adata.obs)
    assert back.var_names.equals(small.adata.var_names)
    np.testing.assert_array_equal(
        back.uns["simulation"]["low_quality_cells"],
        small.adata.uns["simulation"]["low_quality_cells"],
    )
    pd.testing.assert_frame_equal(pd.read_csv(written["truth"], sep="\t"), small.truth)
    labels = pd.read_csv(written["label_map"], sep="\t")
    assert set(labels["label"]) == set(AUTHOR_LABELS)


def test_the_10x_copy_reads_back_as_the_h5ad(written):
    """make bench-scale --format 10x_mtx: the same cells, genes, counts and labels."""
    folder, cells = scale.make_10x_copy(written, chunk_cells=900)
    back = read_dataset(
        path=folder, data_format="10x_mtx", cell_table=cells, cell_id_column="barcode"
    )
    h5ad = ad.read_h5ad(written["h5ad"])
    assert (back.X != h5ad.X).nnz == 0
    assert back.var_names.equals(h5ad.var_names)
    assert back.obs_names.equals(h5ad.obs_names)
    for column in ("donor_id", "sample_id", "author_cell_type"):
        assert (back.obs[column].astype(str) == h5ad.obs[column].astype(str)).all()
    stamp = (folder / "matrix.mtx.gz").stat().st_mtime_ns
    assert scale.make_10x_copy(written) == (folder, cells)  # cached: not written again
    assert (folder / "matrix.mtx.gz").stat().st_mtime_ns == stamp


def test_chunk_size_does_not_change_the_file(tmp_path):
    spec = ScaleSpec(n_cells=2400, n_genes=1500, n_patients=8, seed=2)
    scale.write_scale_cohort(spec, tmp_path / "one.h5ad", chunk_cells=1)
    scale.write_scale_cohort(spec, tmp_path / "all.h5ad", chunk_cells=10**9)
    one, whole = ad.read_h5ad(tmp_path / "one.h5ad"), ad.read_h5ad(tmp_path / "all.h5ad")
    assert (one.X != whole.X).nnz == 0
    assert one.obs_names.equals(whole.obs_names)
    # backed (on-disk) reading sees the same CSR
    backed = ad.read_h5ad(tmp_path / "one.h5ad", backed="r")
    assert (backed.X[100:200] != whole.X[100:200]).nnz == 0
    # another seed gives another cohort
    other = simulate_scale_cohort(ScaleSpec(n_cells=2400, n_genes=1500, n_patients=8, seed=3))
    assert (other.adata.X != whole.X).nnz > 0


def test_the_cache_generates_once(tmp_path, monkeypatch):
    spec = ScaleSpec(n_cells=2000, n_genes=1200, n_patients=8)
    files = make_scale_cohort(tmp_path, spec)
    assert files["h5ad"].parent.name == spec.name
    assert "cells2000_genes1200_pat8" in spec.name
    stamp = files["h5ad"].stat().st_mtime_ns

    def fail(*args, **kwargs):
        msg = "regenerated"
        raise AssertionError(msg)

    monkeypatch.setattr(scale, "write_scale_cohort", fail)
    assert make_scale_cohort(tmp_path, spec) == files
    assert files["h5ad"].stat().st_mtime_ns == stamp
    # an interrupted generation (no meta.json) is generated again
    files["meta"].unlink()
    with pytest.raises(AssertionError, match="regenerated"):
        make_scale_cohort(tmp_path, spec)


def test_default_patients_follow_the_size():
    assert ScaleSpec(n_cells=10_000).patients == 40
    assert ScaleSpec(n_cells=100_000).patients == 40
    assert ScaleSpec(n_cells=1_000_000).patients == 200
    assert ScaleSpec(n_cells=10_000, n_patients=60).patients == 60
