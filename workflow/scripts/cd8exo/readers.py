"""Readers of public tumour datasets, driven by the dataset registry.

``resources/datasets/registry.yaml`` describes each public dataset: where its files are,
their layout, how the patient, the sample and the authors' cell label are derived, how the
labels map onto :data:`cd8exo.vocabulary.CELL_TYPES`, and the scale of the values. A dataset
in a supported layout is added by a registry entry alone (resources/datasets/README.md).

:func:`read_public` turns the downloaded files into the harmonised AnnData contract
(through :func:`cd8exo.harmonise.harmonise`), then :func:`check_harmonised` checks it.
Formats (``format:`` in the registry) and the quirks each one handles:

``text_matrix``
    A delimited genes x cells table (GEO's CSV/TSV supplements), optionally followed by an
    annotation table. Handles: a header with or without a corner cell over the gene column
    (detected from the field count of the next row); R ``write.csv`` quoting; gene names in
    single quotes (GSE103322: ``'C9orf152'``); ``matrix.metadata_rows`` rows of per-cell
    metadata between the header and the genes (GSE72056: 3, GSE103322: 5), read into
    ``obs`` under their exact names (``"classified  as cancer cell"`` has two spaces);
    cells are selected before the values are read, and the values are read in chunks into a
    sparse matrix, so a large UMI table (GSE131907) never exists densely in memory.
``mtx_tar``
    A tar(.gz) of Matrix Market files (GSE176078): members found by base name (listed under
    ``members``) are streamed out of the archive once into a temporary folder next to it.
``mtx``
    The same layout already unpacked (``matrix``, ``genes``, optional ``barcodes``, and the
    ``annotation`` table, whose row order gives the cells when there is no barcodes file).
``tisch2_h5``
    TISCH2's ``<DS>_expression.h5`` (10x-style HDF5: group ``matrix`` with ``data``,
    ``indices``, ``indptr``, ``shape`` genes x cells, ``barcodes`` and ``features/name``, or
    the older ``genes``/``gene_names``) and ``<DS>_CellMetainfo_table.tsv``.
``h5ad_cellxgene``
    A CELLxGENE h5ad (portal download or a Census query, :func:`cd8exo.census.query_census`): raw counts
    from ``raw.X`` when present, symbols from ``var["feature_name"]`` (else Ensembl ids are
    mapped), and the CELLxGENE schema obs (``donor_id``, ``cell_type``) mapped by
    :func:`map_cellxgene_obs`.

Cell metadata (registry ``obs``): ``keep`` filters cells on column values; ``label`` is a
column, a list of columns (first non-missing value), or ordered ``rules`` (``when``
column values -> a fixed ``label`` or the value of a ``column``, optionally decoded by
``codes``); cells whose label is in ``exclude_labels`` or missing are dropped (counted in the
log). ``patient``/``sample`` name a ``column`` (``"@cell"`` = the cell id) with optional
``regex`` (``template`` fills ``{0}`` = whole match, ``{1}`` ... = groups), ``replace``
(merge ids, e.g. Mel129pa/Mel129pb -> Mel129), ``prefix_patient`` (sample ids made unique
per patient) and ``unmatched: exclude`` (drop cells whose id does not match, logged; the
default is an error). Labels are mapped by ``cell_types`` (exact), then
``cell_type_patterns`` (regex, in order), else ``other`` with a warning naming them.

Value scales (registry ``value_scale``): ``counts``, ``log2_tpm10`` and ``log1p_norm`` are
checked against the values (declared log values above 20 are refused as linear, declared
counts that look logged are refused); ``tpm`` (linear TPM-like) is stored as
log2(TPM/10+1) = ``log2_tpm10``, recorded in ``uns["cd8exo"]["value_scale_original"]``,
so pseudobulk can undo it exactly; ``auto`` uses :func:`detect_value_scale`. Nothing is ever
logged twice: only ``counts`` are log-normalised later, and ``tpm`` is refused if the
values already look logged.

Gene names are cleaned by :mod:`cd8exo.genes` (Excel dates, aliases, Ensembl ids; its
docstring has the duplicate rule).
"""

from __future__ import annotations

import copy
import csv
import logging
import re
import shutil
import tarfile
import tempfile
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import anndata as ad
import numpy as np
import pandas as pd
import scipy.io
import scipy.sparse as sp
import yaml

from cd8exo._utils import is_gzip, open_text
from cd8exo.genes import SymbolTables, load_symbol_tables, map_symbols, select_rows
from cd8exo.harmonise import detect_value_scale as detect_log_or_counts
from cd8exo.harmonise import harmonise
from cd8exo.vocabulary import CELL_TYPES, OBS_COLUMNS, VALUE_SCALES

__all__ = [
    "CELLXGENE_CELL_TYPES",
    "CELLXGENE_CELL_TYPE_PATTERNS",
    "DEFAULT_REGISTRY",
    "FORMATS",
    "check_harmonised",
    "derive_obs",
    "detect_value_scale",
    "load_registry",
    "map_cellxgene_obs",
    "read_public",
    "registry_entry",
]

logger = logging.getLogger(__name__)

DEFAULT_REGISTRY = Path("resources/datasets/registry.yaml")

