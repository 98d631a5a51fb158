"""Figures: the one place that saves them (save_figure) and the shared colours."""

from __future__ import annotations

import matplotlib as mpl
import matplotlib.pyplot as plt
import pandas as pd
from matplotlib.figure import Figure

__all__ = ["save_figure"]

mpl.use("Agg")


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
