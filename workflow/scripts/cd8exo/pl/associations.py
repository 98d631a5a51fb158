"""Figures of associations: scatters, rho heatmap, forest plots."""

from __future__ import annotations

import logging

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Polygon
from scipy import stats as sps

from cd8exo.pl import message_figure
from cd8exo.pl.labels import label_points
from cd8exo.pl.names import DisplayNames
from cd8exo.pl.style import ACCENT, GREY, INK, new_figure
from cd8exo.stats.meta import RHO_CLIP, _meta_row, _usable

logger = logging.getLogger(__name__)

__all__ = ["association_scatter", "forest_plot", "number", "pair_scatter", "rho_heatmap"]

_PLAIN = DisplayNames()


def number(value: float, digits: int = 2) -> str:
    """``value`` to ``digits`` decimals with a true minus sign; ``NA`` when missing."""
    if value is None or not np.isfinite(value):
        return "NA"
    return f"{value:.{digits}f}".replace("-", "\u2212")


def p_text(value: float) -> str:
    """A p or q value for a figure: 2 significant digits, ``NA`` when missing."""
    if value is None or not np.isfinite(value):
        return "NA"
    return f"{value:.2g}".replace("-", "\u2212")


def _untested_text(rows: pd.DataFrame) -> str:
    """``dataset: note`` of each untested row (one line each)."""
    lines = []
    for row in rows.itertuples():
        note = str(row.note) if "note" in rows and pd.notna(row.note) and str(row.note) else ""
        lines.append(f"{row.dataset}: {note or 'not tested'}")
    return "\n".join(lines)


def _pair_title(signature: str, target: str, names: DisplayNames) -> str:
    return f"{names.signature(signature)} \u2192 {names.gene(target)}"


