"""Figures of sender scores and of the agreement of scoring methods."""

from __future__ import annotations

import itertools
import logging
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

if TYPE_CHECKING:
    from matplotlib.figure import Figure
import math

import matplotlib.pyplot as plt
from matplotlib.figure import Figure

from cd8exo.pl import message_figure

logger = logging.getLogger(__name__)

__all__ = ["concordance_figure", "sender_scores_figure"]


def concordance_figure(table: pd.DataFrame, *, title: str = "") -> Figure:
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
    import matplotlib as mpl

    mpl.use("Agg")
    import matplotlib.pyplot as plt

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
    fig, axes = plt.subplots(
        1,
        max(1, len(levels)),
        figsize=(1.1 * sum(widths) + 3.5, 0.5 * len(signatures) + 2.2),
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
                j, i, text, ha="center", va="center", fontsize=8, color="white" if dark else "black"
            )
        ax.set_xticks(range(len(pairs)), [f"{a}\nvs {b}" for a, b in pairs], fontsize=8)
        ax.set_yticks(range(len(signatures)), signatures if ax is axes[0][0] else [], fontsize=8)
        n = int(rows["n"].max()) if len(rows) else 0
        unit = "CD8 T cells" if level == "cell" else "patients"
        ax.set_title(f"per {level} (Spearman, up to {n} {unit})", fontsize=9)
    if image is not None:
        fig.colorbar(image, ax=axes[0].tolist(), shrink=0.8, label="Spearman rho")
    if title:
        fig.suptitle(title)
    return fig


def sender_scores_figure(
    scores: pd.DataFrame,
    *,
    signatures: list[str],
    included: set[str] | None = None,
    title: str = "",
) -> Figure:
    """Per-cell signature scores in CD8 T cells, one box per patient, one panel per signature.

    Patients are ordered by their mean score of the first signature; excluded patients
    (too few cells) are drawn in grey. Without a scored signature or without a CD8 T
    cell the figure says so instead.
    """
    if not signatures or scores.empty:
        why = (
            "no signature could be scored in this dataset (see its coverage table)"
            if not signatures
            else "no CD8 T cells in this dataset"
        )
        return message_figure(f"No CD8 T-cell scores to show: {why}.", title=title)
    n = len(signatures)
    ncols = min(2, n)
    nrows = math.ceil(n / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(7 * ncols, 3.2 * nrows), squeeze=False)
    order = (
        scores.groupby("patient", observed=True)[signatures[0]].mean().sort_values().index.tolist()
    )
    for ax, signature in zip(axes.flat, signatures, strict=False):
        data = [scores.loc[scores["patient"] == p, signature].to_numpy() for p in order]
        box = ax.boxplot(data, patch_artist=True, showfliers=False, widths=0.6)
        for patch, patient in zip(box["boxes"], order, strict=True):
            kept = included is None or patient in included
            patch.set_facecolor("#4c72b0" if kept else "#bbbbbb")
            patch.set_alpha(0.7)
        ax.set_xticks(range(1, len(order) + 1), order, rotation=90, fontsize=7)
        ax.set_title(signature, fontsize=9)
        ax.set_ylabel("score (CD8 T cells)")
    for ax in list(axes.flat)[n:]:
        ax.set_visible(False)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig
