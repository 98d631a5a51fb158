"""Cell identity through Snakemake (rule annotate_cells), on real and simulated data.

* Wu et al. 2021 (Nat Genet; GEO GSE176078) breast cancer sample CID4465, declared as a
  local 10x dataset **without** cell-type labels (the cell table keeps only the cell id,
  the patient and the authors' QC columns): the workflow must infer CD8 T cells and
  malignant cells itself, and they must agree with the authors' hidden labels
  (``celltype_minor == "T cells CD8+"``, ``celltype_major == "Cancer Epithelial"``) at the
  levels measured for cd8exo.identity (tests/integration/test_identity_accuracy.py).
  One patient gives no association, so only the annotate_cells outputs are asked for.
* A small simulated cohort with author labels: the labels used are the authors', and the
  agreement table of the hidden-label inference is written.

Data provenance: /work/shared/reference/PROVENANCE_data.md.
"""

from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd
import pytest
from shared_data import SHARED_REFERENCE
from workflow_helpers import run_snakemake, small_cohort_row, write_config

from cd8exo.cells.identity.agreement import agreement_table
from cd8exo.cells.identity.annotate import IDENTITY_COLUMNS

pytestmark = pytest.mark.integration

WU2021 = SHARED_REFERENCE / "data" / "wu2021_CID4465"
#: The workflow's default seed (config.schema.yaml): the figures of the README.
SEED = 20261126


def scores(pred: pd.Series, true: pd.Series) -> dict[str, float]:
    table = agreement_table(pred.rename("x"), true.rename("x"))
    return table.iloc[0][["precision", "recall", "f1"]].astype(float).to_dict()


@pytest.fixture(scope="module")
def wu_run(tmp_path_factory):
    if not WU2021.is_dir():
        pytest.skip("real test data (/work/shared/reference/data/wu2021_CID4465) absent")
    workdir = tmp_path_factory.mktemp("identity_wu2021")
    folder = workdir / "CID4465"
    folder.mkdir()
    for name in ("matrix.mtx.gz", "genes.tsv.gz"):  # no barcodes: the cell table gives them
        (folder / name).symlink_to(WU2021 / name)
    authors = pd.read_csv(WU2021 / "obs.tsv", sep="\t")
    unlabelled = authors[["cell", "patient", "nCount_RNA", "nFeature_RNA", "percent_mito"]]
    unlabelled.to_csv(workdir / "cells.tsv", sep="\t", index=False)
    write_config(
        workdir,
        [
            {
                "dataset": "CID4465",
                "format": "10x_mtx",
                "path": str(folder),
                "cell_table": str(workdir / "cells.tsv"),
                "cell_id_column": "cell",
                "patient_column": "patient",
                "cancer_type": "breast",
                "value_scale": "counts",
                "description": "Wu 2021 CID4465 without its cell-type labels",
            }
        ],
        seed=SEED,
    )
    run_snakemake(
        workdir,
        "results/annotate_cells/CID4465.h5ad",
        "results/annotate_cells/CID4465.identity.tsv",
        "results/annotate_cells/CID4465.agreement.tsv",
        "results/plots/CID4465/cnv_heatmap.png",
        "--cores", "2", "--configfile", "config/config.yaml",
    )  # fmt: skip
    identity = pd.read_csv(workdir / "results/annotate_cells/CID4465.identity.tsv", sep="\t")
    return {
        "workdir": workdir,
        "identity": identity.set_index("cell"),
        "authors": authors.set_index("cell"),
    }


def test_unlabelled_dataset_gets_cd8_and_malignant_cells_inferred(wu_run):
    identity, authors = wu_run["identity"], wu_run["authors"]
    assert tuple(identity.reset_index().columns) == IDENTITY_COLUMNS
    assert len(identity) == len(authors) == 1564  # QC keeps every cell of this sample
    assert (identity["label_source"] == "inferred").all()
    assert (identity["cell_type_original"] == "unlabelled").all()
    assert identity["is_cd8"].sum() > 0
    assert identity["is_malignant"].sum() > 0
    assert not (identity["is_cd8"] & identity["is_malignant"]).any()
    assert identity["confidence"].between(0, 1).all()

    authors = authors.loc[identity.index]
    malignant = scores(identity["is_malignant"], authors["celltype_major"] == "Cancer Epithelial")
    # measured through the workflow (seed 20261126): precision 0.976, recall 1.000, F1 0.988
    assert malignant["f1"] >= 0.9  # issue-4 target
    assert malignant["recall"] >= 0.97
    normal = authors["celltype_major"] == "Normal Epithelial"  # lineage yes, CNVs no
    assert not identity.loc[normal, "is_malignant"].any()

    truth = authors["celltype_minor"] == "T cells CD8+"
    cd8 = scores(identity["is_cd8"], truth)
    # measured through the workflow (seed 20261126): precision 0.711, recall 0.771, F1 0.740
    # (27 of 35 found, 38 called: 54/73 = 0.7397); seeds 0-7 give 0.740-0.822 (seeds 0-3
    # exactly as cd8exo.identity alone in test_identity_accuracy, whose floor 0.74 is this
    # 0.7397 rounded). The 0.8 is not reached on this sample (README "Cell identity")
    assert cd8["f1"] >= 0.739
    assert cd8["recall"] >= 0.74
    # most false positives are author classes not split into CD8/CD4 (cycling T, NKT, NK)
    unsplit = authors["celltype_minor"].isin(["Cycling T-cells", "NKT cells", "NK cells"])
    without = scores(identity.loc[~unsplit, "is_cd8"], truth[~unsplit])
    # measured (seed 20261126): precision 0.900, recall 0.771, F1 0.831
    assert without["f1"] >= 0.8
    outside = ~authors["celltype_major"].isin(["T-cells", "B-cells", "Plasmablasts"])
    assert not identity.loc[outside, "is_cd8"].any()


