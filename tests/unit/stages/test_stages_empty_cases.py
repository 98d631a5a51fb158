"""Untestable is a result, not a crash (issue 12): every stage on its empty cases.

A dataset in which too few patients have enough cells, without CD8 T cells, without
malignant cells, without any cell after QC, with a signature that cannot be scored or a
target gene that is not measured goes through every stage; its association rows are NA
with the reason in ``note``.
"""

from __future__ import annotations

import logging
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import pytest
from synthetic_data import make_contract, make_raw

from cd8exo.cells import identity
from cd8exo.cells.embedding import umap_coordinates
from cd8exo.stages import cells as stages
from cd8exo.stages import patients as patient_stages
from cd8exo.stats.association import ASSOCIATION_COLUMNS

ROOT = Path(__file__).resolve().parents[3]
SIGNATURES = {"act": [f"SIG{i}" for i in range(1, 7)], "mixed": ["SIG1", "SIG2", "GENE0001"]}
TARGETS = ["TGT_DOWN", "TGT_FLAT"]
SCORING = {"method": "tirosh", "n_bins": 10, "ctrl_size": 20}
ASSOCIATE = {
    "covariates": ["n_malignant"],
    "min_patients": 6,
    "n_boot": 50,
    "n_perm": 50,
    "ci_level": 0.95,
    "family": "dataset",
    "rng": 1,
    "min_cd8_cells": 10,
    "min_malignant_cells": 20,
}
COLUMNS = [*ASSOCIATION_COLUMNS, "specificity_p", "specificity_n_sets"]


@pytest.fixture(scope="module")
def cohort() -> ad.AnnData:
    """8 patients with 12 CD8 T cells and 25 malignant cells each, log-normalised."""
    kept, _ = stages.filter_cells(
        make_contract(make_raw(seed=3, n_patients=8, n_cd8=12, n_malignant=25), dataset="d"),
        min_genes=20,
        max_mito_fraction=0.5,
    )
    return kept


def _drop(adata: ad.AnnData, mask: np.ndarray) -> ad.AnnData:
    return adata[~mask].copy()


def _associations(adata: ad.AnnData, *, signatures=SIGNATURES, targets=TARGETS, **options):
    """score -> random sets -> aggregate -> associate, as the rules chain them."""
    scored = stages.score(
        adata,
        gene_sets={"senders.gmt": signatures},
        targets=targets,
        tables=None,
        min_coverage=0.5,
        rng=0,
        scoring=SCORING,
    )
    random_sets = stages.score_random_sets(
        adata, scored.prepared.signatures, n_sets=9, rng=0, scoring=SCORING
    )
    patients, _ = stages.aggregate(
        adata, scored.scores, genes=targets, min_cd8_cells=10, min_malignant_cells=20, dataset="d"
    )
    table = patient_stages.associate(
        patients,
        random_sets,
        dataset="d",
        coverage=scored.prepared.coverage,
        settings=patient_stages.AssociationSettings(**{**ASSOCIATE, **options}),
    )
    return table, patients


def _all_na(table: pd.DataFrame) -> bool:
    return bool(table[["rho", "p_value", "q_value", "ci_low", "ci_high"]].isna().all().all())


def test_a_testable_cohort_gives_numbers(cohort):
    table, _ = _associations(cohort)
    assert list(table.columns) == COLUMNS
    assert table["rho"].notna().all()
    assert (table["n_patients"] == 8).all()


def test_too_few_patients_with_enough_cells(cohort, caplog):
    cd8 = (cohort.obs["cell_type"] == "CD8_T").to_numpy()
    few = cohort.obs["patient"].isin([f"P{i}" for i in range(3, 9)]).to_numpy()
    # patients P3-P8 keep 3 CD8 T cells each: 2 of 8 patients stay above min_cd8_cells
    rank = cohort.obs.groupby("patient", observed=True).cumcount().to_numpy()
    adata = _drop(cohort, cd8 & few & (rank >= 3))
    with caplog.at_level(logging.WARNING, logger="cd8exo"):
        table, patients = _associations(adata)
    reason = "2 of 8 patients have >= 10 CD8 T cells and >= 20 malignant cells; 6 needed"
    assert list(table.columns) == COLUMNS
    assert len(table) == 2 * 2
    assert _all_na(table)
    assert (table["note"] == reason).all()
    assert (table["n_patients"] == 2).all()
    assert int(patients["included"].sum()) == 2
    assert f"d: not testable: {reason}" in caplog.text


@pytest.mark.parametrize(
    ("cell_type", "reason"),
    [
        (
            "CD8_T",
            "no CD8 T cells; 0 of 8 patients have >= 10 CD8 T cells and >= 20 malignant "
            "cells; 6 needed",
        ),
        (
            "malignant",
            "no malignant cells; 0 of 8 patients have >= 10 CD8 T cells and >= 20 malignant "
            "cells; 6 needed",
        ),
    ],
)
def test_no_cd8_or_no_malignant_cells(cohort, cell_type, reason):
    adata = _drop(cohort, (cohort.obs["cell_type"] == cell_type).to_numpy())
    table, _ = _associations(adata)
    assert len(table) == 4
    assert _all_na(table)
    assert (table["note"] == reason).all()
    assert (table["n_patients"] == 0).all()


def test_one_patient(cohort):
    table, _ = _associations(_drop(cohort, (cohort.obs["patient"] != "P1").to_numpy()))
    assert _all_na(table)
    assert set(table["note"]) == {
        "1 of 1 patients have >= 10 CD8 T cells and >= 20 malignant cells; 6 needed"
    }


