"""Target sets on the receiver side: scored in the malignant cells only, sender genes kept out,
a planted set recovered with its sign (and more associated than matched random sets), a null
set not called; the malignant rows alone are read from the h5ad."""

from __future__ import annotations

import dataclasses
from dataclasses import replace
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import pytest

from cd8exo.cells.store import Cells, malignant_cells, open_cells, write_matrix
from cd8exo.errors import InputError
from cd8exo.patients.table import EXPR_PREFIX
from cd8exo.scoring.receiver import patient_set_scores
from cd8exo.scoring.score import score_signatures
from cd8exo.sim.calibrate.cohorts import aggregated_cohort
from cd8exo.sim.calibrate.settings import CalibrationSettings, load_inputs
from cd8exo.sim.calibrate.target_sets import simulate_set_cohort
from cd8exo.stages.patients import AssociationSettings
from cd8exo.stages.receiver_cells import score_receiver_sets
from cd8exo.stages.receiver_patients import associate_receiver_sets

ROOT = Path(__file__).resolve().parents[3]
PLANTED, NULL_SET = "miR-765__MSIGDB71_MIRDB", "miR-150-5p__MSIGDB71_MIRDB"
SIGNATURES = ["Cytotoxic_cells_Danaher2017", "Exosome_biogenesis_core_curated"]


@pytest.fixture(scope="module")
def analysed():
    full = load_inputs(ROOT / "resources", signatures=SIGNATURES, targets=["PLP2", "ACTB"])
    inputs = replace(full, background_pool=full.background_pool[:3000])
    settings = CalibrationSettings(
        cells_per_patient=100,
        n_background_genes=2500,  # the planted genes, ~5% of all, also become control genes
        min_malignant_cells=10,
        target_sets=(PLANTED, NULL_SET),
        activation_signatures=tuple(SIGNATURES),
        independent_signatures=(),
    )
    cohort = simulate_set_cohort(
        inputs, n_patients=20, set_effect_size=0.8, settings=settings, rng=3, name="sets"
    )
    seeds = {"scoring": 1, "stats": 2, "random_sets": 3}
    kept, scored, table, _ = aggregated_cohort(
        cohort, signatures=inputs.signatures, targets=inputs.targets, settings=settings, seeds=seeds
    )
    malignant = kept[kept.obs["malignant"].to_numpy(dtype=bool)].copy()
    receiver = score_receiver_sets(
        malignant,
        target_sets={k: inputs.target_sets[k] for k in (PLANTED, NULL_SET)},
        sender_signatures=scored.prepared.signatures,
        tables=None,
        min_coverage=0.5,
        n_random_sets=39,
        rng=4,
        scoring=settings.scoring_options(),
    )
    associations = associate_receiver_sets(
        table,
        receiver.scores,
        receiver.random_sets,
        annotation=inputs.set_annotation,
        dataset="sets",
        settings=AssociationSettings(
            covariates=["n_malignant"],
            min_patients=6,
            n_boot=200,
            n_perm=2000,
            ci_level=0.95,
            family="dataset",
            rng=5,
        ),
        coverage=scored.prepared.coverage,
        set_coverage=receiver.prepared.coverage,
    )
    return {
        "cohort": cohort,
        "kept": kept,
        "inputs": inputs,
        "settings": settings,
        "malignant": malignant,
        "scored": scored,
        "receiver": receiver,
        "table": associations.set_index(["signature", "target"]),
    }


def test_planted_set_is_recovered_with_its_sign_and_the_null_set_is_not_called(analysed):
    table = analysed["table"]
    for signature in SIGNATURES:
        planted, null = table.loc[(signature, PLANTED)], table.loc[(signature, NULL_SET)]
        assert planted["rho"] < -0.6
        assert planted["q_value"] < 0.05
        # more associated than every one of 39 matched random sets: p = 1 / 40
        assert planted["set_specificity_p"] == pytest.approx(1 / 40)
        assert planted["set_specificity_n_sets"] == 39
        assert null["q_value"] > 0.05
    assert (table["family"] == "dataset=sets;target sets").all()
    assert (table["family_size"] == 4).all()  # the sets' own family: 2 signatures x 2 sets
    assert (
        table.loc[(SIGNATURES[0], PLANTED), ["mirna", "source"]] == ["miR-765", "MSIGDB71_MIRDB"]
    ).all()
    assert (table["expected_sign"] == -1).all()


