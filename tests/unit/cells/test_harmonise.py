"""Tests of cd8exo.harmonise: label maps, value scales, the contract, normalisation."""

from __future__ import annotations

import logging

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from shared_data import SHARED_REFERENCE

from cd8exo.cells.harmonise import harmonise, linear_values, log_normalise, read_label_map
from cd8exo.cells.scale import detect_value_scale
from cd8exo.errors import InputError
from cd8exo.vocabulary import CELL_TYPES


def _harmonise(raw, label_map, **kwargs):
    arguments = {
        "dataset": "synthetic",
        "patient_column": "donor",
        "cell_type_column": "label",
        "label_map": label_map,
    }
    arguments.update(kwargs)
    return harmonise(raw, **arguments)


def _log1p_cp10k(counts: np.ndarray) -> np.ndarray:
    """ln(CP10k + 1), computed directly (the reference for log_normalise)."""
    totals = counts.sum(axis=1, keepdims=True)
    return np.log1p(counts / totals * 1e4)


# --------------------------------------------------------------------------- #
# Label map
# --------------------------------------------------------------------------- #
def test_read_label_map_with_catch_all(tmp_path):
    path = tmp_path / "labels.tsv"
    path.write_text("label\tcell_type\tcomment\nT cells CD8+\tCD8_T\tx\n*\tother\t\n")
    assert read_label_map(path) == {"T cells CD8+": "CD8_T", "*": "other"}


def test_read_label_map_rejects_cell_type_outside_vocabulary(tmp_path):
    path = tmp_path / "labels.tsv"
    path.write_text("label\tcell_type\nT cells CD8+\tCD8_T\nCAFs\tFibroblast\n")
    with pytest.raises(ValueError, match="is not in the vocabulary") as error:
        read_label_map(path)
    message = str(error.value)
    assert "row 2 (label 'CAFs')" in message
    assert "cell_type 'Fibroblast' is not in the vocabulary" in message
    assert "allowed values are " + ", ".join(CELL_TYPES) in message


def test_read_label_map_rejects_conflicting_rows(tmp_path):
    path = tmp_path / "labels.tsv"
    path.write_text("label\tcell_type\nMyeloid\tmyeloid\nMyeloid\tother\n")
    with pytest.raises(
        ValueError, match="label 'Myeloid' is mapped twice, to 'myeloid' and 'other'"
    ):
        read_label_map(path)


def test_read_label_map_missing_column(tmp_path):
    path = tmp_path / "labels.tsv"
    path.write_text("label\ttype\nMyeloid\tmyeloid\n")
    with pytest.raises(ValueError, match=r"lacks the column\(s\) \['cell_type'\]"):
        read_label_map(path)


# --------------------------------------------------------------------------- #
# Value scale
# --------------------------------------------------------------------------- #
def test_detect_counts_dense_and_sparse(raw_adata):
    assert detect_value_scale(raw_adata.X) == "counts"
    assert detect_value_scale(raw_adata.X.toarray()) == "counts"


def test_detect_log1p_cp10k(raw_adata):
    x = _log1p_cp10k(raw_adata.X.toarray().astype(np.float64))
    assert detect_value_scale(x) == "log1p_norm"
    assert detect_value_scale(sp.csr_matrix(x)) == "log1p_norm"


def test_detect_log2_tpm10(raw_adata):
    counts = raw_adata.X.toarray().astype(np.float64)
    tpm = counts / counts.sum(axis=1, keepdims=True) * 1e6
    assert detect_value_scale(np.log2(tpm / 10 + 1)) == "log2_tpm10"


def test_detect_falls_back_on_maximum_with_warning(raw_adata, caplog):
    counts = raw_adata.X.toarray().astype(np.float64)
    # Normalised on all genes, then half the genes dropped: totals no longer constant.
    tpm = (counts / counts.sum(axis=1, keepdims=True) * 1e6)[:, ::2]
    tpm[:, 0] = 3e5  # a very highly expressed gene -> log2 values above 10
    with caplog.at_level(logging.WARNING, logger="cd8exo.cells"):
        assert detect_value_scale(np.log2(tpm / 10 + 1)) == "log2_tpm10"
    assert "Declare value_scale" in caplog.text