#: Files (roles) each format needs; optional roles in brackets are not listed.
FORMATS: dict[str, tuple[str, ...]] = {
    "text_matrix": ("matrix",),
    "mtx_tar": ("archive",),
    "mtx": ("matrix", "genes", "annotation"),
    "tisch2_h5": ("expression", "annotation"),
    "h5ad_cellxgene": ("h5ad",),
}
#: Scales a registry entry may declare (``tpm`` and ``auto`` are resolved on reading).
REGISTRY_SCALES = (*VALUE_SCALES, "tpm", "auto")
#: Largest value a log-scaled single-cell matrix can hold (log2(1e6/10+1) = 16.6).
_MAX_LOG_VALUE = 20.0
_MISSING = frozenset({"", "NA", "N/A", "nan", "NaN", "None", "<NA>"})

#: CELLxGENE ``cell_type`` (Cell Ontology names) -> vocabulary, exact matches.
CELLXGENE_CELL_TYPES: dict[str, str] = {
    "malignant cell": "malignant",
    "neoplastic cell": "malignant",
    "CD8-positive, alpha-beta T cell": "CD8_T",
    "CD8-positive, alpha-beta cytotoxic T cell": "CD8_T",
    "CD8-positive, alpha-beta memory T cell": "CD8_T",
    "effector memory CD8-positive, alpha-beta T cell": "CD8_T",
    "central memory CD8-positive, alpha-beta T cell": "CD8_T",
    "naive thymus-derived CD8-positive, alpha-beta T cell": "CD8_T",
    "CD4-positive, alpha-beta T cell": "CD4_T",
    "CD4-positive helper T cell": "CD4_T",
    "regulatory T cell": "CD4_T",
    "natural killer cell": "NK",
    "B cell": "B",
    "plasma cell": "plasma",
    "plasmablast": "plasma",
    "macrophage": "myeloid",
    "monocyte": "myeloid",
    "dendritic cell": "myeloid",
    "myeloid cell": "myeloid",
    "fibroblast": "fibroblast",
    "endothelial cell": "endothelial",
    "T cell": "other",
    "mast cell": "other",
}
#: Then these patterns, in order (e.g. all "... CD8-positive ..." T cells).
CELLXGENE_CELL_TYPE_PATTERNS: tuple[tuple[str, str], ...] = (
    (r"(malignant|neoplastic)", "malignant"),
    (r"CD4-positive, CD8-positive|double", "other"),
    (r"natural killer T|NK T", "other"),
    (r"CD8-positive", "CD8_T"),
    (r"CD4-positive|T-helper|regulatory T", "CD4_T"),
    (r"natural killer", "NK"),
    (r"plasma", "plasma"),
    (r"\bB cell", "B"),
    (r"macrophage|monocyte|dendritic|microglia|myeloid|neutrophil", "myeloid"),
    (r"fibroblast", "fibroblast"),
    (r"endothelial", "endothelial"),
)


# --------------------------------------------------------------------------- #
# Registry
# --------------------------------------------------------------------------- #
def load_registry(path: str | Path = DEFAULT_REGISTRY) -> dict[str, Any]:
    """Read the dataset registry (``datasets`` and ``templates``).

    Parameters
    ----------
    path
        The registry YAML.

    Returns
    -------
    ``{"datasets": {id: entry}, "templates": {name: template}, "path": path}``.
    """
    path = Path(path)
    if not path.is_file():
        msg = f"dataset registry {path} not found; run from the repository root or pass its path."
        raise FileNotFoundError(msg)
    with open(path, encoding="utf-8") as handle:
        content = yaml.safe_load(handle) or {}
    if not isinstance(content.get("datasets", {}), dict):
        msg = f"{path}: `datasets` must be a mapping of dataset id -> entry."
        raise ValueError(msg)
    return {
        "datasets": content.get("datasets") or {},
        "templates": content.get("templates") or {},
        "path": str(path),
    }


def _merge(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    merged = copy.deepcopy(dict(base))
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping) and key != "files":
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def _fill(value: Any, fields: Mapping[str, str]) -> Any:
    if isinstance(value, str):
        for name, text in fields.items():
            value = value.replace("{" + name + "}", text)
        return value
    if isinstance(value, list):
        return [_fill(item, fields) for item in value]
    if isinstance(value, Mapping):
        return {key: _fill(item, fields) for key, item in value.items()}
    return value


def registry_entry(
    dataset_id: str, *, registry: Mapping[str, Any] | str | Path = DEFAULT_REGISTRY
) -> dict[str, Any]:
    """The validated registry entry of ``dataset_id`` (``extends`` and templates resolved).

    Parameters
    ----------
    dataset_id
        An id of ``datasets``, or an id matching a template's ``id_pattern``
        (e.g. ``TISCH2_SKCM_GSE72056``).
    registry
        A registry from :func:`load_registry`, or its path.

    Returns
    -------
    The entry, with ``id`` set.
    """
    if not isinstance(registry, Mapping):
        registry = load_registry(registry)
    datasets, templates = registry["datasets"], registry["templates"]
    where = registry.get("path", "the registry")
    if dataset_id in datasets:
        entry = dict(datasets[dataset_id])
        seen = [dataset_id]
        while "extends" in entry:
            parent = entry.pop("extends")
            if parent not in datasets or parent in seen:
                msg = f"{where}: {seen[-1]} extends {parent!r}, which is unknown or circular."
                raise ValueError(msg)
            seen.append(parent)
            entry = _merge(datasets[parent], entry)
    else:
        for name, template in templates.items():
            match = re.match(template.get("id_pattern", "(?!)"), dataset_id)
            if match:
                entry = _fill(
                    {k: v for k, v in template.items() if k != "id_pattern"}, match.groupdict()
                )
                entry["template"] = name
                break
        else:
            patterns = {name: t.get("id_pattern") for name, t in templates.items()}
            msg = (
                f"dataset {dataset_id!r} is not in {where}: known ids are "
                f"{', '.join(sorted(datasets))}, or ids matching the templates {patterns}. "
                "Add an entry (see resources/datasets/README.md) or fix the id in config/datasets.tsv."
            )
            raise ValueError(msg)
    entry["id"] = dataset_id
    _validate_entry(entry, where=f"{where}, dataset {dataset_id}")
    return entry


