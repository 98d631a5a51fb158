"""The stage that works on the patient table only (rule in ``envs/stats.yaml``: no scanpy).

associate; see :mod:`cd8exo.stages`.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from cd8exo._utils import RNGLike
from cd8exo.patients.table import patient_covariates, split_patient_table
from cd8exo.stats.association import association_table
from cd8exo.stats.specificity import null_score_tables, specificity_p_values

__all__ = ["associate"]


def associate(
    patients: pd.DataFrame,
    random_sets: pd.DataFrame | None,
    *,
    dataset: str,
    covariates: Sequence[str],
    min_patients: int,
    n_boot: int,
    n_perm: int,
    ci_level: float,
    family: str,
    rng: RNGLike,
) -> pd.DataFrame:
    """Rule ``associate_patients``: every sender signature against every target.

    Parameters
    ----------
    patients
        The patient table of :func:`aggregate`.
    random_sets
        The long table of :func:`score_random_sets`; None (no null was drawn) leaves
        ``specificity_p`` NA.
    covariates, min_patients, n_boot, n_perm, ci_level, family, rng
        As :func:`cd8exo.stats.association.association_table` (``ci_level`` is its
        ``level``).
    """
    sender, receiver = split_patient_table(patients)
    table = association_table(
        sender,
        receiver,
        dataset=dataset,
        covariates=patient_covariates(patients, columns=list(covariates)),
        min_patients=min_patients,
        n_boot=n_boot,
        n_perm=n_perm,
        level=ci_level,
        family=family,
        rng=rng,
    )
    if random_sets is None:
        return table.assign(specificity_p=np.nan)
    null = null_score_tables(random_sets, patients=sender.index)
    return specificity_p_values(table, null_scores=null, receiver=receiver)