def test_detect_rejects_negative_and_linear_values():
    with pytest.raises(ValueError, match=r"negative values \(min -1\): it looks scaled"):
        detect_value_scale(np.array([[0.5, -1.0], [1.0, 2.0]]))
    with pytest.raises(ValueError, match="look like linear TPM/CPM values"):
        detect_value_scale(np.array([[0.5, 250.25], [1.0, 2.0]]))
    with pytest.raises(ValueError, match="NaN or infinite"):
        detect_value_scale(np.array([[np.nan, 1.0]]))


# --------------------------------------------------------------------------- #
# harmonise
# --------------------------------------------------------------------------- #
def test_harmonise_builds_the_contract(raw_adata, label_map):
    before = raw_adata.copy()
    result = _harmonise(raw_adata, label_map)

    obs = result.obs
    assert list(obs.columns[:5]) == [
        "patient",
        "sample",
        "cell_type",
        "cell_type_original",
        "malignant",
    ]
    assert list(obs["cell_type"].cat.categories) == list(CELL_TYPES)
    assert obs["patient"].dtype == "category"
    assert obs["sample"].dtype == "category"
    assert obs["malignant"].dtype == bool
    # sample defaults to the patient; malignant defaults to cell_type == "malignant".
    assert (obs["sample"].astype(str) == obs["patient"].astype(str)).all()
    assert (obs["malignant"] == (obs["cell_type"] == "malignant")).all()
    assert obs["cell_type"].value_counts()["CD8_T"] == 6 * 30
    assert obs["malignant"].sum() == 6 * 40
    assert obs.loc["P1_cd8_0", "cell_type_original"] == "T cells CD8+"
    # Other original columns are kept.
    assert "n_counts_author" in obs.columns
    assert "sample_id" in obs.columns
    # Matrix, layer and uns.
    assert sp.issparse(result.X)
    assert result.X.format == "csr"
    assert result.X.dtype == np.float32
    np.testing.assert_array_equal(result.layers["counts"].toarray(), raw_adata.X.toarray())
    assert result.uns["cd8exo"]["dataset"] == "synthetic"
    assert result.uns["cd8exo"]["value_scale"] == "counts"
    assert result.uns["cd8exo"]["log_normalised"] is False
    # The input is not mutated.
    pd.testing.assert_frame_equal(raw_adata.obs, before.obs)
    assert list(raw_adata.uns) == ["truth"]
    assert not raw_adata.layers


def test_harmonise_sample_and_malignant_columns(raw_adata, label_map):
    raw = raw_adata.copy()
    raw.obs["is_tumour"] = np.where(raw.obs["label"] == "Cancer Epithelial", "yes", "no")
    raw.obs.loc["P1_cd8_0", "is_tumour"] = "YES"  # a (deliberately odd) annotation wins
    result = _harmonise(raw, label_map, sample_column="sample_id", malignant_column="is_tumour")
    assert result.obs.loc["P1_cd8_0", "malignant"]
    assert result.obs["malignant"].sum() == 6 * 40 + 1
    assert result.obs.loc["P2_malignant_1", "sample"] == "P2_s1"


def test_harmonise_unrecognised_malignant_values(raw_adata, label_map):
    raw = raw_adata.copy()
    raw.obs["is_tumour"] = "maybe"
    with pytest.raises(ValueError, match=r"malignant_column 'is_tumour' has values \['maybe'\]"):
        _harmonise(raw, label_map, malignant_column="is_tumour")


def test_harmonise_lists_every_unmapped_label(raw_adata):
    with pytest.raises(ValueError, match="not in the label map") as error:
        _harmonise(raw_adata, {"T cells CD8+": "CD8_T"})
    message = str(error.value)
    assert "2 cell label(s) are not in the label map" in message
    assert "'Cancer Epithelial' (240 cells)" in message
    assert "'Myeloid' (90 cells)" in message
    assert "or a row '*<TAB>other'" in message


def test_harmonise_catch_all(raw_adata):
    result = _harmonise(raw_adata, {"T cells CD8+": "CD8_T", "*": "other"})
    assert result.obs["cell_type"].value_counts()["other"] == 6 * (40 + 15)
    assert result.obs["malignant"].sum() == 0


def test_harmonise_missing_column_lists_available(raw_adata, label_map):
    with pytest.raises(ValueError, match="is not a column") as error:
        _harmonise(raw_adata, label_map, patient_column="patient")
    message = str(error.value)
    assert "patient_column 'patient' is not a column of the cell metadata" in message
    assert "available columns are ['donor', 'label', 'sample_id', 'n_counts_author']" in message


