"""Set-level calibration: type I error and power of the target-set tests on simulated cohorts.

Two families of their own, so that the single genes' cohorts (and their published tables)
stay as they were:

* **set null cohorts**: the genes of ``settings.target_sets`` are added to a null cohort
  (nothing planted); every sender signature is tested against every set by the workflow's
  stages (``score_receiver_sets``, ``associate_receiver_sets``). The type I error is
  reported for ``(primary_signature, primary_set)``, by cohort size, and over all pairs.
* **set power cohorts**: the activation signatures are planted in CD8+ T cells
  (``sender_effect_size``) and ``set_fraction`` of ``primary_set``'s genes are repressed
  by ``exp(-set_effect_size * a_p)`` in malignant cells (:mod:`cd8exo.sim.target_sets`),
  for each of ``set_effect_sizes`` (cohorts of one size share their seeds across effects);
  ``planted_rho`` of the per-cohort table holds the set effect size.

Cohort ``i`` of the set null family uses ``SeedSequence(seed, spawn_key=(2, i))``, cohort
``i`` of size ``n`` of the set power family ``SeedSequence(seed, spawn_key=(3, n, i))``.
``specificity_p`` of the per-cohort tables is the *set* specificity p
(``set_specificity_p``).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from cd8exo.genes import SymbolTables
from cd8exo.sim.calibrate import cohorts
from cd8exo.sim.calibrate.settings import CalibrationInputs, CalibrationSettings
from cd8exo.sim.cohort import SimulatedCohort, simulate_cohort
from cd8exo.stages.receiver_cells import score_receiver_sets
from cd8exo.stages.receiver_patients import associate_receiver_sets

logger = logging.getLogger(__name__)

__all__ = ["analyse_set_cohort", "run_set_cohorts", "simulate_set_cohort"]

_SET_NULL_FAMILY, _SET_POWER_FAMILY = 2, 3


def simulate_set_cohort(
    inputs: CalibrationInputs,
    *,
    n_patients: int,
    set_effect_size: float | None,
    settings: CalibrationSettings,
    rng: int,
    name: str = "calibration_sets",
) -> SimulatedCohort:
    """A set null cohort (``set_effect_size=None``: nothing planted) or a set power cohort
    (``primary_set`` repressed by the activation latent with ``set_effect_size``, the
    activation signatures planted); see the module docstring."""
    sets = {name: inputs.target_sets[name] for name in settings.target_sets}
    planted = set_effect_size is not None
    return simulate_cohort(
        n_patients=n_patients,
        n_cells=n_patients * settings.cells_per_patient,
        n_background_genes=settings.n_background_genes,
        signatures=inputs.signatures,
        activation_signatures=[s for s in settings.activation_signatures if s in inputs.signatures],
        independent_signatures=[
            s for s in settings.independent_signatures if s in inputs.signatures
        ],
        negative_targets=(),
        positive_targets=(),
        null_targets=list(inputs.targets),
        background_pool=inputs.background_pool,
        low_cd8_patients=settings.low_cd8_patients,
        effect_size=settings.sender_effect_size if planted else 0.0,
        target_sets=sets,
        planted_sets=[settings.primary_set] if planted else [],
        set_fraction=settings.set_fraction,
        set_effect_size=set_effect_size if planted else 0.0,
        rng=rng,
        name=name,
    )


def analyse_set_cohort(
    cohort: SimulatedCohort,
    *,
    inputs: CalibrationInputs,
    signatures: Mapping[str, Sequence[str]],
    settings: CalibrationSettings,
    seeds: Mapping[str, int],
    alpha: float = 0.05,
    identity: Mapping[str, pd.DataFrame] | None = None,
    symbol_tables: SymbolTables | None = None,
) -> tuple[pd.DataFrame, int]:
    """The workflow's stages on a set cohort: ``prepare_dataset`` to ``aggregate_patients``
    (:func:`cd8exo.sim.calibrate.cohorts.aggregated_cohort`), then ``score_receiver_sets``
    on the malignant cells and ``associate_receiver_sets``, with the settings in the place
    of the config (one seed for the set scores and their random sets, as the rule has).

    Returns
    -------
    The set-level association table and the number of excluded patients.
    """
    kept, scored, table, excluded = cohorts.aggregated_cohort(
        cohort,
        signatures=signatures,
        targets=inputs.targets,
        settings=settings,
        seeds=seeds,
        identity=identity,
        symbol_tables=symbol_tables,
    )
    malignant = kept[kept.obs["malignant"].to_numpy(dtype=bool)].copy()
    receiver = score_receiver_sets(
        malignant,
        target_sets={name: inputs.target_sets[name] for name in settings.target_sets},
        sender_signatures=scored.prepared.signatures,
        tables=symbol_tables,
        min_coverage=settings.min_coverage,
        n_random_sets=settings.n_random_sets,
        rng=seeds["random_sets"],
        scoring=settings.scoring_options(),
    )
    associations = associate_receiver_sets(
        table,
        receiver.scores,
        receiver.random_sets,
        annotation=inputs.set_annotation,
        dataset=cohort.name,
        settings=settings.association(rng=seeds["stats"], ci_level=1.0 - alpha),
        coverage=scored.prepared.coverage,
        set_coverage=receiver.prepared.coverage,
    )
    return associations, len(excluded)


def _run_set_task(task: tuple[str, int, int, float | None, int]) -> pd.DataFrame:
    family, index, n_patients, effect, seed = task
    inputs: CalibrationInputs = cohorts._WORKER["inputs"]  # type: ignore[assignment]
    settings: CalibrationSettings = cohorts._WORKER["settings"]  # type: ignore[assignment]
    planted = family == "set_power"
    key = (_SET_POWER_FAMILY, n_patients, index) if planted else (_SET_NULL_FAMILY, index)
    seeds = cohorts._seeds(seed, key)
    cohort = simulate_set_cohort(
        inputs,
        n_patients=n_patients,
        set_effect_size=effect,
        settings=settings,
        rng=seeds["simulate"],
        name=f"{family}_{n_patients}_{index}",
    )
    signatures = (
        {settings.primary_signature: inputs.signatures[settings.primary_signature]}
        if planted
        else inputs.signatures
    )
    associations, n_excluded = analyse_set_cohort(
        cohort,
        inputs=inputs,
        signatures=signatures,
        settings=settings,
        seeds=seeds,
        alpha=float(cohorts._WORKER["alpha"]),  # type: ignore[arg-type]
        identity=inputs.identity,
        symbol_tables=inputs.symbol_tables,
    )
    if planted:  # only the primary pair is reported
        associations = associations[associations["target"] == settings.primary_set]
    out = associations.assign(
        family=family,
        cohort=index,
        n_planned=n_patients,
        planted_rho=np.nan if effect is None else effect,
        latent_r=np.nan,
        n_excluded=n_excluded,
        specificity_p=associations["set_specificity_p"],
    )
    return out.loc[:, list(cohorts.COHORT_COLUMNS)].reset_index(drop=True)


def run_set_cohorts(
    family: str,
    n_cohorts: int,
    *,
    inputs: CalibrationInputs,
    settings: CalibrationSettings | None = None,
    alpha: float = 0.05,
    rng: int,
    jobs: int = 1,
) -> pd.DataFrame:
    """Simulate and analyse the set null (``family="set_null"``: ``n_cohorts`` cohorts,
    sizes cycling through ``null_sizes``) or set power cohorts (``"set_power"``:
    ``n_cohorts`` per (size of ``power_sizes``, effect of ``set_effect_sizes``)).

    Returns
    -------
    One row per (cohort, signature, target set), columns
    :data:`cd8exo.sim.calibrate.cohorts.COHORT_COLUMNS` (``specificity_p`` is the set
    specificity p; power cohorts: the primary pair only).
    """
    settings = settings or CalibrationSettings()
    if not inputs.target_sets:
        msg = "run_set_cohorts: needs cargo target sets in inputs (CalibrationInputs.target_sets)."
        raise ValueError(msg)
    if family not in ("set_null", "set_power"):
        msg = f"family must be 'set_null' or 'set_power', got {family!r}."
        raise ValueError(msg)
    return cohorts.run_family(
        family,
        n_cohorts,
        inputs=inputs,
        settings=settings,
        alpha=alpha,
        rng=rng,
        jobs=jobs,
        effects=None if family == "set_null" else settings.set_effect_sizes,
        run_task=_run_set_task,
    )
