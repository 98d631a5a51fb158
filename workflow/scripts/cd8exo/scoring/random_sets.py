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
from collections.abc import Callable, Mapping, Sequence

import anndata as ad
import numpy as np
import pandas as pd

from cd8exo._utils import RNGLike, as_rng
from cd8exo.patients.aggregate import SENDER_CELL_TYPE, sender_scores
from cd8exo.scoring._chunks import gene_means
from cd8exo.scoring.score import score_signatures

logger = logging.getLogger(__name__)

__all__ = ["SET_SEPARATOR", "matched_random_sets", "matching_problem", "random_set_scores"]

#: Random set ``i`` of signature ``S`` is named ``S|random|i``.
SET_SEPARATOR = "|random|"

#: Scores gene sets per patient: ``(adata, sets, *, rng, n_bins, **options)`` -> patients x sets.
PatientScorer = Callable[..., pd.DataFrame]


def random_set_scores(
    adata: ad.AnnData,
    signatures: Mapping[str, Sequence[str]],
    *,
    n_sets: int = 200,
    n_bins: int = 25,
    rng: int,
    exclude: Sequence[str] = (),
    patient_scores: PatientScorer | None = None,
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
    exclude
        Genes never drawn into a random set (e.g. the sender genes, for receiver sets
        from which they are removed); the expression bins are those of the other genes.
    patient_scores
        ``patient_scores(adata, sets, rng=..., n_bins=..., **score_options)`` -> patients x
        sets; default: :func:`cd8exo.scoring.score_signatures`, then the mean over each
        patient's CD8 T cells (the receiver side passes
        :func:`cd8exo.scoring.receiver.patient_set_scores`: malignant cells).
    **score_options
        Passed to :func:`cd8exo.scoring.score_signatures` (``method``, ``ctrl_size``,
        ``max_rank``, ...): the random sets must be scored exactly as the signatures.

    Returns
    -------
    Long table with columns ``patient``, ``signature``, ``random_set`` (0-based) and
    ``score`` (mean over the patient's CD8 T cells, or what ``patient_scores`` gives).
    """
    columns = ["patient", "signature", "random_set", "score"]
    if n_sets == 0 or not signatures or adata.n_obs == 0:
        if adata.n_obs == 0 and signatures:
            logger.warning("no cells: no random sets drawn (specificity p values are NA)")
        return pd.DataFrame(columns=columns)
    means = pd.Series(gene_means(adata.X), index=adata.var_names)
    excluded = set(map(str, exclude))
    senders = (adata.obs["cell_type"].astype(str) == SENDER_CELL_TYPE).to_numpy()
    children = np.random.SeedSequence(rng).spawn(len(signatures))
    tables = []
    # one signature at a time bounds the cells x sets score matrix
    for (name, genes), child in zip(signatures.items(), children, strict=True):
        present = [g for g in genes if g in means.index]
        if not present:
            logger.warning("signature %s: no gene present, no random sets drawn", name)
            continue
        pool = means[~means.index.isin(excluded - set(present))] if excluded else means
        problem = matching_problem(present, pool, n_bins=n_bins)
        if problem:
            # a dataset with few genes: this signature's specificity p values stay NA
            logger.warning("signature %s: no random sets drawn: %s", name, problem)
            continue
        sets = matched_random_sets(
            present, pool, n_sets=n_sets, n_bins=n_bins, rng=np.random.default_rng(child)
        )
        named = {f"{name}{SET_SEPARATOR}{i}": s for i, s in enumerate(sets)}
        if patient_scores is None:
            # only the CD8 T cells' scores are used; the control bins still come from all cells
            scores = score_signatures(
                adata,
                named,
                rng=rng,
                n_bins=n_bins,
                cells=senders,
                gene_means=means.to_numpy(),
                **score_options,
            )
            per_patient = sender_scores(scores, adata.obs)
        else:
            per_patient = patient_scores(adata, named, rng=rng, n_bins=n_bins, **score_options)
        long = per_patient.rename_axis(index="patient", columns="set").stack().rename("score")
        long = long.reset_index()
        long["signature"] = name
        long["random_set"] = long["set"].str.rsplit("|", n=1).str[1].astype(int)
        tables.append(long[columns])
        logger.info("signature %s: %d matched random sets scored", name, len(sets))
    return pd.concat(tables, ignore_index=True) if tables else pd.DataFrame(columns=columns)


def matched_random_sets(
    signature_genes: Sequence[str],
    gene_means: pd.Series,
    *,
    n_sets: int = 200,
    n_bins: int = 25,
    rng: RNGLike,
) -> list[list[str]]:
    """Random gene sets matched to a signature in size and expression.

    Genes are split into ``n_bins`` bins of (nearly) equal size by their mean
    expression (as :func:`scanpy.tl.score_genes` bins its control genes). Each random
    set replaces every signature gene by a gene drawn from the same bin; within a set
    genes are drawn without replacement, and no signature gene is ever drawn.

    Parameters
    ----------
    signature_genes
        The signature's genes. Genes absent from ``gene_means`` (or with a missing
        mean) are dropped with a warning naming them.
    gene_means
        Mean expression per gene (index: gene symbols), over the cells the signature is
        scored in.
    n_sets
        Number of random sets.
    n_bins
        Number of expression bins.
    rng
        Seed or generator.

    Returns
    -------
    list of list of str
        ``n_sets`` gene lists; gene ``j`` of each list comes from the bin of the ``j``-th
        retained signature gene (in the order given).
    """
    if not isinstance(gene_means, pd.Series):
        msg = (
            f"gene_means must be a pandas Series indexed by gene, got {type(gene_means).__name__}."
        )
        raise TypeError(msg)
    if gene_means.index.has_duplicates:
        dup = gene_means.index[gene_means.index.duplicated()].unique().tolist()[:5]
        msg = f"gene_means has duplicated genes {dup}; give one mean per gene."
        raise ValueError(msg)
    if n_sets < 1 or n_bins < 1:
        msg = f"n_sets and n_bins must be positive, got n_sets={n_sets}, n_bins={n_bins}."
        raise ValueError(msg)
    means = gene_means.astype(float).dropna()
    genes = list(dict.fromkeys(signature_genes))
    missing = [g for g in genes if g not in means.index]
    if missing:
        logger.warning(
            "matched_random_sets: %d signature gene(s) have no expression mean and are dropped: %s",
            len(missing),
            ", ".join(missing),
        )
    genes = [g for g in genes if g in means.index]
    if not genes:
        msg = (
            "matched_random_sets: none of the signature genes are in gene_means; check "
            "that gene symbols match the dataset's var_names."
        )
        raise ValueError(msg)
    problem = matching_problem(genes, means, n_bins=n_bins)
    if problem:
        msg = f"matched_random_sets: {problem}."
        raise ValueError(msg)
    bins = _expression_bins(means, n_bins=n_bins)
    is_signature = means.index.isin(genes)
    generator = as_rng(rng)
    sets = np.empty((n_sets, len(genes)), dtype=object)
    signature_bins = bins.loc[genes].to_numpy()
    for b in np.unique(signature_bins):
        slots = np.flatnonzero(signature_bins == b)
        pool = means.index[(bins.to_numpy() == b) & ~is_signature].to_numpy()
        draws = generator.permuted(np.tile(np.arange(pool.size), (n_sets, 1)), axis=1)
        sets[:, slots] = pool[draws[:, : slots.size]]
    return [list(row) for row in sets]


def _expression_bins(means: pd.Series, *, n_bins: int) -> pd.Series:
    """Equal-count bins on the rank of the means (ties broken by order): every bin has a pool."""
    return pd.Series(
        np.floor(means.rank(method="first").to_numpy() - 1) * n_bins // len(means),
        index=means.index,
    ).astype(int)


def matching_problem(genes: Sequence[str], means: pd.Series, *, n_bins: int) -> str | None:
    """Why random sets cannot be matched to ``genes`` in ``n_bins`` bins (None when they can).

    They cannot when there are fewer genes than bins, or a bin holds more signature genes
    than other genes to draw from (a dataset with few genes).
    """
    means = means.astype(float).dropna()
    if n_bins > len(means):
        return f"n_bins={n_bins} exceeds the number of genes ({len(means)})"
    bins = _expression_bins(means, n_bins=n_bins)
    is_signature = means.index.isin(list(genes))
    signature_bins = bins.loc[[g for g in genes if g in means.index]].to_numpy()
    for b in np.unique(signature_bins):
        n_slots = int((signature_bins == b).sum())
        n_pool = int(((bins.to_numpy() == b) & ~is_signature).sum())
        if n_pool < n_slots:
            return (
                f"expression bin {b} holds {n_slots} signature gene(s) but only {n_pool} "
                f"other gene(s) to draw from; use fewer bins (n_bins={n_bins})"
            )
    return None
