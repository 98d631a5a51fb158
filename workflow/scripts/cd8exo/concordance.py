"""Do the conclusions depend on the scorer? Concordance of the scoring methods.

Every sender signature is scored by each method (:data:`cd8exo.scoring.METHODS`) on the
same prepared genes. Two levels are compared, pair by pair of methods:

``cell``
    Spearman (and Pearson) correlation of the per-cell scores over the CD8 T cells (the
    cells the sender score averages); ssGSEA has no per-cell score and is left out.
``patient``
    Spearman (and Pearson) correlation, across patients with at least ``min_cells`` CD8
    T cells, of the per-patient sender scores: the mean over the patient's CD8 T cells
    for the per-cell methods, the ssGSEA score of the patient's CD8 pseudobulk for
    ssGSEA. This is the level the association test uses.
"""

from __future__ import annotations

import itertools
import logging
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from cd8exo.scoring import METHODS, score_signatures

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    import anndata as ad
    from matplotlib.figure import Figure

logger = logging.getLogger(__name__)

__all__ = ["CONCORDANCE_COLUMNS", "concordance_figure", "concordance_table", "method_scores"]

#: Columns of :func:`concordance_table`.
CONCORDANCE_COLUMNS: tuple[str, ...] = (
    "signature",
    "level",
    "method_a",
    "method_b",
    "n",
    "spearman",
    "pearson",
)

SENDER_CELL_TYPE = "CD8_T"


def method_scores(
    adata: ad.AnnData,
    signatures: Mapping[str, Sequence[str]],
    *,
    methods: Sequence[str] = METHODS,
    rng: int | np.random.Generator | np.random.SeedSequence | None,
    min_cells: int = 10,
    **options,
) -> tuple[dict[str, pd.DataFrame], dict[str, pd.DataFrame]]:
    """Per-cell and per-patient sender scores of every method.

    Parameters
    ----------
    adata
        Harmonised, log-normalised AnnData (``obs["patient"]``, ``obs["cell_type"]``).
    signatures
        Prepared signatures (:func:`cd8exo.scoring.prepare_signatures`).
    methods
        Methods to compare.
    rng
        Seed, passed to every method (the same seed as the workflow's scores).
    min_cells
        Patients with fewer CD8 T cells are left out of the patient level.
    **options
        Method parameters of :func:`cd8exo.scoring.score_signatures` (``n_bins``,
        ``ctrl_size``, ``max_rank``, ``n_up``, ``aucell_ties``).

    Returns
    -------
    ``(cells, patients)``: method -> CD8 T cells x signatures (per-cell methods only),
    and method -> patients x signatures.
    """
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        msg = f"Unknown scoring method(s) {unknown}; use some of {', '.join(METHODS)}."
        raise ValueError(msg)
    senders = (adata.obs["cell_type"].astype(str) == SENDER_CELL_TYPE).to_numpy()
    patients = adata.obs["patient"].astype(str).to_numpy()[senders]
    n_cells = pd.Series(patients).value_counts()
    kept = sorted(n_cells.index[n_cells >= min_cells])
    cells: dict[str, pd.DataFrame] = {}
    per_patient: dict[str, pd.DataFrame] = {}
    for method in methods:
        scores = score_signatures(adata, signatures, rng=rng, method=method, **options)
        sender_scores = scores.loc[senders]
        means = sender_scores.groupby(patients).mean().reindex(kept)
        means.index.name = "patient"
        per_patient[method] = means
        if method != "ssgsea":
            cells[method] = sender_scores
        logger.info("method %s: %d CD8 T cells, %d patients", method, senders.sum(), len(kept))
    return cells, per_patient


def _correlations(a: pd.Series, b: pd.Series) -> tuple[int, float, float]:
    both = pd.concat([a, b], axis=1).dropna()
    n = len(both)
    if n < 3 or both.iloc[:, 0].nunique() < 2 or both.iloc[:, 1].nunique() < 2:
        return n, np.nan, np.nan
    ranks = both.rank()
    spearman = float(np.corrcoef(ranks.iloc[:, 0], ranks.iloc[:, 1])[0, 1])
    pearson = float(np.corrcoef(both.iloc[:, 0], both.iloc[:, 1])[0, 1])
    return n, spearman, pearson


