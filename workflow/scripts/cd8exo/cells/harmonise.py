"""Bring a dataset onto the harmonised AnnData contract.

The contract (see the project README): cells x genes, unique gene symbols, ``X`` CSR
float32, ``obs`` with ``patient``, ``sample``, ``cell_type`` (over
:data:`cd8exo.vocabulary.CELL_TYPES`), ``cell_type_original`` and ``malignant``, and
``uns["cd8exo"]`` recording the dataset id and the scale of the values. Raw counts are
kept in ``layers["counts"]`` and are the only values ever log-transformed.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import anndata as ad
import numpy as np
import pandas as pd
import scipy.sparse as sp

from cd8exo.cells.normalise import linear_values, log_normalise
from cd8exo.cells.scale import _value_summary, detect_value_scale
from cd8exo.errors import InputError
from cd8exo.genes import unique_symbols
from cd8exo.io.tables import read_tsv
from cd8exo.vocabulary import CELL_TYPES, OBS_COLUMNS, VALUE_SCALES

if TYPE_CHECKING:
    from collections.abc import Mapping

    from cd8exo.io.tables import PathLike
logger = logging.getLogger(__name__)

__all__ = [
    "CATCH_ALL",
    "UNLABELLED",
    "harmonise",
    "linear_values",
    "log_normalise",
    "read_label_map",
]

#: Label-map entry that maps every label not listed explicitly.
CATCH_ALL = "*"


#: ``cell_type_original`` of every cell of a dataset without cell-type labels.
UNLABELLED = "unlabelled"


_TRUE = {"true", "t", "yes", "y", "1", "malignant", "tumor", "tumour", "cancer"}


_FALSE = {"false", "f", "no", "n", "0", "non-malignant", "nonmalignant", "normal"}


# --------------------------------------------------------------------------- #
# Label map
# --------------------------------------------------------------------------- #
def read_label_map(path: PathLike) -> dict[str, str]:
    """Read a map from the authors' cell labels to :data:`~cd8exo.vocabulary.CELL_TYPES`.

    Parameters
    ----------
    path
        A TSV with columns ``label`` and ``cell_type`` (more columns, e.g. a comment,
        are ignored). A ``label`` of ``*`` maps every label not listed.

    Returns
    -------
    Label -> cell type.

    Raises
    ------
    InputError
        A ``cell_type`` outside the vocabulary (naming the row and the allowed values),
        an empty field, or a label mapped twice to different cell types.
    """
    table = read_tsv(path, required_columns=["label", "cell_type"], what="label map", dtype=str)
    label_map: dict[str, str] = {}
    for row_number, (label, cell_type) in enumerate(
        zip(table["label"], table["cell_type"], strict=True), start=1
    ):
        where = f"{path}, row {row_number} (label {label!r})"
        if pd.isna(label) or pd.isna(cell_type) or not str(label).strip():
            msg = f"{where}: both label and cell_type must be filled in."
            raise InputError(msg)
        label, cell_type = str(label).strip(), str(cell_type).strip()
        if cell_type not in CELL_TYPES:
            msg = (
                f"{where}: cell_type {cell_type!r} is not in the vocabulary; allowed values "
                f"are {', '.join(CELL_TYPES)}."
            )
            raise InputError(msg)
        if label in label_map and label_map[label] != cell_type:
            msg = (
                f"{where}: label {label!r} is mapped twice, to {label_map[label]!r} and "
                f"{cell_type!r}; keep one row."
            )
            raise InputError(msg)
        label_map[label] = cell_type
    return label_map


# --------------------------------------------------------------------------- #
# Harmonise
# --------------------------------------------------------------------------- #
def harmonise(
    adata: ad.AnnData,
    *,
    dataset: str,
    patient_column: str,
    cell_type_column: str | None = None,
    label_map: Mapping[str, str] | None = None,
    sample_column: str | None = None,
    malignant_column: str | None = None,
    value_scale: str = "auto",
) -> ad.AnnData:
    """Build the harmonised AnnData of one dataset.

    Parameters
    ----------
    adata
        Cells x genes as read by :func:`cd8exo.io.read_dataset`; not modified.
    dataset
        Dataset id, stored in ``uns["cd8exo"]["dataset"]``.
    patient_column
        ``obs`` column with the patient (donor) id.
    cell_type_column
        ``obs`` column with the authors' cell labels. None: the dataset has no labels;
        every cell gets ``cell_type`` ``"other"`` (``"malignant"`` where
        ``malignant_column`` says so) and ``cell_type_original`` ``"unlabelled"``, and
        the workflow infers CD8 T cells and malignant cells (:mod:`cd8exo.identity`).
    label_map
        Authors' label -> cell type in :data:`~cd8exo.vocabulary.CELL_TYPES`
        (see :func:`read_label_map`); ``"*"`` maps every label not listed. Required
        with ``cell_type_column``, not allowed without it.
    sample_column
        ``obs`` column with the sample id; default: the patient.
    malignant_column
        ``obs`` column marking malignant cells (bool, 0/1, true/false, yes/no,
        malignant/non-malignant); default: ``cell_type == "malignant"``.
    value_scale
        ``"auto"`` (see :func:`detect_value_scale`) or one of
        :data:`~cd8exo.vocabulary.VALUE_SCALES`.

    Returns
    -------
    A new AnnData with the contract ``obs`` columns (``patient``, ``sample``,
    ``cell_type`` categorical over all of CELL_TYPES, ``cell_type_original``,
    ``malignant``) followed by the other original columns (an original column whose
    name is taken by the contract is kept as ``<name>_input``), unique gene symbols as
    ``var_names``, ``X`` CSR float32, ``layers["counts"]`` for counts, and
    ``uns["cd8exo"] = {"dataset", "value_scale", "log_normalised": False, ...}``.

    Notes
    -----
    Duplicated gene symbols (e.g. two Ensembl ids with one symbol) are merged: for
    counts the duplicates are summed (all molecules of the symbol); for normalised
    values the gene with the highest mean over cells is kept (summing log values is
    meaningless). The duplicated symbols are logged by name.
    """
    obs = adata.obs
    _check_obs(
        obs,
        dataset=dataset,
        columns={
            "patient_column": patient_column,
            "cell_type_column": cell_type_column,
            "sample_column": sample_column,
            "malignant_column": malignant_column,
        },
    )
    x, value_scale = _counts_layer_or_x(adata, value_scale=value_scale, dataset=dataset)
    scale = _resolve_value_scale(x, value_scale=value_scale, dataset=dataset)
    contract = _contract_obs(
        obs,
        dataset=dataset,
        patient_column=patient_column,
        cell_type_column=cell_type_column,
        label_map=label_map,
        sample_column=sample_column,
        malignant_column=malignant_column,
    )
    new_obs = _with_original_columns(
        contract,
        obs,
        sources={patient_column, cell_type_column, sample_column, malignant_column},
        dataset=dataset,
    )
    x_csr = (
        sp.csr_matrix(x, dtype=np.float32)
        if sp.issparse(x)
        else sp.csr_matrix(np.asarray(x, dtype=np.float32))
    )
    x_csr, var = unique_symbols(x_csr, adata.var, scale=scale, dataset=dataset)

    uns = {
        "dataset": dataset,
        "value_scale": scale,
        "log_normalised": False,
        "patient_column": patient_column,
        "cell_type_column": cell_type_column or "",
        "sample_column": sample_column or "",
        "malignant_column": malignant_column or "",
    }
    result = ad.AnnData(X=x_csr, obs=new_obs, var=var, uns={"cd8exo": uns})
    if scale == "counts":
        result.layers["counts"] = x_csr.copy()
    logger.info(
        "Dataset %r harmonised: %d cells, %d genes, %d patients, value scale %s; cell types %s",
        dataset,
        result.n_obs,
        result.n_vars,
        contract["patient"].nunique(),
        scale,
        contract["cell_type"].value_counts().to_dict(),
    )
    return result


def _check_obs(obs: pd.DataFrame, *, dataset: str, columns: Mapping[str, str | None]) -> None:
    """The named ``obs`` columns exist (``columns``: argument -> column) and cell ids are unique."""
    for argument, column in columns.items():
        if column is not None and column not in obs.columns:
            msg = (
                f"Dataset {dataset!r}: {argument} {column!r} is not a column of the cell "
                f"metadata; available columns are {list(obs.columns)}. Fix the dataset's "
                f"{argument} in the config."
            )
            raise InputError(msg)

    if not obs.index.is_unique:
        duplicated = obs.index[obs.index.duplicated()].unique()[:5].tolist()
        msg = (
            f"Dataset {dataset!r}: cell ids are not unique (e.g. {duplicated}); patient-level "
            "summaries match cells by id. Make them unique when reading (e.g. prefix each "
            "sample's barcodes with the sample id)."
        )
        raise InputError(msg)


def _cell_types(
    obs: pd.DataFrame,
    *,
    dataset: str,
    cell_type_column: str | None,
    label_map: Mapping[str, str] | None,
) -> tuple[pd.Series, pd.Series]:
    """(cell type, original label) of every cell, from the authors' labels and the label map."""
    if (cell_type_column is None) != (label_map is None):
        given, absent = (
            ("cell_type_column", "label_map")
            if label_map is None
            else ("label_map", "cell_type_column")
        )
        msg = (
            f"Dataset {dataset!r}: {given} is given but {absent} is not. Give both (the "
            "authors' label column and the map of its labels onto the vocabulary), or "
            "neither for a dataset without labels (CD8 T and malignant cells are then inferred)."
        )
        raise InputError(msg)
    if cell_type_column is None:
        cell_type = pd.Series("other", index=obs.index, dtype=object)
        original = pd.Series(UNLABELLED, index=obs.index, dtype=object)
        return cell_type, original
    return _map_labels(obs[cell_type_column], label_map, dataset=dataset)


def _contract_obs(
    obs: pd.DataFrame,
    *,
    dataset: str,
    patient_column: str,
    cell_type_column: str | None,
    label_map: Mapping[str, str] | None,
    sample_column: str | None,
    malignant_column: str | None,
) -> pd.DataFrame:
    """The contract ``obs`` columns: patient, sample, cell_type, cell_type_original, malignant."""
    cell_type, original = _cell_types(
        obs, dataset=dataset, cell_type_column=cell_type_column, label_map=label_map
    )
    patient = _id_column(obs[patient_column], name=patient_column, dataset=dataset)
    sample = (
        patient.copy()
        if sample_column is None
        else _id_column(obs[sample_column], name=sample_column, dataset=dataset)
    )
    if malignant_column is None:
        malignant = (cell_type == "malignant").to_numpy(dtype=bool)
    else:
        malignant = _as_bool(obs[malignant_column], name=malignant_column, dataset=dataset)
    if cell_type_column is None:
        cell_type = cell_type.where(~malignant, "malignant")
        logger.info(
            "Dataset %r has no cell-type labels: cell_type 'other' for every cell%s",
            dataset,
            f" ('malignant' for the {int(malignant.sum())} cells {malignant_column!r} marks)"
            if malignant_column is not None
            else "",
        )

    contract = pd.DataFrame(
        {
            "patient": patient.to_numpy(),
            "sample": sample.to_numpy(),
            "cell_type": cell_type.to_numpy(),
            "cell_type_original": original.to_numpy(),
            "malignant": malignant,
        },
        index=obs.index.copy(),
    )
    for column in ("patient", "sample", "cell_type_original"):
        contract[column] = contract[column].astype("category")
    contract["cell_type"] = pd.Categorical(contract["cell_type"], categories=list(CELL_TYPES))
    return contract


def _with_original_columns(
    contract: pd.DataFrame, obs: pd.DataFrame, *, sources: set[str | None], dataset: str
) -> pd.DataFrame:
    """``contract`` followed by the other original columns (a contract name gets ``_input``)."""
    others = obs.copy()
    renames = {}
    for column in others.columns:
        if column in OBS_COLUMNS and column not in sources:
            renames[column] = f"{column}_input"
    if renames:
        logger.warning(
            "Dataset %r: original obs column(s) %s renamed to %s (the names belong to the "
            "harmonised columns)",
            dataset,
            list(renames),
            list(renames.values()),
        )
        others = others.rename(columns=renames)
    others = others.drop(columns=[c for c in others.columns if c in contract.columns])
    return pd.concat([contract, others], axis=1)


def _counts_layer_or_x(adata: ad.AnnData, *, value_scale: str, dataset: str):
    """(matrix, value scale) to harmonise: ``layers["counts"]`` when ``X`` is not counts.

    A processed h5ad often holds log-normalised values in ``X`` and the raw counts in
    ``layers["counts"]``; the workflow normalises counts itself and sums them for
    pseudobulk, so an integer, non-negative counts layer of the same shape is used
    instead of a non-integer ``X`` (logged). Otherwise ``X`` and ``value_scale`` as given.
    """
    x = adata.X
    layer = adata.layers.get("counts") if "counts" in adata.layers else None
    if layer is None or x is None or _value_summary(x).integer:
        return x, value_scale
    summary = _value_summary(layer)
    usable = summary.finite and summary.integer and summary.size and summary.minimum >= 0
    if not usable or layer.shape != x.shape:
        logger.warning(
            "Dataset %r: X is not integer counts and layers['counts'] is not usable as counts "
            "(%s); X is used as %s",
            dataset,
            "other shape" if layer.shape != x.shape else "non-integer or negative values",
            value_scale,
        )
        return x, value_scale
    logger.info(
        "Dataset %r: X holds non-integer (normalised) values and layers['counts'] integer "
        "counts: the counts layer is used (value scale 'counts'; value_scale %r applied to X)",
        dataset,
        value_scale,
    )
    return layer, "counts"


