"""Tests of cd8exo.meta: a hand-worked DerSimonian-Laird example, statsmodels, the table, the plot."""

from __future__ import annotations

import math
from fractions import Fraction

import matplotlib as mpl

mpl.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure
from matplotlib.patches import Polygon
from scipy import stats
from statsmodels.stats.meta_analysis import combine_effects
from statsmodels.stats.multitest import multipletests

from cd8exo.pl.associations import forest_plot
from cd8exo.stats.meta import META_COLUMNS, dersimonian_laird, meta_analysis


def test_dersimonian_laird_hand_worked_example():
    # Three datasets chosen so that Fisher's z is round: z = 0.2, 0.5, 0.8.
    z = [Fraction(2, 10), Fraction(5, 10), Fraction(8, 10)]
    rho = [math.tanh(float(v)) for v in z]
    n = [13, 23, 53]
    # weights w = n - 3 = 10, 20, 50; sum w = 80
    w = [Fraction(k - 3) for k in n]
    assert w == [10, 20, 50]
    assert sum(w) == 80
    # fixed-effect mean: (10*0.2 + 20*0.5 + 50*0.8) / 80 = (2 + 10 + 40) / 80 = 0.65
    z_fixed = sum(wi * zi for wi, zi in zip(w, z, strict=True)) / sum(w)
    assert z_fixed == Fraction(65, 100)
    # Q = 10*(0.2-0.65)^2 + 20*(0.5-0.65)^2 + 50*(0.8-0.65)^2
    #   = 10*0.2025 + 20*0.0225 + 50*0.0225 = 2.025 + 0.45 + 1.125 = 3.6
    q = sum(wi * (zi - z_fixed) ** 2 for wi, zi in zip(w, z, strict=True))
    assert q == Fraction(36, 10)
    # C = sum w - sum w^2 / sum w = 80 - (100 + 400 + 2500) / 80 = 80 - 37.5 = 42.5
    c = sum(w) - sum(wi**2 for wi in w) / sum(w)
    assert c == Fraction(85, 2)
    # tau^2 = (Q - df) / C = (3.6 - 2) / 42.5 = 16/425 = 0.0376470588...
    tau2 = (q - 2) / c
    assert tau2 == Fraction(16, 425)
    # I^2 = (Q - df) / Q = 1.6 / 3.6 = 4/9
    # random-effects weights 1 / (1/w + tau^2):
    #   1 / (1/10 + 16/425) = 425/58.5  = 850/117  = 7.264957...
    #   1 / (1/20 + 16/425) = 425/37.25 = 1700/149 = 11.409396...
    #   1 / (1/50 + 16/425) = 425/24.5  = 850/49   = 17.346939...
    w_re = [1 / (1 / wi + tau2) for wi in w]
    assert w_re == [Fraction(850, 117), Fraction(1700, 149), Fraction(850, 49)]
    # z_R = (7.264957*0.2 + 11.409396*0.5 + 17.346939*0.8) / 36.021292
    #     = (1.452991 + 5.704698 + 13.877551) / 36.021292 = 21.035240 / 36.021292 = 0.583967
    z_random = sum(wi * zi for wi, zi in zip(w_re, z, strict=True)) / sum(w_re)
    assert float(z_random) == pytest.approx(0.583967, abs=1e-6)
    # se = 1 / sqrt(36.021292) = 0.166617; 95% CI on z: 0.583967 -/+ 1.959964 * 0.166617
    #    = [0.257403, 0.910531]; back-transformed with tanh: rho 0.525543 [0.251865, 0.721387]
    se = 1 / math.sqrt(float(sum(w_re)))
    assert se == pytest.approx(0.166617, abs=1e-6)
    # p: |z_R| / se = 3.504850 -> 2 * (1 - Phi(3.504850)) = 0.000457;
    # heterogeneity p: chi2 with 2 df has survival exp(-Q/2) = exp(-1.8) = 0.165299

    result = dersimonian_laird(rho, n)
    assert result["q_stat"] == pytest.approx(3.6, abs=1e-12)
    assert result["tau2"] == pytest.approx(16 / 425, abs=1e-12)
    assert result["i2"] == pytest.approx(4 / 9, abs=1e-12)
    assert result["pooled_z"] == pytest.approx(float(z_random), abs=1e-12)
    assert result["se_z"] == pytest.approx(se, abs=1e-12)
    assert result["pooled_rho"] == pytest.approx(0.525543, abs=1e-6)
    assert result["ci_low"] == pytest.approx(0.251865, abs=1e-6)
    assert result["ci_high"] == pytest.approx(0.721387, abs=1e-6)
    assert result["p_value"] == pytest.approx(0.000457, abs=1e-6)
    assert result["heterogeneity_p"] == pytest.approx(math.exp(-1.8), abs=1e-12)
    assert result["n_datasets"] == 3
    assert result["n_patients_total"] == 89
    np.testing.assert_allclose(result["weights"], [float(v / sum(w_re)) for v in w_re])


