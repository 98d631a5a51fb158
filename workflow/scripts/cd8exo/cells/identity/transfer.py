"""Identity of a large dataset: inferred on a stratified subsample, carried to every cell by kNN.

The graph steps of :func:`~cd8exo.cells.identity.annotate.identify_cells` (kNN graph,
Leiden, copy-number inference) hold the whole matrix and its graph in memory, which
grows with the cells (about 18 GB at 100,000 cells). Above ``max_cells`` they run on a
seeded subsample stratified by patient and cell type (:func:`stratified_subsample`);
every other cell then takes the calls of its nearest subsampled cells in a PCA space of
the subsample's highly variable genes (:func:`transfer_calls`), read from disk a block
of cells at a time. Author labels are never transferred: a cell's author label is its
own. The agreement with the author labels is that of the subsample.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import scanpy as sc
from sklearn.decomposition import PCA
from sklearn.neighbors import NearestNeighbors

from cd8exo._utils import RNGLike, as_rng, seed_from
from cd8exo.cells.identity.agreement import author_label_flags
from cd8exo.cells.identity.annotate import (
    IdentityResult,
    _keep_malignant_of_double_calls,
    _with_labels_used,
    identify_cells,
)
from cd8exo.cells.store import iter_rows

if TYPE_CHECKING:
    import anndata as ad

    from cd8exo.cells.store import Cells

logger = logging.getLogger(__name__)

__all__ = ["MAX_GRAPH_CELLS", "identify_large", "stratified_subsample", "transfer_calls"]

#: Cells above which the graph steps run on a subsample (config ``identity.max_graph_cells``).
MAX_GRAPH_CELLS = 20_000

#: The per-kind columns of the calls, and how a cell outside the subsample gets them.
_KIND_COLUMNS = {
    "cd8": {"is_cd8": "vote", "confidence_cd8": "mean", "cd8_score": "mean"},
    "malignant": {
        "is_malignant": "vote",
        "confidence_malignant": "mean",
        "cnv_score": "mean",
        "cnv_cluster": "vote",
        "lineage_score": "mean",
    },
}


def stratified_subsample(
    obs: pd.DataFrame,
    n: int,
    *,
    by: tuple[str, ...] = ("patient", "cell_type"),
    min_per_group: int = 30,
    rng: RNGLike = 0,
) -> np.ndarray:
    """Positions (ascending) of about ``n`` cells, sampled within each group of ``by``.

    Each group gets its share of ``n`` in proportion to its size, and at least
    ``min(min_per_group, size)`` cells (fewer when there are so many groups that this
    would exceed ``n``), so that small patients and rare cell types are present; seeded by
    ``rng``. All cells when there are at most ``n``.
    """
    n_cells = len(obs)
    if n_cells <= n:
        return np.arange(n_cells)
    gen = as_rng(rng)
    keys = [obs[c].astype(str).to_numpy() for c in by if c in obs]
    codes = pd.MultiIndex.from_arrays(keys).factorize()[0] if keys else np.zeros(n_cells, int)
    sizes = np.bincount(codes)
    # at least min_per_group cells per group, lowered when the groups are too many for n
    floor = min(min_per_group, max(1, n // len(sizes)))
    quota = np.maximum(np.floor(sizes * n / n_cells), np.minimum(floor, sizes)).astype(int)
    order = np.argsort(codes, kind="stable")
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    chosen = [
        gen.choice(order[start : start + size], size=take, replace=False)
        for start, size, take in zip(starts, sizes, quota, strict=True)
        if take
    ]
    return np.sort(np.concatenate(chosen))


def _pca_space(sub: ad.AnnData, *, n_top_genes: int, n_pcs: int, seed: int):
    """HVG columns, their means and a PCA fitted on the subsample's log-normalised values."""
    light = sc.AnnData(X=sub.X, var=pd.DataFrame(index=sub.var_names))
    n_top = int(min(n_top_genes, sub.n_vars))
    sc.pp.highly_variable_genes(light, n_top_genes=n_top, flavor="seurat")
    hvg = np.flatnonzero(light.var["highly_variable"].to_numpy())
    dense = np.asarray(sub.X[:, hvg].toarray(), dtype=np.float32)
    n_comps = int(max(2, min(n_pcs, dense.shape[0] - 2, len(hvg) - 2)))
    pca = PCA(n_components=n_comps, svd_solver="randomized", random_state=seed).fit(dense)
    return hvg, pca, pca.transform(dense)


