"""Tests of cd8exo.stats: known answers from scipy and statsmodels, enumeration, planted signals."""

from __future__ import annotations

import itertools
import logging
import math

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm
from scipy import stats
from statsmodels.stats.multitest import multipletests

from cd8exo.scoring.random_sets import matched_random_sets
from cd8exo.stats.association import ASSOCIATION_COLUMNS, association_table
from cd8exo.stats.correlation import (
    loo_influence,
    partial_spearman,
    permutation_p,
    spearman_bootstrap_ci,
)
from cd8exo.stats.multiple_testing import benjamini_hochberg
from cd8exo.stats.specificity import empirical_p, specificity_p_values


def _spearman_last_axis(x, y, axis=-1):
    """Vectorised Spearman rho along the last axis (the statistic given to scipy.bootstrap)."""
    rx = stats.rankdata(x, axis=axis)
    ry = stats.rankdata(y, axis=axis)
    rx = rx - rx.mean(axis=axis, keepdims=True)
    ry = ry - ry.mean(axis=axis, keepdims=True)
    return (rx * ry).sum(axis=axis) / np.sqrt((rx**2).sum(axis=axis) * (ry**2).sum(axis=axis))


def _paired(seed: int, n: int, *, slope: float = 0.6, decimals: int | None = 1):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=n)
    y = slope * x + rng.normal(size=n)
    if decimals is not None:  # rounding plants ties, which the rank code must average
        x, y = np.round(x, decimals), np.round(y, decimals)
    return x, y


def _tables(seed: int = 0, n: int = 12, n_signatures: int = 2, n_targets: int = 3):
    rng = np.random.default_rng(seed)
    patients = [f"P{i:02d}" for i in range(n)]
    sender = pd.DataFrame(
        rng.normal(size=(n, n_signatures)),
        index=patients,
        columns=[f"sig{j}" for j in range(n_signatures)],
    )
    receiver = pd.DataFrame(
        0.7 * sender.to_numpy()[:, [0]] + rng.normal(size=(n, n_targets)),
        index=patients,
        columns=[f"T{k}" for k in range(n_targets)],
    )
    return sender, receiver


# --------------------------------------------------------------------------- #
# correlations and their p values against scipy
# --------------------------------------------------------------------------- #
def test_rho_and_pearson_match_scipy_on_complete_cases_with_ties():
    sender, receiver = _tables(seed=1, n=15)
    receiver = receiver.round(1)  # ties
    receiver.iloc[[2, 7], 1] = np.nan  # T1 uses 13 patients
    sender.iloc[4, 1] = np.nan  # sig1 uses 14 (and 12 with T1)
    table = association_table(sender, receiver, dataset="d", n_boot=0, n_perm=0, rng=0)
    assert list(table.columns) == list(ASSOCIATION_COLUMNS)
    assert len(table) == 6
    for row in table.itertuples():
        ok = sender[row.signature].notna() & receiver[row.target].notna()
        x = sender.loc[ok, row.signature]
        y = receiver.loc[ok, row.target]
        spearman = stats.spearmanr(x, y)
        pearson = stats.pearsonr(x, y)
        assert row.n_patients == int(ok.sum())
        assert row.rho == pytest.approx(spearman.statistic, abs=1e-12)
        assert row.p_value == pytest.approx(spearman.pvalue, rel=1e-9)
        assert row.pearson_r == pytest.approx(pearson.statistic, abs=1e-12)
        assert row.pearson_p == pytest.approx(pearson.pvalue, rel=1e-8)
    assert (
        table.loc[(table.signature == "sig1") & (table.target == "T1"), "n_patients"].item() == 12
    )


def test_q_values_are_benjamini_hochberg_over_the_stated_family():
    sender, receiver = _tables(seed=2, n=10, n_signatures=3, n_targets=5)
    receiver.iloc[:6, 4] = np.nan  # T4 has 4 patients: NA rows, outside the family
    table = association_table(sender, receiver, dataset="GSE1", n_boot=0, n_perm=50, rng=0)
    tested = table["p_value"].notna()
    assert int(tested.sum()) == 12
    expected = multipletests(table.loc[tested, "p_value"], method="fdr_bh")[1]
    np.testing.assert_allclose(table.loc[tested, "q_value"], expected, rtol=1e-12)
    assert table.loc[~tested, "q_value"].isna().all()
    assert set(table["family"]) == {"dataset=GSE1"}
    assert set(table["family_size"]) == {12}
    expected_perm = multipletests(table.loc[tested, "perm_p_value"], method="fdr_bh")[1]
    np.testing.assert_allclose(table.loc[tested, "perm_q_value"], expected_perm, rtol=1e-12)

    per_signature = association_table(
        sender, receiver, dataset="GSE1", n_boot=0, n_perm=0, rng=0, family="signature"
    )
    for signature, rows in per_signature.groupby("signature"):
        ok = rows["p_value"].notna()
        np.testing.assert_allclose(
            rows.loc[ok, "q_value"], multipletests(rows.loc[ok, "p_value"], method="fdr_bh")[1]
        )
        assert set(rows["family"]) == {f"dataset=GSE1;signature={signature}"}
        assert set(rows["family_size"]) == {4}


