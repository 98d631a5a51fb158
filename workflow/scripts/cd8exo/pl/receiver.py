"""Figures of the target sets: per cargo miRNA the patient-level scatters, and the rho heatmap."""

from __future__ import annotations

import logging
import textwrap
import warnings

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from cd8exo.pl import message_figure
from cd8exo.pl.associations import association_scatter

logger = logging.getLogger(__name__)

__all__ = ["mirna_panel", "set_heatmap"]


def _not_tested(ax, row: pd.Series | None, *, title: str) -> None:
    """The panel of an untested pair says why, wrapped to the panel's width."""
    note = "" if row is None else str(row.get("note", "") or "")
    ax.axis("off")
    text = textwrap.fill(f"not tested: {note or 'no association row'}", width=45)
    ax.text(0.5, 0.5, text, ha="center", va="center", fontsize=6, transform=ax.transAxes)
    ax.set_title(textwrap.fill(title, width=50), fontsize=6)


def _scatter(ax, row: pd.Series | None, x: pd.Series, y: pd.Series | None, *, ylabel: str) -> None:
    """One patient-level scatter on ``ax`` (or why there is none)."""
    title = "" if row is None else f"{row['signature']} → {row['target']}"
    if row is None or y is None or pd.isna(row["rho"]):
        _not_tested(ax, row, title=title)
        return
    with warnings.catch_warnings():
        # it lays out the whole grid, half drawn, after each panel; the grid is laid out once
        warnings.simplefilter("ignore", UserWarning)
        association_scatter(
            x,
            y,
            signature=str(row["signature"]),
            target=str(row["target"]),
            rho=float(row["rho"]),
            q_value=float(row["q_value"]),
            ci=(float(row["ci_low"]), float(row["ci_high"])),
            ax=ax,
        )
    ax.set_ylabel(ylabel, fontsize=7)
    ax.set_xlabel(f"{row['signature']}\n(mean score in CD8 T cells)", fontsize=7)
    extra = ""
    if "set_specificity_p" in row and pd.notna(row["set_specificity_p"]):
        extra = f", set-specificity p = {row['set_specificity_p']:.2g}"
    ax.set_title(f"{ax.get_title()}{extra}", fontsize=6)


def mirna_panel(
    mirna: str,
    *,
    sets: pd.DataFrame,
    genes: pd.DataFrame,
    sender: pd.DataFrame,
    set_scores: pd.DataFrame,
    expression: pd.DataFrame,
    title: str = "",
) -> Figure:
    """Per cargo miRNA: sender score against each of its target sets' score, patient by
    patient, and against its single validated target gene beside them.

    Parameters
    ----------
    mirna
        The cargo miRNA.
    sets
        The set-level association rows of one dataset (``mirna``, ``signature``,
        ``target``, ``rho``, ``q_value``, ``ci_low``, ``ci_high``, ``set_specificity_p``,
        ``note``); the miRNA's rows make the columns of the grid.
    genes
        The single genes' association rows of the miRNA's validated target(s) (may be
        empty: then the grid has no gene column).
    sender, set_scores, expression
        Included patients x signatures, x target sets, x target genes.

    Returns
    -------
    A grid, one row per sender signature, one column per target set then per gene.
    """
    rows = sets[sets["mirna"].astype(str) == mirna]
    columns = list(dict.fromkeys(rows["target"].astype(str)))
    gene_columns = list(dict.fromkeys(genes["target"].astype(str))) if len(genes) else []
    signatures = list(dict.fromkeys(rows["signature"].astype(str)))
    if not columns or not signatures:
        return message_figure(f"{mirna}: no target set was tested.", title=title)
    n_rows, n_cols = len(signatures), len(columns) + len(gene_columns)
    fig, axes = plt.subplots(n_rows, n_cols, figsize=(4.2 * n_cols, 3.6 * n_rows), squeeze=False)
    for i, signature in enumerate(signatures):
        x = sender[signature] if signature in sender else pd.Series(dtype=float)
        for j, target in enumerate([*columns, *gene_columns]):
            is_set = j < len(columns)
            table = rows if is_set else genes
            match = table[(table["signature"] == signature) & (table["target"] == target)]
            row = match.iloc[0] if len(match) else None
            source = set_scores if is_set else expression
            y = source.get(target, None)
            label = (
                f"{target}\n(set score, mean over malignant cells)"
                if is_set
                else f"{target} (validated target)\n(pseudobulk log2 CPM+1)"
            )
            _scatter(axes[i, j], row, x, y, ylabel=label)
    fig.suptitle(title or mirna, fontsize=10)
    fig.tight_layout()
    return fig


def set_heatmap(table: pd.DataFrame, *, fdr: float = 0.05, title: str = "") -> Figure:
    """Spearman rho, sender signatures x cargo miRNAs, one panel per set source (miRDB,
    miRTarBase all, strong); ``*`` where q < ``fdr`` (set-level family), NA where the set
    was not tested (skipped: its note says why)."""
    if table.empty:
        return message_figure("No target set was tested in this dataset.", title=title)
    sources = list(dict.fromkeys(table["source"].astype(str)))
    mirnas = list(dict.fromkeys(table["mirna"].astype(str)))
    signatures = list(dict.fromkeys(table["signature"].astype(str)))
    fig, axes = plt.subplots(
        1,
        len(sources),
        figsize=(1.5 + (0.7 * len(mirnas) + 0.6) * len(sources), 1.8 + 0.45 * len(signatures)),
        squeeze=False,
    )
    image = None
    for ax, source in zip(axes[0], sources, strict=True):
        rows = table[table["source"].astype(str) == source]
        rho = rows.pivot_table(index="signature", columns="mirna", values="rho", aggfunc="first")
        q = rows.pivot_table(index="signature", columns="mirna", values="q_value", aggfunc="first")
        rho = rho.reindex(index=signatures, columns=mirnas)
        q = q.reindex(index=signatures, columns=mirnas)
        image = ax.imshow(rho.to_numpy(float), cmap="RdBu_r", vmin=-1, vmax=1, aspect="auto")
        ax.set_xticks(range(len(mirnas)), mirnas, rotation=60, ha="right", fontsize=7)
        ax.set_yticks(range(len(signatures)), signatures if ax is axes[0, 0] else [], fontsize=7)
        for i in range(len(signatures)):
            for j in range(len(mirnas)):
                value = rho.iat[i, j]
                text = "NA" if np.isnan(value) else f"{value:.2f}{'*' if q.iat[i, j] < fdr else ''}"
                colour = "grey" if np.isnan(value) else ("white" if abs(value) > 0.6 else "black")
                ax.text(j, i, text, ha="center", va="center", fontsize=6, color=colour)
        ax.set_title(source, fontsize=8)
    fig.colorbar(image, ax=axes[0].tolist(), label="Spearman rho across patients", shrink=0.8)
    fig.suptitle(title or f"target sets: * q < {fdr}", fontsize=9)
    return fig
