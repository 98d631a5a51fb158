"""`make calibrate`: every family of cohorts, the tables, the settings, written to one folder."""

from __future__ import annotations

import argparse
import logging
import os
import time
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

import pandas as pd

from cd8exo.io.tables import write_table
from cd8exo.sim.calibrate.cohorts import COHORT_COLUMNS, run_null_cohorts, run_power_cohorts
from cd8exo.sim.calibrate.settings import CalibrationInputs, CalibrationSettings, load_inputs
from cd8exo.sim.calibrate.tables import power_table, type1_table
from cd8exo.sim.calibrate.target_sets import run_set_cohorts

logger = logging.getLogger(__name__)

__all__ = ["main", "run_calibration", "run_set_calibration"]


def run_calibration(
    *,
    n_cohorts: int = 500,
    n_power_cohorts: int = 200,
    inputs: CalibrationInputs,
    settings: CalibrationSettings | None = None,
    alpha: float = 0.05,
    rng: int,
    jobs: int = 1,
) -> dict[str, pd.DataFrame]:
    """Type I error over null cohorts and power over the (size, rho) grid.

    Parameters
    ----------
    n_cohorts
        Null cohorts.
    n_power_cohorts
        Cohorts per (size, rho) cell of the power grid; 0 skips the power analysis.
    inputs, settings, alpha, rng, jobs
        As for :func:`run_null_cohorts`.

    Returns
    -------
    ``type1`` (:func:`type1_table`), ``power`` (:func:`power_table`, empty when skipped),
    and the per-cohort tables ``null_cohorts`` and ``power_cohorts``.
    """
    settings = settings or CalibrationSettings()
    null = run_null_cohorts(
        n_cohorts, inputs=inputs, settings=settings, alpha=alpha, rng=rng, jobs=jobs
    )
    type1 = type1_table(
        null,
        alpha=alpha,
        primary_signature=settings.primary_signature,
        primary_target=settings.primary_target,
    )
    if n_power_cohorts:
        power = run_power_cohorts(
            n_power_cohorts, inputs=inputs, settings=settings, alpha=alpha, rng=rng, jobs=jobs
        )
        power_summary = power_table(power, alpha=alpha)
    else:
        power = pd.DataFrame(columns=list(COHORT_COLUMNS))
        power_summary = pd.DataFrame(
            columns=["n_patients", "planted_rho", "p_value_kind", "power", "n_cohorts"]
        )
    return {
        "type1": type1,
        "power": power_summary,
        "null_cohorts": null,
        "power_cohorts": power,
    }


def run_set_calibration(
    *,
    n_cohorts: int = 500,
    n_power_cohorts: int = 200,
    inputs: CalibrationInputs,
    settings: CalibrationSettings | None = None,
    alpha: float = 0.05,
    rng: int,
    jobs: int = 1,
) -> dict[str, pd.DataFrame]:
    """Type I error and power of the target-set tests (:mod:`cd8exo.sim.calibrate.target_sets`).

    Returns
    -------
    ``type1_sets`` (:func:`type1_table` for ``(primary_signature, primary_set)``; the
    ``specificity_p`` rows are ``set_specificity_p``), ``power_sets`` (:func:`power_table`,
    ``planted_rho`` renamed ``set_effect_size``; empty when ``n_power_cohorts`` is 0) and
    the per-cohort tables ``set_null_cohorts`` and ``set_power_cohorts``.
    """
    settings = settings or CalibrationSettings()
    common = {"inputs": inputs, "settings": settings, "alpha": alpha, "rng": rng, "jobs": jobs}
    null = run_set_cohorts("set_null", n_cohorts, **common)
    type1 = type1_table(
        null,
        alpha=alpha,
        primary_signature=settings.primary_signature,
        primary_target=settings.primary_set,
    )
    type1["p_value_kind"] = type1["p_value_kind"].replace("specificity_p", "set_specificity_p")
    power = pd.DataFrame(columns=list(COHORT_COLUMNS))
    summary = pd.DataFrame(columns=["n_patients", "set_effect_size", "p_value_kind", "power"])
    if n_power_cohorts:
        power = run_set_cohorts("set_power", n_power_cohorts, **common)
        summary = power_table(power, alpha=alpha).rename(columns={"planted_rho": "set_effect_size"})
        summary = summary.drop(columns="mean_latent_r")
        summary["p_value_kind"] = summary["p_value_kind"].replace(
            "specificity_p", "set_specificity_p"
        )
    return {
        "type1_sets": type1,
        "power_sets": summary,
        "set_null_cohorts": null,
        "set_power_cohorts": power,
    }


