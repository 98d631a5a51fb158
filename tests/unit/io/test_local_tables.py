"""Tests of cd8exo.io: GMT/target readers, dataset readers and atomic writers."""

from __future__ import annotations

import gzip
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.io
import scipy.sparse as sp
from shared_data import SHARED_REFERENCE

from cd8exo.io import local, tables

WU2021 = SHARED_REFERENCE / "data" / "wu2021_CID4465"


# --------------------------------------------------------------------------- #
# GMT and targets
# --------------------------------------------------------------------------- #
def test_read_gmt_skips_comments_blank_lines_and_empty_fields(tmp_path):
    gmt = tmp_path / "sets.gmt"
    gmt.write_text(
        "# a comment\nSET_A\tsome description\tCD8A\tGZMB\tPRF1\t\n\nSET_B\t\tIFNG\tIFNG\tTBX21\n"
    )
    assert tables.read_gmt(gmt) == {"SET_A": ["CD8A", "GZMB", "PRF1"], "SET_B": ["IFNG", "TBX21"]}


def test_read_gmt_duplicate_name_names_file_and_lines(tmp_path):
    gmt = tmp_path / "dup.gmt"
    gmt.write_text("SET_A\td\tCD8A\n# x\nSET_A\td\tGZMB\n")
    with pytest.raises(
        ValueError, match=r"dup\.gmt, line 3: gene set 'SET_A' is defined twice \(first on line 1\)"
    ):
        tables.read_gmt(gmt)


def test_read_gmt_set_without_genes_names_file_and_line(tmp_path):
    gmt = tmp_path / "empty.gmt"
    gmt.write_text("SET_A\td\tCD8A\nSET_B\tdescription only\t\t\n")
    with pytest.raises(ValueError, match=r"empty\.gmt, line 2: gene set 'SET_B' has no genes"):
        tables.read_gmt(gmt)


def test_read_gmt_reads_the_reference_signatures():
    path = SHARED_REFERENCE / "gene_sets" / "cd8_tcell_signatures.gmt"
    if not path.exists():
        pytest.skip("reference gene sets not available")
    sets = tables.read_gmt(path)
    assert sets["CYT_Rooney2015"] == ["GZMA", "PRF1"]


def test_read_targets_keeps_columns_and_strips(tmp_path):
    path = tmp_path / "targets.tsv"
    path.write_text("gene\tcompartment\n PLP2 \ttumour\nCD274\ttumour\n")
    table = tables.read_targets(path)
    assert table["gene"].tolist() == ["PLP2", "CD274"]
    assert table["compartment"].tolist() == ["tumour", "tumour"]


def test_read_targets_without_gene_column_lists_columns(tmp_path):
    path = tmp_path / "targets.tsv"
    path.write_text("symbol\tcompartment\nPLP2\ttumour\n")
    with pytest.raises(
        ValueError,
        match=r"lacks the column\(s\) \['gene'\]; its columns are \['symbol', 'compartment'\]",
    ):
        tables.read_targets(path)


def test_read_targets_duplicate_gene(tmp_path):
    path = tmp_path / "targets.tsv"
    path.write_text("gene\nPLP2\nPLP2\n")
    with pytest.raises(ValueError, match=r"\['PLP2'\] are listed more than once"):
        tables.read_targets(path)


# --------------------------------------------------------------------------- #
# 10x folders
# --------------------------------------------------------------------------- #
def _write_10x(
    folder: Path,
    genes_by_cells: np.ndarray,
    *,
    features: list[list[str]] | None = None,
    barcodes: list[str] | None = None,
    gz: bool = True,
) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    suffix = ".gz" if gz else ""
    opener = gzip.open if gz else open
    with opener(folder / f"matrix.mtx{suffix}", "wb") as handle:
        scipy.io.mmwrite(handle, sp.coo_matrix(genes_by_cells))
    n_genes = genes_by_cells.shape[0]
    if features is None:
        features = [[f"ENSG{i:03d}", f"G{i}", "Gene Expression"] for i in range(n_genes)]
    name = "features.tsv" if features and len(features[0]) >= 2 else "genes.tsv"
    with opener(folder / f"{name}{suffix}", "wt") as handle:
        handle.write("".join("\t".join(row) + "\n" for row in features))
    if barcodes is not None:
        with opener(folder / f"barcodes.tsv{suffix}", "wt") as handle:
            handle.write("".join(b + "\n" for b in barcodes))


@pytest.fixture
def small_matrix() -> np.ndarray:
    """4 genes x 3 cells, entry (g, c) = 10 * g + c + 1 except a few zeros."""
    m = np.array([[10 * g + c + 1 for c in range(3)] for g in range(4)], dtype=np.int64)
    m[1, 2] = 0
    m[3, 0] = 0
    return m


def test_read_10x_with_barcodes_transposes_and_joins_cell_table(tmp_path, small_matrix):
    folder = tmp_path / "tenx"
    _write_10x(folder, small_matrix, barcodes=["AAA-1", "CCC-1", "GGG-1"])
    table = tmp_path / "cells.csv"
    # Different order and an extra cell: matched by id, not position.
    table.write_text("label,barcode,donor\nB,GGG-1,p2\nT,AAA-1,p1\nM,CCC-1,p1\nX,TTT-1,p9\n")
    adata = local.read_dataset(
        path=folder, data_format="10x_mtx", cell_table=table, cell_id_column="barcode"
    )
    assert adata.shape == (3, 4)
    assert adata.obs_names.tolist() == ["AAA-1", "CCC-1", "GGG-1"]
    assert adata.var_names.tolist() == ["G0", "G1", "G2", "G3"]
    assert adata.var["gene_id"].tolist() == ["ENSG000", "ENSG001", "ENSG002", "ENSG003"]
    assert adata.obs["label"].tolist() == ["T", "M", "B"]
    assert adata.obs["donor"].tolist() == ["p1", "p1", "p2"]
    assert sp.issparse(adata.X)
    assert adata.X.dtype == np.float32
    np.testing.assert_array_equal(adata.X.toarray(), small_matrix.T)


def test_read_10x_single_column_genes_and_cell_table_in_order(tmp_path, small_matrix):
    folder = tmp_path / "tenx"
    _write_10x(folder, small_matrix, features=[["A"], ["B"], ["C"], ["D"]], gz=False)
    table = tmp_path / "obs.tsv"
    table.write_text("cell\tpatient\nc1\tp1\nc2\tp1\nc3\tp2\n")
    adata = local.read_dataset(path=folder, data_format="10x_mtx", cell_table=table)
    assert adata.var_names.tolist() == ["A", "B", "C", "D"]
    assert adata.obs_names.tolist() == ["c1", "c2", "c3"]
    assert adata.obs["patient"].tolist() == ["p1", "p1", "p2"]
    assert float(adata.X[2, 1]) == small_matrix[1, 2]


def test_read_10x_features_count_mismatch_says_which_files_and_counts(tmp_path, small_matrix):
    folder = tmp_path / "tenx"
    _write_10x(
        folder,
        small_matrix,
        features=[["ID1", "A"], ["ID2", "B"], ["ID3", "C"]],
        barcodes=["a", "b", "c"],
    )
    with pytest.raises(
        ValueError,
        match=r"features\.tsv\.gz lists 3 genes but .*matrix\.mtx\.gz has 4 rows \(genes\) and 3 columns",
    ):
        local.read_dataset(path=folder, data_format="10x_mtx")


def test_read_10x_features_with_header_line_gets_a_hint(tmp_path, small_matrix):
    folder = tmp_path / "tenx"
    features = [["gene_id", "symbol"]] + [[f"ID{i}", f"G{i}"] for i in range(4)]
    _write_10x(folder, small_matrix, features=features, barcodes=["a", "b", "c"])
    with pytest.raises(ValueError, match="remove its header line"):
        local.read_dataset(path=folder, data_format="10x_mtx")


def test_read_10x_barcodes_count_mismatch(tmp_path, small_matrix):
    folder = tmp_path / "tenx"
    _write_10x(folder, small_matrix, barcodes=["a", "b"])
    with pytest.raises(
        ValueError, match=r"barcodes\.tsv\.gz lists 2 barcodes but .* has 3 columns \(cells\)"
    ):
        local.read_dataset(path=folder, data_format="10x_mtx")


