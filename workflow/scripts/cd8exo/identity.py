"""Cell identity without author labels: CD8+ T cells and malignant cells.

Two callers, each returning one row per cell:

* :func:`call_cd8` gates CD8+ T cells with marker genes (scGate-style: positive T-cell,
  alpha-beta TCR and CD8 markers; negative CD4/Treg, gamma-delta and B-cell markers; NK
  cells only where CD3 and CD8 are absent), scored on neighbourhoods of a kNN graph and
  on Leiden clusters as well as on single cells, so that drop-outs in sparse 10x data
  never decide a cell alone.
* :func:`call_malignant` infers copy-number profiles with infercnvpy (Tickle et al.
  inferCNV; infercnvpy by Sturm et al.) against confidently non-malignant immune,
  stromal and endothelial cells, clusters the profiles, keeps the clusters whose
  profile is *positionally coherent* (the signal depends on the genes' order along the
  genome, which real copy-number changes do and expression programmes do not), and
  combines this with the lineage markers of the cancer type.

:func:`annotate_identity` lets author labels win when present (a switch forces
inference), records where each label came from and how confident it is;
:func:`agreement_table` measures inferred against author labels and
:func:`cnv_heatmap` draws the copy-number profiles for the report.

All functions expect the harmonised AnnData of the data contract: cells x genes,
``var_names`` HGNC symbols and ``X`` = ln(CP10k + 1). None of them modifies its input.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import scanpy as sc
import scipy.sparse as sp
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from cd8exo._utils import RNGLike, as_rng, seed_from
from cd8exo.io import read_tsv
from cd8exo.vocabulary import CELL_TYPES

__all__ = [
    "AGREEMENT_CLASSES",
    "CANCER_TYPE_LINEAGES",
    "IDENTITY_COLUMNS",
    "KNOWN_CANCER_TYPES",
    "CNVResult",
    "IdentityResult",
    "agreement_table",
    "annotate_identity",
    "annotated_obs",
    "author_label_flags",
    "call_cd8",
    "call_malignant",
    "cnv_figure",
    "cnv_from_anndata",
    "cnv_heatmap",
    "cnv_subsample",
    "cnv_to_anndata",
    "embed_cells",
    "find_compartments",
    "identify_cells",
    "identity_table",
    "read_identity_references",
]

logger = logging.getLogger(__name__)


#: Genes whose absence defines an NK cell (scGate "NK" model: KLRD1;NKG7;NCR1;FCGR3A with
#: CD3D-;CD3E-;CD3G-;CD8A-;CD8B-). NKG7 and KLRD1 are also CD8 T-cell genes, so NK
#: markers alone never exclude a cell.
NK_ABSENT_GENES: tuple[str, ...] = ("CD3D", "CD3E", "CD3G", "CD8A", "CD8B")

#: Genes left out of the copy-number inference (regular expression on symbols):
#: immunoglobulin and T-cell receptor segments and the HLA genes.
CNV_EXCLUDED_GENES: str = r"^(IG[HKL][VDJC]|TR[ABDG][VDJC]|HLA-)"

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


# --------------------------------------------------------------------------- #
# Small helpers
# --------------------------------------------------------------------------- #
def _check_log_normalised(adata: ad.AnnData, *, where: str) -> None:
    info = adata.uns.get("cd8exo", {}) if isinstance(adata.uns, Mapping) else {}
    if info.get("log_normalised", False):
        return
    x = adata.X
    top = float(x.max()) if x.shape[0] and x.shape[1] else 0.0
    low = float(x.min()) if x.shape[0] and x.shape[1] else 0.0
    # ln(CP10k+1) never exceeds ln(1e4+1) ~ 9.2; raw counts and TPM routinely do.
    if top > 20 or low < 0:
        msg = (
            f"{where}: X does not look like ln(CP10k+1) values (range {low:g}..{top:g}). "
            "Normalise first (cd8exo.harmonise.log_normalise, or scanpy.pp.normalize_total"
            "(target_sum=1e4) followed by scanpy.pp.log1p)."
        )
        raise ValueError(msg)


def _gene_columns(
    var_names: pd.Index, genes: Sequence[str], *, what: str
) -> tuple[np.ndarray, list[str]]:
    """Column indices of the genes present; logs the missing ones by name."""
    present = [g for g in dict.fromkeys(genes) if g in var_names]
    missing = [g for g in dict.fromkeys(genes) if g not in var_names]
    if missing:
        logger.info("%s: %d marker(s) not in the data: %s", what, len(missing), ", ".join(missing))
    return var_names.get_indexer(present), present


def _module_mean(x, columns: np.ndarray) -> np.ndarray:
    """Mean log-expression over ``columns`` for every row (0 when no column is given)."""
    if len(columns) == 0:
        return np.zeros(x.shape[0])
    sub = x[:, columns]
    return np.asarray(sub.mean(axis=1)).ravel().astype(float)


def _any_detected(x, columns: np.ndarray) -> np.ndarray:
    if len(columns) == 0:
        return np.zeros(x.shape[0], dtype=bool)
    sub = x[:, columns]
    if sp.issparse(sub):
        return np.asarray((sub > 0).sum(axis=1)).ravel() > 0
    return np.asarray((sub > 0).any(axis=1)).ravel()


def _smoother(connectivities) -> sp.csr_matrix:
    """Row-normalised kNN connectivities with each cell included in its own neighbourhood."""
    c = sp.csr_matrix(connectivities, dtype=float) + sp.eye(connectivities.shape[0], format="csr")
    rowsum = np.asarray(c.sum(axis=1)).ravel()
    return sp.csr_matrix(sp.diags(1.0 / rowsum) @ c)


def _smooth(smoother: sp.csr_matrix, values: np.ndarray, *, steps: int = 2) -> np.ndarray:
    out = np.asarray(values, dtype=float)
    for _ in range(steps):
        out = smoother @ out
    return out


def _otsu(values: np.ndarray) -> tuple[float, float]:
    """Otsu's threshold of 1-D values and its separation eta (between/total variance, 0-1)."""
    x = np.sort(np.asarray(values, dtype=float))
    n = len(x)
    splits = np.nonzero(np.diff(x) > 0)[0]
    if n < 2 or len(splits) == 0:
        return (float(x[0]) if n else 0.0), 0.0
    csum = np.cumsum(x)
    n0 = splits + 1.0
    n1 = n - n0
    m0 = csum[splits] / n0
    m1 = (csum[-1] - csum[splits]) / n1
    between = n0 * n1 * (m0 - m1) ** 2 / n**2
    best = int(np.argmax(between))
    threshold = (x[splits[best]] + x[splits[best] + 1]) / 2
    total = x.var()
    return float(threshold), float(between[best] / total) if total > 0 else 0.0