def _validate_entry(entry: Mapping[str, Any], *, where: str) -> None:
    problems: list[str] = []
    fmt = entry.get("format")
    if fmt not in FORMATS:
        problems.append(f"format {fmt!r} is not one of {', '.join(FORMATS)}")
    files = entry.get("files")
    if not isinstance(files, Mapping) or not files:
        problems.append("`files` must map roles to {url, filename, sha256}")
        files = {}
    for role, spec in files.items():
        if not isinstance(spec, Mapping) or not spec.get("filename"):
            problems.append(f"files.{role} needs a filename")
        elif spec.get("sha256") and not re.fullmatch(r"[0-9a-fA-F]{64}", str(spec["sha256"])):
            problems.append(f"files.{role}.sha256 is not 64 hex digits")
    if fmt in FORMATS:
        for role in FORMATS[fmt]:
            if role not in files:
                problems.append(f"format {fmt} needs a file with role {role!r}")
    if entry.get("value_scale") not in REGISTRY_SCALES:
        problems.append(
            f"value_scale {entry.get('value_scale')!r} is not one of {', '.join(REGISTRY_SCALES)}"
        )
    census = entry.get("census")
    if census is not None:
        if not isinstance(census, Mapping) or not isinstance(census.get("obs_value_filter"), str):
            problems.append("`census` needs an `obs_value_filter` (SOMA value-filter text)")
        elif fmt != "h5ad_cellxgene" or any(
            isinstance(spec, Mapping) and spec.get("url") for spec in files.values()
        ):
            problems.append("a `census` entry has format h5ad_cellxgene and no file url")
    obs = entry.get("obs")
    obs_incomplete = not isinstance(obs, Mapping) or "patient" not in obs or "label" not in obs
    if fmt != "h5ad_cellxgene" and obs_incomplete:
        problems.append("`obs` needs `patient` and `label`")
    for label, cell_type in (entry.get("cell_types") or {}).items():
        if cell_type not in CELL_TYPES:
            problems.append(
                f"cell_types maps {label!r} to {cell_type!r}, not in {', '.join(CELL_TYPES)}"
            )
    for pair in entry.get("cell_type_patterns") or []:
        if not (isinstance(pair, Sequence) and len(pair) == 2 and pair[1] in CELL_TYPES):
            problems.append(f"cell_type_patterns item {pair!r} must be [regex, cell type]")
            continue
        try:
            re.compile(pair[0])
        except re.error as error:
            problems.append(f"cell_type_patterns regex {pair[0]!r}: {error}")
    if problems:
        msg = f"{where}: " + "; ".join(problems) + " (see resources/datasets/README.md)."
        raise ValueError(msg)


# --------------------------------------------------------------------------- #
# Cell metadata
# --------------------------------------------------------------------------- #
def _as_text(values: pd.Series) -> pd.Series:
    """Values as stripped strings ("2.0" -> "2"; missing -> "")."""
    text = values.astype("string").fillna("").str.strip()
    text = text.str.replace(r"^(-?\d+)\.0+$", r"\1", regex=True)
    return text.astype(object)


def _column(obs: pd.DataFrame, name: str, *, what: str, where: str) -> pd.Series:
    if name == "@cell":
        return pd.Series(obs.index.astype(str), index=obs.index)
    if name not in obs.columns:
        msg = (
            f"{where}: {what} refers to the column {name!r}, which the data do not have; "
            f"columns found: {[str(c) for c in obs.columns]} (exact spelling, spaces included). "
            "Fix the registry entry."
        )
        raise ValueError(msg)
    return obs[name]


def _derive_label(obs: pd.DataFrame, spec: Mapping[str, Any], *, where: str) -> pd.Series:
    if "rules" not in spec:
        columns = spec["column"] if isinstance(spec["column"], list) else [spec["column"]]
        label = pd.Series("", index=obs.index, dtype=object)
        for name in columns:
            values = _as_text(_column(obs, name, what="obs.label", where=where))
            fill = label.isin(_MISSING) & ~values.isin(_MISSING)
            label[fill] = values[fill]
        return label
    label = pd.Series(None, index=obs.index, dtype=object)
    for number, rule in enumerate(spec["rules"], start=1):
        todo = label.isna()
        for name, wanted in (rule.get("when") or {}).items():
            wanted = wanted if isinstance(wanted, list) else [wanted]
            values = _as_text(_column(obs, name, what=f"obs.label rule {number}", where=where))
            todo &= values.isin([str(w) for w in wanted])
        if "label" in rule:
            label[todo] = str(rule["label"])
        elif "column" in rule:
            values = _as_text(
                _column(obs, rule["column"], what=f"obs.label rule {number}", where=where)
            )
            codes = {str(k): str(v) for k, v in (rule.get("codes") or {}).items()}
            label[todo] = values[todo].map(lambda v, codes=codes: codes.get(v, v))
        else:
            msg = f"{where}: obs.label rule {number} needs `label` or `column`."
            raise ValueError(msg)
    return label.fillna("")


