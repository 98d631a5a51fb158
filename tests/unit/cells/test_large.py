"""cd8exo.cells.large: a large h5ad harmonised block by block gives the in-memory result."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from cd8exo.cells import large
from cd8exo.cells.large import harmonise_h5ad
from cd8exo.errors import InputError
from cd8exo.stages import cells as stages

pytestmark = pytest.mark.filterwarnings("ignore:Variable names are not unique")

OPTIONS = {
    "dataset": "big",
    "patient_column": "donor",
    "cell_type_column": "label",
    "label_map": {"T8": "CD8_T", "Tum": "malignant", "*": "other"},
    "value_scale": "auto",
}


def _input(tmp_path, *, n_cells=400, dense=False, layer=False, seed=0):
    rng = np.random.default_rng(seed)
    counts = rng.poisson(rng.gamma(0.4, 2.0, size=(n_cells, 60))).astype(np.int32)
    genes = [f"G{i}" for i in range(57)] + ["G3", "MT-CO1", "G10"]  # two duplicated symbols
    obs = pd.DataFrame(
        {
            "donor": rng.choice([7, 12, 30], size=n_cells),  # numeric patient ids
            "label": rng.choice(["T8", "Tum", "B"], size=n_cells),
        },
        index=[f"bc{i}" for i in range(n_cells)],
    )
    x = counts if dense else sp.csr_matrix(counts)
    adata = ad.AnnData(X=x, obs=obs, var=pd.DataFrame(index=genes))
    if layer:  # processed X, raw counts in a layer
        adata.layers["counts"] = adata.X.copy()
        adata.X = sp.csr_matrix(np.log1p(counts / counts.sum(1, keepdims=True).clip(1) * 1e4))
    path = tmp_path / "input.h5ad"
    adata.write_h5ad(path)
    return path


@pytest.mark.parametrize("layer", [False, True])
def test_streamed_equals_in_memory(tmp_path, layer):
    path = _input(tmp_path, layer=layer)
    streamed = tmp_path / "streamed.h5ad"
    meta = harmonise_h5ad(path, streamed, min_cells=0, max_values=500, **OPTIONS)
    assert meta is not None
    memory = tmp_path / "memory.h5ad"
    stages.prepare_file(path=str(path), data_format="h5ad", out=str(memory), **OPTIONS)
    a, b = ad.read_h5ad(streamed), ad.read_h5ad(memory)
    pd.testing.assert_frame_equal(a.obs, b.obs)
    pd.testing.assert_frame_equal(a.var, b.var)
    assert a.uns["cd8exo"] == b.uns["cd8exo"]
    assert a.uns["cd8exo"]["value_scale"] == "counts"
    assert a.X.dtype == np.float32
    assert (a.X != b.X).nnz == 0
    assert a.var_names.is_unique
    assert a.n_vars == 58  # G3 and G10 summed
    assert a.obs["patient"].astype(str).isin(["7", "12", "30"]).all()


def test_small_or_dense_files_take_the_in_memory_path(tmp_path):
    path = _input(tmp_path)
    assert harmonise_h5ad(path, tmp_path / "o.h5ad", **OPTIONS) is None  # 400 < 50,000
    dense = _input(tmp_path, dense=True)
    assert harmonise_h5ad(dense, tmp_path / "o.h5ad", min_cells=0, **OPTIONS) is None
    assert not (tmp_path / "o.h5ad").exists()


def test_a_fractional_count_in_a_late_block_is_named_and_nothing_is_written(tmp_path, monkeypatch):
    monkeypatch.setattr(large, "_SAMPLE_CELLS", 10)  # 10 runs of 1 cell: 0, 44, ..., 399
    path = _input(tmp_path, n_cells=400)
    adata = ad.read_h5ad(path)
    x = adata.X.astype(np.float32)
    x.data[x.indptr[391] - 1] += 0.5  # the last value of cell 390, not in the sample
    adata.X = x
    adata.write_h5ad(path)
    out = tmp_path / "o.h5ad"
    with pytest.raises(
        InputError, match=r"1 values of cells \d+-\d+ are not integers \(e\.g\. \[\d+\.5\]\)"
    ):
        harmonise_h5ad(
            path, out, min_cells=0, max_values=300, **{**OPTIONS, "value_scale": "counts"}
        )
    assert not out.exists()
    assert not list(tmp_path.glob(".o.h5ad*"))
