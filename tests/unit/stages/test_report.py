"""The landing page's target-set sentences: the primary miRNA's sets, each dataset's result."""

from __future__ import annotations

import numpy as np
import pandas as pd

from cd8exo.pl.names import DisplayNames
from cd8exo.stages.report import landing_page, target_set_sentences
from cd8exo.stats.key_results import key_results_table

NAMES = DisplayNames(simulated=frozenset({"demo_cohort"}))


def _sets() -> pd.DataFrame:
    rows = []
    for dataset, rho, n in (("demo_cohort", -0.774, 15), ("GSE1", -0.5, 30)):
        for target, value in (
            ("miR-765__MSIGDB71_MIRDB", rho),
            ("miR-765__MIRTARBASE8_STRONG", np.nan),  # skipped for coverage
            ("miR-150-5p__MSIGDB71_MIRDB", 0.1),  # not the primary target's miRNA
        ):
            rows.append(
                {
                    "dataset": dataset,
                    "signature": "S",
                    "target": target,
                    "mirna": target.split("__")[0],
                    "n_patients": n,
                    "rho": value,
                    "ci_low": value - 0.2,
                    "ci_high": value + 0.3,
                    "perm_q_value": 0.0103,
                    "set_specificity_p": 0.0547,
                }
            )
    rows.append({**rows[0], "signature": "other", "rho": 0.9})
    return pd.DataFrame(rows)


def test_one_sentence_per_tested_set_of_the_primary_mirna():
    sentences = target_set_sentences(_sets(), signature="S", mirnas=["miR-765"], names=NAMES)
    assert sentences == [
        "miR-765 targets (miRDB, predicted), set level (expected negative): "
        "demo_cohort (SIMULATED): \u03c1 = \u22120.77 [\u22120.97, \u22120.47], permutation q = "
        "0.01, set-specificity p = 0.055, n = 15; GSE1: \u03c1 = \u22120.50 [\u22120.70, "
        "\u22120.20], permutation q = 0.01, set-specificity p = 0.055, n = 30."
    ]
    assert target_set_sentences(None, signature="S", mirnas=["miR-765"], names=NAMES) == []
    assert target_set_sentences(_sets(), signature="S", mirnas=["miR-9"], names=NAMES) == []


def test_the_landing_page_states_the_set_level_result_after_the_gene():
    genes = pd.DataFrame(
        {
            "dataset": ["demo_cohort"],
            "signature": ["S"],
            "target": ["PLP2"],
            "n_patients": [15],
            "rho": [-0.85],
            "ci_low": [-0.95],
            "ci_high": [-0.6],
            "perm_p_value": [1e-4],
            "perm_q_value": [1e-3],
            "p_value": [1e-5],
            "q_value": [1e-4],
            "specificity_p": [0.02],
            "note": [""],
        }
    )
    targets = pd.DataFrame(
        {"gene": ["PLP2"], "role": ["mirna_target"], "expected_direction": ["negative"]}
    )
    key = key_results_table(genes, genes.iloc[:0], targets, simulated=["demo_cohort"])
    sentences = target_set_sentences(_sets(), signature="S", mirnas=["miR-765"], names=NAMES)
    page = landing_page(
        key,
        signature="S",
        datasets=pd.DataFrame({"dataset": ["demo_cohort"]}),
        sheet={},
        names=NAMES,
        set_sentences=sentences,
    )
    gene_at, set_at = page.index("<i>PLP2</i>"), page.index("miR-765 targets (miRDB")
    assert gene_at < set_at < page.index('id="key-results-table"')
