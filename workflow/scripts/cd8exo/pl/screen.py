"""Figures of the tumour-side screen."""

from __future__ import annotations

import logging
import math
from typing import TYPE_CHECKING, NamedTuple

import numpy as np
import pandas as pd

from cd8exo.pl.names import DisplayNames
from cd8exo.pl.style import new_figure

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.collections import PathCollection
    from matplotlib.figure import Figure
logger = logging.getLogger(__name__)

__all__ = ["top_programs_figure"]


class _Dots(NamedTuple):
    """NES and FDR of the shown programs (rows, by mean NES, up on top) x the signatures."""

    nes: pd.DataFrame
    q: pd.DataFrame


def _top_terms(enrichment: pd.DataFrame, *, n: int) -> tuple[list, list]:
    """The signatures, and the union of their ``n`` gene sets of smallest FDR, then |NES|."""
    signatures = list(dict.fromkeys(enrichment["signature"])) if len(enrichment) else []
    chosen = (
        enrichment.assign(_abs_nes=-enrichment["nes"].abs())
        .sort_values(["fdr_q_value", "_abs_nes", "term"], kind="stable")
        .groupby("signature", sort=False)
        .head(n)
        if len(enrichment)
        else enrichment
    )
    terms = list(dict.fromkeys(chosen["term"])) if len(chosen) else []
    return signatures, terms


def _nothing_tested(ax: Axes, *, title: str) -> None:
    """Say in place of the dots that no gene set was tested."""
    ax.text(
        0.5,
        0.5,
        "no gene set tested\n(none had screen.min_size-max_size genes in the ranked list)",
        ha="center",
        va="center",
        fontsize=7,
        transform=ax.transAxes,
    )
    ax.set_axis_off()
    if title:
        ax.set_title(title)


def _dots(enrichment: pd.DataFrame, *, terms: list, signatures: list) -> _Dots:
    """The programs x signatures NES and FDR tables, programs up with the sender on top."""
    shown = enrichment[enrichment["term"].isin(terms)]
    nes, q = (
        shown.pivot_table(index="term", columns="signature", values=column, aggfunc="first")
        .reindex(index=terms, columns=signatures)
        .astype(float)
        for column in ("nes", "fdr_q_value")
    )
    order = nes.mean(axis=1).sort_values(ascending=True, kind="stable").index  # up on top
    return _Dots(nes.loc[order], q.loc[order])


def _scatter(ax: Axes, dots: _Dots, *, floor: float, fdr: float) -> PathCollection:
    """One dot per tested (program, signature): colour NES, area -log10(FDR), edge FDR < fdr."""
    nes, q = dots
    strength = -np.log10(np.clip(q.to_numpy(float), floor, 1.0))
    size = 6 + 60 * strength / max(-math.log10(floor), 1e-9)
    limit = max(float(np.nanmax(np.abs(nes.to_numpy(float)))), 1.0)
    yy, xx = np.meshgrid(np.arange(nes.shape[0]), np.arange(nes.shape[1]), indexing="ij")
    tested = np.isfinite(nes.to_numpy(float))
    significant = tested & (np.nan_to_num(q.to_numpy(float), nan=1.0) < fdr)
    return ax.scatter(
        xx[tested],
        yy[tested],
        c=nes.to_numpy(float)[tested],
        s=np.nan_to_num(size)[tested],
        cmap="RdBu_r",
        vmin=-limit,
        vmax=limit,
        edgecolors=np.where(significant[tested], "black", "none"),
        linewidths=1.0,
    )


def _label_axes(ax: Axes, *, signatures: list, programs: pd.Index, names: DisplayNames) -> None:
    """Signatures along x, programs along y (display names), a light grid behind the dots."""
    ax.set_xticks(
        range(len(signatures)),
        [names.signature(s) for s in signatures],
        rotation=45,
        ha="right",
        fontsize=6.5,
    )
    ax.set_yticks(range(len(programs)), [names.signature(p) for p in programs], fontsize=6)
    ax.set_xlim(-0.6, len(signatures) - 0.4)
    ax.set_ylim(-0.6, len(programs) - 0.4)
    ax.grid(True, lw=0.3, alpha=0.5)
    ax.set_axisbelow(True)


def _size_legend(ax: Axes, *, floor: float, fdr: float) -> None:
    """Dot areas of FDR 0.1 and 0.01 (those above the floor), and the edge of FDR < fdr."""
    for value in (1.0, 2.0):
        if value <= -math.log10(floor):
            ax.scatter(
                [],
                [],
                s=6 + 60 * value / -math.log10(floor),
                color="grey",
                label=f"FDR {10**-value:g}",
            )
    ax.scatter([], [], s=20, facecolor="white", edgecolor="black", label=f"FDR < {fdr:g}")
    ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), fontsize=6, frameon=False)


def top_programs_figure(
    enrichment: pd.DataFrame,
    *,
    n: int = 10,
    fdr: float = 0.25,
    title: str = "",
    names: DisplayNames | None = None,
    ax: Axes | None = None,
) -> Figure:
    """Dot plot of the top enriched programs of every signature.

    For each signature its ``n`` gene sets with the smallest FDR (then the largest
    ``|NES|``) are chosen; the rows are the union of these, ordered by their mean NES
    (programs up with the sender state on top), the columns the signatures. Colour is
    the NES (red: higher in patients with a higher score), dot area grows with
    ``-log10(FDR)``, and a black edge marks FDR < ``fdr`` (0.25 is GSEA's convention).

    Parameters
    ----------
    enrichment
        From :func:`prerank`.
    n
        Gene sets per signature.
    fdr
        FDR marked with a black edge.
    title
        Figure title.
    names
        Display names of signatures and gene sets (``HALLMARK_`` dropped).
    ax
        Axes to draw on (default: a new figure sized to the table).

    Returns
    -------
    The figure; with no tested gene set it says so in place of the dots.
    """

    if n < 1:
        msg = f"n must be >= 1, got {n}."
        raise ValueError(msg)
    names = names or DisplayNames()
    signatures, terms = _top_terms(enrichment, n=n)
    if ax is None:
        fig, ax = new_figure("double", 45 + 3.6 * max(len(terms), 4))
    else:
        fig = ax.figure
    if not terms:
        _nothing_tested(ax, title=title)
        return fig

    dots = _dots(enrichment, terms=terms, signatures=signatures)
    # p values of 0 mean < 1/permutations: floor them there for the dot size
    floor = 1.0 / float(enrichment["permutations"].max()) if "permutations" in enrichment else 1e-3
    points = _scatter(ax, dots, floor=floor, fdr=fdr)
    _label_axes(ax, signatures=signatures, programs=dots.nes.index, names=names)
    fig.colorbar(points, ax=ax, label="NES (red: up with the CD8 score)", shrink=0.6)
    _size_legend(ax, floor=floor, fdr=fdr)
    ax.set_title(title or f"top {n} gene sets per signature (preranked GSEA)")
    return fig