def test_read_10x_cell_table_row_count_mismatch_without_barcodes(tmp_path, small_matrix):
    folder = tmp_path / "tenx"
    _write_10x(folder, small_matrix)
    table = tmp_path / "obs.tsv"
    table.write_text("cell\tpatient\nc1\tp1\nc2\tp1\n")
    with pytest.raises(
        ValueError, match=r"has 2 rows but .* has 3 columns \(cells\); without barcodes\.tsv"
    ):
        local.read_dataset(path=folder, data_format="10x_mtx", cell_table=table)


def test_read_10x_without_barcodes_or_table(tmp_path, small_matrix):
    folder = tmp_path / "tenx"
    _write_10x(folder, small_matrix)
    with pytest.raises(ValueError, match=r"has no barcodes\.tsv\[\.gz\]; give a cell table"):
        local.read_dataset(path=folder, data_format="10x_mtx")


def test_read_10x_missing_matrix_lists_folder(tmp_path):
    folder = tmp_path / "tenx"
    folder.mkdir()
    (folder / "genes.tsv").write_text("A\n")
    with pytest.raises(
        ValueError,
        match=r"has no count matrix \(matrix\.mtx or matrix\.mtx\.gz\); the folder holds \['genes\.tsv'\]",
    ):
        local.read_dataset(path=folder, data_format="10x_mtx")


def test_read_10x_cells_missing_from_cell_table(tmp_path, small_matrix):
    folder = tmp_path / "tenx"
    _write_10x(folder, small_matrix, barcodes=["a", "b", "c"])
    table = tmp_path / "cells.tsv"
    table.write_text("barcode\tpatient\na\tp1\nb\tp1\n")
    with pytest.raises(
        ValueError, match=r"1 of 3 cells of .* are missing from the cell table .* \(e\.g\. c\)"
    ):
        local.read_dataset(path=folder, data_format="10x_mtx", cell_table=table)


def test_unknown_format(tmp_path):
    with pytest.raises(ValueError, match="Unknown data_format 'loom'"):
        local.read_dataset(path=tmp_path, data_format="loom")


@pytest.mark.skipif(not WU2021.exists(), reason="reference fixture not available")
def test_read_10x_real_wu2021_fixture():
    adata = local.read_dataset(path=WU2021, data_format="10x_mtx", cell_table=WU2021 / "obs.tsv")
    assert adata.shape == (1564, 29733)
    assert int((adata.obs["celltype_minor"] == "T cells CD8+").sum()) == 35
    assert adata.obs_names[0] == "CID4465_AAACGGGTCATCGATG"
    # The authors' per-cell UMI totals match the matrix columns: rows are cells.
    np.testing.assert_array_equal(
        np.asarray(adata.X.sum(axis=1)).ravel(), adata.obs["nCount_RNA"].to_numpy()
    )


# --------------------------------------------------------------------------- #
# h5ad
# --------------------------------------------------------------------------- #
def test_read_h5ad_with_cell_table_overrides_columns(tmp_path):
    adata = ad.AnnData(
        X=np.arange(6, dtype=np.float32).reshape(3, 2),
        obs=pd.DataFrame({"label": ["x", "y", "z"]}, index=["c1", "c2", "c3"]),
        var=pd.DataFrame(index=["A", "B"]),
    )
    path = tmp_path / "d.h5ad"
    adata.write_h5ad(path)
    table = tmp_path / "cells.tsv"
    table.write_text("id\tlabel\tpatient\nc3\tT\t07\nc1\tB\t01\nc2\tM\t01\n")
    result = local.read_dataset(
        path=path, data_format="h5ad", cell_table=table, cell_id_column="id"
    )
    assert result.obs["label"].tolist() == ["B", "M", "T"]
    assert result.obs["patient"].astype(str).tolist() == ["01", "01", "07"]
    assert sp.issparse(result.X)
    np.testing.assert_array_equal(result.X.toarray(), adata.X)


def test_read_h5ad_missing_file(tmp_path):
    with pytest.raises(ValueError, match=r"The h5ad file .*nope\.h5ad does not exist"):
        local.read_dataset(path=tmp_path / "nope.h5ad", data_format="h5ad")


