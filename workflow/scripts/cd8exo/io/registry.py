"""The public-dataset registry (resources/datasets/registry.yaml): reading, templates, validation."""

from __future__ import annotations

import copy
import logging
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from cd8exo.errors import InputError
from cd8exo.vocabulary import CELL_TYPES, VALUE_SCALES

logger = logging.getLogger(__name__)

__all__ = ["DEFAULT_REGISTRY", "FORMATS", "load_registry", "registry_entry"]

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
        raise InputError(msg)
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
                raise InputError(msg)
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
            raise InputError(msg)
    entry["id"] = dataset_id
    _validate_entry(entry, where=f"{where}, dataset {dataset_id}")
    return entry


def _validate_entry(entry: Mapping[str, Any], *, where: str) -> None:
    fmt = entry.get("format")
    problems = _file_problems(entry, fmt=fmt)
    if entry.get("value_scale") not in REGISTRY_SCALES:
        scales = ", ".join(REGISTRY_SCALES)
        problems.append(f"value_scale {entry.get('value_scale')!r} is not one of {scales}")
    problems += _census_problems(entry, fmt=fmt) + _label_problems(entry, fmt=fmt)
    if problems:
        msg = f"{where}: " + "; ".join(problems) + " (see resources/datasets/README.md)."
        raise InputError(msg)


def _files(entry: Mapping[str, Any]) -> Mapping[str, Any]:
    files = entry.get("files")
    return files if isinstance(files, Mapping) else {}


def _file_problems(entry: Mapping[str, Any], *, fmt: Any) -> list[str]:
    problems: list[str] = []
    if fmt not in FORMATS:
        problems.append(f"format {fmt!r} is not one of {', '.join(FORMATS)}")
    files = _files(entry)
    if not files:
        problems.append("`files` must map roles to {url, filename, sha256}")
    for role, spec in files.items():
        if not isinstance(spec, Mapping) or not spec.get("filename"):
            problems.append(f"files.{role} needs a filename")
        elif spec.get("sha256") and not re.fullmatch(r"[0-9a-fA-F]{64}", str(spec["sha256"])):
            problems.append(f"files.{role}.sha256 is not 64 hex digits")
    if fmt in FORMATS:
        problems += [
            f"format {fmt} needs a file with role {role!r}"
            for role in FORMATS[fmt]
            if role not in files
        ]
    return problems


def _census_problems(entry: Mapping[str, Any], *, fmt: Any) -> list[str]:
    census = entry.get("census")
    if census is None:
        return []
    if not isinstance(census, Mapping) or not isinstance(census.get("obs_value_filter"), str):
        return ["`census` needs an `obs_value_filter` (SOMA value-filter text)"]
    if fmt != "h5ad_cellxgene" or any(
        isinstance(spec, Mapping) and spec.get("url") for spec in _files(entry).values()
    ):
        return ["a `census` entry has format h5ad_cellxgene and no file url"]
    return []


def _label_problems(entry: Mapping[str, Any], *, fmt: Any) -> list[str]:
    problems: list[str] = []
    obs = entry.get("obs")
    obs_incomplete = not isinstance(obs, Mapping) or "patient" not in obs or "label" not in obs
    if fmt != "h5ad_cellxgene" and obs_incomplete:
        problems.append("`obs` needs `patient` and `label`")
    problems += [
        f"cell_types maps {label!r} to {cell_type!r}, not in {', '.join(CELL_TYPES)}"
        for label, cell_type in (entry.get("cell_types") or {}).items()
        if cell_type not in CELL_TYPES
    ]
    for pair in entry.get("cell_type_patterns") or []:
        if not (isinstance(pair, Sequence) and len(pair) == 2 and pair[1] in CELL_TYPES):
            problems.append(f"cell_type_patterns item {pair!r} must be [regex, cell type]")
            continue
        try:
            re.compile(pair[0])
        except re.error as error:
            problems.append(f"cell_type_patterns regex {pair[0]!r}: {error}")
    return problems
