"""A public dataset read from its verified files and harmonised onto the workflow's contract."""

from __future__ import annotations

import logging
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import anndata as ad
import numpy as np
import pandas as pd
import scipy.sparse as sp

from cd8exo.cells.harmonise import harmonise
from cd8exo.cells.scale import _MAX_LOG_VALUE, detect_value_scale
from cd8exo.errors import InputError
from cd8exo.genes import SymbolTables, load_symbol_tables, map_symbols, select_rows
from cd8exo.io.formats import _READERS
from cd8exo.io.registry import FORMATS
from cd8exo.vocabulary import CELL_TYPES, OBS_COLUMNS, VALUE_SCALES

logger = logging.getLogger(__name__)

__all__ = ["check_harmonised", "read_public"]


# --------------------------------------------------------------------------- #
# Value scale
# --------------------------------------------------------------------------- #
def _resolve_scale(
    x: sp.csr_matrix, declared: str, *, where: str
) -> tuple[sp.csr_matrix, str, str]:
    """Return (values, scale passed to harmonise, scale of the file)."""
    values = x.data
    if values.size and (not np.all(np.isfinite(values)) or values.min() < 0):
        msg = f"{where}: the values contain NaN, infinite or negative numbers; the file looks damaged."
        raise InputError(msg)
    maximum = float(values.max()) if values.size else 0.0
    integer = bool(np.all(values == np.round(values))) if values.size else True
    scale = detect_value_scale(x, allow_tpm=True) if declared == "auto" else declared
    if declared == "auto":
        logger.info("%s: value scale detected as %s", where, scale)
    if scale in ("log2_tpm10", "log1p_norm") and maximum > _MAX_LOG_VALUE:
        msg = (
            f"{where}: value_scale is {scale} but values reach {maximum:.4g}, far above any log "
            "scale: they are linear. Declare value_scale 'tpm' (or 'counts') in the registry."
        )
        raise InputError(msg)
    if scale == "tpm":
        if not integer and maximum <= _MAX_LOG_VALUE:
            msg = (
                f"{where}: value_scale is tpm but the values stay below {maximum:.3g}: they look "
                "log-transformed already. Declare log2_tpm10 or log1p_norm so they are not logged twice."
            )
            raise InputError(msg)
        # stored as log2(TPM/10+1), the Smart-seq2 convention, which linear_values undoes
        x = x.copy()
        x.data = np.log2(x.data.astype(np.float64) / 10.0 + 1.0).astype(np.float32)
        return x, "log2_tpm10", "tpm"
    if scale == "counts" and not integer and maximum <= _MAX_LOG_VALUE:
        msg = (
            f"{where}: value_scale is counts but the values are non-integer and at most "
            f"{maximum:.3g}: they look log-transformed. Declare log2_tpm10 or log1p_norm."
        )
        raise InputError(msg)
    return x, scale, scale


# --------------------------------------------------------------------------- #
# Public entry point and schema check
# --------------------------------------------------------------------------- #
def read_public(
    dataset_id: str,
    files: Mapping[str, str | Path],
    registry_entry: Mapping[str, Any],
    *,
    symbol_tables: SymbolTables | None = None,
    drop_unmapped_genes: bool = False,
) -> ad.AnnData:
    """Read a downloaded public dataset into the harmonised AnnData contract.

    Parameters
    ----------
    dataset_id
        The dataset id (stored in ``uns["cd8exo"]["dataset"]``).
    files
        Role -> local path, for the roles of ``registry_entry["files"]``
        (e.g. ``{"matrix": ..., "annotation": ...}``), as :func:`cd8exo.download.fetch_dataset`
        returns them.
    registry_entry
        From :func:`registry_entry`.
    symbol_tables
        Gene-name tables (default: :func:`cd8exo.genes.load_symbol_tables`).
    drop_unmapped_genes
        Drop genes found in no HGNC/Ensembl table.

    Returns
    -------
    Cells x genes AnnData passing :func:`check_harmonised`: obs ``patient``, ``sample``,
    ``cell_type``, ``cell_type_original`` (the authors' label), ``malignant`` and the authors'
    other columns; unique current HGNC symbols (``var["original_name"]``,
    ``var["symbol_status"]``); ``uns["cd8exo"]`` with ``dataset``, ``value_scale``,
    ``value_scale_original``, ``format``, ``citation``.
    """
    entry = dict(registry_entry)
    entry.setdefault("id", dataset_id)
    where = f"dataset {dataset_id}"
    fmt = entry.get("format")
    if fmt not in _READERS:
        msg = f"{where}: unknown format {fmt!r}; supported: {', '.join(_READERS)}."
        raise InputError(msg)
    paths = {role: Path(path) for role, path in files.items()}
    for role in FORMATS[fmt]:
        if role not in paths:
            msg = f"{where}: no file given for role {role!r} (format {fmt} needs {FORMATS[fmt]})."
            raise InputError(msg)
    for role, path in paths.items():
        if not path.is_file():
            msg = f"{where}: the {role} file {path} does not exist; download it first (cd8exo.download)."
            raise FileNotFoundError(msg)

    obs, genes, x = _READERS[fmt](paths, entry, where=where)
    logger.info("%s: read %d cells x %d genes (%s)", where, x.shape[0], x.shape[1], fmt)

    x, scale, scale_original = _resolve_scale(x, entry["value_scale"], where=where)

    mapping = map_symbols(genes, tables=symbol_tables or load_symbol_tables())
    keep = select_rows(mapping, drop_unmapped=drop_unmapped_genes)
    kept = mapping.loc[keep]
    var = pd.DataFrame(
        {"original_name": kept["original"].to_numpy(), "symbol_status": kept["status"].to_numpy()},
        index=pd.Index(kept["symbol"].to_numpy(), dtype=str),
    )
    x = sp.csr_matrix(x[:, np.flatnonzero(keep)])

    label_map = dict(zip(obs["cell_type_original"], obs["cell_type"], strict=True))
    with warnings.catch_warnings():
        # duplicated symbols are expected here: harmonise merges them by its documented rule
        warnings.filterwarnings("ignore", message="Variable names are not unique")
        raw = ad.AnnData(X=x, obs=obs.drop(columns=["cell_type", "malignant"]), var=var)
    result = harmonise(
        raw,
        dataset=dataset_id,
        patient_column="patient",
        sample_column="sample",
        cell_type_column="cell_type_original",
        label_map=label_map,
        value_scale=scale,
    )
    info = dict(result.uns["cd8exo"])
    info.update(
        {
            "value_scale_original": scale_original,
            "format": fmt,
            "citation": " ".join(str(entry.get("citation", "")).split()),
            "source": str(entry.get("source", "")),
        }
    )
    result.uns["cd8exo"] = info
    check_harmonised(result)
    return result


