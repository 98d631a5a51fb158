"""The simulator's target sets: added genes leave every other count alone; a planted set
follows the activation latent in malignant cells; the truth rows."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from cd8exo.io.cargo import cargo_target_sets, read_cargo_table
from cd8exo.io.tables import read_gmt
from cd8exo.sim.cohort import AUTHOR_LABELS, simulate_cohort
from cd8exo.sim.demo import _protein_coding_symbols

ROOT = Path(__file__).resolve().parents[3]
PLANTED = "miR-765__MSIGDB71_MIRDB"
NULL_SET = "miR-150-5p__MSIGDB71_MIRDB"


@pytest.fixture(scope="module")
def base():
    signatures = read_gmt(ROOT / "resources/gene_sets/senders.gmt")
    sets, _ = cargo_target_sets(
        read_gmt(ROOT / "resources/targets/cargo_mirna_targets.gmt"),
        read_cargo_table(ROOT / "resources/targets/cargo_mirnas.tsv"),
    )
    pool = _protein_coding_symbols(ROOT / "resources/genome/gencode_v48_genes_homo_sapiens.csv.gz")
    return {
        "n_patients": 24,
        "n_cells": 24 * 100,
        "n_background_genes": 300,
        "signatures": {k: signatures[k] for k in ["Cytotoxic_cells_Danaher2017"]},
        "activation_signatures": ["Cytotoxic_cells_Danaher2017"],
        "independent_signatures": [],
        # no planted single genes: the IFN-gamma genes, raised with a_p, would lower every
        # other gene's share of a malignant cell's counts
        "negative_targets": (),
        "positive_targets": (),
        "null_targets": ["ACTB"],
        "background_pool": pool[:4000],
        "effect_size": 1.0,
        "low_cd8_patients": 0,
        "rng": 7,
    }, {k: sets[k] for k in (PLANTED, NULL_SET)}


@pytest.fixture(scope="module")
def cohorts(base):
    params, sets = base
    without = simulate_cohort(**params)
    with_sets = simulate_cohort(**params, target_sets=sets, planted_sets=[PLANTED])
    return without, with_sets, sets


def test_added_genes_leave_every_other_count_as_it_was(cohorts):
    without, with_sets, sets = cohorts
    old = with_sets.adata[:, without.adata.var_names]
    assert (old.X != without.adata.X).nnz == 0
    added = set(with_sets.adata.var_names) - set(without.adata.var_names)
    assert added == {g for genes in sets.values() for g in genes} - set(without.adata.var_names)
    assert list(with_sets.adata.var_names) == sorted(with_sets.adata.var_names)
    assert without.truth.equals(with_sets.truth.iloc[: len(without.truth)])


def _malignant_log_means(cohort, genes):
    adata = cohort.adata
    malignant = (adata.obs["author_cell_type"].map(AUTHOR_LABELS) == "malignant").to_numpy()
    x = adata[malignant, genes].X
    totals = np.asarray(adata[malignant].X.sum(axis=1)).ravel()
    cpm = np.asarray(x.sum(axis=1)).ravel() / totals * 1e6
    patients = adata.obs["donor_id"].to_numpy()[malignant]
    return np.array([np.log(cpm[patients == p].mean()) for p in cohort.patients["patient"]])


def test_half_of_the_planted_set_follows_the_activation_latent(cohorts):
    _, cohort, sets = cohorts
    record = cohort.adata.uns["simulation"]
    planted = list(record["planted_set_genes"])
    assert len(planted) == round(0.5 * len(sets[PLANTED]))
    assert set(planted) <= set(sets[PLANTED]) - set(sets[NULL_SET])
    activation = cohort.patients["activation"].to_numpy()
    # exp(-1.0 * a_p) on the planted genes: their summed CPM falls with a_p ...
    r_planted = np.corrcoef(activation, _malignant_log_means(cohort, planted))[0, 1]
    # ... and the null set's genes do not follow it
    null_genes = [g for g in sets[NULL_SET] if g in cohort.adata.var_names]
    r_null = np.corrcoef(activation, _malignant_log_means(cohort, null_genes))[0, 1]
    assert r_planted < -0.9
    assert abs(r_null) < 0.5


def test_truth_rows_of_the_sets(cohorts):
    _, cohort, _ = cohorts
    rows = cohort.truth.set_index("target").loc[[PLANTED, NULL_SET], "expected_sign"]
    assert rows.tolist() == [-1, 0]


def test_bad_set_settings(base):
    params, sets = base
    with pytest.raises(ValueError, match="planted_sets"):
        simulate_cohort(**params, target_sets=sets, planted_sets=["nope"])
    with pytest.raises(ValueError, match="set_fraction"):
        simulate_cohort(**params, target_sets=sets, planted_sets=[PLANTED], set_fraction=0)
    with pytest.raises(ValueError, match="lower set_fraction"):
        simulate_cohort(**params, target_sets=sets, planted_sets=[PLANTED], set_fraction=1.0)
