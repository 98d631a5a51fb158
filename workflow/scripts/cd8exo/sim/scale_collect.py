"""The tables and figure of ``make bench-scale``, collected from finished run directories.

A run directory (one simulated cohort through the whole workflow, ``snakemake
--directory``) holds Snakemake's benchmark files (``benchmarks/<rule>/<x>.tsv``: wall
seconds ``s`` and peak resident memory ``max_rss`` in MB of each job) and its log
(``.snakemake/log/*.snakemake.log``), which prints for every job its input files, its
benchmark file and the resources Snakemake gave it. :func:`collect_run` joins them into one
row per job (a run has one dataset, so one row per rule); :func:`truth_summary` reads the
truth check; :func:`merge_table` keeps the rows of sizes not rerun; :func:`plot_scale`
draws wall time and peak memory against cells.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterable
from pathlib import Path

import matplotlib as mpl

mpl.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from cd8exo.pl import save_figure

logger = logging.getLogger(__name__)

__all__ = [
    "BASELINE",
    "COLUMNS",
    "TOTAL",
    "collect_run",
    "fit_resources",
    "job_log",
    "merge_table",
    "plot_scale",
    "truth_summary",
]

#: Columns of ``results/bench/scale.tsv``.
COLUMNS: list[str] = [
    "n_cells",
    "n_genes",
    "rule",
    "wall_s",
    "max_rss_mb",
    "declared_mem_mb",
    "declared_runtime_min",
    "input_mb",
    "status",
]

#: ``rule`` of the scanpy baseline's row, and of the whole workflow's (end to end) row.
BASELINE = "scanpy_baseline"
TOTAL = "workflow_total"

_JOB = re.compile(r"^(?:local)?(?:rule|checkpoint) (\w+):$")


def job_log(run_dir: str | Path) -> dict[str, dict[str, object]]:
    """Benchmark path -> ``{"rule", "input", "mem_mb", "runtime"}`` of each job in the run's
    Snakemake logs (later logs win: a resumed run's values are those of its last attempt)."""
    jobs: dict[str, dict[str, object]] = {}
    logs = sorted((Path(run_dir) / ".snakemake" / "log").glob("*.snakemake.log"))
    for path in logs:
        for block in _blocks(path.read_text().splitlines()):
            benchmark = block.get("benchmark")
            if benchmark:
                jobs[str(benchmark)] = block
    return jobs


def _blocks(lines: list[str]) -> Iterable[dict[str, object]]:
    block: dict[str, object] | None = None
    for line in lines:
        head = _JOB.match(line.strip())
        if head:
            if block:
                yield block
            block = {"rule": head.group(1), "input": []}
            continue
        if block is None or not line.startswith("    "):
            continue
        key, _, value = line.strip().partition(": ")
        if key == "input":
            block["input"] = [v for v in value.split(", ") if v]
        elif key == "benchmark":
            block["benchmark"] = value
        elif key == "resources":
            items = dict(i.split("=", 1) for i in value.split(", ") if "=" in i)
            block["mem_mb"] = _number(items.get("mem_mb"))
            block["runtime"] = _number(items.get("runtime"))
    if block:
        yield block


def _number(text: str | None) -> float:
    try:
        return float(text) if text is not None else np.nan
    except ValueError:  # "<TBD>"
        return np.nan


def _size_mb(path: Path) -> float:
    if path.is_dir():
        return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) / 2**20
    return path.stat().st_size / 2**20 if path.exists() else np.nan


