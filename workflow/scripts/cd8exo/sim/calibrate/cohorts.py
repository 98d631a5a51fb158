"""Calibration cohorts: simulated, then analysed by the workflow's own stages, one process per core."""

from __future__ import annotations

import logging
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor

import anndata as ad
import numpy as np
import pandas as pd

from cd8exo.genes import SymbolTables
from cd8exo.sim.calibrate.settings import CalibrationInputs, CalibrationSettings, _check_settings
from cd8exo.sim.calibrate.tables import P_VALUE_KINDS
from cd8exo.sim.cohort import AUTHOR_LABELS, SimulatedCohort, simulate_cohort
from cd8exo.stages import cells as stages
from cd8exo.stages.patients import associate

logger = logging.getLogger(__name__)

__all__ = [
    "COHORT_COLUMNS",
    "aggregated_cohort",
    "analyse_cohort",
    "run_family",
    "run_null_cohorts",
    "run_power_cohorts",
    "simulate_calibration_cohort",
]

#: Columns of the per-cohort p-value tables (:func:`run_null_cohorts`).
COHORT_COLUMNS: tuple[str, ...] = (
    "family",
    "cohort",
    "n_planned",
    "planted_rho",
    "latent_r",
    "n_excluded",
    "signature",
    "target",
    "n_patients",
    "rho",
    "pearson_r",
    "ci_low",
    "ci_high",
    *P_VALUE_KINDS,
    "note",
)


_NULL_FAMILY, _POWER_FAMILY = 0, 1


def _seeds(seed: int, key: tuple[int, ...]) -> dict[str, int]:
    """Independent integer seeds for the random steps of one cohort."""
    words = np.random.SeedSequence(seed, spawn_key=key).generate_state(4)
    return dict(zip(("simulate", "scoring", "stats", "random_sets"), map(int, words), strict=True))


def simulate_calibration_cohort(
    inputs: CalibrationInputs,
    *,
    n_patients: int,
    planted_rho: float | None,
    settings: CalibrationSettings,
    rng: int,
    name: str = "calibration",
) -> SimulatedCohort:
    """Simulate one null (``planted_rho=None``) or power cohort.

    A null cohort has ``effect_size = 0``: nothing is planted. A power cohort plants the
    activation signatures (``settings.sender_effect_size``) and the primary target with
    population latent correlation ``planted_rho`` (``settings.target_effect_size``); all
    other targets are null targets. See the module docstring.

    Parameters
    ----------
    inputs
        Signatures, targets and background pool (:func:`load_inputs`).
    n_patients
        Number of patients.
    planted_rho
        ``None`` for a null cohort, else the correlation of ``c_p`` with ``a_p``.
    settings
        Sizes and effects.
    rng
        Seed of the simulator.
    name
        Dataset id.

    Returns
    -------
    The simulated cohort (raw counts, author labels, truth, patients).
    """
    targets = list(inputs.targets)
    common = {
        "n_patients": n_patients,
        "n_cells": n_patients * settings.cells_per_patient,
        "n_background_genes": settings.n_background_genes,
        "signatures": inputs.signatures,
        "activation_signatures": [
            s for s in settings.activation_signatures if s in inputs.signatures
        ],
        "independent_signatures": [
            s for s in settings.independent_signatures if s in inputs.signatures
        ],
        "negative_targets": (),
        "positive_targets": (),
        "background_pool": inputs.background_pool,
        "low_cd8_patients": settings.low_cd8_patients,
        "rng": rng,
        "name": name,
    }
    if planted_rho is None:
        return simulate_cohort(**common, null_targets=targets, effect_size=0.0)
    return simulate_cohort(
        **common,
        null_targets=[t for t in targets if t != settings.primary_target],
        effect_size=settings.sender_effect_size,
        correlated_targets=[settings.primary_target],
        target_correlation=planted_rho,
        correlated_effect_size=settings.target_effect_size,
    )