def _derive_id(
    obs: pd.DataFrame, spec: Mapping[str, Any], *, what: str, where: str
) -> tuple[pd.Series, pd.Series]:
    """Return (ids, ok mask) from an id spec (column, regex, template, replace)."""
    values = _as_text(_column(obs, spec["column"], what=f"obs.{what}", where=where))
    ok = ~values.isin(_MISSING)
    regex = spec.get("regex")
    if regex is not None:
        pattern = re.compile(regex)
        template = spec.get("template") or ("{1}" if pattern.groups else "{0}")

        def extract(value: str) -> str | None:
            match = pattern.match(value)
            return None if match is None else template.format(match.group(0), *match.groups())

        extracted = values.map(extract)
        ok &= extracted.notna()
        values = extracted.fillna("")
    elif spec.get("template"):
        values = values.map(lambda value: spec["template"].format(value))
    replace = {str(k): str(v) for k, v in (spec.get("replace") or {}).items()}
    if replace:
        values = values.map(lambda value: replace.get(value, value))
    if not ok.all():
        bad = obs.index[~ok.to_numpy()]
        examples = [str(b) for b in bad[:5]]
        if spec.get("unmatched", "error") == "exclude":
            logger.warning(
                "%s: %d cells have no %s (e.g. %s) and are excluded",
                where,
                len(bad),
                what,
                examples,
            )
        else:
            msg = (
                f"{where}: {len(bad)} cells have no {what} from {dict(spec)} (e.g. {examples}). "
                f"Fix the registry's obs.{what} (regex/column), or add `unmatched: exclude` to "
                "drop such cells."
            )
            raise ValueError(msg)
    return values, ok


def _map_cell_types(
    labels: pd.Series,
    *,
    cell_types: Mapping[str, str],
    patterns: Sequence[Sequence[str]],
    where: str,
) -> pd.Series:
    mapping: dict[str, str] = {}
    defaulted: dict[str, int] = {}
    counts = labels.value_counts()
    for label, n_cells in counts.items():
        if label in cell_types:
            mapping[label] = cell_types[label]
            continue
        for regex, cell_type in patterns:
            if re.search(regex, label):
                mapping[label] = cell_type
                break
        else:
            mapping[label] = "other"
            defaulted[label] = int(n_cells)
    if defaulted:
        logger.warning(
            "%s: labels not in the registry's cell_types, mapped to 'other': %s",
            where,
            "; ".join(f"{label!r} ({n} cells)" for label, n in defaulted.items()),
        )
    return labels.map(mapping)


def derive_obs(
    obs: pd.DataFrame, entry: Mapping[str, Any], *, dataset_id: str | None = None
) -> pd.DataFrame:
    """Derive the contract cell metadata from the authors' table (rules in the module docstring).

    Parameters
    ----------
    obs
        One row per cell, indexed by cell id, with the authors' columns (metadata rows of a
        GEO table, an annotation table, or an h5ad ``obs``). Not modified.
    entry
        The registry entry (its ``obs``, ``cell_types`` and ``cell_type_patterns``).
    dataset_id
        For messages; default ``entry["id"]``.

    Returns
    -------
    The kept cells only (filters, exclusions, unmatched ids dropped), with ``patient``,
    ``sample``, ``cell_type``, ``cell_type_original`` and ``malignant`` first, then the
    authors' columns (one whose name is a contract column is kept as ``<name>_input``).
    """
    dataset_id = dataset_id or entry.get("id", "?")
    where = f"dataset {dataset_id}"
    spec = entry.get("obs") or {}
    keep = pd.Series(True, index=obs.index)
    for name, wanted in (spec.get("keep") or {}).items():
        wanted = wanted if isinstance(wanted, list) else [wanted]
        keep &= _as_text(_column(obs, name, what="obs.keep", where=where)).isin(
            [str(w) for w in wanted]
        )
    if not keep.all():
        logger.info(
            "%s: %d of %d cells kept by obs.keep %s",
            where,
            int(keep.sum()),
            len(keep),
            spec["keep"],
        )

    label = _derive_label(obs, spec["label"], where=where)
    excluded = label.isin([str(x) for x in spec.get("exclude_labels") or []])
    missing = label.isin(_MISSING)
    for mask, why in (
        (excluded & keep, "labels listed in exclude_labels"),
        (missing & keep, "no label"),
    ):
        if mask.any():
            logger.info(
                "%s: %d cells excluded (%s): %s",
                where,
                int(mask.sum()),
                why,
                label[mask].value_counts().to_dict(),
            )
    keep &= ~excluded & ~missing

    patient, ok = _derive_id(obs, spec["patient"], what="patient", where=where)
    keep &= ok
    sample_spec = spec.get("sample")
    if sample_spec is None:
        sample = patient.copy()
    else:
        sample, ok = _derive_id(obs, sample_spec, what="sample", where=where)
        keep &= ok
        if sample_spec.get("prefix_patient"):
            sample = patient + "_" + sample

    if not keep.any():
        msg = f"{where}: no cell is left after the registry's filters and exclusions; check `obs`."
        raise ValueError(msg)
    kept = keep.to_numpy()
    cell_type = _map_cell_types(
        label[kept],
        cell_types={str(k): v for k, v in (entry.get("cell_types") or {}).items()},
        patterns=entry.get("cell_type_patterns") or [],
        where=where,
    )
    contract = pd.DataFrame(
        {
            "patient": patient[kept].astype(str),
            "sample": sample[kept].astype(str),
            "cell_type": cell_type,
            "cell_type_original": label[kept].astype(str),
            "malignant": (cell_type == "malignant").to_numpy(dtype=bool),
        },
        index=obs.index[kept],
    )
    others = _numeric_columns(obs.loc[kept])
    others.columns = [str(c).replace("/", "_") for c in others.columns]  # h5ad keys
    others = others.rename(columns={c: f"{c}_input" for c in others.columns if c in OBS_COLUMNS})
    result = pd.concat([contract, others], axis=1)
    result.index = result.index.astype(str)
    return result


