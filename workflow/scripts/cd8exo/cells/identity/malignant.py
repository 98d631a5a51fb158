"""Malignant cells called from compartments, lineage markers and copy-number coherence.

The compartments and the cancer types' lineage markers are in
:mod:`cd8exo.cells.identity.compartments` (re-exported here).
"""

from __future__ import annotations

import logging
import warnings

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
from cd8exo.cells.identity.compartments import (
    CANCER_TYPE_LINEAGES,
    KNOWN_CANCER_TYPES,
    _resolve_cancer_type,
    find_compartments,
)
from cd8exo.cells.identity.graph import (
    _check_embedding,
    _check_log_normalised,
    _neighbour_agreement,
    embed_cells,
)

logger = logging.getLogger(__name__)

__all__ = ["CANCER_TYPE_LINEAGES", "KNOWN_CANCER_TYPES", "call_malignant", "find_compartments"]


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
