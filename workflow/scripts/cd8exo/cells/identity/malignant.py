"""Malignant cells called from compartments, lineage markers and copy-number coherence.

The compartments and the cancer types' lineage markers are in
:mod:`cd8exo.cells.identity.compartments` (re-exported here).
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass

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
from cd8exo.errors import InputError

logger = logging.getLogger(__name__)

__all__ = ["CANCER_TYPE_LINEAGES", "KNOWN_CANCER_TYPES", "call_malignant", "find_compartments"]


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
    reference_mask = _checked_reference_mask(
        reference_mask,
        lineage_markers=lineage_markers,
        n_obs=adata.n_obs,
        min_reference_cells=min_reference_cells,
    )
    positions = _cnv_gene_positions(adata, gene_positions=gene_positions, window_size=window_size)
    if embedding is None:
        embedding = embed_cells(adata, rng=gen, resolution=resolution)
    compartments = _expression_compartments(
        adata,
        embedding=embedding,
        lineage_markers=lineage_markers,
        cancer_type=cancer_type,
        lineage_groups=lineage_groups,
    )
    # 1. reference
    reference = _reference_cells(
        compartments, reference_mask=reference_mask, min_reference_cells=min_reference_cells
    )
    # 2. copy-number profiles and their clusters
    window = _Window(size=window_size, step=step, n_jobs=n_jobs)
    profiles = _copy_number_profiles(adata, positions=positions, reference=reference, window=window)
    cnv_clusters = _copy_number_clusters(
        profiles.matrix, obs_names=adata.obs_names, gen=gen, cnv_resolution=cnv_resolution
    )
    # 3. positional coherence
    coherence = _positional_coherence(
        profiles,
        cnv_cluster=cnv_clusters.labels,
        positions=positions,
        is_reference=reference.is_reference,
        obs_names=adata.obs_names,
        gen=gen,
        window=window,
        n_permutations=n_permutations,
        min_coherence=min_coherence,
        max_cells_per_cluster=max_cells_per_cluster,
    )
    # 4. call
    result = _malignant_calls(
        obs_names=adata.obs_names,
        compartments=compartments,
        reference=reference,
        profiles=profiles,
        cnv_clusters=cnv_clusters,
        coherence=coherence,
        min_coherence=min_coherence,
    )
    if return_cnv:
        return result, CNVResult(
            matrix=profiles.matrix, obs_names=adata.obs_names.copy(), chr_pos=profiles.chr_pos
        )
    return result


# --------------------------------------------------------------------------- #
# The steps of call_malignant
# --------------------------------------------------------------------------- #
@dataclass(frozen=True)
class _Compartments:
    """Per cell: its expression cluster, the cluster's compartment and the lineage gate."""

    #: Leiden cluster of the expression embedding
    cluster: np.ndarray
    #: compartment name, "lineage" or "unassigned"
    compartment: np.ndarray
    #: NaN without lineage markers
    lineage_score: np.ndarray
    #: in an immune, stromal or endothelial compartment
    non_malignant: np.ndarray
    #: the cancer type has lineage markers and they were given: malignant cells need "lineage"
    has_lineage: bool


@dataclass(frozen=True)
class _Reference:
    """Step 1: the non-malignant reference cells and their categories."""

    is_reference: np.ndarray
    #: per cell: its reference category ("" outside the reference)
    categories: np.ndarray
    #: the categories kept (sorted), one reference profile each
    kept: list[str]


@dataclass(frozen=True)
class _Window:
    """infercnvpy's running window (genes), step and worker processes."""

    size: int
    step: int
    n_jobs: int


@dataclass(frozen=True)
class _Profiles:
    """Step 2: copy-number profiles of every cell and what they were computed from."""

    #: expression of the positioned genes (cells x genes)
    genes: np.ndarray | sp.csr_matrix
    #: mean expression of each reference category (categories x genes)
    reference: np.ndarray
    matrix: sp.csr_matrix
    chr_pos: dict[str, int]
    cnv_score: np.ndarray


@dataclass(frozen=True)
class _CopyNumberClusters:
    """Step 2: Leiden clusters of the profiles and their kNN graph."""

    labels: np.ndarray
    connectivities: sp.csr_matrix


@dataclass(frozen=True)
class _Coherence:
    """Step 3: per CNV cluster, its coherence and whether it is aberrant."""

    coherence: pd.Series
    aberrant: pd.Series