def _random_set_null(
    adata,
    signatures: Mapping[str, Sequence[str]],
    *,
    settings: CalibrationSettings,
    seed: int,
    name: str,
) -> tuple[pd.DataFrame | None, str]:
    """The random-set scores of the specificity null, or None and why there are none."""
    if not settings.n_random_sets:
        return None, ""
    try:
        scores = stages.score_random_sets(
            adata,
            signatures,
            n_sets=settings.n_random_sets,
            rng=seed,
            scoring=settings.scoring_options(),
        )
    except ValueError as error:
        # e.g. an expression bin without enough genes to match; the workflow would stop,
        # a calibration run records the cohort's specificity p as missing instead
        logger.warning("%s: no specificity null (%s)", name, error)
        return None, f"specificity: {error}"
    return scores, ""


def aggregated_cohort(
    cohort: SimulatedCohort,
    *,
    signatures: Mapping[str, Sequence[str]],
    targets: Sequence[str],
    settings: CalibrationSettings,
    seeds: Mapping[str, int],
    identity: Mapping[str, pd.DataFrame] | None = None,
    symbol_tables: SymbolTables | None = None,
) -> tuple[ad.AnnData, stages.Scored, pd.DataFrame, pd.DataFrame]:
    """The stages from ``prepare_dataset`` to ``aggregate_patients`` (see
    :func:`analyse_cohort`): the kept, identified cells, the sender scores, the patient
    table and the excluded patients."""
    adata = stages.prepare(
        cohort.adata,
        dataset=cohort.name,
        patient_column="donor_id",
        sample_column="sample_id",
        cell_type_column="author_cell_type",
        label_map=AUTHOR_LABELS,
        value_scale="counts",
    )
    kept, _ = stages.filter_cells(
        adata, min_genes=settings.min_genes, max_mito_fraction=settings.max_mito_fraction
    )
    if identity:
        kept = stages.identify(
            kept,
            references=identity,
            cancer_type=settings.cancer_type,
            agreement=False,
            rng=seeds["scoring"],
        ).adata
    scored = stages.score(
        kept,
        gene_sets={"signatures": signatures},
        targets=list(targets),
        tables=symbol_tables,
        min_coverage=settings.min_coverage,
        rng=seeds["scoring"],
        scoring=settings.scoring_options(),
    )
    table, excluded = stages.aggregate(
        kept,
        scored.scores,
        genes=list(targets),
        min_cd8_cells=settings.min_cd8_cells,
        min_malignant_cells=settings.min_malignant_cells,
        dataset=cohort.name,
    )
    return kept, scored, table, excluded


def analyse_cohort(
    cohort: SimulatedCohort,
    *,
    signatures: Mapping[str, Sequence[str]],
    targets: Sequence[str],
    settings: CalibrationSettings,
    seeds: Mapping[str, int],
    alpha: float = 0.05,
    identity: Mapping[str, pd.DataFrame] | None = None,
    symbol_tables: SymbolTables | None = None,
) -> tuple[pd.DataFrame, int]:
    """Run the workflow's per-dataset path on a simulated cohort: the rules' own stages.

    :func:`cd8exo.stages.prepare` -> :func:`~cd8exo.stages.filter_cells` ->
    :func:`~cd8exo.stages.identify` (author labels win; no agreement run) ->
    :func:`~cd8exo.stages.score` -> :func:`~cd8exo.stages.score_random_sets` (of the
    prepared signatures) -> :func:`~cd8exo.stages.aggregate` ->
    :func:`~cd8exo.stages.associate`: the functions the rule scripts ``prepare_dataset``
    to ``associate_patients`` call, in the same order, with the settings in the place of
    the config (``tests/integration/test_stages_equivalence.py`` checks both paths give the same table).

    Parameters
    ----------
    cohort
        From :func:`simulate_calibration_cohort`.
    signatures, targets
        Sender signatures and receiver targets to test.
    settings
        Workflow parameters.
    seeds
        Integer seeds ``scoring`` (also the identity step's), ``stats`` and
        ``random_sets`` (the workflow uses the config's one ``seed`` for all three).
    identity
        The ``references`` of :func:`cd8exo.stages.identify`
        (:attr:`CalibrationInputs.identity`); empty skips the identity step (the simulated
        cohorts carry the authors' labels, which it would keep).
    symbol_tables
        HGNC alias tables of the signature matching (``None``: exact names).
    alpha
        The CI level is ``1 - alpha``.

    Returns
    -------
    The association table (one row per (signature, target), with ``specificity_p``) and
    the number of patients excluded by the cell-count thresholds.
    """
    kept, scored, table, excluded = aggregated_cohort(
        cohort,
        signatures=signatures,
        targets=targets,
        settings=settings,
        seeds=seeds,
        identity=identity,
        symbol_tables=symbol_tables,
    )
    random_sets, null_note = _random_set_null(
        kept,
        scored.prepared.signatures,
        settings=settings,
        seed=seeds["random_sets"],
        name=cohort.name,
    )
    associations = associate(
        table,
        random_sets,
        dataset=cohort.name,
        settings=settings.association(rng=seeds["stats"], ci_level=1.0 - alpha),
        coverage=scored.prepared.coverage,
    )
    if null_note:
        notes = [
            "; ".join(part for part in (str(note), null_note) if part)
            for note in associations["note"].fillna("")
        ]
        associations = associations.assign(note=notes)
    return associations, len(excluded)


