"""The whole workflow through Snakemake on a small simulated cohort, checked against the planted truth."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd
import pytest
from workflow_helpers import ROOT, no_traceback, run_snakemake, small_cohort_row, write_config

from cd8exo.cells.store import open_cells

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def finished_run(small_cohort, tmp_path_factory):
    workdir = tmp_path_factory.mktemp("run")
    write_config(
        workdir,
        [small_cohort_row(small_cohort, truth=str(small_cohort["truth"]))],
    )
    run_snakemake(workdir, "--cores", "2", "--configfile", "config/config.yaml")
    return workdir


def test_associations_recover_planted_truth(finished_run):
    assoc = pd.read_csv(finished_run / "results/summary/associations.tsv", sep="\t")
    assert {"dataset", "signature", "target", "n_patients", "rho", "p_value", "q_value"} <= set(
        assoc.columns
    )
    truth = pd.read_csv(finished_run / "results/summary/truth_check.tsv", sep="\t")
    planted = truth[truth["expected_sign"] != 0]
    assert len(planted) == 12  # 3 activation-driven signatures x (PLP2, CXCL9, CXCL10, STAT1)
    assert (planted["outcome"] == "true positive").all(), planted
    plp2 = planted[planted["target"] == "PLP2"]
    assert (plp2["rho"] < -0.6).all()
    nulls = truth[truth["expected_sign"] == 0]
    assert (nulls["q_value"] >= 0.05).all(), nulls[nulls["q_value"] < 0.05]


def test_patient_level_not_cell_level(finished_run, small_cohort):
    assoc = pd.read_csv(finished_run / "results/summary/associations.tsv", sep="\t")
    patients = pd.read_csv(finished_run / "results/summary/patients.tsv", sep="\t")
    n_included = int(patients["included"].sum())
    # one planted low-CD8 patient is excluded, everyone else enters every test
    assert n_included == 11
    assert set(assoc["n_patients"]) == {n_included}
    excluded = pd.read_csv(finished_run / "results/aggregate_patients/small.excluded.tsv", sep="\t")
    low = small_cohort["cohort"].patients.query("low_cd8")["patient"].tolist()
    assert excluded["patient"].tolist() == low
    assert "< min_cd8_cells=10" in excluded["reason"].iloc[0]


def test_qc_table_and_outputs(finished_run, small_cohort):
    removed = pd.read_csv(finished_run / "results/filter_cells/small.removed.tsv", sep="\t")
    n_low_quality = len(small_cohort["cohort"].adata.uns["simulation"]["low_quality_cells"])
    assert (
        removed["n_removed_min_genes"].sum() + removed["n_removed_mito"].sum()
        >= 0.8 * n_low_quality
    )
    assert removed["n_before"].sum() == small_cohort["cohort"].adata.n_obs
    coverage = pd.read_csv(finished_run / "results/score_signatures/small.coverage.tsv", sep="\t")
    assert (coverage["n_missing"] == 0).all()
    # the matrix is written once (prepare_dataset); filter_cells passes on a cell table
    kept = ad.read_h5ad(finished_run / "results/filter_cells/small.h5ad")
    assert kept.X is None
    assert kept.n_obs == removed["n_after"].sum()
    cells = open_cells(
        finished_run / "results/prepare_dataset/small.h5ad",
        finished_run / "results/filter_cells/small.h5ad",
    )
    # log-normalised exactly once, as read: ln(CP10k + 1) of the kept counts
    counts = cells.linear.to_csr()
    assert counts.data.min() >= 1
    assert np.array_equal(counts.data, np.round(counts.data))
    adata = cells.to_memory()
    assert adata.uns["cd8exo"]["log_normalised"]
    assert 5 < adata.X.max() < 12
    row = counts[0].toarray().ravel()
    np.testing.assert_allclose(
        adata.X[0].toarray().ravel(), np.log1p(row / row.sum() * 1e4), rtol=1e-6
    )
    for name in ["umap.png", "sender_scores.png", "rho_heatmap.png"]:
        assert (finished_run / "results/plots/small" / name).stat().st_size > 10_000
    scatters = list((finished_run / "results/plots/small/scatter").glob("*.png"))
    assert len(scatters) == 4 * 13


def test_report_is_self_contained_html(finished_run):
    run_snakemake(
        finished_run,
        "--cores",
        "1",
        "--configfile",
        "config/config.yaml",
        "--report",
        "results/report.html",
    )
    html = (finished_run / "results/report.html").read_text(errors="replace")
    assert len(html) > 200_000
    for caption in ["Spearman rho across patients", "Cells removed by QC", "UMAP of the cells"]:
        assert caption in html


def test_users_own_h5ad_with_other_columns_and_labels(small_cohort, tmp_path):
    """A user's own h5ad with other column names and labels runs without code changes."""
    adata = small_cohort["cohort"].adata.copy()
    relabel = {
        "Cancer cells": "Tumor",
        "T cells CD8+": "CD8 T",
        "T cells CD4+": "CD4 T",
    }
    adata.obs = pd.DataFrame(
        {
            "Patient ID": adata.obs["donor_id"].to_numpy(),
            "annotation": adata.obs["author_cell_type"].astype(str).replace(relabel).to_numpy(),
        },
        index=adata.obs_names,
    )
    adata.write_h5ad(tmp_path / "mine.h5ad")
    labels = pd.DataFrame(
        {
            "label": ["Tumor", "CD8 T", "CD4 T", "*"],
            "cell_type": ["malignant", "CD8_T", "CD4_T", "other"],
        }
    )
    labels.to_csv(tmp_path / "labels.tsv", sep="\t", index=False)
    write_config(
        tmp_path,
        [
            {
                "dataset": "mine",
                "format": "h5ad",
                "path": str(tmp_path / "mine.h5ad"),
                "patient_column": "Patient ID",
                "cell_type_column": "annotation",
                "label_map": str(tmp_path / "labels.tsv"),
            }
        ],
    )
    run_snakemake(
        tmp_path,
        "results/summary/associations.tsv",
        "--cores",
        "2",
        "--configfile",
        "config/config.yaml",
    )
    assoc = pd.read_csv(tmp_path / "results/summary/associations.tsv", sep="\t")
    row = assoc.set_index(["signature", "target"]).loc[("Chu2023_CD8_c2_Teff", "PLP2")]
    assert row["rho"] < -0.6
    assert row["q_value"] < 0.05