def test_benjamini_hochberg_hand_example_and_statsmodels():
    # sorted 0.005, 0.01, 0.03, 0.04 -> p * 4 / rank = 0.02, 0.02, 0.04, 0.04
    np.testing.assert_allclose(
        benjamini_hochberg([0.01, 0.04, 0.03, 0.005]), [0.02, 0.04, 0.04, 0.02]
    )
    p = np.random.default_rng(0).uniform(size=300) ** 3
    p[[0, 17, 299]] = np.nan
    q = benjamini_hochberg(p)
    ok = ~np.isnan(p)
    np.testing.assert_allclose(q[ok], multipletests(p[ok], method="fdr_bh")[1], rtol=1e-12)
    assert np.isnan(q[~ok]).all()


# --------------------------------------------------------------------------- #
# bootstrap CI: same draws as scipy.stats.bootstrap(paired=True)
# --------------------------------------------------------------------------- #
@pytest.mark.parametrize(("method", "scipy_method"), [("percentile", "percentile"), ("bca", "BCa")])
def test_bootstrap_ci_equals_scipy_bootstrap(method, scipy_method):
    x, y = _paired(seed=3, n=14)
    low, high = spearman_bootstrap_ci(x, y, n_boot=2000, method=method, rng=11)
    ref = stats.bootstrap(
        (x, y),
        _spearman_last_axis,
        paired=True,
        vectorized=True,
        n_resamples=2000,
        method=scipy_method,
        rng=np.random.default_rng(11),
    ).confidence_interval
    assert low == pytest.approx(ref.low, abs=1e-12)
    assert high == pytest.approx(ref.high, abs=1e-12)
    assert low < stats.spearmanr(x, y).statistic < high


def test_bootstrap_ci_seed_reproduces_exactly():
    x, y = _paired(seed=4, n=20, decimals=None)
    a = spearman_bootstrap_ci(x, y, n_boot=500, rng=5)
    b = spearman_bootstrap_ci(x, y, n_boot=500, rng=np.random.default_rng(5))
    c = spearman_bootstrap_ci(x, y, n_boot=500, rng=6)
    assert a == b
    assert a != c


# --------------------------------------------------------------------------- #
# permutation p
# --------------------------------------------------------------------------- #
def test_permutation_p_is_exact_by_enumeration_on_tiny_n():
    x = np.array([0.1, 0.4, 0.4, 1.2, 2.0, 0.7])  # a tie in x
    y = np.array([1.0, 0.9, 2.2, 2.5, 3.1, 1.4])
    observed = abs(stats.spearmanr(x, y).statistic)
    # all 6! = 720 relabellings, the identity included
    null = [abs(stats.spearmanr(x[list(p)], y).statistic) for p in itertools.permutations(range(6))]
    expected = sum(v >= observed - 1e-12 for v in null) / 720
    assert permutation_p(x, y, rng=0) == pytest.approx(expected, abs=1e-15)
    # exact: independent of the generator
    assert permutation_p(x, y, rng=1) == permutation_p(x, y, rng=0)
    # and scipy's exact test of |rho| (x relabelled, y fixed) agrees
    ref = stats.permutation_test(
        (x,),
        lambda a: abs(stats.spearmanr(a, y).statistic),
        permutation_type="pairings",
        alternative="greater",
        n_resamples=np.inf,
    )
    assert permutation_p(x, y, rng=0) == pytest.approx(ref.pvalue, abs=1e-15)