def _neighbour_agreement(connectivities, calls: np.ndarray) -> np.ndarray:
    """Fraction of each cell's kNN neighbours (weighted) whose call equals its own."""
    c = sp.csr_matrix(connectivities, dtype=float)
    rowsum = np.asarray(c.sum(axis=1)).ravel()
    same = np.asarray(c @ calls.astype(float)).ravel()
    frac_true = np.divide(same, rowsum, out=np.full(len(calls), np.nan), where=rowsum > 0)
    agree = np.where(calls, frac_true, 1 - frac_true)
    return np.where(np.isnan(agree), 0.5, agree)


def _light(x, obs_names: pd.Index, var_names: pd.Index) -> ad.AnnData:
    """An AnnData that shares ``x`` (nothing here writes to X)."""
    light = ad.AnnData(X=x, obs=pd.DataFrame(index=obs_names), var=pd.DataFrame(index=var_names))
    return light


def _embed_light(
    light: ad.AnnData,
    *,
    rng: np.random.Generator,
    n_top_genes: int,
    n_pcs: int,
    n_neighbors: int,
    resolution: float,
) -> ad.AnnData:
    n_obs, n_vars = light.shape
    n_top = int(min(n_top_genes, n_vars))
    sc.pp.highly_variable_genes(light, n_top_genes=n_top, flavor="seurat")
    n_hvg = int(light.var["highly_variable"].sum())
    n_comps = int(max(2, min(n_pcs, n_obs - 2, n_hvg - 2)))
    sc.pp.pca(
        light,
        n_comps=n_comps,
        mask_var="highly_variable",
        svd_solver="arpack",
        random_state=seed_from(rng),
    )
    sc.pp.neighbors(
        light,
        n_neighbors=int(min(n_neighbors, n_obs - 1)),
        n_pcs=n_comps,
        random_state=seed_from(rng),
    )
    sc.tl.leiden(
        light,
        resolution=resolution,
        random_state=seed_from(rng),
        flavor="igraph",
        n_iterations=2,
        directed=False,
        key_added="cluster",
    )
    return light


def embed_cells(
    adata: ad.AnnData,
    *,
    rng: RNGLike = 0,
    n_top_genes: int = 2000,
    n_pcs: int = 30,
    n_neighbors: int = 15,
    resolution: float = 1.0,
) -> ad.AnnData:
    """kNN graph and Leiden clusters of all cells, shared by the two callers.

    Highly variable genes (Seurat flavour) of the log-normalised ``X``, PCA on them
    (not scaled, so the sparse matrix is never densified), a kNN graph (UMAP
    connectivities) and Leiden clustering (Traag et al. 2019), all seeded from ``rng``.

    Parameters
    ----------
    adata
        Contract AnnData (``X`` = ln(CP10k+1)); not modified.
    rng
        Generator or seed.
    n_top_genes, n_pcs, n_neighbors
        Recipe parameters, capped by the size of the data.
    resolution
        Leiden resolution.

    Returns
    -------
    A light AnnData sharing ``adata.X`` with ``obsp["connectivities"]``,
    ``obsm["X_pca"]`` and ``obs["cluster"]`` (categorical).
    """
    _check_log_normalised(adata, where="embed_cells")
    if adata.n_obs < 10:
        msg = f"embed_cells: only {adata.n_obs} cells; at least 10 are needed to build a kNN graph."
        raise ValueError(msg)
    light = _light(adata.X, adata.obs_names, adata.var_names)
    gen = as_rng(rng)
    _embed_light(
        light,
        rng=gen,
        n_top_genes=n_top_genes,
        n_pcs=n_pcs,
        n_neighbors=n_neighbors,
        resolution=resolution,
    )
    logger.info(
        "kNN graph of %d cells: %d Leiden clusters at resolution %g",
        light.n_obs,
        light.obs["cluster"].nunique(),
        resolution,
    )
    return light


