"""Key results: the miRNA targets and the controls, per dataset and pooled, in reading order."""

from __future__ import annotations

import numpy as np
import pandas as pd

from cd8exo.stats.key_results import POOLED, key_results_table, primary_signature
from cd8exo.stats.meta import meta_analysis

TARGETS = pd.DataFrame(
    {
        "gene": ["PLP2", "FAS", "CXCL9", "ACTB"],
        "role": [
            "mirna_target",
            "cargo_receptor_or_pathway",
            "positive_control",
            "negative_control",
        ],
        "expected_direction": ["negative", "unknown", "positive", "none"],
    }
)


def _associations() -> pd.DataFrame:
    rows = []
    for dataset, n, rho in (("b_cohort", 20, -0.6), ("a_cohort", 12, -0.8)):
        for signature in ("sig2", "sig1"):
            for target in ("ACTB", "PLP2", "FAS", "CXCL9"):
                value = rho if target == "PLP2" else 0.1
                rows.append(
                    {
                        "dataset": dataset,
                        "signature": signature,
                        "target": target,
                        "n_patients": n,
                        "rho": value,
                        "p_value": 0.01,
                        "q_value": 0.02,
                        "ci_low": value - 0.2,
                        "ci_high": value + 0.2,
                        "perm_p_value": 0.001,
                        "perm_q_value": 0.004,
                        "specificity_p": 0.03,
                        "note": "",
                    }
                )
    return pd.DataFrame(rows)


def test_key_results_keep_the_key_roles_in_order_with_pooled_rows_last():
    associations = _associations()
    key = key_results_table(
        associations, meta_analysis(associations), TARGETS, simulated=["a_cohort"]
    )
    assert key["target"].unique().tolist() == ["PLP2", "CXCL9", "ACTB"]  # FAS is a pathway
    plp2 = key[(key["target"] == "PLP2") & (key["signature"] == "sig2")]
    assert plp2["dataset"].tolist() == ["b_cohort", "a_cohort", POOLED]
    assert plp2["simulated"].tolist() == [False, True, True]  # pooled includes a_cohort
    pooled = plp2.iloc[-1]
    assert pooled["n_patients"] == 32
    assert pooled["n_datasets"] == 2
    assert -0.8 < pooled["rho"] < -0.6
    assert np.isnan(pooled["perm_q_value"])  # no permutation p for a pooled estimate
    assert plp2.iloc[0]["perm_q_value"] == 0.004


def test_primary_signature_is_the_chosen_one_when_tested_else_the_first():
    associations = _associations()
    assert primary_signature(associations) == "sig2"
    assert primary_signature(associations, "sig1") == "sig1"
    assert primary_signature(associations, "not_there") == "sig2"


def test_a_target_table_without_roles_has_no_key_rows():
    associations = _associations()
    key = key_results_table(associations, meta_analysis(associations), TARGETS[["gene"]])
    assert key.empty
