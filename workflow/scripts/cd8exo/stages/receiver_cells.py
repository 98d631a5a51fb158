"""Stage of rule ``score_receiver_sets`` (``envs/scanpy.yaml``): receiver gene sets in the
malignant cells, per patient, with their matched random sets; see :mod:`cd8exo.stages`."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import anndata as ad
import pandas as pd

from cd8exo._utils import RNGLike
from cd8exo.genes import SymbolTables
from cd8exo.scoring.prepare import PreparedSignatures, prepare_signatures
from cd8exo.scoring.random_sets import random_set_scores
from cd8exo.scoring.receiver import patient_set_scorer, patient_set_scores

logger = logging.getLogger(__name__)

__all__ = ["ReceiverScores", "score_receiver_sets"]


@dataclass(frozen=True)
class ReceiverScores:
    """What rule ``score_receiver_sets`` writes.

    Attributes
    ----------
    prepared
        The target sets as scored (sender genes removed, alias rescue, coverage); the
        ``coverage`` and ``overlap`` tables name the set in column ``target``.
    scores
        Patients (index ``patient``) x scored sets: the mean score over the patient's
        malignant cells.
    random_sets
        Long table ``patient``, ``target``, ``random_set``, ``score``: random gene sets
        matched to each target set in size and malignant-cell expression, scored alike.
    """

    prepared: PreparedSignatures
    scores: pd.DataFrame
    random_sets: pd.DataFrame


def _as_target_sets(prepared: PreparedSignatures) -> PreparedSignatures:
    """The coverage and overlap tables with the set in column ``target`` (not ``signature``)."""
    overlap = prepared.overlap.rename(columns={"signature": "target"})
    overlap["action"] = "removed from target set (sender signature gene)"
    return PreparedSignatures(
        signatures=prepared.signatures,
        coverage=prepared.coverage.rename(columns={"signature": "target"}),
        overlap=overlap,
    )


def score_receiver_sets(
    malignant: ad.AnnData,
    *,
    target_sets: Mapping[str, Sequence[str]],
    sender_signatures: Mapping[str, Sequence[str]],
    tables: SymbolTables | None,
    min_coverage: float,
    n_random_sets: int,
    rng: RNGLike,
    scoring: Mapping[str, object],
) -> ReceiverScores:
    """Rule ``score_receiver_sets``: each target set scored per patient in the malignant cells.

    The sets are matched to the data like the sender signatures (alias rescue, coverage,
    ``min_coverage``), with the overlap guard the other way round: every gene of a sender
    signature as scored is removed from every target set, so that a sender gene never
    enters both sides of a correlation. Scores are the per-cell scores of
    ``scoring["method"]`` averaged over each patient's malignant cells
    (:func:`cd8exo.scoring.receiver.patient_set_scores`, which says why the mean).

    Parameters
    ----------
    malignant
        The malignant cells only (:func:`cd8exo.cells.store.malignant_cells`),
        log-normalised, with ``obs["patient"]``.
    target_sets
        Set name -> genes (:func:`cd8exo.io.cargo.cargo_target_sets`).
    sender_signatures
        The sender signatures as scored (rule ``score_signatures``' prepared GMT).
    tables
        HGNC alias tables (None: exact names).
    min_coverage
        ``signatures.min_coverage``: a set with a smaller share of its genes scored is
        skipped, with the reason.
    n_random_sets
        Matched random sets per target set (``association.n_random_sets``), drawn from
        the genes that are in no sender signature; 0 draws none.
    rng
        Seed of the scoring (Tirosh control genes) and of the random sets.
    scoring
        Keyword arguments of :func:`cd8exo.scoring.score.score_signatures`.
    """
    sender_genes = {str(name): list(genes) for name, genes in sender_signatures.items()}
    prepared = prepare_signatures(
        target_sets,
        malignant.var_names,
        tables=tables,
        exclude=sender_genes,
        min_coverage=min_coverage,
    )
    scores = patient_set_scores(malignant, prepared.signatures, rng=rng, **scoring)
    logger.info(
        "%d of %d target sets scored in %d malignant cells of %d patients",
        len(prepared.signatures),
        len(target_sets),
        malignant.n_obs,
        len(scores),
    )
    options = dict(scoring)
    random_sets = random_set_scores(
        malignant,
        prepared.signatures,
        n_sets=n_random_sets,
        n_bins=int(options.pop("n_bins", 25)),
        rng=rng,
        exclude=[g for genes in sender_genes.values() for g in genes],
        patient_scores=patient_set_scorer(),  # the Tirosh mean profiles computed once
        **options,
    )
    return ReceiverScores(
        prepared=_as_target_sets(prepared),
        scores=scores,
        random_sets=random_sets.rename(columns={"signature": "target"}),
    )