def test_annotated_cells_carry_the_inferred_labels(wu_run):
    adata = ad.read_h5ad(wu_run["workdir"] / "results/annotate_cells/CID4465.h5ad")
    identity = wu_run["identity"].loc[adata.obs_names]
    obs = adata.obs
    assert (obs["cell_type"].astype(str) == identity["cell_type"]).all()
    assert (obs["cell_type"] == "CD8_T").sum() == identity["is_cd8"].sum()
    assert (obs["malignant"] == identity["is_malignant"]).all()
    assert (obs["cell_type"][obs["malignant"]] == "malignant").all()
    assert set(obs["label_source"]) == {"inferred"}
    assert np.allclose(obs["identity_confidence"], identity["confidence"])  # TSV rounds
    assert adata.uns["cd8exo"]["identity"]["author_labels"] == {"cd8": False, "malignant": False}
    assert adata.uns["cd8exo"]["log_normalised"]
    # without author labels there is nothing to compare, and the table says so
    agreement = pd.read_csv(
        wu_run["workdir"] / "results/annotate_cells/CID4465.agreement.tsv", sep="\t"
    )
    assert agreement["class"].tolist() == ["CD8_T", "malignant"]
    assert (~agreement["author_labels"]).all()
    assert agreement["f1"].isna().all()
    assert agreement["note"].str.startswith("no author labels").all()
    heatmap = wu_run["workdir"] / "results/plots/CID4465/cnv_heatmap.png"
    assert heatmap.stat().st_size > 20_000


@pytest.fixture(scope="module")
def labelled_run(small_cohort, tmp_path_factory):
    workdir = tmp_path_factory.mktemp("identity_labelled")
    write_config(
        workdir,
        [small_cohort_row(small_cohort)],
        identity={"agreement": True},
    )
    run_snakemake(
        workdir,
        "results/annotate_cells/small.h5ad",
        "results/annotate_cells/small.agreement.tsv",
        "--cores", "2", "--configfile", "config/config.yaml",
    )  # fmt: skip
    return workdir


def test_author_labels_win_and_the_agreement_table_is_written(labelled_run):
    before = ad.read_h5ad(labelled_run / "results/filter_cells/small.h5ad").obs
    after = ad.read_h5ad(labelled_run / "results/annotate_cells/small.h5ad").obs
    assert after.index.equals(before.index)
    assert (after["cell_type"].astype(str) == before["cell_type"].astype(str)).all()
    assert (after["malignant"] == before["malignant"]).all()
    assert set(after["label_source"]) == {"author"}
    assert (after["identity_confidence"] == 1.0).all()

    agreement = pd.read_csv(labelled_run / "results/annotate_cells/small.agreement.tsv", sep="\t")
    table = agreement.set_index("class")
    assert list(table.index) == ["CD8_T", "malignant"]
    assert (agreement["dataset"] == "small").all()
    assert table["author_labels"].all()
    assert table.loc["CD8_T", "support"] == (before["cell_type"] == "CD8_T").sum()
    assert table.loc["malignant", "support"] == before["malignant"].sum()
    assert (table["n_cells"] == len(before)).all()
    # the simulated CD8 T cells express the planted markers: recovered with labels hidden
    # (measured 2026, seed 7: precision 0.918, recall 1.000, F1 0.957)
    assert table.loc["CD8_T", "f1"] >= 0.9, table.loc["CD8_T"]
    # the simulator plants no copy-number changes: the malignant row is computed (F1 0.968
    # here, 0.71-0.74 on the demo cohorts) but is no measure of accuracy
    # (workflow/report/identity_agreement.rst)
    assert 0 <= table.loc["malignant", "f1"] <= 1
    identity = pd.read_csv(labelled_run / "results/annotate_cells/small.identity.tsv", sep="\t")
    hidden = identity.set_index("cell")["hidden_labels_is_cd8"].astype(bool)
    truth = (before["cell_type"] == "CD8_T").reindex(hidden.index)
    assert scores(hidden, truth)["f1"] == pytest.approx(table.loc["CD8_T", "f1"])