def collect_run(
    run_dir: str | Path, *, n_cells: int, n_genes: int, wall_s: float | None = None
) -> pd.DataFrame:
    """One row per benchmark file of the run (:data:`COLUMNS`), plus the end-to-end row.

    Parameters
    ----------
    run_dir
        The run's working directory.
    n_cells, n_genes
        Size of its cohort.
    wall_s
        Wall time of the whole Snakemake run (row ``rule = workflow_total``, whose
        ``max_rss_mb`` is the largest of any job); ``None``: no such row.
    """
    run_dir = Path(run_dir)
    jobs = job_log(run_dir)
    rows = []
    for path in sorted((run_dir / "benchmarks").glob("*/*.tsv")):
        bench = pd.read_csv(path, sep="\t")
        key = str(path.relative_to(run_dir))
        job = jobs.get(key, {})
        inputs = [Path(p) if os.path.isabs(p) else run_dir / p for p in job.get("input", [])]
        rows.append(
            {
                "rule": path.parent.name,
                # a benchmark file with repeats has one line each: the worst one
                "wall_s": float(bench["s"].max()),
                "max_rss_mb": float(pd.to_numeric(bench["max_rss"], errors="coerce").max()),
                "declared_mem_mb": job.get("mem_mb", np.nan),
                "declared_runtime_min": job.get("runtime", np.nan),
                "input_mb": sum(_size_mb(p) for p in inputs) if inputs else 0.0,
                "status": "ok",
            }
        )
    table = pd.DataFrame(rows, columns=COLUMNS[2:])
    if wall_s is not None:
        total = {"rule": TOTAL, "wall_s": wall_s, "max_rss_mb": table["max_rss_mb"].max()}
        table = pd.concat([table, pd.DataFrame([total | {"status": "ok"}])], ignore_index=True)
    table.insert(0, "n_genes", n_genes)
    table.insert(0, "n_cells", n_cells)
    return table[COLUMNS]


def truth_summary(run_dir: str | Path, *, n_cells: int) -> pd.DataFrame:
    """One row: planted pairs recovered (``as_planted``) and null pairs called, at this size."""
    path = Path(run_dir) / "results" / "summary" / "truth_check.tsv"
    if not path.is_file():
        return pd.DataFrame([{"n_cells": n_cells, "status": f"no truth check ({path} missing)"}])
    truth = pd.read_csv(path, sep="\t")
    planted = truth[truth["expected_sign"] != 0]
    null = truth[truth["expected_sign"] == 0]
    as_planted = planted["as_planted"].astype(str).str.lower() == "true"
    null_ok = null["as_planted"].astype(str).str.lower() == "true"
    return pd.DataFrame(
        [
            {
                "n_cells": n_cells,
                "planted_pairs": len(planted),
                "planted_recovered": int(as_planted.sum()),
                "null_pairs": len(null),
                "null_called": int((~null_ok).sum()),
                "all_planted_recovered": bool(as_planted.all()) and len(planted) > 0,
                "status": "ok",
            }
        ]
    )


def merge_table(path: str | Path, new: pd.DataFrame) -> pd.DataFrame:
    """``new`` plus the rows of ``path`` (if it exists) for sizes ``new`` does not hold."""
    path = Path(path)
    if not path.is_file():
        return new.reset_index(drop=True)
    old = pd.read_csv(path, sep="\t")
    old = old[~old["n_cells"].isin(new["n_cells"])]
    merged = pd.concat([old, new], ignore_index=True)
    sort = ["n_cells", "rule"] if "rule" in merged else ["n_cells"]
    return merged.sort_values(sort, kind="stable").reset_index(drop=True)


def heavy_rules(table: pd.DataFrame, *, n: int = 6) -> list[str]:
    """Workflow rules with the largest peak memory or wall time at the largest size."""
    rules = table[~table["rule"].isin([BASELINE, TOTAL]) & (table["status"] == "ok")]
    if rules.empty:
        return []
    largest = rules[rules["n_cells"] == rules["n_cells"].max()]
    by_memory = largest.nlargest(n, "max_rss_mb")["rule"].tolist()
    by_time = largest.nlargest(n, "wall_s")["rule"].tolist()
    return list(dict.fromkeys(by_memory + by_time))


