"""What a run used: software versions, the effective config, input checksums and the seed."""

from __future__ import annotations

import platform
import sys
from collections.abc import Iterable, Mapping
from importlib import metadata
from pathlib import Path
from typing import Any

import pandas as pd

from cd8exo._utils import sha256sum

__all__ = ["PACKAGES", "flatten", "run_info"]

#: Distributions whose versions are recorded (those that shape the results).
PACKAGES: tuple[str, ...] = (
    "snakemake",
    "scanpy",
    "anndata",
    "numpy",
    "scipy",
    "pandas",
    "statsmodels",
    "scikit-learn",
    "umap-learn",
    "igraph",
    "leidenalg",
    "infercnvpy",
    "gseapy",
    "matplotlib",
    "h5py",
    "jsonschema",
)


def _version(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "not installed"


def run_info(
    *,
    config: Mapping[str, Any],
    files: Iterable[str | Path],
    packages: Iterable[str] = PACKAGES,
) -> dict[str, Any]:
    """Everything needed to say how a run's results were made.

    Parameters
    ----------
    config
        The configuration actually used (after schema defaults).
    files
        Input files to checksum (gene sets, target table, dataset sheet, ...).
    packages
        Distributions whose installed versions are recorded.

    Returns
    -------
    A plain dictionary (YAML-serialisable): ``seed``, ``software`` (python, platform,
    package versions), ``inputs`` (path -> sha256) and ``config``.
    """
    return {
        "seed": config.get("seed"),
        "software": {
            "python": sys.version.split()[0],
            "platform": platform.platform(),
            "packages": {name: _version(name) for name in packages},
        },
        "inputs": {str(path): sha256sum(path) for path in files},
        "config": _plain(config),
    }


def _plain(value: Any) -> Any:
    """Snakemake's config objects -> plain dicts and lists."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def flatten(info: Mapping[str, Any], prefix: str = "") -> pd.DataFrame:
    """Two-column table (``item``, ``value``) of a nested run-info dictionary, for the report."""
    rows: list[tuple[str, str]] = []

    def walk(node: Any, key: str) -> None:
        if isinstance(node, Mapping) and node:
            for k, v in node.items():
                walk(v, f"{key}.{k}" if key else str(k))
        else:
            rows.append((key, ", ".join(map(str, node)) if isinstance(node, list) else str(node)))

    walk(info, prefix)
    return pd.DataFrame(rows, columns=["item", "value"])
