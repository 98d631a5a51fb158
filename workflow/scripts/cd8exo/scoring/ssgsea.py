"""ssGSEA of each patient's CD8 T-cell pseudobulk (gseapy), one score per patient.

Single-sample GSEA (Barbie DA et al., Nature 2009;462:108; as implemented by
:func:`gseapy.ssgsea`, Fang Z et al., Bioinformatics 2023) ranks the genes of one
expression profile and walks down the ranking, scoring how concentrated a gene set is
at the top. It is a bulk method: here the profile of a patient is the pseudobulk of
its CD8 T cells, the sum of their linear-scale expression
(:func:`cd8exo.harmonise.linear_values`: counts, or ``expm1`` of ln(CP10k+1)). Because
gseapy ranks each profile (``sample_norm_method="rank"``), scaling a profile (sum or
mean, CPM or not) does not change its score. The enrichment score ``ES`` is reported,
not gseapy's ``NES``, which divides by the range of all scores of the run and so
depends on the other patients and signatures.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from cd8exo._utils import RNGLike
from cd8exo.cells.normalise import linear_values
from cd8exo.patients.aggregate import group_sums

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    import anndata as ad
logger = logging.getLogger(__name__)

__all__ = ["group_sums", "ssgsea_cell_scores", "ssgsea_scores"]


def ssgsea_scores(
    profiles: pd.DataFrame,
    signatures: Mapping[str, Sequence[str]],
    *,
    rng: RNGLike,
    weight: float = 0.25,
    batch_size: int = 25,
) -> pd.DataFrame:
    """ssGSEA enrichment scores of expression profiles (:func:`gseapy.ssgsea`).

    Parameters
    ----------
    profiles
        Samples (e.g. patients) x genes, linear or log scale.
    signatures
        Signature name -> genes (genes absent from ``profiles`` are ignored by gseapy).
    rng
        Seed for gseapy (ssGSEA without permutations draws no random numbers; the seed
        is passed for completeness).
    weight
        Exponent of the rank weights (gseapy's ``weight``, ssGSEA's alpha).
    batch_size
        Samples per gseapy call (the scores do not depend on it; memory does).

    Returns
    -------
    Samples x signatures: the enrichment score ``ES`` (module docstring).
    """
    import gseapy

    if not profiles.index.is_unique:
        msg = "ssGSEA profiles must have unique sample names (one row per patient)."
        raise ValueError(msg)
    seed = int(np.random.default_rng(rng).integers(2**31 - 1))
    sets = {name: list(dict.fromkeys(map(str, genes))) for name, genes in signatures.items()}
    samples = pd.Index([f"s{i}" for i in range(len(profiles))])
    data = pd.DataFrame(
        profiles.to_numpy(dtype=np.float64).T, index=profiles.columns.astype(str), columns=samples
    )
    blocks = []
    # a sample's ES depends on that sample alone: batches bound gseapy's memory
    for start in range(0, len(samples), batch_size):
        result = gseapy.ssgsea(
            data=data.iloc[:, start : start + batch_size],
            gene_sets=sets,
            sample_norm_method="rank",
            min_size=1,
            max_size=max(1, data.shape[0]),
            permutation_num=0,
            weight=weight,
            threads=1,
            seed=seed,
            outdir=None,
            no_plot=True,
            verbose=False,
        )
        blocks.append(result.res2d[["Name", "Term", "ES"]])
    table = pd.concat(blocks, ignore_index=True).astype({"Name": str, "ES": np.float64})
    scores = table.pivot_table(index="Name", columns="Term", values="ES", aggfunc="first")
    scores = scores.reindex(index=samples, columns=list(signatures))
    scores.index = profiles.index.copy()
    scores.columns.name = None
    return scores


def ssgsea_cell_scores(
    adata: ad.AnnData,
    signatures: Mapping[str, Sequence[str]],
    *,
    rng: RNGLike,
    cell_type: str = "CD8_T",
) -> pd.DataFrame:
    """ssGSEA of each patient's ``cell_type`` pseudobulk, written to those cells.

    Parameters
    ----------
    adata
        Harmonised AnnData (``obs["patient"]``, ``obs["cell_type"]``).
    signatures
        Signature name -> genes.
    rng
        Seed (see :func:`ssgsea_scores`).
    cell_type
        The cells pseudobulked (the sender cell type).

    Returns
    -------
    Cells x signatures: every ``cell_type`` cell carries its patient's ES, other cells
    NaN, so that the per-patient mean over the cells is the patient's score.
    """

    for column in ("patient", "cell_type"):
        if column not in adata.obs:
            msg = f"ssGSEA needs obs[{column!r}] (the harmonised contract); it is missing."
            raise ValueError(msg)
    senders = (adata.obs["cell_type"].astype(str) == cell_type).to_numpy()
    out = pd.DataFrame(np.nan, index=adata.obs_names.copy(), columns=list(signatures))
    if not senders.any():
        logger.warning("ssGSEA: no %s cells; every score is NaN", cell_type)
        return out
    subset = adata[senders]
    patients = subset.obs["patient"].astype(str).to_numpy()
    profiles = group_sums(linear_values(subset), patients, var_names=adata.var_names)
    scores = ssgsea_scores(profiles, signatures, rng=rng)
    logger.info("ssGSEA: %d patient pseudobulks of %s cells scored", len(profiles), cell_type)
    out.loc[senders] = scores.loc[patients].to_numpy()
    return out