def test_sender_genes_are_never_in_a_target_set(analysed):
    receiver, scored = analysed["receiver"], analysed["scored"]
    sender = {g for genes in scored.prepared.signatures.values() for g in genes}
    removed = set(receiver.prepared.overlap["gene"])
    assert removed  # the exosome signature's ESCRT genes are miRNA targets too
    assert removed <= sender
    for genes in receiver.prepared.signatures.values():
        assert not sender & set(genes)
    assert list(receiver.prepared.coverage.columns[:2]) == ["target", "status"]


def test_set_scores_are_the_mean_over_each_patients_malignant_cells(analysed):
    malignant = analysed["malignant"]
    sets = analysed["receiver"].prepared.signatures
    by_patient = patient_set_scores(malignant, sets, rng=0, method="ucell", max_rank=300)
    cells = score_signatures(malignant, sets, rng=0, method="ucell", max_rank=300)
    expected = cells.groupby(malignant.obs["patient"].astype(str).to_numpy()).mean()
    np.testing.assert_allclose(by_patient.to_numpy(), expected.to_numpy())
    assert list(by_patient.index) == sorted(set(malignant.obs["patient"].astype(str)))


def test_skipped_set_gets_na_rows_saying_why(analysed):
    receiver = analysed["receiver"]
    coverage = pd.concat(
        [
            receiver.prepared.coverage,
            pd.DataFrame({"target": ["tiny__X"], "status": ["skipped"], "reason": ["only 1 of 9"]}),
        ]
    )
    table = associate_receiver_sets(
        analysed["cohort"].patients.assign(included=True).iloc[:0],
        receiver.scores.iloc[:, :0],
        None,
        annotation=pd.DataFrame(columns=["target", "mirna", "source", "status"]),
        dataset="sets",
        settings=AssociationSettings(
            covariates=[],
            min_patients=6,
            n_boot=0,
            n_perm=0,
            ci_level=0.95,
            family="dataset",
            rng=0,
        ),
        set_coverage=coverage,
    )
    assert table.empty or set(table["note"]) <= {"target set skipped: only 1 of 9"}
    assert not any(c.startswith(EXPR_PREFIX) for c in table.columns)


def test_sets_scored_from_the_matrix_on_disk_equal_the_in_memory_scores(tmp_path, analysed):
    """The rule reads only the malignant rows of prepare_dataset's matrix (cells.store)."""
    kept = analysed["kept"]
    info = {**kept.uns["cd8exo"], "log_normalised": False}
    info.pop("target_sum", None)
    matrix = ad.AnnData(X=kept.layers["counts"], obs=kept.obs, var=kept.var, uns={"cd8exo": info})
    path = tmp_path / "prepared.h5ad"
    write_matrix(matrix, path)
    cells = malignant_cells(open_cells(path))
    assert isinstance(cells, Cells)
    assert cells.obs_names.equals(analysed["malignant"].obs_names)
    inputs = analysed["inputs"]
    receiver = score_receiver_sets(
        cells,
        target_sets={k: inputs.target_sets[k] for k in (PLANTED, NULL_SET)},
        sender_signatures=analysed["scored"].prepared.signatures,
        tables=None,
        min_coverage=0.5,
        n_random_sets=39,
        rng=4,
        scoring=analysed["settings"].scoring_options(),
    )
    pd.testing.assert_frame_equal(receiver.scores, analysed["receiver"].scores)
    pd.testing.assert_frame_equal(receiver.random_sets, analysed["receiver"].random_sets)
    unlabelled = dataclasses.replace(cells, obs=cells.obs.drop(columns="malignant"))
    with pytest.raises(InputError, match="no 'malignant' column"):
        malignant_cells(unlabelled)
