"""An untestable dataset is a result, not a crash (issue 12), end to end through Snakemake.

One sheet, two datasets: ``good`` (the small simulated cohort, its patient ids replaced by
awkward ones: leading zeros, spaces, non-ASCII, ``/``, ``..``, ``NA``) and ``tiny`` (8 of
its patients with 24 cells each, so no patient reaches the cell-count thresholds). The run
finishes, ``good`` is analysed with its ids verbatim, ``tiny``'s rows are NA with the
reason, ``datasets.tsv`` says so, the report builds, and no traceback shows anywhere.
The run is kept small: no agreement run, no method comparison, no screen, few resamples,
and only the targets the checks need (no UMAP: its empty cases are unit-tested).
"""

from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd
import pytest
from workflow_helpers import no_traceback, run_snakemake, small_cohort_row, write_config

from cd8exo.io.tables import read_table

pytestmark = pytest.mark.integration

IDS = ["007", " 7 ", "Zoë", "患者1", "a/b", "..", "../escape", "NA", "1e3", "P 10", "P11", "P12"]
TARGETS = [
    "results/summary/associations.tsv",
    "results/summary/datasets.tsv",
    "results/summary/meta_analysis.tsv",
    "results/plots/meta/forest",
    *(
        f"results/plots/{dataset}/{name}"
        for dataset in ("good", "tiny")
        for name in ("sender_scores.png", "rho_heatmap.png", "scatter")
    ),
]
FAST = {
    "identity": {"agreement": False},
    "scoring": {"compare_methods": False},
    "screen": {"enabled": False},
    "association": {"n_boot": 200, "n_perm": 500, "n_random_sets": 19},
}


@pytest.fixture(scope="module")
def run(small_cohort, tmp_path_factory):
    workdir = tmp_path_factory.mktemp("untestable")
    adata = small_cohort["cohort"].adata
    donors = adata.obs["donor_id"].astype(str)
    originals = sorted(donors.unique())
    good = adata.copy()
    good.obs["donor_id"] = donors.map(dict(zip(originals, IDS, strict=True))).to_numpy()
    good.write_h5ad(workdir / "good.h5ad")
    rng = np.random.default_rng(0)
    cells = [
        rng.choice(np.flatnonzero((donors == donor).to_numpy()), 24, replace=False)
        for donor in originals[:8]
    ]
    adata[np.sort(np.concatenate(cells))].copy().write_h5ad(workdir / "tiny.h5ad")
    rows = [
        small_cohort_row(small_cohort, dataset=name, path=str(workdir / f"{name}.h5ad"))
        for name in ("good", "tiny")
    ]
    write_config(workdir, rows, **FAST)
    result = run_snakemake(workdir, *TARGETS, "--cores", "2", "--configfile", "config/config.yaml")
    report = run_snakemake(
        workdir, *TARGETS, "--cores", "1", "--configfile", "config/config.yaml",
        "--report", "results/report.html",
    )  # fmt: skip
    return {"workdir": workdir, "result": result, "report": report}


def test_one_untestable_dataset_does_not_stop_the_run(run):
    workdir = run["workdir"]
    associations = read_table(workdir / "results/summary/associations.tsv")
    patients = read_table(workdir / "results/aggregate_patients/tiny.patients.tsv")
    n_included = int(patients["included"].sum())
    assert len(patients) == 8
    assert n_included < 6
    reason = (
        f"{n_included} of 8 patients have >= 10 CD8 T cells and >= 20 malignant cells; 6 needed"
    )
    # the good dataset: real numbers, as always
    good = associations[associations["dataset"] == "good"]
    assert len(good) == 4 * 13
    assert np.isfinite(good[["rho", "p_value", "q_value", "ci_low", "specificity_p"]]).all().all()
    assert (good["n_patients"] == 11).all()
    assert (
        good.set_index(["signature", "target"]).loc[("Chu2023_CD8_c2_Teff", "PLP2"), "rho"] < -0.5
    )
    # the untestable one: every row NA with the reason
    tiny = associations[associations["dataset"] == "tiny"]
    assert len(tiny) == 4 * 13
    assert tiny[["rho", "p_value", "q_value", "ci_low", "specificity_p"]].isna().all().all()
    assert set(tiny["note"]) == {reason}
    assert (tiny["n_patients"] == n_included).all()
    # the status table
    status = read_table(workdir / "results/summary/datasets.tsv", index_col="dataset")
    assert status.loc[
        "good", ["status", "n_patients", "n_included", "n_pairs", "n_tested"]
    ].tolist() == ["analysed", 12, 11, 52, 52]
    assert pd.isna(status.loc["good", "reason"])
    assert status.loc["tiny", ["status", "n_patients", "n_included", "n_tested"]].tolist() == [
        "not testable",
        8,
        n_included,
        0,
    ]
    assert status.loc["tiny", "reason"] == reason
    # the meta-analysis pools the good dataset alone and names the other
    meta = read_table(workdir / "results/summary/meta_analysis.tsv")
    assert (meta["n_datasets"] == 1).all()
    assert (meta["datasets"] == "good").all()
    assert (
        meta["note"]
        .str.contains("not tested (too few patients or no rho) in: tiny", regex=False)
        .all()
    )
    # every figure is there, those with nothing to show included
    plots = workdir / "results/plots"
    assert len(list((plots / "meta/forest").glob("*.png"))) == 52
    assert len(list((plots / "tiny/scatter").glob("*.png"))) == 52
    assert len(list((plots / "good/scatter").glob("*.png"))) == 52
    # a warning names the dataset while the run goes on
    assert f"tiny: not testable: {reason}" in run["result"].stderr
    assert (
        "dataset 'tiny': not testable" in (workdir / "logs/summarise_datasets/all.log").read_text()
    )


