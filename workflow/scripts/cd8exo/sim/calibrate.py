"""Calibration and power of the workflow's patient-level p values, on simulated cohorts.

Every cohort is drawn by :func:`cd8exo.sim.cohort.simulate_cohort` and analysed by the
workflow's own per-dataset path, function by function as the rule scripts call them:
:func:`~cd8exo.harmonise.harmonise` (author labels -> vocabulary) ->
:func:`~cd8exo.qc.filter_cells` -> :func:`~cd8exo.harmonise.log_normalise` ->
:func:`~cd8exo.identity.identify_cells` (the authors' labels win; its label-hidden
agreement run is a diagnostic that changes no label and is skipped) ->
:func:`~cd8exo.scoring.prepare_signatures` (overlap guard, coverage) ->
:func:`~cd8exo.scoring.score_signatures` -> patient aggregation
(:func:`~cd8exo.aggregate.patient_counts`, :func:`~cd8exo.aggregate.median_counts`,
:func:`~cd8exo.aggregate.select_patients`, :func:`~cd8exo.aggregate.sender_scores`,
:func:`~cd8exo.aggregate.receiver_expression`, :func:`~cd8exo.tables.patient_table`) ->
:func:`~cd8exo.stats.association_table` (covariates as in the demo config) ->
:func:`~cd8exo.specificity.random_set_scores` + :func:`~cd8exo.stats.specificity_p_values`;
pairs of null cohorts also go through :func:`~cd8exo.meta.meta_analysis`.

Two kinds of cohorts (see :class:`CalibrationSettings` for every size and threshold):

* **null cohorts**: ``effect_size = 0``, nothing planted; sizes cycle through
  ``null_sizes`` (8, 16, 32 patients). The type I error of a p value is the share of
  null cohorts in which it is ``<= alpha`` for the primary pair (``primary_signature``,
  ``primary_target``; one test per cohort, so the cohorts are independent Bernoulli
  trials and the exact Clopper-Pearson interval applies). The rate over all
  (signature, target) pairs is reported too, with an interval that treats the cohort as
  the unit (pairs of one cohort share their patients and are correlated).
* **power cohorts**: the activation signatures are planted in CD8+ T cells with
  ``exp(sender_effect_size * a_p)`` (``a_p`` the simulator's standardised activation
  latent) and the primary target, in malignant cells, with
  ``exp(target_effect_size * c_p)``, ``c_p = rho * a_p + sqrt(1 - rho^2) * z_p``,
  ``z_p`` fresh standard normal (``correlated_targets`` of the simulator): ``rho`` is the
  population correlation of the two patient-level latents. No other target is planted.
  The workflow sees the latents through cell sampling, count noise and per-patient
  noise, so the rho it measures is slightly attenuated (``mean_rho`` in the power table).
  Cohorts of one size share their seeds across ``rho`` (common random numbers), so the
  power curves in ``rho`` are not blurred by independent Monte Carlo noise.

Randomness: cohort ``i`` of the null family uses ``SeedSequence(seed, spawn_key=(0, i))``
and cohort ``i`` of size ``n`` of the power family ``SeedSequence(seed, spawn_key=(1, n,
i))``; a cohort's result therefore depends neither on how many cohorts are run nor on the
number of worker processes.

Run ``python -m cd8exo.sim.calibrate --n-cohorts 500 --out results/calibration`` (or
``make calibrate``).
"""

from __future__ import annotations

import argparse
import logging
import math
import os
import sys
import time
import warnings
from collections.abc import Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats as sps

from cd8exo import stages
from cd8exo.cells.identity.annotate import read_identity_references
from cd8exo.genes import SymbolTables, load_symbol_tables
from cd8exo.io.tables import read_gmt, read_targets, write_table
from cd8exo.sim.cohort import AUTHOR_LABELS, SimulatedCohort, simulate_cohort
from cd8exo.sim.demo import _protein_coding_symbols
from cd8exo.stats.meta import meta_analysis

logger = logging.getLogger(__name__)

__all__ = [
    "COHORT_COLUMNS",
    "EXTRA_KINDS",
    "P_VALUE_KINDS",
    "CalibrationInputs",
    "CalibrationSettings",
    "analyse_cohort",
    "binomial_ci",
    "load_inputs",
    "main",
    "power_table",
    "rejections",
    "run_calibration",
    "run_null_cohorts",
    "run_power_cohorts",
    "simulate_calibration_cohort",
    "type1_table",
]

