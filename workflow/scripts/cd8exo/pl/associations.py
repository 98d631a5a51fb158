"""Figures of associations: scatters, rho heatmap, forest plots."""

from __future__ import annotations

import logging

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.patches import Polygon
from scipy import stats as sps

from cd8exo.pl import message_figure
from cd8exo.stats.meta import RHO_CLIP, _meta_row, _usable

logger = logging.getLogger(__name__)

__all__ = ["association_scatter", "forest_plot", "pair_scatter", "rho_heatmap"]


def _untested_text(rows: pd.DataFrame) -> str:
    """``dataset: note`` of each untested row (one line each)."""
    lines = []
    for row in rows.itertuples():
        note = str(row.note) if "note" in rows and pd.notna(row.note) and str(row.note) else ""
        lines.append(f"{row.dataset}: {note or 'not tested'}")
    return "\n".join(lines)


def forest_plot(
    associations: pd.DataFrame,
    meta: pd.DataFrame | pd.Series | None = None,
    *,
    signature: str,
    target: str,
    level: float = 0.95,
    ax: plt.Axes | None = None,
) -> Figure:
    """Forest plot of one (signature, target): per-dataset rho with CI and the pooled diamond.

    Each dataset's interval is its bootstrap CI (``ci_low``/``ci_high``) when present,
    else the Fisher-z interval ``tanh(atanh(rho) +/- z_(1+level)/2 / sqrt(n - 3))``.
    Square areas are proportional to the random-effects weights ``1 / (1/(n-3) +
    tau^2)``; the diamond spans the pooled CI.

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
    ax
        Axes to draw on; a new figure when None.

    Returns
    -------
    matplotlib.figure.Figure
        The figure holding ``ax``; when no dataset has a rho for the pair, a figure that
        says so and gives each dataset's reason.
    """
    pair = associations[
        (associations["signature"] == signature) & (associations["target"] == target)
    ]
    rows = pair[_usable(pair)]
    if rows.empty:
        reasons = _untested_text(pair) or "no dataset has a row for it"
        return message_figure(
            f"No dataset has a rho for this pair; nothing to draw.\n{reasons}",
            title=f"{signature} → {target}",
            size=(6.5, 1.6 + 0.3 * len(pair)),
            ax=ax,
        )
    row = _meta_row(meta, associations, signature=signature, target=target)
    if ax is None:
        fig, ax = plt.subplots(figsize=(6.5, 1.2 + 0.45 * (len(rows) + 2)))
    else:
        fig = ax.figure
    rho = rows["rho"].to_numpy(float)
    n = rows["n_patients"].to_numpy(float)
    crit = float(sps.norm.ppf(0.5 + level / 2.0))
    z = np.arctanh(np.clip(rho, -RHO_CLIP, RHO_CLIP))
    se = 1.0 / np.sqrt(n - 3.0)
    low = np.tanh(z - crit * se)
    high = np.tanh(z + crit * se)
    if {"ci_low", "ci_high"} <= set(rows.columns):
        have = rows["ci_low"].notna().to_numpy() & rows["ci_high"].notna().to_numpy()
        low = np.where(have, rows["ci_low"].to_numpy(float), low)
        high = np.where(have, rows["ci_high"].to_numpy(float), high)
    tau2 = float(row.get("tau2", 0.0)) if pd.notna(row.get("tau2", np.nan)) else 0.0
    weights = 1.0 / (1.0 / (n - 3.0) + tau2)
    weights = weights / weights.sum()

    y = np.arange(len(rows), 0, -1, dtype=float) + 1.0
    ax.hlines(y, low, high, color="black", linewidth=1.2)
    ax.scatter(rho, y, marker="s", s=40 + 400 * weights, color="black", zorder=3)
    pooled = float(row["pooled_rho"])
    lo, hi = float(row["ci_low"]), float(row["ci_high"])
    ax.add_patch(
        Polygon(
            [(lo, 1.0), (pooled, 1.25), (hi, 1.0), (pooled, 0.75)],
            closed=True,
            facecolor="tab:blue",
            edgecolor="tab:blue",
            label="pooled",
        )
    )
    ax.axvline(0.0, color="grey", linestyle="--", linewidth=0.8)
    labels = [f"{d} (n={int(k)})" for d, k in zip(rows["dataset"], n, strict=True)]
    i2 = row.get("i2", np.nan)
    i2_text = "NA" if pd.isna(i2) else f"{100 * float(i2):.0f}%"
    ax.set_yticks([*y, 1.0], [*labels, f"Pooled (tau²={tau2:.3f}, I²={i2_text})"])
    ax.set_xlim(-1.0, 1.0)
    ax.set_ylim(0.4, y.max() + 0.6)
    ax.set_xlabel("Spearman rho (patients)")
    ax.set_title(f"{signature} → {target}")
    fig.tight_layout()
    return fig


