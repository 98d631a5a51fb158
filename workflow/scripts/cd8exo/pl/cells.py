"""Figures of cells: UMAP, copy-number heatmap."""

from __future__ import annotations

import logging

import anndata as ad
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from cd8exo._utils import RNGLike, as_rng
from cd8exo.cells.identity.cnv import CNVResult, cnv_from_anndata
from cd8exo.pl import _categorical_colours, message_figure
from cd8exo.vocabulary import CELL_TYPES

logger = logging.getLogger(__name__)

__all__ = ["cnv_figure", "cnv_heatmap", "umap_figure"]


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


def umap_figure(coords: pd.DataFrame, *, title: str = "") -> Figure:
    """UMAP coloured by cell type (left) and by patient (right).

    Without coordinates (no cell, or data too small to embed: :func:`umap_coordinates`
    writes NaN and a ``note``) the figure says why instead.
    """
    finite = coords[["UMAP1", "UMAP2"]].notna().all(axis=1) if len(coords) else []
    if not len(coords) or not finite.any():
        notes = coords["note"].dropna().astype(str).unique() if "note" in coords else []
        note = notes[0] if len(notes) else "no UMAP: no cell passed QC"
        return message_figure(f"{note}.", title=f"{title} UMAP".strip())
    coords = coords[finite]
    fig, axes = plt.subplots(1, 2, figsize=(13, 5.5))
    for ax, column in zip(axes, ["cell_type", "patient"], strict=True):
        values = coords[column].astype(str)
        order = (
            [c for c in CELL_TYPES if c in set(values)]
            if column == "cell_type"
            else sorted(set(values))
        )
        colours = _categorical_colours(values, order)
        # draw in a shuffled but fixed order so no group hides another
        idx = np.random.default_rng(0).permutation(len(coords))
        ax.scatter(
            coords["UMAP1"].to_numpy()[idx],
            coords["UMAP2"].to_numpy()[idx],
            c=[colours[v] for v in values.to_numpy()[idx]],
            s=3,
            linewidths=0,
            rasterized=True,
        )
        handles = [plt.Line2D([], [], marker="o", ls="", color=colours[v], label=v) for v in order]
        ax.legend(
            handles=handles,
            loc="center left",
            bbox_to_anchor=(1, 0.5),
            fontsize=7,
            frameon=False,
            ncol=2 if len(order) > 16 else 1,
        )
        ax.set_title(f"{title} by {column.replace('_', ' ')}".strip())
        ax.set_xlabel("UMAP1")
        ax.set_ylabel("UMAP2")
        ax.set_xticks([])
        ax.set_yticks([])
    fig.tight_layout()
    return fig