def test_patient_ids_are_kept_verbatim_and_blank_ids_refused(raw_adata, label_map):
    # issue 12: " P1" and "P1" are two ids; "007" stays "007"; only a blank id is an error
    raw = raw_adata.copy()
    donors = raw.obs["donor"].astype(str).to_numpy().copy()
    donors[donors == "P1"] = " P1 "
    donors[donors == "P2"] = "007"
    raw.obs["donor"] = donors
    out = _harmonise(raw, label_map)
    assert {" P1 ", "007"} <= set(out.obs["patient"].astype(str))
    assert "P1" not in set(out.obs["patient"].astype(str))
    donors[:3] = "  "
    raw.obs["donor"] = donors
    with pytest.raises(InputError, match=r"3 cells have a blank value in column 'donor'"):
        _harmonise(raw, label_map)


def test_harmonise_counts_declared_on_non_integer_data(raw_adata, label_map):
    raw = raw_adata.copy()
    raw.X = sp.csr_matrix(_log1p_cp10k(raw.X.toarray().astype(np.float64)))
    with pytest.raises(
        ValueError, match=r"value_scale is declared 'counts' but \d+ values are not integers"
    ):
        _harmonise(raw, label_map, value_scale="counts")
    # Declared as what they are, or detected, they are accepted.
    assert (
        _harmonise(raw, label_map, value_scale="log1p_norm").uns["cd8exo"]["value_scale"]
        == "log1p_norm"
    )
    result = _harmonise(raw, label_map)
    assert result.uns["cd8exo"]["value_scale"] == "log1p_norm"
    assert "counts" not in result.layers


def test_harmonise_log_scale_declared_on_counts(raw_adata, label_map):
    with pytest.raises(ValueError, match="declared 'log2_tpm10' but every value is an integer"):
        _harmonise(raw_adata, label_map, value_scale="log2_tpm10")


def test_harmonise_renames_clashing_original_columns(raw_adata, label_map):
    raw = raw_adata.copy()
    raw.obs["patient"] = "something else"
    result = _harmonise(raw, label_map)
    assert result.obs["patient_input"].unique().tolist() == ["something else"]
    assert result.obs.loc["P3_cd8_0", "patient"] == "P3"


def _with_duplicates(values: np.ndarray) -> ad.AnnData:
    obs = pd.DataFrame(
        {"donor": ["p1", "p1", "p2"], "label": ["T cells CD8+"] * 3}, index=["a", "b", "c"]
    )
    var = pd.DataFrame(index=["GENE1", "DUP", "GENE2", "DUP", "MT-CO1"])
    return ad.AnnData(X=sp.csr_matrix(values), obs=obs, var=var)


@pytest.mark.filterwarnings("ignore:Variable names are not unique")
def test_duplicated_symbols_are_summed_for_counts(caplog):
    counts = np.array([[1, 2, 3, 4, 5], [0, 1, 0, 1, 0], [2, 0, 2, 7, 1]], dtype=np.float32)
    with caplog.at_level(logging.WARNING, logger="cd8exo.cells"):
        result = harmonise(
            _with_duplicates(counts),
            dataset="d",
            patient_column="donor",
            cell_type_column="label",
            label_map={"*": "CD8_T"},
        )
    assert result.var_names.tolist() == ["GENE1", "DUP", "GENE2", "MT-CO1"]
    np.testing.assert_array_equal(result.X.toarray(), [[1, 6, 3, 5], [0, 2, 0, 0], [2, 7, 2, 1]])
    np.testing.assert_array_equal(result.layers["counts"].toarray(), result.X.toarray())
    assert "1 gene symbols occur more than once" in caplog.text
    assert "counts summed): DUP" in caplog.text


@pytest.mark.filterwarnings("ignore:Variable names are not unique")
def test_duplicated_symbols_keep_highest_mean_for_normalised(caplog):
    values = np.array(
        [[1.5, 0.5, 3.5, 2.5, 0.1], [0.0, 0.5, 0.0, 2.5, 0.0], [2.5, 0.0, 2.5, 0.0, 1.5]],
        dtype=np.float32,
    )
    with caplog.at_level(logging.WARNING, logger="cd8exo.cells"):
        result = harmonise(
            _with_duplicates(values),
            dataset="d",
            patient_column="donor",
            cell_type_column="label",
            label_map={"*": "CD8_T"},
            value_scale="log1p_norm",
        )
    # DUP column 1 has mean 1/3, column 3 has mean 5/3: column 3 is kept.
    np.testing.assert_array_equal(result.X.toarray()[:, 1], values[:, 3])
    np.testing.assert_array_equal(result.X.toarray()[:, 0], values[:, 0])
    assert "highest-mean gene kept): DUP" in caplog.text


