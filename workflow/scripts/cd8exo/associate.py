"""Patient-level association of sender scores with receiver target expression."""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
from scipy import stats

logger = logging.getLogger(__name__)

__all__ = ["ASSOCIATION_COLUMNS", "associate", "benjamini_hochberg"]

#: Columns of :func:`associate`'s table, in order.
ASSOCIATION_COLUMNS = [
    "dataset",
    "signature",
    "target",
    "n_patients",
    "rho",
    "p_value",
    "q_value",
    "note",
]


def benjamini_hochberg(p: np.ndarray | pd.Series | list[float]) -> np.ndarray:
    """Benjamini-Hochberg adjusted p-values (q-values), ignoring NaN.

    Parameters
    ----------
    p
        P-values in [0, 1]; NaN entries stay NaN and do not count in the number of
        tests ``m``.

    Returns
    -------
    Adjusted p-values, same shape and order as ``p`` (equal to
    ``statsmodels.stats.multitest.multipletests(p, method="fdr_bh")[1]`` on the
    non-NaN entries).
    """
    p = np.asarray(p, dtype=np.float64)
    q = np.full(p.shape, np.nan)
    flat = p.ravel()
    finite = ~np.isnan(flat)
    values = flat[finite]
    if values.size == 0:
        return q
    if (values < 0).any() or (values > 1).any():
        msg = "p-values must lie in [0, 1]."
        raise ValueError(msg)
    m = values.size
    order = np.argsort(values, kind="stable")
    ranked = values[order] * m / np.arange(1, m + 1)
    # Step-up: each q is the smallest adjusted value at its rank or above.
    adjusted = np.minimum.accumulate(ranked[::-1])[::-1]
    adjusted = np.minimum(adjusted, 1.0)
    out = np.empty(m)
    out[order] = adjusted
    q_flat = q.ravel()
    q_flat[finite] = out
    return q_flat.reshape(p.shape)


def associate(
    sender: pd.DataFrame,
    receiver: pd.DataFrame,
    *,
    dataset: str,
    min_patients: int = 3,
) -> pd.DataFrame:
    """Spearman correlation across patients of every signature with every target.

    Parameters
    ----------
    sender
        Patient x signature (:func:`cd8exo.aggregate.sender_scores`).
    receiver
        Patient x target (:func:`cd8exo.aggregate.receiver_expression`).
    dataset
        Dataset id written in every row.
    min_patients
        Pairs with fewer patients (with values in both tables) are not tested.

    Returns
    -------
    One row per (signature, target), columns :data:`ASSOCIATION_COLUMNS`: ``n_patients``,
    ``rho`` and two-sided ``p_value`` of :func:`scipy.stats.spearmanr`, ``q_value``
    (Benjamini-Hochberg over all tested pairs of the dataset) and ``note`` (empty, or why
    ``rho``/``p_value`` are NaN: too few patients, or a constant vector). Sorted by
    ``p_value`` (NaN last).

    Notes
    -----
    Patients missing from either table are dropped; so, for each pair, are patients
    with a NaN in either vector (e.g. a target gene absent from the data).
    """
    if min_patients < 3:
        msg = f"min_patients must be at least 3 (Spearman needs 3 points), got {min_patients}."
        raise ValueError(msg)
    sender = sender.copy()
    receiver = receiver.copy()
    sender.index = sender.index.astype(str)
    receiver.index = receiver.index.astype(str)
    common = sender.index.intersection(receiver.index).sort_values()
    dropped = sender.index.symmetric_difference(receiver.index)
    if len(dropped):
        logger.info(
            "Dataset %r: patients in only one of sender/receiver are dropped: %s",
            dataset,
            ", ".join(map(str, dropped)),
        )
    sender = sender.loc[common]
    receiver = receiver.loc[common]

    rows = []
    for signature in sender.columns:
        s_all = sender[signature].to_numpy(dtype=np.float64)
        for target in receiver.columns:
            r_all = receiver[target].to_numpy(dtype=np.float64)
            both = ~np.isnan(s_all) & ~np.isnan(r_all)
            s, r = s_all[both], r_all[both]
            n = int(both.sum())
            rho = p_value = np.nan
            note = ""
            if n < min_patients:
                note = f"{n} patients < min_patients={min_patients}"
            elif np.all(s == s[0]):
                note = "sender score constant across patients"
            elif np.all(r == r[0]):
                note = "receiver expression constant across patients"
            else:
                result = stats.spearmanr(s, r)
                rho, p_value = float(result.statistic), float(result.pvalue)
            rows.append(
                {
                    "dataset": dataset,
                    "signature": str(signature),
                    "target": str(target),
                    "n_patients": n,
                    "rho": rho,
                    "p_value": p_value,
                    "note": note,
                }
            )
    table = pd.DataFrame(rows, columns=[c for c in ASSOCIATION_COLUMNS if c != "q_value"])
    table["q_value"] = benjamini_hochberg(table["p_value"].to_numpy(dtype=np.float64))
    table = table[ASSOCIATION_COLUMNS]
    table = table.sort_values("p_value", kind="stable", na_position="last").reset_index(drop=True)
    n_tested = int(table["p_value"].notna().sum())
    logger.info(
        "Dataset %r: %d pairs tested over %d patients (%d not tested)",
        dataset,
        n_tested,
        len(common),
        len(table) - n_tested,
    )
    return table
