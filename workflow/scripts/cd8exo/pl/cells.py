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
from cd8exo.pl import message_figure
from cd8exo.pl.names import DisplayNames
from cd8exo.pl.style import categorical_colours, new_figure
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
        fig, ax = new_figure("double", 95)
    else:
        fig = ax.figure
    image = ax.imshow(
        values, aspect="auto", cmap="RdBu_r", vmin=-vmax, vmax=vmax, interpolation="nearest"
    )
    image.set_rasterized(True)  # thousands of cells: a bitmap inside the PDF and SVG
    chromosomes = sorted(cnv.chr_pos, key=lambda c: cnv.chr_pos[c])
    starts = [cnv.chr_pos[c] for c in chromosomes] + [cnv.matrix.shape[1]]
    for s in starts[1:-1]:
        ax.axvline(s - 0.5, color="black", linewidth=0.5)
    ax.set_xticks([(starts[i] + starts[i + 1]) / 2 for i in range(len(chromosomes))])
    # alternate rows so the short chromosomes' labels do not collide at print size
    ax.set_xticklabels(
        [("" if i % 2 else "\n") + c.removeprefix("chr") for i, c in enumerate(chromosomes)],
        fontsize=6,
    )
    ax.tick_params(axis="x", length=0)
    for _, _, end in bounds[:-1]:
        ax.axhline(end - 0.5, color="black", linewidth=0.8)
    ax.set_yticks([(b + e) / 2 for _, b, e in bounds])
    ax.set_yticklabels([f"{g} (n={e - b})" for g, b, e in bounds], fontsize=6.5)
    ax.set_xlabel("chromosome")
    if title:
        ax.set_title(title)
    fig.colorbar(image, ax=ax, fraction=0.025, pad=0.01, label="inferred CNV (log ratio)")
    return fig


def cnv_figure(
    stored: ad.AnnData, *, title: str = "", rng: RNGLike = 0, names: DisplayNames | None = None
) -> Figure:
    """:func:`cnv_heatmap` of stored profiles, or a figure that says why there are none.

    Parameters
    ----------
    stored
        :func:`cnv_to_anndata` output.
    title
        Figure title (the note is added below it).
    rng
        Seed of the heatmap's row subsample.
    names
        Display names; a simulated dataset (``title`` is its id) is flagged in the title.

    Returns
    -------
    The figure.
    """
    title = (names or DisplayNames()).title(title, datasets=[title])
    cnv, groups, note = cnv_from_anndata(stored)
    if cnv is None:
        return message_figure(note or "No copy-number profiles.", title=title)
    full_title = f"{title}\n{note}" if title and note else (title or note)
    return cnv_heatmap(cnv, groups=groups, rng=rng, title=full_title)


def umap_figure(
    coords: pd.DataFrame, *, title: str = "", names: DisplayNames | None = None
) -> Figure:
    """UMAP coloured by cell type (left) and by patient (right).

    Colours are the figure standard's (Okabe-Ito, then distinct further colours: no two
    patients share one); "other" cells are grey. Without coordinates (no cell, or data too
    small to embed: :func:`umap_coordinates` writes NaN and a ``note``) the figure says why
    instead.
    """
    names = names or DisplayNames()
    title = names.title(title, datasets=[title])  # the title is the dataset's id
    finite = coords[["UMAP1", "UMAP2"]].notna().all(axis=1) if len(coords) else []
    if not len(coords) or not finite.any():
        notes = coords["note"].dropna().astype(str).unique() if "note" in coords else []
        note = notes[0] if len(notes) else "no UMAP: no cell passed QC"
        return message_figure(f"{note}.", title=f"{title} UMAP".strip())
    coords = coords[finite]
    fig, axes = new_figure("double", 85, ncols=2)
    for ax, column in zip(axes, ["cell_type", "patient"], strict=True):
        values = coords[column].astype(str)
        order = (
            [c for c in CELL_TYPES if c in set(values)]
            if column == "cell_type"
            else sorted(set(values))
        )
        colours = categorical_colours(order, neutral=["other"] if column == "cell_type" else [])
        shown = names.cell_type if column == "cell_type" else str
        # draw in a shuffled but fixed order so no group hides another
        idx = np.random.default_rng(0).permutation(len(coords))
        ax.scatter(
            coords["UMAP1"].to_numpy()[idx],
            coords["UMAP2"].to_numpy()[idx],
            c=[colours[v] for v in values.to_numpy()[idx]],
            s=0.8,
            linewidths=0,
            rasterized=True,
        )
        handles = [
            plt.Line2D([], [], marker="o", ms=3, ls="", color=colours[v], label=shown(v))
            for v in order
        ]
        ax.legend(
            handles=handles,
            loc="upper center",
            bbox_to_anchor=(0.5, -0.08),
            fontsize=6,
            ncol=4 if column == "cell_type" else 6,
            handletextpad=0.1,
            columnspacing=0.6,
        )
        ax.set_title(f"{title} by {column.replace('_', ' ')}".strip())
        ax.set_xlabel("UMAP1")
        ax.set_ylabel("UMAP2")
        ax.set_xticks([])
        ax.set_yticks([])
    return fig
