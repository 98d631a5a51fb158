"""The patient table: one row per patient with counts, sender scores and target pseudobulk.

Columns ``score:<signature>`` hold the mean signature score over the patient's CD8 T
cells; ``expr:<gene>`` the log2(CPM+1) pseudobulk of the gene in the patient's malignant
cells. ``included`` says whether the patient enters the association, ``exclusion_reason``
why not.
"""

from __future__ import annotations

from collections.abc import Iterable

import pandas as pd

from cd8exo.errors import InputError

__all__ = [
    "EXPR_PREFIX",
    "SCORE_PREFIX",
    "concatenate",
    "patient_covariates",
    "patient_table",
    "split_patient_table",
]

SCORE_PREFIX = "score:"


EXPR_PREFIX = "expr:"


def patient_table(
    counts: pd.DataFrame,
    sender: pd.DataFrame,
    receiver: pd.DataFrame,
    excluded: pd.DataFrame,
    *,
    dataset: str,
) -> pd.DataFrame:
    """Join per-patient counts, sender scores and receiver expression into one table.

    Parameters
    ----------
    counts
        Per patient (index): n_cells, n_cd8, n_malignant, cd8_fraction, ...
    sender
        Patient x signature mean CD8 T-cell scores.
    receiver
        Patient x gene malignant-cell pseudobulk.
    excluded
        Exclusion table with columns ``patient`` and ``reason``.
    dataset
        Dataset id written in the first column.

    Returns
    -------
    One row per patient of ``counts``, sorted by patient.
    """
    table = counts.copy()
    table.index.name = "patient"
    table = table.join(sender.add_prefix(SCORE_PREFIX), how="left")
    table = table.join(receiver.add_prefix(EXPR_PREFIX), how="left")
    reasons = excluded.set_index("patient")["reason"] if len(excluded) else pd.Series(dtype=str)
    table["included"] = ~table.index.isin(reasons.index)
    table["exclusion_reason"] = reasons.reindex(table.index).fillna("")
    table.insert(0, "dataset", dataset)
    return table.reset_index().sort_values("patient", kind="stable").reset_index(drop=True)


def split_patient_table(
    table: pd.DataFrame, *, included_only: bool = True
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Recover the sender (patient x signature) and receiver (patient x gene) tables."""
    if included_only:
        table = table[table["included"].astype(str).str.lower() == "true"]
    table = table.set_index("patient")
    sender = table.filter(like=SCORE_PREFIX, axis=1)
    sender.columns = [c.removeprefix(SCORE_PREFIX) for c in sender.columns]
    receiver = table.filter(like=EXPR_PREFIX, axis=1)
    receiver.columns = [c.removeprefix(EXPR_PREFIX) for c in receiver.columns]
    return sender, receiver


def concatenate(tables: Iterable[pd.DataFrame]) -> pd.DataFrame:
    """Stack per-dataset tables, keeping the union of their columns in first-seen order."""
    tables = list(tables)
    if not tables:
        return pd.DataFrame()
    return pd.concat(tables, ignore_index=True, sort=False)


def patient_covariates(table: pd.DataFrame, *, columns) -> pd.DataFrame | None:
    """Per-patient covariates (included patients) for the partial correlation; None when none chosen."""
    if not columns:
        return None
    missing = [c for c in columns if c not in table.columns]
    if missing:
        msg = (
            f"association.covariates: covariate(s) {', '.join(missing)} are not in the "
            f"patient table; available: {', '.join(c for c in table.columns if ':' not in c)}"
        )
        raise InputError(msg)
    included = table[table["included"].astype(str).str.lower() == "true"]
    return included.set_index("patient")[list(columns)].astype(float)
