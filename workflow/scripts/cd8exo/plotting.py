"""Figures of the report. Every function takes ``ax=None`` (or draws its own grid) and returns the figure."""

from __future__ import annotations

import math

import matplotlib as mpl

mpl.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from cd8exo.vocabulary import CELL_TYPES

__all__ = [
    "association_scatter",
    "rho_heatmap",
    "save_figure",
    "sender_scores_figure",
    "umap_figure",
]


def save_figure(fig: Figure, path: str) -> None:
    """Write a PNG atomically (temporary name, then rename) and close the figure."""
    import os

    tmp = f"{path}.tmp.png"
    fig.savefig(tmp, dpi=150, bbox_inches="tight")
    plt.close(fig)
    os.replace(tmp, path)


def _categorical_colours(values: pd.Series, order: list[str]) -> dict[str, tuple]:
    cmap = plt.get_cmap("tab20" if len(order) > 10 else "tab10")
    return {v: cmap(i % cmap.N) for i, v in enumerate(order)}


def umap_figure(coords: pd.DataFrame, *, title: str = "") -> Figure:
    """UMAP coloured by cell type (left) and by patient (right)."""
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


def sender_scores_figure(
    scores: pd.DataFrame,
    *,
    signatures: list[str],
    included: set[str] | None = None,
    title: str = "",
) -> Figure:
    """Per-cell signature scores in CD8 T cells, one box per patient, one panel per signature.

    Patients are ordered by their mean score of the first signature; excluded patients
    (too few cells) are drawn in grey.
    """
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


def association_scatter(
    x: pd.Series,
    y: pd.Series,
    *,
    signature: str,
    target: str,
    rho: float,
    q_value: float,
    ci: tuple[float, float] | None = None,
    ax=None,
) -> Figure:
    """Patient-level scatter of a sender score against a target's pseudobulk, with a least-squares line."""
    if ax is None:
        fig, ax = plt.subplots(figsize=(4.2, 3.8))
    else:
        fig = ax.figure
    ok = x.notna() & y.notna()
    ax.scatter(x[ok], y[ok], s=28, color="#4c72b0", edgecolor="white", linewidth=0.5, zorder=3)
    for patient in x.index[ok]:
        ax.annotate(
            str(patient),
            (x[patient], y[patient]),
            fontsize=5,
            alpha=0.6,
            xytext=(2, 2),
            textcoords="offset points",
        )
    if ok.sum() >= 2 and np.ptp(x[ok]) > 0:
        slope, intercept = np.polyfit(x[ok].to_numpy(float), y[ok].to_numpy(float), 1)
        grid = np.linspace(x[ok].min(), x[ok].max(), 50)
        ax.plot(grid, intercept + slope * grid, color="#c44e52", lw=1.5, zorder=2)
    ax.set_xlabel(f"{signature}\n(mean score in CD8 T cells)", fontsize=8)
    ax.set_ylabel(f"{target} in malignant cells\n(pseudobulk log2 CPM+1)", fontsize=8)
    interval = f" [{ci[0]:.2f}, {ci[1]:.2f}]" if ci is not None and np.isfinite(ci).all() else ""
    ax.set_title(
        f"Spearman rho = {rho:.2f}{interval}, q = {q_value:.2g}, n = {int(ok.sum())}", fontsize=8
    )
    fig.tight_layout()
    return fig


def rho_heatmap(table: pd.DataFrame, *, fdr: float = 0.05, title: str = "", ax=None) -> Figure:
    """Spearman rho, signatures x targets, with ``*`` where q < ``fdr``."""
    rho = table.pivot(index="signature", columns="target", values="rho")
    q = table.pivot(index="signature", columns="target", values="q_value").reindex_like(rho)
    if ax is None:
        fig, ax = plt.subplots(figsize=(1.0 + 0.55 * rho.shape[1], 1.5 + 0.45 * rho.shape[0]))
    else:
        fig = ax.figure
    image = ax.imshow(rho.to_numpy(float), cmap="RdBu_r", vmin=-1, vmax=1, aspect="auto")
    ax.set_xticks(range(rho.shape[1]), rho.columns, rotation=60, ha="right", fontsize=8)
    ax.set_yticks(range(rho.shape[0]), rho.index, fontsize=8)
    for i in range(rho.shape[0]):
        for j in range(rho.shape[1]):
            value = rho.iat[i, j]
            if np.isnan(value):
                ax.text(j, i, "NA", ha="center", va="center", fontsize=6, color="grey")
                continue
            star = "*" if q.iat[i, j] < fdr else ""
            ax.text(
                j,
                i,
                f"{value:.2f}{star}",
                ha="center",
                va="center",
                fontsize=6,
                color="white" if abs(value) > 0.6 else "black",
            )
    fig.colorbar(image, ax=ax, label="Spearman rho across patients", shrink=0.8)
    ax.set_title(title or f"* q < {fdr}", fontsize=9)
    fig.tight_layout()
    return fig