def _resolve_value_scale(x, *, value_scale: str, dataset: str) -> str:
    if value_scale == "auto":
        try:
            scale = detect_value_scale(x)
        except InputError as error:
            msg = f"Dataset {dataset!r}: {error}"
            raise InputError(msg) from None
        logger.info("Dataset %r: value scale detected as %s", dataset, scale)
        return scale
    if value_scale not in VALUE_SCALES:
        msg = (
            f"Dataset {dataset!r}: value_scale {value_scale!r} is not one of "
            f"{', '.join(VALUE_SCALES)} or 'auto'."
        )
        raise InputError(msg)
    summary = _value_summary(x)
    if not summary.finite:
        msg = f"Dataset {dataset!r}: the expression matrix has NaN or infinite values."
        raise InputError(msg)
    if value_scale == "counts" and not summary.integer:
        msg = (
            f"Dataset {dataset!r}: value_scale is declared 'counts' but {summary.n_fractional} "
            f"values are not integers (e.g. {summary.fractional_examples}). Declare the scale "
            "the values are on ('log1p_norm', 'log2_tpm10') or 'auto', or give raw counts."
        )
        raise InputError(msg)
    if value_scale != "counts" and summary.integer and summary.size and summary.maximum > 0:
        msg = (
            f"Dataset {dataset!r}: value_scale is declared {value_scale!r} but every value is "
            "an integer, as raw counts are. Declare value_scale 'counts' (or 'auto')."
        )
        raise InputError(msg)
    if summary.size and summary.minimum < 0:
        msg = (
            f"Dataset {dataset!r}: the expression matrix has negative values (scaled data?); "
            "give counts or log-normalised values."
        )
        raise InputError(msg)
    return value_scale


def _map_labels(
    labels: pd.Series, label_map: Mapping[str, str], *, dataset: str
) -> tuple[pd.Series, pd.Series]:
    bad = {k: v for k, v in label_map.items() if v not in CELL_TYPES}
    if bad:
        msg = (
            f"Dataset {dataset!r}: the label map maps {bad} outside the vocabulary; allowed "
            f"cell types are {', '.join(CELL_TYPES)}."
        )
        raise InputError(msg)
    original = labels.astype("string").fillna("<missing>").str.strip()
    catch_all = label_map.get(CATCH_ALL)
    mapped = original.map(lambda label: label_map.get(label, catch_all))
    unmapped = original[mapped.isna()]
    if len(unmapped):
        counts = unmapped.value_counts()
        listed = "; ".join(f"{label!r} ({n} cells)" for label, n in counts.items())
        msg = (
            f"Dataset {dataset!r}: {len(counts)} cell label(s) are not in the label map: "
            f"{listed}. Add a row 'label<TAB>cell_type' for each to the dataset's label map "
            f"(cell types: {', '.join(CELL_TYPES)}), or a row '*<TAB>other' to map all "
            "unlisted labels."
        )
        raise InputError(msg)
    return mapped.astype(str), original.astype(str)


def _id_column(values: pd.Series, *, name: str, dataset: str) -> pd.Series:
    missing = values.isna()
    if missing.any():
        msg = (
            f"Dataset {dataset!r}: {int(missing.sum())} cells have no value in column "
            f"{name!r} (e.g. {values.index[missing][:3].tolist()}). Fill it in or drop these "
            "cells before harmonising."
        )
        raise InputError(msg)
    # ids are kept verbatim (leading zeros, inner and surrounding spaces): " 7" and "7" are
    # two patients unless the authors say otherwise; only a blank id is refused
    ids = values.astype(str)
    blank = ids.str.strip() == ""
    if blank.any():
        msg = (
            f"Dataset {dataset!r}: {int(blank.sum())} cells have a blank value in column "
            f"{name!r} (e.g. {values.index[blank][:3].tolist()}). Fill it in or drop these "
            "cells before harmonising."
        )
        raise InputError(msg)
    return ids


def _as_bool(values: pd.Series, *, name: str, dataset: str) -> np.ndarray:
    if pd.api.types.is_bool_dtype(values):
        return values.to_numpy(dtype=bool)
    text = values.astype("string").str.strip().str.lower()
    is_true = text.isin(_TRUE)
    is_false = text.isin(_FALSE)
    unknown = ~(is_true | is_false) | text.isna()
    if unknown.any():
        found = values[unknown.to_numpy()].astype("string").fillna("<missing>").unique().tolist()
        msg = (
            f"Dataset {dataset!r}: malignant_column {name!r} has values {found} that are not "
            f"recognised as true ({sorted(_TRUE)}) or false ({sorted(_FALSE)}). Recode the "
            "column or leave malignant_column empty to use cell_type == 'malignant'."
        )
        raise InputError(msg)
    return is_true.to_numpy(dtype=bool)


# --------------------------------------------------------------------------- #
# Normalisation and linear values
# --------------------------------------------------------------------------- #
