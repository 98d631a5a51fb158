"""Multiple-testing correction."""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np

logger = logging.getLogger(__name__)

__all__ = ["benjamini_hochberg"]


def benjamini_hochberg(p_values: Sequence[float] | np.ndarray) -> np.ndarray:
    """Benjamini-Hochberg q values; missing p values stay missing and are not counted.

    ``q_(i) = min_{j >= i} m p_(j) / j`` over the ``m`` non-missing p values sorted
    ascending, capped at 1 (as ``statsmodels.stats.multitest.multipletests(...,
    method="fdr_bh")``).

    Parameters
    ----------
    p_values
        The family's p values.

    Returns
    -------
    numpy.ndarray
        q values in the input order.
    """
    p = np.asarray(p_values, dtype=float)
    q = np.full(p.shape, np.nan)
    ok = np.isfinite(p)
    m = int(ok.sum())
    if m == 0:
        return q
    if np.any((p[ok] < 0) | (p[ok] > 1)):
        msg = "benjamini_hochberg: p values must lie in [0, 1]."
        raise ValueError(msg)
    order = np.argsort(p[ok], kind="stable")
    ranked = p[ok][order] * m / np.arange(1, m + 1)
    ranked = np.minimum.accumulate(ranked[::-1])[::-1]
    out = np.empty(m)
    out[order] = np.minimum(ranked, 1.0)
    q[ok] = out
    return q
