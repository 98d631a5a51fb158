"""The bad-input battery (issue 12): generated h5ad, 10x, text-matrix and sheet inputs, each
run through the sheet validation, the reader and the prepare stage.

Each case either finishes (with the expected warning or info line in the log) or stops
where it should (``sheet``: a ConfigError at start-up; ``read``/``prepare``: an
InputError from the rule) with a message naming the file and the problem; and no case
changes its input files (their sha256 before and after, and no file added or removed).
The cases are in ``bad_inputs.py``; a handful also run through Snakemake in
``tests/integration/test_bad_input_runs.py``.
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path

import anndata as ad
import pandas as pd
import pytest
from bad_inputs import CASES, Case

from cd8exo.cells.harmonise import read_label_map
from cd8exo.config import load_schema, read_datasets, validate_datasets
from cd8exo.errors import ConfigError, InputError
from cd8exo.io import sniff
from cd8exo.io.local import read_dataset
from cd8exo.stages.cells import prepare

ROOT = Path(__file__).resolve().parents[3]
SCHEMA = load_schema(ROOT / "workflow/schemas/datasets.schema.yaml")


def fingerprint(folder: Path) -> dict[str, str]:
    """sha256 of every file under ``folder`` (relative path -> digest)."""
    return {
        str(path.relative_to(folder)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(folder.rglob("*"))
        if path.is_file()
    }


def write_sheet(folder: Path, rows: list[dict] | str) -> Path:
    sheet = folder / "datasets.tsv"
    if isinstance(rows, str):
        sheet.write_text(rows)
    else:
        pd.DataFrame(rows).to_csv(sheet, sep="\t", index=False)
    return sheet


def run(folder: Path, sheet: Path) -> tuple[str, ad.AnnData]:
    """Validate the sheet, read its first dataset and prepare it, as the workflow does.

    Returns the stage reached last (for a raised error: the stage that raised it, in
    the exception's ``stage`` attribute) and the prepared AnnData.
    """
    stage = "sheet"
    try:
        table = validate_datasets(read_datasets(sheet), SCHEMA, source=str(sheet), base_dir=folder)
        row = table.iloc[0].dropna().to_dict()
        stage = "read"
        raw = read_dataset(
            path=folder / row["path"],
            data_format=row["format"],
            cell_table=folder / row["cell_table"] if "cell_table" in row else None,
            cell_id_column=row.get("cell_id_column"),
        )
        stage = "prepare"
        adata = prepare(
            raw,
            dataset=row["dataset"],
            patient_column=row["patient_column"],
            sample_column=row.get("sample_column"),
            cell_type_column=row.get("cell_type_column"),
            malignant_column=row.get("malignant_column"),
            label_map=read_label_map(folder / row["label_map"]) if "label_map" in row else None,
            value_scale=row["value_scale"],
        )
    except Exception as error:
        error.stage = stage  # type: ignore[attr-defined]
        raise
    return stage, adata


def test_the_battery_is_large_and_covers_every_kind():
    names = [case.name for case in CASES]
    assert len(names) == len(set(names))
    assert len(CASES) >= 40
    for prefix in ("h5ad-", "10x-", "text-", "sheet-", "cell-table-"):
        assert any(name.startswith(prefix) for name in names), prefix
    assert {case.stops for case in CASES} == {None, "sheet", "read", "prepare"}


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_bad_input(
    case: Case, tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
):
    folder = tmp_path / "inputs"
    folder.mkdir()
    rows = case.build(folder)
    sheet = write_sheet(folder, rows)
    row = rows[0] if isinstance(rows, list) and rows else {}
    before = fingerprint(folder)

    caplog.set_level(logging.INFO, logger="cd8exo")
    if case.large_gzip:
        monkeypatch.setattr(sniff, "_VERIFY_GZIP_BYTES", 0)
    if case.stops is None:
        stage, adata = run(folder, sheet)
        assert stage == "prepare"
        for phrase in case.expect:
            assert phrase in caplog.text, f"{phrase!r} not in the log:\n{caplog.text}"
        if case.check is not None:
            case.check(adata)
    else:
        expected = ConfigError if case.stops == "sheet" else InputError
        with pytest.raises(expected) as info:
            run(folder, sheet)
        message = str(info.value)
        assert info.value.stage == case.stops, f"stopped at {info.value.stage}: {message}"
        for phrase in case.expect:
            assert phrase in message, f"{phrase!r} not in: {message}"
        named = case.names or Path(row["path"]).name
        assert named in message, f"{named!r} not named in: {message}"
        assert "Traceback" not in message

    assert fingerprint(folder) == before, "an input file was changed, added or removed"