def plot_scale(table: pd.DataFrame, path: str | Path | None = None) -> Figure:
    """Wall time and peak RSS against cells (log-log): the heavy rules, the whole workflow
    (wall time) and the scanpy baseline (dashed). Written to ``path`` if given."""
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.5), layout="constrained")
    lines = [*heavy_rules(table), TOTAL, BASELINE]
    for ax, column, label in (
        (axes[0], "wall_s", "wall time (s)"),
        (axes[1], "max_rss_mb", "peak RSS (MB)"),
    ):
        for rule in lines:
            rows = table[(table["rule"] == rule) & table[column].notna()]
            if rows.empty or (rule == TOTAL and column == "max_rss_mb"):
                continue
            rows = rows.sort_values("n_cells")
            style = {"ls": "--", "color": "black"} if rule == BASELINE else {}
            if rule == TOTAL:
                style = {"lw": 2.5, "color": "grey"}
            ax.plot(rows["n_cells"], rows[column], marker="o", label=rule, **style)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("cells")
        ax.set_ylabel(label)
        ax.grid(True, which="both", alpha=0.3)
    # the wall-time panel has every line (the end-to-end one only there)
    handles, labels = axes[0].get_legend_handles_labels()
    axes[1].legend(handles, labels, fontsize=8, loc="upper left", bbox_to_anchor=(1.02, 1.0))
    fig.suptitle("cd8exo on simulated cohorts (20,000 genes): make bench-scale")
    if path is not None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        save_figure(fig, str(path))
    return fig


def fit_resources(
    table: pd.DataFrame,
    *,
    mem_margin: float = 1.25,
    time_margin: float = 3.0,
    min_mem_mb: float = 1000.0,
    min_runtime_min: float = 10.0,
) -> pd.DataFrame:
    """Proposed rows of ``workflow/resources.tsv`` from measured rows of ``scale.tsv``.

    Per rule, a least-squares line of peak RSS (MB) and of wall time (minutes) against
    ``input_mb`` (slope >= 0; a rule measured at one input size gets slope 0), times the
    margin, its intercept raised until the line is at least the margin times every
    measurement, and at least ``min_mem_mb`` / ``min_runtime_min``. Rounded up (memory to
    100 MB, slopes to 0.1 MB and 0.001 min per MB).
    """
    rows = table[~table["rule"].isin([BASELINE, TOTAL]) & (table["status"] == "ok")]
    fitted = []
    for rule, group in rows.groupby("rule", sort=True):
        x = group["input_mb"].to_numpy(float)
        mem_base, mem_slope = _fit_line(
            x, group["max_rss_mb"].to_numpy(float), margin=mem_margin, floor=min_mem_mb
        )
        time_base, time_slope = _fit_line(
            x, group["wall_s"].to_numpy(float) / 60, margin=time_margin, floor=min_runtime_min
        )
        sizes = ", ".join(f"{n:,}" for n in sorted(group["n_cells"].unique()))
        fitted.append(
            {
                "rule": rule,
                "mem_base_mb": _round_up(mem_base, 100),
                "mem_mb_per_input_mb": _round_up(mem_slope, 0.1),
                "runtime_base_min": _round_up(time_base, 1),
                "runtime_min_per_input_mb": _round_up(time_slope, 0.001),
                "source": (
                    f"make bench-scale at {sizes} cells: peak RSS x{mem_margin:g}, "
                    f"wall time x{time_margin:g}"
                ),
            }
        )
    return pd.DataFrame(fitted)


def _fit_line(x: np.ndarray, y: np.ndarray, *, margin: float, floor: float) -> tuple[float, float]:
    """(intercept, slope) of ``margin`` times a line through (x, y) covering every point."""
    slope = 0.0
    if np.unique(x).size >= 2 and np.ptp(x) > 1.0:
        slope = max(float(np.polyfit(x, y, 1)[0]), 0.0) * margin
    base = max(floor, float(np.max(margin * y - slope * x)))
    return base, slope


def _round_up(value: float, step: float) -> float:
    # (a hair below the step first: 0.03 / 0.001 is 30.000000000000004 in floats)
    return float(np.ceil(value / step - 1e-9) * step) + 0.0  # (no -0.0)
