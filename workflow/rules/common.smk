# Helpers shared by every rule file: configuration validation and target lists.

import sys
from pathlib import Path

sys.path.insert(0, str(Path(workflow.basedir) / "workflow" / "scripts"))

from cd8exo.config import (  # noqa: E402
    ConfigError,
    load_schema,
    read_datasets,
    validate_config,
    validate_datasets,
)

SCHEMAS = Path(workflow.basedir) / "workflow" / "schemas"

# A user error in the config stops here with one readable message, not a traceback.
try:
    config = validate_config(
        config, load_schema(SCHEMAS / "config.schema.yaml"), source="the configuration"
    )
    DATASETS = validate_datasets(
        read_datasets(config["datasets"]),
        load_schema(SCHEMAS / "datasets.schema.yaml"),
        source=config["datasets"],
    )
except ConfigError as error:
    sys.stderr.write(f"cd8exo: {error}\n")
    sys.exit(1)


wildcard_constraints:
    dataset="|".join(DATASETS.index),


def dataset_row(wildcards):
    """The validated dataset-sheet row of a job's dataset."""
    return DATASETS.loc[wildcards.dataset].dropna().to_dict()


def dataset_inputs(wildcards):
    """Files a dataset is read from (so Snakemake reruns when they change)."""
    row = dataset_row(wildcards)
    files = {"label_map": row["label_map"]}
    files["data"] = row["path"]  # an h5ad file or a 10x folder
    if "cell_table" in row:
        files["cell_table"] = row["cell_table"]
    return files


def truth_datasets():
    """Datasets with a planted truth (simulated cohorts)."""
    return [d for d, row in DATASETS.iterrows() if isinstance(row.get("truth"), str)]


def final_outputs():
    """Everything `rule all` asks for."""
    per_dataset = [
        "results/filter_cells/{dataset}.removed.tsv",
        "results/score_signatures/{dataset}.coverage.tsv",
        "results/aggregate_patients/{dataset}.excluded.tsv",
        "results/plots/{dataset}/umap.png",
        "results/plots/{dataset}/sender_scores.png",
        "results/plots/{dataset}/rho_heatmap.png",
        "results/plots/{dataset}/scatter",
    ]
    outputs = expand(per_dataset, dataset=DATASETS.index)
    outputs.append("results/summary/associations.tsv")
    outputs.append("results/summary/patients.tsv")
    if truth_datasets():
        outputs.append("results/summary/truth_check.tsv")
    return outputs
