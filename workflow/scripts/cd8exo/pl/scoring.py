"""Figures of sender scores and of the agreement of scoring methods."""

from __future__ import annotations

import itertools
import logging
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from cd8exo.pl import message_figure
from cd8exo.pl.names import DisplayNames
from cd8exo.pl.style import GREY, INK, new_figure

if TYPE_CHECKING:
    from matplotlib.figure import Figure

logger = logging.getLogger(__name__)

__all__ = ["concordance_figure", "sender_scores_figure"]


def concordance_figure(
    table: pd.DataFrame, *, title: str = "", names: DisplayNames | None = None
) -> Figure:
    """Heatmaps of the Spearman correlations between methods, per cell and per patient.

    Parameters
    ----------
    table
        From :func:`concordance_table`.
    title
        Figure title (e.g. the dataset).

    Returns
    -------
    The figure: one panel per level, signatures as rows, pairs of methods as columns.
    """
    names = names or DisplayNames()
    title = names.title(title, datasets=[title])  # the title is the dataset's id
    if table.empty:
        return message_figure(
            "No signature was scored in this dataset: no scoring methods to compare.", title=title
        )
    levels = [level for level in ("cell", "patient") if (table["level"] == level).any()]
    signatures = list(dict.fromkeys(table["signature"]))
    widths = [
        max(
            2,
            table.loc[table["level"] == level, ["method_a", "method_b"]].drop_duplicates().shape[0],
        )
        for level in levels
    ] or [1]
    fig, axes = new_figure(
        "double",
        45 + 9 * len(signatures),
        ncols=max(1, len(levels)),
        gridspec_kw={"width_ratios": widths},
        squeeze=False,
    )
    image = None
    for ax, level in zip(axes[0], levels, strict=False):
        rows = table[table["level"] == level]
        pairs = list(dict.fromkeys(zip(rows["method_a"], rows["method_b"], strict=True)))
        grid = np.full((len(signatures), len(pairs)), np.nan)
        for row in rows.itertuples():
            grid[signatures.index(row.signature), pairs.index((row.method_a, row.method_b))] = (
                row.spearman
            )
        image = ax.imshow(grid, cmap="RdBu_r", vmin=-1, vmax=1, aspect="auto")
        for i, j in itertools.product(range(grid.shape[0]), range(grid.shape[1])):
            text = "NA" if np.isnan(grid[i, j]) else f"{grid[i, j]:.2f}"
            dark = not np.isnan(grid[i, j]) and abs(grid[i, j]) > 0.6
            ax.text(
                j, i, text, ha="center", va="center", fontsize=6, color="white" if dark else "black"
            )
        ax.set_xticks(range(len(pairs)), [f"{a}\nvs {b}" for a, b in pairs], fontsize=6)
        ax.set_yticks(
            range(len(signatures)),
            [names.signature(s) for s in signatures] if ax is axes[0][0] else [],
        )
        n = int(rows["n"].max()) if len(rows) else 0
        unit = "CD8 T cells" if level == "cell" else "patients"
        ax.set_title(f"per {level} (Spearman, up to {n} {unit})")
    if image is not None:
        fig.colorbar(image, ax=axes[0].tolist(), shrink=0.8, label="Spearman rho")
    if title:
        fig.suptitle(title)
    return fig


def _boxes(ax, data: list[np.ndarray], kept: list[bool], *, rng: np.random.Generator) -> None:
    """One box per patient (no fliers) with every cell as a jittered point on top."""
    box = ax.boxplot(
        data,
        patch_artist=True,
        showfliers=False,
        widths=0.6,
        medianprops={"color": "black", "lw": 0.8},
        whiskerprops={"lw": 0.6},
        capprops={"lw": 0.6},
    )
    for patch, keep in zip(box["boxes"], kept, strict=True):
        patch.set_facecolor(INK if keep else GREY)
        patch.set_alpha(0.35)
        patch.set_linewidth(0.6)
    for i, (values, keep) in enumerate(zip(data, kept, strict=True), start=1):
        jitter = rng.uniform(-0.22, 0.22, size=len(values))
        ax.scatter(
            i + jitter,
            values,
            s=0.6,
            color=INK if keep else GREY,
            linewidths=0,
            alpha=0.6,
            rasterized=True,
            zorder=3,
        )


def sender_scores_figure(
    scores: pd.DataFrame,
    *,
    signatures: list[str],
    included: set[str] | None = None,
    title: str = "",
    names: DisplayNames | None = None,
) -> Figure:
    """Per-cell signature scores in CD8 T cells, one box per patient, one panel per signature.

    Every cell is a point over its patient's box, and each patient's tick label gives its
    number of CD8 T cells. Patients are ordered by their mean score of the first signature;
    excluded patients (too few cells) are drawn in grey. Without a scored signature or
    without a CD8 T cell the figure says so instead.
    """
    names = names or DisplayNames()
    title = names.title(title, datasets=[title])  # the title is the dataset's id
    if not signatures or scores.empty:
        why = (
            "no signature could be scored in this dataset (see its coverage table)"
            if not signatures
            else "no CD8 T cells in this dataset"
        )
        return message_figure(f"No CD8 T-cell scores to show: {why}.", title=title)
    n = len(signatures)
    fig, axes = new_figure("double", 35 + 45 * n, nrows=n, squeeze=False, sharex=True)
    order = (
        scores.groupby("patient", observed=True)[signatures[0]].mean().sort_values().index.tolist()
    )
    counts = scores["patient"].value_counts()
    kept = [included is None or patient in included for patient in order]
    for ax, signature in zip(axes[:, 0], signatures, strict=True):
        data = [scores.loc[scores["patient"] == p, signature].to_numpy() for p in order]
        _boxes(ax, data, kept, rng=np.random.default_rng(0))
        ax.set_title(names.signature(signature), loc="left")
        ax.set_ylabel("score per CD8+ T cell")
    axes[-1, 0].set_xticks(
        range(1, len(order) + 1),
        [f"{p} ({int(counts.get(p, 0))})" for p in order],
        rotation=90,
        fontsize=6,
    )
    axes[-1, 0].set_xlabel(
        "patient (n CD8+ T cells); grey: excluded (too few cells); one point per cell"
    )
    if title:
        fig.suptitle(title)
    return fig
