"""Expression clusters assigned to non-malignant compartments or to the tumour lineage.

The cancer types and their lineage markers (:data:`CANCER_TYPE_LINEAGES`) and
:func:`find_compartments`, which :func:`~cd8exo.cells.identity.malignant.call_malignant`
uses to find its non-malignant reference cells and to gate malignant cells by lineage.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import anndata as ad
import numpy as np
import pandas as pd

from cd8exo._utils import RNGLike
from cd8exo.cells.identity.graph import (
    _check_embedding,
    _check_log_normalised,
    _gene_columns,
    _module_mean,
    _otsu,
    embed_cells,
)
from cd8exo.errors import InputError

logger = logging.getLogger(__name__)

__all__ = ["CANCER_TYPE_LINEAGES", "KNOWN_CANCER_TYPES", "find_compartments"]

#: Lineage-marker groups of ``malignant_lineage_markers.tsv`` used for each cancer type.
#: Types mapped to ``()`` have no lineage markers: malignant cells are called from the
#: copy-number profiles and the non-malignant compartments alone.
CANCER_TYPE_LINEAGES: dict[str, tuple[str, ...]] = {
    "melanoma": ("melanoma malignant cells",),
    "carcinoma": (
        "epithelial (carcinoma lineage)",
        "epithelial (carcinoma lineage; lung-biased)",
    ),
    "glioma": (),
    "other": (),
}


#: Common names of cancer types, mapped onto :data:`CANCER_TYPE_LINEAGES`.
CANCER_TYPE_ALIASES: dict[str, str] = {
    "skcm": "melanoma",
    "breast": "carcinoma",
    "brca": "carcinoma",
    "tnbc": "carcinoma",
    "lung": "carcinoma",
    "luad": "carcinoma",
    "lusc": "carcinoma",
    "nsclc": "carcinoma",
    "head_and_neck": "carcinoma",
    "hnscc": "carcinoma",
    "hnsc": "carcinoma",
    "colorectal": "carcinoma",
    "crc": "carcinoma",
    "ovarian": "carcinoma",
    "pancreatic": "carcinoma",
    "endometrial": "carcinoma",
    "ucec": "carcinoma",
    "gastric": "carcinoma",
    "liver": "carcinoma",
    "hcc": "carcinoma",
    "kidney": "carcinoma",
    "rcc": "carcinoma",
    "prostate": "carcinoma",
    "bladder": "carcinoma",
    "oligodendroglioma": "glioma",
    "astrocytoma": "glioma",
    "glioblastoma": "glioma",
    "gbm": "glioma",
}


#: Every cancer type name :func:`call_malignant` accepts (the ``cancer_type`` column of the
#: dataset sheet is checked against these).
KNOWN_CANCER_TYPES: tuple[str, ...] = tuple(
    sorted(set(CANCER_TYPE_LINEAGES) | set(CANCER_TYPE_ALIASES))
)


def _resolve_cancer_type(cancer_type: str | None) -> tuple[str, ...]:
    if cancer_type is None:
        return ()
    key = str(cancer_type).strip().lower().replace(" ", "_").replace("-", "_")
    key = CANCER_TYPE_ALIASES.get(key, key)
    if key not in CANCER_TYPE_LINEAGES:
        known = sorted(set(CANCER_TYPE_LINEAGES) | set(CANCER_TYPE_ALIASES))
        msg = (
            f"Unknown cancer type {cancer_type!r}. Use one of {known}, or None (or 'other') to "
            "call malignant cells from copy-number profiles alone."
        )
        raise InputError(msg)
    return CANCER_TYPE_LINEAGES[key]


def _parse_lineage_markers(
    markers: pd.DataFrame, lineage_groups: Sequence[str]
) -> tuple[dict[str, list[str]], list[str]]:
    """Non-malignant compartments (``use == "negative"``) and the lineage genes."""
    missing = [c for c in ("gene", "group", "use") if c not in markers.columns]
    if missing:
        msg = (
            f"The lineage marker table lacks the column(s) {missing} (it has "
            f"{list(markers.columns)}); use resources/markers/malignant_lineage_markers.tsv."
        )
        raise InputError(msg)
    table = markers.assign(
        gene=markers["gene"].astype(str).str.strip(),
        group=markers["group"].astype(str).str.strip(),
        use=markers["use"].astype(str).str.strip(),
    )
    negative = table[table["use"] == "negative"]
    # "CAF / fibroblast (exclude)" -> "CAF / fibroblast"
    names = negative["group"].str.replace(r"\s*\(exclude\)\s*$", "", regex=True)
    compartments = {k: v.tolist() for k, v in negative["gene"].groupby(names, sort=True)}
    absent = [g for g in lineage_groups if g not in set(table["group"])]
    if absent:
        msg = (
            f"The lineage marker table has no group(s) {absent}; its groups are "
            f"{sorted(set(table['group']))}."
        )
        raise InputError(msg)
    lineage = table.loc[
        table["group"].isin(lineage_groups) & (table["use"] == "positive"), "gene"
    ].tolist()
    if not compartments:
        msg = "The lineage marker table has no rows with use == 'negative' (immune/stromal gates)."
        raise InputError(msg)
    return compartments, lineage


def find_compartments(
    adata: ad.AnnData,
    *,
    markers: pd.DataFrame,
    cancer_type: str | None = None,
    embedding: ad.AnnData | None = None,
    rng: RNGLike = 0,
    min_contrast: float = 3.0,
) -> pd.DataFrame:
    """Assign Leiden clusters to non-malignant compartments or to the tumour lineage.

    Every cell gets one score per marker group (mean ln(CP10k+1) of its genes). For
    each group the clusters' mean scores are split in two by Otsu's threshold; the group
    is *present* when the high class's mean is at least ``min_contrast`` times the low
    class's (a group absent from the data only varies by noise, while a present one, even
    when it dominates most clusters, leaves a gap), and then every cluster of the high
    class is eligible for it. A cluster is assigned the eligible group with the highest
    mean score, or "unassigned". Groups: the non-malignant compartments (``use == "negative"``:
    immune, CAF / fibroblast, endothelial) and, when the cancer type has lineage
    markers, ``"lineage"``.

    Parameters
    ----------
    adata
        Contract AnnData; not modified.
    markers
        ``resources/markers/malignant_lineage_markers.tsv`` (columns gene, group, use).
    cancer_type
        Selects the lineage markers (:data:`CANCER_TYPE_LINEAGES`,
        :data:`CANCER_TYPE_ALIASES`); None: no lineage group.
    embedding
        A precomputed :func:`embed_cells` result.
    rng
        Generator or seed (used only when ``embedding`` is None).
    min_contrast
        Ratio of the high to the low class of cluster means for a group to be present.

    Returns
    -------
    One row per cell: ``cluster``, ``compartment`` (a compartment name, "lineage" or
    "unassigned"), ``lineage_score`` (NaN without lineage markers) and one
    ``score_<group>`` column per compartment.
    """
    _check_log_normalised(adata, where="find_compartments")
    lineage_groups = _resolve_cancer_type(cancer_type)
    compartments, lineage = _parse_lineage_markers(markers, lineage_groups)
    if embedding is None:
        embedding = embed_cells(adata, rng=rng)
    _check_embedding(embedding, adata)
    clusters = embedding.obs["cluster"].astype(str).to_numpy()
    scores = {}
    for name, genes in compartments.items():
        cols, _ = _gene_columns(adata.var_names, genes, what=f"{name} markers")
        scores[name] = _module_mean(adata.X, cols)
    if lineage:
        cols, present = _gene_columns(adata.var_names, lineage, what="lineage markers")
        if not present:
            msg = (
                f"None of the lineage markers of cancer type {cancer_type!r} is in the data; "
                "check var_names are HGNC symbols, or pass cancer_type=None."
            )
            raise InputError(msg)
        scores["lineage"] = _module_mean(adata.X, cols)
    table = pd.DataFrame(scores, index=adata.obs_names)
    means = table.groupby(clusters).mean()
    eligible = pd.DataFrame(False, index=means.index, columns=means.columns)
    for group in means.columns:
        values = means[group].to_numpy()
        threshold, _ = _otsu(values)
        high = values >= threshold
        if high.all() or not high.any():
            continue
        low_mean = values[~high].mean()
        if values[high].mean() >= min_contrast * low_mean and values[high].mean() > 0:
            eligible[group] = high
        else:
            logger.info(
                "marker group %r: no cluster stands out (high/low cluster means %.3f/%.3f)",
                group,
                values[high].mean(),
                low_mean,
            )
    # among the groups a cluster is eligible for, the highest mean expression wins
    best = means.where(eligible, -np.inf).idxmax(axis=1).where(eligible.any(axis=1), "unassigned")
    for k in means.index:
        logger.info(
            "cluster %s -> %s (%s)",
            k,
            best[k],
            ", ".join(f"{g}={means.loc[k, g]:.2f}" for g in means.columns),
        )
    result = pd.DataFrame(
        {
            "cluster": clusters,
            "compartment": best.reindex(clusters).to_numpy(),
            "lineage_score": table["lineage"].to_numpy() if lineage else np.nan,
        },
        index=adata.obs_names,
    )
    for name in compartments:
        result[f"score_{name}"] = table[name].to_numpy()
    return result
