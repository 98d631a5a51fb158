"""The stages that work on patient tables only (rules in ``envs/stats.yaml``: no scanpy).

associate, summarise_datasets; see :mod:`cd8exo.stages`.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import MISSING, dataclass, fields
from typing import Any

import numpy as np
import pandas as pd

from cd8exo._utils import RNGLike
from cd8exo.patients.table import patient_covariates, split_patient_table
from cd8exo.stats.association import association_table
from cd8exo.stats.specificity import null_score_tables, specificity_p_values
from cd8exo.stats.testable import dataset_status, not_testable_reason, untested_table

logger = logging.getLogger(__name__)

__all__ = ["AssociationSettings", "associate", "summarise_datasets"]


@dataclass(frozen=True)
class AssociationSettings:
    """The settings of an association across patients, as the config gives them.

    ``covariates``, ``min_patients``, ``n_boot``, ``n_perm``, ``ci_level``, ``family`` and
    ``rng`` are those of :func:`cd8exo.stats.association.association_table` (``ci_level``
    is its ``level``); ``min_cd8_cells`` and ``min_malignant_cells`` are the thresholds of
    :func:`aggregate`, quoted in the reason of an untestable dataset.
    """

    covariates: Sequence[str]
    min_patients: int
    n_boot: int
    n_perm: int
    ci_level: float
    family: str
    rng: RNGLike
    min_cd8_cells: int | None = None
    min_malignant_cells: int | None = None

    @classmethod
    def from_params(cls, params: Any) -> AssociationSettings:
        """From a rule's ``params`` (the same names; the seed is ``params.seed``); a
        missing required name raises ``AttributeError``, not a silent None."""
        values = {
            f.name: getattr(params, f.name)
            if f.default is MISSING
            else getattr(params, f.name, f.default)
            for f in fields(cls)
            if f.name != "rng"
        }
        return cls(rng=params.seed, **values)


def _skipped_signatures(coverage: pd.DataFrame | None, scored: Sequence[str]) -> dict[str, str]:
    """Signature -> why it was not scored, from the coverage table of ``score_signatures``."""
    if coverage is None or coverage.empty:
        return {}
    skipped = coverage[coverage["status"].astype(str) == "skipped"]
    return {
        str(row.signature): f"signature skipped: {row.reason}"
        for row in skipped.itertuples()
        if str(row.signature) not in scored
    }


def _mark_absent_targets(table: pd.DataFrame, receiver: pd.DataFrame) -> pd.DataFrame:
    """Rows of targets without any value (the gene is not in the data) say so in ``note``."""
    absent = [str(t) for t in receiver.columns if receiver[t].isna().all()]
    if not absent or table.empty:
        return table
    logger.warning("Target gene(s) not in the data, not tested: %s", ", ".join(absent))
    rows = table["target"].astype(str).isin(absent)
    return table.assign(note=table["note"].where(~rows, "target gene not in the data"))


def associate(
    patients: pd.DataFrame,
    random_sets: pd.DataFrame | None,
    *,
    dataset: str,
    settings: AssociationSettings,
    coverage: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """Rule ``associate_patients``: every sender signature against every target.

    A dataset that cannot be tested is a result, not an error: when fewer than
    ``min_patients`` patients are included, every (signature, target) row is NA with the
    reason in ``note`` (:func:`cd8exo.stats.testable.not_testable_reason`, e.g. ``"2 of 8
    patients have >= 10 CD8 T cells and >= 20 malignant cells; 6 needed"``) and a warning
    names the dataset. Signatures skipped by ``score_signatures`` (``coverage``) get NA
    rows saying why, after the tested ones; a target gene absent from the data gets the
    note ``"target gene not in the data"``.

    Parameters
    ----------
    patients
        The patient table of :func:`aggregate`.
    random_sets
        The long table of :func:`score_random_sets`; None (no null was drawn) leaves
        ``specificity_p`` NA.
    settings
        The association's settings (:class:`AssociationSettings`).
    coverage
        The coverage table of :func:`score`; None: no rows for skipped signatures.
    """
    sender, receiver = split_patient_table(patients)
    skipped = _skipped_signatures(coverage, list(sender.columns))
    reason = not_testable_reason(
        patients,
        min_patients=settings.min_patients,
        min_cd8_cells=settings.min_cd8_cells,
        min_malignant_cells=settings.min_malignant_cells,
    )
    if reason:
        logger.warning("%s: not testable: %s", dataset, reason)
    if reason or sender.shape[1] == 0:
        table = untested_table(
            dataset,
            list(sender.columns),
            list(receiver.columns),
            n_patients=len(sender),
            note=reason,
        )
    else:
        table = _tested(patients, random_sets, dataset=dataset, settings=settings)
        table = _mark_absent_targets(table, receiver)
    # in a dataset that cannot be tested at all, that is the reason for every row
    extra = [
        untested_table(
            dataset, [signature], list(receiver.columns), n_patients=0, note=reason or note
        )
        for signature, note in skipped.items()
    ]
    if extra:
        table = pd.concat([table, *extra], ignore_index=True)
    return table


def _tested(
    patients: pd.DataFrame,
    random_sets: pd.DataFrame | None,
    *,
    dataset: str,
    settings: AssociationSettings,
) -> pd.DataFrame:
    """The association table of a testable dataset, with its specificity p values."""
    sender, receiver = split_patient_table(patients)
    table = association_table(
        sender,
        receiver,
        dataset=dataset,
        covariates=patient_covariates(patients, columns=list(settings.covariates)),
        min_patients=settings.min_patients,
        n_boot=settings.n_boot,
        n_perm=settings.n_perm,
        level=settings.ci_level,
        family=settings.family,
        rng=settings.rng,
    )
    if random_sets is None:
        return table.assign(specificity_p=np.nan)
    null = null_score_tables(random_sets, patients=sender.index)
    return specificity_p_values(table, null_scores=null, receiver=receiver)


def summarise_datasets(
    associations: pd.DataFrame, patients: pd.DataFrame, *, datasets: Sequence[str]
) -> pd.DataFrame:
    """Rule ``summarise_datasets``: each dataset's status (analysed / partly / not
    testable) and why (:func:`cd8exo.stats.testable.dataset_status`)."""
    return dataset_status(associations, patients, datasets=datasets)
