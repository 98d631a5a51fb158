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
from typing import TYPE_CHECKING, NamedTuple

import numpy as np
import pandas as pd

from cd8exo._utils import RNGLike
from cd8exo.cells.harmonise import linear_values
from cd8exo.scoring._chunks import gene_means as _gene_means
from cd8exo.scoring.score import score_signatures
from cd8exo.scoring.ssgsea import group_sums, ssgsea_scores
from cd8exo.scoring.tirosh import tirosh_scores

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping, Sequence

    import anndata as ad

logger = logging.getLogger(__name__)

__all__ = ["MeanProfiles", "mean_profiles", "patient_set_scorer", "patient_set_scores"]


def patient_set_scores(
    adata: ad.AnnData,
    sets: Mapping[str, Sequence[str]],
    *,
    rng: RNGLike,
    method: str = "tirosh",
    means: MeanProfiles | None = None,
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
    means
        ``tirosh`` only: :func:`mean_profiles` of ``adata``, if already computed.

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
    elif method == "tirosh":
        scores = _tirosh_from_profiles(means or mean_profiles(adata), sets, rng=rng, **options)
    else:
        cells = score_signatures(adata, sets, rng=rng, method=method, **options)
        scores = cells.groupby(patients, sort=True).mean()
    scores.index = pd.Index(scores.index.astype(str), name="patient")
    scores.columns.name = None
    return scores


class MeanProfiles(NamedTuple):
    """Each patient's mean log-expression profile and the gene means over all the cells."""

    profiles: pd.DataFrame  # patients (sorted) x genes
    gene_means: np.ndarray


def mean_profiles(adata: ad.AnnData) -> MeanProfiles:
    """One pass over the cells (block by block) for :class:`MeanProfiles`.

    The Tirosh score is linear in a cell's values given its control genes, so the mean of a
    patient's per-cell scores is the score of the patient's mean profile: sets are then
    scored on patients x genes, not cells x genes (18 target sets x 200 random sets took
    9 min over 38,000 malignant cells cell by cell). The gene means, which bin the control
    genes, are those :func:`score_signatures` computes over the same cells.
    """
    patients = adata.obs["patient"].astype(str).to_numpy()
    sums = group_sums(adata.X, patients, var_names=adata.var_names)
    n_cells = pd.Series(patients).value_counts().reindex(sums.index).to_numpy()
    profiles = sums / n_cells[:, None]
    return MeanProfiles(profiles=profiles, gene_means=_gene_means(adata.X))


def _tirosh_from_profiles(
    means: MeanProfiles,
    sets: Mapping[str, Sequence[str]],
    *,
    rng: RNGLike,
    n_bins: int = 25,
    ctrl_size: int = 50,
    **_other_methods_options,
) -> pd.DataFrame:
    profiles = means.profiles
    scores = tirosh_scores(
        profiles.to_numpy(),
        profiles.columns,
        sets,
        rng=rng,
        n_bins=n_bins,
        ctrl_size=ctrl_size,
        means=means.gene_means,
    )
    return pd.DataFrame(scores, index=profiles.index, columns=list(sets))


def patient_set_scorer() -> Callable[..., pd.DataFrame]:
    """:func:`patient_set_scores` that computes the Tirosh mean profiles once, on first use.

    For scoring many batches of sets over the same cells (the random sets of every target
    set, :func:`cd8exo.scoring.random_sets.random_set_scores`).
    """
    cache: dict[int, MeanProfiles] = {}

    def scorer(adata, sets, *, rng, method: str = "tirosh", **options) -> pd.DataFrame:
        means = None
        if method == "tirosh" and sets and adata.n_obs:
            if id(adata) not in cache:
                cache.clear()
                cache[id(adata)] = mean_profiles(adata)
            means = cache[id(adata)]
        return patient_set_scores(adata, sets, rng=rng, method=method, means=means, **options)

    return scorer