# Worker state: set once per process so the background pool is not pickled per task.
_WORKER: dict[str, object] = {}


def _init_worker(inputs: CalibrationInputs, settings: CalibrationSettings, alpha: float) -> None:
    _WORKER.update(inputs=inputs, settings=settings, alpha=alpha)
    warnings.simplefilter("ignore")
    logging.getLogger("cd8exo").setLevel(logging.ERROR)


def _run_task(task: tuple[str, int, int, float | None, int]) -> pd.DataFrame:
    family, index, n_patients, planted_rho, seed = task
    inputs: CalibrationInputs = _WORKER["inputs"]  # type: ignore[assignment]
    settings: CalibrationSettings = _WORKER["settings"]  # type: ignore[assignment]
    key = (_NULL_FAMILY, index) if family == "null" else (_POWER_FAMILY, n_patients, index)
    seeds = _seeds(seed, key)
    cohort = simulate_calibration_cohort(
        inputs,
        n_patients=n_patients,
        planted_rho=planted_rho,
        settings=settings,
        rng=seeds["simulate"],
        name=f"{family}_{n_patients}_{index}",
    )
    if family == "power":
        # only the primary pair is reported: score and test nothing else (time)
        signatures = {settings.primary_signature: inputs.signatures[settings.primary_signature]}
        targets: Sequence[str] = [settings.primary_target]
    else:
        signatures, targets = inputs.signatures, inputs.targets
    associations, n_excluded = analyse_cohort(
        cohort,
        signatures=signatures,
        targets=targets,
        settings=settings,
        seeds=seeds,
        alpha=float(_WORKER["alpha"]),  # type: ignore[arg-type]
        identity=inputs.identity,
        symbol_tables=inputs.symbol_tables,
    )
    patients = cohort.patients
    latent_r = (
        float(np.corrcoef(patients["activation"], patients["correlated"])[0, 1])
        if "correlated" in patients.columns
        else np.nan
    )
    out = associations.assign(
        family=family,
        cohort=index,
        n_planned=n_patients,
        planted_rho=np.nan if planted_rho is None else planted_rho,
        latent_r=latent_r,
        n_excluded=n_excluded,
    )
    return out.loc[:, list(COHORT_COLUMNS)].reset_index(drop=True)


