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

from cd8exo.sim.calibrate.cohorts import (
    COHORT_COLUMNS,
    analyse_cohort,
    run_null_cohorts,
    run_power_cohorts,
    simulate_calibration_cohort,
)
from cd8exo.sim.calibrate.run import main, run_calibration
from cd8exo.sim.calibrate.settings import CalibrationInputs, CalibrationSettings, load_inputs
from cd8exo.sim.calibrate.tables import (
    EXTRA_KINDS,
    P_VALUE_KINDS,
    binomial_ci,
    power_table,
    rejections,
    type1_table,
)

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
