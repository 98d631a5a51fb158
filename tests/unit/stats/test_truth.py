"""Outcomes of the planted-truth check."""

import pandas as pd

from cd8exo.stats.testable import untested_table
from cd8exo.stats.truth import check_truth


def test_each_outcome():
    truth = pd.DataFrame(
        {
            "dataset": ["d"] * 6,
            "signature": ["s"] * 6,
            "target": ["A", "B", "C", "D", "E", "F"],
            "expected_sign": [-1, 1, -1, 0, 0, 1],
        }
    )
    assoc = pd.DataFrame(
        {
            "dataset": ["d"] * 5,
            "signature": ["s"] * 5,
            "target": ["A", "B", "C", "D", "E"],
            "rho": [-0.8, -0.7, -0.1, 0.9, 0.1],
            "q_value": [0.001, 0.01, 0.6, 0.01, 0.8],
        }
    )
    out = check_truth(assoc, truth, fdr=0.05).set_index("target")
    assert out["outcome"].to_dict() == {
        "A": "true positive",
        "B": "wrong sign",
        "C": "missed",
        "D": "false positive",
        "E": "true negative",
        "F": "not tested",
    }
    assert out["as_planted"].tolist() == [True, False, False, False, True, False]


def test_na_rows_of_an_untestable_dataset_are_not_tested():
    reason = "0 of 8 patients have >= 10 CD8 T cells and >= 20 malignant cells; 6 needed"
    assoc = untested_table("tiny", ["s"], ["A", "B"], n_patients=0, note=reason)
    truth = pd.DataFrame(
        {"dataset": "tiny", "signature": "s", "target": ["A", "B"], "expected_sign": [-1, 0]}
    )
    out = check_truth(assoc, truth, fdr=0.05)
    assert out["outcome"].tolist() == ["not tested", "not tested"]
    assert not out["as_planted"].any()