# --------------------------------------------------------------------------- #
# log_normalise and linear_values
# --------------------------------------------------------------------------- #
def test_log_normalise_equals_direct_computation(raw_adata, label_map):
    harmonised = _harmonise(raw_adata, label_map)
    normalised = log_normalise(harmonised)
    expected = _log1p_cp10k(raw_adata.X.toarray().astype(np.float64))
    np.testing.assert_allclose(normalised.X.toarray(), expected, rtol=1e-6, atol=1e-6)
    assert normalised.uns["cd8exo"]["log_normalised"] is True
    # Counts are kept, and the input is untouched.
    np.testing.assert_array_equal(normalised.layers["counts"].toarray(), raw_adata.X.toarray())
    assert harmonised.uns["cd8exo"]["log_normalised"] is False
    np.testing.assert_array_equal(harmonised.X.toarray(), raw_adata.X.toarray())


def test_log_normalise_twice_never_logs_twice(raw_adata, label_map):
    once = log_normalise(_harmonise(raw_adata, label_map))
    twice = log_normalise(once)
    np.testing.assert_array_equal(twice.X.toarray(), once.X.toarray())
    assert twice.uns["cd8exo"]["log_normalised"] is True


def test_log_normalise_survives_an_h5ad_round_trip(tmp_path, raw_adata, label_map):
    once = log_normalise(_harmonise(raw_adata, label_map))
    once.write_h5ad(tmp_path / "d.h5ad")
    back = ad.read_h5ad(tmp_path / "d.h5ad")
    np.testing.assert_array_equal(log_normalise(back).X.toarray(), once.X.toarray())


def test_log_normalise_leaves_log_scaled_values(raw_adata, label_map):
    raw = raw_adata.copy()
    values = _log1p_cp10k(raw.X.toarray().astype(np.float64)).astype(np.float32)
    raw.X = sp.csr_matrix(values)
    result = log_normalise(_harmonise(raw, label_map, value_scale="log1p_norm"))
    np.testing.assert_array_equal(result.X.toarray(), values)
    assert result.uns["cd8exo"]["log_normalised"] is True


def test_log_normalise_requires_harmonised_input(raw_adata):
    with pytest.raises(ValueError, match="has not been harmonised"):
        log_normalise(raw_adata)


def test_linear_values_undo_each_scale(raw_adata, label_map):
    counts = raw_adata.X.toarray().astype(np.float64)
    harmonised = log_normalise(_harmonise(raw_adata, label_map))
    np.testing.assert_array_equal(linear_values(harmonised).toarray(), counts)

    cp10k = counts / counts.sum(axis=1, keepdims=True) * 1e4
    raw = raw_adata.copy()
    raw.X = sp.csr_matrix(np.log1p(cp10k))
    log1p = _harmonise(raw, label_map, value_scale="log1p_norm")
    np.testing.assert_allclose(linear_values(log1p).toarray(), cp10k, rtol=1e-5)

    tpm = counts / counts.sum(axis=1, keepdims=True) * 1e6
    raw.X = sp.csr_matrix(np.log2(tpm / 10 + 1))
    log2 = _harmonise(raw, label_map, value_scale="log2_tpm10")
    np.testing.assert_allclose(linear_values(log2).toarray(), tpm, rtol=1e-4, atol=1e-2)


