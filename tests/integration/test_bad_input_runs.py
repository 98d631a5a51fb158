"""A handful of the bad-input battery's cases (tests/unit/inputs/bad_inputs.py) run through
Snakemake: the run stops with the plain message, naming the file, and leaves the inputs as
they were. The rest of the battery runs the same code directly (test_bad_inputs.py)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from inputs.bad_inputs import CASES
from workflow_helpers import no_traceback, run_snakemake, write_config

pytestmark = pytest.mark.integration

BY_NAME = {case.name: case for case in CASES}
FILE_COLUMNS = ("path", "cell_table", "label_map")


def _fingerprint(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def _run_case(name: str, workdir: Path):
    """Write the case's files under ``workdir/inputs`` and run its dataset's first rule."""
    inputs = workdir / "inputs"
    inputs.mkdir()
    rows = BY_NAME[name].build(inputs)
    rows = [
        {key: f"inputs/{value}" if key in FILE_COLUMNS else value for key, value in row.items()}
        for row in rows
    ]
    write_config(workdir, rows)
    before = _fingerprint(inputs)
    result = run_snakemake(
        workdir,
        f"results/prepare_dataset/{rows[0]['dataset']}.h5ad",
        "--cores",
        "1",
        "--show-failed-logs",  # as profiles/local does
        "--configfile",
        "config/config.yaml",
        check=False,
    )
    assert _fingerprint(inputs) == before, "an input file was changed, added or removed"
    return result, result.stdout + result.stderr


def test_csv_saved_as_h5ad_stops_at_start_up_with_one_plain_message(tmp_path):
    result, output = _run_case("h5ad-csv-saved-as-h5ad", tmp_path)
    assert result.returncode == 1
    assert "column 'path': file 'inputs/data.h5ad' starts with 'gene,CELL00-1" in result.stderr
    assert "comma-separated text (a CSV), not HDF5" in result.stderr
    assert "prepare_dataset" not in output  # no job ran
    no_traceback(result)


@pytest.mark.parametrize(
    ("name", "phrases"),
    [
        ("h5ad-mouse-case", ("inputs/data.h5ad look like mouse genes", "Cd8a")),
        (
            "text-cell-table-fewer-rows",
            ("3 of 12 cells of the text matrix inputs/matrix.csv", "inputs/short.tsv"),
        ),
    ],
)
def test_input_error_in_a_rule_stops_with_its_message(tmp_path, name, phrases):
    result, output = _run_case(name, tmp_path)
    assert result.returncode != 0
    assert "Error in rule prepare_dataset" in output
    for phrase in phrases:
        assert "cd8exo error: " in result.stderr
        assert phrase in result.stderr
    # the rule log (printed by --show-failed-logs) holds the message, not a traceback
    no_traceback(result)