#: The p values the workflow writes to ``associations.tsv``, in the order reported.
P_VALUE_KINDS: tuple[str, ...] = (
    "p_value",
    "perm_p_value",
    "pearson_p",
    "partial_p_value",
    "specificity_p",
)


#: Further tests reported: the bootstrap CI read as a test (rejects when the
#: ``1 - alpha`` interval excludes 0) and the meta-analysis p over two null cohorts.
EXTRA_KINDS: tuple[str, ...] = ("bootstrap_ci", "meta_p_value")


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


_ACTIVATION = (
    "Chu2023_CD8_c2_Teff",
    "Cytotoxic_cells_Danaher2017",
    "Exosome_biogenesis_core_curated",
)


_INDEPENDENT = ("Tcell_exhaustion_SignatuR",)


_NULL_FAMILY, _POWER_FAMILY = 0, 1


@dataclass(frozen=True)
class CalibrationSettings:
    """Sizes, effects and workflow parameters of the calibration cohorts.

    The analysis parameters are the demo config's (``config/config.yaml``) except where
    a small cohort needs otherwise; those are marked below.

    Attributes
    ----------
    null_sizes
        Patients per null cohort, cycled over the cohorts.
    power_sizes, power_rhos
        The power grid: patients per cohort and planted latent correlations.
    cells_per_patient
        Cells per patient (before QC). 120 rather than thousands keeps a cohort to about
        a second; with the simulator's composition (~12% CD8+ T, ~35% malignant cells)
        about 1% of patients fall below the default ``min_cd8_cells`` /
        ``min_malignant_cells`` and are excluded, as the workflow would.
    n_background_genes
        Background genes besides the markers, housekeeping, signature and target genes
        (about 1,200 genes in all): enough that every expression bin holding signature
        genes has other genes to draw matched random sets from (the 47- and 50-gene
        signatures crowd the upper bins; with 300 background genes a bin can run out).
    low_cd8_patients
        Patients simulated with too few CD8+ T cells (0: every planned patient can be
        analysed).
    primary_signature, primary_target
        The pair the type I error and power are reported for (the power target is
        planted on ``primary_target``).
    activation_signatures, independent_signatures
        As for :func:`cd8exo.sim.cohort.simulate_cohort`.
    sender_effect_size, target_effect_size
        Power cohorts: log-scale effects of one SD of ``a_p`` on the activation genes in
        CD8+ T cells and of ``c_p`` on the primary target in malignant cells.
    cancer_type
        The dataset sheet's ``cancer_type`` of the cohorts (lineage markers of the
        identity step).
    min_coverage
        Signatures with a smaller share of their genes scored are skipped, as in the
        config.
    min_genes
        QC minimum of detected genes. *Calibration value*: the config's 200 is meant for
        whole transcriptomes; with ~1,200 simulated genes many good cells detect fewer,
        so 50 is used; the low-quality cells are still removed by
        ``max_mito_fraction``.
    max_mito_fraction, min_cd8_cells, min_malignant_cells, min_patients
        As in the config.
    method, n_bins, ctrl_size, ucell_max_rank, aucell_n_up, aucell_ties
        The config's ``scoring:`` (method and its parameters), as in the config.
    covariates
        Per-patient covariates of the partial correlation, as in the config.
    family
        The Benjamini-Hochberg family of the q values (``association.family``).
    n_perm
        Permutations of the permutation p (exact enumeration up to 8 patients).
    n_boot
        Bootstrap resamples of the CI (read as a test: the CI excludes 0).
    n_random_sets
        Matched random gene sets per signature for the specificity p. *Calibration value*:
        19 instead of 200 (time): the p then takes the values ``k / 20`` and, if the
        signature and its random sets are exchangeable under the null,
        ``P(p <= 0.05) = P(k = 1) = 1 / 20`` exactly; its power is capped accordingly
        (the smallest p is 0.05).
    """

    null_sizes: tuple[int, ...] = (8, 16, 32)
    power_sizes: tuple[int, ...] = (8, 16, 32)
    power_rhos: tuple[float, ...] = (0.3, 0.5, 0.7)
    cells_per_patient: int = 120
    n_background_genes: int = 1000
    low_cd8_patients: int = 0
    primary_signature: str = "Cytotoxic_cells_Danaher2017"
    primary_target: str = "PLP2"
    activation_signatures: tuple[str, ...] = _ACTIVATION
    independent_signatures: tuple[str, ...] = _INDEPENDENT
    sender_effect_size: float = 1.0
    target_effect_size: float = 1.0
    cancer_type: str = "melanoma"
    min_coverage: float = 0.5
    min_genes: int = 50
    max_mito_fraction: float = 0.2
    min_cd8_cells: int = 10
    min_malignant_cells: int = 20
    min_patients: int = 6
    method: str = "tirosh"
    n_bins: int = 25
    ctrl_size: int = 50
    ucell_max_rank: int = 1500
    aucell_n_up: int | None = None
    aucell_ties: str = "mean"
    covariates: tuple[str, ...] = ("n_malignant", "cd8_fraction", "median_counts")
    family: str = "dataset"
    n_perm: int = 10000
    n_boot: int = 2000
    n_random_sets: int = 19

    def scoring_options(self) -> dict[str, object]:
        """Keyword arguments of the scoring stages, as ``scoring_options()`` of
        ``workflow/rules/common.smk`` builds them from the config's ``scoring:``."""
        return {
            "method": self.method,
            "n_bins": self.n_bins,
            "ctrl_size": self.ctrl_size,
            "max_rank": self.ucell_max_rank,
            "n_up": self.aucell_n_up,
            "aucell_ties": self.aucell_ties,
        }


