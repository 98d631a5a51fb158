"""Figures of the target sets: per cargo miRNA the patient-level scatters, and the rho heatmap.

Both follow the figure standard (:mod:`cd8exo.pl.style`): drawn at two-column width, display
names for signatures, target sets (``miR-765 targets (miRDB, predicted)``) and italic genes,
"SIMULATED" in the title of a simulated dataset's figure.
"""

from __future__ import annotations

import logging
import textwrap
import warnings

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from cd8exo.pl import message_figure
from cd8exo.pl.associations import association_scatter, number, p_text
from cd8exo.pl.names import DisplayNames, set_source_label, target_set_label
from cd8exo.pl.style import GREY, new_figure

logger = logging.getLogger(__name__)

__all__ = ["mirna_panel", "set_heatmap"]

_PLAIN = DisplayNames()
#: Characters of a footnote line at two-column width, 6.5 pt.
_FOOTNOTE_WIDTH = 150


def _note(row: pd.Series | None) -> str:
    if row is None:
        return "no association row"
    note = row.get("note", "")
    return str(note) if pd.notna(note) and str(note) else "no rho"


def _not_tested(ax, row: pd.Series | None, *, title: str) -> None:
    """The panel of an untested pair says why, wrapped to the panel's width."""
    ax.axis("off")
    text = textwrap.fill(f"Not tested: {_note(row)}", width=34)
    ax.text(0.5, 0.5, text, ha="center", va="center", fontsize=6, transform=ax.transAxes)
    ax.set_title(title, fontsize=6.5, loc="left")


def _scatter(
    ax,
    row: pd.Series | None,
    x: pd.Series,
    y: pd.Series | None,
    *,
    ylabel: str,
    names: DisplayNames,
) -> None:
    """One patient-level scatter on ``ax`` (or why there is none)."""
    if row is None or y is None or pd.isna(row["rho"]) or x.empty:
        _not_tested(ax, row, title=ylabel.split("\n")[0])
        return
    use_perm = pd.notna(row.get("perm_q_value", np.nan))
    with warnings.catch_warnings():
        # constrained layout warns while the grid is half drawn; it is laid out once at the end
        warnings.simplefilter("ignore", UserWarning)
        association_scatter(
            x,
            y,
            signature=str(row["signature"]),
            target=str(row["target"]),
            rho=float(row["rho"]),
            q_value=float(row["perm_q_value"] if use_perm else row["q_value"]),
            q_label="permutation q" if use_perm else "q",
            ci=(float(row["ci_low"]), float(row["ci_high"])),
            names=names,
            label_patients=False,
            ax=ax,
        )
    ax.set_ylabel(ylabel)
    if pd.notna(row.get("set_specificity_p", np.nan)):
        title = ax.get_title(loc="left")
        ax.set_title(f"{title}\nset-specificity p = {p_text(row['set_specificity_p'])}", loc="left")


def _columns(rows: pd.DataFrame) -> tuple[list[str], list[str]]:
    """The target sets tested for some signature, and the notes of those tested for none."""
    columns, untested = [], []
    for target, group in rows.groupby("target", sort=False):
        if group["rho"].notna().any():
            columns.append(str(target))
        else:
            untested.append(f"{target_set_label(target)}: {_note(group.iloc[0])}")
    return columns, untested


