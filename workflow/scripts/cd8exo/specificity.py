"""Matched random gene sets, scored like the signatures, for the specificity null.

A sender signature's association with a target is specific when it is stronger than
that of random gene sets of the same size drawn from the same expression bins
(:func:`cd8exo.stats.matched_random_sets`). This module scores those sets exactly as
the signature is scored (same method as the signatures) and averages them over each
patient's CD8 T cells, giving the null per-patient scores that
:func:`cd8exo.stats.specificity_p_values` compares the observed rho with.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence

import anndata as ad
import numpy as np
import pandas as pd

from cd8exo.aggregate import sender_scores
from cd8exo.scoring import gene_means, score_signatures
from cd8exo.stats import matched_random_sets

__all__ = ["SET_SEPARATOR", "null_score_tables", "random_set_scores"]

logger = logging.getLogger(__name__)

#: Random set ``i`` of signature ``S`` is named ``S|random|i``.
SET_SEPARATOR = "|random|"


def random_set_scores(
    adata: ad.AnnData,
    signatures: Mapping[str, Sequence[str]],
    *,
    n_sets: int = 200,
    n_bins: int = 25,
    rng: int,
    **score_options,
) -> pd.DataFrame:
    """Per-patient CD8 T-cell scores of random gene sets matched to each signature.

    Parameters
    ----------
    adata
        Log-normalised data with the contract ``obs`` (``patient``, ``cell_type``).
    signatures
        Signature name -> genes (genes absent from ``adata`` are dropped).
    n_sets
        Random sets per signature; 0 returns an empty table.
    n_bins
        Expression bins the random sets are matched in (and, for the Tirosh method, the
        control-gene bins).
    rng
        Seed; each signature's sets come from their own child seed, so a signature's null
        does not depend on the other signatures.
    **score_options
        Passed to :func:`cd8exo.scoring.score_signatures` (``method``, ``ctrl_size``,
        ``max_rank``, ...): the random sets must be scored exactly as the signatures.

    Returns
    -------
    Long table with columns ``patient``, ``signature``, ``random_set`` (0-based) and
    ``score`` (mean over the patient's CD8 T cells).
    """
    columns = ["patient", "signature", "random_set", "score"]
    if n_sets == 0 or not signatures:
        return pd.DataFrame(columns=columns)
    means = pd.Series(gene_means(adata.X), index=adata.var_names)
    children = np.random.SeedSequence(rng).spawn(len(signatures))
    tables = []
    # one signature at a time bounds the cells x sets score matrix
    for (name, genes), child in zip(signatures.items(), children, strict=True):
        present = [g for g in genes if g in means.index]
        if not present:
            logger.warning("signature %s: no gene present, no random sets drawn", name)
            continue
        sets = matched_random_sets(
            present, means, n_sets=n_sets, n_bins=n_bins, rng=np.random.default_rng(child)
        )
        named = {f"{name}{SET_SEPARATOR}{i}": s for i, s in enumerate(sets)}
        scores = score_signatures(adata, named, rng=rng, n_bins=n_bins, **score_options)
        per_patient = sender_scores(scores, adata.obs)
        long = per_patient.rename_axis(index="patient", columns="set").stack().rename("score")
        long = long.reset_index()
        long["signature"] = name
        long["random_set"] = long["set"].str.rsplit("|", n=1).str[1].astype(int)
        tables.append(long[columns])
        logger.info("signature %s: %d matched random sets scored", name, len(sets))
    return pd.concat(tables, ignore_index=True) if tables else pd.DataFrame(columns=columns)


def null_score_tables(
    long: pd.DataFrame, *, patients: pd.Index | None = None
) -> dict[str, pd.DataFrame]:
    """Turn the long table of :func:`random_set_scores` into signature -> patients x sets."""
    out = {}
    for signature, rows in long.groupby("signature", sort=False):
        table = rows.pivot(index="patient", columns="random_set", values="score")
        table.index = table.index.astype(str)
        if patients is not None:
            table = table.reindex(patients.astype(str))
        out[str(signature)] = table
    return out