def _checked_reference_mask(
    reference_mask: np.ndarray | pd.Series | None,
    *,
    lineage_markers: pd.DataFrame | None,
    n_obs: int,
    min_reference_cells: int,
) -> np.ndarray | None:
    """``reference_mask`` as a boolean array (None: found from ``lineage_markers``), checked."""
    if lineage_markers is None and reference_mask is None:
        msg = (
            "call_malignant needs lineage_markers (to find immune and stromal reference cells) "
            "or an explicit reference_mask."
        )
        raise ValueError(msg)
    if reference_mask is None:
        return None
    mask = np.asarray(reference_mask, dtype=bool)
    if mask.shape != (n_obs,):
        msg = f"reference_mask has shape {mask.shape}; it needs one boolean per cell ({n_obs})."
        raise ValueError(msg)
    if mask.sum() < min_reference_cells:
        msg = (
            f"reference_mask marks {int(mask.sum())} reference cells; at least "
            f"{min_reference_cells} confidently non-malignant cells are needed."
        )
        raise ValueError(msg)
    return mask


def _cnv_gene_positions(
    adata: ad.AnnData, *, gene_positions: pd.DataFrame, window_size: int
) -> pd.DataFrame:
    """Positions of the data's genes that take part in the copy-number inference."""
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
            f"{5 * window_size} for windows of {window_size} genes) to infer malignant cells "
            "from copy number. Check that var_names are HGNC symbols and that the position "
            "table is for human genes; a targeted gene panel is too small: give the malignant "
            "cells' labels instead (the sheet's cell_type_column or malignant_column)."
        )
        raise InputError(msg)
    logger.info("%d of %d genes have a genomic position", len(positions), adata.n_vars)
    return positions


def _expression_compartments(
    adata: ad.AnnData,
    *,
    embedding: ad.AnnData,
    lineage_markers: pd.DataFrame | None,
    cancer_type: str | None,
    lineage_groups: tuple[str, ...],
) -> _Compartments:
    """The compartment of every cell's expression cluster (:func:`find_compartments`)."""
    _check_embedding(embedding, adata)
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
    has_lineage = bool(lineage_groups) and lineage_markers is not None
    if has_lineage and not (compartment == "lineage").any():
        logger.warning(
            "No cluster expresses the %s lineage markers distinctly: no cell can pass the "
            "lineage gate. Check cancer_type, or set it to None to call from CNVs alone.",
            cancer_type,
        )
    return _Compartments(
        cluster=embedding.obs["cluster"].astype(str).to_numpy(),
        compartment=compartment,
        lineage_score=lineage_score,
        non_malignant=~np.isin(compartment, ["lineage", "unassigned"]),
        has_lineage=has_lineage,
    )


def _reference_cells(
    compartments: _Compartments,
    *,
    reference_mask: np.ndarray | None,
    min_reference_cells: int,
) -> _Reference:
    """Step 1: the reference cells, one category per reference cluster."""
    compartment, clusters = compartments.compartment, compartments.cluster
    if reference_mask is None:
        is_reference = compartments.non_malignant.copy()
        if compartments.has_lineage:
            lineage_score = compartments.lineage_score
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
    return _Reference(is_reference=is_reference, categories=categories, kept=kept)


def _copy_number_profiles(
    adata: ad.AnnData, *, positions: pd.DataFrame, reference: _Reference, window: _Window
) -> _Profiles:
    """Step 2: infercnvpy profiles of every cell against the reference categories."""
    x = sp.csr_matrix(adata.X) if sp.issparse(adata.X) else np.asarray(adata.X)
    gene_cols = adata.var_names.get_indexer(positions.index)
    xg = x[:, gene_cols]
    means = np.vstack(
        [np.asarray(xg[reference.categories == cat].mean(axis=0)).ravel() for cat in reference.kept]
    )
    matrix, chr_pos = _run_infercnv(
        xg,
        adata.obs_names,
        positions,
        reference=means,
        window_size=window.size,
        step=window.step,
        n_jobs=window.n_jobs,
    )
    return _Profiles(
        genes=xg,
        reference=means,
        matrix=matrix,
        chr_pos=chr_pos,
        cnv_score=np.asarray(abs(matrix).mean(axis=1)).ravel(),
    )


