"""Figures: the one place that saves them (save_figure) and the shared colours."""

from __future__ import annotations

import os
from pathlib import Path

import matplotlib as mpl
import matplotlib.pyplot as plt
import pandas as pd
from matplotlib.figure import Figure

from cd8exo._utils import file_name_problem
from cd8exo.errors import InputError

__all__ = ["message_figure", "pair_figure_path", "save_figure"]

mpl.use("Agg")


def save_figure(fig: Figure, path: str) -> None:
    """Write a PNG atomically (temporary name, then rename) and close the figure."""
    tmp = f"{path}.tmp.png"
    fig.savefig(tmp, dpi=150, bbox_inches="tight")
    plt.close(fig)
    os.replace(tmp, path)


def _categorical_colours(values: pd.Series, order: list[str]) -> dict[str, tuple]:
    cmap = plt.get_cmap("tab20" if len(order) > 10 else "tab10")
    return {v: cmap(i % cmap.N) for i, v in enumerate(order)}


def message_figure(
    text: str, *, title: str = "", size: tuple[float, float] = (8.0, 2.0), ax=None
) -> Figure:
    """A figure that says, in words, why there is nothing to draw (it never stops a run).

    On ``ax`` when given (its figure is returned), else on a new figure of ``size``.
    """
    if ax is None:
        fig, ax = plt.subplots(figsize=size)
    else:
        fig = ax.figure
    ax.axis("off")
    ax.text(0.5, 0.5, text, ha="center", va="center", wrap=True, fontsize=9)
    if title:
        ax.set_title(title, fontsize=10)
    return fig


def pair_figure_path(folder: str | Path, signature: str, target: str) -> str:
    """``<folder>/<signature>__<target>.png``, refusing names that would leave ``folder``.

    Only signature and target names ever become part of a figure's path (patient ids
    never do); the configuration's start-up check refuses such names already.
    """
    for what, name in (("signature", signature), ("target", target)):
        problem = file_name_problem(str(name))
        if problem:
            msg = f"the {what} name {name!r} cannot name a figure file ({problem}); rename it."
            raise InputError(msg)
    return str(Path(folder) / f"{signature}__{target}.png")