def transfer_calls(
    cells: Cells,
    sub_positions: np.ndarray,
    sub: ad.AnnData,
    sub_calls: pd.DataFrame,
    *,
    columns: dict[str, str],
    n_neighbors: int = 15,
    n_top_genes: int = 2000,
    n_pcs: int = 30,
    rng: RNGLike = 0,
) -> pd.DataFrame:
    """``columns`` of ``sub_calls`` for every cell of ``cells``, by its nearest subsampled cells.

    Parameters
    ----------
    cells
        All cells (the matrix on disk).
    sub_positions, sub, sub_calls
        The subsample: positions in ``cells``, the cells in memory (log-normalised ``X``)
        and their calls.
    columns
        Column -> ``"vote"`` (most common value among the neighbours, ties to the first
        seen) or ``"mean"`` (mean over the neighbours, NaN-aware).

    Returns
    -------
    One row per cell of ``cells``: subsampled cells keep their own values.
    """
    seed = seed_from(as_rng(rng))
    hvg, pca, sub_space = _pca_space(sub, n_top_genes=n_top_genes, n_pcs=n_pcs, seed=seed)
    k = int(min(n_neighbors, len(sub_positions)))
    index = NearestNeighbors(n_neighbors=k).fit(sub_space)
    out = pd.DataFrame(index=cells.obs_names)
    neighbours = np.empty((cells.n_obs, k), dtype=np.int64)
    for start, stop, block in iter_rows(cells.X):
        space = pca.transform(np.asarray(block[:, hvg].toarray(), dtype=np.float32))
        neighbours[start:stop] = index.kneighbors(space, return_distance=False)
    for column, how in columns.items():
        values = sub_calls[column].to_numpy()
        taken = values[neighbours]
        if how == "mean":
            numbers = np.where(pd.isna(taken), np.nan, taken).astype(float)
            counted = (~np.isnan(numbers)).sum(axis=1)
            sums = np.nansum(numbers, axis=1)
            result = np.divide(sums, counted, out=np.full(len(sums), np.nan), where=counted > 0)
        else:
            result = _vote(taken)
        result = pd.Series(result, index=cells.obs_names)
        result.iloc[sub_positions] = values
        out[column] = result.astype(sub_calls[column].dtype) if how == "vote" else result
    return out


def _vote(taken: np.ndarray) -> np.ndarray:
    """The most common value of each row (ties: the value seen first among the nearest)."""
    codes, uniques = pd.factorize(pd.Series(taken.ravel(), dtype=object), use_na_sentinel=False)
    codes = codes.reshape(taken.shape)
    counts = np.zeros((taken.shape[0], len(uniques)), dtype=np.int64)
    for j in range(taken.shape[1]):
        np.add.at(counts, (np.arange(taken.shape[0]), codes[:, j]), 1)
    best = counts.max(axis=1, keepdims=True)
    # first neighbour (nearest first) whose value has the highest count
    first = np.argmax(np.take_along_axis(counts, codes, axis=1) == best, axis=1)
    return np.asarray(uniques, dtype=object)[codes[np.arange(taken.shape[0]), first]]


def identify_large(
    cells: Cells,
    *,
    max_cells: int = MAX_GRAPH_CELLS,
    rng: int = 0,
    **identify_kwargs,
) -> IdentityResult:
    """:func:`identify_cells` on a stratified subsample of ``max_cells``, carried to all cells.

    ``identify_kwargs`` are those of :func:`identify_cells` (markers, gene positions,
    cancer type, ``force_inference``, ``agreement``, ``resolution``).
    """
    positions = stratified_subsample(cells.obs, max_cells, rng=rng)
    sub = cells[positions].to_memory()
    logger.info(
        "Identity of %d cells inferred on a stratified subsample of %d (per patient and "
        "cell type) and carried to the other cells by their %d nearest subsampled cells",
        cells.n_obs,
        len(positions),
        15,
    )
    result = identify_cells(sub, rng=rng, **identify_kwargs)
    sub_calls = result.calls
    transfer = {}
    for kind, columns in _KIND_COLUMNS.items():
        if (sub_calls[f"label_source_{kind}"] == "inferred").any():
            transfer.update(columns)
    calls = pd.DataFrame(index=cells.obs_names)
    if transfer:
        calls = transfer_calls(cells, positions, sub, sub_calls, columns=transfer, rng=rng)
    calls = calls.assign(**_author_columns(cells.obs, sub_calls, skip=transfer))
    raw = [c for kind in _KIND_COLUMNS.values() for c in kind]
    raw = [c for c in sub_calls.columns if c in raw or c.startswith("label_source_")]
    calls = calls[[c for c in sub_calls.columns if c in calls.columns and c in raw]]
    _keep_malignant_of_double_calls(calls)
    calls = _with_labels_used(calls, obs=cells.obs)
    agreement = result.agreement.copy()
    if "note" in agreement:
        where = f"on a stratified subsample of {len(positions)} of {cells.n_obs} cells"
        agreement["note"] = [f"{n}; {where}" if n else where for n in agreement["note"]]
    return IdentityResult(
        calls=calls,
        author_labels=author_label_flags(cells.obs),
        agreement=agreement,
        hidden=result.hidden,
        cnv=result.cnv,
        cnv_groups=result.cnv_groups,
        cnv_note=result.cnv_note,
    )


def _author_columns(obs: pd.DataFrame, sub_calls: pd.DataFrame, *, skip: dict) -> dict:
    """The calls' columns that need no inference: author labels, and the label sources."""
    out: dict[str, object] = {}
    for kind, columns in _KIND_COLUMNS.items():
        source = sub_calls[f"label_source_{kind}"].iloc[0] if len(sub_calls) else "inferred"
        out[f"label_source_{kind}"] = source
        if next(iter(columns)) in skip:
            continue
        if kind == "cd8":
            out["is_cd8"] = (obs["cell_type"].astype(str) == "CD8_T").to_numpy()
            out.update(confidence_cd8=1.0, cd8_score=np.nan)
        else:
            out["is_malignant"] = obs["malignant"].astype(bool).to_numpy()
            out.update(
                confidence_malignant=1.0, cnv_score=np.nan, cnv_cluster="", lineage_score=np.nan
            )
    return out
