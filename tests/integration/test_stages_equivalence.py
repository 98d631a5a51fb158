"""The calibration analyses a cohort exactly as the workflow runs (issue 14, item 1).

One simulated cohort goes through the rule scripts (Snakemake, files between the rules)
and through :func:`cd8exo.sim.calibrate.analyse_cohort` (the same stages, in memory); the
association tables must be the same, for every scoring method and both FDR families.
Before the stages existed, the calibration hard-coded ``tirosh``, drew its random sets
from the unprepared signatures and ignored the family: this test pins that it no longer
can drift.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest
from workflow_helpers import ROOT, run_snakemake, write_config

from cd8exo.io.tables import read_table, write_table
from cd8exo.sim.calibrate.cohorts import analyse_cohort, simulate_calibration_cohort
from cd8exo.sim.calibrate.settings import CalibrationSettings, load_inputs
from cd8exo.sim.cohort import label_map
from cd8exo.sim.demo import write_cohort

pytestmark = pytest.mark.integration

SEED = 5
# small but complete: every step runs, and 12 patients pass the thresholds
SETTINGS = CalibrationSettings(n_boot=200, n_perm=500, n_random_sets=19)
# (scoring method, FDR family): every method once, the other family once
RUNS = [
    ("tirosh", "dataset"),
    ("ucell", "dataset"),
    ("aucell", "dataset"),
    ("ssgsea", "dataset"),
    ("tirosh", "signature"),
]


@pytest.fixture(scope="module")
def cohort_files(tmp_path_factory):
    inputs = load_inputs(ROOT / "resources")
    cohort = simulate_calibration_cohort(
        inputs, n_patients=12, planted_rho=0.7, settings=SETTINGS, rng=3, name="equiv"
    )
    out = tmp_path_factory.mktemp("equivalence")
    paths = write_cohort(cohort, out)
    label_map().to_csv(out / "label_map.tsv", sep="\t", index=False)
    return {"inputs": inputs, "cohort": cohort, "dir": out, "h5ad": paths["h5ad"]}


def _workflow_config(workdir, files, *, method, family):
    s = SETTINGS
    row = {
        "dataset": "equiv",
        "format": "h5ad",
        "path": str(files["h5ad"]),
        "patient_column": "donor_id",
        "sample_column": "sample_id",
        "cell_type_column": "author_cell_type",
        "label_map": str(files["dir"] / "label_map.tsv"),
        "value_scale": "counts",
        "cancer_type": s.cancer_type,
    }
    return write_config(
        workdir,
        [row],
        seed=SEED,
        qc={"min_genes": s.min_genes, "max_mito_fraction": s.max_mito_fraction},
        identity={"agreement": False},  # the calibration skips the agreement run too
        scoring={
            "method": method,
            "n_bins": s.n_bins,
            "ctrl_size": s.ctrl_size,
            "ucell_max_rank": s.ucell_max_rank,
            "aucell_n_up": s.aucell_n_up,
            "aucell_ties": s.aucell_ties,
        },
        signatures={"min_coverage": s.min_coverage},
        aggregation={
            "min_cd8_cells": s.min_cd8_cells,
            "min_malignant_cells": s.min_malignant_cells,
        },
        association={
            "min_patients": s.min_patients,
            "family": family,
            "n_boot": s.n_boot,
            "n_perm": s.n_perm,
            "ci_level": 0.95,
            "covariates": list(s.covariates),
            "n_random_sets": s.n_random_sets,
        },
    )


@pytest.fixture(scope="module")
def workflow_tables(cohort_files, tmp_path_factory):
    """Association tables of the rule path, one Snakemake run per (method, family).

    The runs share one working directory: a changed ``scoring`` or ``association``
    parameter reruns only the rules downstream of it.
    """
    workdir = tmp_path_factory.mktemp("workflow")
    target = "results/associate_patients/equiv.associations.tsv"
    tables = {}
    for method, family in RUNS:
        config = _workflow_config(workdir, cohort_files, method=method, family=family)
        run_snakemake(workdir, "--configfile", str(config), "--cores", "2", target)
        tables[method, family] = read_table(workdir / target)
    return tables


@pytest.mark.parametrize(("method", "family"), RUNS)
def test_calibration_path_equals_the_rule_path(
    cohort_files, workflow_tables, tmp_path, method, family
):
    inputs = cohort_files["inputs"]
    settings = dataclasses.replace(SETTINGS, method=method, family=family)
    table, _ = analyse_cohort(
        cohort_files["cohort"],
        signatures=inputs.signatures,
        targets=inputs.targets,
        settings=settings,
        seeds=dict.fromkeys(("scoring", "stats", "random_sets"), SEED),
        identity=inputs.identity,
        symbol_tables=inputs.symbol_tables,
    )
    # through the same writer and reader as the rule path's table
    write_table(table, tmp_path / "calibration.tsv")
    calibration = read_table(tmp_path / "calibration.tsv")
    workflow = workflow_tables[method, family]
    pd.testing.assert_frame_equal(calibration, workflow, check_exact=True)
    # the comparison is not vacuous: the planted pair is tested and specific
    row = workflow.set_index(["signature", "target"]).loc[
        (SETTINGS.primary_signature, SETTINGS.primary_target)
    ]
    assert row["n_patients"] >= SETTINGS.min_patients
    assert np.isfinite(row["rho"])
    assert np.isfinite(row["specificity_p"])
    assert workflow["q_value"].notna().sum() > 10


def test_the_runs_differ_where_their_settings_do(workflow_tables):
    """Each method gives its own scores, and the family changes only the q values."""
    rho = {key: table["rho"].to_numpy() for key, table in workflow_tables.items()}
    methods = [key for key in RUNS if key[1] == "dataset"]
    for i, a in enumerate(methods):
        for b in methods[i + 1 :]:
            assert not np.allclose(rho[a], rho[b], equal_nan=True), (a, b)
    by_dataset = workflow_tables["tirosh", "dataset"]
    by_signature = workflow_tables["tirosh", "signature"]
    pd.testing.assert_series_equal(by_dataset["rho"], by_signature["rho"])
    assert not np.allclose(by_dataset["q_value"], by_signature["q_value"], equal_nan=True)