def _copy_number_clusters(
    matrix: sp.csr_matrix, *, obs_names: pd.Index, gen: np.random.Generator, cnv_resolution: float
) -> _CopyNumberClusters:
    """Step 2: PCA, kNN and Leiden on the profiles."""
    n_obs = len(obs_names)
    work = ad.AnnData(obs=pd.DataFrame(index=obs_names))
    n_comps = int(max(2, min(30, matrix.shape[1] - 1, n_obs - 2)))
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
            n_neighbors=int(min(15, n_obs - 1)),
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
    return _CopyNumberClusters(
        labels=work.obs["cnv_cluster"].astype(str).to_numpy(),
        connectivities=work.obsp["connectivities"],
    )


def _cluster_profiles(matrix: sp.csr_matrix, labels: np.ndarray) -> pd.Series:
    """Mean |mean profile| of each cluster: the copy-number signal shared by its cells."""
    out = {}
    for label in pd.unique(labels):
        rows = labels == label
        out[label] = float(np.abs(np.asarray(matrix[rows].mean(axis=0)).ravel()).mean())
    return pd.Series(out)


def _positional_coherence(
    profiles: _Profiles,
    *,
    cnv_cluster: np.ndarray,
    positions: pd.DataFrame,
    is_reference: np.ndarray,
    obs_names: pd.Index,
    gen: np.random.Generator,
    window: _Window,
    n_permutations: int,
    min_coherence: float,
    max_cells_per_cluster: int,
) -> _Coherence:
    """Step 3: each CNV cluster's profile strength with the real over shuffled gene orders."""
    # positional coherence on a bounded subsample of every cluster
    subsample = np.concatenate(
        [
            gen.permutation(np.nonzero(cnv_cluster == k)[0])[:max_cells_per_cluster]
            for k in sorted(set(cnv_cluster))
        ]
    )
    subsample.sort()
    real = _cluster_profiles(profiles.matrix[subsample], cnv_cluster[subsample])
    shuffled = []
    for _ in range(n_permutations):
        order = gen.permutation(len(positions))
        permuted = positions.copy()
        permuted[["chromosome", "start", "end"]] = positions.iloc[order][
            ["chromosome", "start", "end"]
        ].to_numpy()
        perm_matrix, _ = _run_infercnv(
            profiles.genes[subsample],
            obs_names[subsample],
            permuted,
            reference=profiles.reference,
            window_size=window.size,
            step=window.step,
            n_jobs=window.n_jobs,
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
    return _Coherence(coherence=coherence, aberrant=aberrant)


def _malignant_calls(
    *,
    obs_names: pd.Index,
    compartments: _Compartments,
    reference: _Reference,
    profiles: _Profiles,
    cnv_clusters: _CopyNumberClusters,
    coherence: _Coherence,
    min_coherence: float,
) -> pd.DataFrame:
    """Step 4: the call of every cell and its confidence (the table :func:`call_malignant` returns)."""
    cnv_cluster = cnv_clusters.labels
    aberrant = coherence.aberrant
    cell_aberrant = aberrant.reindex(cnv_cluster).to_numpy(dtype=bool)
    call = cell_aberrant & ~reference.is_reference & ~compartments.non_malignant
    if compartments.has_lineage:
        call &= compartments.compartment == "lineage"
    cell_coherence = coherence.coherence.reindex(cnv_cluster).to_numpy(dtype=float)
    margin = np.clip(
        np.abs(np.log(np.maximum(cell_coherence, 1e-6) / min_coherence)) / np.log(1.5), 0.0, 1.0
    )
    agreement = _neighbour_agreement(cnv_clusters.connectivities, call)
    result = pd.DataFrame(
        {
            "is_malignant": call,
            "cnv_score": profiles.cnv_score,
            "cnv_cluster": cnv_cluster,
            "cnv_coherence": cell_coherence,
            "is_reference": reference.is_reference,
            "compartment": compartments.compartment,
            "lineage_score": compartments.lineage_score,
            "confidence": 0.5 * agreement + 0.5 * margin,
        },
        index=obs_names,
    )
    logger.info(
        "Malignant cells: %d of %d (%d aberrant CNV cluster(s) of %d)",
        int(call.sum()),
        len(obs_names),
        int(aberrant.sum()),
        len(aberrant),
    )
    return result
