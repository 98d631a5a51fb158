"""Every rule of the workflow writes a Snakemake benchmark file (issue 11): wall time and
peak memory of each job, collected by ``make bench-scale``.

The rules are read with Snakemake's own API (the workflow parsed as ``snakemake -n`` would,
in a separate interpreter so that Snakemake's logging set-up stays out of this process).
The benchmark path mirrors the log path: ``logs/<rule>/<x>.log`` ->
``benchmarks/<rule>/<x>.tsv``.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]

# Loads the Snakefile with the API and prints one JSON object per rule.
_DUMP_RULES = textwrap.dedent(
    """
    import json, sys
    from pathlib import Path
    from snakemake.api import SnakemakeApi
    from snakemake.settings.types import (
        ConfigSettings, OutputSettings, ResourceSettings, StorageSettings, WorkflowSettings)

    class FakeInput(list):  # what Snakemake passes to a resource callable, with a size
        def __init__(self, size_mb):
            super().__init__()
            self.size_mb = size_mb

    sizes = json.loads(sys.argv[1])

    def evaluate(rule, name):
        value = rule.resources.get(name)
        if value is None or not value.is_evaluable():
            return None if value is None else {"fixed": value.value}
        try:
            return {
                str(mb): value.evaluate({}, input=FakeInput(mb), attempt=1).value
                for mb in sizes
            }
        except Exception as error:  # e.g. a callable that reads the registry
            return {"error": repr(error)}

    with SnakemakeApi(OutputSettings()) as api:
        workflow_api = api.workflow(
            resource_settings=ResourceSettings(),
            config_settings=ConfigSettings(),
            storage_settings=StorageSettings(),
            workflow_settings=WorkflowSettings(),
            snakefile=Path("Snakefile"),
            workdir=Path("."),
        )
        # the parsed rules (the API has no public accessor for them)
        rules = workflow_api._workflow.rules
        out = [
            {
                "name": rule.name,
                "log": [str(f) for f in rule.log],
                "benchmark": None if rule.benchmark is None else str(rule.benchmark),
                "runs_code": rule.is_run or bool(rule.script or rule.shellcmd
                             or rule.wrapper or rule.notebook),
                "mem_mb": evaluate(rule, "mem_mb"),
                "runtime": evaluate(rule, "runtime"),
            }
            for rule in rules
        ]
    sys.stdout.write("RULES" + json.dumps(out) + "\\n")
    """
)


def _strip_constraints(path: str) -> str:
    """``x/{dataset,a|b}.tsv`` -> ``x/{dataset}.tsv`` (Snakemake adds the constraints)."""
    return re.sub(r"\{(\w+),[^}]*\}", r"{\1}", path)


#: Input sizes (MB) at which the dump evaluates each rule's resource callables: about the
#: demo's annotated h5ad, and about a 1,000,000-cell one (uncompressed, ~16 bytes per
#: non-zero, 1,500 non-zeros per cell).
INPUT_SIZES_MB = (45.0, 24_000.0)


def dump_rules() -> list[dict]:
    """The workflow's rules as Snakemake parses them (name, log, benchmark, resources)."""
    result = subprocess.run(
        [sys.executable, "-c", _DUMP_RULES, json.dumps(INPUT_SIZES_MB)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    line = next(x for x in result.stdout.splitlines() if x.startswith("RULES"))
    return json.loads(line.removeprefix("RULES"))


@pytest.fixture(scope="module")
def rules() -> list[dict]:
    return dump_rules()


def test_the_workflow_is_read(rules):
    names = {rule["name"] for rule in rules}
    # rules of every stage, the small summary rules included
    assert {"prepare_dataset", "annotate_cells", "check_truth", "plot_forests"} <= names
    assert len(names) >= 20


def test_every_rule_that_runs_code_has_a_benchmark(rules):
    missing = [r["name"] for r in rules if r["runs_code"] and r["benchmark"] is None]
    assert not missing, f"rules without benchmark: {missing}"
    # only the target rule runs nothing
    assert [r["name"] for r in rules if not r["runs_code"]] == ["all"]


def test_benchmark_paths_mirror_the_log_paths(rules):
    for rule in rules:
        if not rule["runs_code"]:
            continue
        (log,) = rule["log"]
        log, benchmark = _strip_constraints(log), _strip_constraints(rule["benchmark"])
        expected = re.sub(r"^logs/(.*)\.log$", r"benchmarks/\1.tsv", log)
        assert benchmark == expected, rule["name"]
        assert benchmark.startswith(f"benchmarks/{rule['name']}/"), rule["name"]
