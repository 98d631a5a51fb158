"""Malignant cells called from compartments, lineage markers and copy-number coherence."""

from __future__ import annotations

import logging
import warnings
from collections.abc import Sequence

import anndata as ad
import numpy as np
import pandas as pd
import scanpy as sc
import scipy.sparse as sp

from cd8exo._utils import RNGLike, as_rng, seed_from
from cd8exo.cells.identity.cnv import (
    CNV_EXCLUDED_GENES,
    CNVResult,
    _gene_positions_frame,
    _run_infercnv,
)
from cd8exo.cells.identity.graph import (
    _check_embedding,
    _check_log_normalised,
    _gene_columns,
    _module_mean,
    _neighbour_agreement,
    _otsu,
    embed_cells,
)

logger = logging.getLogger(__name__)

__all__ = ["CANCER_TYPE_LINEAGES", "KNOWN_CANCER_TYPES", "call_malignant", "find_compartments"]

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
        raise ValueError(msg)
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
        raise ValueError(msg)
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
        raise ValueError(msg)
    lineage = table.loc[
        table["group"].isin(lineage_groups) & (table["use"] == "positive"), "gene"
    ].tolist()
    if not compartments:
        msg = "The lineage marker table has no rows with use == 'negative' (immune/stromal gates)."
        raise ValueError(msg)
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
            raise ValueError(msg)
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


def _cluster_profiles(matrix: sp.csr_matrix, labels: np.ndarray) -> pd.Series:
    """Mean |mean profile| of each cluster: the copy-number signal shared by its cells."""
    out = {}
    for label in pd.unique(labels):
        rows = labels == label
        out[label] = float(np.abs(np.asarray(matrix[rows].mean(axis=0)).ravel()).mean())
    return pd.Series(out)


