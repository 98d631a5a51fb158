"""Stage of rule ``associate_receiver_sets`` (``envs/stats.yaml``): every sender signature
against every cargo miRNA's target set, across patients; see :mod:`cd8exo.stages`."""

from __future__ import annotations

import logging
from collections.abc import Sequence

import pandas as pd

from cd8exo.patients.table import EXPR_PREFIX, split_patient_table
from cd8exo.stages.patients import AssociationSettings, associate
from cd8exo.stats.target_sets import SET_COLUMNS, set_family, set_specificity_p_values
from cd8exo.stats.testable import untested_table

logger = logging.getLogger(__name__)

__all__ = ["associate_receiver_sets", "set_patient_table"]


def set_patient_table(patients: pd.DataFrame, set_scores: pd.DataFrame) -> pd.DataFrame:
    """The patient table with the target-set scores in the place of the target genes.

    Counts, covariates, sender scores and ``included`` are the patient table's; a patient
    without malignant cells has no set score (NA).
    """
    genes = [c for c in patients.columns if c.startswith(EXPR_PREFIX)]
    sets = set_scores.add_prefix(EXPR_PREFIX)
    sets.index = sets.index.astype(str)
    table = patients.drop(columns=genes).set_index("patient")
    table = table.join(sets, how="left")
    return table.reset_index()


def _skipped_set_rows(
    coverage: pd.DataFrame | None, *, dataset: str, signatures: Sequence[str]
) -> pd.DataFrame | None:
    """NA rows for the target sets ``score_receiver_sets`` skipped, saying why."""
    if coverage is None or coverage.empty or not len(signatures):
        return None
    skipped = coverage[coverage["status"].astype(str) == "skipped"]
    rows = [
        untested_table(
            dataset,
            list(signatures),
            [str(row.target)],
            n_patients=0,
            note=f"target set skipped: {row.reason}",
        )
        for row in skipped.itertuples()
    ]
    return pd.concat(rows, ignore_index=True) if rows else None


def associate_receiver_sets(
    patients: pd.DataFrame,
    set_scores: pd.DataFrame,
    random_sets: pd.DataFrame | None,
    *,
    annotation: pd.DataFrame,
    dataset: str,
    settings: AssociationSettings,
    coverage: pd.DataFrame | None = None,
    set_coverage: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """Rule ``associate_receiver_sets``: the single genes' tests, on the target sets.

    Every (sender signature, target set) pair gets the columns of
    :func:`cd8exo.stages.patients.associate` (rho, CI, permutation p, partial, LOO; the
    same patients, covariates and ``settings``), with Benjamini-Hochberg q values over the
    set-level rows alone (their own family: ``family`` ends ``;target sets``), plus
    ``set_specificity_p`` against random gene sets matched to each target set
    (:func:`cd8exo.stats.target_sets.set_specificity_p_values`). The expected direction
    is negative (``expected_sign`` -1: the miRNA represses its targets); the p values
    are two-sided. ``mirna``, ``source`` and ``status`` come from ``annotation``
    (:func:`cd8exo.io.cargo.cargo_target_sets`). Sets skipped by ``score_receiver_sets``
    (``set_coverage``) get NA rows with the reason.

    Parameters
    ----------
    patients
        The patient table of rule ``aggregate_patients`` (sender scores, ``included``,
        covariates).
    set_scores
        Patients x target sets (rule ``score_receiver_sets``).
    random_sets
        Its long table of matched random sets; None: ``set_specificity_p`` NA.
    coverage
        The sender coverage table (skipped signatures get NA rows, as for the genes).
    """
    table = set_patient_table(patients, set_scores)
    sender, _ = split_patient_table(table)
    if set_scores.shape[1] == 0:
        # no set could be scored: only the skipped sets' rows, saying why
        associations = untested_table(dataset, [], [], n_patients=0, note="")
    else:
        associations = associate(table, None, dataset=dataset, settings=settings, coverage=coverage)
    associations = set_specificity_p_values(associations, random_sets, sender=sender)
    skipped = _skipped_set_rows(set_coverage, dataset=dataset, signatures=list(sender.columns))
    if skipped is not None:
        skipped = skipped.assign(set_specificity_p=float("nan"), set_specificity_n_sets=0)
        associations = pd.concat([associations, skipped], ignore_index=True)
    return _annotated(set_family(associations), annotation)


def _annotated(table: pd.DataFrame, annotation: pd.DataFrame) -> pd.DataFrame:
    """``mirna``, ``source``, ``status`` after ``target``; ``expected_sign`` -1; no gene-side
    ``specificity_p`` (its null is of the sender signatures, not of the sets)."""
    table = table.drop(columns=["specificity_p", "specificity_n_sets"], errors="ignore")
    info = annotation.set_index("target")[["mirna", "source", "status"]]
    joined = info.reindex(table["target"].astype(str))
    position = table.columns.get_loc("target") + 1
    for k, column in enumerate(SET_COLUMNS[:3]):
        table.insert(position + k, column, joined[column].fillna("").to_numpy())
    table["expected_sign"] = -1
    return table