def map_cellxgene_obs(
    obs: pd.DataFrame,
    *,
    cell_types: Mapping[str, str] | None = None,
    cell_type_patterns: Sequence[Sequence[str]] | None = None,
    dataset_id: str = "CELLxGENE",
) -> pd.DataFrame:
    """Map CELLxGENE schema cell metadata onto the contract columns.

    ``patient`` is ``donor_id`` (prefixed with the first 8 characters of ``dataset_id``
    when the cells come from several datasets, since donor ids are only unique within a
    dataset: ``1a2b3c4d:P1``); ``sample`` the first of ``sample_id``, ``sample``,
    ``library_id`` present (else the donor); the label is ``cell_type`` (Cell Ontology
    name), mapped by :data:`CELLXGENE_CELL_TYPES`, then
    :data:`CELLXGENE_CELL_TYPE_PATTERNS`, else ``other`` (logged). Cells with
    ``cell_type`` ``"unknown"`` are excluded.

    Parameters
    ----------
    obs
        CELLxGENE ``obs`` (``donor_id``, ``cell_type``, ...). Not modified.
    cell_types, cell_type_patterns
        Override the default mappings (e.g. from a registry entry).
    dataset_id
        For messages.

    Returns
    -------
    As :func:`derive_obs`.
    """
    sample_column = next(
        (c for c in ("sample_id", "sample", "library_id") if c in obs.columns), None
    )
    patient_column = "donor_id"
    if "dataset_id" in obs.columns and obs["dataset_id"].nunique() > 1 and "donor_id" in obs:
        obs = obs.assign(
            _patient=obs["dataset_id"].astype(str).str[:8] + ":" + obs["donor_id"].astype(str)
        )
        patient_column = "_patient"
        logger.info(
            "%s: cells from %d CELLxGENE datasets; patients are <dataset id[:8]>:<donor_id>",
            dataset_id,
            obs["dataset_id"].nunique(),
        )
    entry = {
        "id": dataset_id,
        "obs": {
            "patient": {"column": patient_column},
            "sample": (
                {"column": sample_column, "prefix_patient": patient_column != "donor_id"}
                if sample_column
                else None
            ),
            "label": {"column": "cell_type"},
            "exclude_labels": ["unknown"],
        },
        "cell_types": dict(CELLXGENE_CELL_TYPES if cell_types is None else cell_types),
        "cell_type_patterns": list(
            CELLXGENE_CELL_TYPE_PATTERNS if cell_type_patterns is None else cell_type_patterns
        ),
    }
    if sample_column is None:
        del entry["obs"]["sample"]
    return derive_obs(obs, entry, dataset_id=dataset_id)


# --------------------------------------------------------------------------- #
# Low-level file reading
# --------------------------------------------------------------------------- #
def _unquote(text: str) -> str:
    text = text.strip()
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "'\"":
        return text[1:-1]
    return text


@dataclass
class _TextLayout:
    cells: list[str]
    corner: bool
    metadata: pd.DataFrame


def _read_text_layout(path: Path, *, sep: str, metadata_rows: int) -> _TextLayout:
    with open_text(path, newline="") as handle:
        reader = csv.reader(handle, delimiter=sep, quotechar='"')
        try:
            header = next(reader)
            rows = [next(reader) for _ in range(metadata_rows)]
            reference = rows[0] if rows else next(reader)
        except StopIteration:
            msg = f"{path}: the file ends before its header, {metadata_rows} metadata rows and a gene row."
            raise ValueError(msg) from None
    if header and reference and header[-1] == "" and reference[-1] == "":
        # a trailing separator on every line: an empty last field that is no cell
        header, reference, rows = header[:-1], reference[:-1], [row[:-1] for row in rows]
    if len(reference) == len(header) + 1:
        corner, cells = False, header
    elif len(reference) == len(header):
        corner, cells = True, header[1:]
    else:
        msg = (
            f"{path}: the header has {len(header)} fields but the next row has {len(reference)}; "
            f"is the separator {sep!r} right (registry matrix.sep)?"
        )
        raise ValueError(msg)
    cells = [_unquote(cell) for cell in cells]
    duplicated = pd.Index(cells)[pd.Index(cells).duplicated()]
    if len(duplicated):
        msg = f"{path}: cell ids occur twice in the header: {list(duplicated[:5])}."
        raise ValueError(msg)
    metadata = pd.DataFrame(index=pd.Index(cells, dtype=str))
    for row in rows:
        if len(row) != len(cells) + 1:
            msg = (
                f"{path}: metadata row {row[0]!r} has {len(row) - 1} values for {len(cells)} cells."
            )
            raise ValueError(msg)
        metadata[_unquote(row[0])] = [value.strip() for value in row[1:]]
    if metadata_rows:
        logger.info("%s: metadata rows %s", path.name, list(metadata.columns))
    return _TextLayout(cells=cells, corner=corner, metadata=metadata)