def _settings_table(settings: CalibrationSettings, **extra: object) -> pd.DataFrame:
    values = asdict(settings) | extra
    return pd.DataFrame(
        {
            "setting": list(values),
            "value": [
                ",".join(map(str, v)) if isinstance(v, tuple | list) else str(v)
                for v in values.values()
            ],
        }
    )


def _arguments(argv: Sequence[str] | None) -> argparse.Namespace:
    """The command line of :func:`main`, checked."""
    parser = argparse.ArgumentParser(
        prog="python -m cd8exo.sim.calibrate",
        description=(
            "Type I error and power of the workflow's patient-level p values on SIMULATED "
            "cohorts analysed by the workflow's own per-dataset path."
        ),
    )
    parser.add_argument("--n-cohorts", type=int, default=500, help="null cohorts (%(default)s)")
    parser.add_argument(
        "--n-power-cohorts",
        type=int,
        default=200,
        help="cohorts per (size, rho) cell of the power grid; 0 skips power (%(default)s)",
    )
    parser.add_argument(
        "--n-set-cohorts",
        type=int,
        default=500,
        help="null cohorts of the target-set tests; 0 skips them (%(default)s)",
    )
    parser.add_argument(
        "--n-set-power-cohorts",
        type=int,
        default=200,
        help="target-set power cohorts per (size, set effect) (%(default)s)",
    )
    parser.add_argument("--out", type=Path, required=True, help="output directory")
    parser.add_argument("--seed", type=int, default=20261126, help="seed (%(default)s)")
    parser.add_argument("--alpha", type=float, default=0.05, help="level (%(default)s)")
    parser.add_argument(
        "--jobs", type=int, default=1, help="worker processes, one per core (%(default)s)"
    )
    parser.add_argument(
        "--resources",
        type=Path,
        default=Path(__file__).resolve().parents[5] / "resources",
        help="the repository's resources/ directory (default: %(default)s)",
    )
    args = parser.parse_args(argv)
    if not 0.0 < args.alpha < 1.0:
        parser.error(f"--alpha must be between 0 and 1, got {args.alpha}")
    if args.n_cohorts < 1 or args.n_power_cohorts < 0 or args.jobs < 1:
        parser.error("--n-cohorts and --jobs must be >= 1 and --n-power-cohorts >= 0")
    if args.n_set_cohorts < 0 or args.n_set_power_cohorts < 0:
        parser.error("--n-set-cohorts and --n-set-power-cohorts must be >= 0")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: ``python -m cd8exo.sim.calibrate --n-cohorts 500 --out results/calibration``."""
    args = _arguments(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    # the workflow's own per-cohort messages (QC counts, exclusions) would drown the progress
    logging.getLogger("cd8exo").setLevel(logging.ERROR)
    logger.setLevel(logging.INFO)

    settings = CalibrationSettings()
    start = time.monotonic()
    inputs = load_inputs(args.resources)
    results = run_calibration(
        n_cohorts=args.n_cohorts,
        n_power_cohorts=args.n_power_cohorts,
        inputs=inputs,
        settings=settings,
        alpha=args.alpha,
        rng=args.seed,
        jobs=args.jobs,
    )
    if args.n_set_cohorts:
        results |= run_set_calibration(
            n_cohorts=args.n_set_cohorts,
            n_power_cohorts=args.n_set_power_cohorts,
            inputs=inputs,
            settings=settings,
            alpha=args.alpha,
            rng=args.seed,
            jobs=args.jobs,
        )
    out = args.out
    for name in ("type1", "power", "type1_sets", "power_sets"):
        if name in results:
            write_table(results[name].round(4), out / f"{name}.tsv")
    for name in ("null_cohorts", "power_cohorts", "set_null_cohorts", "set_power_cohorts"):
        if name in results:
            write_table(results[name], out / f"{name}.tsv.gz")
    elapsed = time.monotonic() - start
    write_table(
        _settings_table(
            settings,
            n_cohorts=args.n_cohorts,
            n_power_cohorts=args.n_power_cohorts,
            n_set_cohorts=args.n_set_cohorts,
            n_set_power_cohorts=args.n_set_power_cohorts,
            seed=args.seed,
            alpha=args.alpha,
            jobs=args.jobs,
            elapsed_seconds=round(elapsed, 1),
            cpu_count=os.cpu_count(),
        ),
        out / "settings.tsv",
    )
    logger.info("calibration written to %s in %.0f s", out, elapsed)
    return 0
