"""``make bench-scale``: the whole workflow on simulated cohorts of 10k to 1M cells.

For each size (``--sizes``, default 10,000, 100,000 and 1,000,000 cells x 20,000 genes):

1. the cohort is generated once into the cache (:func:`cd8exo.sim.scale.make_scale_cohort`,
   ``.cache/scale/``);
2. a run directory (``.cache/scale_runs/cells<N>/``) gets a dataset sheet declaring the
   cohort (author labels, label map, truth table) and the default configuration (the
   repository's ``config/config.yaml`` with its paths made absolute, screen on);
3. Snakemake runs the whole workflow there (``snakemake --directory <run> --cores 2
   --profile profiles/local``), every rule writing its benchmark file;
4. the plain scanpy core (:mod:`cd8exo.sim.scale_baseline`) runs on the same h5ad in its
   own process, under an address-space cap (``--baseline-cap-mb``); its wall time and peak
   RSS come from ``wait4`` (the child's own rusage), and a run that exceeds the cap or
   fails gives a row that says so;
5. :mod:`cd8exo.sim.scale_collect` joins the benchmark files with the resources Snakemake
   gave each job (its log) into ``results/bench/scale.tsv`` (rows of sizes not rerun are
   kept), the truth check into ``scale_truth.tsv``, draws ``scale.png``, and proposes
   ``workflow/resources.tsv`` rows fitted to all sizes in the table
   (``scale_resources_fit.tsv``, :func:`cd8exo.sim.scale_collect.fit_resources`).
"""

from __future__ import annotations

import argparse
import logging
import os
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import yaml

from cd8exo._utils import atomic_write
from cd8exo.sim.scale import ScaleSpec, make_10x_copy, make_scale_cohort
from cd8exo.sim.scale_collect import (
    BASELINE,
    COLUMNS,
    collect_run,
    fit_resources,
    merge_table,
    plot_scale,
    truth_summary,
)

logger = logging.getLogger(__name__)

__all__ = ["Measured", "main", "run_measured", "write_run_config"]

_ROOT = Path(__file__).resolve().parents[4]
_DEFAULT_SIZES = (10_000, 100_000, 1_000_000)


@dataclass(frozen=True)
class Measured:
    """A child process's wall time, peak RSS and how it ended."""

    wall_s: float
    max_rss_mb: float
    returncode: int
    status: str


# The measured command runs under this small launcher, which caps its address space,
# waits for it and writes its rusage peak to a file. Measured directly from this process,
# the peak would include the RSS of this (possibly large) process at fork time: Linux
# carries the forking process's high-water mark into the child's ``ru_maxrss`` at exec.
_LAUNCHER = """
import os, resource, signal, subprocess, sys
cap_mb, report = int(sys.argv[1]), sys.argv[2]
if cap_mb:
    resource.setrlimit(resource.RLIMIT_AS, (cap_mb * 2**20, cap_mb * 2**20))
child = subprocess.Popen(sys.argv[3:])
_, status, usage = os.wait4(child.pid, 0)
with open(report, "w") as out:
    out.write(str(usage.ru_maxrss))
code = os.waitstatus_to_exitcode(status)
if code < 0:
    signal.signal(-code, signal.SIG_DFL)
    os.kill(os.getpid(), -code)
sys.exit(code)
"""


def run_measured(
    command: Sequence[str],
    *,
    log: Path,
    cap_mb: int | None = None,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
) -> Measured:
    """Run ``command``, its output to ``log``; wall time, and peak RSS from ``wait4``.

    ``cap_mb`` limits the child's address space (``RLIMIT_AS``): an allocation beyond it
    fails in the child (a ``MemoryError``), which this reports as ``status`` instead of
    taking the machine down. The peak is the command's own (and its descendants'), not
    this process's: see ``_LAUNCHER``.
    """
    log.parent.mkdir(parents=True, exist_ok=True)
    report = log.resolve().with_name(log.name + ".maxrss")
    report.unlink(missing_ok=True)
    launch = [sys.executable, "-c", _LAUNCHER, str(cap_mb or 0), str(report), *command]
    start = time.perf_counter()
    with log.open("w") as out:
        returncode = subprocess.run(
            launch, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=cwd
        ).returncode
    wall = time.perf_counter() - start
    max_rss_mb = int(report.read_text()) / 1024 if report.exists() else float("nan")  # KiB
    report.unlink(missing_ok=True)
    status = "ok"
    if returncode != 0:
        text = log.read_text(errors="replace")[-20_000:]
        memory = "MemoryError" in text or "Unable to allocate" in text or returncode == -9
        cap = f" (address space capped at {cap_mb} MB)" if cap_mb else ""
        status = f"out of memory{cap}" if memory else f"failed (exit {returncode}, see {log})"
    return Measured(wall, max_rss_mb, returncode, status)


