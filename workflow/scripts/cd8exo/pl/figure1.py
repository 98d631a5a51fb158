"""Figure 1, the main figure: the primary association per dataset, pooled, beside its controls."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from cd8exo.pl import message_figure
from cd8exo.pl.associations import association_scatter, number, p_text
from cd8exo.pl.names import ROLE_LABELS, DisplayNames
from cd8exo.pl.style import ACCENT, GREY, INK, OKABE_ITO, new_figure
from cd8exo.stats.key_results import POOLED

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = ["figure1"]

_ROLE_COLOURS = {
    "mirna_target": ACCENT,
    "positive_control": OKABE_ITO[2],
    "negative_control": GREY,
}
_MAX_SCATTERS = 3


def _panel_letter(ax: Axes, letter: str) -> None:
    ax.text(
        -0.02,
        1.02,
        letter,
        transform=ax.transAxes,
        fontsize=8,
        weight="bold",
        ha="right",
        va="bottom",
    )


def _estimates(ax: Axes, rows: pd.DataFrame, *, names: DisplayNames) -> None:
    """Pooled rho (diamond) and each dataset's rho (dots) with CIs, one line per target."""
    targets = list(dict.fromkeys(rows["target"]))
    datasets = [d for d in dict.fromkeys(rows["dataset"]) if d != POOLED]
    marker = dict(zip(datasets, "os^vDP", strict=False))
    y_of = {t: len(targets) - i for i, t in enumerate(targets)}
    for row in rows.itertuples():
        if not np.isfinite(row.rho):
            continue
        y = y_of[row.target]
        colour = _ROLE_COLOURS.get(row.role, INK)
        pooled = row.dataset == POOLED
        shift = 0.0 if pooled else 0.18 * (datasets.index(row.dataset) + 1)
        ax.plot([row.ci_low, row.ci_high], [y + shift] * 2, color=colour, lw=1.4 if pooled else 0.6)
        ax.scatter(
            row.rho,
            y + shift,
            marker="D" if pooled else marker.get(row.dataset, "o"),
            s=22 if pooled else 8,
            color=colour,
            zorder=3,
        )
        if pooled:
            ax.text(
                1.02,
                y,
                f"{number(row.rho)} [{number(row.ci_low)}, {number(row.ci_high)}], q = {p_text(row.q_value)}",
                transform=ax.get_yaxis_transform(),
                fontsize=6,
                va="center",
            )
    role_of = rows.drop_duplicates("target").set_index("target")["role"]
    ax.set_yticks(
        list(y_of.values()),
        [f"{names.gene(t)} ({ROLE_LABELS.get(role_of[t], role_of[t])})" for t in targets],
    )
    for label, target in zip(ax.get_yticklabels(), targets, strict=True):
        label.set_color(_ROLE_COLOURS.get(role_of[target], "black"))
    ax.axvline(0, color=GREY, lw=0.6, ls=":")
    ax.set_xlim(-1, 1)
    ax.set_ylim(0.4, len(targets) + 0.9)
    ax.set_xlabel(
        "Spearman \u03c1 across patients (diamond: pooled, DerSimonian-Laird; "
        "small markers: datasets, 95% bootstrap CI)"
    )
    handles = [
        ax.scatter([], [], marker=marker[d], s=8, color="black", label=names.dataset(d))
        for d in datasets
    ]
    if handles:
        ax.legend(
            handles=handles,
            loc="lower right",
            bbox_to_anchor=(1.0, 1.0),
            ncol=len(handles),
            fontsize=6,
        )


def figure1(
    key: pd.DataFrame,
    patients: dict[str, tuple[pd.DataFrame, pd.DataFrame]],
    *,
    signature: str,
    names: DisplayNames | None = None,
) -> Figure:
    """The main figure: (a-c) the primary target's patient scatter in each dataset (at most
    three), (last panel) pooled and per-dataset rho of the primary signature against the
    primary target(s) and the positive and negative controls.

    Parameters
    ----------
    key
        :func:`cd8exo.stats.key_results.key_results_table`.
    patients
        ``dataset -> (sender, receiver)`` patient tables
        (:func:`cd8exo.patients.table.split_patient_table`).
    signature
        The sender signature shown.
    names
        Display names; simulated datasets are flagged in the figure's title.
    """
    names = names or DisplayNames()
    rows = key[key["signature"] == signature]
    primary = rows[(rows["role"] == "mirna_target") & (rows["dataset"] != POOLED)]
    tested = primary[primary["rho"].notna() & primary["dataset"].isin(list(patients))]
    datasets = [d for d in dict.fromkeys(key["dataset"]) if d != POOLED]
    title = names.title(
        f"{names.signature(signature)} in CD8+ T cells vs exosome-cargo targets in malignant cells",
        datasets=datasets,
    )
    if rows.empty or rows["rho"].isna().all():
        return message_figure(
            "No key result was tested: no dataset has a rho for the primary signature.",
            title=title,
            width="double",
        )
    scatters = tested.head(_MAX_SCATTERS)
    fig = new_figure("double", 150)[0]
    fig.clear()
    grid = fig.add_gridspec(2, max(len(scatters), 1), height_ratios=[1.0, 0.9])
    letters = iter("abcdefgh")
    for i, row in enumerate(scatters.itertuples()):
        ax = fig.add_subplot(grid[0, i])
        sender, receiver = patients[row.dataset]
        association_scatter(
            sender[signature],
            receiver[row.target],
            signature=signature,
            target=row.target,
            rho=row.rho,
            q_value=row.perm_q_value if np.isfinite(row.perm_q_value) else row.q_value,
            q_label="permutation q" if np.isfinite(row.perm_q_value) else "q",
            ci=(row.ci_low, row.ci_high),
            dataset=row.dataset,
            names=names,
            label_patients=False,
            ax=ax,
        )
        _panel_letter(ax, next(letters))
    ax = fig.add_subplot(grid[1, :])
    _estimates(ax, rows, names=names)
    _panel_letter(ax, next(letters))
    fig.suptitle(title)
    return fig