def test_dersimonian_laird_equals_statsmodels_combine_effects():
    rng = np.random.default_rng(0)
    n = rng.integers(10, 41, size=7)
    rho = np.tanh(rng.normal(0.3, 0.35, size=7))  # heterogeneous: Q > df
    result = dersimonian_laird(rho, n)
    ref = combine_effects(np.arctanh(rho), 1.0 / (n - 3), method_re="dl")
    assert ref.tau2 > 0
    assert result["tau2"] == pytest.approx(ref.tau2, rel=1e-10)
    assert result["i2"] == pytest.approx(ref.i2, rel=1e-10)
    assert result["q_stat"] == pytest.approx(ref.q, rel=1e-10)
    assert result["pooled_z"] == pytest.approx(ref.mean_effect_re, rel=1e-10)
    assert result["se_z"] == pytest.approx(ref.sd_eff_w_re, rel=1e-10)
    low, high = ref.conf_int()[1]  # random effects
    assert result["ci_low"] == pytest.approx(math.tanh(low), rel=1e-10)
    assert result["ci_high"] == pytest.approx(math.tanh(high), rel=1e-10)


@pytest.mark.filterwarnings("ignore:invalid value encountered in sqrt:RuntimeWarning")
def test_homogeneous_data_truncate_tau2_at_zero_and_equal_fixed_effect():
    rho = np.tanh([0.30, 0.32, 0.31])
    n = np.array([20, 30, 25])
    result = dersimonian_laird(rho, n)
    ref = combine_effects(np.arctanh(rho), 1.0 / (n - 3), method_re="dl")
    assert ref.tau2 < 0  # statsmodels 0.15 does not truncate
    assert result["tau2"] == 0.0
    assert result["i2"] == 0.0
    assert result["pooled_z"] == pytest.approx(ref.mean_effect_fe, rel=1e-10)
    assert result["se_z"] == pytest.approx(ref.sd_eff_w_fe, rel=1e-10)


def test_single_dataset_gives_its_fisher_interval():
    result = dersimonian_laird([0.4], [20])
    half = stats.norm.ppf(0.975) / math.sqrt(17)
    assert result["pooled_rho"] == pytest.approx(0.4)
    assert result["ci_low"] == pytest.approx(math.tanh(math.atanh(0.4) - half))
    assert result["ci_high"] == pytest.approx(math.tanh(math.atanh(0.4) + half))
    assert result["tau2"] == 0.0
    assert math.isnan(result["i2"])
    with pytest.raises(ValueError, match="n >= 4"):
        dersimonian_laird([0.4, 0.1], [20, 3])


def _associations() -> pd.DataFrame:
    rows = []
    values = {
        ("sigA", "PLP2"): [(-0.5, 20, -0.7, -0.2), (-0.3, 35, -0.55, -0.02), (-0.6, 12, -0.9, -0.1)],
        ("sigA", "FLAT"): [(0.05, 20, -0.4, 0.5), (-0.1, 35, -0.4, 0.2), (np.nan, 4, np.nan, np.nan)],
        ("sigB", "PLP2"): [(0.2, 20, -0.2, 0.6), (0.25, 35, -0.1, 0.5), (0.1, 12, -0.5, 0.6)],
        ("sigB", "FLAT"): [(np.nan, 5, np.nan, np.nan), (0.0, 35, -0.3, 0.3), (np.nan, 4, np.nan, np.nan)],
    }  # fmt: skip
    for (signature, target), per_dataset in values.items():
        for dataset, (rho, n, low, high) in zip(["D1", "D2", "D3"], per_dataset, strict=True):
            rows.append(
                {
                    "dataset": dataset,
                    "signature": signature,
                    "target": target,
                    "n_patients": n,
                    "rho": rho,
                    "ci_low": low,
                    "ci_high": high,
                }
            )
    return pd.DataFrame(rows)


