"""cd8exo.cells.store: the matrix written once and read back a block of cells at a time.

Every value read through :class:`Cells` must equal what the in-memory path computes
(harmonise -> log_normalise / linear_values), bit for bit, for any block size and any
subset of cells: the workflow's results on the demo are byte-identical through both.
"""

from __future__ import annotations

import anndata as ad
import h5py
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from cd8exo.cells import store
from cd8exo.cells.normalise import linear_values, log_normalise
from cd8exo.cells.qc import filter_cells, qc_metrics
from cd8exo.cells.store import Cells, column_sums, iter_rows, open_cells, write_cells, write_matrix
from cd8exo.errors import InputError
from cd8exo.patients.aggregate import malignant_pseudobulk, receiver_expression


def _harmonised(n_cells: int = 300, n_genes: int = 120, seed: int = 0, scale: str = "counts"):
    rng = np.random.default_rng(seed)
    counts = rng.poisson(rng.gamma(0.3, 2.0, size=(n_cells, n_genes))).astype(np.float32)
    counts[5] = 0  # a cell without counts stays all zero
    x = sp.csr_matrix(counts)
    if scale == "log1p_norm":
        x = sp.csr_matrix(np.log1p(counts), dtype=np.float32)
    genes = [f"G{i}" for i in range(n_genes - 3)] + ["MT-CO1", "MT-ND1", "MT-ATP6"]
    obs = pd.DataFrame(
        {
            "patient": pd.Categorical(rng.choice(["007", "P2", "P3"], size=n_cells)),
            "cell_type": pd.Categorical(rng.choice(["CD8_T", "malignant", "other"], size=n_cells)),
        },
        index=[f"c{i}" for i in range(n_cells)],
    )
    obs["malignant"] = obs["cell_type"] == "malignant"
    adata = ad.AnnData(
        X=x,
        obs=obs,
        var=pd.DataFrame(index=genes),
        uns={"cd8exo": {"dataset": "d", "value_scale": scale, "log_normalised": False}},
    )
    if scale == "counts":
        adata.layers["counts"] = x.copy()
    return adata


@pytest.fixture
def written(tmp_path):
    adata = _harmonised()
    path = tmp_path / "prepared.h5ad"
    write_matrix(adata, path)
    return adata, path


def test_the_matrix_is_written_once(written):
    adata, path = written
    with h5py.File(path) as f:
        assert "counts" not in f.get("layers", {})
        assert f["X"].attrs["encoding-type"] == "csr_matrix"
    back = ad.read_h5ad(path)
    assert (back.X != adata.X).nnz == 0


@pytest.mark.parametrize("max_values", [7, 1000, 10_000_000])
def test_blocks_equal_the_in_memory_normalisation_bit_for_bit(written, max_values):
    adata, path = written
    cells = open_cells(path)
    expected = log_normalise(adata).X
    blocks = [b for _, _, b in iter_rows(cells.X, max_values=max_values)]
    assert (len(blocks) == 1) == (max_values > 1e6)
    got = sp.vstack(blocks).tocsr()
    assert np.array_equal(got.toarray(), expected.toarray())
    assert got.dtype == np.float32
    assert np.array_equal(cells.linear.to_csr().toarray(), adata.X.toarray())
    assert not got[5].nnz  # no counts: all zero


@pytest.mark.parametrize(("gap", "span"), [(0, 50), (30, 1_000), (10**9, 10**9)])
def test_subsets_read_only_their_rows(written, monkeypatch, gap, span):
    # rows read one span per row, in a few spans, or in one
    monkeypatch.setattr(store, "_MAX_GAP", gap)
    monkeypatch.setattr(store, "_MAX_GAP_UNCOMPRESSED", gap)
    monkeypatch.setattr(store, "_MAX_SPAN", span)
    adata, path = written
    cells = open_cells(path)
    expected = log_normalise(adata)
    # a sparse selection and a dense one
    for mask in (np.arange(adata.n_obs) % 17 == 3, np.arange(adata.n_obs) % 3 != 0):
        subset = cells[mask]
        assert subset.obs_names.equals(adata.obs_names[mask])
        got = sp.vstack([b for _, _, b in iter_rows(subset.X, max_values=50)])
        assert np.array_equal(got.toarray(), expected.X[mask].toarray())
        memory = subset.to_memory()
        assert np.array_equal(memory.X.toarray(), expected.X[mask].toarray())
        assert np.array_equal(memory.layers["counts"].toarray(), adata.X[mask].toarray())


