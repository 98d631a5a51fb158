"""Fixtures for running the workflow end to end through Snakemake in a temporary folder."""

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


@pytest.fixture(scope="session")
def small_cohort(tmp_path_factory):
    """A small simulated cohort (12 patients, 2,400 cells) written as h5ad with its truth."""
    from cd8exo.io import read_gmt
    from cd8exo.simulate import label_map, simulate_cohort, write_cohort

    out = tmp_path_factory.mktemp("cohort")
    signatures = read_gmt(ROOT / "resources/gene_sets/senders.gmt")
    targets = pd.read_csv(ROOT / "resources/targets/targets.tsv", sep="\t")
    direction = targets.set_index("gene")["expected_direction"]
    pool = pd.read_csv(ROOT / "resources/genome/gencode_v48_genes_homo_sapiens.csv.gz", header=None)
    pool = sorted(set(pool.loc[pool[4] == "protein_coding", 1]) - {""})
    cohort = simulate_cohort(
        n_patients=12,
        n_cells=2400,
        n_background_genes=600,
        signatures=signatures,
        activation_signatures=[
            "Chu2023_CD8_c2_Teff",
            "Cytotoxic_cells_Danaher2017",
            "Exosome_biogenesis_core_curated",
        ],
        independent_signatures=["Tcell_exhaustion_SignatuR"],
        negative_targets=direction.index[direction == "negative"].tolist(),
        positive_targets=direction.index[direction == "positive"].tolist(),
        null_targets=direction.index[~direction.isin(["negative", "positive"])].tolist(),
        background_pool=pool,
        effect_size=0.6,
        rng=11,
        name="small",
    )
    paths = write_cohort(cohort, out)
    label_map().to_csv(out / "label_map.tsv", sep="\t", index=False)
    return {"cohort": cohort, "dir": out, **paths, "label_map": out / "label_map.tsv"}
