"""The patient table round-trips into sender and receiver tables."""

import pandas as pd
import pytest

from cd8exo.patients.table import patient_table, split_patient_table
from cd8exo.scoring.gene_sets import select_signatures


def test_patient_table_roundtrip(tmp_path):
    counts = pd.DataFrame(
        {"n_cells": [100, 50, 80], "n_cd8": [20, 3, 15], "n_malignant": [40, 30, 25]},
        index=pd.Index(["p1", "p2", "p3"], name="patient"),
    )
    sender = pd.DataFrame({"Act": [0.5, 0.1, -0.2]}, index=counts.index)
    receiver = pd.DataFrame({"PLP2": [3.0, 4.0, 5.0]}, index=counts.index)
    excluded = pd.DataFrame({"patient": ["p2"], "reason": ["3 CD8_T cells < min_cd8_cells=10"]})
    table = patient_table(counts, sender, receiver, excluded, dataset="d")
    assert table["included"].tolist() == [True, False, True]
    assert table.loc[1, "exclusion_reason"] == "3 CD8_T cells < min_cd8_cells=10"
    path = tmp_path / "t.tsv"
    table.to_csv(path, sep="\t", index=False)
    s, r = split_patient_table(pd.read_csv(path, sep="\t"))
    assert list(s.index) == ["p1", "p3"]
    assert s["Act"].tolist() == [0.5, -0.2]
    assert r["PLP2"].tolist() == [3.0, 5.0]


def test_select_signatures():
    a = {"S1": ["A", "B"], "S2": ["C"]}
    b = {"S3": ["D"]}
    files = {"a.gmt": a, "b.gmt": b}
    assert list(select_signatures(files)) == ["S1", "S2", "S3"]
    assert select_signatures(files, include=["S3", "S1"]) == {"S3": ["D"], "S1": ["A", "B"]}
    with pytest.raises(ValueError, match="not found in the GMT files: S9; available: S1, S2, S3"):
        select_signatures(files, include=["S9"])


def test_select_signatures_names_the_set_both_files_and_signatures_gmt():
    a = {"S1": ["A", "B"], "S2": ["C"]}
    with pytest.raises(ValueError, match="is in both") as error:
        select_signatures({"a.gmt": a, "b.gmt": {"S2": ["D"]}})
    message = str(error.value)
    assert "'S2' is in both a.gmt and b.gmt" in message
    assert "rename the set in one of them, or drop one file from signatures.gmt" in message
    assert "screen.gmt" not in message