def write_run_config(
    run_dir: Path, files: dict[str, Path], spec: ScaleSpec, *, data_format: str = "h5ad"
) -> Path:
    """The run's ``config/datasets.tsv`` (the cohort, as its h5ad or, ``data_format``
    ``"10x_mtx"``, its 10x folder and cell table) and ``config/config.yaml`` (the
    repository's default config, paths absolute). Returns the config path."""
    config_dir = run_dir / "config"
    config_dir.mkdir(parents=True, exist_ok=True)
    source = {"path": str(files["h5ad"].resolve())}
    if data_format == "10x_mtx":
        source = {
            "path": str(files["tenx"].resolve()),
            "cell_table": str(files["tenx_cells"].resolve()),
            "cell_id_column": "barcode",
        }
    sheet = pd.DataFrame(
        [
            {
                "dataset": spec.dataset,
                "format": data_format,
                **source,
                "patient_column": "donor_id",
                "sample_column": "sample_id",
                "cell_type_column": "author_cell_type",
                "label_map": str(files["label_map"].resolve()),
                "value_scale": "counts",
                "truth": str(files["truth"].resolve()),
                "description": f"SIMULATED scale cohort ({spec.name}, cd8exo.sim.scale)",
            }
        ]
    )
    atomic_write(config_dir / "datasets.tsv", lambda tmp: sheet.to_csv(tmp, sep="\t", index=False))
    config = yaml.safe_load((_ROOT / "config" / "config.yaml").read_text())
    config["datasets"] = "config/datasets.tsv"
    config["signatures"]["gmt"] = [str(_ROOT / p) for p in config["signatures"]["gmt"]]
    config["targets"]["table"] = str(_ROOT / config["targets"]["table"])
    config["screen"]["gmt"] = [str(_ROOT / p) for p in config["screen"]["gmt"]]
    config["screen"]["enabled"] = True
    path = config_dir / "config.yaml"
    atomic_write(path, lambda tmp: Path(tmp).write_text(yaml.safe_dump(config, sort_keys=False)))
    return path


def _run_size(spec: ScaleSpec, args: argparse.Namespace) -> tuple[pd.DataFrame, pd.DataFrame]:
    files = make_scale_cohort(args.cache, spec)
    suffix = ""
    if args.format == "10x_mtx":
        files["tenx"], files["tenx_cells"] = make_10x_copy(files)
        suffix = "_10x"
    run_dir = (args.runs / f"cells{spec.n_cells}{suffix}").resolve()
    write_run_config(run_dir, files, spec, data_format=args.format)
    snakemake = Path(sys.executable).parent / "snakemake"
    command = [
        str(snakemake),
        "-s",
        str(_ROOT / "Snakefile"),
        "--directory",
        str(run_dir),
        "--profile",
        str(_ROOT / "profiles" / "local"),
        "--cores",
        str(args.cores),
        *args.snakemake_args,
    ]
    logger.info("%s: running the workflow in %s", spec.dataset, run_dir)
    workflow = run_measured(command, log=run_dir / "snakemake.out", cwd=run_dir)
    logger.info("%s: workflow %s in %.0f s", spec.dataset, workflow.status, workflow.wall_s)
    table = collect_run(run_dir, n_cells=spec.n_cells, n_genes=spec.n_genes, wall_s=workflow.wall_s)
    if workflow.returncode != 0:
        table.loc[table["rule"] == "workflow_total", "status"] = workflow.status
    baseline = _baseline(spec, files["h5ad"], run_dir, cap_mb=args.baseline_cap_mb)
    table = pd.concat([table, baseline], ignore_index=True)[COLUMNS]
    return table, truth_summary(run_dir, n_cells=spec.n_cells)