def concordance_table(
    cells: Mapping[str, pd.DataFrame], patients: Mapping[str, pd.DataFrame]
) -> pd.DataFrame:
    """Pairwise correlations between methods, per signature, at the cell and patient level.

    Parameters
    ----------
    cells, patients
        As returned by :func:`method_scores`.

    Returns
    -------
    One row per (signature, level, pair of methods) with :data:`CONCORDANCE_COLUMNS`;
    ``n`` is the number of cells or patients with both scores. Correlations are NaN for
    fewer than 3 or constant values.
    """
    rows = []
    for level, tables in (("cell", cells), ("patient", patients)):
        for method_a, method_b in itertools.combinations(list(tables), 2):
            a, b = tables[method_a], tables[method_b]
            for signature in a.columns:
                if signature not in b.columns:
                    continue
                n, spearman, pearson = _correlations(a[signature], b[signature])
                rows.append(
                    {
                        "signature": signature,
                        "level": level,
                        "method_a": method_a,
                        "method_b": method_b,
                        "n": n,
                        "spearman": spearman,
                        "pearson": pearson,
                    }
                )
    return pd.DataFrame(rows, columns=list(CONCORDANCE_COLUMNS))


def concordance_figure(table: pd.DataFrame, *, title: str = "") -> Figure:
    """Heatmaps of the Spearman correlations between methods, per cell and per patient.

    Parameters
    ----------
    table
        From :func:`concordance_table`.
    title
        Figure title (e.g. the dataset).

    Returns
    -------
    The figure: one panel per level, signatures as rows, pairs of methods as columns.
    """
    import matplotlib as mpl

    mpl.use("Agg")
    import matplotlib.pyplot as plt

    levels = [level for level in ("cell", "patient") if (table["level"] == level).any()]
    signatures = list(dict.fromkeys(table["signature"]))
    widths = [
        max(
            2,
            table.loc[table["level"] == level, ["method_a", "method_b"]].drop_duplicates().shape[0],
        )
        for level in levels
    ] or [1]
    fig, axes = plt.subplots(
        1,
        max(1, len(levels)),
        figsize=(1.1 * sum(widths) + 3.5, 0.5 * len(signatures) + 2.2),
        gridspec_kw={"width_ratios": widths},
        squeeze=False,
    )
    image = None
    for ax, level in zip(axes[0], levels, strict=False):
        rows = table[table["level"] == level]
        pairs = list(dict.fromkeys(zip(rows["method_a"], rows["method_b"], strict=True)))
        grid = np.full((len(signatures), len(pairs)), np.nan)
        for row in rows.itertuples():
            grid[signatures.index(row.signature), pairs.index((row.method_a, row.method_b))] = (
                row.spearman
            )
        image = ax.imshow(grid, cmap="RdBu_r", vmin=-1, vmax=1, aspect="auto")
        for i, j in itertools.product(range(grid.shape[0]), range(grid.shape[1])):
            text = "NA" if np.isnan(grid[i, j]) else f"{grid[i, j]:.2f}"
            dark = not np.isnan(grid[i, j]) and abs(grid[i, j]) > 0.6
            ax.text(
                j, i, text, ha="center", va="center", fontsize=8, color="white" if dark else "black"
            )
        ax.set_xticks(range(len(pairs)), [f"{a}\nvs {b}" for a, b in pairs], fontsize=8)
        ax.set_yticks(range(len(signatures)), signatures if ax is axes[0][0] else [], fontsize=8)
        n = int(rows["n"].max()) if len(rows) else 0
        unit = "CD8 T cells" if level == "cell" else "patients"
        ax.set_title(f"per {level} (Spearman, up to {n} {unit})", fontsize=9)
    if image is not None:
        fig.colorbar(image, ax=axes[0].tolist(), shrink=0.8, label="Spearman rho")
    if title:
        fig.suptitle(title)
    return fig