def test_permutation_p_monte_carlo_uses_phipson_smyth_and_is_seeded():
    # a perfect monotone relation on 12 patients: no random relabelling out of 999
    # reaches |rho| = 1 (chance 2/12!), so p = (0 + 1) / (999 + 1)
    x = np.arange(12.0)
    assert permutation_p(x, x**2, n_perm=999, rng=0) == pytest.approx(1 / 1000)

    x, y = _paired(seed=7, n=9, slope=0.5, decimals=None)
    exact = permutation_p(x, y, rng=0, exact_max=math.factorial(9))  # 362880 relabellings
    mc = permutation_p(x, y, n_perm=4000, rng=3, exact_max=100)
    assert mc * 4001 == pytest.approx(round(mc * 4001))  # (b + 1) / (m + 1)
    assert abs(mc - exact) < 4 * math.sqrt(exact * (1 - exact) / 4000) + 1 / 4001
    assert permutation_p(x, y, n_perm=4000, rng=3, exact_max=100) == mc
    assert permutation_p(x, y, n_perm=4000, rng=4, exact_max=100) != mc


# --------------------------------------------------------------------------- #
# partial correlation
# --------------------------------------------------------------------------- #
def _partial_by_statsmodels(x, y, covariates: pd.DataFrame):
    """Reference: ranks, OLS residuals with statsmodels, Pearson r, t test on n - 2 - k df."""
    ranked = covariates.rank()
    design = sm.add_constant(ranked.to_numpy())
    rx = sm.OLS(stats.rankdata(x), design).fit().resid
    ry = sm.OLS(stats.rankdata(y), design).fit().resid
    r = stats.pearsonr(rx, ry).statistic
    df = len(x) - 2 - covariates.shape[1]
    t = r * math.sqrt(df / (1 - r**2))
    return r, 2 * stats.t.sf(abs(t), df)


def test_partial_spearman_matches_statsmodels_ols_residuals():
    rng = np.random.default_rng(8)
    n = 25
    cov = pd.DataFrame(
        {
            "n_malignant": rng.poisson(200, n).astype(float),
            "cd8_fraction": rng.uniform(0.01, 0.3, n),
            "median_counts": rng.normal(3000, 400, n),
        }
    )
    x = cov["cd8_fraction"] * 5 + rng.normal(size=n)
    y = -0.5 * x + 0.002 * cov["n_malignant"] + rng.normal(size=n)
    rho, p = partial_spearman(x, y, cov)
    ref_rho, ref_p = _partial_by_statsmodels(x, y, cov)
    assert rho == pytest.approx(ref_rho, abs=1e-12)
    assert p == pytest.approx(ref_p, rel=1e-9)


def test_partial_spearman_one_covariate_closed_form_and_collinear_covariate():
    x, y = _paired(seed=9, n=18, decimals=None)
    z = x + np.random.default_rng(10).normal(size=18)
    # first-order partial correlation of the Spearman coefficients
    r_xy, r_xz, r_yz = (stats.spearmanr(a, b).statistic for a, b in [(x, y), (x, z), (y, z)])
    expected = (r_xy - r_xz * r_yz) / math.sqrt((1 - r_xz**2) * (1 - r_yz**2))
    rho, p = partial_spearman(x, y, pd.DataFrame({"z": z}))
    assert rho == pytest.approx(expected, abs=1e-12)
    # a duplicated covariate adds no information and costs no degree of freedom
    rho2, p2 = partial_spearman(x, y, pd.DataFrame({"z": z, "z_again": 2 * z}))
    assert (rho2, p2) == pytest.approx((rho, p), abs=1e-12)


def test_partial_in_table_uses_patients_with_covariates():
    sender, receiver = _tables(seed=11, n=14, n_signatures=1, n_targets=2)
    rng = np.random.default_rng(12)
    cov = pd.DataFrame(
        {"n_malignant": rng.poisson(100, 14), "cd8_fraction": rng.uniform(size=14)},
        index=sender.index,
    )
    cov.iloc[3, 1] = np.nan
    table = association_table(
        sender, receiver, dataset="d", covariates=cov, n_boot=0, n_perm=0, rng=0
    )
    keep = cov.notna().all(axis=1)
    for row in table.itertuples():
        rho, p = partial_spearman(
            sender.loc[keep, row.signature], receiver.loc[keep, row.target], cov[keep]
        )
        assert row.partial_n_patients == 13
        assert row.partial_rho == pytest.approx(rho, abs=1e-12)
        assert row.partial_p_value == pytest.approx(p, rel=1e-9)
        assert row.partial_covariates == "n_malignant,cd8_fraction"
    without = association_table(sender, receiver, dataset="d", n_boot=0, n_perm=0, rng=0)
    assert without["partial_rho"].isna().all()
    assert set(without["partial_covariates"]) == {"none"}


