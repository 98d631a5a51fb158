"""The figure standard: print sizes, type sizes, fonts embedded as text, colour-blind-safe colours.

Every figure of the workflow is drawn at its print size, one journal column (89 mm) or two
(183 mm) wide, with text between :data:`MIN_FONT_PT` and :data:`MAX_FONT_PT` points at that
size, and saved by :func:`cd8exo.pl.save_figure` as PDF and SVG (text kept as text:
``pdf.fonttype`` 42 embeds TrueType fonts, ``svg.fonttype`` none writes ``<text>``) and as
a 300 dpi PNG. The font is DejaVu Sans, which ships with matplotlib, so a figure comes out
the same on every machine.

Categorical colours are Okabe & Ito's eight (Color Universal Design, 2008), chosen to stay
distinct under the common colour-vision deficiencies; beyond eight, further colours are
picked one at a time as far as possible, in CIELAB, from every colour already used, so no
colour ever repeats within a figure (many patients still cannot be told apart by colour
alone: their legends name them).
"""

from __future__ import annotations

from functools import lru_cache
from typing import TYPE_CHECKING

import matplotlib as mpl
import matplotlib.pyplot as plt
import numpy as np

if TYPE_CHECKING:
    from collections.abc import Sequence

    from matplotlib.figure import Figure

__all__ = [
    "DPI",
    "MAX_FONT_PT",
    "MIN_FONT_PT",
    "OKABE_ITO",
    "RC",
    "WIDTHS_MM",
    "apply_style",
    "categorical_colours",
    "distinct_colours",
    "new_figure",
]

MM_PER_INCH = 25.4
#: Print widths of a journal figure: one column and two columns (Nature's, and most others').
WIDTHS_MM: dict[str, float] = {"single": 89.0, "double": 183.0}
#: Tallest figure (a full page less its caption).
MAX_HEIGHT_MM = 240.0
#: Smallest and largest type at print size.
MIN_FONT_PT = 6.0
MAX_FONT_PT = 8.0
#: Resolution of the PNG copies.
DPI = 300

#: Okabe & Ito (2008), in their order; black last here (it is the default ink of text).
OKABE_ITO: tuple[str, ...] = (
    "#E69F00",  # orange
    "#56B4E9",  # sky blue
    "#009E73",  # bluish green
    "#0072B2",  # blue
    "#D55E00",  # vermillion
    "#CC79A7",  # reddish purple
    "#F0E442",  # yellow
    "#000000",  # black
)
#: Neutral colour of "other"/excluded things; not a category colour.
GREY = "#999999"
#: Colour of the main data ink (points of scatters, boxes) and of a highlighted estimate.
INK = "#0072B2"
ACCENT = "#D55E00"

RC: dict[str, object] = {
    "font.family": "sans-serif",
    "font.sans-serif": ["DejaVu Sans"],
    "font.size": 7.0,
    "axes.titlesize": 7.5,
    "axes.labelsize": 7.0,
    "xtick.labelsize": 6.5,
    "ytick.labelsize": 6.5,
    "legend.fontsize": 6.5,
    "legend.title_fontsize": 7.0,
    "figure.titlesize": 8.0,
    "mathtext.fontset": "dejavusans",
    "mathtext.default": "regular",
    "axes.linewidth": 0.6,
    "xtick.major.width": 0.6,
    "ytick.major.width": 0.6,
    "xtick.major.size": 2.5,
    "ytick.major.size": 2.5,
    "lines.linewidth": 1.0,
    "patch.linewidth": 0.6,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "legend.frameon": False,
    "pdf.fonttype": 42,
    "ps.fonttype": 42,
    "svg.fonttype": "none",
    "svg.hashsalt": "cd8exo",  # fixed element ids: the same figure gives the same SVG
    "savefig.dpi": DPI,
    "figure.dpi": 100,
    "image.cmap": "RdBu_r",
}


def apply_style() -> None:
    """Set the matplotlib defaults of the figure standard (done when :mod:`cd8exo.pl` loads)."""
    mpl.rcParams.update(RC)


