"""Schema validation of config.yaml and datasets.tsv: good configs pass with defaults, bad ones fail clearly."""

from pathlib import Path

import pandas as pd
import pytest
import yaml

from cd8exo.config import (
    ConfigError,
    load_schema,
    read_datasets,
    validate_config,
    validate_datasets,
)

ROOT = Path(__file__).resolve().parents[2]
CONFIG_SCHEMA = load_schema(ROOT / "workflow/schemas/config.schema.yaml")
DATASETS_SCHEMA = load_schema(ROOT / "workflow/schemas/datasets.schema.yaml")


def test_shipped_config_is_valid_and_complete():
    config = yaml.safe_load((ROOT / "config/config.yaml").read_text())
    filled = validate_config(config, CONFIG_SCHEMA)
    assert filled["qc"]["min_genes"] == 200
    assert filled["aggregation"] == {"min_cd8_cells": 10, "min_malignant_cells": 20}
    assert filled["signatures"]["gmt"] == ["resources/gene_sets/senders.gmt"]


def test_defaults_fill_missing_sections():
    filled = validate_config({"datasets": "x.tsv"}, CONFIG_SCHEMA)
    assert filled["qc"] == {"min_genes": 200, "max_mito_fraction": 0.2}
    assert filled["seed"] == 20261126
    assert filled["scoring"]["method"] == "tirosh"
    assert filled["association"]["min_patients"] == 6


def test_validation_does_not_mutate_input():
    config = {"datasets": "x.tsv"}
    validate_config(config, CONFIG_SCHEMA)
    assert config == {"datasets": "x.tsv"}


@pytest.mark.parametrize(
    ("config", "expected"),
    [
        (
            {"datasets": "x.tsv", "qc": {"min_gene": 100}},
            "unknown key(s) 'min_gene' under 'qc'; allowed keys: max_mito_fraction, min_genes",
        ),
        (
            {"datasets": "x.tsv", "sed": 1},
            "unknown key(s) 'sed' at the top level",
        ),
        (
            {"datasets": "x.tsv", "qc": {"min_genes": "many"}},
            "key 'qc.min_genes' must be of type integer, got 'many'",
        ),
        (
            {"datasets": "x.tsv", "scoring": {"method": "magic"}},
            "key 'scoring.method' must be one of 'tirosh', got 'magic'",
        ),
        (
            {"datasets": "x.tsv", "qc": {"max_mito_fraction": 1.5}},
            "key 'qc.max_mito_fraction' must be <= 1, got 1.5",
        ),
        (
            {"datasets": "x.tsv", "signatures": {"gmt": ["sets.txt"]}},
            "key 'signatures.gmt.0' must match the pattern",
        ),
        ({"datasets": "x.tsv", "seed": -1}, "key 'seed' must be >= 0, got -1"),
    ],
)
def test_bad_config_names_key_and_allowed_values(config, expected):
    with pytest.raises(ConfigError) as info:
        validate_config(config, CONFIG_SCHEMA, source="config/config.yaml")
    message = str(info.value)
    assert message.startswith("invalid configuration in config/config.yaml:")
    assert expected in message


def test_all_problems_reported_at_once():
    config = {"datasets": "x.tsv", "qc": {"min_genes": -1, "max_mito_fraction": "high"}}
    with pytest.raises(ConfigError) as info:
        validate_config(config, CONFIG_SCHEMA)
    lines = [line for line in str(info.value).splitlines() if line.startswith("  - ")]
    assert len(lines) == 2


def _sheet(tmp_path: Path, rows: list[dict]) -> pd.DataFrame:
    path = tmp_path / "datasets.tsv"
    pd.DataFrame(rows).to_csv(path, sep="\t", index=False)
    return read_datasets(path)


@pytest.fixture
def files(tmp_path):
    (tmp_path / "data.h5ad").write_text("x")
    (tmp_path / "labels.tsv").write_text("label\tcell_type\n")
    (tmp_path / "tenx").mkdir()
    (tmp_path / "cells.tsv").write_text("cell\n")
    return tmp_path


GOOD = {
    "dataset": "cohort_1",
    "format": "h5ad",
    "path": "data.h5ad",
    "patient_column": "donor",
    "cell_type_column": "annotation",
    "label_map": "labels.tsv",
}


def test_good_sheet_with_defaults(files):
    table = validate_datasets(_sheet(files, [GOOD]), DATASETS_SCHEMA, base_dir=files)
    assert list(table.index) == ["cohort_1"]
    assert table.loc["cohort_1", "value_scale"] == "auto"


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"path": "missing.h5ad"}, "row 2 (dataset 'cohort_1'): column 'path': file 'missing.h5ad' does not exist"),
        ({"label_map": "nope.tsv"}, "column 'label_map': file 'nope.tsv' does not exist"),
        ({"format": "loom"}, "column 'format' must be one of 'h5ad', '10x_mtx', got 'loom'"),
        ({"value_scale": "tpm"}, "column 'value_scale' must be one of"),
        ({"dataset": "my data"}, "column 'dataset' must match the pattern"),
        ({"patient_column": ""}, "required column 'patient_column' is missing"),
        ({"format": "10x_mtx", "path": "tenx"}, "required column 'cell_table' is missing"),
        ({"format": "10x_mtx", "cell_table": "cells.tsv"}, "is not a folder; format '10x_mtx' expects a folder"),
    ],
)
def test_bad_sheet_row_is_named(files, change, expected):
    with pytest.raises(ConfigError) as info:
        validate_datasets(_sheet(files, [{**GOOD, **change}]), DATASETS_SCHEMA, base_dir=files)
    assert expected in str(info.value)


def test_unknown_column_and_duplicate_ids(files):
    rows = [{**GOOD, "patient_colum": "x"}, {**GOOD}]
    with pytest.raises(ConfigError) as info:
        validate_datasets(_sheet(files, rows), DATASETS_SCHEMA, base_dir=files)
    message = str(info.value)
    assert "unknown column(s) 'patient_colum'" in message
    assert "dataset ids must be unique; repeated: cohort_1" in message


def test_10x_row_with_cell_table_is_valid(files):
    row = {**GOOD, "format": "10x_mtx", "path": "tenx", "cell_table": "cells.tsv"}
    table = validate_datasets(_sheet(files, [row]), DATASETS_SCHEMA, base_dir=files)
    assert table.loc["cohort_1", "cell_table"] == "cells.tsv"


def test_missing_sheet_is_a_clear_error(tmp_path):
    with pytest.raises(ConfigError, match="dataset sheet .* does not exist"):
        read_datasets(tmp_path / "none.tsv")
