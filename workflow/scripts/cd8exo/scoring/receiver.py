"""Receiver gene sets (each cargo miRNA's targets) scored per patient in the malignant cells.

The sender side scores signatures in every cell and averages them over a patient's CD8+ T
cells; the receiver side does the same over a patient's malignant cells, with the same
scorer (:func:`cd8exo.scoring.score.score_signatures`, chunked over cells) and the same
options. The mean of per-cell scores is used, not a score of the pseudobulk: for the
default ``tirosh`` method the score is linear in the cell's log-expression given its
control genes, so the mean over cells *is* the score of the patient's mean log-expression
profile, with control genes binned on the malignant cells' own expression; the rank methods
(``ucell``, ``aucell``) are defined per cell and stay so; and sender and receiver are scored
alike. ``ssgsea``, a bulk method, scores each patient's malignant pseudobulk instead (as it
scores the CD8+ T-cell pseudobulk on the sender side).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from cd8exo._utils import RNGLike
from cd8exo.cells.harmonise import linear_values
from cd8exo.scoring.score import score_signatures
from cd8exo.scoring.ssgsea import group_sums, ssgsea_scores

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    import anndata as ad

logger = logging.getLogger(__name__)

__all__ = ["patient_set_scores"]


def patient_set_scores(
    adata: ad.AnnData,
    sets: Mapping[str, Sequence[str]],
    *,
    rng: RNGLike,
    method: str = "tirosh",
    **options,
) -> pd.DataFrame:
    """Per-patient scores of gene sets over *all* cells of ``adata`` (the malignant cells).

    Parameters
    ----------
    adata
        The malignant cells only, log-normalised, with ``obs["patient"]``.
    sets
        Set name -> genes as in ``adata.var_names`` (prepared, see
        :func:`cd8exo.scoring.prepare.prepare_signatures`).
    rng
        Seed or generator (Tirosh control genes).
    method, **options
        As :func:`cd8exo.scoring.score.score_signatures` (``n_bins``, ``ctrl_size``, ...).

    Returns
    -------
    Patients (sorted, index ``patient``) x sets: the mean per-cell score of the patient's
    cells, or for ``ssgsea`` the enrichment score of the patient's pseudobulk.
    """
    patients = adata.obs["patient"].astype(str).to_numpy()
    if not sets or adata.n_obs == 0:
        index = pd.Index(np.unique(patients), name="patient")
        return pd.DataFrame(index=index, columns=list(sets), dtype=np.float64)
    if method == "ssgsea":
        profiles = group_sums(linear_values(adata), patients, var_names=adata.var_names)
        scores = ssgsea_scores(profiles, sets, rng=rng)
    else:
        cells = score_signatures(adata, sets, rng=rng, method=method, **options)
        scores = cells.groupby(patients, sort=True).mean()
    scores.index = pd.Index(scores.index.astype(str), name="patient")
    scores.columns.name = None
    return scores
