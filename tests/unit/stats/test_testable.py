"""cd8exo.stats.testable: why a dataset cannot be tested, NA rows, and each dataset's status."""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
import pytest

from cd8exo.stats.association import ASSOCIATION_COLUMNS
from cd8exo.stats.testable import (
    DATASET_STATUS_COLUMNS,
    dataset_status,
    not_testable_reason,
    untested_table,
)


def _patients(n_cd8, n_malignant, *, min_cd8=10, min_malignant=20, dataset="d"):
    n_cd8, n_malignant = np.asarray(n_cd8), np.asarray(n_malignant)
    return pd.DataFrame(
        {
            "dataset": dataset,
            "patient": [f"P{i}" for i in range(len(n_cd8))],
            "n_cells": n_cd8 + n_malignant,
            "n_cd8": n_cd8,
            "n_malignant": n_malignant,
            "included": (n_cd8 >= min_cd8) & (n_malignant >= min_malignant),
        }
    )


THRESHOLDS = {"min_patients": 6, "min_cd8_cells": 10, "min_malignant_cells": 20}


@pytest.mark.parametrize(
    ("n_cd8", "n_malignant", "reason"),
    [
        (
            [12, 15, 3, 4, 5, 2, 1, 9],
            [30, 25, 40, 40, 40, 40, 40, 40],
            "2 of 8 patients have >= 10 CD8 T cells and >= 20 malignant cells; 6 needed",
        ),
        (
            [0, 0, 0],
            [50, 50, 50],
            "no CD8 T cells; 0 of 3 patients have >= 10 CD8 T cells and >= 20 malignant cells; "
            "6 needed",
        ),
        (
            [30],
            [0],
            "no malignant cells; 0 of 1 patients have >= 10 CD8 T cells and >= 20 malignant "
            "cells; 6 needed",
        ),
        (
            [0, 0],
            [0, 0],
            "no cell passed QC; 0 of 2 patients have >= 10 CD8 T cells and >= 20 malignant "
            "cells; 6 needed",
        ),
        ([], [], "no cell passed QC (no patient left); 6 needed"),
        ([10] * 6, [20] * 6, ""),
    ],
    ids=["too few", "no CD8", "no malignant", "no cells", "no patients", "testable"],
)
def test_not_testable_reason(n_cd8, n_malignant, reason):
    assert not_testable_reason(_patients(n_cd8, n_malignant), **THRESHOLDS) == reason


def test_reason_without_thresholds_and_with_included_as_text():
    patients = _patients([12, 15, 3], [30, 25, 40])
    patients["included"] = patients["included"].map({True: "True", False: "False"})
    assert not_testable_reason(patients, min_patients=4) == (
        "2 of 3 patients are included (enough CD8 T cells and malignant cells); 4 needed"
    )


def test_untested_table_has_the_association_columns_and_na_statistics():
    table = untested_table("d", ["s1", "s2"], ["PLP2", "ACTB"], n_patients=2, note="why")
    assert list(table.columns) == [*ASSOCIATION_COLUMNS, "specificity_p", "specificity_n_sets"]
    assert list(zip(table["signature"], table["target"], strict=True)) == [
        ("s1", "PLP2"),
        ("s1", "ACTB"),
        ("s2", "PLP2"),
        ("s2", "ACTB"),
    ]
    assert table[["rho", "p_value", "q_value", "ci_low", "specificity_p"]].isna().all().all()
    assert (table["n_patients"] == 2).all()
    assert (table["note"] == "why").all()
    assert (table["family"] == "dataset=d").all()


def test_dataset_status_analysed_partly_not_testable(caplog):
    good = untested_table("good", ["s"], ["PLP2", "ACTB"], n_patients=8, note="").assign(rho=0.5)
    partly = untested_table("partly", ["s", "t"], ["PLP2", "ACTB"], n_patients=8, note="")
    partly.loc[partly["signature"] == "s", "rho"] = -0.4
    partly.loc[partly["signature"] == "t", "note"] = (
        "signature skipped: none of its 2 genes is in the data"
    )
    partly.loc[3, "note"] = "target gene not in the data"
    reason = "2 of 8 patients have >= 10 CD8 T cells and >= 20 malignant cells; 6 needed"
    tiny = untested_table("tiny", ["s"], ["PLP2", "ACTB"], n_patients=2, note=reason)
    associations = pd.concat([good, partly, tiny], ignore_index=True)
    patients = pd.concat(
        [
            _patients([20] * 8, [30] * 8, dataset="good"),
            _patients([20] * 8, [30] * 8, dataset="partly"),
            _patients([12, 15, 3, 4, 5, 2, 1, 9], [30] * 8, dataset="tiny"),
        ]
    )
    with caplog.at_level(logging.WARNING, logger="cd8exo"):
        status = dataset_status(
            associations, patients, datasets=["good", "partly", "tiny", "absent"]
        )
    assert list(status.columns) == list(DATASET_STATUS_COLUMNS)
    assert status.to_dict("records") == [
        {
            "dataset": "good",
            "status": "analysed",
            "n_patients": 8,
            "n_included": 8,
            "n_pairs": 2,
            "n_tested": 2,
            "reason": "",
        },
        {
            "dataset": "partly",
            "status": "partly",
            "n_patients": 8,
            "n_included": 8,
            "n_pairs": 4,
            "n_tested": 2,
            "reason": "2 of 4 pairs tested; not tested: 1 pair: signature skipped: none of its 2 "
            "genes is in the data; 1 pair: target gene not in the data",
        },
        {
            "dataset": "tiny",
            "status": "not testable",
            "n_patients": 8,
            "n_included": 2,
            "n_pairs": 2,
            "n_tested": 0,
            "reason": reason,
        },
        {
            "dataset": "absent",
            "status": "not testable",
            "n_patients": 0,
            "n_included": 0,
            "n_pairs": 0,
            "n_tested": 0,
            "reason": "no (signature, target) pair to test",
        },
    ]
    assert f"dataset 'tiny': not testable: {reason}" in caplog.text
    assert "dataset 'good'" not in caplog.text