@dataclass(frozen=True)
class CalibrationInputs:
    """The gene sets, targets and background pool the cohorts are simulated from.

    Attributes
    ----------
    signatures
        Sender signature name -> genes (scored and simulated).
    targets
        Receiver target genes (simulated in malignant cells and tested).
    background_pool
        Gene symbols the background genes are drawn from.
    identity
        The marker and gene-position tables of the identity step
        (:func:`cd8exo.identity.identify_cells` keywords ``cd8_markers``,
        ``lineage_markers``, ``gene_positions``), as the ``annotate_cells`` rule reads them.
    symbol_tables
        HGNC alias tables for :func:`cd8exo.scoring.prepare_signatures` (``None``: exact
        names, which is all a simulated cohort needs).
    """

    signatures: Mapping[str, Sequence[str]]
    targets: tuple[str, ...]
    background_pool: tuple[str, ...] = field(repr=False)
    identity: Mapping[str, pd.DataFrame] = field(repr=False, default_factory=dict)
    symbol_tables: SymbolTables | None = field(repr=False, default=None)


def load_inputs(
    resources: str | Path,
    *,
    signatures: Sequence[str] | None = None,
    targets: Sequence[str] | None = None,
) -> CalibrationInputs:
    """Read the bundled sender signatures, targets and GENCODE protein-coding symbols.

    Parameters
    ----------
    resources
        The repository's ``resources/`` directory (``gene_sets/senders.gmt``,
        ``targets/targets.tsv``, ``genome/gencode_v48_genes_homo_sapiens.csv.gz``, and the
        identity step's ``markers/`` and ``genome/hg38_gencode_v27_gene_pos.txt``).
    signatures, targets
        Keep only these signatures / targets (default: all), e.g. to make a quick run.

    Returns
    -------
    The inputs of :func:`simulate_calibration_cohort`.
    """

    resources = Path(resources)
    all_signatures = read_gmt(resources / "gene_sets" / "senders.gmt")
    all_targets = read_targets(resources / "targets" / "targets.tsv")["gene"].tolist()
    if signatures is not None:
        unknown = [s for s in signatures if s not in all_signatures]
        if unknown:
            msg = (
                f"load_inputs: signatures {unknown} are not in {resources}/gene_sets/"
                f"senders.gmt (known: {sorted(all_signatures)})."
            )
            raise ValueError(msg)
        all_signatures = {s: all_signatures[s] for s in signatures}
    if targets is not None:
        unknown = [t for t in targets if t not in all_targets]
        if unknown:
            msg = (
                f"load_inputs: targets {unknown} are not in {resources}/targets/targets.tsv "
                f"(known: {all_targets})."
            )
            raise ValueError(msg)
        all_targets = list(targets)
    pool = _protein_coding_symbols(resources / "genome" / "gencode_v48_genes_homo_sapiens.csv.gz")
    markers = resources / "markers"
    identity = read_identity_references(
        [markers / "cd8_identity_markers.tsv", markers / "cd8_support_markers.tsv"],
        markers / "malignant_lineage_markers.tsv",
        resources / "genome" / "hg38_gencode_v27_gene_pos.txt",
    )
    return CalibrationInputs(
        signatures=dict(all_signatures),
        targets=tuple(all_targets),
        background_pool=tuple(pool),
        identity=identity,
        symbol_tables=load_symbol_tables(
            resources / "genome" / "hgnc_alias_table.tsv.gz",
            resources / "genome" / "gencode_v48_genes_homo_sapiens.csv.gz",
        ),
    )


