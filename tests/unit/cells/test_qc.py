"""Tests of cd8exo.qc on hand-made matrices with known answers."""

from __future__ import annotations

import logging

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from shared_data import SHARED_REFERENCE

from cd8exo.cells.harmonise import log_normalise
from cd8exo.cells.qc import filter_cells, qc_metrics
from cd8exo.vocabulary import CELL_TYPES


def _tiny(counts: np.ndarray, genes: list[str], *, patients, cell_types) -> ad.AnnData:
    obs = pd.DataFrame(
        {
            "patient": pd.Categorical(patients),
            "sample": pd.Categorical(patients),
            "cell_type": pd.Categorical(cell_types, categories=CELL_TYPES),
            "cell_type_original": pd.Categorical(cell_types),
            "malignant": np.array([c == "malignant" for c in cell_types]),
        },
        index=[f"c{i}" for i in range(len(patients))],
    )
    x = sp.csr_matrix(counts.astype(np.float32))
    return ad.AnnData(
        X=x.copy(),
        obs=obs,
        var=pd.DataFrame(index=genes),
        layers={"counts": x.copy()},
        uns={"cd8exo": {"dataset": "tiny", "value_scale": "counts", "log_normalised": False}},
    )


GENES = ["A", "B", "C", "MT-CO1", "mt-nd1"]
#: Per cell: detected genes, total, MT fraction (MT-CO1 + mt-nd1) / total.
COUNTS = np.array(
    [
        [5, 3, 2, 0, 0],  # c0: 3 genes, 10, 0.0
        [1, 0, 0, 1, 0],  # c1: 2 genes, 2, 0.5   -> fails min_genes and mito
        [4, 4, 0, 1, 1],  # c2: 4 genes, 10, 0.2
        [2, 2, 2, 3, 1],  # c3: 5 genes, 10, 0.4  -> fails mito
        [0, 0, 0, 0, 0],  # c4: 0 genes, 0, NaN   -> fails min_genes
        [6, 1, 1, 1, 1],  # c5: 5 genes, 10, 0.2
    ]
)
PATIENTS = ["p1", "p1", "p1", "p2", "p2", "p2"]
CELL_TYPE_OF = ["CD8_T", "CD8_T", "malignant", "malignant", "malignant", "CD8_T"]


def test_qc_metrics_known_values():
    adata = _tiny(COUNTS, GENES, patients=PATIENTS, cell_types=CELL_TYPE_OF)
    metrics = qc_metrics(adata)
    assert metrics.index.tolist() == [f"c{i}" for i in range(6)]
    assert metrics["n_genes"].tolist() == [3, 2, 4, 5, 0, 5]
    assert metrics["total"].tolist() == [10, 2, 10, 10, 0, 10]
    np.testing.assert_allclose(
        metrics["mito_fraction"].to_numpy(), [0.0, 0.5, 0.2, 0.4, np.nan, 0.2]
    )


def test_qc_metrics_use_linear_values_after_normalisation():
    adata = log_normalise(_tiny(COUNTS, GENES, patients=PATIENTS, cell_types=CELL_TYPE_OF))
    np.testing.assert_allclose(
        qc_metrics(adata)["mito_fraction"].to_numpy(), [0.0, 0.5, 0.2, 0.4, np.nan, 0.2]
    )


def test_filter_cells_counts_each_removal_once():
    adata = _tiny(COUNTS, GENES, patients=PATIENTS, cell_types=CELL_TYPE_OF)
    kept, table = filter_cells(adata, min_genes=3, max_mito_fraction=0.3)
    assert kept.obs_names.tolist() == ["c0", "c2", "c5"]
    expected = pd.DataFrame(
        {
            "patient": ["p1", "p1", "p2", "p2"],
            "cell_type": ["CD8_T", "malignant", "CD8_T", "malignant"],
            "n_before": [2, 1, 1, 2],
            # c1 fails both filters: counted once, under min_genes.
            "n_removed_min_genes": [1, 0, 0, 1],
            "n_removed_mito": [0, 0, 0, 1],
            "n_after": [1, 1, 1, 0],
        }
    )
    pd.testing.assert_frame_equal(table, expected)
    # The input is untouched.
    assert adata.n_obs == 6


def test_filter_cells_without_mito_genes_warns_and_skips(caplog):
    adata = _tiny(COUNTS[:, :3], GENES[:3], patients=PATIENTS, cell_types=CELL_TYPE_OF)
    with caplog.at_level(logging.WARNING, logger="cd8exo.cells"):
        kept, table = filter_cells(adata, min_genes=2, max_mito_fraction=0.01)
    assert "has no MT- genes; the mitochondrial filter is skipped" in caplog.text
    # Only c1 (1 gene) and c4 (0 genes) fail.
    assert kept.obs_names.tolist() == ["c0", "c2", "c3", "c5"]
    assert table["n_removed_mito"].sum() == 0
    assert table["n_removed_min_genes"].sum() == 2


def test_filter_cells_on_synthetic_data(contract_adata):
    kept, table = filter_cells(contract_adata, min_genes=0, max_mito_fraction=1.0)
    assert kept.n_obs == contract_adata.n_obs
    assert table["n_before"].sum() == contract_adata.n_obs
    assert (table["n_after"] == table["n_before"]).all()


def test_filter_cells_rejects_bad_fraction(contract_adata):
    with pytest.raises(ValueError, match="max_mito_fraction must be between 0 and 1, got 20"):
        filter_cells(contract_adata, min_genes=200, max_mito_fraction=20)


WU2021 = SHARED_REFERENCE / "data" / "wu2021_CID4465"


@pytest.mark.skipif(not WU2021.exists(), reason="reference fixture not available")
def test_qc_metrics_match_the_authors_on_real_data():
    from cd8exo.cells.harmonise import harmonise
    from cd8exo.io.local import read_dataset

    raw = read_dataset(path=WU2021, data_format="10x_mtx", cell_table=WU2021 / "obs.tsv")
    adata = harmonise(
        raw,
        dataset="wu2021_CID4465",
        patient_column="patient",
        cell_type_column="celltype_minor",
        label_map={"T cells CD8+": "CD8_T", "*": "other"},
    )
    metrics = qc_metrics(log_normalise(adata))
    # Seurat's nFeature_RNA / nCount_RNA / percent_mito (PercentageFeatureSet "^MT-").
    np.testing.assert_array_equal(metrics["n_genes"], raw.obs["nFeature_RNA"])
    np.testing.assert_array_equal(metrics["total"], raw.obs["nCount_RNA"])
    np.testing.assert_allclose(metrics["mito_fraction"] * 100, raw.obs["percent_mito"], atol=1e-4)
