"""Authors' cell metadata onto the workflow's obs columns (patient, sample, cell type, malignant)."""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd

from cd8exo.errors import InputError
from cd8exo.vocabulary import OBS_COLUMNS

logger = logging.getLogger(__name__)

__all__ = [
    "CELLXGENE_CELL_TYPES",
    "CELLXGENE_CELL_TYPE_PATTERNS",
    "derive_obs",
    "map_cellxgene_obs",
]

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
        raise InputError(msg)
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
            raise InputError(msg)
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
            raise InputError(msg)
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
        raise InputError(msg)
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


def _numeric_columns(table: pd.DataFrame) -> pd.DataFrame:
    table = table.copy()
    for column in table.columns:
        if table[column].dtype == object:
            converted = pd.to_numeric(table[column], errors="coerce")
            if converted.notna().all() and len(converted):
                table[column] = converted
    return table
