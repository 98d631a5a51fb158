"""Every rule declares ``mem_mb`` and ``runtime`` from its job's input size (issue 11), with
the coefficients of one table, ``workflow/resources.tsv``; ``--set-resources`` overrides.

The table is read here with the csv module (not cd8exo.job_resources), so the rules'
declared values are checked against the table's own numbers.
"""

from __future__ import annotations

import csv
import math
import re
import subprocess
import sys
from pathlib import Path

import pytest
from test_rule_benchmarks import INPUT_SIZES_MB, dump_rules

from cd8exo.errors import ConfigError
from cd8exo.job_resources import ResourceModel, folder_mb, read_resource_table

ROOT = Path(__file__).resolve().parents[3]
TABLE = ROOT / "workflow" / "resources.tsv"
SNAKEMAKE = Path(sys.executable).parent / "snakemake"


def table_rows() -> dict[str, dict[str, str]]:
    with TABLE.open() as handle:
        lines = [line for line in handle if not line.startswith("#")]
    return {row["rule"]: row for row in csv.DictReader(lines, delimiter="\t")}


@pytest.fixture(scope="module")
def rules() -> list[dict]:
    return dump_rules()


def expected(row: dict[str, str], input_mb: float) -> tuple[int, int]:
    mem = float(row["mem_base_mb"]) + float(row["mem_mb_per_input_mb"]) * input_mb
    runtime = float(row["runtime_base_min"]) + float(row["runtime_min_per_input_mb"]) * input_mb
    return math.ceil(mem), math.ceil(runtime)


def test_every_rule_has_one_row_and_every_row_a_rule(rules):
    rows = table_rows()
    names = {r["name"] for r in rules if r["runs_code"]}
    assert names - set(rows) == set(), "rules without a row in workflow/resources.tsv"
    # the Census variant of download_dataset is the only row that is not a rule
    assert set(rows) - names == {"download_dataset_census"}
    for name, row in rows.items():
        assert row["source"].strip(), f"{name}: say where the numbers came from"


def test_declared_values_are_the_tables_at_demo_and_million_cell_sizes(rules):
    rows = table_rows()
    checked = 0
    for rule in rules:
        if not rule["runs_code"]:
            continue
        row = rows[rule["name"]]
        for mb in INPUT_SIZES_MB:
            mem, runtime = expected(row, mb)
            assert rule["runtime"][str(mb)] == runtime, (rule["name"], mb)
            if rule["name"] == "download_dataset":
                continue  # its memory depends on the registry entry (file or Census query)
            assert rule["mem_mb"][str(mb)] == mem, (rule["name"], mb)
            checked += 1
    assert checked >= 2 * 20
    # the values follow the input where the table says so: the pseudobulk's per-cell tables
    # grow with the cells; annotate_cells works on a subsample of fixed size and does not
    by_name = {r["name"]: r for r in rules}
    small, large = str(INPUT_SIZES_MB[0]), str(INPUT_SIZES_MB[1])
    assert (
        by_name["aggregate_patients"]["mem_mb"][large]
        > 2 * by_name["aggregate_patients"]["mem_mb"][small]
    )
    assert by_name["annotate_cells"]["mem_mb"][large] == by_name["annotate_cells"]["mem_mb"][small]


def test_set_resources_overrides_and_the_rest_come_from_the_table():
    result = subprocess.run(
        [
            str(SNAKEMAKE),
            "-n",
            "--forceall",
            "--cores",
            "2",
            "--set-resources",
            "annotate_cells:mem_mb=1234",
            "annotate_cells:runtime=77",
            "prepare_dataset:runtime=9",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    jobs = _job_resources(result.stdout + result.stderr)
    annotate = [res for (rule, _), res in jobs.items() if rule == "annotate_cells"]
    assert len(annotate) == 2  # the two demo cohorts
    for res in annotate:
        assert res["mem_mb"] == "1234"
        assert res["runtime"] == "77"
    # prepare_dataset's inputs exist (resources/demo): its memory is the table's line
    row = table_rows()["prepare_dataset"]
    for dataset in ("demo_cohort", "demo_cohort_b"):
        res = jobs[("prepare_dataset", dataset)]
        files = [ROOT / f"resources/demo/{dataset}.h5ad", ROOT / "resources/demo/label_map.tsv"]
        input_mb = sum(f.stat().st_size for f in files) / 2**20
        assert res["mem_mb"] == str(expected(row, input_mb)[0])
        assert res["runtime"] == "9"


def _job_resources(log: str) -> dict[tuple[str, str], dict[str, str]]:
    """(rule, dataset) -> the resources Snakemake printed for the job."""
    jobs = {}
    for block in re.split(r"\n(?=(?:local)?rule \w+:)", log):
        head = re.match(r"(?:local)?rule (\w+):", block)
        resources = re.search(r"\n\s+resources: (.*)", block)
        if not head or not resources:
            continue
        dataset = re.search(r"\n\s+wildcards: dataset=(\S+)", block)
        values = dict(item.split("=", 1) for item in resources.group(1).split(", ") if "=" in item)
        jobs[(head.group(1), dataset.group(1) if dataset else "all")] = values
    return jobs


# --------------------------------------------------------------------------- #
# cd8exo.job_resources
# --------------------------------------------------------------------------- #
def test_model_rounds_up_and_never_goes_below_the_base():
    model = ResourceModel(
        mem_base_mb=1000,
        mem_mb_per_input_mb=2.5,
        runtime_base_min=10,
        runtime_min_per_input_mb=0.01,
    )
    assert model.mem_mb(0) == 1000
    assert model.mem_mb(100.1) == 1251  # 1250.25 rounded up
    assert model.runtime_min(1000) == 20
    assert model.runtime_min(1001) == 21  # 20.01 rounded up
    assert model.mem_mb(-5) == 1000


def test_the_table_is_read_and_its_errors_named(tmp_path):
    table = read_resource_table(TABLE)
    assert table["annotate_cells"].mem_mb_per_input_mb == float(
        table_rows()["annotate_cells"]["mem_mb_per_input_mb"]
    )
    header = "rule\tmem_base_mb\tmem_mb_per_input_mb\truntime_base_min\truntime_min_per_input_mb\tsource\n"
    bad = {
        "negative": "a\t1000\t-1\t10\t0\tx\n",
        "text": "a\t1000\tlots\t10\t0\tx\n",
        "zero base": "a\t0\t1\t10\t0\tx\n",
        "fields": "a\t1000\t1\n",
        "twice": "a\t1000\t1\t10\t0\tx\na\t1000\t1\t10\t0\tx\n",
    }
    for case, body in bad.items():
        path = tmp_path / f"{case}.tsv"
        path.write_text("# comment\n" + header + body)
        line = 4 if case == "twice" else 3  # the repeated row is named
        with pytest.raises(ConfigError, match=rf"{path.name}, line {line}"):
            read_resource_table(path)
    wrong = tmp_path / "header.tsv"
    wrong.write_text("rule\tmem\n")
    with pytest.raises(ConfigError, match="header"):
        read_resource_table(wrong)


def test_folder_inputs_count_their_files(tmp_path):
    folder = tmp_path / "tenx"
    folder.mkdir()
    (folder / "matrix.mtx.gz").write_bytes(b"x" * 3 * 2**20)
    (folder / "barcodes.tsv.gz").write_bytes(b"x" * 2**20)
    single = tmp_path / "data.h5ad"
    single.write_bytes(b"x" * 2**20)
    assert folder_mb([str(folder), str(single)]) == pytest.approx(4.0)
    assert folder_mb([str(single)]) == 0