def call_malignant(
    adata: ad.AnnData,
    *,
    gene_positions: pd.DataFrame,
    reference_mask: np.ndarray | pd.Series | None = None,
    lineage_markers: pd.DataFrame | None = None,
    cancer_type: str | None = None,
    rng: RNGLike = 0,
    embedding: ad.AnnData | None = None,
    resolution: float = 1.0,
    cnv_resolution: float = 1.0,
    window_size: int = 100,
    step: int = 10,
    n_permutations: int = 2,
    min_coherence: float = 1.2,
    min_reference_cells: int = 10,
    max_cells_per_cluster: int = 300,
    n_jobs: int = 1,
    return_cnv: bool = False,
) -> pd.DataFrame | tuple[pd.DataFrame, CNVResult]:
    """Call malignant cells from inferred copy-number changes and lineage markers.

    1. **Reference.** Confidently non-malignant cells: the Leiden clusters that
       :func:`find_compartments` assigns to the immune, CAF/fibroblast or endothelial
       compartment (minus single cells with a lineage score above half the lineage
       clusters' mean), or ``reference_mask``. Each reference cluster is its own
       reference category, so infercnvpy uses its bounded difference (a cell's value is
       only called changed when it lies outside the range of all reference categories),
       which damps cell-type-specific genes such as HLA or immunoglobulins.
    2. **Copy-number profiles.** ``infercnvpy.tl.infercnv`` (window ``window_size``
       genes, ``step``, chrX/chrY excluded) with positions from ``gene_positions``;
       per-cell ``cnv_score`` = mean |profile| (the score of ``infercnvpy.tl.cnv_score``
       per cell); PCA, kNN and Leiden (``cnv_resolution``) on the profiles give
       ``cnv_cluster``.
    3. **Positional coherence.** The profiles are recomputed ``n_permutations`` times with
       the genes' positions shuffled (up to ``max_cells_per_cluster`` cells per
       cluster). A cluster's coherence is the mean |mean profile| with the real gene order
       over that with shuffled orders: about 1 for normal cells of any type
       (expression programmes do not follow the gene order), clearly above 1 for
       clones with copy-number changes. Clusters with coherence >= ``min_coherence``
       and mostly non-reference cells are *aberrant*.
    4. **Call.** A cell is malignant when its CNV cluster is aberrant, it is not a
       reference cell, its expression cluster is not a non-malignant compartment, and,
       when the cancer type has lineage markers, its expression cluster is the lineage
       compartment.

    Parameters
    ----------
    adata
        Contract AnnData (``X`` = ln(CP10k+1), symbols as ``var_names``); not modified.
    gene_positions
        Columns gene, chromosome, start, end (GRCh38,
        ``resources/genome/hg38_gencode_v27_gene_pos.txt``); 4 unnamed columns are
        read in that order.
    reference_mask
        Boolean per cell: the non-malignant reference. None: found with
        :func:`find_compartments` (needs ``lineage_markers``).
    lineage_markers
        ``resources/markers/malignant_lineage_markers.tsv``; None only together with
        ``reference_mask`` (then no compartment or lineage gating).
    cancer_type
        Selects the lineage markers; see :data:`CANCER_TYPE_LINEAGES`. None: CNV only.
    rng
        Generator or seed for every random step.
    embedding
        A precomputed :func:`embed_cells` result.
    resolution, cnv_resolution
        Leiden resolutions of the expression and copy-number clusterings.
    window_size, step
        infercnvpy running window (genes) and step.
    n_permutations
        Number of shuffled gene orders for the coherence.
    min_coherence
        Coherence above which a CNV cluster is aberrant.
    min_reference_cells
        Fewer reference cells than this is an error.
    max_cells_per_cluster
        Cells per CNV cluster used for the permutations (bounds their cost).
    n_jobs
        infercnvpy worker processes.
    return_cnv
        Also return the :class:`CNVResult` (for :func:`cnv_heatmap`).

    Returns
    -------
    One row per cell: ``is_malignant`` (bool), ``cnv_score``, ``cnv_cluster``,
    ``cnv_coherence`` (of its cluster), ``is_reference``, ``compartment``,
    ``lineage_score`` (NaN without lineage markers) and ``confidence`` (0-1: half the
    agreement of its CNV neighbours, half the distance of its cluster's coherence from
    ``min_coherence`` on a log scale, capped at 1). With ``return_cnv``, also the profiles.
    """
    _check_log_normalised(adata, where="call_malignant")
    gen = as_rng(rng)
    lineage_groups = _resolve_cancer_type(cancer_type)
    if lineage_markers is None and reference_mask is None:
        msg = (
            "call_malignant needs lineage_markers (to find immune and stromal reference cells) "
            "or an explicit reference_mask."
        )
        raise ValueError(msg)
    if reference_mask is not None:
        reference_mask = np.asarray(reference_mask, dtype=bool)
        if reference_mask.shape != (adata.n_obs,):
            msg = (
                f"reference_mask has shape {reference_mask.shape}; it needs one boolean per "
                f"cell ({adata.n_obs})."
            )
            raise ValueError(msg)
        if reference_mask.sum() < min_reference_cells:
            msg = (
                f"reference_mask marks {int(reference_mask.sum())} reference cells; at least "
                f"{min_reference_cells} confidently non-malignant cells are needed."
            )
            raise ValueError(msg)
    positions = _gene_positions_frame(gene_positions)
    positions = positions.loc[positions.index.intersection(adata.var_names)]
    positions = positions[~positions["chromosome"].isin(["chrM", "chrMT"])]
    # Rearranged immunoglobulin/TCR loci and the HLA cluster are blocks of neighbouring
    # genes expressed by one cell type only: they mimic copy-number changes (plasma
    # cells would look "amplified" on chr14q32/2p11/22q11), so they take no part.
    artefact = positions.index.str.match(CNV_EXCLUDED_GENES)
    if artefact.any():
        logger.info(
            "%d immunoglobulin/TCR/HLA genes left out of the CNV inference", int(artefact.sum())
        )
    positions = positions[~artefact]
    if len(positions) < 5 * window_size:
        msg = (
            f"Only {len(positions)} genes of the data have a genomic position (need at least "
            f"{5 * window_size} for windows of {window_size} genes). Check that var_names are "
            "HGNC symbols and that the position table is for human genes."
        )
        raise ValueError(msg)
    logger.info("%d of %d genes have a genomic position", len(positions), adata.n_vars)
    if embedding is None:
        embedding = embed_cells(adata, rng=gen, resolution=resolution)
    _check_embedding(embedding, adata)
    clusters = embedding.obs["cluster"].astype(str).to_numpy()

    if lineage_markers is not None:
        comp = find_compartments(
            adata, markers=lineage_markers, cancer_type=cancer_type, embedding=embedding
        )
        compartment = comp["compartment"].to_numpy()
        lineage_score = comp["lineage_score"].to_numpy()
    else:
        compartment = np.full(adata.n_obs, "unassigned", dtype=object)
        lineage_score = np.full(adata.n_obs, np.nan)
        if lineage_groups:
            logger.warning("cancer_type given without lineage_markers: no lineage gating")
    non_malignant = ~np.isin(compartment, ["lineage", "unassigned"])
    has_lineage = bool(lineage_groups) and lineage_markers is not None
    if has_lineage and not (compartment == "lineage").any():
        logger.warning(
            "No cluster expresses the %s lineage markers distinctly: no cell can pass the "
            "lineage gate. Check cancer_type, or set it to None to call from CNVs alone.",
            cancer_type,
        )

    if reference_mask is None:
        is_reference = non_malignant.copy()
        if has_lineage:
            lineage_top = pd.Series(lineage_score[compartment == "lineage"]).mean()
            if np.isfinite(lineage_top):
                is_reference &= lineage_score <= 0.5 * lineage_top
        categories = np.where(is_reference, compartment.astype(str) + ":" + clusters, "")
    else:
        is_reference = reference_mask.copy()
        categories = np.where(is_reference, "reference:" + clusters, "")
    # categories of a handful of cells give noisy reference means: drop them
    counts = pd.Series(categories[is_reference]).value_counts()
    small = counts.index[counts < 5]
    is_reference &= ~np.isin(categories, small)
    if is_reference.sum() < min_reference_cells:
        msg = (
            f"Only {int(is_reference.sum())} confidently non-malignant reference cells "
            f"(immune/stromal/endothelial clusters) were found; at least {min_reference_cells} "
            "are needed. Pass reference_mask (e.g. from author labels), or check the markers."
        )
        raise ValueError(msg)
    kept = sorted(set(categories[is_reference]))
    logger.info(
        "CNV reference: %d cells in %d categories (%s)",
        int(is_reference.sum()),
        len(kept),
        ", ".join(kept),
    )

    x = sp.csr_matrix(adata.X) if sp.issparse(adata.X) else np.asarray(adata.X)
    gene_cols = adata.var_names.get_indexer(positions.index)
    xg = x[:, gene_cols]
    reference = np.vstack([np.asarray(xg[categories == cat].mean(axis=0)).ravel() for cat in kept])
    matrix, chr_pos = _run_infercnv(
        xg,
        adata.obs_names,
        positions,
        reference=reference,
        window_size=window_size,
        step=step,
        n_jobs=n_jobs,
    )
    cnv_score = np.asarray(abs(matrix).mean(axis=1)).ravel()

    # copy-number clusters
    work = ad.AnnData(obs=pd.DataFrame(index=adata.obs_names))
    n_comps = int(max(2, min(30, matrix.shape[1] - 1, adata.n_obs - 2)))
    work.obsm["X_cnv_pca"] = sc.pp.pca(
        matrix,
        n_comps=n_comps,
        zero_center=False,
        svd_solver="arpack",
        random_state=seed_from(gen),
    )
    with warnings.catch_warnings():
        # identical (all-zero) profiles of reference cells make scanpy edit its sparse
        # distance matrix's diagonal in place: harmless
        warnings.simplefilter("ignore", sp.SparseEfficiencyWarning)
        sc.pp.neighbors(
            work,
            use_rep="X_cnv_pca",
            n_neighbors=int(min(15, adata.n_obs - 1)),
            random_state=seed_from(gen),
        )
    sc.tl.leiden(
        work,
        resolution=cnv_resolution,
        random_state=seed_from(gen),
        flavor="igraph",
        n_iterations=2,
        directed=False,
        key_added="cnv_cluster",
    )
    cnv_cluster = work.obs["cnv_cluster"].astype(str).to_numpy()

    # positional coherence on a bounded subsample of every cluster
    subsample = np.concatenate(
        [
            gen.permutation(np.nonzero(cnv_cluster == k)[0])[:max_cells_per_cluster]
            for k in sorted(set(cnv_cluster))
        ]
    )
    subsample.sort()
    real = _cluster_profiles(matrix[subsample], cnv_cluster[subsample])
    shuffled = []
    for _ in range(n_permutations):
        order = gen.permutation(len(positions))
        permuted = positions.copy()
        permuted[["chromosome", "start", "end"]] = positions.iloc[order][
            ["chromosome", "start", "end"]
        ].to_numpy()
        perm_matrix, _ = _run_infercnv(
            xg[subsample],
            adata.obs_names[subsample],
            permuted,
            reference=reference,
            window_size=window_size,
            step=step,
            n_jobs=n_jobs,
        )
        shuffled.append(_cluster_profiles(perm_matrix, cnv_cluster[subsample]))
    null = pd.concat(shuffled, axis=1).mean(axis=1)
    coherence = (real / null.where(null > 0, np.nan)).fillna(0.0)
    reference_fraction = pd.Series(is_reference).groupby(cnv_cluster).mean()
    aberrant = (coherence >= min_coherence) & (reference_fraction.reindex(coherence.index) < 0.5)
    for k in sorted(coherence.index, key=lambda c: -coherence[c]):
        logger.info(
            "CNV cluster %s: %d cells, coherence %.2f, score %.4f, reference fraction %.2f%s",
            k,
            int((cnv_cluster == k).sum()),
            coherence[k],
            real[k],
            reference_fraction[k],
            " -> aberrant" if aberrant[k] else "",
        )

    cell_aberrant = aberrant.reindex(cnv_cluster).to_numpy(dtype=bool)
    call = cell_aberrant & ~is_reference & ~non_malignant
    if has_lineage:
        call &= compartment == "lineage"
    cell_coherence = coherence.reindex(cnv_cluster).to_numpy(dtype=float)
    margin = np.clip(
        np.abs(np.log(np.maximum(cell_coherence, 1e-6) / min_coherence)) / np.log(1.5), 0.0, 1.0
    )
    agreement = _neighbour_agreement(work.obsp["connectivities"], call)
    result = pd.DataFrame(
        {
            "is_malignant": call,
            "cnv_score": cnv_score,
            "cnv_cluster": cnv_cluster,
            "cnv_coherence": cell_coherence,
            "is_reference": is_reference,
            "compartment": compartment,
            "lineage_score": lineage_score,
            "confidence": 0.5 * agreement + 0.5 * margin,
        },
        index=adata.obs_names,
    )
    logger.info(
        "Malignant cells: %d of %d (%d aberrant CNV cluster(s) of %d)",
        int(call.sum()),
        adata.n_obs,
        int(aberrant.sum()),
        len(aberrant),
    )
    if return_cnv:
        return result, CNVResult(matrix=matrix, obs_names=adata.obs_names.copy(), chr_pos=chr_pos)
    return result