def _intervals(rows: pd.DataFrame, *, level: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each dataset's CI (bootstrap where present, else Fisher z) and whether it is bootstrap."""
    rho = rows["rho"].to_numpy(float)
    n = rows["n_patients"].to_numpy(float)
    crit = float(sps.norm.ppf(0.5 + level / 2.0))
    z = np.arctanh(np.clip(rho, -RHO_CLIP, RHO_CLIP))
    se = 1.0 / np.sqrt(n - 3.0)
    low, high = np.tanh(z - crit * se), np.tanh(z + crit * se)
    boot = np.zeros(len(rows), dtype=bool)
    if {"ci_low", "ci_high"} <= set(rows.columns):
        boot = rows["ci_low"].notna().to_numpy() & rows["ci_high"].notna().to_numpy()
        low = np.where(boot, rows["ci_low"].to_numpy(float), low)
        high = np.where(boot, rows["ci_high"].to_numpy(float), high)
    return low, high, boot


def _forest_texts(ax, y, rows, low, high, boot, names: DisplayNames) -> None:
    """The dataset column (left) and the numeric column (right) of a forest plot."""
    kw = {"transform": ax.get_yaxis_transform(), "fontsize": 6.5, "va": "center"}
    ax.text(-0.02, y.max() + 1.0, "Dataset (n patients)", ha="right", weight="bold", **kw)
    ax.text(1.02, y.max() + 1.0, "\u03c1 [95% CI]", ha="left", weight="bold", **kw)
    for yy, row, lo, hi, is_boot in zip(y, rows.itertuples(), low, high, boot, strict=True):
        ax.text(
            -0.02, yy, f"{names.dataset(row.dataset)} ({int(row.n_patients)})", ha="right", **kw
        )
        method = "bootstrap" if is_boot else "Fisher z"
        ax.text(
            1.02,
            yy,
            f"{number(row.rho)} [{number(lo)}, {number(hi)}] {method}",
            ha="left",
            **kw,
        )


def _forest_frame(ax, *, y_max: float, title: str, n_datasets: int) -> None:
    """Axis, legend and title of a forest plot (with the warning of a two-dataset pooling)."""
    ax.set_yticks([])
    ax.spines["left"].set_visible(False)
    ax.set_xlim(-1.0, 1.0)
    ax.set_ylim(0.4, y_max + 1.5)
    ax.set_xlabel("Spearman \u03c1 across patients")
    notes = []
    if n_datasets == 2:
        notes.append(
            "Only 2 datasets: DerSimonian-Laird \u03c4\u00b2 rests on one degree of freedom, "
            "so the pooled interval is unstable."
        )
    handles = [
        Line2D([], [], color="black", lw=1.0, label="95% bootstrap CI over patients"),
        Line2D([], [], color="black", lw=1.0, ls="--", label="Fisher-z CI (no bootstrap)"),
        Polygon([(0, 0)], facecolor=INK, label="pooled (random effects, Fisher z)"),
    ]
    ax.legend(
        handles=handles, loc="upper center", bbox_to_anchor=(0.5, -0.25), ncol=3, fontsize=6.5
    )
    ax.set_title("\n".join([title, *notes]))


def forest_plot(
    associations: pd.DataFrame,
    meta: pd.DataFrame | pd.Series | None = None,
    *,
    signature: str,
    target: str,
    level: float = 0.95,
    names: DisplayNames | None = None,
    ax: plt.Axes | None = None,
) -> Figure:
    """Forest plot of one (signature, target): per-dataset rho with CI, the pooled diamond, numbers.

    Each dataset's interval is its 95% bootstrap CI over patients (``ci_low``/``ci_high``,
    solid line) when present, else the Fisher-z interval ``tanh(atanh(rho) +/-
    z_(1+level)/2 / sqrt(n - 3))`` (dashed); the right-hand column prints every estimate and
    says which interval it is. Square areas are proportional to the random-effects weights
    ``1 / (1/(n-3) + tau^2)``; the diamond spans the pooled DerSimonian-Laird CI (Fisher z),
    printed with its p and q. With two datasets the between-dataset variance tau^2 rests on
    one degree of freedom: the figure says the pooled interval is unstable.

    Parameters
    ----------
    associations
        The association rows (several datasets).
    meta
        The :func:`meta_analysis` table or its row for this pair; None computes it.
    signature, target
        The pair to draw.
    level
        Confidence level of the Fisher-z fallback intervals.
    names
        Display names (signatures, genes, simulated datasets).
    ax
        Axes to draw on; a new figure when None.

    Returns
    -------
    matplotlib.figure.Figure
        The figure holding ``ax``; when no dataset has a rho for the pair, a figure that
        says so and gives each dataset's reason.
    """
    names = names or _PLAIN
    pair = associations[
        (associations["signature"] == signature) & (associations["target"] == target)
    ]
    rows = pair[_usable(pair)]
    title = names.title(_pair_title(signature, target, names), datasets=pair["dataset"])
    if rows.empty:
        reasons = _untested_text(pair) or "no dataset has a row for it"
        return message_figure(
            f"No dataset has a rho for this pair; nothing to draw.\n{reasons}",
            title=title,
            width="double",
            height_mm=30 + 5 * len(pair),
            ax=ax,
        )
    row = _meta_row(meta, associations, signature=signature, target=target)
    if ax is None:
        fig, ax = new_figure("double", 30 + 7 * (len(rows) + 2))
    else:
        fig = ax.figure
    low, high, boot = _intervals(rows, level=level)
    rho = rows["rho"].to_numpy(float)
    n = rows["n_patients"].to_numpy(float)
    tau2 = float(row.get("tau2", 0.0)) if pd.notna(row.get("tau2", np.nan)) else 0.0
    weights = 1.0 / (1.0 / (n - 3.0) + tau2)
    weights = weights / weights.sum()

    y = np.arange(len(rows), 0, -1, dtype=float) + 1.0
    for yy, lo, hi, is_boot in zip(y, low, high, boot, strict=True):
        ax.plot([lo, hi], [yy, yy], color="black", lw=1.0, ls="-" if is_boot else "--")
    ax.scatter(rho, y, marker="s", s=12 + 60 * weights, color="black", zorder=3)
    pooled = float(row["pooled_rho"])
    lo, hi = float(row["ci_low"]), float(row["ci_high"])
    ax.add_patch(
        Polygon(
            [(lo, 1.0), (pooled, 1.3), (hi, 1.0), (pooled, 0.7)],
            closed=True,
            facecolor=INK,
            edgecolor=INK,
        )
    )
    ax.axvline(0.0, color=GREY, linestyle=":", linewidth=0.8)
    _forest_texts(ax, y, rows, low, high, boot, names)
    i2 = row.get("i2", np.nan)
    i2_text = "NA" if pd.isna(i2) else f"{100 * float(i2):.0f}%"
    kw = {"transform": ax.get_yaxis_transform(), "fontsize": 6.5, "va": "center"}
    k = int(row.get("n_datasets", len(rows)))
    ax.text(
        -0.02,
        1.0,
        f"Pooled, {k} datasets (\u03c4\u00b2 = {tau2:.3f}, I\u00b2 = {i2_text})",
        ha="right",
        weight="bold",
        **kw,
    )
    ax.text(
        1.02,
        1.0,
        f"{number(pooled)} [{number(lo)}, {number(hi)}] DL\n"
        f"p = {p_text(row.get('p_value', np.nan))}, q = {p_text(row.get('q_value', np.nan))}",
        ha="left",
        weight="bold",
        **kw,
    )
    _forest_frame(ax, y_max=float(y.max()), title=title, n_datasets=k)
    return fig


def _fit_line(ax, x: np.ndarray, y: np.ndarray) -> None:
    """The Theil-Sen line (median of pairwise slopes): a robust trend beside a rank correlation."""
    if len(x) < 3 or np.ptp(x) == 0:
        return
    slope, intercept, _, _ = sps.theilslopes(y, x)
    grid = np.linspace(x.min(), x.max(), 50)
    ax.plot(grid, intercept + slope * grid, color=ACCENT, lw=1.0, zorder=2, label="Theil-Sen line")


def association_scatter(
    x: pd.Series,
    y: pd.Series,
    *,
    signature: str,
    target: str,
    rho: float,
    q_value: float,
    ci: tuple[float, float] | None = None,
    dataset: str = "",
    q_label: str = "permutation q",
    names: DisplayNames | None = None,
    label_patients: bool = True,
    ax=None,
) -> Figure:
    """Patient-level scatter of a sender score against a target's pseudobulk.

    One labelled point per patient (labels never overlap; a crowded one is left out and
    counted); a Theil-Sen line shows the trend (not least squares, which would not match a
    rank correlation). The title gives the dataset (``SIMULATED`` when the sheet says so),
    Spearman rho with its 95% bootstrap CI over patients, ``q_label`` (the permutation q)
    and n. ``label_patients=False`` leaves the points unlabelled (panels of a larger figure:
    labelling fixes the layout).
    """
    names = names or _PLAIN
    if ax is None:
        fig, ax = new_figure("single", 82)
    else:
        fig = ax.figure
    ok = x.notna() & y.notna()
    xs, ys = x[ok].to_numpy(float), y[ok].to_numpy(float)
    ax.scatter(xs, ys, s=14, color=INK, edgecolor="white", linewidth=0.4, zorder=3)
    _fit_line(ax, xs, ys)
    ax.set_xlabel(f"{names.signature(signature)}\n(mean score in CD8+ T cells)")
    ax.set_ylabel(f"{names.gene(target)} in malignant cells\n(pseudobulk log2 CPM+1)")
    ci_text = (
        f" (95% bootstrap CI {number(ci[0])}, {number(ci[1])})"
        if ci is not None and np.isfinite(ci).all()
        else ""
    )
    head = names.title(str(dataset), datasets=[dataset]) if dataset else ""
    if not label_patients:  # a panel of a larger figure: narrower lines
        ci_text = ci_text.replace(" (95%", "\n(95%")
    ax.set_title(
        f"{head}\n" * bool(head)
        + f"Spearman \u03c1 = {number(rho)}{ci_text}\n"
        + f"{q_label} = {p_text(q_value)}; n = {int(ok.sum())}",
        loc="left",
        fontsize=7,
    )
    if not label_patients:
        return fig
    # the title is set first: placing labels fixes the layout
    placed = label_points(ax, xs, ys, [str(p) for p in x.index[ok]], point_size_pt=3.5)
    left_out = int(ok.sum()) - len(placed)
    if left_out:
        title = ax.get_title(loc="left")
        ax.set_title(f"{title} ({left_out} unlabelled)", loc="left", fontsize=7)
    return fig


def rho_heatmap(
    table: pd.DataFrame,
    *,
    fdr: float = 0.05,
    title: str = "",
    names: DisplayNames | None = None,
    ax=None,
) -> Figure:
    """Spearman rho, signatures x targets, with ``*`` where q < ``fdr``.

    When no pair has a rho, the title also gives the reason(s) (the rows' ``note``).
    """
    names = names or _PLAIN
    datasets = table["dataset"].unique() if "dataset" in table else []
    title = names.title(title, datasets=datasets)
    if table.empty:
        return message_figure("No association was computed for this dataset.", title=title)
    if table["rho"].isna().all():
        notes = [n for n in dict.fromkeys(table["note"].fillna("").astype(str)) if n]
        title = f"{title}\nnot testable: {'; '.join(notes) or 'no rho'}".strip()
    signatures = list(dict.fromkeys(table["signature"]))
    targets = list(dict.fromkeys(table["target"]))
    rho = table.pivot(index="signature", columns="target", values="rho").reindex(
        index=signatures, columns=targets
    )
    q = table.pivot(index="signature", columns="target", values="q_value").reindex_like(rho)
    if ax is None:
        fig, ax = new_figure("double", 40 + 9 * rho.shape[0])
    else:
        fig = ax.figure
    image = ax.imshow(rho.to_numpy(float), cmap="RdBu_r", vmin=-1, vmax=1, aspect="auto")
    ax.set_xticks(
        range(rho.shape[1]), [names.gene(t) for t in rho.columns], rotation=45, ha="right"
    )
    ax.set_yticks(range(rho.shape[0]), [names.signature(s) for s in rho.index])
    for i in range(rho.shape[0]):
        for j in range(rho.shape[1]):
            value = rho.iat[i, j]
            if np.isnan(value):
                ax.text(j, i, "NA", ha="center", va="center", fontsize=6, color=GREY)
                continue
            star = "*" if q.iat[i, j] < fdr else ""
            ax.text(
                j,
                i,
                f"{number(value)}{star}",
                ha="center",
                va="center",
                fontsize=6,
                color="white" if abs(value) > 0.6 else "black",
            )
    for spine in ax.spines.values():
        spine.set_visible(False)
    fig.colorbar(image, ax=ax, label="Spearman \u03c1 across patients", shrink=0.8)
    ax.set_title(title or f"* q < {fdr}")
    return fig


def pair_scatter(
    row: pd.Series,
    sender: pd.DataFrame,
    receiver: pd.DataFrame,
    *,
    names: DisplayNames | None = None,
) -> Figure:
    """The patient-level scatter of one association row, or a figure saying why there is none.

    Parameters
    ----------
    row
        One row of the association table (``dataset``, ``signature``, ``target``, ``rho``,
        ``perm_q_value`` or else ``q_value``, ``ci_low``, ``ci_high``, ``note``).
    sender, receiver
        The included patients' scores and target values
        (:func:`cd8exo.patients.table.split_patient_table`).
    names
        Display names (signatures, genes, simulated datasets).
    """
    names = names or _PLAIN
    signature, target = str(row["signature"]), str(row["target"])
    dataset = str(row.get("dataset", ""))
    if pd.isna(row["rho"]) or signature not in sender or target not in receiver:
        note = str(row["note"]) if pd.notna(row.get("note")) and str(row["note"]) else "no rho"
        return message_figure(
            f"Not tested: {note}.",
            title=names.title(_pair_title(signature, target, names), datasets=[dataset]),
        )
    use_perm = pd.notna(row.get("perm_q_value", np.nan))
    return association_scatter(
        sender[signature],
        receiver[target],
        signature=signature,
        target=target,
        rho=float(row["rho"]),
        q_value=float(row["perm_q_value"] if use_perm else row["q_value"]),
        q_label="permutation q" if use_perm else "q",
        ci=(float(row["ci_low"]), float(row["ci_high"])),
        dataset=dataset,
        names=names,
    )