# --------------------------------------------------------------------------- #
# Writers
# --------------------------------------------------------------------------- #
def test_write_h5ad_round_trip_and_no_temporary_left(tmp_path, contract_adata):
    path = tmp_path / "out" / "d.h5ad"
    local.write_h5ad(contract_adata, path)
    back = ad.read_h5ad(path)
    np.testing.assert_array_equal(back.X.toarray(), contract_adata.X.toarray())
    assert back.uns["cd8exo"]["dataset"] == "synthetic"
    assert sorted(p.name for p in path.parent.iterdir()) == ["d.h5ad"]


def test_write_table_keeps_meaningful_index(tmp_path):
    df = pd.DataFrame({"a": [1.5, 2.5]}, index=pd.Index(["P1", "P2"], name="patient"))
    path = tmp_path / "t.tsv"
    tables.write_table(df, path)
    assert path.read_text() == "patient\ta\nP1\t1.5\nP2\t2.5\n"
    tables.write_table(df.reset_index(), path)
    assert path.read_text() == "patient\ta\nP1\t1.5\nP2\t2.5\n"
    pd.testing.assert_frame_equal(tables.read_table(path, index_col=0), df)


def test_failed_write_leaves_existing_file_untouched(tmp_path):
    path = tmp_path / "t.tsv"
    path.write_text("old\n")

    class Boom:
        def to_csv(self, *args, **kwargs):
            msg = "disk full"
            raise RuntimeError(msg)

        index = pd.RangeIndex(1)
        suffix = ".tsv"

    with pytest.raises(RuntimeError, match="disk full"):
        tables.write_table(Boom(), path)
    assert path.read_text() == "old\n"
    assert [p.name for p in tmp_path.iterdir()] == ["t.tsv"]


def test_gzip_tables_are_byte_identical_across_runs(tmp_path):
    """Regression: gzip headers stored the time and temp file name, so reruns differed."""
    import time

    table = pd.DataFrame({"patient": ["p1", "p2"], "rho": [0.5, -0.25]})
    tables.write_table(table, tmp_path / "a.tsv.gz")
    time.sleep(1.1)
    tables.write_table(table, tmp_path / "b.tsv.gz")
    assert (tmp_path / "a.tsv.gz").read_bytes() == (tmp_path / "b.tsv.gz").read_bytes()
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "b.tsv.gz", sep="\t"), table)


def test_text_matrix_is_read_in_chunks_and_a_late_ragged_row_is_named(tmp_path, monkeypatch):
    """A text matrix read a few rows at a time gives the matrix a single read gives, and a
    ragged row in a later chunk is reported with its own line number."""
    from cd8exo.errors import InputError
    from cd8exo.io import formats

    rng = np.random.default_rng(3)
    values = rng.poisson(1.0, size=(40, 6))  # genes x cells
    cells = [f"c{i}" for i in range(6)]
    lines = ["\t".join(["gene", *cells])]
    lines += ["\t".join([f"G{g}", *map(str, values[g])]) for g in range(40)]
    (tmp_path / "m.tsv.gz").write_bytes(gzip.compress(("\n".join(lines) + "\n").encode()))
    (tmp_path / "cells.tsv").write_text("cell\tpatient\n" + "".join(f"{c}\tp\n" for c in cells))
    whole = local.read_dataset(
        path=tmp_path / "m.tsv.gz", data_format="text_matrix", cell_table=tmp_path / "cells.tsv"
    )
    monkeypatch.setattr(formats, "_TEXT_CHUNK_VALUES", 21)  # 3 rows of 7 columns at a time
    chunked = local.read_dataset(
        path=tmp_path / "m.tsv.gz", data_format="text_matrix", cell_table=tmp_path / "cells.tsv"
    )
    np.testing.assert_array_equal(chunked.X.toarray(), values.T)
    np.testing.assert_array_equal(whole.X.toarray(), values.T)
    assert list(chunked.var_names) == [f"G{g}" for g in range(40)]

    lines[31] = lines[31] + "\t9"
    (tmp_path / "m.tsv.gz").write_bytes(gzip.compress(("\n".join(lines) + "\n").encode()))
    with pytest.raises(
        InputError, match=r"line 32 \(gene 'G30'\) has 7 values but the header names 6 cells"
    ):
        local.read_dataset(
            path=tmp_path / "m.tsv.gz", data_format="text_matrix", cell_table=tmp_path / "cells.tsv"
        )
