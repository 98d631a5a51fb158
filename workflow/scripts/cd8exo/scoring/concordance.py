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

from cd8exo._utils import RNGLike
from cd8exo.scoring.score import METHODS, score_signatures

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    import anndata as ad
logger = logging.getLogger(__name__)

__all__ = ["CONCORDANCE_COLUMNS", "concordance_table", "method_scores"]

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
    rng: RNGLike,
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
        # only the CD8 T cells are scored (what a method takes from all cells still does)
        sender_scores = score_signatures(
            adata, signatures, rng=rng, method=method, cells=senders, **options
        )
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
