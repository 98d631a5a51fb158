"""cd8exo.calibrate and the simulator's correlated targets: calibration and power, small.

The full run (``make calibrate``: 500 null cohorts, 200 cohorts per power cell) is in
the README; here the same code runs on ~100 tiny null cohorts and a 2 x 2 power grid,
with few genes, cells and permutations, and the answers are checked against the
binomial distribution and against known orderings of power.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from cd8exo.sim import calibrate
from cd8exo.sim.calibrate import run as calibrate_run
from cd8exo.sim.calibrate.cohorts import run_null_cohorts, run_power_cohorts
from cd8exo.sim.calibrate.settings import CalibrationInputs, CalibrationSettings, load_inputs
from cd8exo.sim.calibrate.tables import (
    P_VALUE_KINDS,
    binomial_ci,
    power_table,
    rejections,
    type1_table,
)
from cd8exo.sim.cohort import simulate_cohort

ROOT = Path(__file__).resolve().parents[3]
RESOURCES = ROOT / "resources"
PRIMARY = ("Cytotoxic_cells_Danaher2017", "PLP2")
N_NULL = 100
N_POWER = 16


@pytest.fixture(scope="module")
def inputs() -> CalibrationInputs:
    full = load_inputs(RESOURCES, signatures=[PRIMARY[0]], targets=["PLP2", "ACTB"])
    # a shorter background pool only saves time: the drawn genes' names do not matter
    return replace(full, background_pool=full.background_pool[:3000])


@pytest.fixture(scope="module")
def small() -> CalibrationSettings:
    """Tiny cohorts: 7 (exact permutations) or 10 patients, 80 cells each, ~250 genes."""
    return CalibrationSettings(
        null_sizes=(7, 10),
        power_sizes=(7, 20),
        power_rhos=(0.2, 0.8),
        cells_per_patient=80,
        n_background_genes=150,
        min_malignant_cells=10,
        n_perm=500,
        n_boot=200,
        n_random_sets=19,
    )


@pytest.fixture(scope="module")
def null(inputs, small) -> pd.DataFrame:
    return run_null_cohorts(N_NULL, inputs=inputs, settings=small, rng=11)


@pytest.fixture(scope="module")
def power(inputs, small) -> pd.DataFrame:
    # power is asserted for the permutation p only: no CI, no random sets (time)
    settings = replace(small, n_boot=0, n_random_sets=0)
    return run_power_cohorts(N_POWER, inputs=inputs, settings=settings, rng=12)


def primary_rows(table: pd.DataFrame) -> pd.DataFrame:
    return table[(table["signature"] == PRIMARY[0]) & (table["target"] == PRIMARY[1])]


# ---- the simulator's correlated targets -------------------------------------------------


def simulate_correlated(inputs, **kwargs):
    params = {
        "n_patients": 400,
        "n_cells": 400 * 50,
        "n_background_genes": 20,
        "signatures": inputs.signatures,
        "activation_signatures": ["Cytotoxic_cells_Danaher2017"],
        "independent_signatures": [],
        "negative_targets": (),
        "positive_targets": (),
        "null_targets": ["ACTB"],
        "background_pool": inputs.background_pool,
        "effect_size": 1.0,
        "low_cd8_patients": 0,
        "rng": 5,
        "correlated_targets": ["PLP2"],
        "target_correlation": 0.5,
        "correlated_effect_size": 1.0,
    }
    return simulate_cohort(**(params | kwargs))


@pytest.fixture(scope="module")
def correlated_cohort(inputs):
    return simulate_correlated(inputs)


def test_correlated_latent_has_the_planted_correlation(correlated_cohort):
    patients = correlated_cohort.patients
    r = np.corrcoef(patients["activation"], patients["correlated"])[0, 1]
    # 400 patients: the sample r is within ~3 standard errors, (1 - 0.25) / 20 each
    assert r == pytest.approx(0.5, abs=0.11)
    assert patients["correlated"].std(ddof=0) == pytest.approx(1.0, abs=0.1)


def test_correlated_target_follows_its_latent_in_malignant_cells(correlated_cohort):
    adata = correlated_cohort.adata
    malignant = (adata.obs["author_cell_type"] == "Cancer cells").to_numpy()
    donors = adata.obs["donor_id"].astype(str).to_numpy()[malignant]
    x = adata[malignant]
    totals = pd.Series(np.asarray(x.X.sum(axis=1)).ravel()).groupby(donors).sum()
    plp2 = pd.Series(x[:, "PLP2"].X.toarray().ravel()).groupby(donors).sum()
    actb = pd.Series(x[:, "ACTB"].X.toarray().ravel()).groupby(donors).sum()
    latent = correlated_cohort.patients.set_index("patient")["correlated"].loc[totals.index]
    assert np.corrcoef(np.log1p(plp2 / totals * 1e6), latent)[0, 1] > 0.8
    assert abs(np.corrcoef(np.log1p(actb / totals * 1e6), latent)[0, 1]) < 0.15


def test_correlated_targets_are_off_by_default_and_leave_other_draws_alone(inputs):
    small = {"n_patients": 8, "n_cells": 400, "n_background_genes": 20}
    planted = simulate_correlated(inputs, **small)
    plain = simulate_correlated(
        inputs, **small, correlated_targets=(), null_targets=["ACTB", "PLP2"]
    )
    assert "correlated" not in plain.patients.columns
    assert "correlated_targets" not in plain.adata.uns["simulation"]
    assert list(planted.adata.uns["simulation"]["correlated_targets"]) == ["PLP2"]
    assert planted.adata.uns["simulation"]["target_correlation"] == 0.5
    same = ["activation", "independent", "n_cells", "n_cd8_t", "n_malignant"]
    pd.testing.assert_frame_equal(planted.patients[same], plain.patients[same])
    pd.testing.assert_index_equal(planted.adata.var_names, plain.adata.var_names)


def test_correlated_target_extremes_and_truth(inputs):
    small = {"n_patients": 8, "n_cells": 400, "n_background_genes": 20}
    perfect = simulate_correlated(inputs, **small, target_correlation=1.0)
    np.testing.assert_allclose(perfect.patients["correlated"], perfect.patients["activation"])
    negative = simulate_correlated(inputs, **small, target_correlation=-0.4)
    truth = negative.truth.set_index(["signature", "target"])["expected_sign"]
    assert truth[("Cytotoxic_cells_Danaher2017", "PLP2")] == -1
    assert truth[("Cytotoxic_cells_Danaher2017", "ACTB")] == 0


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"target_correlation": 1.5}, "must lie in"),
        ({"negative_targets": ["PLP2"]}, "correlated targets and also"),
        ({"null_targets": ["PLP2"]}, "correlated targets and also"),
    ],
)
def test_correlated_target_bad_input(inputs, kwargs, match):
    with pytest.raises(ValueError, match=match):
        simulate_correlated(inputs, n_patients=8, n_cells=400, n_background_genes=20, **kwargs)


# ---- summaries on hand-made tables ------------------------------------------------------


def test_binomial_ci_is_clopper_pearson():
    # Clopper-Pearson by its beta-quantile definition
    low, high = binomial_ci(5, 100)
    assert low == pytest.approx(stats.beta.ppf(0.025, 5, 96))
    assert high == pytest.approx(stats.beta.ppf(0.975, 6, 95))
    assert binomial_ci(0, 10) == pytest.approx((0.0, 1 - 0.025 ** (1 / 10)))
    assert all(np.isnan(binomial_ci(0, 0)))


def test_rejections_reject_at_p_equal_alpha_and_keep_missing():
    table = pd.DataFrame(
        {kind: [0.05, 0.0501, np.nan] for kind in P_VALUE_KINDS}
        | {"ci_low": [0.1, -0.2, np.nan], "ci_high": [0.5, 0.3, np.nan]}
    )
    out = rejections(table, alpha=0.05)
    assert out["perm_p_value"].tolist()[:2] == [1.0, 0.0]
    assert np.isnan(out["perm_p_value"].iloc[2])
    assert out["bootstrap_ci"].tolist()[:2] == [1.0, 0.0]


# ---- the small calibration --------------------------------------------------------------


def test_null_cohorts_run_the_workflow_path(null, small):
    assert null["cohort"].nunique() == N_NULL
    assert set(null["n_planned"]) == set(small.null_sizes)
    assert len(null) == N_NULL * 2  # 1 signature x 2 targets per cohort
    primary = primary_rows(null)
    # nearly all planned patients are analysed, never more
    assert (primary["n_patients"] <= primary["n_planned"]).all()
    assert (primary["n_patients"] >= primary["n_planned"] - 2).mean() > 0.95
    # 7 patients: the permutation p is exact, a multiple of 1 / 7!
    exact = primary.loc[(primary["n_planned"] == 7) & (primary["n_patients"] == 7), "perm_p_value"]
    assert len(exact) > 10
    np.testing.assert_allclose(exact * 5040, np.round(exact * 5040), atol=1e-6)
    # the specificity p takes the values k / 20 (19 random sets)
    spec = primary["specificity_p"].dropna()
    np.testing.assert_allclose(spec * 20, np.round(spec * 20), atol=1e-9)
    assert spec.min() >= 0.05


@pytest.mark.parametrize("kind", ["perm_p_value", "p_value", "specificity_p"])
@pytest.mark.parametrize("alpha", [0.05, 0.25, 0.5])
def test_null_rejection_rate_is_within_the_binomial_band(null, kind, alpha):
    # one test per cohort (independent cohorts): the number of rejections of a valid p
    # is Binomial(n, alpha); the 99.9% band catches both a liberal and a dead p value
    rejected = rejections(primary_rows(null), alpha=alpha)[kind].dropna()
    n = len(rejected)
    assert n >= 0.95 * N_NULL
    low, high = stats.binom.interval(0.999, n, alpha)
    assert low <= rejected.sum() <= high, (kind, alpha, rejected.sum(), n)


def test_type1_table(null, small):
    table = type1_table(null, alpha=0.05, primary_signature=PRIMARY[0], primary_target=PRIMARY[1])
    for column in ["p_value_kind", "n_cohorts", "alpha", "rejection_rate", "ci_low", "ci_high"]:
        assert column in table.columns
    pooled = table[table["n_patients"] == "all"].set_index("p_value_kind")
    assert set(pooled.index) == {*P_VALUE_KINDS, "bootstrap_ci", "meta_p_value"}
    assert pooled.loc["perm_p_value", "n_cohorts"] == N_NULL
    assert pooled.loc["meta_p_value", "n_cohorts"] == N_NULL // 2
    # the rate is the count of p <= 0.05 of the primary pair, recomputed by hand
    primary = primary_rows(null)
    expected = (primary["perm_p_value"].dropna() <= 0.05).mean()
    assert pooled.loc["perm_p_value", "rejection_rate"] == pytest.approx(expected)
    assert (pooled["ci_low"] <= pooled["rejection_rate"]).all()
    assert (pooled["rejection_rate"] <= pooled["ci_high"]).all()
    # by size: one row per kind and size, their cohorts add up
    by_size = table[(table["n_patients"] != "all") & (table["p_value_kind"] == "perm_p_value")]
    assert sorted(by_size["n_patients"]) == sorted(str(n) for n in small.null_sizes)
    assert by_size["n_cohorts"].sum() == N_NULL
    # all pairs: 2 per cohort, and the rate stays near alpha too
    assert pooled.loc["perm_p_value", "n_tests_all_pairs"] <= 2 * N_NULL
    assert 0.01 <= pooled.loc["perm_p_value", "rejection_rate_all_pairs"] <= 0.1


def test_power_rises_with_patients_and_planted_rho(power):
    table = power_table(power, alpha=0.05)
    for column in ["n_patients", "planted_rho", "p_value_kind", "power"]:
        assert column in table.columns
    perm = table[table["p_value_kind"] == "perm_p_value"].set_index(["n_patients", "planted_rho"])
    p = perm["power"]
    # Spearman's test at rho ~0.8: power ~0.6 with 7 patients, > 0.99 with 20; at
    # rho ~0.2 little more than alpha (the orderings hold with a wide binomial margin)
    assert p[(20, 0.8)] >= 0.8
    assert p[(20, 0.8)] > p[(7, 0.8)]
    assert p[(7, 0.8)] > p[(7, 0.2)]
    assert p[(20, 0.8)] - p[(20, 0.2)] >= 0.5
    assert p[(7, 0.2)] <= 0.3
    # the workflow measures about the planted correlation (a little attenuated)
    assert perm.loc[(20, 0.8), "mean_rho"] == pytest.approx(0.8, abs=0.15)
    assert perm.loc[(20, 0.2), "mean_rho"] == pytest.approx(0.2, abs=0.15)
    assert perm.loc[(20, 0.8), "mean_latent_r"] == pytest.approx(0.8, abs=0.1)
    assert (perm["n_cohorts"] == N_POWER).all()


def test_power_cohorts_share_seeds_across_rho(power):
    # common random numbers: cohort i of one size has the same patients for every rho
    rows = power[(power["n_planned"] == 20) & (power["cohort"] == 0)]
    assert len(set(rows["n_patients"])) == 1
    assert rows["planted_rho"].tolist() == [0.2, 0.8]


def test_same_seed_same_results_in_one_or_two_processes(inputs, small):
    one = run_null_cohorts(3, inputs=inputs, settings=small, rng=3, jobs=1)
    two = run_null_cohorts(3, inputs=inputs, settings=small, rng=3, jobs=2)
    pd.testing.assert_frame_equal(one, two)
    other = run_null_cohorts(3, inputs=inputs, settings=small, rng=4, jobs=1)
    assert not np.allclose(one["rho"], other["rho"], equal_nan=True)


def test_bad_settings_are_clear_errors(inputs, small):
    with pytest.raises(ValueError, match="primary_target"):
        run_null_cohorts(1, inputs=inputs, settings=replace(small, primary_target="GZMB"), rng=1)
    with pytest.raises(ValueError, match="min_patients"):
        run_null_cohorts(1, inputs=inputs, settings=replace(small, null_sizes=(4,)), rng=1)
    with pytest.raises(ValueError, match="not in"):
        load_inputs(RESOURCES, signatures=["No_such_set"])


def test_cli_writes_both_tables(tmp_path, monkeypatch, inputs, small):
    # main() looks both up in the module that defines it
    monkeypatch.setattr(calibrate_run, "load_inputs", lambda resources: inputs)
    monkeypatch.setattr(
        calibrate_run,
        "CalibrationSettings",
        lambda: replace(small, power_sizes=(7,), power_rhos=(0.5,)),
    )
    out = tmp_path / "calibration"
    # main() is a command line: it sets the package's log levels for the process; put them
    # back, or later tests in this pytest worker see no cd8exo warnings
    levels = {name: logging.getLogger(name).level for name in ("cd8exo", calibrate_run.__name__)}
    try:
        assert (
            calibrate.main(
                [
                    "--n-cohorts",
                    "2",
                    "--n-power-cohorts",
                    "1",
                    "--out",
                    str(out),
                    "--n-set-cohorts",
                    "2",
                    "--n-set-power-cohorts",
                    "1",
                ]
            )
            == 0
        )
    finally:
        for name, level in levels.items():
            logging.getLogger(name).setLevel(level)
    type1 = pd.read_csv(out / "type1.tsv", sep="\t")
    power = pd.read_csv(out / "power.tsv", sep="\t")
    assert {"p_value_kind", "n_cohorts", "alpha", "rejection_rate"} <= set(type1.columns)
    assert {"n_patients", "planted_rho", "p_value_kind", "power"} <= set(power.columns)
    assert set(power["p_value_kind"]) >= set(P_VALUE_KINDS)
    assert (type1["n_cohorts"].max(), power["n_patients"].tolist()[0]) == (2, 7)
    type1_sets = pd.read_csv(out / "type1_sets.tsv", sep="\t")
    power_sets = pd.read_csv(out / "power_sets.tsv", sep="\t")
    assert "set_specificity_p" in set(type1_sets["p_value_kind"])
    assert type1_sets["n_cohorts"].max() == 2
    # one power cohort of 7 patients per set effect size
    assert sorted(set(power_sets["set_effect_size"])) == list(small.set_effect_sizes)
    assert (power_sets["n_cohorts"] == 1).all()