def mirna_panel(
    mirna: str,
    *,
    sets: pd.DataFrame,
    genes: pd.DataFrame,
    sender: pd.DataFrame,
    set_scores: pd.DataFrame,
    expression: pd.DataFrame,
    dataset: str = "",
    names: DisplayNames | None = None,
) -> Figure:
    """Per cargo miRNA: sender score against each of its target sets' score, patient by
    patient, and against its single validated target gene beside them.

    Parameters
    ----------
    mirna
        The cargo miRNA.
    sets
        The set-level association rows of one dataset (``mirna``, ``signature``,
        ``target``, ``rho``, ``perm_q_value`` or ``q_value``, ``ci_low``, ``ci_high``,
        ``set_specificity_p``, ``note``); the miRNA's sets tested for some signature make
        the columns of the grid, the others are listed below it with the reason.
    genes
        The single genes' association rows of the miRNA's validated target(s) (may be
        empty: then the grid has no gene column).
    sender, set_scores, expression
        Included patients x signatures, x target sets, x target genes.
    dataset
        The dataset (its name heads the title; "SIMULATED" when the sheet says so).
    names
        Display names (signatures, genes, simulated datasets).

    Returns
    -------
    A two-column-wide grid, one row per sender signature, one column per tested target set
    then per gene.
    """
    names = names or _PLAIN
    rows = sets[sets["mirna"].astype(str) == mirna]
    columns, untested = _columns(rows)
    gene_columns = list(dict.fromkeys(genes["target"].astype(str))) if len(genes) else []
    signatures = list(dict.fromkeys(rows["signature"].astype(str)))
    title = names.title(
        f"{dataset}: {mirna} target sets and validated target" if dataset else mirna,
        datasets=[dataset],
    )
    footnote = "\n".join(
        textwrap.fill(f"Not tested: {line}", width=_FOOTNOTE_WIDTH) for line in untested
    )
    if not (columns or gene_columns) or not signatures:
        text = f"{mirna}: no target set was tested." + (f"\n{footnote}" if footnote else "")
        return message_figure(text, title=title, width="double", height_mm=35 + 4 * len(untested))
    n_cols = len(columns) + len(gene_columns)
    fig, axes = new_figure(
        "double",
        20 + 52 * len(signatures) + 6 * len(untested),
        nrows=len(signatures),
        ncols=n_cols,
        squeeze=False,
    )
    for i, signature in enumerate(signatures):
        x = sender[signature] if signature in sender else pd.Series(dtype=float)
        for j, target in enumerate([*columns, *gene_columns]):
            is_set = j < len(columns)
            table = rows if is_set else genes
            match = table[(table["signature"] == signature) & (table["target"] == target)]
            label = (
                f"{target_set_label(target)}\n(set score, malignant cells)"
                if is_set
                else f"{names.gene(target)}, validated target\n(pseudobulk log2 CPM+1)"
            )
            _scatter(
                axes[i, j],
                match.iloc[0] if len(match) else None,
                x,
                (set_scores if is_set else expression).get(target, None),
                ylabel=label,
                names=names,
            )
    if footnote:
        fig.supxlabel(footnote, fontsize=6.5, x=0.01, ha="left")
    fig.suptitle(title)
    return fig


def _heatmap_panel(ax, rows: pd.DataFrame, *, signatures, mirnas, fdr: float, names) -> object:
    """One source's rho matrix, signatures x miRNAs, ``*`` where q < ``fdr``, NA untested."""
    rho = rows.pivot_table(index="signature", columns="mirna", values="rho", aggfunc="first")
    q = rows.pivot_table(index="signature", columns="mirna", values="q_value", aggfunc="first")
    rho = rho.reindex(index=signatures, columns=mirnas)
    q = q.reindex(index=signatures, columns=mirnas)
    image = ax.imshow(rho.to_numpy(float), cmap="RdBu_r", vmin=-1, vmax=1, aspect="auto")
    ax.set_xticks(range(len(mirnas)), mirnas, rotation=45, ha="right")
    ax.set_yticks(range(len(signatures)), [names.signature(s) for s in signatures])
    for i in range(len(signatures)):
        for j in range(len(mirnas)):
            value = rho.iat[i, j]
            if np.isnan(value):
                ax.text(j, i, "NA", ha="center", va="center", fontsize=6, color=GREY)
                continue
            star = "*" if q.iat[i, j] < fdr else ""
            colour = "white" if abs(value) > 0.6 else "black"
            ax.text(
                j, i, f"{number(value)}{star}", ha="center", va="center", fontsize=6, color=colour
            )
    for spine in ax.spines.values():
        spine.set_visible(False)
    return image


def set_heatmap(
    table: pd.DataFrame,
    *,
    fdr: float = 0.05,
    title: str = "",
    names: DisplayNames | None = None,
) -> Figure:
    """Spearman rho, sender signatures x cargo miRNAs, one panel per set source (miRDB,
    miRTarBase all, strong) stacked at two-column width; ``*`` where q < ``fdr`` (set-level
    family), NA where the set was not tested (skipped: its note says why)."""
    names = names or _PLAIN
    datasets = table["dataset"].unique() if "dataset" in table else []
    title = names.title(title or f"target sets: * q < {fdr}", datasets=datasets)
    if table.empty:
        return message_figure(
            "No target set was tested in this dataset.", title=title, width="double"
        )
    sources = list(dict.fromkeys(table["source"].astype(str)))
    mirnas = list(dict.fromkeys(table["mirna"].astype(str)))
    signatures = list(dict.fromkeys(table["signature"].astype(str)))
    fig, axes = new_figure(
        "double",
        15 + (22 + 6 * len(signatures)) * len(sources),
        nrows=len(sources),
        ncols=1,
        squeeze=False,
    )
    image = None
    for ax, source in zip(axes[:, 0], sources, strict=True):
        rows = table[table["source"].astype(str) == source]
        image = _heatmap_panel(ax, rows, signatures=signatures, mirnas=mirnas, fdr=fdr, names=names)
        tested = int(rows["rho"].notna().sum())
        ax.set_title(f"{set_source_label(source)} ({tested} of {len(rows)} pairs tested)")
    fig.colorbar(image, ax=axes[:, 0].tolist(), label="Spearman \u03c1 across patients", shrink=0.6)
    fig.suptitle(title)
    return fig