def check_harmonised(adata: ad.AnnData) -> None:
    """Check an AnnData against the harmonised contract before analysis.

    Checks: at least one cell and gene; ``obs`` has ``patient``, ``sample``, ``cell_type``,
    ``cell_type_original`` (categorical, no missing values) and ``malignant`` (bool);
    ``cell_type`` categories within :data:`~cd8exo.vocabulary.CELL_TYPES`; ``var_names``
    unique, non-empty strings; ``X`` CSR float32 with finite, non-negative values (also
    ``layers["counts"]`` if present); ``uns["cd8exo"]`` with ``dataset`` and a
    ``value_scale`` in :data:`~cd8exo.vocabulary.VALUE_SCALES`.

    Raises
    ------
    ValueError
        Listing every problem found, with the dataset id.
    """
    info = adata.uns.get("cd8exo")
    dataset = info.get("dataset", "?") if isinstance(info, Mapping) else "?"
    problems: list[str] = []
    if adata.n_obs == 0 or adata.n_vars == 0:
        problems.append(f"it has {adata.n_obs} cells and {adata.n_vars} genes")
    problems += _obs_problems(adata.obs)
    problems += _var_and_matrix_problems(adata)
    problems += _uns_problems(info)
    if problems:
        msg = (
            f"dataset {dataset}: the harmonised AnnData breaks the contract: "
            + "; ".join(problems)
            + ". Fix the reader or the registry entry that produced it."
        )
        raise InputError(msg)


def _obs_problems(obs: pd.DataFrame) -> list[str]:
    """Where ``obs`` breaks the contract: columns, their types, missing values, vocabulary."""
    problems: list[str] = []
    for column, kind in OBS_COLUMNS.items():
        if column not in obs.columns:
            problems.append(f"obs lacks the column {column!r}")
            continue
        values = obs[column]
        if kind == "category" and not isinstance(values.dtype, pd.CategoricalDtype):
            problems.append(f"obs[{column!r}] is {values.dtype}, not category")
        if kind == "bool" and not pd.api.types.is_bool_dtype(values):
            problems.append(f"obs[{column!r}] is {values.dtype}, not bool")
        if values.isna().any():
            problems.append(f"obs[{column!r}] has {int(values.isna().sum())} missing values")
    if "cell_type" in obs.columns and isinstance(obs["cell_type"].dtype, pd.CategoricalDtype):
        outside = set(obs["cell_type"].cat.categories) - set(CELL_TYPES)
        if outside:
            problems.append(
                f"obs['cell_type'] has categories {sorted(outside)} outside the vocabulary"
            )
    return problems


def _var_and_matrix_problems(adata: ad.AnnData) -> list[str]:
    """Where ``var_names``, ``X`` and the layers break the contract."""
    problems: list[str] = []
    names = pd.Index(adata.var_names)
    if not names.is_unique:
        problems.append(f"var_names are not unique (e.g. {list(names[names.duplicated()][:5])})")
    if (names.astype(str).str.strip() == "").any():
        problems.append("some var_names are empty")
    if not sp.issparse(adata.X) or adata.X.format != "csr":
        problems.append(f"X is {type(adata.X).__name__}, not a CSR sparse matrix")
    if adata.X is not None and adata.X.dtype != np.float32:
        problems.append(f"X is {adata.X.dtype}, not float32")
    for name, matrix in (("X", adata.X), *((f"layers[{k!r}]", v) for k, v in adata.layers.items())):
        if matrix is None:
            continue
        values = matrix.data if sp.issparse(matrix) else np.asarray(matrix)
        if values.size and not np.all(np.isfinite(values)):
            problems.append(f"{name} has NaN or infinite values")
        elif values.size and values.min() < 0:
            problems.append(f"{name} has negative values (min {values.min():.3g})")
    return problems


def _uns_problems(info: object) -> list[str]:
    """Where ``uns["cd8exo"]`` breaks the contract."""
    if not isinstance(info, Mapping):
        return ["uns['cd8exo'] is missing"]
    problems: list[str] = []
    if not info.get("dataset"):
        problems.append("uns['cd8exo']['dataset'] is missing")
    if info.get("value_scale") not in VALUE_SCALES:
        problems.append(
            f"uns['cd8exo']['value_scale'] is {info.get('value_scale')!r}, not one of {VALUE_SCALES}"
        )
    return problems
