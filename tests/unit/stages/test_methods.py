"""The methods text says what was run: parameters from the config, versions, references."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import yaml

from cd8exo.config import load_schema, validate_config
from cd8exo.stages.methods import methods_markdown

ROOT = Path(__file__).resolve().parents[3]


def test_methods_give_parameters_versions_datasets_and_dois():
    config = yaml.safe_load((ROOT / "config/config.yaml").read_text())
    config["qc"]["min_genes"] = 321
    config = validate_config(config, load_schema(ROOT / "workflow/schemas/config.schema.yaml"))
    info = {
        "config": config,
        "software": {"python": "3.11.7", "platform": "Linux", "packages": {"scanpy": "1.11.5"}},
        "inputs": {"config/datasets.tsv": "abc"},
    }
    sheet = pd.read_csv(ROOT / "config/datasets.tsv", sep="\t", dtype=str).set_index("dataset")
    references = pd.read_csv(
        ROOT / "resources/references/references.tsv", sep="\t", dtype=str
    ).fillna("")
    text = methods_markdown(info, sheet=sheet, references=references)
    assert "fewer than 321 detected genes" in text
    assert f"({config['association']['n_perm']} permutations" in text
    assert "scanpy 1.11.5" in text
    assert "7. **Cargo miRNA target sets.** The target sets in resources/targets/" in text
    assert (
        f"against {config['association']['n_random_sets']} random gene sets matched to the set"
        in text
    )
    assert "`demo_cohort`: **SIMULATED**" in text
    assert "doi:[10.7150/thno.58337](https://doi.org/10.7150/thno.58337)" in text
    assert text.count("https://doi.org/") == (references["doi"] != "").sum()