def test_report_builds_with_the_status_table(run):
    html = (run["workdir"] / "results/report.html").read_text(errors="replace")
    assert len(html) > 100_000
    assert "analysed, partly or not testable" in html


def test_no_traceback_in_output_or_logs(run):
    no_traceback(run["result"])
    no_traceback(run["report"])
    logs = sorted((run["workdir"] / "logs").rglob("*.log"))
    assert len(logs) > 20
    assert [log for log in logs if "Traceback" in log.read_text()] == []


def test_patient_ids_stay_verbatim_and_never_reach_a_path(run):
    workdir = run["workdir"]
    harmonised = ad.read_h5ad(workdir / "results/prepare_dataset/good.h5ad").obs["patient"]
    ids = sorted(harmonised.astype(str).unique())
    assert len(ids) == len(IDS)
    # ids are kept exactly as given, surrounding spaces included (" 7 " is not "7")
    assert ids == sorted(IDS)
    patients = read_table(workdir / "results/summary/patients.tsv")
    assert sorted(patients.loc[patients["dataset"] == "good", "patient"]) == ids
    scores = read_table(workdir / "results/score_signatures/good.scores.tsv.gz")
    assert sorted(scores["patient"].unique()) == ids
    excluded = read_table(workdir / "results/aggregate_patients/good.excluded.tsv")
    assert set(excluded["patient"]) <= set(ids)
    associations = read_table(workdir / "results/summary/associations.tsv")
    loo = associations.loc[associations["dataset"] == "good", "loo_patient"]
    assert set(loo) <= set(ids)
    # no file or folder is named after a patient, inside the run or next to it
    names = [p.name for p in workdir.parent.rglob("*")]
    assert not [n for n in names if "escape" in n or "Zoë" in n or "患者" in n]


def test_a_broken_gmt_stops_the_run_at_start_up(small_cohort, tmp_path):
    """Before any job runs: the file, the line and what to do; no traceback."""
    latin1 = tmp_path / "mine.gmt"
    latin1.write_bytes(b"MINE\tmy set\tCD8A\tGZMB\nM\xdcLLER\tnote\tPRF1\n")
    targets = tmp_path / "targets.tsv"
    targets.write_text("symbol\nPLP2\n")
    write_config(
        tmp_path,
        [small_cohort_row(small_cohort)],
        signatures={"gmt": [str(latin1)]},
        targets={"table": str(targets)},
    )
    result = run_snakemake(
        tmp_path, "--cores", "1", "--configfile", "config/config.yaml", check=False
    )
    assert result.returncode == 1
    no_traceback(result)
    assert (
        f"  - signatures.gmt: {latin1}, line 2: the GMT file is not UTF-8 text (byte 0xdc at "
        "position 2 of the line; a Latin-1 or Windows file, or not a text file at all). Save it "
        "as UTF-8 text.\n"
    ) in result.stderr
    assert f"  - targets.table: The target gene table {targets} lacks the column(s) ['gene']" in (
        result.stderr
    )
    assert not (tmp_path / "results").exists()
