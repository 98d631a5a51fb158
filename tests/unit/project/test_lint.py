"""The code style the project promises: ruff, snakefmt and snakemake --lint are clean."""

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
BIN = Path(sys.executable).parent


@pytest.mark.parametrize(
    ("name", "command", "clean"),
    [
        ("ruff check", ["ruff", "check", "workflow", "tests"], "All checks passed"),
        ("ruff format", ["ruff", "format", "--check", "workflow", "tests"], "already formatted"),
        ("snakefmt", ["snakefmt", "--check", "Snakefile", "workflow/rules"], "left unchanged"),
        ("snakemake --lint", ["snakemake", "--lint"], "Congratulations"),
    ],
)
def test_tool_reports_clean(name, command, clean):
    result = subprocess.run(
        [str(BIN / command[0]), *command[1:]],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, f"{name} is not clean:\n{output[-4000:]}"
    assert clean in output, f"{name}: expected '{clean}' in\n{output[-4000:]}"