def _baseline(spec: ScaleSpec, h5ad: Path, run_dir: Path, *, cap_mb: int | None) -> pd.DataFrame:
    command = [
        sys.executable,
        "-m",
        "cd8exo.sim.scale_baseline",
        "--h5ad",
        str(h5ad.resolve()),
        "--gmt",
        str(_ROOT / "resources" / "gene_sets" / "senders.gmt"),
        "--targets",
        str(_ROOT / "resources" / "targets" / "targets.tsv"),
        "--out",
        str(run_dir / "baseline"),
    ]
    env = {**os.environ, "PYTHONPATH": str(_ROOT / "workflow" / "scripts")}
    logger.info("%s: running the scanpy baseline", spec.dataset)
    measured = run_measured(
        command, log=run_dir / "baseline" / "baseline.out", cap_mb=cap_mb, env=env
    )
    logger.info("%s: baseline %s in %.0f s", spec.dataset, measured.status, measured.wall_s)
    row = {
        "n_cells": spec.n_cells,
        "n_genes": spec.n_genes,
        "rule": BASELINE,
        "wall_s": measured.wall_s,
        "max_rss_mb": measured.max_rss_mb,
        "input_mb": h5ad.stat().st_size / 2**20,
        "status": measured.status,
    }
    return pd.DataFrame([row])


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m cd8exo.sim.scale_bench --sizes 10000 100000 [--out results/bench/scale.tsv]``."""
    parser = argparse.ArgumentParser(
        prog="python -m cd8exo.sim.scale_bench",
        description="Run the whole workflow on simulated cohorts of several sizes (issue 11).",
    )
    parser.add_argument("--sizes", type=int, nargs="+", default=list(_DEFAULT_SIZES))
    parser.add_argument("--genes", type=int, default=ScaleSpec.n_genes)
    parser.add_argument("--seed", type=int, default=ScaleSpec.seed)
    parser.add_argument("--cache", type=Path, default=Path(".cache/scale"))
    parser.add_argument("--runs", type=Path, default=Path(".cache/scale_runs"))
    parser.add_argument("--out", type=Path, default=Path("results/bench/scale.tsv"))
    parser.add_argument("--cores", type=int, default=2)
    parser.add_argument(
        "--format",
        choices=["h5ad", "10x_mtx"],
        default="h5ad",
        help="how the cohort is given to the workflow (10x_mtx: a 10x folder and a cell "
        "table, written once from the cached h5ad); the scanpy baseline reads the h5ad",
    )
    parser.add_argument(
        "--baseline-cap-mb",
        type=int,
        default=16_000,
        help="address-space cap of the scanpy baseline (default %(default)s; 0: none)",
    )
    parser.add_argument(
        "--snakemake-args", nargs=argparse.REMAINDER, default=[], help="passed to snakemake"
    )
    args = parser.parse_args(argv)
    args.baseline_cap_mb = args.baseline_cap_mb or None
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    tables, truths = [], []
    for n_cells in args.sizes:
        table, truth = _run_size(
            ScaleSpec(n_cells=n_cells, n_genes=args.genes, seed=args.seed), args
        )
        tables.append(table)
        truths.append(truth)
    out = args.out
    table = merge_table(out, pd.concat(tables, ignore_index=True))
    truth_path = out.with_name(f"{out.stem}_truth.tsv")
    truth = merge_table(truth_path, pd.concat(truths, ignore_index=True))
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(out, lambda tmp: table.to_csv(tmp, sep="\t", index=False, float_format="%.6g"))
    atomic_write(truth_path, lambda tmp: truth.to_csv(tmp, sep="\t", index=False))
    plot_scale(table, out.with_suffix(".png"))
    # the rows of workflow/resources.tsv these measurements suggest (to review, then copy)
    fit_path = out.with_name(f"{out.stem}_resources_fit.tsv")
    fitted = fit_resources(table)
    atomic_write(fit_path, lambda tmp: fitted.to_csv(tmp, sep="\t", index=False))
    logger.info("wrote %s, %s, %s and %s", out, truth_path, out.with_suffix(".png"), fit_path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
