"""Negative-binomial counts drawn straight into sparse form (the scale cohorts' sampler).

A cell of a 20,000-gene cohort detects ~1,500 genes: drawing a gamma and a Poisson variate
for each of the other 18,500 (as :mod:`cd8exo.sim.cohort` does for its 2,000-gene cohorts)
would take about an hour per million cells. :func:`sparse_nb` draws the same distribution
(``NB(mean mu, dispersion phi)``: variance ``mu + phi mu^2``) with one uniform per entry and
work on the non-zero entries only:

1. An entry is non-zero with probability ``p = 1 - (1 + mu phi)^(-1/phi)``. One uniform
   ``u`` per entry (float32: ``p`` below 2^-24 is resolved as 0 or 2^-24); the entry is
   non-zero when ``u < p``. ``p`` is computed only where
   ``u`` is below the largest ``p`` of its gene among cells of the same type and a similar
   library size (cells of a type differ only by library size), so for about 1.5 times the
   non-zeros.
2. The value of a non-zero entry is drawn from the zero-truncated NB: by inverting its CDF
   (the pmf recurrence ``P(k+1) = P(k) (k + r) / (k + 1) q``, ``r = 1/phi``,
   ``q = mu phi / (1 + mu phi)``) where ``mu <= 20``, and by redrawing gamma-Poisson
   variates until they are non-zero above (where zeros are rare).
"""

from __future__ import annotations

import numpy as np
from scipy import sparse

__all__ = ["sparse_nb"]

# above this mean, a zero-truncated draw is a redrawn gamma-Poisson variate (P(0) is small)
_REDRAW_ABOVE = 20.0
# a CDF inversion stops here (P(count > 10,000 | mu <= 20) is far below float precision)
_MAX_STEPS = 10_000
# cells of a type are bounded together in groups of about this many (by library size)
_GROUP = 128


def sparse_nb(
    fractions: np.ndarray,
    *,
    cell_types: np.ndarray,
    scale: np.ndarray,
    dispersion: np.ndarray,
    rng: np.random.Generator,
) -> sparse.csr_matrix:
    """Counts ``NB(fractions[cell_types[c], g] * scale[c], dispersion[g])``, as CSR float32.

    Parameters
    ----------
    fractions
        Types x genes, the expected share of a cell's counts in each gene (>= 0).
    cell_types
        Row of ``fractions`` of each cell (cells x 1, integers).
    scale
        Library size of each cell (> 0).
    dispersion
        ``phi`` of each gene (> 0).
    rng
        Generator of every draw.

    Returns
    -------
    Cells x genes, sorted indices, integer values stored as float32.
    """
    n_cells, n_genes = cell_types.size, fractions.shape[1]
    r = 1.0 / dispersion
    u = rng.random((n_cells, n_genes), dtype=np.float32)
    rows, cols = [], []
    for t, members in _groups(cell_types, scale):
        p_max = _p_nonzero(fractions[t] * scale[members].max(), dispersion, r)
        cand_rows, cand_cols = np.nonzero(u[members] < p_max)
        cand_cells = members[cand_rows]
        mu = fractions[t, cand_cols] * scale[cand_cells]
        keep = u[cand_cells, cand_cols] < _p_nonzero(mu, dispersion[cand_cols], r[cand_cols])
        rows.append(cand_cells[keep])
        cols.append(cand_cols[keep])
    del u
    row, col = np.concatenate(rows), np.concatenate(cols)
    mu = fractions[cell_types[row], col] * scale[row]
    values = _truncated_nb(mu, dispersion[col], rng=rng)
    counts = sparse.csr_matrix(
        (values.astype(np.float32), (row, col)), shape=(n_cells, n_genes), dtype=np.float32
    )
    counts.sort_indices()
    return counts


def _groups(cell_types: np.ndarray, scale: np.ndarray) -> list[tuple[int, np.ndarray]]:
    """Cells of one type with similar library sizes, so that the bound of step 1 is tight."""
    groups = []
    for t in np.unique(cell_types):
        members = np.flatnonzero(cell_types == t)
        members = members[np.argsort(scale[members], kind="stable")]
        groups += [(int(t), part) for part in np.array_split(members, -(-members.size // _GROUP))]
    return groups


def _p_nonzero(mu: np.ndarray, dispersion: np.ndarray, r: np.ndarray) -> np.ndarray:
    """``1 - (1 + mu phi)^(-r)`` without cancellation for small ``mu``."""
    return -np.expm1(-r * np.log1p(mu * dispersion))


def _truncated_nb(
    mu: np.ndarray, dispersion: np.ndarray, *, rng: np.random.Generator
) -> np.ndarray:
    """One draw of ``NB(mu, dispersion)`` conditioned on being > 0, per entry."""
    out = np.zeros(mu.size, dtype=np.int64)
    high = mu > _REDRAW_ABOVE
    out[~high] = _inverted(mu[~high], dispersion[~high], rng=rng)
    todo = np.flatnonzero(high)
    while todo.size:
        shape = 1.0 / dispersion[todo]
        draws = rng.poisson(rng.gamma(shape, mu[todo] * dispersion[todo]))
        out[todo] = draws
        todo = todo[draws == 0]
    return out


def _inverted(mu: np.ndarray, dispersion: np.ndarray, *, rng: np.random.Generator) -> np.ndarray:
    """Inverse-CDF draws of the zero-truncated NB (``mu`` moderate)."""
    r = 1.0 / dispersion
    q = mu * dispersion / (1.0 + mu * dispersion)
    p_zero = np.exp(-r * np.log1p(mu * dispersion))
    # mass of {1..k} to reach: a uniform share of P(count > 0)
    remaining = rng.random(mu.size) * _p_nonzero(mu, dispersion, r)
    pmf = p_zero * r * q  # P(1)
    out = np.ones(mu.size, dtype=np.int64)
    active = np.arange(mu.size)
    for k in range(1, _MAX_STEPS):
        # (pmf 0: the rest of the mass is below float precision; keep k)
        done = (remaining <= pmf) | (pmf <= 0.0)
        active, remaining, pmf = active[~done], remaining[~done] - pmf[~done], pmf[~done]
        if not active.size:
            break
        pmf = pmf * (k + r[active]) / (k + 1) * q[active]
        out[active] = k + 1
    return out
