"""Patient ids stay verbatim text from the harmonised data to the association table (issue 12).

Leading zeros, surrounding spaces, non-ASCII, ``/`` and ``..``, ``NA`` and number-like ids
survive scoring, aggregation, the tables passed between rules (written and read back) and
the association; they never become part of a file path (only signatures and targets do).
"""

from __future__ import annotations

import pandas as pd
from synthetic_data import make_contract, make_raw

from cd8exo.io.tables import read_patient_table, read_scores, read_table, write_table
from cd8exo.patients.table import split_patient_table
from cd8exo.stages import cells as stages
from cd8exo.stages import patients as patient_stages
from cd8exo.stats.specificity import null_score_tables

IDS = ["007", " 7 ", "7", "Zoë", "患者1", "a/b", "..", "NA", "1e3", "TRUE"]
SCORING = {"method": "tirosh", "n_bins": 10, "ctrl_size": 20}


def test_patient_ids_survive_every_table_between_the_rules(tmp_path):
    adata = make_contract(make_raw(seed=5, n_patients=len(IDS), n_cd8=12, n_malignant=25))
    original = [f"P{i + 1}" for i in range(len(IDS))]
    adata.obs["patient"] = adata.obs["patient"].cat.rename_categories(
        dict(zip(original, IDS, strict=True))
    )
    adata, _ = stages.filter_cells(adata, min_genes=20, max_mito_fraction=0.5)
    scored = stages.score(
        adata,
        gene_sets={"g": {"act": [f"SIG{i}" for i in range(1, 7)]}},
        targets=["TGT_DOWN", "TGT_FLAT"],
        tables=None,
        min_coverage=0.5,
        rng=0,
        scoring=SCORING,
    )
    random_sets = stages.score_random_sets(
        adata, scored.prepared.signatures, n_sets=5, rng=0, scoring=SCORING
    )
    patients, excluded = stages.aggregate(
        adata,
        scored.scores,
        genes=["TGT_DOWN", "TGT_FLAT"],
        min_cd8_cells=10,
        min_malignant_cells=20,
        dataset="d",
    )
    # the files the rules pass on, read back with the readers the rules use
    write_table(scored.scores.reset_index(), tmp_path / "scores.tsv.gz")
    write_table(random_sets, tmp_path / "random.tsv.gz")
    write_table(patients, tmp_path / "patients.tsv")
    scores = read_scores(tmp_path / "scores.tsv.gz")
    random_back = read_table(tmp_path / "random.tsv.gz")
    patients_back = read_patient_table(tmp_path / "patients.tsv")

    assert sorted(patients_back["patient"]) == sorted(IDS)
    assert patients_back["patient"].tolist() == patients["patient"].tolist()
    assert set(scores["patient"]) == set(IDS)
    assert set(random_back["patient"]) == set(IDS)
    assert excluded.empty
    sender, _ = split_patient_table(patients_back)
    assert sorted(sender.index) == sorted(IDS)
    assert sorted(null_score_tables(random_back)["act"].index) == sorted(IDS)
    table = patient_stages.associate(
        patients_back,
        random_back,
        dataset="d",
        settings=patient_stages.AssociationSettings(
            covariates=["n_malignant"],
            min_patients=6,
            n_boot=20,
            n_perm=20,
            ci_level=0.95,
            family="dataset",
            rng=0,
        ),
    )
    assert table["rho"].notna().all()
    assert table["specificity_p"].notna().all()
    assert set(table["loo_patient"]) <= set(IDS)
    # the patient values are the same as before the round trip
    pd.testing.assert_frame_equal(
        patients_back.set_index("patient").filter(like=":"),
        patients.set_index("patient").filter(like=":"),
    )
