"""A Matrix Market count matrix written as CSR a block at a time (cd8exo.io.mtx), and a 10x
folder harmonised through it (cd8exo.cells.large.harmonise_10x) equal to the in-memory path."""

from __future__ import annotations

import functools
import gzip
import io
import shutil

import anndata as ad
import h5py
import numpy as np
import pandas as pd
import pytest
import scipy.io
import scipy.sparse as sp

from cd8exo.cells.large import harmonise_10x
from cd8exo.errors import InputError
from cd8exo.io.mtx import write_mtx_h5ad
from cd8exo.stages import cells as stages

pytestmark = pytest.mark.filterwarnings("ignore:Variable names are not unique")


def _counts(n_genes=40, n_cells=300, seed=0) -> sp.csc_matrix:
    """genes x cells, ~30% detected, a few cells without any count."""
    rng = np.random.default_rng(seed)
    x = rng.poisson(rng.gamma(0.3, 2.0, size=(n_genes, n_cells))).astype(np.int64)
    x[:, [5, 6, 200]] = 0
    return sp.csc_matrix(x)


def _write_text(path, banner, size, lines) -> None:
    text = "\n".join([banner, "% written by the test", size, *lines]) + "\n"
    opener = gzip.open if path.name.endswith(".gz") else open
    with opener(path, "wt") as handle:
        handle.write(text)


def _frames(n_genes, n_cells):
    obs = pd.DataFrame(index=[f"c{i}" for i in range(n_cells)])
    var = pd.DataFrame(index=[f"G{i}" for i in range(n_genes)])
    return obs, var


def _csr_of(path) -> sp.csr_matrix:
    with h5py.File(path, "r") as f:
        g = f["X"]
        assert g.attrs["encoding-type"] == "csr_matrix"
        shape = tuple(g.attrs["shape"])
        return sp.csr_matrix((g["data"][:], g["indices"][:], g["indptr"][:]), shape=shape)


@pytest.mark.parametrize(
    ("layout", "name"),
    [("csc", "matrix.mtx"), ("csc", "matrix.mtx.gz"), ("csr", "matrix.mtx")],
)
def test_written_csr_equals_the_transposed_matrix(tmp_path, layout, name):
    """Cell-ordered files (CSC, as Cell Ranger writes) in one pass; gene-ordered ones (CSR)
    window by window; blocks of 97 entries cut cells in two."""
    counts = _counts()
    source = counts if layout == "csc" else sp.csr_matrix(counts)
    buffer = io.BytesIO()
    scipy.io.mmwrite(buffer, source, field="integer")
    path = tmp_path / name
    opener = gzip.open if name.endswith(".gz") else open
    with opener(path, "wb") as handle:
        handle.write(buffer.getvalue())
    obs, var = _frames(*counts.shape)
    out = tmp_path / "x.h5ad"
    write_mtx_h5ad(path, out, obs=obs, var=var, block_entries=97, window_values=700)
    got = _csr_of(out)
    want = sp.csr_matrix(counts.T, dtype=np.float32)
    want.sort_indices()
    assert got.dtype == np.float32
    assert got.has_sorted_indices
    np.testing.assert_array_equal(got.indptr, want.indptr)
    np.testing.assert_array_equal(got.indices, want.indices)
    np.testing.assert_array_equal(got.data, want.data)
    back = ad.read_h5ad(out)
    assert list(back.obs_names[:2]) == ["c0", "c1"]
    assert back.shape == (300, 40)


def test_unordered_entries_with_a_repeat_are_summed_like_coo(tmp_path):
    lines = ["3 2 5", "1 1 2", "3 2 1", "2 3 7", "1 2 4", "2 1 1"]  # (gene 3, cell 2) twice
    path = tmp_path / "matrix.mtx"
    _write_text(path, "%%MatrixMarket matrix coordinate integer general", "3 3 6", lines)
    obs, var = _frames(3, 3)
    write_mtx_h5ad(path, tmp_path / "x.h5ad", obs=obs, var=var, block_entries=2, window_values=2)
    got = _csr_of(tmp_path / "x.h5ad").toarray()
    # cells x genes: cell 1 has gene 1 (2) and gene 2 (1); cell 2 gene 1 (4), gene 3 (5+1)
    np.testing.assert_array_equal(got, [[2, 1, 0], [4, 0, 6], [0, 7, 0]])


