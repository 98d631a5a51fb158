"""Schema validation of config.yaml and datasets.tsv: good configs pass with defaults, bad ones fail clearly."""

from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import yaml

from cd8exo.config import load_schema, read_datasets, validate_config, validate_datasets
from cd8exo.errors import ConfigError

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
            "key 'scoring.method' must be one of 'tirosh', 'ucell', 'aucell', 'ssgsea', got 'magic'",
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
    ad.AnnData(np.ones((2, 2), dtype=np.float32)).write_h5ad(tmp_path / "data.h5ad")
    (tmp_path / "labels.tsv").write_text("label\tcell_type\n")
    (tmp_path / "tenx").mkdir()
    (tmp_path / "tenx" / "matrix.mtx").write_text(
        "%%MatrixMarket matrix coordinate integer general\n1 1 0\n"
    )
    (tmp_path / "tenx" / "features.tsv").write_text("CD8A\n")
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
        (
            {"path": "missing.h5ad"},
            "row 2 (dataset 'cohort_1'): column 'path': file 'missing.h5ad' does not exist",
        ),
        ({"label_map": "nope.tsv"}, "column 'label_map': file 'nope.tsv' does not exist"),
        (
            {"format": "loom"},
            "column 'format' must be one of 'h5ad', '10x_mtx', 'text_matrix', got 'loom'",
        ),
        ({"value_scale": "tpm"}, "column 'value_scale' must be one of"),
        ({"dataset": "my data"}, "column 'dataset' must match the pattern"),
        ({"patient_column": ""}, "required column 'patient_column' is missing"),
        ({"format": "10x_mtx", "path": "tenx"}, "required column 'cell_table' is missing"),
        (
            {"format": "10x_mtx", "cell_table": "cells.tsv"},
            "is not a folder (it is a file: an HDF5 file); format '10x_mtx' expects a folder",
        ),
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
    with pytest.raises(ConfigError, match=r"dataset sheet .* does not exist"):
        read_datasets(tmp_path / "none.tsv")


# --------------------------------------------------------------------------- #
# Public datasets: rows naming a registry_id, and the download settings
# --------------------------------------------------------------------------- #
REGISTRY = ROOT / "resources" / "datasets" / "registry.yaml"


def test_registry_row_is_one_line_and_takes_no_local_defaults(files):
    rows = [{"registry_id": "GSE115978"}, {**GOOD}]
    table = validate_datasets(
        _sheet(files, rows), DATASETS_SCHEMA, base_dir=files, registry=REGISTRY
    )
    assert list(table.index) == ["GSE115978", "cohort_1"]  # the id defaults to the registry id
    public = table.loc["GSE115978"].dropna().to_dict()
    assert public == {"dataset": "GSE115978", "registry_id": "GSE115978"}
    assert table.loc["cohort_1", "value_scale"] == "auto"  # local rows still get defaults


def test_registry_row_may_name_its_own_dataset_id_and_template_ids(files):
    rows = [
        {"dataset": "melanoma", "registry_id": "GSE115978"},
        {"registry_id": "TISCH2_SKCM_GSE72056"},
    ]
    table = validate_datasets(
        _sheet(files, rows), DATASETS_SCHEMA, base_dir=files, registry=REGISTRY
    )
    assert table.loc["melanoma", "registry_id"] == "GSE115978"
    assert "TISCH2_SKCM_GSE72056" in table.index


@pytest.mark.parametrize(
    ("row", "expected"),
    [
        # a registry row that also describes a local file: which columns must go, and why
        (
            {"registry_id": "GSE115978", "format": "h5ad", "path": "data.h5ad"},
            "row 2 (dataset 'GSE115978'): columns 'format', 'path' must be empty in a row with "
            "a registry_id (the registry entry says how to read a public dataset); remove "
            "registry_id to describe a local dataset instead",
        ),
        (
            {"registry_id": "GSE115978", "label_map": "labels.tsv"},
            "column 'label_map' must be empty in a row with a registry_id",
        ),
        # a row that is neither kind: one sentence naming both ways out
        (
            {"dataset": "x", "description": "forgot everything"},
            "row 2 (dataset 'x'): required columns 'format', 'path', 'patient_column' are "
            "missing; a local dataset needs format, path and patient_column (and "
            "cell_type_column with label_map when it has the authors' labels); a public "
            "dataset needs only registry_id",
        ),
        ({"registry_id": "GSE 115978"}, "column 'registry_id' must match the pattern"),
        (
            {"registry_id": "GSE0"},
            "row 2 (dataset 'GSE0'): column 'registry_id': dataset 'GSE0' is not in",
        ),
        ({"registry_id": "TISCH2_"}, "or ids matching the templates"),
        (
            {"registry_id": "GSE115978", "truth": "none.tsv"},
            "column 'truth': file 'none.tsv' does not exist",
        ),
    ],
)
def test_bad_registry_row_is_named(files, row, expected):
    with pytest.raises(ConfigError) as info:
        validate_datasets(_sheet(files, [row]), DATASETS_SCHEMA, base_dir=files, registry=REGISTRY)
    assert expected in str(info.value)