# --------------------------------------------------------------------------- #
# leave-one-patient-out influence
# --------------------------------------------------------------------------- #
def test_loo_influence_names_the_planted_outlier():
    rng = np.random.default_rng(13)
    x = rng.normal(size=11)
    y = rng.normal(size=11)
    x = pd.Series(np.append(x, 8.0), index=[f"P{i}" for i in range(11)] + ["OUTLIER"])
    y = np.append(y, 8.0)  # one patient extreme on both: it alone drives rho
    delta, patient = loo_influence(x, y)
    full = stats.spearmanr(x, y).statistic
    by_hand = [
        abs(stats.spearmanr(np.delete(x.to_numpy(), i), np.delete(y, i)).statistic - full)
        for i in range(12)
    ]
    assert patient == "OUTLIER"
    assert delta == pytest.approx(max(by_hand), abs=1e-12)
    assert int(np.argmax(by_hand)) == 11


# --------------------------------------------------------------------------- #
# the association table: NA rows, determinism, agreement with the single-pair functions
# --------------------------------------------------------------------------- #
def test_too_few_patients_rows_are_kept_with_na_and_the_reason():
    sender, receiver = _tables(seed=14, n=9, n_signatures=1, n_targets=2)
    receiver.iloc[:5, 1] = np.nan  # T1: 4 patients
    table = association_table(sender, receiver, dataset="d", n_boot=50, n_perm=50, rng=0)
    row = table.set_index("target").loc["T1"]
    assert row["n_patients"] == 4
    assert row["note"] == "n_patients=4 < min_patients=6"
    stat_columns = [
        "rho", "p_value", "q_value", "pearson_r", "pearson_p", "ci_low", "ci_high",
        "perm_p_value", "partial_rho", "partial_p_value", "loo_max_delta",
    ]  # fmt: skip
    assert row[stat_columns].isna().all()
    assert table.set_index("target").loc["T0", stat_columns[:8]].notna().all()
    assert set(table["family_size"]) == {1}
    # and the threshold is configurable
    relaxed = association_table(
        sender, receiver, dataset="d", n_boot=0, n_perm=0, rng=0, min_patients=4
    )
    assert relaxed.set_index("target").loc["T1", "rho"] == pytest.approx(
        stats.spearmanr(sender.iloc[5:, 0], receiver.iloc[5:, 1]).statistic
    )


def test_association_table_is_deterministic_and_matches_single_pair_functions():
    sender, receiver = _tables(seed=15, n=8, n_signatures=2, n_targets=3)  # 8! = 40320: exact
    kwargs = {"dataset": "d", "n_boot": 300, "n_perm": 100}
    first = association_table(sender, receiver, rng=42, **kwargs)
    again = association_table(sender, receiver, rng=42, **kwargs)
    other = association_table(sender, receiver, rng=43, **kwargs)
    pd.testing.assert_frame_equal(first, again)
    assert not np.allclose(first["ci_low"], other["ci_low"])
    np.testing.assert_array_equal(first["perm_p_value"], other["perm_p_value"])  # exact
    assert set(first["perm_method"]) == {"exact (40320 permutations)"}

    # one child generator per signature, spawned in column order; its first draws are
    # the bootstrap resamples shared by all targets of that signature
    for row in first.itertuples():
        child = np.random.default_rng(42).spawn(2)[int(row.signature[-1])]
        x, y = sender[row.signature], receiver[row.target]
        assert (row.ci_low, row.ci_high) == pytest.approx(
            spearman_bootstrap_ci(x, y, n_boot=300, rng=child), abs=1e-12
        )
        assert row.perm_p_value == pytest.approx(permutation_p(x, y, rng=0), abs=1e-15)
        delta, patient = loo_influence(x, y)
        assert row.loo_max_delta == pytest.approx(delta, abs=1e-12)
        assert row.loo_patient == patient


def test_constant_inputs_give_na_with_a_note():
    sender, receiver = _tables(seed=16, n=8, n_signatures=1, n_targets=2)
    receiver["T1"] = 3.0
    table = association_table(sender, receiver, dataset="d", n_boot=20, n_perm=20, rng=0)
    row = table.set_index("target").loc["T1"]
    assert np.isnan(row["rho"])
    assert np.isnan(row["ci_low"])
    assert np.isnan(row["perm_p_value"])
    assert row["note"] == "target constant across patients"