def _check_settings(settings: CalibrationSettings, inputs: CalibrationInputs) -> None:
    if settings.primary_signature not in inputs.signatures:
        msg = (
            f"primary_signature {settings.primary_signature!r} is not among the signatures "
            f"{sorted(inputs.signatures)}; choose one of them."
        )
        raise ValueError(msg)
    if settings.primary_target not in inputs.targets:
        msg = (
            f"primary_target {settings.primary_target!r} is not among the targets "
            f"{list(inputs.targets)}; choose one of them."
        )
        raise ValueError(msg)
    if settings.primary_signature not in settings.activation_signatures:
        msg = (
            f"primary_signature {settings.primary_signature!r} is not an activation signature "
            f"{list(settings.activation_signatures)}: power cohorts would plant nothing on it."
        )
        raise ValueError(msg)
    sizes = [*settings.null_sizes, *settings.power_sizes]
    if not settings.null_sizes or min(sizes) < settings.min_patients:
        msg = (
            f"cohort sizes {sizes} must be non-empty and at least min_patients="
            f"{settings.min_patients}."
        )
        raise ValueError(msg)
    bad = [r for r in settings.power_rhos if not -1.0 <= r <= 1.0]
    if bad:
        msg = f"power_rhos {bad} are not correlations in [-1, 1]."
        raise ValueError(msg)


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
    the config (``tests/unit/test_stages.py`` checks both paths give the same table).

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
    scoring = settings.scoring_options()
    scored = stages.score(
        kept,
        gene_sets={"signatures": signatures},
        targets=list(targets),
        tables=symbol_tables,
        min_coverage=settings.min_coverage,
        rng=seeds["scoring"],
        scoring=scoring,
    )
    table, excluded = stages.aggregate(
        kept,
        scored.scores,
        genes=list(targets),
        min_cd8_cells=settings.min_cd8_cells,
        min_malignant_cells=settings.min_malignant_cells,
        dataset=cohort.name,
    )
    random_sets, null_note = None, ""
    if settings.n_random_sets:
        try:
            random_sets = stages.score_random_sets(
                kept,
                scored.prepared.signatures,
                n_sets=settings.n_random_sets,
                rng=seeds["random_sets"],
                scoring=scoring,
            )
        except ValueError as error:
            # e.g. an expression bin without enough genes to match; the workflow would stop,
            # a calibration run records the cohort's specificity p as missing instead
            logger.warning("%s: no specificity null (%s)", cohort.name, error)
            null_note = f"specificity: {error}"
    associations = stages.associate(
        table,
        random_sets,
        dataset=cohort.name,
        covariates=settings.covariates,
        min_patients=settings.min_patients,
        n_boot=settings.n_boot,
        n_perm=settings.n_perm,
        ci_level=1.0 - alpha,
        family=settings.family,
        rng=seeds["stats"],
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
                    results.append(_run_task(task))
                    progress(k)
        finally:
            _WORKER.clear()
            _WORKER.update(saved)
    else:
        with ProcessPoolExecutor(
            max_workers=jobs, initializer=_init_worker, initargs=(inputs, settings, alpha)
        ) as pool:
            for k, result in enumerate(pool.map(_run_task, tasks, chunksize=4), start=1):
                results.append(result)
                progress(k)
    return pd.concat(results, ignore_index=True)


def _run_family(
    family: str,
    n_cohorts: int,
    *,
    inputs: CalibrationInputs,
    settings: CalibrationSettings | None,
    alpha: float,
    rng: int,
    jobs: int,
) -> pd.DataFrame:
    """Check the settings, list one family's cohorts and run them (see the public callers).

    ``"null"``: cohort ``i`` has ``null_sizes[i % len(null_sizes)]`` patients and nothing
    planted. ``"power"``: ``n_cohorts`` cohorts per (size, rho) of the power grid, cohort
    ``i`` of a size with the same seeds for every rho.
    """
    settings = settings or CalibrationSettings()
    _check_settings(settings, inputs)
    if n_cohorts < 1:
        msg = f"n_cohorts must be at least 1, got {n_cohorts}."
        raise ValueError(msg)
    if family == "null":
        sizes = settings.null_sizes
        tasks = [("null", i, sizes[i % len(sizes)], None, int(rng)) for i in range(n_cohorts)]
    else:
        tasks = [
            ("power", i, n, float(rho), int(rng))
            for n in settings.power_sizes
            for rho in settings.power_rhos
            for i in range(n_cohorts)
        ]
    return _run_tasks(
        tasks, inputs=inputs, settings=settings, alpha=alpha, jobs=jobs, what=f"{family} cohorts"
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
    return _run_family(
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
    return _run_family(
        "power", n_cohorts, inputs=inputs, settings=settings, alpha=alpha, rng=rng, jobs=jobs
    )


def binomial_ci(successes: int, trials: int, *, level: float = 0.95) -> tuple[float, float]:
    """Exact (Clopper-Pearson) confidence interval of a binomial proportion.

    Parameters
    ----------
    successes, trials
        Counts; ``(nan, nan)`` when ``trials`` is 0.
    level
        Confidence level.

    Returns
    -------
    ``(low, high)``, as :meth:`scipy.stats.binomtest(...).proportion_ci(method="exact")`.
    """
    if trials == 0:
        return float("nan"), float("nan")
    ci = sps.binomtest(int(successes), int(trials)).proportion_ci(
        confidence_level=level, method="exact"
    )
    return float(ci.low), float(ci.high)


def rejections(table: pd.DataFrame, *, alpha: float = 0.05) -> pd.DataFrame:
    """Whether each test rejects at ``alpha``: 1.0, 0.0, or NaN when it was not computed.

    A p value rejects when ``p <= alpha``; ``bootstrap_ci`` rejects when the interval
    (level ``1 - alpha``) excludes 0.

    Parameters
    ----------
    table
        Rows with the columns of :data:`P_VALUE_KINDS`, ``ci_low`` and ``ci_high``.
    alpha
        Significance level.

    Returns
    -------
    Same index, one column per kind (:data:`P_VALUE_KINDS` then ``bootstrap_ci``).
    """
    out = {}
    for kind in P_VALUE_KINDS:
        p = table[kind].to_numpy(dtype=float)
        out[kind] = np.where(np.isfinite(p), (p <= alpha).astype(float), np.nan)
    low = table["ci_low"].to_numpy(dtype=float)
    high = table["ci_high"].to_numpy(dtype=float)
    ok = np.isfinite(low) & np.isfinite(high)
    out["bootstrap_ci"] = np.where(ok, ((low > 0) | (high < 0)).astype(float), np.nan)
    return pd.DataFrame(out, index=table.index)


def _meta_rejections(primary: pd.DataFrame, *, alpha: float) -> np.ndarray:
    """Pool consecutive pairs of null cohorts by :func:`cd8exo.meta.meta_analysis`."""
    ordered = primary.sort_values("cohort")
    out = []
    for start in range(0, len(ordered) - 1, 2):
        pair = ordered.iloc[start : start + 2]
        rows = pair.assign(dataset=[f"cohort{c}" for c in pair["cohort"]])
        meta = meta_analysis(rows[["dataset", "signature", "target", "n_patients", "rho"]])
        p = float(meta["p_value"].iloc[0]) if len(meta) else float("nan")
        out.append(float(p <= alpha) if math.isfinite(p) else np.nan)
    return np.array(out, dtype=float)


def _rate_row(values: np.ndarray) -> dict[str, float | int]:
    valid = values[np.isfinite(values)]
    k, m = int(valid.sum()), int(valid.size)
    low, high = binomial_ci(k, m)
    return {
        "n_tests": m,
        "rejection_rate": k / m if m else np.nan,
        "ci_low": low,
        "ci_high": high,
    }


def _clustered_rate(values: pd.DataFrame, *, column: str) -> dict[str, float | int]:
    """Rate over all pairs with a 95% normal interval that treats the cohort as the unit."""
    frame = values[["cohort", column]].dropna()
    per = frame.groupby("cohort")[column].agg(["sum", "count"])
    total, m = float(per["sum"].sum()), float(per["count"].sum())
    n_clusters = len(per)
    if m == 0:
        return {"n_tests_all_pairs": 0, "rejection_rate_all_pairs": np.nan,
                "all_pairs_ci_low": np.nan, "all_pairs_ci_high": np.nan}  # fmt: skip
    rate = total / m
    if n_clusters > 1:
        # ratio estimator's variance (clustered): sum_c (y_c - rate * m_c)^2 / M^2 * C/(C-1)
        resid = per["sum"] - rate * per["count"]
        se = math.sqrt((resid**2).sum() / m**2 * n_clusters / (n_clusters - 1))
    else:
        se = float("nan")
    z = float(sps.norm.ppf(0.975))
    return {
        "n_tests_all_pairs": int(m),
        "rejection_rate_all_pairs": rate,
        "all_pairs_ci_low": max(0.0, rate - z * se),
        "all_pairs_ci_high": min(1.0, rate + z * se),
    }


def type1_table(
    null: pd.DataFrame,
    *,
    alpha: float = 0.05,
    primary_signature: str,
    primary_target: str,
    perm_target: tuple[float, float] = (0.03, 0.07),
) -> pd.DataFrame:
    """Type I error of every p value over null cohorts, pooled and by cohort size.

    Parameters
    ----------
    null
        Output of :func:`run_null_cohorts`.
    alpha
        Significance level.
    primary_signature, primary_target
        The pair whose rejection rate (one test per cohort) is ``rejection_rate``.
    perm_target
        The acceptance band of the permutation p's rate, stated in ``note``.

    Returns
    -------
    One row per (``p_value_kind``, ``n_patients``; ``"all"`` pooled first): ``n_cohorts``,
    ``alpha``, ``n_tests`` (cohorts where the primary pair's test was computed),
    ``rejection_rate`` with its exact binomial 95% CI ``ci_low`` / ``ci_high``, the rate
    over all (signature, target) pairs (``n_tests_all_pairs``,
    ``rejection_rate_all_pairs``, ``all_pairs_ci_*``: cohort-clustered 95% CI) and a
    ``note``. ``meta_p_value`` pools consecutive pairs of null cohorts (so its
    ``n_cohorts`` counts meta-analyses) and is reported pooled only.
    """
    if null.empty:
        msg = "type1_table: no null cohorts to summarise."
        raise ValueError(msg)
    rejected = rejections(null, alpha=alpha).assign(
        cohort=null["cohort"].to_numpy(), n_planned=null["n_planned"].to_numpy()
    )
    is_primary = (
        (null["signature"] == primary_signature) & (null["target"] == primary_target)
    ).to_numpy()
    if not is_primary.any():
        msg = (
            f"type1_table: no row for the primary pair ({primary_signature}, {primary_target}); "
            "pass the pair the cohorts were analysed for."
        )
        raise ValueError(msg)
    kinds = [*P_VALUE_KINDS, EXTRA_KINDS[0]]  # the meta-analysis p is added below
    groups: list[tuple[str, np.ndarray]] = [("all", np.ones(len(null), dtype=bool))]
    for n in sorted(pd.unique(null["n_planned"])):
        groups.append((str(int(n)), (null["n_planned"] == n).to_numpy()))
    rows = []
    for kind in kinds:
        for label, mask in groups:
            subset = rejected.loc[mask]
            primary_values = subset.loc[is_primary[mask], kind].to_numpy(dtype=float)
            row = {
                "p_value_kind": kind,
                "n_patients": label,
                "n_cohorts": int(subset["cohort"].nunique()),
                "alpha": alpha,
                **_rate_row(primary_values),
                **_clustered_rate(subset, column=kind),
            }
            rows.append(row)
    primary = null.loc[is_primary]
    meta = _meta_rejections(primary, alpha=alpha)
    rows.append(
        {
            "p_value_kind": "meta_p_value",
            "n_patients": "all",
            "n_cohorts": int(meta.size),
            "alpha": alpha,
            **_rate_row(meta),
            "n_tests_all_pairs": 0,
            "rejection_rate_all_pairs": np.nan,
            "all_pairs_ci_low": np.nan,
            "all_pairs_ci_high": np.nan,
        }
    )
    table = pd.DataFrame(rows)
    notes = []
    for row in table.itertuples():
        note = ""
        if row.p_value_kind == "perm_p_value" and row.n_patients == "all":
            low, high = perm_target
            met = low <= row.rejection_rate <= high
            note = f"target {low}-{high}: {'met' if met else 'NOT met'}"
        elif row.p_value_kind == "bootstrap_ci":
            note = f"{1 - alpha:.0%} percentile CI excludes 0"
        elif row.p_value_kind == "meta_p_value":
            note = "DerSimonian-Laird over 2 null cohorts (consecutive pairs)"
        notes.append(note)
    table["note"] = notes
    return table


def power_table(power: pd.DataFrame, *, alpha: float = 0.05) -> pd.DataFrame:
    """Power of every p value per (cohort size, planted rho).

    Parameters
    ----------
    power
        Output of :func:`run_power_cohorts`.
    alpha
        Significance level.

    Returns
    -------
    One row per (``n_patients`` planned, ``planted_rho``, ``p_value_kind``): ``power``
    (share of cohorts rejecting at ``alpha``), ``n_cohorts``, ``n_tests``, its exact 95%
    CI ``ci_low`` / ``ci_high``, ``mean_rho`` (mean Spearman rho the workflow measured),
    ``mean_latent_r`` (mean sample Pearson r of the planted latents ``a_p`` and ``c_p``)
    and ``mean_n_analysed`` (patients left after QC and the cell-count thresholds).
    """
    if power.empty:
        msg = "power_table: no power cohorts to summarise."
        raise ValueError(msg)
    rejected = rejections(power, alpha=alpha)
    rows = []
    for (n, rho), idx in power.groupby(["n_planned", "planted_rho"], sort=True).groups.items():
        cohorts = power.loc[idx]
        for kind in rejected.columns:
            rate = _rate_row(rejected.loc[idx, kind].to_numpy(dtype=float))
            rows.append(
                {
                    "n_patients": int(n),
                    "planted_rho": float(rho),
                    "p_value_kind": kind,
                    "power": rate["rejection_rate"],
                    "n_cohorts": int(cohorts["cohort"].nunique()),
                    "n_tests": rate["n_tests"],
                    "ci_low": rate["ci_low"],
                    "ci_high": rate["ci_high"],
                    "mean_rho": float(cohorts["rho"].mean()),
                    "mean_latent_r": float(cohorts["latent_r"].mean()),
                    "mean_n_analysed": float(cohorts["n_patients"].mean()),
                }
            )
    return pd.DataFrame(rows)


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


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: ``python -m cd8exo.sim.calibrate --n-cohorts 500 --out results/calibration``."""
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
    parser.add_argument("--out", type=Path, required=True, help="output directory")
    parser.add_argument("--seed", type=int, default=20261126, help="seed (%(default)s)")
    parser.add_argument("--alpha", type=float, default=0.05, help="level (%(default)s)")
    parser.add_argument(
        "--jobs", type=int, default=1, help="worker processes, one per core (%(default)s)"
    )
    parser.add_argument(
        "--resources",
        type=Path,
        default=Path(__file__).resolve().parents[3] / "resources",
        help="the repository's resources/ directory (default: %(default)s)",
    )
    args = parser.parse_args(argv)
    if not 0.0 < args.alpha < 1.0:
        parser.error(f"--alpha must be between 0 and 1, got {args.alpha}")
    if args.n_cohorts < 1 or args.n_power_cohorts < 0 or args.jobs < 1:
        parser.error("--n-cohorts and --jobs must be >= 1 and --n-power-cohorts >= 0")
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
    out = args.out
    write_table(results["type1"].round(4), out / "type1.tsv")
    write_table(results["power"].round(4), out / "power.tsv")
    write_table(results["null_cohorts"], out / "null_cohorts.tsv.gz")
    write_table(results["power_cohorts"], out / "power_cohorts.tsv.gz")
    elapsed = time.monotonic() - start
    write_table(
        _settings_table(
            settings,
            n_cohorts=args.n_cohorts,
            n_power_cohorts=args.n_power_cohorts,
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


if __name__ == "__main__":
    sys.exit(main())