def test_local_row_missing_one_column_says_what_a_row_needs(files):
    row = {key: value for key, value in GOOD.items() if key != "label_map"}
    with pytest.raises(ConfigError) as info:
        validate_datasets(_sheet(files, [row]), DATASETS_SCHEMA, base_dir=files)
    message = str(info.value)
    assert "required column 'label_map' is missing" in message
    # a dataset without labels is allowed (annotate_cells infers them), half a pair is not
    assert "need a label_map mapping them onto the vocabulary" in message
    assert "leave both empty for a dataset without labels" in message
    assert message.count("\n  - ") == 1


def test_registry_rows_need_no_files_and_skip_the_10x_rule(files):
    # no file named by the row exists yet: a public dataset is downloaded later
    table = validate_datasets(
        _sheet(files, [{"registry_id": "GSE176078"}]), DATASETS_SCHEMA, base_dir=files
    )
    assert "cell_table" not in table.columns


def test_missing_registry_is_a_clear_error(files, tmp_path):
    with pytest.raises(
        ConfigError, match=r"dataset registry .*nowhere.yaml not found.*`download: registry:`"
    ):
        validate_datasets(
            _sheet(files, [{"registry_id": "GSE115978"}]), DATASETS_SCHEMA, base_dir=files,
            registry=tmp_path / "nowhere.yaml",
        )  # fmt: skip


def test_local_sheet_never_reads_the_registry(files, tmp_path):
    table = validate_datasets(
        _sheet(files, [GOOD]), DATASETS_SCHEMA, base_dir=files, registry=tmp_path / "nowhere.yaml"
    )
    assert list(table.index) == ["cohort_1"]


def test_download_settings_have_documented_defaults():
    filled = validate_config({"datasets": "x.tsv"}, CONFIG_SCHEMA)
    assert filled["download"] == {
        "registry": "resources/datasets/registry.yaml",
        "folder": "resources/datasets/downloads",
        "local_dir": None,
        "lock_file": "resources/datasets/checksums.lock.tsv",
        "retries": 5,
        "backoff": 2.0,
        "timeout": 60,
        "census": {"uri": None, "tiledb_config": {}},
    }
    for key, sub in CONFIG_SCHEMA["properties"]["download"]["properties"].items():
        assert sub.get("description"), key
    for key, sub in CONFIG_SCHEMA["properties"]["download"]["properties"]["census"][
        "properties"
    ].items():
        assert sub.get("description"), key


@pytest.mark.parametrize(
    ("download", "expected"),
    [
        ({"local_dri": "x"}, "unknown key(s) 'local_dri' under 'download'"),
        ({"retries": -1}, "key 'download.retries' must be >= 0, got -1"),
        ({"timeout": 0}, "key 'download.timeout' must be > 0, got 0"),
        ({"local_dir": 3}, "key 'download.local_dir' must be of type ['string', 'null'], got 3"),
        ({"census": {"url": "s3://x"}}, "unknown key(s) 'url' under 'download.census'"),
    ],
)
def test_bad_download_settings_are_named(download, expected):
    with pytest.raises(ConfigError) as info:
        validate_config({"datasets": "x.tsv", "download": download}, CONFIG_SCHEMA)
    assert expected in str(info.value)


def test_public_config_is_valid_and_names_three_registry_datasets():
    config = yaml.safe_load((ROOT / "config/public.yaml").read_text())
    filled = validate_config(config, CONFIG_SCHEMA, source="config/public.yaml")
    sheet = read_datasets(ROOT / filled["datasets"])
    table = validate_datasets(
        sheet, DATASETS_SCHEMA, base_dir=ROOT, registry=ROOT / filled["download"]["registry"]
    )
    assert {"GSE115978"} < set(table["registry_id"])
    assert len(table) >= 3
    # GSE72056 shares ~60% of its cells with GSE115978: never both
    assert not {"GSE72056", "GSE115978"} <= set(table["registry_id"])