def test_column_sums_and_gene_means(written):
    adata, path = written
    cells = open_cells(path)
    dense = adata.X.toarray().astype(np.float64)
    np.testing.assert_allclose(column_sums(cells.linear, max_values=9), dense.sum(axis=0))
    np.testing.assert_array_equal(column_sums(cells.linear, binary=True), (dense > 0).sum(axis=0))


def test_qc_and_pseudobulk_through_cells_equal_in_memory(written, monkeypatch):
    adata, path = written
    monkeypatch.setattr(store, "CHUNK_VALUES", 40)
    cells = open_cells(path)
    assert len(list(iter_rows(cells.X))) > 10
    pd.testing.assert_frame_equal(qc_metrics(cells), qc_metrics(adata))
    kept, removed = filter_cells(cells, min_genes=5, max_mito_fraction=0.5)
    kept_memory, removed_memory = filter_cells(adata, min_genes=5, max_mito_fraction=0.5)
    assert isinstance(kept, Cells)
    assert kept.obs_names.equals(kept_memory.obs_names)
    pd.testing.assert_frame_equal(removed, removed_memory)
    genes = ["G1", "G7", "MT-CO1", "ABSENT"]
    pd.testing.assert_frame_equal(
        receiver_expression(kept, genes=genes),
        receiver_expression(log_normalise(kept_memory), genes=genes),
        rtol=1e-12,
    )
    pd.testing.assert_frame_equal(
        malignant_pseudobulk(kept, min_cells_fraction=0.1, min_cpm=1),
        malignant_pseudobulk(log_normalise(kept_memory), min_cells_fraction=0.1, min_cpm=1),
        rtol=1e-12,
    )
    assert linear_values(kept).shape == (kept.n_obs, kept.n_vars)


def test_log_scale_values_are_read_as_stored_and_undone_for_sums(tmp_path):
    adata = _harmonised(scale="log1p_norm")
    path = tmp_path / "log.h5ad"
    write_matrix(adata, path)
    cells = open_cells(path)
    assert np.array_equal(cells.X.to_csr().toarray(), adata.X.toarray())
    np.testing.assert_allclose(
        cells.linear.to_csr().toarray(), linear_values(adata).toarray(), rtol=1e-6
    )


def test_cell_tables_carry_no_matrix_and_reopen_with_it(written, tmp_path):
    _, path = written
    cells = open_cells(path)
    kept = cells[np.arange(cells.n_obs) % 2 == 0]
    kept.obs["note"] = "kept"
    table = tmp_path / "kept.h5ad"
    write_cells(kept, table)
    assert ad.read_h5ad(table).X is None
    assert table.stat().st_size < path.stat().st_size / 3
    again = open_cells(path, table)
    assert again.obs_names.equals(kept.obs_names)
    assert (again.obs["note"] == "kept").all()
    assert again.obs["patient"].cat.categories.tolist() == ["007", "P2", "P3"]
    assert np.array_equal(again.X.to_csr().toarray(), kept.X.to_csr().toarray())


def test_a_cell_table_of_another_run_is_refused_plainly(written, tmp_path):
    _, path = written
    other = _harmonised(n_cells=10)
    other.obs_names = [f"x{i}" for i in range(10)]
    table = tmp_path / "other.h5ad"
    write_cells(other, table)
    with pytest.raises(InputError, match=r"10 cells of the table given \(e\.g\. \['x0'"):
        open_cells(path, table)


def test_a_dense_matrix_file_is_refused_plainly(tmp_path):
    adata = _harmonised()
    adata.X = adata.X.toarray()
    path = tmp_path / "dense.h5ad"
    adata.write_h5ad(path)
    with pytest.raises(InputError, match=r"X is stored as .*not CSR.*prepare_dataset"):
        open_cells(path)
