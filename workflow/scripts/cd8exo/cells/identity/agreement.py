"""Agreement of inferred identities with the authors' labels."""

from __future__ import annotations

import logging
from collections.abc import Mapping

import numpy as np
import pandas as pd

logger = logging.getLogger(__name__)

__all__ = ["AGREEMENT_CLASSES", "agreement_table", "author_label_flags"]


# --------------------------------------------------------------------------- #
# Author labels vs inference
# --------------------------------------------------------------------------- #
def _label_flags(author_labels_present: bool | Mapping[str, bool]) -> dict[str, bool]:
    if isinstance(author_labels_present, Mapping):
        unknown = sorted(set(author_labels_present) - {"cd8", "malignant"})
        if unknown:
            msg = (
                f"author_labels_present has unknown key(s) {unknown}; use 'cd8' and/or "
                "'malignant' (or one bool for both)."
            )
            raise ValueError(msg)
        return {
            "cd8": bool(author_labels_present.get("cd8", False)),
            "malignant": bool(author_labels_present.get("malignant", False)),
        }
    return {"cd8": bool(author_labels_present), "malignant": bool(author_labels_present)}


def agreement_table(
    inferred: pd.Series | pd.DataFrame, author: pd.Series | pd.DataFrame
) -> pd.DataFrame:
    """Precision, recall, F1 and support of inferred labels against the authors'.

    Parameters
    ----------
    inferred, author
        Both Series (labels, or booleans) or both DataFrames of boolean columns with the
        same names (e.g. ``is_cd8``, ``is_malignant``), indexed by cell. Only cells in
        both are compared; at least one must be shared.

    Returns
    -------
    One row per class (the label values; for booleans and boolean columns, the positive
    class, named after the Series/column): ``class``, ``n_cells``, ``support`` (author
    positives), ``n_predicted``, ``true_positive``, ``precision``, ``recall``, ``f1``
    (NaN where undefined: nothing predicted, or no support).
    """
    if isinstance(inferred, pd.DataFrame) != isinstance(author, pd.DataFrame):
        msg = "agreement_table: give two Series or two DataFrames, not one of each."
        raise ValueError(msg)
    common = inferred.index.intersection(author.index)
    if len(common) == 0:
        msg = "agreement_table: the inferred and author labels share no cell id."
        raise ValueError(msg)
    if len(common) < max(len(inferred.index), len(author.index)):
        logger.warning(
            "agreement_table: %d shared cells (inferred %d, author %d)",
            len(common),
            len(inferred.index),
            len(author.index),
        )
    pairs: list[tuple[str, np.ndarray, np.ndarray]] = []
    if isinstance(inferred, pd.DataFrame):
        missing = [c for c in inferred.columns if c not in author.columns]
        if missing:
            msg = f"agreement_table: author labels lack the column(s) {missing}."
            raise ValueError(msg)
        for column in inferred.columns:
            pairs.append(
                (
                    str(column),
                    inferred.loc[common, column].astype(bool).to_numpy(),
                    author.loc[common, column].astype(bool).to_numpy(),
                )
            )
    else:
        pred = inferred.loc[common]
        true = author.loc[common]
        if pd.api.types.is_bool_dtype(pred) and pd.api.types.is_bool_dtype(true):
            name = str(inferred.name or author.name or "positive")
            pairs.append((name, pred.to_numpy(), true.to_numpy()))
        else:
            pred = pred.astype(str).to_numpy()
            true = true.astype(str).to_numpy()
            for label in sorted(set(pred) | set(true)):
                pairs.append((label, pred == label, true == label))
    rows = []
    for name, pred, true in pairs:
        tp = int((pred & true).sum())
        n_pred = int(pred.sum())
        support = int(true.sum())
        precision = tp / n_pred if n_pred else np.nan
        recall = tp / support if support else np.nan
        f1 = (
            2 * precision * recall / (precision + recall)
            if n_pred and support and (precision + recall) > 0
            else (0.0 if n_pred and support else np.nan)
        )
        rows.append(
            {
                "class": name,
                "n_cells": len(pred),
                "support": support,
                "n_predicted": n_pred,
                "true_positive": tp,
                "precision": precision,
                "recall": recall,
                "f1": f1,
            }
        )
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------- #
# The workflow step: labels used, agreement, per-cell table
# --------------------------------------------------------------------------- #
#: The classes of the agreement table: contract cell type -> column of the calls.
AGREEMENT_CLASSES: dict[str, str] = {"CD8_T": "is_cd8", "malignant": "is_malignant"}


def author_label_flags(obs: pd.DataFrame) -> dict[str, bool]:
    """Which author labels a harmonised dataset carries, for CD8 T cells and malignant cells.

    A label counts as given when at least one cell carries it: ``cell_type == "CD8_T"``
    for CD8 T cells, ``malignant`` True for malignant cells. A dataset without labels
    (all ``other``), or whose label map sends T cells to ``other`` because the authors did
    not split CD8 from CD4 (GSE72056, GSE103322), has the missing one inferred.

    Parameters
    ----------
    obs
        ``obs`` of a harmonised AnnData (columns ``cell_type`` and ``malignant``).

    Returns
    -------
    ``{"cd8": bool, "malignant": bool}``.
    """
    cd8 = "cell_type" in obs and bool((obs["cell_type"].astype(str) == "CD8_T").any())
    malignant = False
    if "malignant" in obs:
        values = obs["malignant"]
        malignant = bool(values.fillna(False).astype(bool).any()) if len(values) else False
    return {"cd8": cd8, "malignant": malignant}


def _agreement_rows(
    calls: pd.DataFrame | None,
    obs: pd.DataFrame,
    *,
    author_labels: Mapping[str, bool],
    note: str = "",
) -> pd.DataFrame:
    """Agreement of ``calls`` with the author labels of ``obs``, one row per class."""
    author = pd.DataFrame(
        {
            "CD8_T": (obs["cell_type"].astype(str) == "CD8_T").to_numpy()
            if "cell_type" in obs
            else False,
            "malignant": obs["malignant"].fillna(False).astype(bool).to_numpy()
            if "malignant" in obs
            else False,
        },
        index=obs.index,
    )
    flags = {"CD8_T": author_labels["cd8"], "malignant": author_labels["malignant"]}
    rows = []
    for name, column in AGREEMENT_CLASSES.items():
        if flags[name] and calls is not None:
            row = agreement_table(
                calls[[column]].rename(columns={column: name}), author[[name]]
            ).iloc[0]
            rows.append({**row.to_dict(), "author_labels": True, "note": ""})
            continue
        if not flags[name]:
            why = "no author labels: nothing to compare (the labels used are inferred)"
        else:
            why = note
        rows.append(
            {
                "class": name,
                "n_cells": len(obs),
                "support": int(author[name].sum()) if flags[name] else np.nan,
                "n_predicted": np.nan,
                "true_positive": np.nan,
                "precision": np.nan,
                "recall": np.nan,
                "f1": np.nan,
                "author_labels": flags[name],
                "note": why,
            }
        )
    return pd.DataFrame(rows)
