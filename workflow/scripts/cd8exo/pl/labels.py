"""Point labels that overlap neither each other nor the points.

Each label is tried at offsets around its point, nearest first (8 directions, then farther
rings with a thin leader line), and placed at the first position where its box touches no
label already placed, no point and stays inside the axes; a label with no free position is
left out (the caller can say how many). Placement is measured in display units after the
figure's layout is final, so call it last, once the axes limits are fixed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from matplotlib.transforms import Bbox

from cd8exo.pl.style import MIN_FONT_PT

if TYPE_CHECKING:
    from collections.abc import Sequence

    from matplotlib.axes import Axes
    from matplotlib.text import Annotation

__all__ = ["label_points"]

_DIRECTIONS = [(1, 1), (1, -1), (-1, 1), (-1, -1), (1, 0), (-1, 0), (0, 1), (0, -1)]
_RINGS_PT = (2.0, 6.0, 10.0, 15.0, 21.0)


def _freeze_layout(ax: Axes) -> None:
    """Run the figure's layout once and keep it (labels must not move the axes afterwards)."""
    fig = ax.figure
    fig.draw_without_rendering()
    fig.set_layout_engine("none")


def _point_boxes(ax: Axes, xy: np.ndarray, radius_px: float) -> list[Bbox]:
    centres = ax.transData.transform(xy)
    return [
        Bbox.from_extents(x - radius_px, y - radius_px, x + radius_px, y + radius_px)
        for x, y in centres
    ]


def _free(box: Bbox, taken: list[Bbox], frame: Bbox) -> bool:
    inside = box.x0 >= frame.x0 and box.x1 <= frame.x1 and box.y0 >= frame.y0 and box.y1 <= frame.y1
    return inside and not any(box.overlaps(other) for other in taken)


def label_points(
    ax: Axes,
    x: Sequence[float],
    y: Sequence[float],
    labels: Sequence[str],
    *,
    fontsize: float = MIN_FONT_PT,
    point_size_pt: float = 4.0,
) -> list[Annotation]:
    """Label points without overlaps; returns the labels placed (a crowded one is left out).

    Parameters
    ----------
    ax
        Axes holding the points (its limits must be final).
    x, y
        The points, in data coordinates.
    labels
        One text per point.
    fontsize
        Type size in points.
    point_size_pt
        Diameter of the drawn markers in points (their boxes are kept free too).
    """
    _freeze_layout(ax)
    fig = ax.figure
    renderer = fig.canvas.get_renderer()
    px_per_pt = fig.dpi / 72.0
    xy = np.column_stack([np.asarray(x, float), np.asarray(y, float)])
    taken = _point_boxes(ax, xy, radius_px=point_size_pt / 2 * px_per_pt)
    frame = ax.get_window_extent(renderer)
    centres = ax.transData.transform(xy)
    probe = ax.text(0, 0, "", fontsize=fontsize, parse_math=False)
    placed = []
    for (px, py), (cx, cy), text in zip(xy, centres, labels, strict=True):
        probe.set_text(str(text))
        extent = probe.get_window_extent(renderer)
        width, height = extent.width + px_per_pt, extent.height + px_per_pt
        for ring, (dx, dy) in ((r, d) for r in _RINGS_PT for d in _DIRECTIONS):
            ox = (dx * ring + dx * point_size_pt / 2) * px_per_pt
            oy = (dy * ring + dy * point_size_pt / 2) * px_per_pt
            # the box the label would occupy, from its anchor (ha/va as below)
            x0 = cx + ox - {1: 0.0, -1: width, 0: width / 2}[dx]
            y0 = cy + oy - {1: 0.0, -1: height, 0: height / 2}[dy]
            box = Bbox.from_bounds(x0, y0, width, height)
            if not _free(box, taken, frame):
                continue
            taken.append(box)
            placed.append(
                ax.annotate(
                    str(text),
                    (px, py),
                    xytext=(ox / px_per_pt, oy / px_per_pt),
                    textcoords="offset points",
                    fontsize=fontsize,
                    ha={1: "left", -1: "right", 0: "center"}[dx],
                    va={1: "bottom", -1: "top", 0: "center"}[dy],
                    arrowprops=(
                        {
                            "arrowstyle": "-",
                            "color": "#666666",
                            "lw": 0.5,
                            "shrinkA": 0,
                            "shrinkB": 2,
                        }
                        if ring > _RINGS_PT[0]
                        else None
                    ),
                    annotation_clip=False,
                    parse_math=False,  # ids verbatim: a "$" is not mathtext
                )
            )
            break
    probe.remove()
    return placed