def test_meta_analysis_pools_each_pair_over_the_datasets_that_tested_it():
    assoc = _associations()
    table = meta_analysis(assoc)
    assert list(table.columns) == list(META_COLUMNS)
    assert len(table) == 4
    table = table.set_index(["signature", "target"])

    plp2 = table.loc[("sigA", "PLP2")]
    direct = dersimonian_laird([-0.5, -0.3, -0.6], [20, 35, 12])
    assert plp2["pooled_rho"] == pytest.approx(direct["pooled_rho"])
    assert plp2["tau2"] == pytest.approx(direct["tau2"])
    assert plp2["n_datasets"] == 3
    assert plp2["n_patients_total"] == 67
    assert plp2["datasets"] == "D1,D2,D3"
    assert plp2["note"] == ""

    flat = table.loc[("sigA", "FLAT")]
    assert flat["n_datasets"] == 2
    assert flat["datasets"] == "D1,D2"
    assert "D3" in flat["note"]

    single = table.loc[("sigB", "FLAT")]
    assert single["n_datasets"] == 1
    assert math.isnan(single["i2"])
    assert single["pooled_rho"] == pytest.approx(0.0, abs=1e-12)
    assert "single dataset" in single["note"]

    np.testing.assert_allclose(
        table["q_value"], multipletests(table["p_value"], method="fdr_bh")[1], rtol=1e-12
    )
    assert set(table["family"]) == {"meta: all signature x target pairs"}

    with pytest.raises(ValueError, match="duplicated"):
        meta_analysis(pd.concat([assoc, assoc.iloc[:1]]))
    with pytest.raises(ValueError, match="lacks columns"):
        meta_analysis(assoc.drop(columns="n_patients"))


def test_forest_plot_draws_cis_weights_and_pooled_diamond():
    assoc = _associations()
    assoc.loc[(assoc.dataset == "D2") & (assoc.target == "PLP2"), ["ci_low", "ci_high"]] = np.nan
    meta = meta_analysis(assoc)
    fig = forest_plot(assoc, meta, signature="sigA", target="PLP2")
    assert isinstance(fig, Figure)
    ax = fig.axes[0]
    lines = ax.get_lines()[:3]  # one CI per dataset, D1..D3: bootstrap solid, Fisher z dashed
    lows = [line.get_xdata()[0] for line in lines]
    highs = [line.get_xdata()[1] for line in lines]
    assert [line.get_linestyle() for line in lines] == ["-", "--", "-"]
    fisher = stats.norm.ppf(0.975) / math.sqrt(32)  # D2 has no CI column values: Fisher z
    np.testing.assert_allclose(lows, [-0.7, math.tanh(math.atanh(-0.3) - fisher), -0.9], rtol=1e-12)
    np.testing.assert_allclose(
        highs, [-0.2, math.tanh(math.atanh(-0.3) + fisher), -0.1], rtol=1e-12
    )
    squares = ax.collections[0]
    np.testing.assert_allclose(squares.get_offsets()[:, 0], [-0.5, -0.3, -0.6])
    sizes = squares.get_sizes()
    assert sizes[1] > sizes[0] > sizes[2]  # larger n, larger square (35 > 20 > 12 patients)
    row = meta.set_index(["signature", "target"]).loc[("sigA", "PLP2")]
    diamond = next(p for p in ax.patches if isinstance(p, Polygon))
    xs = diamond.get_xy()[:, 0]
    assert xs.min() == pytest.approx(row["ci_low"])
    assert xs.max() == pytest.approx(row["ci_high"])
    plt.close(fig)

    fig2, ax2 = plt.subplots()
    assert forest_plot(assoc, None, signature="sigB", target="PLP2", ax=ax2) is fig2
    plt.close(fig2)
    # a pair no dataset has a rho for: the figure says so (issue 12: it never stops the run)
    fig3, ax3 = plt.subplots()
    assert forest_plot(assoc, meta, signature="sigA", target="NOPE", ax=ax3) is fig3
    assert ax3.texts[0].get_text() == (
        "No dataset has a rho for this pair; nothing to draw.\nno dataset has a row for it"
    )
    plt.close(fig3)