def new_figure(
    width: str = "single",
    height_mm: float = 70.0,
    *,
    nrows: int = 1,
    ncols: int = 1,
    squeeze: bool = True,
    **subplots_kw,
) -> tuple[Figure, object]:
    """A figure at its print size (``width``: ``"single"`` 89 mm or ``"double"`` 183 mm).

    The height is clipped to 30-240 mm; constrained layout keeps labels inside the figure
    without changing its size (``bbox_inches="tight"`` would). The standard's matplotlib
    defaults are set anew for every figure.
    """
    if width not in WIDTHS_MM:
        msg = f"width must be one of {sorted(WIDTHS_MM)}, got {width!r}."
        raise ValueError(msg)
    apply_style()  # again: a library imported since may have changed matplotlib's defaults
    height = float(np.clip(height_mm, 30.0, MAX_HEIGHT_MM))
    return plt.subplots(
        nrows,
        ncols,
        figsize=(WIDTHS_MM[width] / MM_PER_INCH, height / MM_PER_INCH),
        layout="constrained",
        squeeze=squeeze,
        **subplots_kw,
    )


# --------------------------------------------------------------------------- #
# Colours
# --------------------------------------------------------------------------- #
def _srgb_to_lab(rgb: np.ndarray) -> np.ndarray:
    """CIELAB (D65) of sRGB colours in [0, 1], shape (n, 3)."""
    linear = np.where(rgb <= 0.04045, rgb / 12.92, ((rgb + 0.055) / 1.055) ** 2.4)
    xyz = linear @ np.array(
        [[0.4124, 0.2126, 0.0193], [0.3576, 0.7152, 0.1192], [0.1805, 0.0722, 0.9505]]
    )
    xyz = xyz / np.array([0.95047, 1.0, 1.08883])
    eps = 216 / 24389
    f = np.where(xyz > eps, np.cbrt(xyz), (24389 / 27 * xyz + 16) / 116)
    return np.column_stack(
        [116 * f[:, 1] - 16, 500 * (f[:, 0] - f[:, 1]), 200 * (f[:, 1] - f[:, 2])]
    )


@lru_cache(maxsize=4)
def _candidates(steps: int) -> tuple[np.ndarray, np.ndarray]:
    """An sRGB grid and its CIELAB coordinates, without the darkest, palest and most saturated."""
    axis = np.linspace(0.0, 1.0, steps)
    rgb = np.stack(np.meshgrid(axis, axis, axis, indexing="ij"), axis=-1).reshape(-1, 3)
    lab = _srgb_to_lab(rgb)
    chroma = np.hypot(lab[:, 1], lab[:, 2])
    # visible on white, not lost in black, and not neon
    keep = (lab[:, 0] >= 30) & (lab[:, 0] <= 85) & (chroma <= 70)
    return rgb[keep], lab[keep]


def _hex(rgb: np.ndarray) -> str:
    return "#" + "".join(f"{round(float(c) * 255):02X}" for c in rgb)


def distinct_colours(n: int) -> list[str]:
    """``n`` different colours: Okabe-Ito first, then each next one farthest (CIELAB) from all before.

    Deterministic; the extension is greedy farthest-point sampling over an sRGB grid, so
    the first colours of the extension are the most distinct.
    """
    if n <= len(OKABE_ITO):
        return list(OKABE_ITO[:n])
    colours = list(OKABE_ITO)
    used = {c.upper() for c in colours} | {GREY}
    steps = 16
    while True:
        rgb, lab = _candidates(steps)
        if len(rgb) >= n + len(used):
            break
        steps *= 2
    chosen = _srgb_to_lab(np.array([mpl.colors.to_rgb(c) for c in [*colours, GREY]]))
    distance = np.min(((lab[:, None, :] - chosen[None, :, :]) ** 2).sum(-1), axis=1)
    while len(colours) < n:
        best = int(np.argmax(distance))
        colour = _hex(rgb[best])
        distance[best] = -1.0
        if colour in used:
            continue
        colours.append(colour)
        used.add(colour)
        distance = np.minimum(distance, ((lab - lab[best]) ** 2).sum(-1))
        distance[best] = -1.0
    return colours


def categorical_colours(order: Sequence[str], *, neutral: Sequence[str] = ()) -> dict[str, str]:
    """A different colour for each category of ``order`` (``neutral`` ones, e.g. "other", grey)."""
    coloured = [v for v in order if v not in set(neutral)]
    palette = distinct_colours(len(coloured))
    colours = dict(zip(coloured, palette, strict=True))
    return {v: colours.get(v, GREY) for v in order}
