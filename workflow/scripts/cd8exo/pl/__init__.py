"""Figures: the one place that saves them (:func:`save_figure`, the figure standard).

The standard itself (print sizes, type sizes, fonts, colours) is :mod:`cd8exo.pl.style`;
display names (signatures, gene sets, cell types, italic genes, simulated datasets) are
:mod:`cd8exo.pl.names`. :func:`figure_problems` checks a written figure against the standard.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import matplotlib as mpl
import matplotlib.pyplot as plt
from matplotlib.figure import Figure

from cd8exo._utils import file_name_problem
from cd8exo.errors import InputError
from cd8exo.pl.style import DPI, MAX_FONT_PT, MIN_FONT_PT, WIDTHS_MM, apply_style, new_figure

__all__ = [
    "FORMATS",
    "figure_paths",
    "figure_problems",
    "message_figure",
    "pair_figure_path",
    "save_figure",
]

mpl.use("Agg")
apply_style()

#: Every figure is written in these formats (same name, these suffixes).
FORMATS: tuple[str, ...] = ("pdf", "svg", "png")
# No creation date in the files: the same figure gives the same bytes.
_METADATA = {"pdf": {"CreationDate": None}, "svg": {"Date": None}, "png": {}}


def figure_paths(path: str | Path) -> dict[str, str]:
    """The PDF, SVG and PNG paths of a figure named by any one of them (or by its stem)."""
    path = Path(path)
    stem = path.with_suffix("") if path.suffix.lstrip(".") in FORMATS else path
    return {fmt: f"{stem}.{fmt}" for fmt in FORMATS}


def save_figure(fig: Figure, path: str | Path) -> dict[str, str]:
    """Write a figure as PDF, SVG and 300 dpi PNG, each atomically, and close it.

    ``path`` names any one of the three (``umap.png``): the others get the same stem. The
    figure keeps the size it was drawn at (:func:`cd8exo.pl.style.new_figure`; no tight
    bounding box, which would change it). Returns the three paths.
    """
    paths = figure_paths(path)
    try:
        for fmt, target in paths.items():
            tmp = f"{target}.tmp.{fmt}"
            fig.savefig(tmp, format=fmt, dpi=DPI, metadata=_METADATA[fmt])
            os.replace(tmp, target)
    finally:
        plt.close(fig)
    return paths


_SVG_SIZE = re.compile(r'<svg[^>]*?width="([0-9.]+)pt"[^>]*?height="([0-9.]+)pt"', re.S)
_SVG_FONT = re.compile(r"font(?:-size)?:\s*(?:[a-z]+\s+)*([0-9.]+)px")


def figure_problems(path: str | Path) -> list[str]:
    """How a written figure breaks the standard (empty when it does not).

    Checks: the PDF, SVG and PNG all exist; the PNG is 300 dpi and as wide as the SVG at
    that resolution; the width is 89 or 183 mm; the PDF embeds TrueType fonts (no Type 3);
    the SVG keeps its text as text, every size between 6 and 8 pt (SVG user units are points).
    """

    from PIL import Image  # only to check a PNG (a dependency of matplotlib, not of the rules)

    paths = figure_paths(path)
    missing = [p for p in paths.values() if not Path(p).is_file()]
    if missing:
        return [f"missing: {', '.join(missing)}"]
    problems = []
    svg = Path(paths["svg"]).read_text(encoding="utf-8")
    size = _SVG_SIZE.search(svg)
    width_mm = float(size.group(1)) / 72 * 25.4 if size else float("nan")
    if not any(abs(width_mm - w) < 0.5 for w in WIDTHS_MM.values()):
        problems.append(f"width {width_mm:.1f} mm, not 89 or 183 mm")
    sizes = [float(s) for s in _SVG_FONT.findall(svg)]
    if "<text" in svg and not sizes:
        problems.append("no font size found in the SVG")
    small = sorted({s for s in sizes if s < MIN_FONT_PT - 1e-6})
    large = sorted({s for s in sizes if s > MAX_FONT_PT + 1e-6})
    if small or large:
        problems.append(f"text sizes outside {MIN_FONT_PT:g}-{MAX_FONT_PT:g} pt: {small + large}")
    with Image.open(paths["png"]) as png:
        dpi = png.info.get("dpi", (0, 0))
        if any(abs(float(d) - DPI) > 1 for d in dpi):
            problems.append(f"PNG at {dpi} dpi, not {DPI}")
        expected = round(width_mm / 25.4 * DPI) if size else png.width
        if abs(png.width - expected) > 2:
            problems.append(f"PNG {png.width} px wide, expected {expected}")
    pdf = Path(paths["pdf"]).read_bytes()
    if b"/Type3" in pdf or (b"/Font" in pdf and b"/FontFile2" not in pdf):
        problems.append("PDF fonts are not embedded as TrueType (pdf.fonttype 42)")
    return problems


def message_figure(
    text: str, *, title: str = "", height_mm: float = 35.0, width: str = "single", ax=None
) -> Figure:
    """A figure that says, in words, why there is nothing to draw (it never stops a run).

    On ``ax`` when given (its figure is returned), else on a new figure at print size.
    """
    if ax is None:
        fig, ax = new_figure(width, height_mm)
    else:
        fig = ax.figure
    ax.axis("off")
    ax.text(0.5, 0.5, text, ha="center", va="center", wrap=True, fontsize=7)
    if title:
        ax.set_title(title, fontsize=7.5)
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
