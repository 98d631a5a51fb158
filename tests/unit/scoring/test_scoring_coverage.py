"""Gene matching (alias rescue), minimum coverage and the overlap guard of cd8exo.scoring."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from cd8exo.cells.harmonise import log_normalise
from cd8exo.genes import SymbolTables, load_symbol_tables
from cd8exo.scoring.prepare import (
    COVERAGE_COLUMNS,
    OVERLAP_COLUMNS,
    prepare_signatures,
    signature_coverage,
)
from cd8exo.scoring.score import score_signatures

ROOT = Path(__file__).resolve().parents[3]

#: A hand-made HGNC table: SEPT7 and PKM2 are previous symbols, AMBX an alias of two genes.
TABLES = SymbolTables(
    approved=frozenset({"SEPTIN7", "PKM", "CD63", "AMB1", "AMB2", "PLP2", "CXCL9", "GZMB"}),
    alias={"SEPT7": ("SEPTIN7",), "PKM2": ("PKM",), "AMBX": ("AMB1", "AMB2")},
    ensembl={},
)


def _row(coverage: pd.DataFrame, name: str) -> dict:
    return coverage.set_index("signature").loc[name].to_dict()


# --------------------------------------------------------------------------- #
# Matching and rescue
# --------------------------------------------------------------------------- #
def test_aliases_are_rescued_by_name_and_ambiguous_ones_are_missing():
    var_names = ["SEPTIN7", "PKM", "CD63", "AMB1", "AMB2"]
    coverage = signature_coverage(
        var_names, {"s": ["SEPT7", "CD63", "PKM2", "NOPE", "AMBX"]}, tables=TABLES
    )
    assert list(coverage.columns) == list(COVERAGE_COLUMNS)
    row = _row(coverage, "s")
    assert row["genes_found"] == "CD63"
    assert row["genes_rescued"] == "SEPT7->SEPTIN7,PKM2->PKM"
    # AMBX could be AMB1 or AMB2: never guessed
    assert row["genes_missing"] == "NOPE,AMBX"
    assert (row["n_genes"], row["n_found"], row["n_rescued"], row["n_missing"]) == (5, 1, 2, 2)
    assert row["coverage"] == pytest.approx(3 / 5)
    assert row["genes_scored"] == "SEPTIN7,CD63,PKM"


def test_without_tables_matching_is_exact():
    coverage = signature_coverage(["SEPTIN7", "CD63"], {"s": ["SEPT7", "CD63"]})
    row = _row(coverage, "s")
    assert (row["n_found"], row["n_rescued"], row["genes_missing"]) == (1, 0, "SEPT7")


def test_data_still_using_an_old_symbol_is_rescued_the_other_way():
    coverage = signature_coverage(["SEPT7", "CD63"], {"s": ["SEPTIN7", "CD63"]}, tables=TABLES)
    row = _row(coverage, "s")
    assert row["genes_rescued"] == "SEPTIN7->SEPT7"
    assert row["genes_scored"] == "SEPT7,CD63"


def test_a_gene_listed_under_two_names_is_scored_once():
    coverage = signature_coverage(["PKM", "CD63"], {"s": ["PKM", "PKM2", "CD63"]}, tables=TABLES)
    row = _row(coverage, "s")
    assert (row["n_found"], row["n_rescued"], row["n_scored"]) == (2, 1, 2)
    assert row["genes_scored"] == "PKM,CD63"


def test_real_hgnc_table_rescues_legacy_symbols_of_the_bundled_sets():
    # FAM46C, GNB2L1 and TMEM66 are legacy symbols in the Chu/Zheng lists (NOTES.md);
    # 44448 is an Excel-mangled token in Chu2023_CD8_c13_Tn_TCF7: reported, never matched.
    tables = load_symbol_tables(
        ROOT / "resources/genome/hgnc_alias_table.tsv.gz",
        ROOT / "resources/genome/gencode_v48_genes_homo_sapiens.csv.gz",
    )
    coverage = signature_coverage(
        ["TENT5C", "RACK1", "SARAF", "CD8A"],
        {"s": ["FAM46C", "GNB2L1", "TMEM66", "44448", "CD8A"]},
        tables=tables,
    )
    row = _row(coverage, "s")
    assert row["genes_rescued"] == "FAM46C->TENT5C,GNB2L1->RACK1,TMEM66->SARAF"
    assert row["genes_missing"] == "44448"
    assert row["genes_found"] == "CD8A"


# --------------------------------------------------------------------------- #
# Minimum coverage and signatures without genes
# --------------------------------------------------------------------------- #
def test_signature_below_min_coverage_is_skipped_with_reason(caplog):
    var_names = ["A", "B", "C", "D"]
    signatures = {"good": ["A", "B", "C"], "poor": ["A", "X1", "X2", "X3"]}
    with caplog.at_level(logging.WARNING, logger="cd8exo.scoring"):
        prepared = prepare_signatures(signatures, var_names, min_coverage=0.5)
    assert prepared.signatures == {"good": ["A", "B", "C"]}
    poor = _row(prepared.coverage, "poor")
    assert poor["status"] == "skipped"
    assert poor["reason"] == (
        "only 1 of 4 genes scored (25%): 3 missing, 0 removed by the overlap guard; "
        "below signatures.min_coverage=0.5"
    )
    assert "Signature 'poor' skipped: only 1 of 4 genes scored" in caplog.text
    assert _row(prepared.coverage, "good")["status"] == "scored"
    # exactly at the threshold is kept
    at = prepare_signatures({"half": ["A", "B", "X1", "X2"]}, var_names, min_coverage=0.5)
    assert at.signatures == {"half": ["A", "B"]}


def test_signature_without_genes_is_skipped_when_others_remain():
    prepared = prepare_signatures({"ok": ["A"], "mouse": ["Cd8a", "Gzmb"]}, ["A", "B"])
    row = _row(prepared.coverage, "mouse")
    assert row["status"] == "skipped"
    assert row["reason"] == "none of its 2 genes is in the data"
    assert list(prepared.signatures) == ["ok"]


def test_no_scorable_signature_is_a_warning_and_an_empty_result(caplog):
    """Untestable is a result (issue 12): nothing to score is not an error, it is said why."""
    with caplog.at_level(logging.WARNING, logger="cd8exo"):
        prepared = prepare_signatures({"mouse": ["Cd8a", "Gzmb"]}, ["A", "B"])
    assert prepared.signatures == {}
    row = _row(prepared.coverage, "mouse")
    assert (row["status"], row["reason"]) == ("skipped", "none of its 2 genes is in the data")
    assert "No signature can be scored in this dataset (2 genes)" in caplog.text
    assert "'mouse': none of its 2 genes is in the data" in caplog.text
    assert "human HGNC" in caplog.text


def test_every_skipped_signature_is_named_in_the_warning(caplog):
    with caplog.at_level(logging.WARNING, logger="cd8exo"):
        prepared = prepare_signatures({"s1": ["X"], "s2": ["A", "Y", "Z"]}, ["A"], min_coverage=0.9)
    assert prepared.signatures == {}
    assert "'s1': none of its 1 genes is in the data; 's2': only 1 of 3" in caplog.text


def test_nothing_to_score_gives_cells_without_score_columns(contract_adata):
    adata = log_normalise(contract_adata)
    scores = score_signatures(adata, {}, rng=0)
    assert scores.shape == (adata.n_obs, 0)
    assert scores.index.equals(adata.obs_names)
    none_left = score_signatures(adata[:0], {"s": ["SIG1", "SIG2"]}, rng=0)
    assert none_left.shape == (0, 1)
    assert none_left.columns.tolist() == ["s"]


@pytest.mark.parametrize("bad", [-0.1, 1.5])
def test_min_coverage_must_be_a_fraction(bad):
    with pytest.raises(ValueError, match="min_coverage must be between 0 and 1"):
        prepare_signatures({"s": ["A"]}, ["A"], min_coverage=bad)


# --------------------------------------------------------------------------- #
# Overlap guard
# --------------------------------------------------------------------------- #
def test_receiver_genes_are_removed_from_sender_signatures():
    var_names = ["GZMB", "CD63", "PLP2", "SEPTIN7", "CXCL9", "B"]
    signatures = {"sender": ["GZMB", "CD63", "PLP2", "SEPTIN7", "B"], "clean": ["GZMB", "B"]}
    # the target table names SEPTIN7 by its previous symbol: still the same gene
    exclude = {"target": ["PLP2", "CXCL9", "SEPT7"], "HALLMARK_X": ["CD63", "PLP2"]}
    prepared = prepare_signatures(
        signatures, var_names, tables=TABLES, exclude=exclude, min_coverage=0.0
    )
    assert prepared.signatures == {"sender": ["GZMB", "B"], "clean": ["GZMB", "B"]}
    assert list(prepared.overlap.columns) == list(OVERLAP_COLUMNS)
    assert prepared.overlap.to_dict("records") == [
        {
            "signature": "sender",
            "gene": "CD63",
            "overlaps_with": "HALLMARK_X",
            "action": "removed from signature",
        },
        {
            "signature": "sender",
            "gene": "PLP2",
            "overlaps_with": "target,HALLMARK_X",
            "action": "removed from signature",
        },
        {
            "signature": "sender",
            "gene": "SEPTIN7",
            "overlaps_with": "target",
            "action": "removed from signature",
        },
    ]
    row = _row(prepared.coverage, "sender")
    assert (row["n_found"], row["n_overlap"], row["n_scored"]) == (5, 3, 2)
    assert row["genes_overlap"] == "CD63,PLP2,SEPTIN7"
    assert _row(prepared.coverage, "clean")["n_overlap"] == 0


def test_overlap_counts_against_min_coverage():
    prepared = prepare_signatures(
        {"s": ["A", "B", "C", "T"], "t_only": ["T"], "other": ["A"]},
        ["A", "B", "C", "T"],
        exclude={"target": ["T", "C"]},
        min_coverage=0.6,
    )
    row = _row(prepared.coverage, "s")
    assert row["status"] == "skipped"
    assert (
        "only 2 of 4 genes scored (50%): 0 missing, 2 removed by the overlap guard"
        in (row["reason"])
    )
    assert _row(prepared.coverage, "t_only")["reason"] == (
        "all 1 matched genes are receiver-side genes (overlap guard)"
    )
    assert prepared.signatures == {"other": ["A"]}


def test_no_overlap_gives_an_empty_table_with_columns():
    prepared = prepare_signatures({"s": ["A"]}, ["A", "T"], exclude={"target": ["T"]})
    assert prepared.overlap.empty
    assert list(prepared.overlap.columns) == list(OVERLAP_COLUMNS)


def test_scores_of_a_guarded_signature_are_those_of_the_genes_left(contract_adata):
    adata = log_normalise(contract_adata)
    genes = ["SIG1", "SIG2", "SIG3", "TGT_DOWN"]
    prepared = prepare_signatures(
        {"planted": genes}, adata.var_names, exclude={"target": ["TGT_DOWN", "TGT_FLAT"]}
    )
    guarded = score_signatures(adata, prepared.signatures, rng=0)
    manual = score_signatures(adata, {"planted": ["SIG1", "SIG2", "SIG3"]}, rng=0)
    pd.testing.assert_frame_equal(guarded, manual)
    unguarded = score_signatures(adata, {"planted": genes}, rng=0)
    assert not np.allclose(unguarded.to_numpy(), manual.to_numpy())


def test_the_overlap_guard_names_the_sets_it_removed_genes_for(caplog):
    """The same message for a sender signature (its genes in targets or programmes) and a
    receiver target set (its genes in sender signatures): which sets, which genes."""
    with caplog.at_level(logging.WARNING, logger="cd8exo.scoring.prepare"):
        prepared = prepare_signatures(
            {"miR-765_set": ["A", "B", "C", "D"]},
            ["A", "B", "C", "D", "E"],
            exclude={"Teff": ["B", "Z"], "Cytotoxic": ["C", "B"]},
            min_coverage=0.4,
        )
    assert prepared.signatures == {"miR-765_set": ["A", "D"]}
    assert (
        "Signature 'miR-765_set': 2 gene(s) removed by the overlap guard "
        "(also in Teff, Cytotoxic): B, C"
    ) in caplog.text
    assert "receiver side" not in caplog.text
