"""Gene-name cleaning against the shipped HGNC alias and GENCODE tables."""

from __future__ import annotations

from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from cd8exo.genes import best_rows, clean_var_names, load_symbol_tables, map_symbols, select_rows

REPO = Path(__file__).resolve().parents[2]
GENOME = REPO / "resources" / "genome"


@pytest.fixture(scope="module")
def tables():
    return load_symbol_tables(
        GENOME / "hgnc_alias_table.tsv.gz", GENOME / "gencode_v48_genes_homo_sapiens.csv.gz"
    )


def _map(names, tables):
    frame = map_symbols(names, tables=tables)
    return dict(
        zip(frame["original"], zip(frame["symbol"], frame["status"], strict=True), strict=True)
    )


def test_each_kind_of_name_is_resolved_and_labelled(tables):
    result = _map(
        [
            "TP53",  # approved
            "SEPT7",  # previous symbol
            "KIAA0101",  # previous symbol
            "TNFSF2",  # alias
            "1-Sep",  # Excel date, one meaning
            "ENSG00000141510.17",  # Ensembl id with version
            "ENSG00000308361",  # Ensembl id without a gene name
            "RP11-34P13.7",  # clone name, in no table
            "c1orf112",  # lower-cased: orf kept lower-case by HGNC
        ],
        tables,
    )
    assert result == {
        "TP53": ("TP53", "approved"),
        "SEPT7": ("SEPTIN7", "alias"),
        "KIAA0101": ("PCLAF", "alias"),
        "TNFSF2": ("TNF", "alias"),
        "1-Sep": ("SEPTIN1", "excel"),
        "ENSG00000141510.17": ("TP53", "ensembl"),
        "ENSG00000308361": ("ENSG00000308361", "ensembl_unnamed"),
        "RP11-34P13.7": ("RP11-34P13.7", "unmapped"),
        "c1orf112": ("C1orf112", "alias"),
    }


def test_ambiguous_excel_date_is_unresolved_unless_one_candidate_is_absent(tables):
    # 1-Mar is MARCHF1 or MTARC1 (GSE72056 has two such rows)
    alone = _map(["1-Mar", "GAPDH"], tables)
    assert alone["1-Mar"] == ("1-Mar", "excel_unresolved")
    # if MARCHF1 is measured under its own name, 1-Mar can only be MTARC1
    with_marchf1 = _map(["1-Mar", "MARCHF1"], tables)
    assert with_marchf1["1-Mar"] == ("MTARC1", "excel")


def test_approved_symbol_is_never_remapped(tables):
    # DELEC1 and BHLHE40 are both targets of the alias 1-DEC, but an approved name stays
    assert _map(["BHLHE40"], tables)["BHLHE40"] == ("BHLHE40", "approved")


def test_best_rows_prefers_the_least_repaired_name():
    keep = best_rows(
        ["A", "A", "B", "B", "C"], status=["alias", "approved", "alias", "alias", "excel"]
    )
    assert keep.tolist() == [False, True, True, True, True]


def test_select_rows_drops_unresolved_excel_and_beaten_aliases(tables):
    mapping = map_symbols(["1-Mar", "1-Mar", "SEPT7", "SEPTIN7", "RP11-34P13.7"], tables=tables)
    assert select_rows(mapping).tolist() == [False, False, False, True, True]
    assert select_rows(mapping, drop_unmapped=True).tolist() == [False, False, False, True, False]


def test_clean_var_names_merges_remaining_duplicates_by_the_harmonise_rule(tables):
    # two Ensembl ids named the same (ties): counts are summed, log values keep the top mean
    names = ["ENSG00000141510", "TP53", "SEPT7", "1-Mar", "GAPDH", "GAPDH"]
    x = np.array([[1, 2, 3, 4, 5, 1], [0, 1, 1, 1, 7, 0]], dtype=np.float32)
    with pytest.warns(UserWarning, match="not unique"):
        adata = ad.AnnData(X=sp.csr_matrix(x), var=pd.DataFrame(index=names))
    counts = clean_var_names(adata, tables=tables, value_scale="counts")
    assert list(counts.var_names) == ["TP53", "SEPTIN7", "GAPDH"]
    dense = counts.X.toarray()
    np.testing.assert_array_equal(dense[:, 0], [3, 1])  # ENSG row + TP53 row summed
    np.testing.assert_array_equal(dense[:, 2], [6, 7])
    assert counts.var.loc["SEPTIN7", "original_name"] == "SEPT7"
    assert counts.var.loc["SEPTIN7", "symbol_status"] == "alias"
    logged = clean_var_names(adata, tables=tables, value_scale="log1p_norm")
    np.testing.assert_array_equal(logged.X.toarray()[:, 0], [2, 1])  # the higher-mean TP53 row
    np.testing.assert_array_equal(logged.X.toarray()[:, 2], [5, 7])
    assert adata.var_names.tolist() == names  # input untouched


def test_missing_table_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="HGNC alias table not found"):
        load_symbol_tables(
            tmp_path / "none.tsv.gz", GENOME / "gencode_v48_genes_homo_sapiens.csv.gz"
        )
