"""Compare recovered associations with a planted truth (simulated cohorts)."""

from __future__ import annotations

import numpy as np
import pandas as pd

__all__ = ["check_truth"]


def check_truth(
    associations: pd.DataFrame, truth: pd.DataFrame, *, fdr: float = 0.05
) -> pd.DataFrame:
    """Classify each planted (dataset, signature, target) pair as recovered or not.

    Parameters
    ----------
    associations
        Rows with dataset, signature, target, rho, q_value.
    truth
        Rows with dataset, signature, target, expected_sign (-1, 0 or 1).
    fdr
        q-value threshold for calling an association.

    Returns
    -------
    The truth rows with ``rho``, ``q_value`` and ``outcome``: ``true positive`` (called with
    the planted sign), ``wrong sign``, ``missed`` (planted, not called), ``false positive``
    (planted 0, called) or ``true negative``; and ``as_planted`` (bool). Pairs of the truth
    that were not tested get outcome ``not tested``.
    """
    keys = ["dataset", "signature", "target"]
    merged = truth[[*keys, "expected_sign"]].merge(
        associations[[*keys, "rho", "q_value"]], on=keys, how="left"
    )
    called = merged["q_value"] < fdr
    sign = np.sign(merged["rho"])
    expected = merged["expected_sign"].astype(int)
    outcome = np.select(
        [
            merged["q_value"].isna(),
            (expected != 0) & called & (sign == expected),
            (expected != 0) & called,
            expected != 0,
            called,
        ],
        ["not tested", "true positive", "wrong sign", "missed", "false positive"],
        default="true negative",
    )
    merged["outcome"] = outcome
    merged["as_planted"] = merged["outcome"].isin(["true positive", "true negative"])
    return merged