def association_scatter(
    x: pd.Series,
    y: pd.Series,
    *,
    signature: str,
    target: str,
    rho: float,
    q_value: float,
    ci: tuple[float, float] | None = None,
    ax=None,
) -> Figure:
    """Patient-level scatter of a sender score against a target's pseudobulk, with a least-squares line."""
    if ax is None:
        fig, ax = plt.subplots(figsize=(4.2, 3.8))
    else:
        fig = ax.figure
    ok = x.notna() & y.notna()
    ax.scatter(x[ok], y[ok], s=28, color="#4c72b0", edgecolor="white", linewidth=0.5, zorder=3)
    for patient in x.index[ok]:
        ax.annotate(
            str(patient),
            (x[patient], y[patient]),
            fontsize=5,
            alpha=0.6,
            xytext=(2, 2),
            textcoords="offset points",
        )
    if ok.sum() >= 2 and np.ptp(x[ok]) > 0:
        slope, intercept = np.polyfit(x[ok].to_numpy(float), y[ok].to_numpy(float), 1)
        grid = np.linspace(x[ok].min(), x[ok].max(), 50)
        ax.plot(grid, intercept + slope * grid, color="#c44e52", lw=1.5, zorder=2)
    ax.set_xlabel(f"{signature}\n(mean score in CD8 T cells)", fontsize=8)
    ax.set_ylabel(f"{target} in malignant cells\n(pseudobulk log2 CPM+1)", fontsize=8)
    interval = f" [{ci[0]:.2f}, {ci[1]:.2f}]" if ci is not None and np.isfinite(ci).all() else ""
    ax.set_title(
        f"Spearman rho = {rho:.2f}{interval}, q = {q_value:.2g}, n = {int(ok.sum())}", fontsize=8
    )
    fig.tight_layout()
    return fig


def rho_heatmap(table: pd.DataFrame, *, fdr: float = 0.05, title: str = "", ax=None) -> Figure:
    """Spearman rho, signatures x targets, with ``*`` where q < ``fdr``.

    When no pair has a rho, the title also gives the reason(s) (the rows' ``note``).
    """
    if table.empty:
        return message_figure("No association was computed for this dataset.", title=title)
    if table["rho"].isna().all():
        notes = [n for n in dict.fromkeys(table["note"].fillna("").astype(str)) if n]
        title = f"{title}\nnot testable: {'; '.join(notes) or 'no rho'}".strip()
    rho = table.pivot(index="signature", columns="target", values="rho")
    q = table.pivot(index="signature", columns="target", values="q_value").reindex_like(rho)
    if ax is None:
        fig, ax = plt.subplots(figsize=(1.0 + 0.55 * rho.shape[1], 1.5 + 0.45 * rho.shape[0]))
    else:
        fig = ax.figure
    image = ax.imshow(rho.to_numpy(float), cmap="RdBu_r", vmin=-1, vmax=1, aspect="auto")
    ax.set_xticks(range(rho.shape[1]), rho.columns, rotation=60, ha="right", fontsize=8)
    ax.set_yticks(range(rho.shape[0]), rho.index, fontsize=8)
    for i in range(rho.shape[0]):
        for j in range(rho.shape[1]):
            value = rho.iat[i, j]
            if np.isnan(value):
                ax.text(j, i, "NA", ha="center", va="center", fontsize=6, color="grey")
                continue
            star = "*" if q.iat[i, j] < fdr else ""
            ax.text(
                j,
                i,
                f"{value:.2f}{star}",
                ha="center",
                va="center",
                fontsize=6,
                color="white" if abs(value) > 0.6 else "black",
            )
    fig.colorbar(image, ax=ax, label="Spearman rho across patients", shrink=0.8)
    ax.set_title(title or f"* q < {fdr}", fontsize=9)
    fig.tight_layout()
    return fig


def pair_scatter(row: pd.Series, sender: pd.DataFrame, receiver: pd.DataFrame) -> Figure:
    """The patient-level scatter of one association row, or a figure saying why there is none.

    Parameters
    ----------
    row
        One row of the association table (``signature``, ``target``, ``rho``,
        ``q_value``, ``ci_low``, ``ci_high``, ``note``).
    sender, receiver
        The included patients' scores and target values
        (:func:`cd8exo.patients.table.split_patient_table`).
    """
    signature, target = str(row["signature"]), str(row["target"])
    if pd.isna(row["rho"]) or signature not in sender or target not in receiver:
        note = str(row["note"]) if pd.notna(row.get("note")) and str(row["note"]) else "no rho"
        return message_figure(
            f"Not tested: {note}.", title=f"{signature} → {target}", size=(4.2, 1.6)
        )
    return association_scatter(
        sender[signature],
        receiver[target],
        signature=signature,
        target=target,
        rho=float(row["rho"]),
        q_value=float(row["q_value"]),
        ci=(float(row["ci_low"]), float(row["ci_high"])),
    )