def _check_embedding(embedding: ad.AnnData, adata: ad.AnnData) -> None:
    if not embedding.obs_names.equals(adata.obs_names):
        msg = (
            "The embedding given does not have the same cells, in the same order, as the "
            "data; build it with embed_cells(adata) on this very AnnData."
        )
        raise ValueError(msg)
    if "connectivities" not in embedding.obsp or "cluster" not in embedding.obs:
        msg = "The embedding lacks obsp['connectivities'] or obs['cluster']; build it with embed_cells."
        raise ValueError(msg)


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
    if embedding is None:
        embedding = embed_cells(
            adata,
            rng=gen,
            n_top_genes=n_top_genes,
            n_pcs=n_pcs,
            n_neighbors=n_neighbors,
            resolution=resolution,
        )
    _check_embedding(embedding, adata)
    x = adata.X if sp.issparse(adata.X) else np.asarray(adata.X)
    if sp.issparse(x):
        x = sp.csr_matrix(x)
    var_names = adata.var_names

    t_cols, _ = _gene_columns(var_names, parsed.t_cell, what="T-cell markers")
    cd8_cols, _ = _gene_columns(var_names, parsed.cd8, what="CD8 markers")
    if len(t_cols) == 0 or len(cd8_cols) == 0:
        msg = (
            f"call_cd8: none of the T-cell markers {parsed.t_cell} or none of the CD8 markers "
            f"{parsed.cd8} is in var_names (first names: {list(var_names[:5])}). var_names must "
            "be HGNC symbols; map Ensembl IDs or aliases first (cd8exo.genes)."
        )
        raise ValueError(msg)
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

    result = pd.DataFrame(
        {
            "is_cd8": np.zeros(adata.n_obs, dtype=bool),
            "cd8_score": np.full(adata.n_obs, np.nan),
            "cd8_threshold": np.nan,
            "cluster": clusters,
            "t_compartment": in_t,
            "t_subcluster": "",
            "nk_gated": np.zeros(adata.n_obs, dtype=bool),
            "confidence": np.clip(1.0 - neighbourhood_t, 0.0, 1.0),
            "method": "outside T-cell compartment",
        },
        index=adata.obs_names,
    )
    n_t = int(in_t.sum())
    if n_t < min_t_cells:
        logger.warning(
            "Only %d cells in the T-cell compartment (< min_t_cells=%d): no CD8 T cells called",
            n_t,
            min_t_cells,
        )
        return result

    t_index = np.nonzero(in_t)[0]
    xt = x[t_index]
    light = _light(xt, adata.obs_names[t_index], var_names)
    _embed_light(
        light,
        rng=gen,
        n_top_genes=n_top_genes,
        n_pcs=n_pcs,
        n_neighbors=n_neighbors,
        resolution=t_resolution,
    )
    smoother = _smoother(light.obsp["connectivities"])
    cd8_evidence = _smooth(smoother, _module_mean(xt, cd8_cols))
    support = _smooth(smoother, _module_mean(xt, support_cols))
    negative = sum(
        (_smooth(smoother, _module_mean(xt, cols)) for cols in negative_cols.values()),
        start=np.zeros(len(t_index)),
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
    score = (1 - cluster_weight) * cell_score + cluster_weight * cluster_mean

    threshold, separation = _otsu(score)
    if separation >= min_separation:
        call = score >= threshold
        method = "markers: kNN-smoothed + cluster score, Otsu threshold"
    else:
        cd4 = _smooth(smoother, _module_mean(xt, cd4_cols))
        contrast = (1 - cluster_weight) * (cd8_evidence - cd4) + cluster_weight * (
            pd.Series(cd8_evidence - cd4).groupby(sub).transform("mean").to_numpy()
        )
        call = contrast > 0
        threshold = float("nan")
        method = "markers: canonical CD8 vs CD4 contrast (scores not bimodal)"
        logger.info(
            "CD8 scores are not bimodal (Otsu separation %.2f < %.2f): calling by the CD8A/CD8B "
            "vs CD4/CD40LG/FOXP3 contrast",
            separation,
            min_separation,
        )

    # NK gate: cell-level absence of CD3/CD8, confirmed by its neighbourhood.
    nk_cell = _any_detected(xt, nk_cols) & ~_any_detected(xt, absent_cols)
    neighbourhood_cd3 = _smooth(smoother, _any_detected(xt, absent_cols).astype(float), steps=1)
    nk_gated = nk_cell & (neighbourhood_cd3 < 0.5)
    call = call & ~nk_gated

    spread = float(np.std(score)) or 1.0
    margin = (
        np.clip(np.abs(score - threshold) / spread, 0.0, 1.0)
        if np.isfinite(threshold)
        else np.full(len(score), 0.5)
    )
    agreement = _neighbour_agreement(light.obsp["connectivities"], call)
    result.iloc[t_index, result.columns.get_loc("is_cd8")] = call
    result.iloc[t_index, result.columns.get_loc("cd8_score")] = score
    result["cd8_threshold"] = threshold
    result.iloc[t_index, result.columns.get_loc("t_subcluster")] = sub
    result.iloc[t_index, result.columns.get_loc("nk_gated")] = nk_gated
    result.iloc[t_index, result.columns.get_loc("confidence")] = 0.5 * agreement + 0.5 * margin
    result.iloc[t_index, result.columns.get_loc("method")] = np.where(
        nk_gated, "NK gate (NK marker, no CD3/CD8)", method
    )
    logger.info(
        "CD8 T cells: %d of %d T-compartment cells (threshold %.3f, Otsu separation %.2f, "
        "%d NK-gated)",
        int(call.sum()),
        n_t,
        threshold,
        separation,
        int(nk_gated.sum()),
    )
    return result


# --------------------------------------------------------------------------- #
# Malignant cells
# --------------------------------------------------------------------------- #
@dataclass
class CNVResult:
    """Inferred copy-number profiles (infercnvpy) of every cell.

    Attributes
    ----------
    matrix
        Cells x genomic windows (CSR, float32): smoothed, reference-centred log
        expression, ~log2 copy-number ratio (0 = like the reference).
    obs_names
        The cells, in the order of ``matrix``.
    chr_pos
        Chromosome -> index of its first window (chromosomes in natural order).
    """

    matrix: sp.csr_matrix
    obs_names: pd.Index
    chr_pos: dict[str, int]


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


def _gene_positions_frame(gene_positions: pd.DataFrame) -> pd.DataFrame:
    table = gene_positions.copy()
    if list(table.columns) == [0, 1, 2, 3]:
        table.columns = ["gene", "chromosome", "start", "end"]
    missing = [c for c in ("gene", "chromosome", "start", "end") if c not in table.columns]
    if missing:
        msg = (
            f"The gene-position table lacks the column(s) {missing} (it has {list(table.columns)}). "
            "Read resources/genome/hg38_gencode_v27_gene_pos.txt with header=None and "
            "names=['gene', 'chromosome', 'start', 'end']."
        )
        raise ValueError(msg)
    bad = (
        pd.to_numeric(table["start"], errors="coerce").isna()
        | pd.to_numeric(table["end"], errors="coerce").isna()
    )
    if bad.any():
        first = table.loc[bad].iloc[0].to_dict()
        msg = (
            f"{int(bad.sum())} row(s) of the gene-position table have non-numeric start/end "
            f"(first: {first}); fix or remove them."
        )
        raise ValueError(msg)
    table["chromosome"] = table["chromosome"].astype(str)
    no_prefix = ~table["chromosome"].str.startswith("chr")
    table.loc[no_prefix, "chromosome"] = "chr" + table.loc[no_prefix, "chromosome"]
    duplicated = table["gene"].duplicated()
    if duplicated.any():
        logger.info(
            "Gene positions: %d duplicated symbol(s) kept at their first position",
            int(duplicated.sum()),
        )
    table = table.loc[~duplicated].set_index("gene")
    return table[["chromosome", "start", "end"]].astype({"start": int, "end": int})


def _run_infercnv(
    x,
    obs_names: pd.Index,
    positions: pd.DataFrame,
    *,
    reference: np.ndarray,
    window_size: int,
    step: int,
    n_jobs: int,
) -> tuple[sp.csr_matrix, dict[str, int]]:
    import infercnvpy as cnv

    light = _light(x, obs_names, positions.index)
    light.var = positions.copy()
    with warnings.catch_warnings():
        # infercnvpy's bounded difference indexes a sparse chunk element-wise (harmless)
        warnings.simplefilter("ignore", sp.SparseEfficiencyWarning)
        chr_pos, matrix, _ = cnv.tl.infercnv(
            light,
            reference=reference,
            window_size=window_size,
            step=step,
            n_jobs=n_jobs,
            inplace=False,
        )
    return sp.csr_matrix(matrix, dtype=np.float32), dict(chr_pos)


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


# --------------------------------------------------------------------------- #
# Author labels vs inference
# --------------------------------------------------------------------------- #
def _label_flags(author_labels_present: bool | Mapping[str, bool]) -> dict[str, bool]:
    if isinstance(author_labels_present, Mapping):
        unknown = sorted(set(author_labels_present) - {"cd8", "malignant"})
        if unknown:
            msg = (
                f"author_labels_present has unknown key(s) {unknown}; use 'cd8' and/or "
                "'malignant' (or one bool for both)."
            )
            raise ValueError(msg)
        return {
            "cd8": bool(author_labels_present.get("cd8", False)),
            "malignant": bool(author_labels_present.get("malignant", False)),
        }
    return {"cd8": bool(author_labels_present), "malignant": bool(author_labels_present)}


def annotate_identity(
    adata: ad.AnnData,
    *,
    author_labels_present: bool | Mapping[str, bool],
    force_inference: bool = False,
    cd8_markers: pd.DataFrame | None = None,
    lineage_markers: pd.DataFrame | None = None,
    gene_positions: pd.DataFrame | None = None,
    cancer_type: str | None = None,
    reference_mask: np.ndarray | pd.Series | None = None,
    rng: RNGLike = 0,
    resolution: float = 1.0,
    return_cnv: bool = False,
    cd8_kwargs: Mapping[str, object] | None = None,
    malignant_kwargs: Mapping[str, object] | None = None,
) -> pd.DataFrame | tuple[pd.DataFrame, CNVResult | None]:
    """CD8 T-cell and malignant labels for every cell, from the authors or inferred.

    Author labels win when present: ``obs["cell_type"] == "CD8_T"`` for CD8 T cells and
    ``obs["malignant"]`` for malignant cells. ``force_inference`` ignores them (to
    validate the inference against them). Whatever is not given by the authors is
    inferred with :func:`call_cd8` and :func:`call_malignant`, which share one kNN
    graph (:func:`embed_cells`).

    Parameters
    ----------
    adata
        Contract AnnData; not modified.
    author_labels_present
        Whether the authors' labels can be used: one bool for both, or a mapping with
        keys ``"cd8"`` and ``"malignant"`` (e.g. GSE72056 has malignant labels but does not
        split T cells into CD8 and CD4).
    force_inference
        Infer both labels even when the authors' are present.
    cd8_markers
        Table for :func:`call_cd8` (needed when CD8 T cells are inferred).
    lineage_markers, gene_positions, cancer_type, reference_mask
        For :func:`call_malignant` (``gene_positions`` and ``lineage_markers`` or
        ``reference_mask`` needed when malignant cells are inferred).
    rng
        Generator or seed for every random step.
    resolution
        Leiden resolution of the shared clustering.
    return_cnv
        Also return the copy-number profiles (None when malignant labels are the authors').
    cd8_kwargs, malignant_kwargs
        Further keyword arguments of :func:`call_cd8` and :func:`call_malignant`.

    Returns
    -------
    One row per cell: ``cell_type`` (the contract vocabulary, with ``CD8_T`` and
    ``malignant`` set from the labels used; a cell that lost an author's ``CD8_T`` or
    ``malignant`` label under forced inference becomes ``other``), ``is_cd8``,
    ``is_malignant``, ``label_source`` ("author" when every label used is the authors',
    else "inferred"), ``label_source_cd8``, ``label_source_malignant``, ``confidence``
    (the lower of the two; author labels have confidence 1), ``confidence_cd8``,
    ``confidence_malignant``, and the inference columns ``cd8_score``, ``cnv_score``,
    ``cnv_cluster``, ``lineage_score`` (NaN/"" where not inferred).
    """
    flags = _label_flags(author_labels_present)
    use_author = {k: v and not force_inference for k, v in flags.items()}
    gen = as_rng(rng)
    n = adata.n_obs
    obs = adata.obs
    if use_author["cd8"] and "cell_type" not in obs:
        msg = "author_labels_present says CD8 labels exist, but obs has no 'cell_type' column."
        raise ValueError(msg)
    if use_author["malignant"] and "malignant" not in obs:
        msg = (
            "author_labels_present says malignant labels exist, but obs has no 'malignant' column."
        )
        raise ValueError(msg)

    embedding = None
    if not (use_author["cd8"] and use_author["malignant"]):
        embedding = embed_cells(adata, rng=gen, resolution=resolution)

    out = pd.DataFrame(index=adata.obs_names)
    if use_author["cd8"]:
        out["is_cd8"] = (obs["cell_type"].astype(str) == "CD8_T").to_numpy()
        out["label_source_cd8"] = "author"
        out["confidence_cd8"] = 1.0
        out["cd8_score"] = np.nan
    else:
        if cd8_markers is None:
            msg = "CD8 T cells must be inferred but cd8_markers was not given."
            raise ValueError(msg)
        cd8 = call_cd8(
            adata,
            markers=cd8_markers,
            rng=gen,
            embedding=embedding,
            **dict(cd8_kwargs or {}),
        )
        out["is_cd8"] = cd8["is_cd8"].to_numpy()
        out["label_source_cd8"] = "inferred"
        out["confidence_cd8"] = cd8["confidence"].to_numpy()
        out["cd8_score"] = cd8["cd8_score"].to_numpy()

    cnv = None
    if use_author["malignant"]:
        malignant = obs["malignant"]
        if malignant.isna().any() or not set(pd.unique(malignant)) <= {True, False}:
            msg = (
                "obs['malignant'] must be boolean (True/False, no missing values) to be used "
                "as the authors' labels; fix it in harmonisation or set the malignant flag of "
                "author_labels_present to False."
            )
            raise ValueError(msg)
        out["is_malignant"] = malignant.astype(bool).to_numpy()
        out["label_source_malignant"] = "author"
        out["confidence_malignant"] = 1.0
        out["cnv_score"] = np.nan
        out["cnv_cluster"] = ""
        out["lineage_score"] = np.nan
    else:
        if gene_positions is None:
            msg = "Malignant cells must be inferred but gene_positions was not given."
            raise ValueError(msg)
        called = call_malignant(
            adata,
            gene_positions=gene_positions,
            reference_mask=reference_mask,
            lineage_markers=lineage_markers,
            cancer_type=cancer_type,
            rng=gen,
            embedding=embedding,
            return_cnv=True,
            **dict(malignant_kwargs or {}),
        )
        mal, cnv = called
        out["is_malignant"] = mal["is_malignant"].to_numpy()
        out["label_source_malignant"] = "inferred"
        out["confidence_malignant"] = mal["confidence"].to_numpy()
        out["cnv_score"] = mal["cnv_score"].to_numpy()
        out["cnv_cluster"] = mal["cnv_cluster"].to_numpy()
        out["lineage_score"] = mal["lineage_score"].to_numpy()

    both = out["is_cd8"] & out["is_malignant"]
    if both.any():
        # A cell cannot be both; the CD8 call rests on T-cell genes a tumour cell lacks,
        # while a CD8 T cell in a CNV-aberrant cluster is most likely a doublet.
        logger.warning(
            "%d cell(s) called both CD8 T and malignant: kept as malignant only", int(both.sum())
        )
        out.loc[both, "is_cd8"] = False

    if "cell_type" in obs:
        cell_type = obs["cell_type"].astype(str).to_numpy().copy()
    else:
        cell_type = np.full(n, "other", dtype=object)
    cell_type = np.where((cell_type == "CD8_T") & ~out["is_cd8"].to_numpy(), "other", cell_type)
    cell_type = np.where(
        (cell_type == "malignant") & ~out["is_malignant"].to_numpy(), "other", cell_type
    )
    cell_type = np.where(out["is_cd8"].to_numpy(), "CD8_T", cell_type)
    cell_type = np.where(out["is_malignant"].to_numpy(), "malignant", cell_type)
    out.insert(0, "cell_type", pd.Categorical(cell_type, categories=list(CELL_TYPES)))
    sources = out[["label_source_cd8", "label_source_malignant"]]
    out["label_source"] = np.where((sources == "author").all(axis=1), "author", "inferred")
    out["confidence"] = out[["confidence_cd8", "confidence_malignant"]].min(axis=1)
    logger.info(
        "Identity: %d CD8 T cells (%s), %d malignant cells (%s)",
        int(out["is_cd8"].sum()),
        out["label_source_cd8"].iloc[0] if n else "-",
        int(out["is_malignant"].sum()),
        out["label_source_malignant"].iloc[0] if n else "-",
    )
    if return_cnv:
        return out, cnv
    return out


def agreement_table(
    inferred: pd.Series | pd.DataFrame, author: pd.Series | pd.DataFrame
) -> pd.DataFrame:
    """Precision, recall, F1 and support of inferred labels against the authors'.

    Parameters
    ----------
    inferred, author
        Both Series (labels, or booleans) or both DataFrames of boolean columns with the
        same names (e.g. ``is_cd8``, ``is_malignant``), indexed by cell. Only cells in
        both are compared; at least one must be shared.

    Returns
    -------
    One row per class (the label values; for booleans and boolean columns, the positive
    class, named after the Series/column): ``class``, ``n_cells``, ``support`` (author
    positives), ``n_predicted``, ``true_positive``, ``precision``, ``recall``, ``f1``
    (NaN where undefined: nothing predicted, or no support).
    """
    if isinstance(inferred, pd.DataFrame) != isinstance(author, pd.DataFrame):
        msg = "agreement_table: give two Series or two DataFrames, not one of each."
        raise ValueError(msg)
    common = inferred.index.intersection(author.index)
    if len(common) == 0:
        msg = "agreement_table: the inferred and author labels share no cell id."
        raise ValueError(msg)
    if len(common) < max(len(inferred.index), len(author.index)):
        logger.warning(
            "agreement_table: %d shared cells (inferred %d, author %d)",
            len(common),
            len(inferred.index),
            len(author.index),
        )
    pairs: list[tuple[str, np.ndarray, np.ndarray]] = []
    if isinstance(inferred, pd.DataFrame):
        missing = [c for c in inferred.columns if c not in author.columns]
        if missing:
            msg = f"agreement_table: author labels lack the column(s) {missing}."
            raise ValueError(msg)
        for column in inferred.columns:
            pairs.append(
                (
                    str(column),
                    inferred.loc[common, column].astype(bool).to_numpy(),
                    author.loc[common, column].astype(bool).to_numpy(),
                )
            )
    else:
        pred = inferred.loc[common]
        true = author.loc[common]
        if pd.api.types.is_bool_dtype(pred) and pd.api.types.is_bool_dtype(true):
            name = str(inferred.name or author.name or "positive")
            pairs.append((name, pred.to_numpy(), true.to_numpy()))
        else:
            pred = pred.astype(str).to_numpy()
            true = true.astype(str).to_numpy()
            for label in sorted(set(pred) | set(true)):
                pairs.append((label, pred == label, true == label))
    rows = []
    for name, pred, true in pairs:
        tp = int((pred & true).sum())
        n_pred = int(pred.sum())
        support = int(true.sum())
        precision = tp / n_pred if n_pred else np.nan
        recall = tp / support if support else np.nan
        f1 = (
            2 * precision * recall / (precision + recall)
            if n_pred and support and (precision + recall) > 0
            else (0.0 if n_pred and support else np.nan)
        )
        rows.append(
            {
                "class": name,
                "n_cells": len(pred),
                "support": support,
                "n_predicted": n_pred,
                "true_positive": tp,
                "precision": precision,
                "recall": recall,
                "f1": f1,
            }
        )
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------- #
# The workflow step: labels used, agreement, per-cell table
# --------------------------------------------------------------------------- #
#: The classes of the agreement table: contract cell type -> column of the calls.
AGREEMENT_CLASSES: dict[str, str] = {"CD8_T": "is_cd8", "malignant": "is_malignant"}

#: Columns of the per-cell identity table (:func:`identity_table`).
IDENTITY_COLUMNS: tuple[str, ...] = (
    "cell",
    "patient",
    "cell_type",
    "cell_type_original",
    "is_cd8",
    "is_malignant",
    "label_source",
    "label_source_cd8",
    "label_source_malignant",
    "confidence",
    "confidence_cd8",
    "confidence_malignant",
    "cd8_score",
    "cnv_score",
    "cnv_cluster",
    "lineage_score",
    "hidden_labels_is_cd8",
    "hidden_labels_is_malignant",
)


@dataclass
class IdentityResult:
    """What :func:`identify_cells` found for one dataset.

    Attributes
    ----------
    calls
        :func:`annotate_identity` output: the labels used (author where given, else inferred).
    author_labels
        Which author labels the dataset carries (:func:`author_label_flags`).
    agreement
        :func:`agreement_table` rows of the classes CD8_T and malignant, with the columns
        ``author_labels`` (bool) and ``note`` (why a row has no figures).
    hidden
        Calls of the inference run with every author label hidden (for the agreement);
        None when it did not run.
    cnv
        Copy-number profiles of the run that inferred malignant cells (the labels used
        when they were inferred, else the hidden-label run); None when none did.
    cnv_groups
        A group per cell of ``cnv`` for :func:`cnv_heatmap` (None with ``cnv``).
    cnv_note
        Which run the profiles come from, or why there are none.
    """

    calls: pd.DataFrame
    author_labels: dict[str, bool]
    agreement: pd.DataFrame
    hidden: pd.DataFrame | None = None
    cnv: CNVResult | None = None
    cnv_groups: pd.Series | None = None
    cnv_note: str = ""


def author_label_flags(obs: pd.DataFrame) -> dict[str, bool]:
    """Which author labels a harmonised dataset carries, for CD8 T cells and malignant cells.

    A label counts as given when at least one cell carries it: ``cell_type == "CD8_T"``
    for CD8 T cells, ``malignant`` True for malignant cells. A dataset without labels
    (all ``other``), or whose label map sends T cells to ``other`` because the authors did
    not split CD8 from CD4 (GSE72056, GSE103322), has the missing one inferred.

    Parameters
    ----------
    obs
        ``obs`` of a harmonised AnnData (columns ``cell_type`` and ``malignant``).

    Returns
    -------
    ``{"cd8": bool, "malignant": bool}``.
    """
    cd8 = "cell_type" in obs and bool((obs["cell_type"].astype(str) == "CD8_T").any())
    malignant = False
    if "malignant" in obs:
        values = obs["malignant"]
        malignant = bool(values.fillna(False).astype(bool).any()) if len(values) else False
    return {"cd8": cd8, "malignant": malignant}


def _agreement_rows(
    calls: pd.DataFrame | None,
    obs: pd.DataFrame,
    *,
    author_labels: Mapping[str, bool],
    note: str = "",
) -> pd.DataFrame:
    """Agreement of ``calls`` with the author labels of ``obs``, one row per class."""
    author = pd.DataFrame(
        {
            "CD8_T": (obs["cell_type"].astype(str) == "CD8_T").to_numpy()
            if "cell_type" in obs
            else False,
            "malignant": obs["malignant"].fillna(False).astype(bool).to_numpy()
            if "malignant" in obs
            else False,
        },
        index=obs.index,
    )
    flags = {"CD8_T": author_labels["cd8"], "malignant": author_labels["malignant"]}
    rows = []
    for name, column in AGREEMENT_CLASSES.items():
        if flags[name] and calls is not None:
            row = agreement_table(
                calls[[column]].rename(columns={column: name}), author[[name]]
            ).iloc[0]
            rows.append({**row.to_dict(), "author_labels": True, "note": ""})
            continue
        if not flags[name]:
            why = "no author labels: nothing to compare (the labels used are inferred)"
        else:
            why = note
        rows.append(
            {
                "class": name,
                "n_cells": len(obs),
                "support": int(author[name].sum()) if flags[name] else np.nan,
                "n_predicted": np.nan,
                "true_positive": np.nan,
                "precision": np.nan,
                "recall": np.nan,
                "f1": np.nan,
                "author_labels": flags[name],
                "note": why,
            }
        )
    return pd.DataFrame(rows)


def identify_cells(
    adata: ad.AnnData,
    *,
    cd8_markers: pd.DataFrame,
    lineage_markers: pd.DataFrame,
    gene_positions: pd.DataFrame,
    cancer_type: str | None = None,
    force_inference: bool = False,
    agreement: bool = True,
    rng: RNGLike = 0,
    resolution: float = 1.0,
) -> IdentityResult:
    """CD8 T-cell and malignant labels of a dataset, and how well inference matches the authors'.

    The identity step of the workflow. Author labels win where the dataset has them
    (:func:`author_label_flags`); the rest is inferred with :func:`annotate_identity`
    (``force_inference`` infers everything). When the dataset has author labels and
    ``agreement`` is set, the inference is run a second time with every author label
    hidden, and its calls are compared with the authors' (:func:`agreement_table`); under
    ``force_inference`` the labels used are themselves inferred and are compared directly.
    The hidden-label run starts from the same seed as the first, so a label the first run
    inferred is the same in both.

    Parameters
    ----------
    adata
        Contract AnnData (``X`` = ln(CP10k+1)); not modified.
    cd8_markers, lineage_markers, gene_positions, cancer_type
        See :func:`call_cd8` and :func:`call_malignant`.
    force_inference
        Infer both labels even where the authors give them.
    agreement
        Compute the agreement table when author labels exist (one more inference run).
    rng
        Seed (an integer: each run starts from it).
    resolution
        Leiden resolution of the shared clustering.

    Returns
    -------
    :class:`IdentityResult`. A failure of the hidden-label run (e.g. too few
    non-malignant reference cells) does not stop the step: it is logged and its reason
    is the ``note`` of the agreement rows.
    """
    if isinstance(rng, np.random.Generator):
        msg = "identify_cells needs an integer seed (both inference runs start from it)."
        raise ValueError(msg)
    flags = author_label_flags(adata.obs)
    logger.info(
        "Author labels: CD8 T cells %s, malignant cells %s%s",
        "given" if flags["cd8"] else "absent",
        "given" if flags["malignant"] else "absent",
        " (inference forced)" if force_inference else "",
    )
    inputs = {
        "cd8_markers": cd8_markers,
        "lineage_markers": lineage_markers,
        "gene_positions": gene_positions,
        "cancer_type": cancer_type,
        "resolution": resolution,
        "return_cnv": True,
    }
    calls, cnv = annotate_identity(
        adata, author_labels_present=flags, force_inference=force_inference, rng=rng, **inputs
    )
    cnv_groups = None
    cnv_note = (
        "No copy-number inference ran: the malignant labels used are the authors' and the "
        "agreement check is off."
    )
    if cnv is not None:
        cnv_groups = pd.Series(
            np.where(calls["is_malignant"], "malignant", "non-malignant"), index=calls.index
        )
        cnv_note = "Copy-number profiles of the malignant-cell inference (the labels used)."
    hidden = None
    any_author = flags["cd8"] or flags["malignant"]
    if not any_author:
        table = _agreement_rows(None, adata.obs, author_labels=flags)
    elif force_inference:
        hidden = calls
        table = _agreement_rows(calls, adata.obs, author_labels=flags)
    elif not agreement:
        table = _agreement_rows(
            None, adata.obs, author_labels=flags, note="not computed (agreement switched off)"
        )
    else:
        hidden_adata = ad.AnnData(
            X=adata.X,
            obs=pd.DataFrame(index=adata.obs_names),
            var=pd.DataFrame(index=adata.var_names),
        )
        hidden_adata.uns["cd8exo"] = dict(adata.uns.get("cd8exo", {}))
        try:
            hidden, hidden_cnv = annotate_identity(
                hidden_adata, author_labels_present=False, rng=rng, **inputs
            )
        except ValueError as error:
            logger.warning("Inference with the author labels hidden failed: %s", error)
            if cnv is None:
                cnv_note = f"No copy-number profiles: the inference with the author labels hidden failed ({error})."
            table = _agreement_rows(
                None,
                adata.obs,
                author_labels=flags,
                note=f"inference with the author labels hidden failed: {error}",
            )
        else:
            table = _agreement_rows(hidden, adata.obs, author_labels=flags)
            if cnv is None:
                cnv = hidden_cnv
                cnv_note = (
                    "Copy-number profiles of the inference with the author labels hidden "
                    "(agreement check); the malignant labels used are the authors'."
                )
                author = adata.obs["malignant"].fillna(False).astype(bool).to_numpy()
                called = hidden["is_malignant"].to_numpy()
                cnv_groups = pd.Series(
                    np.select(
                        [author & called, author & ~called, ~author & called],
                        [
                            "malignant: author and inferred",
                            "malignant: author only",
                            "malignant: inferred only",
                        ],
                        default="non-malignant",
                    ),
                    index=hidden.index,
                )
    for _, row in table.iterrows():
        logger.info(
            "Agreement %s: precision %.3f, recall %.3f, F1 %.3f (support %s)%s",
            row["class"],
            row["precision"],
            row["recall"],
            row["f1"],
            row["support"],
            f" - {row['note']}" if row["note"] else "",
        )
    return IdentityResult(
        calls=calls,
        author_labels=flags,
        agreement=table,
        hidden=hidden,
        cnv=cnv,
        cnv_groups=cnv_groups,
        cnv_note=cnv_note,
    )


def annotated_obs(obs: pd.DataFrame, calls: pd.DataFrame) -> pd.DataFrame:
    """``obs`` with the labels used: cell_type, malignant, their source and confidence.

    Parameters
    ----------
    obs
        ``obs`` of the harmonised AnnData; not modified.
    calls
        :func:`annotate_identity` output for the same cells.

    Returns
    -------
    A copy of ``obs`` with ``cell_type`` and ``malignant`` from ``calls`` and the new
    columns ``label_source`` (author/inferred), ``label_source_cd8``,
    ``label_source_malignant`` and ``identity_confidence`` (0-1; 1 for author labels).
    """
    if not calls.index.equals(obs.index):
        msg = "annotated_obs: the calls are not for the same cells, in the same order, as obs."
        raise ValueError(msg)
    out = obs.copy()
    out["cell_type"] = pd.Categorical(calls["cell_type"].astype(str), categories=list(CELL_TYPES))
    out["malignant"] = calls["is_malignant"].astype(bool).to_numpy()
    for column in ("label_source", "label_source_cd8", "label_source_malignant"):
        out[column] = pd.Categorical(
            calls[column].astype(str).to_numpy(), categories=["author", "inferred"]
        )
    out["identity_confidence"] = calls["confidence"].astype(float).to_numpy()
    return out


def identity_table(result: IdentityResult, *, obs: pd.DataFrame) -> pd.DataFrame:
    """One row per cell: the labels used, their source and confidence, the inference scores.

    Parameters
    ----------
    result
        :func:`identify_cells` output.
    obs
        ``obs`` of the harmonised AnnData (for ``patient`` and ``cell_type_original``).

    Returns
    -------
    The columns :data:`IDENTITY_COLUMNS`; ``hidden_labels_is_cd8`` and
    ``hidden_labels_is_malignant`` are the calls of the hidden-label run (empty when it
    did not run).
    """
    calls = result.calls
    table = calls.copy()
    table["cell_type"] = table["cell_type"].astype(str)
    table.insert(0, "cell", calls.index.to_numpy())
    table["patient"] = obs["patient"].astype(str).reindex(calls.index).to_numpy()
    original = (
        obs["cell_type_original"].astype(str)
        if "cell_type_original" in obs
        else pd.Series("", index=obs.index)
    )
    table["cell_type_original"] = original.reindex(calls.index).to_numpy()
    for column in ("is_cd8", "is_malignant"):
        hidden = (
            result.hidden[column].astype("boolean")
            if result.hidden is not None
            else pd.Series(pd.NA, index=calls.index, dtype="boolean")
        )
        table[f"hidden_labels_{column}"] = hidden.reindex(calls.index).to_numpy()
    return table[list(IDENTITY_COLUMNS)].reset_index(drop=True)


def cnv_subsample(
    cnv: CNVResult, *, groups: pd.Series, max_cells: int = 3000, rng: RNGLike = 0
) -> tuple[CNVResult, pd.Series]:
    """A seeded subsample of copy-number profiles (proportional per group), for the figure.

    Parameters
    ----------
    cnv
        Profiles (:func:`call_malignant`).
    groups
        A group per cell of ``cnv``.
    max_cells
        At most this many cells are kept (every group keeps at least one).
    rng
        Generator or seed.

    Returns
    -------
    The kept profiles and their groups, in the original cell order.
    """
    gen = as_rng(rng)
    labels = groups.reindex(cnv.obs_names).astype(str).fillna("NA").to_numpy()
    n = len(labels)
    fraction = min(1.0, max_cells / n) if n else 1.0
    keep = []
    for group in sorted(set(labels)):
        idx = np.nonzero(labels == group)[0]
        size = min(len(idx), max(1, round(len(idx) * fraction)))
        keep.append(gen.choice(idx, size=size, replace=False))
    index = np.sort(np.concatenate(keep)) if keep else np.array([], dtype=int)
    kept = CNVResult(
        matrix=sp.csr_matrix(cnv.matrix[index]),
        obs_names=cnv.obs_names[index],
        chr_pos=dict(cnv.chr_pos),
    )
    return kept, pd.Series(labels[index], index=kept.obs_names, name="group")


# --------------------------------------------------------------------------- #
# Figure
# --------------------------------------------------------------------------- #
def cnv_heatmap(
    cnv: CNVResult,
    *,
    groups: pd.Series | None = None,
    ax: Axes | None = None,
    max_cells: int = 1500,
    rng: RNGLike = 0,
    vmax: float | None = None,
    title: str = "",
) -> Figure:
    """Heatmap of inferred copy-number profiles: cells (rows, by group) x genome (columns).

    Parameters
    ----------
    cnv
        Profiles from :func:`call_malignant` (``return_cnv=True``).
    groups
        A label per cell (indexed by cell id), e.g. "malignant"/"non-malignant" or the
        CNV cluster; rows are ordered and separated by group.
    ax
        Axes to draw on; a new figure when None.
    max_cells
        At most this many rows (a fixed random subsample, proportional per group, seeded
        with ``rng`` so the figure reproduces exactly).
    rng
        Generator or seed of the subsample.
    vmax
        Colour limit (symmetric); default the 99th percentile of |values|.
    title
        Axes title.

    Returns
    -------
    The figure (red: gain, blue: loss relative to the reference).
    """
    import matplotlib.pyplot as plt

    gen = as_rng(rng)
    n = cnv.matrix.shape[0]
    labels = (
        pd.Series("all cells", index=cnv.obs_names)
        if groups is None
        else groups.reindex(cnv.obs_names).astype(str).fillna("NA")
    )
    if groups is not None and groups.reindex(cnv.obs_names).isna().all():
        msg = "cnv_heatmap: groups shares no cell id with the CNV profiles."
        raise ValueError(msg)
    order_groups = sorted(pd.unique(labels.to_numpy()))
    fraction = min(1.0, max_cells / n) if n else 1.0
    rows: list[np.ndarray] = []
    bounds: list[tuple[str, int, int]] = []
    start = 0
    for g in order_groups:
        idx = np.nonzero(labels.to_numpy() == g)[0]
        keep = max(1, round(len(idx) * fraction))
        chosen = np.sort(gen.choice(idx, size=min(keep, len(idx)), replace=False))
        rows.append(chosen)
        bounds.append((g, start, start + len(chosen)))
        start += len(chosen)
    index = np.concatenate(rows) if rows else np.array([], dtype=int)
    values = cnv.matrix[index].toarray()
    if vmax is None:
        vmax = float(np.quantile(np.abs(values), 0.99)) if values.size else 1.0
        vmax = vmax if vmax > 0 else 1.0
    if ax is None:
        fig, ax = plt.subplots(figsize=(12, 5))
    else:
        fig = ax.figure
    image = ax.imshow(
        values, aspect="auto", cmap="RdBu_r", vmin=-vmax, vmax=vmax, interpolation="nearest"
    )
    chromosomes = sorted(cnv.chr_pos, key=lambda c: cnv.chr_pos[c])
    starts = [cnv.chr_pos[c] for c in chromosomes] + [cnv.matrix.shape[1]]
    for s in starts[1:-1]:
        ax.axvline(s - 0.5, color="black", linewidth=0.5)
    ax.set_xticks([(starts[i] + starts[i + 1]) / 2 for i in range(len(chromosomes))])
    ax.set_xticklabels([c.removeprefix("chr") for c in chromosomes], fontsize=7)
    for _, _, end in bounds[:-1]:
        ax.axhline(end - 0.5, color="black", linewidth=0.8)
    ax.set_yticks([(b + e) / 2 for _, b, e in bounds])
    ax.set_yticklabels([f"{g} (n={e - b})" for g, b, e in bounds], fontsize=8)
    ax.set_xlabel("chromosome")
    if title:
        ax.set_title(title)
    fig.colorbar(image, ax=ax, fraction=0.025, pad=0.01, label="inferred CNV (log ratio)")
    return fig


def cnv_to_anndata(
    cnv: CNVResult | None, *, groups: pd.Series | None = None, note: str = ""
) -> ad.AnnData:
    """Copy-number profiles as an AnnData (cells x windows) to store between rules.

    Parameters
    ----------
    cnv
        Profiles, or None (an empty AnnData that keeps only the ``note``).
    groups
        A group per cell (``obs["group"]``); default "all cells".
    note
        Where the profiles come from, or why there are none (``uns["note"]``).

    Returns
    -------
    AnnData with ``X`` the profiles, ``obs["group"]``, ``uns["chr_pos"]`` and ``uns["note"]``.
    """
    if cnv is None:
        return ad.AnnData(
            X=sp.csr_matrix((0, 0), dtype=np.float32),
            uns={"note": note, "chr_pos": {}},
        )
    labels = (
        pd.Series("all cells", index=cnv.obs_names)
        if groups is None
        else groups.reindex(cnv.obs_names).astype(str).fillna("NA")
    )
    return ad.AnnData(
        X=sp.csr_matrix(cnv.matrix, dtype=np.float32),
        obs=pd.DataFrame({"group": labels.to_numpy()}, index=cnv.obs_names.astype(str)),
        uns={"note": note, "chr_pos": {str(k): int(v) for k, v in cnv.chr_pos.items()}},
    )


def cnv_from_anndata(stored: ad.AnnData) -> tuple[CNVResult | None, pd.Series | None, str]:
    """The profiles, groups and note of :func:`cnv_to_anndata` (None, None, note when empty)."""
    note = str(stored.uns.get("note", ""))
    if stored.n_obs == 0:
        return None, None, note
    chr_pos = {str(k): int(v) for k, v in dict(stored.uns.get("chr_pos", {})).items()}
    cnv = CNVResult(
        matrix=sp.csr_matrix(stored.X, dtype=np.float32),
        obs_names=stored.obs_names.copy(),
        chr_pos=chr_pos,
    )
    groups = stored.obs["group"].astype(str) if "group" in stored.obs else None
    return cnv, groups, note


def cnv_figure(stored: ad.AnnData, *, title: str = "", rng: RNGLike = 0) -> Figure:
    """:func:`cnv_heatmap` of stored profiles, or a figure that says why there are none.

    Parameters
    ----------
    stored
        :func:`cnv_to_anndata` output.
    title
        Figure title (the note is added below it).
    rng
        Seed of the heatmap's row subsample.

    Returns
    -------
    The figure.
    """
    import matplotlib.pyplot as plt

    cnv, groups, note = cnv_from_anndata(stored)
    if cnv is None:
        fig, ax = plt.subplots(figsize=(8, 2))
        ax.axis("off")
        ax.text(0.5, 0.5, note or "No copy-number profiles.", ha="center", va="center", wrap=True)
        if title:
            ax.set_title(title)
        return fig
    full_title = f"{title}\n{note}" if title and note else (title or note)
    return cnv_heatmap(cnv, groups=groups, rng=rng, title=full_title)


def read_identity_references(
    cd8_markers: Sequence[str | Path], lineage_markers: str | Path, gene_positions: str | Path
) -> dict[str, pd.DataFrame]:
    """Read the identity step's reference tables as :func:`identify_cells` takes them.

    Parameters
    ----------
    cd8_markers
        CD8 marker tables, concatenated in order (``resources/markers/``
        ``cd8_identity_markers.tsv`` and ``cd8_support_markers.tsv``).
    lineage_markers
        ``resources/markers/malignant_lineage_markers.tsv``.
    gene_positions
        ``resources/genome/hg38_gencode_v27_gene_pos.txt`` (no header).

    Returns
    -------
    The keywords ``cd8_markers``, ``lineage_markers`` and ``gene_positions``.
    """
    return {
        "cd8_markers": pd.concat([read_tsv(p, what="CD8 markers") for p in cd8_markers]),
        "lineage_markers": read_tsv(lineage_markers, what="lineage markers"),
        "gene_positions": pd.read_csv(gene_positions, sep="\t", header=None),
    }
