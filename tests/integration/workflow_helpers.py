"""Helpers for running the workflow end to end through Snakemake in a temporary folder."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
SNAKEMAKE = Path(sys.executable).parent / "snakemake"


def run_snakemake(workdir: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    """Run the repository's Snakefile in ``workdir`` (outputs land there, not in the repo)."""
    cmd = [str(SNAKEMAKE), "-s", str(ROOT / "Snakefile"), "--directory", str(workdir), *args]
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    result = subprocess.run(cmd, cwd=workdir, capture_output=True, text=True, env=env, timeout=1800)
    if check and result.returncode != 0:
        pytest.fail(
            f"snakemake failed ({result.returncode}):\n{result.stdout[-5000:]}\n{result.stderr[-8000:]}"
        )
    return result


def no_traceback(result: subprocess.CompletedProcess) -> None:
    """A user error ends in a message, never a Python traceback."""
    assert "Traceback" not in result.stdout + result.stderr


def write_config(workdir: Path, rows: list[dict], **overrides) -> Path:
    """A config and dataset sheet in ``workdir`` pointing at the repository's resources."""
    config_dir = workdir / "config"
    config_dir.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows).to_csv(config_dir / "datasets.tsv", sep="\t", index=False)
    config = {
        "datasets": "config/datasets.tsv",
        "seed": 7,
        "signatures": {"gmt": [str(ROOT / "resources/gene_sets/senders.gmt")]},
        "targets": {"table": str(ROOT / "resources/targets/targets.tsv")},
        "embedding": {"n_top_genes": 500, "n_pcs": 15},
    }
    for key, value in overrides.items():
        config.setdefault(key, {}).update(value) if isinstance(value, dict) else config.update(
            {key: value}
        )
    (config_dir / "config.yaml").write_text(yaml.safe_dump(config))
    return config_dir / "config.yaml"


def small_cohort_row(cohort: dict, **extra) -> dict:
    """The dataset-sheet row of the ``small_cohort`` fixture (h5ad with author-style columns)."""
    return {
        "dataset": "small",
        "format": "h5ad",
        "path": str(cohort["h5ad"]),
        "patient_column": "donor_id",
        "sample_column": "sample_id",
        "cell_type_column": "author_cell_type",
        "label_map": str(cohort["label_map"]),
        "value_scale": "counts",
        **extra,
    }