def _read_text_values(
    path: Path, *, sep: str, layout: _TextLayout, skip_rows: int, cells: Sequence[str]
) -> tuple[list[str], sp.csr_matrix]:
    """Read the gene rows for ``cells`` (in that order): (gene names, cells x genes CSR)."""
    position = {cell: number for number, cell in enumerate(layout.cells)}
    wanted = sorted(position[cell] + 1 for cell in cells)  # +1: the gene-name column
    chunk_rows = max(1, int(2e7 // max(1, len(wanted))))
    reader = pd.read_csv(
        path,
        sep=sep,
        header=None,
        skiprows=skip_rows,
        usecols=[0, *wanted],
        dtype={0: str, **dict.fromkeys(wanted, np.float32)},
        na_filter=False,
        quotechar='"',
        compression="gzip" if is_gzip(path) else None,
        chunksize=chunk_rows,
        engine="c",
    )
    genes: list[str] = []
    blocks: list[sp.csr_matrix] = []
    try:
        for chunk in reader:
            genes.extend(_unquote(name) for name in chunk[0])
            blocks.append(sp.csr_matrix(chunk[wanted].to_numpy(dtype=np.float32)))
    except ValueError as error:
        msg = (
            f"{path}: a value is not a number ({error}). Check matrix.metadata_rows in the "
            "registry (a metadata row read as a gene?) and the separator."
        )
        raise ValueError(msg) from error
    if not blocks:
        msg = f"{path}: no gene rows after the header and metadata rows."
        raise ValueError(msg)
    genes_by_cells = sp.vstack(blocks, format="csr")
    # columns are in file order; put them in the order of `cells`
    file_order = [layout.cells[column - 1] for column in wanted]
    order = pd.Index(file_order).get_indexer(list(cells))
    return genes, sp.csr_matrix(genes_by_cells.T)[order]


def _read_annotation(path: Path, spec: Mapping[str, Any]) -> pd.DataFrame:
    header = spec.get("header", True)
    table = pd.read_csv(
        path,
        sep=spec.get("sep", "\t"),
        dtype=str,
        keep_default_na=False,
        encoding="utf-8-sig",
        header=0 if header else None,
        names=None if header else spec["columns"],
        compression="gzip" if is_gzip(path) else None,
    )
    cell_id = spec.get("cell_id", 0)
    if isinstance(cell_id, int):
        column = table.columns[cell_id]
    elif cell_id in table.columns:
        column = cell_id
    else:
        msg = (
            f"{path}: the cell id column {cell_id!r} (registry annotation.cell_id) is not among "
            f"the columns {list(table.columns)}."
        )
        raise ValueError(msg)
    ids = table[column].map(_unquote)
    table = table.drop(columns=[column])
    table.index = pd.Index(ids, dtype=str)
    table.index.name = None
    duplicated = table.index[table.index.duplicated()]
    if len(duplicated):
        msg = f"{path}: cell ids occur more than once: {list(duplicated[:5])}."
        raise ValueError(msg)
    return table


def _numeric_columns(table: pd.DataFrame) -> pd.DataFrame:
    table = table.copy()
    for column in table.columns:
        if table[column].dtype == object:
            converted = pd.to_numeric(table[column], errors="coerce")
            if converted.notna().all() and len(converted):
                table[column] = converted
    return table


def _align(annotation: pd.DataFrame, matrix_cells: Sequence[str], *, where: str) -> pd.DataFrame:
    present = pd.Index(matrix_cells)
    missing = annotation.index.difference(present)
    if len(missing):
        msg = (
            f"{where}: {len(missing)} annotated cells are not in the expression matrix "
            f"(e.g. {list(missing[:5])}); are the two files from the same release?"
        )
        raise ValueError(msg)
    unannotated = present.difference(annotation.index)
    if len(unannotated):
        logger.warning(
            "%s: %d matrix cells have no annotation and are dropped (e.g. %s)",
            where,
            len(unannotated),
            list(unannotated[:5]),
        )
    return annotation


# --------------------------------------------------------------------------- #
# Format readers: each returns (derived obs, gene names, cells x genes CSR)
# --------------------------------------------------------------------------- #
_Read = tuple[pd.DataFrame, list[str], sp.csr_matrix]


def _read_text_matrix(files: Mapping[str, Path], entry: Mapping[str, Any], *, where: str) -> _Read:
    layout_spec = entry.get("matrix") or {}
    sep = layout_spec.get("sep", "\t")
    metadata_rows = int(layout_spec.get("metadata_rows", 0))
    layout = _read_text_layout(files["matrix"], sep=sep, metadata_rows=metadata_rows)
    if "annotation" in files:
        annotation = _read_annotation(files["annotation"], entry.get("annotation") or {})
        annotation = _align(annotation, layout.cells, where=where)
        raw_obs = annotation.join(layout.metadata, how="left")
    else:
        raw_obs = layout.metadata
    obs = derive_obs(raw_obs, entry)
    genes, x = _read_text_values(
        files["matrix"], sep=sep, layout=layout, skip_rows=1 + metadata_rows, cells=list(obs.index)
    )
    return obs, genes, x


def _lines(path: Path, *, column: int = 0) -> list[str]:
    with open_text(path, newline="") as handle:
        return [
            _unquote(line.rstrip("\r\n").split("\t")[column]) for line in handle if line.strip()
        ]


def _read_mtx_files(
    matrix: Path,
    genes_path: Path,
    annotation_path: Path,
    barcodes_path: Path | None,
    entry: Mapping[str, Any],
    *,
    where: str,
) -> _Read:
    annotation = _read_annotation(annotation_path, entry.get("annotation") or {})
    genes = _lines(genes_path, column=int((entry.get("genes") or {}).get("column", 0)))
    barcodes = _lines(barcodes_path) if barcodes_path is not None else list(annotation.index)
    if barcodes_path is not None:
        annotation = _align(annotation, barcodes, where=where)
    obs = derive_obs(annotation, entry)
    values = scipy.io.mmread(matrix)
    orientation = (entry.get("matrix") or {}).get("orientation", "genes_x_cells")
    values = sp.csc_matrix(values if orientation == "genes_x_cells" else values.T)
    if values.shape != (len(genes), len(barcodes)):
        msg = (
            f"{where}: {matrix.name} is {values.shape[0]} x {values.shape[1]} ({orientation}) but "
            f"there are {len(genes)} genes and {len(barcodes)} cells listed; check "
            "matrix.orientation and that the files belong together."
        )
        raise ValueError(msg)
    columns = pd.Index(barcodes).get_indexer(list(obs.index))
    x = sp.csr_matrix(values[:, columns].T, dtype=np.float32)
    return obs, genes, x


def _read_mtx(files: Mapping[str, Path], entry: Mapping[str, Any], *, where: str) -> _Read:
    return _read_mtx_files(
        files["matrix"],
        files["genes"],
        files["annotation"],
        files.get("barcodes"),
        entry,
        where=where,
    )


def _read_mtx_tar(files: Mapping[str, Path], entry: Mapping[str, Any], *, where: str) -> _Read:
    archive = files["archive"]
    members = dict(entry.get("members") or {})
    for role in ("matrix", "genes", "annotation"):
        if role not in members:
            msg = f"{where}: format mtx_tar needs members.{role} (a file name inside the archive)."
            raise ValueError(msg)
    # stream the archive once; a temporary folder next to it (same disk as the data)
    with tempfile.TemporaryDirectory(dir=archive.parent, prefix=f".{archive.name}.") as folder:
        found: dict[str, Path] = {}
        seen: list[str] = []
        with tarfile.open(archive, "r|*") as tar:
            for member in tar:
                base = PurePosixPath(member.name).name
                seen.append(member.name)
                for role, name in members.items():
                    if base == name and member.isfile() and role not in found:
                        target = Path(folder) / f"{role}_{base}"
                        source = tar.extractfile(member)
                        with source, open(target, "wb") as out:
                            shutil.copyfileobj(source, out, 1 << 20)
                        found[role] = target
        absent = [f"{role} ({members[role]})" for role in members if role not in found]
        if absent:
            msg = (
                f"{where}: {archive.name} lacks {', '.join(absent)}; it holds {seen[:20]}. "
                "Fix `members` in the registry."
            )
            raise ValueError(msg)
        return _read_mtx_files(
            found["matrix"],
            found["genes"],
            found["annotation"],
            found.get("barcodes"),
            entry,
            where=where,
        )


def _strings(dataset: Any) -> list[str]:
    return [
        value.decode("utf-8") if isinstance(value, bytes) else str(value) for value in dataset[()]
    ]


def _read_tisch2_h5(files: Mapping[str, Path], entry: Mapping[str, Any], *, where: str) -> _Read:
    import h5py

    annotation = _read_annotation(
        files["annotation"], entry.get("annotation") or {"cell_id": "Cell"}
    )
    path = files["expression"]
    with h5py.File(path, "r") as handle:
        group = handle["matrix"] if "matrix" in handle else handle[next(iter(handle.keys()))]
        if "features" in group and "name" in group["features"]:
            genes = _strings(group["features"]["name"])
        elif "gene_names" in group:
            genes = _strings(group["gene_names"])
        elif "genes" in group:
            genes = _strings(group["genes"])
        else:
            msg = (
                f"{path}: no gene names (features/name, gene_names or genes) in group {group.name}."
            )
            raise ValueError(msg)
        barcodes = _strings(group["barcodes"])
        shape = tuple(int(n) for n in group["shape"][()])
        if shape != (len(genes), len(barcodes)):
            msg = f"{path}: shape {shape} does not match {len(genes)} genes x {len(barcodes)} barcodes."
            raise ValueError(msg)
        # CSC genes x cells has the same arrays as CSR cells x genes
        x_all = sp.csr_matrix(
            (group["data"][()], group["indices"][()], group["indptr"][()]),
            shape=(len(barcodes), len(genes)),
        )
    annotation = _align(annotation, barcodes, where=where)
    obs = derive_obs(annotation, entry)
    rows = pd.Index(barcodes).get_indexer(list(obs.index))
    return obs, genes, sp.csr_matrix(x_all[rows], dtype=np.float32)


def _read_h5ad_cellxgene(
    files: Mapping[str, Path], entry: Mapping[str, Any], *, where: str
) -> _Read:
    adata = ad.read_h5ad(files["h5ad"])
    if adata.raw is not None:
        x_all, var = adata.raw.X, adata.raw.var
        logger.info("%s: using raw.X (raw counts) of the CELLxGENE file", where)
    else:
        x_all, var = adata.X, adata.var
    genes = (
        list(var["feature_name"].astype(str))
        if "feature_name" in var
        else list(var.index.astype(str))
    )
    if entry.get("obs"):
        obs = derive_obs(adata.obs, entry)
    else:
        obs = map_cellxgene_obs(
            adata.obs,
            cell_types=entry.get("cell_types"),
            cell_type_patterns=entry.get("cell_type_patterns"),
            dataset_id=entry.get("id", "CELLxGENE"),
        )
    rows = adata.obs_names.get_indexer(list(obs.index))
    return obs, genes, sp.csr_matrix(x_all[rows], dtype=np.float32)


_READERS = {
    "text_matrix": _read_text_matrix,
    "mtx_tar": _read_mtx_tar,
    "mtx": _read_mtx,
    "tisch2_h5": _read_tisch2_h5,
    "h5ad_cellxgene": _read_h5ad_cellxgene,
}


# --------------------------------------------------------------------------- #
# Value scale
# --------------------------------------------------------------------------- #
def detect_value_scale(x: np.ndarray | sp.spmatrix) -> str:
    """Scale of a cells x genes matrix: ``counts``, ``tpm``, ``log2_tpm10`` or ``log1p_norm``.

    Integer values are ``counts``; non-integer values above 20 (no log scale reaches it:
    log2(1e6/10+1) = 16.6, ln(1e6+1) = 13.8) are linear ``tpm`` (TPM/CPM-like); the two log
    scales are told apart by :func:`cd8exo.harmonise.detect_value_scale` (which undoes each
    and looks for constant per-cell totals). Negative or non-finite values are an error.
    """
    values = x.data if sp.issparse(x) else np.asarray(x).ravel()
    if values.size and np.all(np.isfinite(values)) and values.min() >= 0:
        integer = bool(np.all(values == np.round(values)))
        if not integer and float(values.max()) > _MAX_LOG_VALUE:
            return "tpm"
    return detect_log_or_counts(x)


def _resolve_scale(
    x: sp.csr_matrix, declared: str, *, where: str
) -> tuple[sp.csr_matrix, str, str]:
    """Return (values, scale passed to harmonise, scale of the file)."""
    values = x.data
    if values.size and (not np.all(np.isfinite(values)) or values.min() < 0):
        msg = f"{where}: the values contain NaN, infinite or negative numbers; the file looks damaged."
        raise ValueError(msg)
    maximum = float(values.max()) if values.size else 0.0
    integer = bool(np.all(values == np.round(values))) if values.size else True
    scale = detect_value_scale(x) if declared == "auto" else declared
    if declared == "auto":
        logger.info("%s: value scale detected as %s", where, scale)
    if scale in ("log2_tpm10", "log1p_norm") and maximum > _MAX_LOG_VALUE:
        msg = (
            f"{where}: value_scale is {scale} but values reach {maximum:.4g}, far above any log "
            "scale: they are linear. Declare value_scale 'tpm' (or 'counts') in the registry."
        )
        raise ValueError(msg)
    if scale == "tpm":
        if not integer and maximum <= _MAX_LOG_VALUE:
            msg = (
                f"{where}: value_scale is tpm but the values stay below {maximum:.3g}: they look "
                "log-transformed already. Declare log2_tpm10 or log1p_norm so they are not logged twice."
            )
            raise ValueError(msg)
        # stored as log2(TPM/10+1), the Smart-seq2 convention, which linear_values undoes
        x = x.copy()
        x.data = np.log2(x.data.astype(np.float64) / 10.0 + 1.0).astype(np.float32)
        return x, "log2_tpm10", "tpm"
    if scale == "counts" and not integer and maximum <= _MAX_LOG_VALUE:
        msg = (
            f"{where}: value_scale is counts but the values are non-integer and at most "
            f"{maximum:.3g}: they look log-transformed. Declare log2_tpm10 or log1p_norm."
        )
        raise ValueError(msg)
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
        raise ValueError(msg)
    paths = {role: Path(path) for role, path in files.items()}
    for role in FORMATS[fmt]:
        if role not in paths:
            msg = f"{where}: no file given for role {role!r} (format {fmt} needs {FORMATS[fmt]})."
            raise ValueError(msg)
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
    for column, kind in OBS_COLUMNS.items():
        if column not in adata.obs.columns:
            problems.append(f"obs lacks the column {column!r}")
            continue
        values = adata.obs[column]
        if kind == "category" and not isinstance(values.dtype, pd.CategoricalDtype):
            problems.append(f"obs[{column!r}] is {values.dtype}, not category")
        if kind == "bool" and not pd.api.types.is_bool_dtype(values):
            problems.append(f"obs[{column!r}] is {values.dtype}, not bool")
        if values.isna().any():
            problems.append(f"obs[{column!r}] has {int(values.isna().sum())} missing values")
    if "cell_type" in adata.obs.columns and isinstance(
        adata.obs["cell_type"].dtype, pd.CategoricalDtype
    ):
        outside = set(adata.obs["cell_type"].cat.categories) - set(CELL_TYPES)
        if outside:
            problems.append(
                f"obs['cell_type'] has categories {sorted(outside)} outside the vocabulary"
            )
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
    if not isinstance(info, Mapping):
        problems.append("uns['cd8exo'] is missing")
    else:
        if not info.get("dataset"):
            problems.append("uns['cd8exo']['dataset'] is missing")
        if info.get("value_scale") not in VALUE_SCALES:
            problems.append(
                f"uns['cd8exo']['value_scale'] is {info.get('value_scale')!r}, not one of {VALUE_SCALES}"
            )
    if problems:
        msg = (
            f"dataset {dataset}: the harmonised AnnData breaks the contract: "
            + "; ".join(problems)
            + ". Fix the reader or the registry entry that produced it."
        )
        raise ValueError(msg)