def test_config_typo_gives_one_clear_message(tmp_path, small_cohort):
    write_config(
        tmp_path,
        [
            {
                "dataset": "x",
                "format": "h5ad",
                "path": "nope.h5ad",
                "patient_column": "p",
                "cell_type_column": "c",
                "label_map": str(small_cohort["label_map"]),
            }
        ],
        qc={"min_gene": 5},
    )
    result = run_snakemake(tmp_path, "-n", "--configfile", "config/config.yaml", check=False)
    assert result.returncode == 1
    assert (
        "unknown key(s) 'min_gene' under 'qc'; allowed keys: max_mito_fraction, min_genes"
        in result.stderr
    )
    no_traceback(result)


def test_killed_run_reruns_to_identical_results(finished_run, small_cohort, tmp_path):
    """A run killed part-way (SIGKILL of the whole process group) and rerun gives the same table."""
    import os
    import signal
    import subprocess
    import time

    from workflow_helpers import SNAKEMAKE

    rows = pd.read_csv(finished_run / "config/datasets.tsv", sep="\t").to_dict("records")
    write_config(tmp_path, rows)
    target = "results/summary/associations.tsv"
    cmd = [
        str(SNAKEMAKE),
        "-s",
        str(ROOT / "Snakefile"),
        "--directory",
        str(tmp_path),
        target,
        "--cores",
        "2",
        "--configfile",
        "config/config.yaml",
    ]
    proc = subprocess.Popen(
        cmd,
        cwd=tmp_path,
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    scores = tmp_path / "results/score_signatures/small.scores.tsv.gz"
    deadline = time.monotonic() + 600
    while not scores.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    assert proc.poll() is None, "the workflow finished before it could be interrupted"
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (tmp_path / target).exists()
    run_snakemake(tmp_path, "--unlock", "--configfile", "config/config.yaml")
    run_snakemake(
        tmp_path, target, "--cores", "2", "--rerun-incomplete", "--configfile", "config/config.yaml"
    )
    assert (tmp_path / target).read_bytes() == (finished_run / target).read_bytes()
    leftovers = [p for p in (tmp_path / "results").rglob("*") if ".tmp" in p.name]
    assert leftovers == []