def _run_tasks(
    tasks: list[tuple[str, int, int, float | None, int]],
    *,
    inputs: CalibrationInputs,
    settings: CalibrationSettings,
    alpha: float,
    jobs: int,
    what: str,
    run_task: Callable[[tuple], pd.DataFrame] = _run_task,
) -> pd.DataFrame:
    if jobs < 1:
        msg = f"jobs must be at least 1, got {jobs}."
        raise ValueError(msg)
    start = time.monotonic()
    results: list[pd.DataFrame] = []
    step = max(1, len(tasks) // 10)

    def progress(done: int) -> None:
        if done % step == 0 or done == len(tasks):
            logger.info(
                "%s: %d of %d cohorts (%.0f s)", what, done, len(tasks), time.monotonic() - start
            )

    if jobs == 1:
        saved = dict(_WORKER)
        _WORKER.update(inputs=inputs, settings=settings, alpha=alpha)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                for k, task in enumerate(tasks, start=1):
                    results.append(run_task(task))
                    progress(k)
        finally:
            _WORKER.clear()
            _WORKER.update(saved)
    else:
        with ProcessPoolExecutor(
            max_workers=jobs, initializer=_init_worker, initargs=(inputs, settings, alpha)
        ) as pool:
            for k, result in enumerate(pool.map(run_task, tasks, chunksize=4), start=1):
                results.append(result)
                progress(k)
    return pd.concat(results, ignore_index=True)


def run_family(
    family: str,
    n_cohorts: int,
    *,
    inputs: CalibrationInputs,
    settings: CalibrationSettings | None,
    alpha: float,
    rng: int,
    jobs: int,
    effects: Sequence[float] | None = None,
    run_task: Callable[[tuple], pd.DataFrame] = _run_task,
) -> pd.DataFrame:
    """Check the settings, list one family's cohorts and run them with ``run_task``.

    ``effects`` None (a null family): cohort ``i`` has ``null_sizes[i % len(null_sizes)]``
    patients and nothing planted. Otherwise (a power family): ``n_cohorts`` cohorts per
    (size of ``power_sizes``, effect of ``effects``), cohort ``i`` of a size with the same
    seeds for every effect (common random numbers).
    """
    settings = settings or CalibrationSettings()
    _check_settings(settings, inputs)
    if n_cohorts < 1:
        msg = f"n_cohorts must be at least 1, got {n_cohorts}."
        raise ValueError(msg)
    if effects is None:
        sizes = settings.null_sizes
        tasks = [(family, i, sizes[i % len(sizes)], None, int(rng)) for i in range(n_cohorts)]
    else:
        tasks = [
            (family, i, n, float(effect), int(rng))
            for n in settings.power_sizes
            for effect in effects
            for i in range(n_cohorts)
        ]
    return _run_tasks(
        tasks,
        inputs=inputs,
        settings=settings,
        alpha=alpha,
        jobs=jobs,
        what=f"{family} cohorts",
        run_task=run_task,
    )


def run_null_cohorts(
    n_cohorts: int,
    *,
    inputs: CalibrationInputs,
    settings: CalibrationSettings | None = None,
    alpha: float = 0.05,
    rng: int,
    jobs: int = 1,
) -> pd.DataFrame:
    """Simulate and analyse ``n_cohorts`` null cohorts (nothing planted).

    Cohort ``i`` has ``settings.null_sizes[i % len(null_sizes)]`` patients.

    Parameters
    ----------
    n_cohorts
        Number of null cohorts.
    inputs
        From :func:`load_inputs`.
    settings
        Sizes and workflow parameters (default :class:`CalibrationSettings`).
    alpha
        Significance level (sets the CI level ``1 - alpha``).
    rng
        Seed (an int: every cohort derives its own seeds from it, see the module docstring).
    jobs
        Worker processes (1: in this process).

    Returns
    -------
    One row per (cohort, signature, target), columns :data:`COHORT_COLUMNS`
    (``family = "null"``).
    """
    return run_family(
        "null", n_cohorts, inputs=inputs, settings=settings, alpha=alpha, rng=rng, jobs=jobs
    )


def run_power_cohorts(
    n_cohorts: int,
    *,
    inputs: CalibrationInputs,
    settings: CalibrationSettings | None = None,
    alpha: float = 0.05,
    rng: int,
    jobs: int = 1,
) -> pd.DataFrame:
    """Simulate and analyse ``n_cohorts`` cohorts per (size, planted rho) of the power grid.

    Cohort ``i`` of size ``n`` has the same seeds for every rho (common random numbers).

    Parameters
    ----------
    n_cohorts
        Cohorts per cell of the grid ``settings.power_sizes x settings.power_rhos``.
    inputs, settings, alpha, rng, jobs
        As for :func:`run_null_cohorts`.

    Returns
    -------
    One row per cohort (the primary pair only), columns :data:`COHORT_COLUMNS`
    (``family = "power"``).
    """
    settings = settings or CalibrationSettings()
    return run_family(
        "power",
        n_cohorts,
        inputs=inputs,
        settings=settings,
        alpha=alpha,
        rng=rng,
        jobs=jobs,
        effects=settings.power_rhos,
    )