def test_no_cell_passes_qc_every_stage_goes_on(caplog):
    raw = make_contract(make_raw(seed=3, n_patients=8, n_cd8=12, n_malignant=25), dataset="d")
    with caplog.at_level(logging.WARNING, logger="cd8exo"):
        kept, removed = stages.filter_cells(raw, min_genes=10_000, max_mito_fraction=0.5)
        assert kept.n_obs == 0
        references = identity.read_identity_references(
            [ROOT / "resources/markers/cd8_identity_markers.tsv"],
            ROOT / "resources/markers/malignant_lineage_markers.tsv",
            ROOT / "resources/genome/hg38_gencode_v27_gene_pos.txt",
        )
        found = stages.identify(kept, references=references, rng=0)
        coords = umap_coordinates(found.adata, n_top_genes=50, n_pcs=5, rng=0)
        table, patients = _associations(found.adata)
    assert int(removed["n_removed_min_genes"].sum()) == raw.n_obs == 416
    assert "QC removed all 416 cells (qc.min_genes=10000 of the data's 251 genes" in caplog.text
    assert found.adata.n_obs == 0
    assert coords.empty
    assert list(coords.columns) == ["UMAP1", "UMAP2", "patient", "cell_type", "note"]
    assert patients.empty  # no cell, no patient
    assert len(table) == 2 * 2
    assert _all_na(table)
    assert set(table["note"]) == {"no cell passed QC (no patient left); 6 needed"}


def test_skipped_signature_and_absent_target_are_na_with_the_reason(cohort, caplog):
    signatures = {**SIGNATURES, "mouse": ["Cd8a", "Gzmb"]}
    with caplog.at_level(logging.WARNING, logger="cd8exo"):
        table, _ = _associations(cohort, signatures=signatures, targets=[*TARGETS, "PLP2"])
    tested = table[table["signature"] != "mouse"]
    assert len(table) == 3 * 3
    assert table["signature"].tolist()[-3:] == ["mouse"] * 3  # after the tested rows
    assert _all_na(table[table["signature"] == "mouse"])
    assert set(table.loc[table["signature"] == "mouse", "note"]) == {
        "signature skipped: none of its 2 genes is in the data"
    }
    plp2 = tested[tested["target"] == "PLP2"]
    assert _all_na(plp2)
    assert set(plp2["note"]) == {"target gene not in the data"}
    assert tested.loc[tested["target"] != "PLP2", "rho"].notna().all()
    assert "Target gene(s) not in the data, not tested: PLP2" in caplog.text


def test_no_signature_can_be_scored(cohort):
    table, patients = _associations(cohort, signatures={"mouse": ["Cd8a", "Gzmb"]})
    assert not [c for c in patients.columns if c.startswith("score:")]
    assert table[["signature", "target", "note"]].to_dict("records") == [
        {
            "signature": "mouse",
            "target": t,
            "note": "signature skipped: none of its 2 genes is in the data",
        }
        for t in TARGETS
    ]
    assert _all_na(table)


def test_few_genes_no_specificity_null_but_rho(cohort, caplog):
    genes = [*cohort.var_names[:12], "SIG1", "SIG2", "SIG3", "SIG4", *TARGETS]
    adata = cohort[:, genes].copy()
    with caplog.at_level(logging.WARNING, logger="cd8exo"):
        table, _ = _associations(adata, signatures={"act": ["SIG1", "SIG2", "SIG3", "SIG4"]})
    assert "signature act: no random sets drawn: expression bin" in caplog.text
    assert table["rho"].notna().all()
    assert table["specificity_p"].isna().all()
    assert set(table["note"]) == {"no random-set scores for specificity"}


def test_identity_of_too_few_cells_calls_nothing_and_says_why(cohort, caplog):
    references = identity.read_identity_references(
        [ROOT / "resources/markers/cd8_identity_markers.tsv"],
        ROOT / "resources/markers/malignant_lineage_markers.tsv",
        ROOT / "resources/genome/hg38_gencode_v27_gene_pos.txt",
    )
    five = cohort[:5].copy()  # CD8 T cells of P1, with the authors' labels
    found = stages.identify(five, references=references, rng=0)
    agreement = found.result.agreement.set_index("class")["note"]
    assert (
        agreement["CD8_T"] == "not computed: only 5 cells (at least 10 are needed to infer labels)"
    )
    assert found.result.cnv is None
    assert found.result.cnv_note == (
        "No copy-number profiles: only 5 cells (at least 10 are needed to infer labels)."
    )
    unlabelled = cohort[:5].copy()
    unlabelled.obs["cell_type"] = pd.Categorical(["other"] * 5, categories=["other", "CD8_T"])
    unlabelled.obs["malignant"] = False
    with caplog.at_level(logging.WARNING, logger="cd8exo"):
        calls = stages.identify(unlabelled, references=references, rng=0).result.calls
    assert not calls["is_cd8"].any()
    assert not calls["is_malignant"].any()
    assert (
        "Only 5 cells: too few (at least 10) to infer CD8 T cells or malignant cells; no cell "
        "is called CD8 T or malignant"
    ) in caplog.text


def test_umap_of_too_few_cells_or_genes_is_nan_with_the_reason(cohort):
    small = umap_coordinates(cohort[:7].copy(), n_top_genes=50, n_pcs=5, rng=0)
    assert small[["UMAP1", "UMAP2"]].isna().all().all()
    assert set(small["note"]) == {"no UMAP: only 7 cells (at least 10 are needed)"}
    one_gene = umap_coordinates(cohort[:, ["SIG1"]].copy(), n_top_genes=50, n_pcs=5, rng=0)
    assert set(one_gene["note"]) == {"no UMAP: only 1 gene(s) (at least 2 are needed)"}
    assert len(one_gene) == cohort.n_obs
    assert one_gene["patient"].astype(str).tolist() == cohort.obs["patient"].astype(str).tolist()