def test_chunked_processing_equals_one_pass(raw_adata, label_map, monkeypatch):
    """The bounded-memory loops give the same values as a single chunk."""
    import cd8exo.cells.normalise as normalise_module

    harmonised = _harmonise(raw_adata, label_map)
    whole = log_normalise(harmonised)
    log1p = whole.copy()
    del log1p.layers["counts"]
    log1p.uns["cd8exo"] = {"dataset": "d", "value_scale": "log1p_norm", "log_normalised": True}
    linear_whole = linear_values(log1p)

    monkeypatch.setattr(normalise_module, "_CHUNK_ROWS", 7)
    monkeypatch.setattr(normalise_module, "_CHUNK_VALUES", 13)
    np.testing.assert_array_equal(log_normalise(harmonised).X.toarray(), whole.X.toarray())
    np.testing.assert_array_equal(linear_values(log1p).toarray(), linear_whole.toarray())
    # A single fractional value in the last chunk is still found.
    raw = raw_adata.copy()
    raw.X = raw.X.copy()
    raw.X.data[-1] += 0.5
    with pytest.raises(ValueError, match=r"but 1 values are not integers \(e\.g\. \[\d+\.5\]\)"):
        _harmonise(raw, label_map, value_scale="counts")


@pytest.mark.filterwarnings("ignore:Observation names are not unique")
def test_harmonise_rejects_duplicated_cell_ids(raw_adata, label_map):
    raw = raw_adata.copy()
    raw.obs_names = ["AAAC-1"] * 2 + list(raw.obs_names[2:])
    with pytest.raises(ValueError, match=r"cell ids are not unique \(e\.g\. \['AAAC-1'\]\)"):
        _harmonise(raw, label_map)


def test_detect_ignores_empty_cells(raw_adata):
    x = _log1p_cp10k(raw_adata.X.toarray().astype(np.float64))
    x[:5] = 0.0  # cells without any detected gene do not break the constant totals
    assert detect_value_scale(sp.csr_matrix(x)) == "log1p_norm"


TIROSH2016 = SHARED_REFERENCE / "data" / "tirosh2016_oligodendroglioma"


@pytest.mark.skipif(not TIROSH2016.exists(), reason="reference fixture not available")
def test_detect_on_real_smartseq2_tpm():
    tpm = pd.read_csv(
        TIROSH2016 / "oligodendroglioma_expression_downsampled.counts.matrix.gz",
        sep="\t",
        index_col=0,
    ).T.to_numpy()
    # Linear TPM is refused; its log2(TPM/10+1) is recognised (by the maximum: the
    # downsampled gene set no longer sums to 1e6 per cell).
    with pytest.raises(ValueError, match="look like linear TPM/CPM values"):
        detect_value_scale(tpm)
    assert detect_value_scale(np.log2(tpm / 10 + 1)) == "log2_tpm10"


# --------------------------------------------------------------------------- #
# A dataset without cell-type labels (annotate_cells infers CD8 T and malignant cells)
# --------------------------------------------------------------------------- #
def test_harmonise_without_labels_gives_other(raw_adata):
    raw = raw_adata.copy()
    raw.obs = raw.obs.drop(columns=["label"])
    result = harmonise(raw, dataset="unlabelled", patient_column="donor")
    assert (result.obs["cell_type"] == "other").all()
    assert list(result.obs["cell_type"].cat.categories) == list(CELL_TYPES)
    assert (result.obs["cell_type_original"] == "unlabelled").all()
    assert not result.obs["malignant"].any()
    assert result.uns["cd8exo"]["cell_type_column"] == ""
    # everything else as with labels: patients, counts layer, value scale
    assert result.obs["patient"].nunique() == raw_adata.obs["donor"].nunique()
    assert result.uns["cd8exo"]["value_scale"] == "counts"
    assert "counts" in result.layers


def test_harmonise_without_labels_keeps_a_malignant_column(raw_adata):
    raw = raw_adata.copy()
    raw.obs["is_tumour"] = np.where(raw.obs["label"] == "Cancer Epithelial", "yes", "no")
    raw.obs = raw.obs.drop(columns=["label"])
    result = harmonise(
        raw, dataset="unlabelled", patient_column="donor", malignant_column="is_tumour"
    )
    assert result.obs["malignant"].sum() == 6 * 40
    # the malignant cells are malignant in cell_type too, the rest 'other'
    expected = np.where(result.obs["malignant"], "malignant", "other")
    assert (result.obs["cell_type"].astype(str).to_numpy() == expected).all()


def test_harmonise_needs_labels_and_label_map_together(raw_adata, label_map):
    with pytest.raises(ValueError, match="cell_type_column is given but label_map is not"):
        harmonise(raw_adata, dataset="x", patient_column="donor", cell_type_column="label")
    with pytest.raises(ValueError, match="label_map is given but cell_type_column is not"):
        harmonise(raw_adata, dataset="x", patient_column="donor", label_map=label_map)