def test_a_pattern_matrix_has_ones(tmp_path):
    path = tmp_path / "matrix.mtx"
    _write_text(
        path, "%%MatrixMarket matrix coordinate pattern general", "2 2 3", ["1 1", "2 1", "2 2"]
    )
    obs, var = _frames(2, 2)
    write_mtx_h5ad(path, tmp_path / "x.h5ad", obs=obs, var=var)
    np.testing.assert_array_equal(_csr_of(tmp_path / "x.h5ad").toarray(), [[1, 1], [0, 1]])


@pytest.mark.parametrize(
    ("banner", "size", "lines", "message"),
    [
        (
            "%%MatrixMarket matrix coordinate integer general",
            "3 3 4",
            ["1 1 2", "2 2 3", "3 3 1"],
            r"has 3 entries but its size line announces 4; the file is truncated",
        ),
        (
            "%%MatrixMarket matrix coordinate integer general",
            "3 3 2",
            ["1 1 2", "4 2 3"],
            r"entry 2 is at gene 4, cell 2, outside the 3 genes x 3 cells",
        ),
        (
            "%%MatrixMarket matrix coordinate integer general",
            "3 3 2",
            ["1 1 2", "2 two 3"],
            r"cannot be read past entry 0 of 2 .*'<gene> <cell> <value>'",
        ),
        (
            "%%MatrixMarket matrix array real general",
            "3 3",
            ["1", "2"],
            r"is not a Matrix Market coordinate file: its first line is",
        ),
        (
            "%%MatrixMarket matrix coordinate complex general",
            "3 3 1",
            ["1 1 1 0"],
            r"holds 'complex general' values",
        ),
    ],
)
def test_a_damaged_matrix_is_named_with_what_is_wrong(tmp_path, banner, size, lines, message):
    path = tmp_path / "matrix.mtx"
    _write_text(path, banner, size, lines)
    obs, var = _frames(3, 3)
    with pytest.raises(InputError, match=message) as caught:
        write_mtx_h5ad(path, tmp_path / "x.h5ad", obs=obs, var=var)
    assert str(path) in str(caught.value)


OPTIONS = {
    "dataset": "tenx",
    "patient_column": "donor",
    "cell_type_column": "label",
    "label_map": {"T8": "CD8_T", "Tum": "malignant", "*": "other"},
    "value_scale": "auto",
}


def _tenx_folder(tmp_path, *, n_cells, n_genes=60, per_cell=None, seed=1):
    """A 10x folder (gzip, cell-ordered entries) and its cell table: numeric patient ids,
    Ensembl ids with symbols, two symbols duplicated."""
    rng = np.random.default_rng(seed)
    if per_cell is None:
        counts = sp.csc_matrix(rng.poisson(rng.gamma(0.4, 2.0, size=(n_genes, n_cells))))
    else:  # sparse at size: per_cell genes per cell
        rows = np.concatenate(
            [rng.choice(n_genes, per_cell, replace=False) for _ in range(n_cells)]
        )
        cols = np.repeat(np.arange(n_cells), per_cell)
        values = rng.integers(1, 20, size=rows.size)
        counts = sp.csc_matrix((values, (rows, cols)), shape=(n_genes, n_cells))
    folder = tmp_path / "tenx"
    folder.mkdir()
    buffer = io.BytesIO()
    scipy.io.mmwrite(buffer, counts, field="integer")
    with gzip.open(folder / "matrix.mtx.gz", "wb") as handle:
        handle.write(buffer.getvalue())
    symbols = [f"G{i}" for i in range(n_genes - 3)] + ["G3", "MT-CO1", "G10"]
    features = pd.DataFrame(
        {
            "id": [f"ENSG{i:011d}" for i in range(n_genes)],
            "symbol": symbols,
            "type": "Gene Expression",
        }
    )
    features.to_csv(folder / "features.tsv.gz", sep="\t", header=False, index=False)
    barcodes = [f"AAAC{i:08d}-1" for i in range(n_cells)]
    pd.Series(barcodes).to_csv(folder / "barcodes.tsv.gz", header=False, index=False)
    table = pd.DataFrame(
        {
            "cell": barcodes,
            "donor": rng.choice([7, 12, 30, 41], size=n_cells),
            "label": rng.choice(["T8", "Tum", "B"], size=n_cells),
        }
    )
    table.to_csv(tmp_path / "cells.tsv", sep="\t", index=False)
    return folder, tmp_path / "cells.tsv"