def test_bad_input_gives_specific_errors():
    sender, receiver = _tables(seed=17, n=8)
    with pytest.raises(ValueError, match="duplicated patients"):
        association_table(pd.concat([sender, sender.iloc[:1]]), receiver, dataset="d", rng=0)
    with pytest.raises(ValueError, match="non-numeric columns"):
        association_table(sender.assign(label="a"), receiver, dataset="d", rng=0)
    renamed = receiver.set_axis([f"X{i}" for i in range(8)])
    with pytest.raises(ValueError, match="share no patient"):
        association_table(sender, renamed, dataset="d", rng=0)
    with pytest.raises(ValueError, match="family must be one of"):
        association_table(sender, receiver, dataset="d", rng=0, family="everything")
    with pytest.raises(ValueError, match="missing or infinite"):
        permutation_p([1.0, 2.0, np.nan, 4.0, 5.0], [1, 2, 3, 4, 5], rng=0)


# --------------------------------------------------------------------------- #
# specificity: matched random gene sets and empirical p
# --------------------------------------------------------------------------- #
def test_empirical_p_hand_example():
    # |null| >= 0.5: -0.6 and 0.5 -> b = 2 of m = 4 -> (2 + 1) / (4 + 1)
    assert empirical_p(0.5, [0.1, -0.6, 0.5, 0.2]) == pytest.approx(0.6)
    assert empirical_p(-0.7, [0.1, -0.6, 0.5, np.nan]) == pytest.approx(1 / 4)
    p = empirical_p(np.array([0.5, 0.05]), np.array([[0.1, -0.6, 0.5, 0.2], [0.1, 0.2, 0.3, 0.0]]))
    np.testing.assert_allclose(p, [0.6, 4 / 5])
    assert np.isnan(empirical_p(np.nan, [0.1, 0.2]))


def _gene_means(n_genes: int = 500, seed: int = 18) -> pd.Series:
    rng = np.random.default_rng(seed)
    return pd.Series(rng.gamma(1.0, 2.0, n_genes), index=[f"G{i}" for i in range(n_genes)])


def test_matched_random_sets_match_size_and_expression_bin(caplog):
    means = _gene_means()
    signature = ["G1", "G10", "G100", "G200", "G300", "NOT_A_GENE"]
    with caplog.at_level(logging.WARNING, logger="cd8exo.scoring"):
        sets = matched_random_sets(signature, means, n_sets=50, n_bins=10, rng=0)
    assert "NOT_A_GENE" in caplog.text
    # bins of 50 genes each by mean expression rank
    bins = (means.rank(method="first") - 1) * 10 // 500
    assert len(sets) == 50
    for genes in sets:
        assert len(genes) == 5
        assert len(set(genes)) == 5
        assert not set(genes) & set(signature)
        for drawn, original in zip(genes, signature[:5], strict=True):
            assert bins[drawn] == bins[original]
    assert len({tuple(s) for s in sets}) > 45
    assert matched_random_sets(signature, means, n_sets=50, n_bins=10, rng=0) == sets
    assert matched_random_sets(signature, means, n_sets=50, n_bins=10, rng=1) != sets
    with pytest.raises(ValueError, match="none of the signature genes"):
        matched_random_sets(["X", "Y"], means, rng=0)


def test_specificity_p_values_against_hand_computed_null():
    rng = np.random.default_rng(19)
    n, m = 20, 99
    patients = [f"P{i}" for i in range(n)]
    score = rng.normal(size=n)
    sender = pd.DataFrame({"sig": score}, index=patients)
    receiver = pd.DataFrame(
        {"planted": score + 0.1 * rng.normal(size=n), "noise": rng.normal(size=n)},
        index=patients,
    )
    null = pd.DataFrame(rng.normal(size=(n, m)), index=patients)
    table = association_table(sender, receiver, dataset="d", n_boot=0, n_perm=0, rng=0)
    out = specificity_p_values(table, null_scores={"sig": null}, receiver=receiver)
    assert "specificity_p" not in table.columns  # the input is not modified
    for row in out.itertuples():
        null_rho = [stats.spearmanr(null[j], receiver[row.target]).statistic for j in range(m)]
        b = sum(abs(v) >= abs(row.rho) for v in null_rho)
        assert row.specificity_p == pytest.approx((b + 1) / (m + 1))
        assert row.specificity_n_sets == m
    assert out.set_index("target").loc["planted", "specificity_p"] == pytest.approx(1 / 100)
    missing = specificity_p_values(table, null_scores={}, receiver=receiver)
    assert missing["specificity_p"].isna().all()
    assert missing["note"].str.contains("no random-set scores").all()
