"""Tests of cd8exo.associate: BH correction and patient-level Spearman tests."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from statsmodels.stats.multitest import multipletests

from cd8exo.aggregate import patient_counts, receiver_expression, select_patients, sender_scores
from cd8exo.associate import ASSOCIATION_COLUMNS, associate, benjamini_hochberg
from cd8exo.harmonise import harmonise, log_normalise
from cd8exo.scoring import score_signatures


# --------------------------------------------------------------------------- #
# Benjamini-Hochberg
# --------------------------------------------------------------------------- #
def test_bh_hand_example():
    # Sorted 0.005, 0.01, 0.03, 0.04 -> p * 4 / rank = 0.02, 0.02, 0.04, 0.04.
    np.testing.assert_allclose(
        benjamini_hochberg([0.01, 0.04, 0.03, 0.005]), [0.02, 0.04, 0.04, 0.02]
    )


def test_bh_equals_statsmodels_and_ignores_nan():
    p = np.random.default_rng(0).uniform(size=200) ** 3
    p[[3, 50, 199]] = np.nan
    q = benjamini_hochberg(p)
    finite = ~np.isnan(p)
    expected = multipletests(p[finite], method="fdr_bh")[1]
    np.testing.assert_allclose(q[finite], expected, rtol=1e-12)
    assert np.isnan(q[~finite]).all()


def test_bh_edge_cases():
    assert np.isnan(benjamini_hochberg([np.nan, np.nan])).all()
    assert benjamini_hochberg([]).shape == (0,)
    with pytest.raises(ValueError, match=r"p-values must lie in \[0, 1\]"):
        benjamini_hochberg([0.5, 1.5])


# --------------------------------------------------------------------------- #
# associate
# --------------------------------------------------------------------------- #
def test_associate_equals_scipy_and_aligns_patients():
    rng = np.random.default_rng(4)
    patients = [f"P{i}" for i in range(10)]
    sender = pd.DataFrame(rng.normal(size=(10, 2)), index=patients, columns=["s1", "s2"])
    receiver = pd.DataFrame(rng.normal(size=(9, 3)), index=patients[1:], columns=["a", "b", "c"])
    receiver.loc["EXTRA"] = [1.0, 2.0, 3.0]  # in the receiver only: dropped
    table = associate(sender, receiver.iloc[::-1], dataset="d")
    assert table.columns.tolist() == ASSOCIATION_COLUMNS
    assert len(table) == 6
    assert (table["n_patients"] == 9).all()
    assert (table["dataset"] == "d").all()
    for row in table.itertuples():
        expected = stats.spearmanr(
            sender.loc[patients[1:], row.signature], receiver.loc[patients[1:], row.target]
        )
        assert row.rho == pytest.approx(expected.statistic, abs=1e-12)
        assert row.p_value == pytest.approx(expected.pvalue, rel=1e-10)
    assert table["p_value"].is_monotonic_increasing
    np.testing.assert_allclose(
        table["q_value"], multipletests(table["p_value"], method="fdr_bh")[1]
    )


def test_associate_notes_untestable_pairs():
    sender = pd.DataFrame(
        {"varies": [1.0, 2.0, 3.0, 4.0], "flat": [1.0, 1.0, 1.0, 1.0]},
        index=["a", "b", "c", "d"],
    )
    receiver = pd.DataFrame(
        {
            "t": [4.0, 3.0, 2.0, 1.0],
            "const": [5.0, 5.0, 5.0, 5.0],
            "sparse": [1.0, np.nan, np.nan, 2.0],
        },
        index=["a", "b", "c", "d"],
    )
    table = associate(sender, receiver, dataset="d").set_index(["signature", "target"])
    assert table.loc[("varies", "t"), "rho"] == pytest.approx(-1.0)
    assert table.loc[("varies", "t"), "note"] == ""
    assert table.loc[("varies", "const"), "note"] == "receiver expression constant across patients"
    assert table.loc[("flat", "t"), "note"] == "sender score constant across patients"
    assert table.loc[("varies", "sparse"), "note"] == "2 patients < min_patients=3"
    assert table.loc[("varies", "sparse"), "n_patients"] == 2
    untested = table["note"] != ""
    assert table.loc[untested, ["rho", "p_value", "q_value"]].isna().all().all()
    # Untested pairs come last and do not count in BH (a single test: q == p).
    assert table.loc[("varies", "t"), "q_value"] == table.loc[("varies", "t"), "p_value"]
    assert associate(sender, receiver, dataset="d")["note"].iloc[0] == ""


def test_associate_rejects_min_patients_below_three():
    frame = pd.DataFrame({"x": [1.0, 2.0, 3.0]}, index=["a", "b", "c"])
    with pytest.raises(ValueError, match="min_patients must be at least 3"):
        associate(frame, frame, dataset="d", min_patients=2)


def test_planted_patient_level_correlation_is_recovered(contract_factory, label_map):
    """End to end on synthetic counts: activation up in CD8 cells, TGT_DOWN down in tumour."""
    contract = contract_factory(seed=5, n_patients=8)
    # Through the real harmonise, from the raw form of the same cells.
    raw = contract.copy()
    raw.obs = pd.DataFrame(
        {
            "donor": contract.obs["patient"].astype(str),
            "label": contract.obs["cell_type_original"].astype(str),
        },
        index=contract.obs_names,
    )
    del raw.layers["counts"]
    raw.uns = {}
    adata = log_normalise(
        harmonise(
            raw,
            dataset="syn",
            patient_column="donor",
            cell_type_column="label",
            label_map=label_map,
        )
    )
    scores = score_signatures(adata, {"planted": [f"SIG{i}" for i in range(1, 7)]}, rng=0)
    kept, _ = select_patients(patient_counts(adata.obs))
    sender = sender_scores(scores, adata.obs).loc[kept]
    receiver = receiver_expression(adata, genes=["TGT_DOWN", "TGT_FLAT"]).loc[kept]
    table = associate(sender, receiver, dataset="syn").set_index("target")
    assert table.loc["TGT_DOWN", "n_patients"] == 8
    assert table.loc["TGT_DOWN", "rho"] < -0.9
    assert table.loc["TGT_DOWN", "p_value"] < 0.01
    assert table.index[0] == "TGT_DOWN"