def _same_harmonised(streamed, memory) -> ad.AnnData:
    a, b = ad.read_h5ad(streamed), ad.read_h5ad(memory)
    pd.testing.assert_frame_equal(a.obs, b.obs)
    pd.testing.assert_frame_equal(a.var, b.var)
    assert a.uns["cd8exo"] == b.uns["cd8exo"]
    assert a.X.dtype == b.X.dtype == np.float32
    assert (a.X != b.X).nnz == 0
    return a


def test_a_10x_folder_streamed_equals_in_memory(tmp_path):
    folder, table = _tenx_folder(tmp_path, n_cells=500)
    streamed = tmp_path / "out" / "streamed.h5ad"
    meta = harmonise_10x(
        folder,
        streamed,
        cell_table=table,
        cell_id_column="cell",
        min_cells=0,
        max_values=333,
        **OPTIONS,
    )
    assert meta is not None
    memory = tmp_path / "memory.h5ad"
    stages.prepare_file(
        path=str(folder),
        data_format="10x_mtx",
        out=str(memory),
        cell_table=str(table),
        cell_id_column="cell",
        **OPTIONS,
    )
    a = _same_harmonised(streamed, memory)
    assert a.n_vars == 58  # G3 and G10 summed, as the in-memory path does
    assert a.uns["cd8exo"]["value_scale"] == "counts"
    assert set(a.obs["patient"].astype(str)) == {"7", "12", "30", "41"}
    assert sorted(p.name for p in streamed.parent.iterdir()) == ["streamed.h5ad"]  # no temp left


def test_a_damaged_10x_matrix_leaves_nothing_behind(tmp_path):
    folder, table = _tenx_folder(tmp_path, n_cells=50)
    with gzip.open(folder / "matrix.mtx.gz", "rt") as handle:
        lines = handle.read().splitlines()
    with gzip.open(folder / "matrix.mtx.gz", "wt") as handle:
        handle.write("\n".join(lines[:-10]) + "\n")  # 10 entries short
    out = tmp_path / "out" / "o.h5ad"
    with pytest.raises(InputError, match="truncated"):
        harmonise_10x(folder, out, cell_table=table, cell_id_column="cell", min_cells=0, **OPTIONS)
    assert not list(out.parent.iterdir())


def test_too_little_disk_for_the_conversion_is_said_before_writing(tmp_path, monkeypatch):
    from cd8exo.cells import large

    folder, table = _tenx_folder(tmp_path, n_cells=50)
    usage = shutil.disk_usage(tmp_path)
    monkeypatch.setattr(large.shutil, "disk_usage", lambda _: usage._replace(free=10**6))
    out = tmp_path / "out" / "o.h5ad"
    with pytest.raises(InputError, match=r"Not enough free disk space in .*out.* 0\.0 GB are free"):
        harmonise_10x(folder, out, cell_table=table, cell_id_column="cell", min_cells=0, **OPTIONS)
    assert not list(out.parent.iterdir())


def test_a_small_10x_folder_takes_the_in_memory_path(tmp_path):
    folder, table = _tenx_folder(tmp_path, n_cells=50)
    out = tmp_path / "o.h5ad"
    assert harmonise_10x(folder, out, cell_table=table, cell_id_column="cell", **OPTIONS) is None
    assert not out.exists()


def test_20000_cells_of_10x_through_prepare_file_stream_and_equal_in_memory(tmp_path, monkeypatch):
    """At the size users run (rule prepare_dataset's entry point, the streaming threshold
    lowered to the test's size): 20,000 cells x 2,000 genes, 150 detected genes per cell."""
    from cd8exo.cells import large

    folder, table = _tenx_folder(tmp_path, n_cells=20_000, n_genes=2_000, per_cell=150)
    memory = tmp_path / "memory.h5ad"
    options = {"cell_table": str(table), "cell_id_column": "cell", **OPTIONS}
    stages.prepare_file(path=str(folder), data_format="10x_mtx", out=str(memory), **options)
    called = []
    real = large.write_mtx_h5ad

    def spy(*args, **kwargs):
        called.append(kwargs["block_entries"])
        return real(*args, **kwargs)

    monkeypatch.setattr(large, "write_mtx_h5ad", spy)
    lowered = functools.partial(large.harmonise_10x, min_cells=10_000, max_values=1_000_000)
    monkeypatch.setattr(stages, "harmonise_10x", lowered)
    streamed = tmp_path / "streamed.h5ad"
    stages.prepare_file(path=str(folder), data_format="10x_mtx", out=str(streamed), **options)
    assert called == [1_000_000]  # 3 million entries: 3 blocks
    a = _same_harmonised(streamed, memory)
    assert a.shape == (20_000, 1_998)
    shutil.rmtree(folder)
