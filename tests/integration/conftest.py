"""Fixtures for running the workflow end to end (helpers in ``workflow_helpers.py``)."""

from __future__ import annotations

import pandas as pd
import pytest
from workflow_helpers import ROOT


@pytest.fixture(scope="session")
def small_cohort(tmp_path_factory):
    """A small simulated cohort (12 patients, 2,400 cells) written as h5ad with its truth."""
    from cd8exo.io.tables import read_gmt
    from cd8exo.sim.cohort import label_map, simulate_cohort
    from cd8exo.sim.demo import write_cohort

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
