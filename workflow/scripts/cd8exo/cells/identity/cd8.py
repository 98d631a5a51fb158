"""CD8+ T cells called by marker gating on the kNN graph (scGate-like, NK cells excluded)."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import anndata as ad
import numpy as np
import pandas as pd
import scanpy as sc
import scipy.sparse as sp

from cd8exo._utils import RNGLike, as_rng, seed_from
from cd8exo.cells.identity.graph import (
    _any_detected,
    _check_embedding,
    _check_log_normalised,
    _embed_light,
    _gene_columns,
    _light,
    _module_mean,
    _neighbour_agreement,
    _otsu,
    _smooth,
    _smoother,
    embed_cells,
)
from cd8exo.errors import InputError

logger = logging.getLogger(__name__)

__all__ = ["call_cd8"]

#: Genes whose absence defines an NK cell (scGate "NK" model: KLRD1;NKG7;NCR1;FCGR3A with
#: CD3D-;CD3E-;CD3G-;CD8A-;CD8B-). NKG7 and KLRD1 are also CD8 T-cell genes, so NK
#: markers alone never exclude a cell.
NK_ABSENT_GENES: tuple[str, ...] = ("CD3D", "CD3E", "CD3G", "CD8A", "CD8B")


# --------------------------------------------------------------------------- #
# CD8 T cells
# --------------------------------------------------------------------------- #
@dataclass
class _CD8Markers:
    t_cell: list[str]
    cd8: list[str]
    negative: dict[str, list[str]]
    nk: list[str]
    support: list[str]
    flag: list[str] = field(default_factory=list)


def _parse_cd8_markers(markers: pd.DataFrame) -> _CD8Markers:
    required = ["gene", "use", "cell_type"]
    missing = [c for c in required if c not in markers.columns]
    if missing:
        msg = (
            f"The CD8 marker table lacks the column(s) {missing} (it has {list(markers.columns)}); "
            "use resources/markers/cd8_identity_markers.tsv (plus cd8_support_markers.tsv)."
        )
        raise ValueError(msg)
    table = markers.assign(
        gene=markers["gene"].astype(str).str.strip(),
        use=markers["use"].astype(str).str.strip(),
        cell_type=markers["cell_type"].astype(str).str.strip(),
    )
    known = {"positive", "negative", "negative_if_CD3neg", "support", "flag"}
    unknown = sorted(set(table["use"]) - known)
    if unknown:
        msg = f"The CD8 marker table has unknown value(s) {unknown} in column 'use'; allowed: {sorted(known)}."
        raise ValueError(msg)
    positive = table[table["use"] == "positive"]
    is_cd8 = positive["cell_type"].str.contains("CD8", case=False)
    is_t = positive["cell_type"].str.contains("T cell", case=False) & ~is_cd8
    negative = table[table["use"] == "negative"]
    parsed = _CD8Markers(
        t_cell=positive.loc[is_t, "gene"].tolist(),
        cd8=positive.loc[is_cd8, "gene"].tolist(),
        negative={k: v["gene"].tolist() for k, v in negative.groupby("cell_type", sort=True)},
        nk=table.loc[table["use"] == "negative_if_CD3neg", "gene"].tolist(),
        support=table.loc[table["use"] == "support", "gene"].tolist(),
        flag=table.loc[table["use"] == "flag", "gene"].tolist(),
    )
    if not parsed.t_cell or not parsed.cd8:
        msg = (
            "The CD8 marker table needs positive T-cell markers (cell_type containing 'T cell') "
            "and positive CD8 markers (cell_type containing 'CD8'); found "
            f"{len(parsed.t_cell)} and {len(parsed.cd8)}."
        )
        raise ValueError(msg)
    return parsed


def call_cd8(
    adata: ad.AnnData,
    *,
    markers: pd.DataFrame,
    rng: RNGLike = 0,
    resolution: float = 1.0,
    t_resolution: float = 0.5,
    embedding: ad.AnnData | None = None,
    min_t_fraction: float = 0.5,
    support_weight: float = 1.0,
    cluster_weight: float = 0.5,
    min_separation: float = 0.75,
    min_t_cells: int = 10,
    n_cluster_runs: int = 5,
    n_top_genes: int = 2000,
    n_pcs: int = 30,
    n_neighbors: int = 15,
) -> pd.DataFrame:
    """Call CD8+ T cells from marker genes, on kNN neighbourhoods and clusters.

    1. **T-cell compartment.** Leiden clusters of all cells (:func:`embed_cells`) in which
       at least ``min_t_fraction`` of the cells detect a T-cell marker (CD3D/E/G, CD2,
       TRAC, TRBC1/2).
    2. **Sub-clusters.** The compartment is re-embedded on its own (HVG, PCA, kNN,
       Leiden at ``t_resolution``).
    3. **Score.** For every cell, on its kNN neighbourhood (two smoothing steps on the
       compartment's graph): CD8 markers (CD8A, CD8B) + ``support_weight`` x the
       CD8 effector programme (``use == "support"``: GZMA, GZMB, PRF1, NKG7, GZMK,
       CCL5) minus each negative gate (CD4/CD40LG, FOXP3, gamma-delta TRDC/TRGC,
       B-cell MS4A1/CD19/CD79A), each the mean ln(CP10k+1) of its genes. The cell's
       score is ``(1 - cluster_weight)`` x its own smoothed score + ``cluster_weight``
       x its sub-cluster's mean (averaged over ``n_cluster_runs`` Leiden partitions
       with different seeds, so one partition's accident does not decide).
    4. **Threshold.** Otsu's threshold over the compartment. If the scores are not
       bimodal (Otsu separation eta < ``min_separation``, e.g. data of sorted CD8 cells)
       the canonical contrast decides instead: smoothed CD8A/CD8B above the smoothed
       CD4/CD40LG/FOXP3.
    5. **NK gate.** A cell detecting an NK marker (KLRD1, NKG7, NCR1, FCGR3A) but none
       of CD3D/E/G, CD8A/B, in a neighbourhood where fewer than half the cells detect
       CD3 or CD8, is an NK cell, not a CD8 T cell (NKG7 and KLRD1 alone never exclude).

    Parameters
    ----------
    adata
        Contract AnnData (``X`` = ln(CP10k+1), symbols as ``var_names``); not modified.
    markers
        Gating markers: columns ``gene``, ``use`` (positive, negative,
        negative_if_CD3neg, support, flag) and ``cell_type``; the concatenation of
        ``resources/markers/cd8_identity_markers.tsv`` and ``cd8_support_markers.tsv``.
    rng
        Generator or seed for every random step (PCA, kNN, Leiden).
    resolution
        Leiden resolution of the global clustering (when ``embedding`` is not given).
    t_resolution
        Leiden resolution of the T-compartment sub-clusters (a T compartment of a
        tumour splits into a few major states at 0.5).
    embedding
        A precomputed :func:`embed_cells` result for ``adata`` (saves recomputing it).
    min_t_fraction
        Fraction of a cluster's cells detecting a T-cell marker for it to belong to the
        T-cell compartment.
    support_weight
        Weight of the effector programme relative to CD8A/CD8B.
    cluster_weight
        Weight (0-1) of the sub-cluster mean in a cell's score.
    min_separation
        Smallest Otsu separation (0-1) for the threshold to be used: a normal
        distribution separates with 2/pi ~ 0.64, a uniform one with 0.75, two distinct
        modes with close to 1.
    min_t_cells
        Fewer T-compartment cells than this: no CD8 calls (logged).
    n_cluster_runs
        Number of Leiden partitions of the compartment whose cluster means are averaged.
    n_top_genes, n_pcs, n_neighbors
        Embedding recipe (see :func:`embed_cells`).

    Returns
    -------
    One row per cell (index = ``obs_names``): ``is_cd8`` (bool), ``cd8_score`` (NaN
    outside the T compartment), ``cd8_threshold``, ``cluster`` (global Leiden cluster),
    ``t_compartment`` (bool), ``t_subcluster`` ("" outside), ``nk_gated`` (bool),
    ``confidence`` (0-1: half the neighbour agreement, half the distance from the
    threshold in standard deviations, capped at 1; outside the compartment 1 minus the
    neighbourhood's T-marker detection rate) and ``method`` (how the call was made).
    """
    _check_log_normalised(adata, where="call_cd8")
    parsed = _parse_cd8_markers(markers)
    gen = as_rng(rng)
    recipe = {"n_top_genes": n_top_genes, "n_pcs": n_pcs, "n_neighbors": n_neighbors}
    if embedding is None:
        embedding = embed_cells(adata, rng=gen, resolution=resolution, **recipe)
    _check_embedding(embedding, adata)
    x = adata.X if sp.issparse(adata.X) else np.asarray(adata.X)
    if sp.issparse(x):
        x = sp.csr_matrix(x)
    columns = _marker_columns(adata.var_names, parsed=parsed)
    # 1. T-cell compartment
    result = _t_cell_compartment(
        x,
        embedding=embedding,
        obs_names=adata.obs_names,
        t_cols=columns.t_cell,
        min_t_fraction=min_t_fraction,
    )
    t_index = np.nonzero(result["t_compartment"].to_numpy())[0]
    if len(t_index) < min_t_cells:
        logger.warning(
            "Only %d cells in the T-cell compartment (< min_t_cells=%d): no CD8 T cells called",
            len(t_index),
            min_t_cells,
        )
        return result
    xt = x[t_index]
    # 2. sub-clusters
    light = _light(xt, adata.obs_names[t_index], adata.var_names)
    _embed_light(light, rng=gen, resolution=t_resolution, **recipe)
    # 3. score
    scores = _cd8_scores(
        xt,
        light=light,
        columns=columns,
        gen=gen,
        t_resolution=t_resolution,
        support_weight=support_weight,
        cluster_weight=cluster_weight,
        n_cluster_runs=n_cluster_runs,
    )
    # 4. threshold
    threshold = _cd8_threshold(
        xt,
        scores=scores,
        cd4_cols=columns.cd4,
        cluster_weight=cluster_weight,
        min_separation=min_separation,
    )
    # 5. NK gate
    nk_gated = _nk_gate(xt, smoother=scores.smoother, columns=columns)
    _set_t_compartment_calls(
        result,
        t_index=t_index,
        scores=scores,
        threshold=threshold,
        nk_gated=nk_gated,
        connectivities=light.obsp["connectivities"],
    )
    return result


# --------------------------------------------------------------------------- #
# The steps of call_cd8
# --------------------------------------------------------------------------- #
@dataclass(frozen=True)
class _CD8Columns:
    """Columns of ``X`` holding each marker group of :class:`_CD8Markers`."""

    t_cell: np.ndarray
    cd8: np.ndarray
    support: np.ndarray
    #: one per negative gate
    negative: dict[str, np.ndarray]
    nk: np.ndarray
    #: the CD3/CD8 genes whose absence the NK gate needs (:data:`NK_ABSENT_GENES`)
    nk_absent: np.ndarray
    #: the negative gates' CD4 and Treg genes (the canonical contrast)
    cd4: np.ndarray


@dataclass(frozen=True)
class _CD8Scores:
    """Step 3: scores of the T-compartment cells."""

    #: smoothed CD8A/CD8B
    cd8_evidence: np.ndarray
    #: the cell's score: its own smoothed score and its sub-clusters' mean, weighted
    score: np.ndarray
    #: sub-cluster of the first Leiden partition
    subcluster: np.ndarray
    #: kNN smoothing operator of the compartment's graph
    smoother: sp.csr_matrix


@dataclass(frozen=True)
class _CD8Threshold:
    """Step 4: the call before the NK gate, and how it was made."""

    call: np.ndarray
    #: Otsu's threshold (NaN when the canonical contrast decided)
    threshold: float
    separation: float
    method: str


def _marker_columns(var_names: pd.Index, *, parsed: _CD8Markers) -> _CD8Columns:
    """The columns of every marker group; the T-cell and CD8 markers must be present."""
    t_cols, _ = _gene_columns(var_names, parsed.t_cell, what="T-cell markers")
    cd8_cols, _ = _gene_columns(var_names, parsed.cd8, what="CD8 markers")
    if len(t_cols) == 0 or len(cd8_cols) == 0:
        msg = (
            f"call_cd8: none of the T-cell markers {parsed.t_cell} or none of the CD8 markers "
            f"{parsed.cd8} is in var_names (first names: {list(var_names[:5])}). var_names must "
            "be HGNC symbols; map Ensembl IDs or aliases first (cd8exo.genes)."
        )
        raise InputError(msg)
    support_cols, _ = _gene_columns(var_names, parsed.support, what="CD8 effector programme")
    negative_cols = {
        name: _gene_columns(var_names, genes, what=f"negative gate {name!r}")[0]
        for name, genes in parsed.negative.items()
    }
    nk_cols, _ = _gene_columns(var_names, parsed.nk, what="NK markers")
    absent_cols, _ = _gene_columns(var_names, NK_ABSENT_GENES, what="NK-gate CD3/CD8 genes")
    cd4_cols, _ = _gene_columns(
        var_names,
        [
            g
            for name, genes in parsed.negative.items()
            if "CD4" in name or "Treg" in name
            for g in genes
        ],
        what="CD4 markers",
    )
    return _CD8Columns(
        t_cell=t_cols,
        cd8=cd8_cols,
        support=support_cols,
        negative=negative_cols,
        nk=nk_cols,
        nk_absent=absent_cols,
        cd4=cd4_cols,
    )


def _t_cell_compartment(
    x,
    *,
    embedding: ad.AnnData,
    obs_names: pd.Index,
    t_cols: np.ndarray,
    min_t_fraction: float,
) -> pd.DataFrame:
    """Step 1: the clusters detecting T-cell markers; the result table, outside them filled in."""
    clusters = embedding.obs["cluster"].astype(str).to_numpy()
    t_detected = _any_detected(x, t_cols)
    fraction = pd.Series(t_detected).groupby(clusters).mean()
    t_clusters = sorted(fraction.index[fraction >= min_t_fraction])
    in_t = np.isin(clusters, t_clusters)
    logger.info(
        "T-cell marker detection per cluster: %s; T-cell compartment = clusters %s (%d cells)",
        ", ".join(f"{k}:{v:.2f}" for k, v in fraction.items()),
        t_clusters,
        int(in_t.sum()),
    )
    global_smoother = _smoother(embedding.obsp["connectivities"])
    neighbourhood_t = _smooth(global_smoother, t_detected.astype(float), steps=1)
    n_obs = len(clusters)
    return pd.DataFrame(
        {
            "is_cd8": np.zeros(n_obs, dtype=bool),
            "cd8_score": np.full(n_obs, np.nan),
            "cd8_threshold": np.nan,
            "cluster": clusters,
            "t_compartment": in_t,
            "t_subcluster": "",
            "nk_gated": np.zeros(n_obs, dtype=bool),
            "confidence": np.clip(1.0 - neighbourhood_t, 0.0, 1.0),
            "method": "outside T-cell compartment",
        },
        index=obs_names,
    )


def _cd8_scores(
    xt,
    *,
    light: ad.AnnData,
    columns: _CD8Columns,
    gen: np.random.Generator,
    t_resolution: float,
    support_weight: float,
    cluster_weight: float,
    n_cluster_runs: int,
) -> _CD8Scores:
    """Step 3: kNN-smoothed marker score of each T-compartment cell and its sub-clusters' mean."""
    smoother = _smoother(light.obsp["connectivities"])
    cd8_evidence = _smooth(smoother, _module_mean(xt, columns.cd8))
    support = _smooth(smoother, _module_mean(xt, columns.support))
    negative = sum(
        (_smooth(smoother, _module_mean(xt, cols)) for cols in columns.negative.values()),
        start=np.zeros(xt.shape[0]),
    )
    cell_score = cd8_evidence + support_weight * support - negative
    sub = light.obs["cluster"].astype(str).to_numpy()
    # Leiden partitions of a small compartment depend on the seed; averaging the cluster
    # means over several partitions keeps the cluster-level evidence without that noise.
    cluster_means = [pd.Series(cell_score).groupby(sub).transform("mean").to_numpy()]
    for _ in range(n_cluster_runs - 1):
        sc.tl.leiden(
            light,
            resolution=t_resolution,
            random_state=seed_from(gen),
            flavor="igraph",
            n_iterations=2,
            directed=False,
            key_added="_rerun",
        )
        labels = light.obs["_rerun"].astype(str).to_numpy()
        cluster_means.append(pd.Series(cell_score).groupby(labels).transform("mean").to_numpy())
    cluster_mean = np.mean(cluster_means, axis=0)
    return _CD8Scores(
        cd8_evidence=cd8_evidence,
        score=(1 - cluster_weight) * cell_score + cluster_weight * cluster_mean,
        subcluster=sub,
        smoother=smoother,
    )


def _cd8_threshold(
    xt,
    *,
    scores: _CD8Scores,
    cd4_cols: np.ndarray,
    cluster_weight: float,
    min_separation: float,
) -> _CD8Threshold:
    """Step 4: Otsu's threshold, or the canonical CD8 vs CD4 contrast when not bimodal."""
    score = scores.score
    threshold, separation = _otsu(score)
    if separation >= min_separation:
        return _CD8Threshold(
            call=score >= threshold,
            threshold=threshold,
            separation=separation,
            method="markers: kNN-smoothed + cluster score, Otsu threshold",
        )
    cd8_evidence = scores.cd8_evidence
    cd4 = _smooth(scores.smoother, _module_mean(xt, cd4_cols))
    contrast = (1 - cluster_weight) * (cd8_evidence - cd4) + cluster_weight * (
        pd.Series(cd8_evidence - cd4).groupby(scores.subcluster).transform("mean").to_numpy()
    )
    logger.info(
        "CD8 scores are not bimodal (Otsu separation %.2f < %.2f): calling by the CD8A/CD8B "
        "vs CD4/CD40LG/FOXP3 contrast",
        separation,
        min_separation,
    )
    return _CD8Threshold(
        call=contrast > 0,
        threshold=float("nan"),
        separation=separation,
        method="markers: canonical CD8 vs CD4 contrast (scores not bimodal)",
    )


def _nk_gate(xt, *, smoother: sp.csr_matrix, columns: _CD8Columns) -> np.ndarray:
    """Step 5: NK cells, by cell-level absence of CD3/CD8, confirmed by their neighbourhood."""
    nk_cell = _any_detected(xt, columns.nk) & ~_any_detected(xt, columns.nk_absent)
    neighbourhood_cd3 = _smooth(
        smoother, _any_detected(xt, columns.nk_absent).astype(float), steps=1
    )
    return nk_cell & (neighbourhood_cd3 < 0.5)


def _set_t_compartment_calls(
    result: pd.DataFrame,
    *,
    t_index: np.ndarray,
    scores: _CD8Scores,
    threshold: _CD8Threshold,
    nk_gated: np.ndarray,
    connectivities: sp.csr_matrix,
) -> None:
    """Into ``result``: the T-compartment cells' calls (NK-gated cells are not CD8), confidence."""
    score = scores.score
    call = threshold.call & ~nk_gated
    spread = float(np.std(score)) or 1.0
    margin = (
        np.clip(np.abs(score - threshold.threshold) / spread, 0.0, 1.0)
        if np.isfinite(threshold.threshold)
        else np.full(len(score), 0.5)
    )
    agreement = _neighbour_agreement(connectivities, call)
    result.iloc[t_index, result.columns.get_loc("is_cd8")] = call
    result.iloc[t_index, result.columns.get_loc("cd8_score")] = score
    result["cd8_threshold"] = threshold.threshold
    result.iloc[t_index, result.columns.get_loc("t_subcluster")] = scores.subcluster
    result.iloc[t_index, result.columns.get_loc("nk_gated")] = nk_gated
    result.iloc[t_index, result.columns.get_loc("confidence")] = 0.5 * agreement + 0.5 * margin
    result.iloc[t_index, result.columns.get_loc("method")] = np.where(
        nk_gated, "NK gate (NK marker, no CD3/CD8)", threshold.method
    )
    logger.info(
        "CD8 T cells: %d of %d T-compartment cells (threshold %.3f, Otsu separation %.2f, "
        "%d NK-gated)",
        int(call.sum()),
        len(t_index),
        threshold.threshold,
        threshold.separation,
        int(nk_gated.sum()),
    )
