"""Tests of cd8exo.aggregate: patient-level counts, sender means, receiver pseudobulk."""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from cd8exo.cells.harmonise import log_normalise
from cd8exo.patients.aggregate import (
    patient_counts,
    receiver_expression,
    select_patients,
    sender_scores,
)


def test_patient_counts_known_values(contract_adata):
    counts = patient_counts(contract_adata.obs)
    assert counts.index.tolist() == ["P1", "P2", "P3", "P4", "P5", "P6"]
    assert (counts["n_cells"] == 30 + 40 + 15).all()
    assert (counts["n_cd8"] == 30).all()
    assert (counts["n_malignant"] == 40).all()
    np.testing.assert_allclose(counts["cd8_fraction"], 30 / 85)


def test_patient_counts_keep_patients_whose_cells_were_all_removed(contract_adata):
    obs = contract_adata.obs
    obs = obs[
        (obs["patient"] != "P2") & ~((obs["patient"] == "P3") & (obs["cell_type"] == "CD8_T"))
    ]
    counts = patient_counts(obs)
    assert counts.loc["P2"].tolist()[:3] == [0, 0, 0]
    assert np.isnan(counts.loc["P2", "cd8_fraction"])
    assert counts.loc["P3", "n_cd8"] == 0
    assert counts.loc["P3", "cd8_fraction"] == 0.0


def test_sender_scores_average_cd8_cells_only():
    obs = pd.DataFrame(
        {
            "patient": ["a", "a", "a", "b", "b", "c"],
            "cell_type": ["CD8_T", "CD8_T", "malignant", "CD8_T", "myeloid", "malignant"],
        },
        index=[f"c{i}" for i in range(6)],
    )
    scores = pd.DataFrame(
        {"s1": [1.0, 3.0, 100.0, -1.0, 50.0, 7.0], "s2": [0.0, 1.0, 9.0, 2.0, 9.0, 9.0]},
        index=obs.index,
    )
    result = sender_scores(scores.iloc[::-1], obs)  # order of the cells does not matter
    expected = pd.DataFrame(
        {"s1": [2.0, -1.0], "s2": [0.5, 2.0]}, index=pd.Index(["a", "b"], name="patient")
    )
    pd.testing.assert_frame_equal(result, expected)


def test_sender_scores_rejects_cells_not_in_obs():
    obs = pd.DataFrame({"patient": ["a"], "cell_type": ["CD8_T"]}, index=["c0"])
    scores = pd.DataFrame({"s": [1.0, 2.0]}, index=["c0", "c9"])
    with pytest.raises(ValueError, match=r"1 scored cells are not in obs \(e\.g\. \['c9'\]\)"):
        sender_scores(scores, obs)


def test_receiver_expression_equals_manual_pseudobulk_of_counts(contract_adata, caplog):
    counts = contract_adata.layers["counts"].toarray().astype(np.float64)
    obs = contract_adata.obs
    with caplog.at_level(logging.WARNING, logger="cd8exo.patients"):
        result = receiver_expression(contract_adata, genes=["TGT_DOWN", "NOT_A_GENE", "TGT_FLAT"])
    assert "Target genes not in the data (NaN columns): NOT_A_GENE" in caplog.text
    assert result.columns.tolist() == ["TGT_DOWN", "NOT_A_GENE", "TGT_FLAT"]
    assert result["NOT_A_GENE"].isna().all()
    gene = contract_adata.var_names.get_loc("TGT_DOWN")
    for patient in ["P1", "P4"]:
        cells = ((obs["patient"] == patient) & obs["malignant"]).to_numpy()
        summed = counts[cells].sum(axis=0)
        expected = np.log2(summed[gene] / summed.sum() * 1e6 + 1)
        assert result.loc[patient, "TGT_DOWN"] == pytest.approx(expected, rel=1e-10)
    # Normalising X changes nothing: the pseudobulk is built from the counts layer.
    again = receiver_expression(log_normalise(contract_adata), genes=["TGT_DOWN", "TGT_FLAT"])
    pd.testing.assert_frame_equal(again, result[["TGT_DOWN", "TGT_FLAT"]])


def test_receiver_expression_of_normalised_values_is_mean_rescaled(contract_adata):
    counts = contract_adata.layers["counts"].toarray().astype(np.float64)
    cp10k = counts / counts.sum(axis=1, keepdims=True) * 1e4
    adata = contract_adata.copy()
    del adata.layers["counts"]
    adata.X = sp.csr_matrix(np.log1p(cp10k).astype(np.float32))
    adata.uns["cd8exo"] = {"dataset": "d", "value_scale": "log1p_norm", "log_normalised": True}
    result = receiver_expression(adata, genes=["TGT_FLAT"])
    cells = ((adata.obs["patient"] == "P5") & adata.obs["malignant"]).to_numpy()
    mean = cp10k[cells].mean(axis=0)
    expected = np.log2(mean[adata.var_names.get_loc("TGT_FLAT")] / mean.sum() * 1e6 + 1)
    assert result.loc["P5", "TGT_FLAT"] == pytest.approx(expected, rel=1e-5)


def test_receiver_expression_only_patients_with_malignant_cells(contract_adata):
    adata = contract_adata[
        ~((contract_adata.obs["patient"] == "P6") & contract_adata.obs["malignant"])
    ]
    result = receiver_expression(adata, genes=["TGT_DOWN"])
    assert result.index.tolist() == ["P1", "P2", "P3", "P4", "P5"]
    assert result.index.name == "patient"


def test_select_patients_reasons_are_exact():
    counts = pd.DataFrame(
        {"n_cells": [100, 50, 30, 200], "n_cd8": [12, 6, 3, 10], "n_malignant": [40, 30, 5, 20]},
        index=pd.Index(["P1", "P2", "P3", "P4"], name="patient"),
    )
    kept, excluded = select_patients(counts, min_cd8_cells=10, min_malignant_cells=20)
    assert kept.tolist() == ["P1", "P4"]
    assert excluded.to_dict("records") == [
        {
            "patient": "P2",
            "n_cd8": 6,
            "n_malignant": 30,
            "reason": "6 CD8_T cells < min_cd8_cells=10",
        },
        {
            "patient": "P3",
            "n_cd8": 3,
            "n_malignant": 5,
            "reason": "3 CD8_T cells < min_cd8_cells=10; 5 malignant cells < min_malignant_cells=20",
        },
    ]


def test_select_patients_nobody_excluded(contract_adata):
    kept, excluded = select_patients(patient_counts(contract_adata.obs))
    assert len(kept) == 6
    assert excluded.empty
    assert excluded.columns.tolist() == ["patient", "n_cd8", "n_malignant", "reason"]
