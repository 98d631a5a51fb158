"""Patient-level association statistics: one row per (dataset, signature, target).

The patient is the unit of inference. For every sender signature (a per-patient
CD8 T-cell score) and receiver target (a per-patient malignant-cell expression
value) this module gives

- Spearman's rho with its asymptotic p value, and Pearson's r with its p value;
- a percentile (or BCa) bootstrap confidence interval of rho, resampling patients;
- a patient-label permutation p value, exact when all ``n!`` relabellings can be
  enumerated, else Monte Carlo with the ``(b + 1) / (m + 1)`` correction;
- Benjamini-Hochberg q values over a stated family of tests;
- a rank-based partial correlation adjusting for per-patient covariates;
- leave-one-patient-out influence (the largest change in rho);
- a specificity p value against random gene sets matched in size and expression.

Everything random takes an ``rng`` (a seed or a :class:`numpy.random.Generator`).
The work is vectorised over all targets of one signature: bootstrap resamples and
permutations are drawn once per signature (per set of complete patients) and shared
by its targets, so a target's draws do not depend on how many targets share them.

Spearman's rho is Pearson's r on average ranks (ties share their mean rank), the
definition used by :func:`scipy.stats.spearmanr`.
"""

from __future__ import annotations

import itertools
import logging
import math
import warnings
from collections.abc import Iterable, Mapping, Sequence

import numpy as np
import pandas as pd
from scipy import stats as sps
from scipy.special import ndtr, ndtri

from cd8exo._utils import as_rng

__all__ = [
    "ASSOCIATION_COLUMNS",
    "association_table",
    "benjamini_hochberg",
    "empirical_p",
    "loo_influence",
    "matched_random_sets",
    "partial_spearman",
    "permutation_p",
    "spearman_bootstrap_ci",
    "specificity_p_values",
]

logger = logging.getLogger(__name__)

#: Columns of :func:`association_table`, in order.
ASSOCIATION_COLUMNS: tuple[str, ...] = (
    "dataset",
    "signature",
    "target",
    "n_patients",
    "rho",
    "p_value",
    "q_value",
    "pearson_r",
    "pearson_p",
    "ci_low",
    "ci_high",
    "perm_p_value",
    "perm_q_value",
    "partial_rho",
    "partial_p_value",
    "partial_n_patients",
    "partial_covariates",
    "loo_max_delta",
    "loo_patient",
    "family",
    "family_size",
    "perm_method",
    "ci_method",
    "note",
)

_CI_METHODS = ("percentile", "bca")
_FAMILIES = ("dataset", "signature")
# Work arrays are processed in chunks of about this many float64 elements (~16 MB).
_CHUNK_ELEMENTS = 2_000_000


# --------------------------------------------------------------------------------------
# vectorised kernels (x: (n,), Y: (n, t); no missing values)
# --------------------------------------------------------------------------------------


def _unit_columns(a: np.ndarray) -> np.ndarray:
    """Centre each column and scale it to unit Euclidean norm; constant columns become NaN."""
    centred = a - a.mean(axis=0)
    norm = np.sqrt((centred**2).sum(axis=0))
    # a column is constant when its spread is at the rounding level of its values
    scale = np.abs(a).max(axis=0) if a.shape[0] else np.zeros(a.shape[1:])
    constant = norm <= 1e-12 * scale * math.sqrt(max(a.shape[0], 1))
    with np.errstate(invalid="ignore", divide="ignore"):
        out = centred / np.where(constant, np.nan, norm)
    return out


def _pearson_vec(x: np.ndarray, y_matrix: np.ndarray) -> np.ndarray:
    """Pearson r of ``x`` (n,) with every column of ``y_matrix`` (n, t)."""
    ux = _unit_columns(x[:, None])[:, 0]
    uy = _unit_columns(y_matrix)
    r = ux @ uy
    return np.clip(r, -1.0, 1.0)


def _correlation_p(r: np.ndarray, df: np.ndarray | int) -> np.ndarray:
    """Two-sided p of a correlation from Student's t with ``df`` degrees of freedom.

    The same test as :func:`scipy.stats.spearmanr` (df = n - 2) and, equivalently to its
    exact beta form, :func:`scipy.stats.pearsonr`.
    """
    r = np.asarray(r, dtype=float)
    df = np.broadcast_to(np.asarray(df, dtype=float), r.shape)
    out = np.full(r.shape, np.nan)
    ok = np.isfinite(r) & (df > 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        t = r[ok] * np.sqrt(df[ok] / ((1.0 - r[ok]) * (1.0 + r[ok])))
    out[ok] = 2.0 * sps.t.sf(np.abs(t), df[ok])
    return out


def _bootstrap_weights(n: int, n_boot: int, rng: np.random.Generator) -> np.ndarray:
    """Multiplicity of every patient in ``n_boot`` resamples, shape (n_boot, n).

    The indices are drawn as ``rng.integers(0, n, (n_boot, n))``, the same draw as
    :func:`scipy.stats.bootstrap` with ``paired=True`` makes from the same generator.
    """
    idx = rng.integers(0, n, (n_boot, n))
    offsets = (np.arange(n_boot) * n)[:, None]
    return np.bincount((idx + offsets).ravel(), minlength=n_boot * n).reshape(n_boot, n)


def _bootstrap_spearman(x: np.ndarray, y_matrix: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Spearman rho of every bootstrap resample, shape (n_boot, t).

    A resample is represented by patient multiplicities ``w``. The average rank, within
    the resample, of a value equal to patient i's is ``sum_j w_j [v_j < v_i] +
    (sum_j w_j [v_j == v_i] + 1) / 2``, and the resample's Pearson r on ranks is the
    ``w``-weighted Pearson r: identical to ranking the resampled values, without sorting.
    """
    n, t = y_matrix.shape
    n_boot = weights.shape[0]
    w = weights.astype(float)
    cmp_x = (x[:, None] < x[None, :]) + 0.5 * (x[:, None] == x[None, :])  # (j, i)
    cmp_y = (y_matrix[:, None, :] < y_matrix[None, :, :]) + 0.5 * (
        y_matrix[:, None, :] == y_matrix[None, :, :]
    )  # (j, i, t)
    cmp_y = cmp_y.reshape(n, n * t)
    out = np.empty((n_boot, t))
    chunk = max(1, _CHUNK_ELEMENTS // max(1, n * t))
    for start in range(0, n_boot, chunk):
        wc = w[start : start + chunk]  # (b, n)
        rank_x = wc @ cmp_x + 0.5  # (b, n)
        rank_y = (wc @ cmp_y).reshape(-1, n, t) + 0.5  # (b, n, t)
        wx = wc * rank_x
        mean_x = wx.sum(axis=1) / n
        mean_y = np.matmul(wc[:, None, :], rank_y)[:, 0, :] / n
        sxy = np.matmul(wx[:, None, :], rank_y)[:, 0, :] - n * mean_x[:, None] * mean_y
        sxx = (wx * rank_x).sum(axis=1) - n * mean_x**2
        syy = np.matmul(wc[:, None, :], rank_y * rank_y)[:, 0, :] - n * mean_y**2
        # a resample with two or more distinct values has a rank sum of squares of at
        # least (n - 1) / n * (n / 2)**2 >= 3; below 0.5 it is constant up to rounding
        defined = (sxx[:, None] > 0.5) & (syy > 0.5)
        with np.errstate(invalid="ignore", divide="ignore"):
            rho = np.where(defined, sxy / np.sqrt(sxx[:, None] * syy), np.nan)
        out[start : start + chunk] = np.clip(rho, -1.0, 1.0)
    return out


def _loo_spearman(x: np.ndarray, y_matrix: np.ndarray) -> np.ndarray:
    """Spearman rho with each patient left out in turn, shape (n, t); ranks recomputed."""
    n = x.shape[0]
    keep = np.array([np.delete(np.arange(n), i) for i in range(n)])  # (n, n-1)
    rank_x = sps.rankdata(x[keep], axis=1)  # (n, n-1)
    rank_y = sps.rankdata(y_matrix[keep], axis=1)  # (n, n-1, t)
    ux = rank_x - rank_x.mean(axis=1, keepdims=True)
    uy = rank_y - rank_y.mean(axis=1, keepdims=True)
    sxy = np.einsum("ij,ijt->it", ux, uy)
    sxx = (ux**2).sum(axis=1)
    syy = (uy**2).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        denom = np.sqrt(sxx[:, None] * syy)
        rho = np.where(denom > 0, sxy / denom, np.nan)
    return np.clip(rho, -1.0, 1.0)


def _ci_from_bootstrap(
    boot: np.ndarray,
    *,
    level: float,
    method: str,
    rho: np.ndarray,
    jackknife: np.ndarray | None,
) -> tuple[np.ndarray, np.ndarray]:
    """Percentile or BCa interval per column of ``boot`` (n_boot, t).

    Mirrors :func:`scipy.stats.bootstrap`: linear interpolation between order statistics,
    BCa bias from the 'mean' percentile of the observed value, acceleration from the
    jackknife (Efron & Tibshirani 1993, eq. 14.15). Resamples whose rho is undefined
    (a constant resample) are dropped.
    """
    alpha = (1.0 - level) / 2.0
    t = boot.shape[1]
    if method == "percentile":
        with np.errstate(invalid="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN columns stay NaN
            low, high = np.nanquantile(boot, [alpha, 1.0 - alpha], axis=0)
        undefined = ~np.isfinite(rho)
        low[undefined] = np.nan
        high[undefined] = np.nan
        return low, high
    low = np.full(t, np.nan)
    high = np.full(t, np.nan)
    for j in range(t):
        b = boot[:, j]
        b = b[np.isfinite(b)]
        if b.size == 0 or not np.isfinite(rho[j]):
            continue
        z0 = ndtri(((b < rho[j]).sum() + (b <= rho[j]).sum()) / (2.0 * b.size))
        jack = jackknife[:, j]
        jack = jack[np.isfinite(jack)]
        u = jack.mean() - jack
        denom = 6.0 * ((u**2).sum()) ** 1.5
        a_hat = (u**3).sum() / denom if denom > 0 else 0.0
        z = ndtri(np.array([alpha, 1.0 - alpha]))
        q = ndtr(z0 + (z0 + z) / (1.0 - a_hat * (z0 + z)))
        if np.all(np.isfinite(q)):
            low[j], high[j] = np.quantile(b, q)
    return low, high


def _exact_permutations(n: int) -> Iterable[np.ndarray]:
    """All ``n!`` permutations of ``range(n)``, in blocks to bound memory."""
    block = max(1, _CHUNK_ELEMENTS // max(1, n))
    iterator = itertools.permutations(range(n))
    while True:
        rows = list(itertools.islice(iterator, block))
        if not rows:
            return
        yield np.array(rows, dtype=np.intp)


def _monte_carlo_permutations(
    n: int, n_perm: int, rng: np.random.Generator
) -> Iterable[np.ndarray]:
    """``n_perm`` uniform random permutations of ``range(n)`` (with replacement), in blocks."""
    block = max(1, _CHUNK_ELEMENTS // max(1, n))
    for start in range(0, n_perm, block):
        size = min(block, n_perm - start)
        yield rng.permuted(np.tile(np.arange(n), (size, 1)), axis=1)


def _use_exact(n: int, exact_max: int) -> bool:
    # n! grows fast: compare without computing huge factorials
    total = 1
    for k in range(2, n + 1):
        total *= k
        if total > exact_max:
            return False
    return True


def _permutation_p_vec(
    rank_x: np.ndarray,
    rank_y: np.ndarray,
    rho: np.ndarray,
    *,
    n_perm: int,
    exact_max: int,
    rng: np.random.Generator,
) -> tuple[np.ndarray, str]:
    """Two-sided permutation p on |rho| for every column of ``rank_y``; and the method used."""
    n, t = rank_y.shape
    ux = _unit_columns(rank_x[:, None])[:, 0]
    uy = _unit_columns(rank_y)
    abs_obs = np.abs(rho)
    # scipy.stats.permutation_test's tolerance: ties with the observed value count as
    # at least as extreme despite floating-point noise
    tolerance = abs_obs * np.finfo(float).eps * 100
    hits = np.zeros(t)
    exact = _use_exact(n, exact_max)
    blocks = _exact_permutations(n) if exact else _monte_carlo_permutations(n, n_perm, rng)
    total = 0
    rows_per_chunk = max(1, _CHUNK_ELEMENTS // max(1, t))
    for perms in blocks:
        for start in range(0, perms.shape[0], rows_per_chunk):
            chunk = perms[start : start + rows_per_chunk]
            null = ux[chunk] @ uy  # (m, t): rho of every relabelling with every target
            hits += (np.abs(null) >= abs_obs - tolerance).sum(axis=0)
            total += chunk.shape[0]
    if exact:
        pval = hits / total
        method = f"exact ({total} permutations)"
    else:
        pval = (hits + 1.0) / (total + 1.0)
        method = f"monte_carlo ({total} permutations)"
    pval[~np.isfinite(rho)] = np.nan
    return pval, method


def _residualise(design: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, int]:
    """OLS residuals of each column of ``values`` on ``design``; and the design's rank."""
    coef, _, rank, _ = np.linalg.lstsq(design, values, rcond=None)
    return values - design @ coef, int(rank)


def _partial_vec(
    x: np.ndarray, y_matrix: np.ndarray, covariates: np.ndarray
) -> tuple[np.ndarray, np.ndarray, int]:
    """Rank-based partial correlation of ``x`` with each column; (rho, p, residual df)."""
    n = x.shape[0]
    rank_x = sps.rankdata(x)
    rank_y = sps.rankdata(y_matrix, axis=0)
    rank_c = sps.rankdata(covariates, axis=0) if covariates.shape[1] else covariates
    design = np.column_stack([np.ones(n), rank_c])
    resid, rank = _residualise(design, np.column_stack([rank_x, rank_y]))
    # k covariates (counted by the rank of the design, so an exactly collinear or constant
    # covariate does not cost a degree of freedom): df = n - 2 - k
    df = n - 1 - rank
    rho = _pearson_vec(resid[:, 0], resid[:, 1:])
    if df < 1:
        return np.full(rho.shape, np.nan), np.full(rho.shape, np.nan), df
    return rho, _correlation_p(rho, df), df


# --------------------------------------------------------------------------------------
# input checking
# --------------------------------------------------------------------------------------


def _paired_vectors(x, y, *, where: str) -> tuple[np.ndarray, np.ndarray]:
    x_arr = np.asarray(x, dtype=float)
    y_arr = np.asarray(y, dtype=float)
    if x_arr.ndim != 1 or y_arr.ndim != 1 or x_arr.shape != y_arr.shape:
        msg = (
            f"{where}: x and y must be 1-D with one value per patient and the same length; "
            f"got shapes {x_arr.shape} and {y_arr.shape}."
        )
        raise ValueError(msg)
    bad = ~(np.isfinite(x_arr) & np.isfinite(y_arr))
    if bad.any():
        msg = (
            f"{where}: {int(bad.sum())} patient(s) have a missing or infinite value; drop "
            "incomplete patients first (association_table does this per pair)."
        )
        raise ValueError(msg)
    if x_arr.shape[0] < 4:
        msg = f"{where}: needs at least 4 patients, got {x_arr.shape[0]}."
        raise ValueError(msg)
    return x_arr, y_arr


def _check_level(level: float) -> None:
    if not 0.0 < level < 1.0:
        msg = f"level must be between 0 and 1 (e.g. 0.95), got {level!r}."
        raise ValueError(msg)


def _check_ci_method(method: str) -> None:
    if method not in _CI_METHODS:
        msg = f"ci method must be one of {_CI_METHODS}, got {method!r}."
        raise ValueError(msg)


def _check_numeric_table(table: pd.DataFrame, *, name: str) -> pd.DataFrame:
    if not isinstance(table, pd.DataFrame):
        msg = f"{name} must be a pandas DataFrame (patients x columns), got {type(table).__name__}."
        raise TypeError(msg)
    if table.index.has_duplicates:
        dup = table.index[table.index.duplicated()].unique().tolist()[:5]
        msg = f"{name} has duplicated patients in its index: {dup}; give one row per patient."
        raise ValueError(msg)
    if table.columns.has_duplicates:
        dup = table.columns[table.columns.duplicated()].unique().tolist()[:5]
        msg = f"{name} has duplicated columns: {dup}; column names must be unique."
        raise ValueError(msg)
    non_numeric = [c for c in table.columns if not pd.api.types.is_numeric_dtype(table[c])]
    if non_numeric:
        msg = (
            f"{name} has non-numeric columns {non_numeric[:5]}; pass only numeric per-patient "
            "values (patients as the index)."
        )
        raise ValueError(msg)
    return table.astype(float)


# --------------------------------------------------------------------------------------
# public single-pair functions
# --------------------------------------------------------------------------------------


def spearman_bootstrap_ci(
    x: Sequence[float] | np.ndarray | pd.Series,
    y: Sequence[float] | np.ndarray | pd.Series,
    *,
    n_boot: int = 2000,
    level: float = 0.95,
    method: str = "percentile",
    rng: np.random.Generator | int | None,
) -> tuple[float, float]:
    """Bootstrap confidence interval of Spearman's rho, resampling patients.

    Patients (x, y pairs) are resampled with replacement ``n_boot`` times; each resample
    is re-ranked and its rho computed. With ``method="percentile"`` the interval is the
    ``(1 - level) / 2`` and ``(1 + level) / 2`` quantiles (linear interpolation) of the
    bootstrap rhos; with ``method="bca"`` the quantile levels are bias-corrected and
    accelerated (Efron & Tibshirani 1993, ch. 14), the acceleration from the
    leave-one-patient-out jackknife. Both match :func:`scipy.stats.bootstrap` with
    ``paired=True`` and the same generator exactly. Resamples in which one variable is
    constant (rho undefined) are dropped.

    Parameters
    ----------
    x, y
        One value per patient, no missing values, at least 4 patients.
    n_boot
        Number of bootstrap resamples.
    level
        Confidence level.
    method
        ``"percentile"`` (default) or ``"bca"``.
    rng
        Seed or generator for the resampling.

    Returns
    -------
    tuple of float
        ``(low, high)``; NaN when rho itself is undefined (a constant variable).
    """
    x_arr, y_arr = _paired_vectors(x, y, where="spearman_bootstrap_ci")
    _check_level(level)
    _check_ci_method(method)
    if n_boot < 1:
        msg = f"n_boot must be a positive number of resamples, got {n_boot}."
        raise ValueError(msg)
    generator = as_rng(rng)
    y_matrix = y_arr[:, None]
    rho = _pearson_vec(sps.rankdata(x_arr), sps.rankdata(y_matrix, axis=0))
    boot = _bootstrap_spearman(x_arr, y_matrix, _bootstrap_weights(len(x_arr), n_boot, generator))
    jack = _loo_spearman(x_arr, y_matrix) if method == "bca" else None
    low, high = _ci_from_bootstrap(boot, level=level, method=method, rho=rho, jackknife=jack)
    return float(low[0]), float(high[0])


def permutation_p(
    x: Sequence[float] | np.ndarray | pd.Series,
    y: Sequence[float] | np.ndarray | pd.Series,
    *,
    n_perm: int = 10000,
    rng: np.random.Generator | int | None,
    exact_max: int = 40320,
) -> float:
    """Patient-label permutation p value of Spearman's rho, two-sided on ``|rho|``.

    The null distribution shuffles which patient's ``x`` goes with which ``y``. When
    ``n! <= exact_max`` (default 40320 = 8!) all ``n!`` relabellings are enumerated and
    ``p = #{|rho_perm| >= |rho_obs|} / n!`` is exact (the identity is one of them, so
    ``p >= 1/n!``); otherwise ``n_perm`` random relabellings give
    ``p = (b + 1) / (m + 1)`` with ``b`` the number at least as extreme (Phipson & Smyth
    2010, Stat Appl Genet Mol Biol 9:39), never zero. Values within floating-point noise
    of ``|rho_obs|`` count as ties, as in :func:`scipy.stats.permutation_test`.

    Parameters
    ----------
    x, y
        One value per patient, no missing values, at least 4 patients.
    n_perm
        Number of Monte Carlo permutations (ignored when enumeration is exact).
    rng
        Seed or generator for the Monte Carlo permutations.
    exact_max
        Largest ``n!`` that is enumerated exactly.

    Returns
    -------
    float
        The p value; NaN when rho is undefined (a constant variable).
    """
    x_arr, y_arr = _paired_vectors(x, y, where="permutation_p")
    if n_perm < 1:
        msg = f"n_perm must be a positive number of permutations, got {n_perm}."
        raise ValueError(msg)
    rank_x = sps.rankdata(x_arr)
    rank_y = sps.rankdata(y_arr)[:, None]
    rho = _pearson_vec(rank_x, rank_y)
    pval, _ = _permutation_p_vec(
        rank_x, rank_y, rho, n_perm=n_perm, exact_max=exact_max, rng=as_rng(rng)
    )
    return float(pval[0])


def partial_spearman(
    x: Sequence[float] | np.ndarray | pd.Series,
    y: Sequence[float] | np.ndarray | pd.Series,
    covariates: pd.DataFrame,
) -> tuple[float, float]:
    """Rank-based (Spearman) partial correlation of x and y given per-patient covariates.

    x, y and every covariate are ranked (average ranks); the ranks of x and of y are
    each regressed by ordinary least squares on an intercept and the ranked covariates,
    and the partial rho is the Pearson correlation of the two residual vectors — the
    definition of ``pingouin.partial_corr(method="spearman")``. The p value is from
    Student's t with ``n - 2 - k`` degrees of freedom, ``k`` being the number of
    linearly independent covariates (a constant or duplicated covariate is not counted).

    Parameters
    ----------
    x, y
        One value per patient, no missing values.
    covariates
        Patients x covariates, numeric, in the same patient order as ``x`` and ``y``
        (its index is not used for alignment here), no missing values.

    Returns
    -------
    tuple of float
        ``(partial_rho, p_value)``; NaN when no residual degree of freedom remains or a
        residual vector is constant.
    """
    x_arr, y_arr = _paired_vectors(x, y, where="partial_spearman")
    cov = _check_numeric_table(pd.DataFrame(covariates), name="covariates")
    if len(cov) != len(x_arr):
        msg = (
            f"partial_spearman: covariates has {len(cov)} rows but x and y have "
            f"{len(x_arr)} patients; pass one covariate row per patient, in the same order."
        )
        raise ValueError(msg)
    values = cov.to_numpy()
    if not np.all(np.isfinite(values)):
        msg = "partial_spearman: covariates contain missing values; drop those patients first."
        raise ValueError(msg)
    rho, pval, _ = _partial_vec(x_arr, y_arr[:, None], values)
    return float(rho[0]), float(pval[0])


def loo_influence(
    x: Sequence[float] | np.ndarray | pd.Series,
    y: Sequence[float] | np.ndarray | pd.Series,
) -> tuple[float, object]:
    """Leave-one-patient-out influence on Spearman's rho.

    Each patient is left out in turn, ranks are recomputed on the remaining ``n - 1``
    patients and rho re-estimated. The influence of a patient is ``|rho_(-i) - rho|``.

    Parameters
    ----------
    x, y
        One value per patient, no missing values, at least 4 patients. If ``x`` is a
        :class:`pandas.Series` its index labels the patients; otherwise positions do.

    Returns
    -------
    tuple
        ``(max_abs_delta, patient)``: the largest change of rho and the label of the
        patient whose removal causes it (the first such patient on ties). ``(nan, None)``
        when rho is undefined.
    """
    labels = x.index if isinstance(x, pd.Series) else pd.RangeIndex(len(np.asarray(x)))
    x_arr, y_arr = _paired_vectors(x, y, where="loo_influence")
    y_matrix = y_arr[:, None]
    rho = _pearson_vec(sps.rankdata(x_arr), sps.rankdata(y_matrix, axis=0))
    delta, which = _loo_summary(_loo_spearman(x_arr, y_matrix), rho)
    if not np.isfinite(delta[0]):
        return float("nan"), None
    return float(delta[0]), labels[int(which[0])]


def _loo_summary(loo: np.ndarray, rho: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Largest |rho_(-i) - rho| per column and the row index where it occurs (-1 if none)."""
    delta = np.abs(loo - rho[None, :])
    finite = np.isfinite(delta) & np.isfinite(rho)[None, :]
    filled = np.where(finite, delta, -np.inf)
    which = filled.argmax(axis=0)
    best = filled[which, np.arange(filled.shape[1])]
    ok = np.isfinite(best)
    return np.where(ok, best, np.nan), np.where(ok, which, -1)


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


# --------------------------------------------------------------------------------------
# specificity: matched random gene sets
# --------------------------------------------------------------------------------------


def matched_random_sets(
    signature_genes: Sequence[str],
    gene_means: pd.Series,
    *,
    n_sets: int = 200,
    n_bins: int = 25,
    rng: np.random.Generator | int | None,
) -> list[list[str]]:
    """Random gene sets matched to a signature in size and expression.

    Genes are split into ``n_bins`` bins of (nearly) equal size by their mean
    expression (as :func:`scanpy.tl.score_genes` bins its control genes). Each random
    set replaces every signature gene by a gene drawn from the same bin; within a set
    genes are drawn without replacement, and no signature gene is ever drawn.

    Parameters
    ----------
    signature_genes
        The signature's genes. Genes absent from ``gene_means`` (or with a missing
        mean) are dropped with a warning naming them.
    gene_means
        Mean expression per gene (index: gene symbols), over the cells the signature is
        scored in.
    n_sets
        Number of random sets.
    n_bins
        Number of expression bins.
    rng
        Seed or generator.

    Returns
    -------
    list of list of str
        ``n_sets`` gene lists; gene ``j`` of each list comes from the bin of the ``j``-th
        retained signature gene (in the order given).
    """
    if not isinstance(gene_means, pd.Series):
        msg = (
            f"gene_means must be a pandas Series indexed by gene, got {type(gene_means).__name__}."
        )
        raise TypeError(msg)
    if gene_means.index.has_duplicates:
        dup = gene_means.index[gene_means.index.duplicated()].unique().tolist()[:5]
        msg = f"gene_means has duplicated genes {dup}; give one mean per gene."
        raise ValueError(msg)
    if n_sets < 1 or n_bins < 1:
        msg = f"n_sets and n_bins must be positive, got n_sets={n_sets}, n_bins={n_bins}."
        raise ValueError(msg)
    means = gene_means.astype(float).dropna()
    genes = list(dict.fromkeys(signature_genes))
    missing = [g for g in genes if g not in means.index]
    if missing:
        logger.warning(
            "matched_random_sets: %d signature gene(s) have no expression mean and are dropped: %s",
            len(missing),
            ", ".join(missing),
        )
    genes = [g for g in genes if g in means.index]
    if not genes:
        msg = (
            "matched_random_sets: none of the signature genes are in gene_means; check "
            "that gene symbols match the dataset's var_names."
        )
        raise ValueError(msg)
    if n_bins > len(means):
        msg = f"matched_random_sets: n_bins={n_bins} exceeds the number of genes ({len(means)})."
        raise ValueError(msg)
    # equal-count bins on the rank (ties broken by order) so every bin has a pool
    bins = pd.Series(
        np.floor(means.rank(method="first").to_numpy() - 1) * n_bins // len(means),
        index=means.index,
    ).astype(int)
    is_signature = means.index.isin(genes)
    generator = as_rng(rng)
    sets = np.empty((n_sets, len(genes)), dtype=object)
    signature_bins = bins.loc[genes].to_numpy()
    for b in np.unique(signature_bins):
        slots = np.flatnonzero(signature_bins == b)
        pool = means.index[(bins.to_numpy() == b) & ~is_signature].to_numpy()
        if pool.size < slots.size:
            msg = (
                f"matched_random_sets: expression bin {b} holds {slots.size} signature "
                f"gene(s) but only {pool.size} other gene(s) to draw from; use fewer bins "
                f"(n_bins={n_bins})."
            )
            raise ValueError(msg)
        draws = generator.permuted(np.tile(np.arange(pool.size), (n_sets, 1)), axis=1)
        sets[:, slots] = pool[draws[:, : slots.size]]
    return [list(row) for row in sets]


def empirical_p(
    observed: float | np.ndarray, null_values: Sequence[float] | np.ndarray
) -> float | np.ndarray:
    """Two-sided empirical p value of ``|observed|`` against a null sample.

    ``p = (b + 1) / (m + 1)`` with ``b`` the number of null values with ``|null| >=
    |observed|`` and ``m`` the number of non-missing null values (Phipson & Smyth 2010).

    Parameters
    ----------
    observed
        A scalar, or an array of shape ``S``.
    null_values
        Shape ``(m,)`` for a scalar ``observed``, or ``S + (m,)``: the null sample of
        each observed value along the last axis. Missing null values are ignored.

    Returns
    -------
    float or numpy.ndarray
        The p value(s); NaN where ``observed`` is missing or no null value is.
    """
    obs = np.asarray(observed, dtype=float)
    null = np.asarray(null_values, dtype=float)
    if null.ndim != obs.ndim + 1 or null.shape[:-1] != obs.shape:
        msg = (
            f"empirical_p: null_values must have shape observed.shape + (m,) = "
            f"{obs.shape} + (m,), got {null.shape}."
        )
        raise ValueError(msg)
    finite = np.isfinite(null)
    abs_obs = np.abs(obs)[..., None]
    tolerance = abs_obs * np.finfo(float).eps * 100
    hits = (finite & (np.abs(null) >= abs_obs - tolerance)).sum(axis=-1)
    m = finite.sum(axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        p = np.where(np.isfinite(obs) & (m > 0), (hits + 1.0) / (m + 1.0), np.nan)
    return float(p) if p.ndim == 0 else p


def specificity_p_values(
    associations: pd.DataFrame,
    *,
    null_scores: Mapping[str, pd.DataFrame],
    receiver: pd.DataFrame,
) -> pd.DataFrame:
    """Specificity of each (signature, target) association against matched random sets.

    For a signature, ``null_scores[signature]`` holds the per-patient scores of its
    matched random gene sets (from :func:`matched_random_sets`, scored exactly as the
    signature was). Each random set's Spearman rho with each target is computed over
    the patients with a target value and all random-set scores, and the observed rho
    (column ``rho`` of ``associations``) is compared with them by :func:`empirical_p`:
    two-sided on ``|rho|``, ``(b + 1) / (m + 1)``. A small p says the signature's
    association is stronger than that of gene sets of the same size and expression.

    Parameters
    ----------
    associations
        Output of :func:`association_table` for one dataset.
    null_scores
        Signature -> DataFrame, patients (index) x random sets (columns).
    receiver
        Patients x targets, the table ``associations`` was computed from.

    Returns
    -------
    pandas.DataFrame
        A copy of ``associations`` with columns ``specificity_p`` and
        ``specificity_n_sets`` (the number of random sets compared). Rows without
        random-set scores, with a missing rho, or whose null was computed on a different
        number of patients than the observed rho get NaN and a note.
    """
    required = {"signature", "target", "rho", "n_patients"}
    missing = required - set(associations.columns)
    if missing:
        msg = f"specificity_p_values: associations lacks columns {sorted(missing)}."
        raise ValueError(msg)
    if "dataset" in associations.columns and len(pd.unique(associations["dataset"])) > 1:
        msg = (
            "specificity_p_values: associations holds several datasets "
            f"({sorted(associations['dataset'].unique())[:5]}); call it once per dataset."
        )
        raise ValueError(msg)
    receiver = _check_numeric_table(receiver, name="receiver")
    out = associations.copy()
    spec_p = np.full(len(out), np.nan)
    n_sets = np.zeros(len(out), dtype=int)
    notes = (
        out["note"].fillna("").astype(str).tolist() if "note" in out.columns else [""] * len(out)
    )
    positions = pd.Series(np.arange(len(out)), index=out.index)

    for signature, rows in out.groupby("signature", sort=False):
        pos = positions.loc[rows.index].to_numpy()
        if signature not in null_scores:
            for i in pos:
                notes[i] = _join_notes(notes[i], "no random-set scores for specificity")
            continue
        null = _check_numeric_table(null_scores[signature], name=f"null_scores[{signature!r}]")
        patients = null.index.intersection(receiver.index)
        null = null.loc[patients]
        complete_null = np.isfinite(null.to_numpy()).all(axis=1)
        targets = rows["target"].to_numpy()
        unknown = [t for t in targets if t not in receiver.columns]
        if unknown:
            msg = (
                f"specificity_p_values: targets {unknown[:5]} of signature {signature!r} "
                "are not columns of receiver; pass the receiver table the associations "
                "were computed from."
            )
            raise ValueError(msg)
        y_all = receiver.loc[patients, list(targets)].to_numpy()
        masks = np.isfinite(y_all) & complete_null[:, None]
        for mask, cols in _group_columns_by_mask(masks):
            n = int(mask.sum())
            if n < 4 or null.shape[1] == 0:
                continue
            ranks_null = sps.rankdata(null.to_numpy()[mask], axis=0)  # (n, m)
            ranks_y = sps.rankdata(y_all[mask][:, cols], axis=0)  # (n, t)
            null_rho = _unit_columns(ranks_null).T @ _unit_columns(ranks_y)  # (m, t)
            observed = rows["rho"].to_numpy(dtype=float)[cols]
            p = empirical_p(observed, null_rho.T)
            for k, c in enumerate(cols):
                i = pos[c]
                if n != rows["n_patients"].iloc[c]:
                    notes[i] = _join_notes(
                        notes[i],
                        f"specificity null on {n} patients but rho on {rows['n_patients'].iloc[c]}",
                    )
                    continue
                spec_p[i] = p[k]
                n_sets[i] = int(np.isfinite(null_rho[:, k]).sum())
    out["specificity_p"] = spec_p
    out["specificity_n_sets"] = n_sets
    out["note"] = notes
    return out


# --------------------------------------------------------------------------------------
# the association table
# --------------------------------------------------------------------------------------


def _join_notes(*parts: str) -> str:
    return "; ".join(p for p in parts if p)


def _group_columns_by_mask(masks: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
    """Group the columns of a boolean (n, t) matrix by identical column; (mask, columns)."""
    if masks.shape[1] == 0:
        return []
    unique, inverse = np.unique(masks.T, axis=0, return_inverse=True)
    inverse = np.asarray(inverse).ravel()
    return [(unique[g], np.flatnonzero(inverse == g)) for g in range(unique.shape[0])]


def association_table(
    sender: pd.DataFrame,
    receiver: pd.DataFrame,
    *,
    dataset: str,
    covariates: pd.DataFrame | None = None,
    min_patients: int = 6,
    n_boot: int = 2000,
    n_perm: int = 10000,
    exact_max: int = 40320,
    level: float = 0.95,
    ci_method: str = "percentile",
    rng: np.random.Generator | int | None,
    family: str = "dataset",
) -> pd.DataFrame:
    """Patient-level association of every sender signature with every receiver target.

    For each (signature, target) pair the patients with both values are used
    (complete cases); ranks are computed within them. The row gives Spearman's rho and
    its t-test p (as :func:`scipy.stats.spearmanr`), Pearson's r and p (as
    :func:`scipy.stats.pearsonr`), a bootstrap CI of rho (:func:`spearman_bootstrap_ci`),
    a permutation p (:func:`permutation_p`), the rank partial correlation given the
    covariates (:func:`partial_spearman`), and leave-one-patient-out influence
    (:func:`loo_influence`). Benjamini-Hochberg q values are computed over the family:
    ``family="dataset"`` pools all pairs of the dataset, ``"signature"`` the targets of
    one signature in the dataset; the ``family`` column states it and ``family_size``
    its number of tests. ``q_value`` adjusts ``p_value``, ``perm_q_value`` adjusts
    ``perm_p_value``.

    Randomness: one child generator is spawned from ``rng`` per signature (in column
    order); all targets of a signature with the same patients share its bootstrap
    resamples and permutations (targets with other missing patients get their own
    draws, from the same child, in a fixed order). The table is therefore identical for
    the same ``rng`` seed and inputs, and a signature's results do not depend on the
    other signatures' values.

    Parameters
    ----------
    sender
        Patients (index) x signatures: per-patient CD8 T-cell scores.
    receiver
        Patients (index) x targets: per-patient malignant-cell expression.
    dataset
        Dataset id written in every row.
    covariates
        Patients (index) x covariates (chosen in the config, e.g. number of malignant
        cells, CD8 T-cell fraction, median counts per cell) for the partial
        correlation; None for no partial correlation. Patients missing a covariate are
        left out of the partial correlation only (see ``partial_n_patients``).
    min_patients
        Pairs with fewer complete patients are kept with NA statistics and a note.
    n_boot
        Bootstrap resamples; 0 skips the CI (NaN), e.g. for calibration runs.
    n_perm
        Monte Carlo permutations; 0 skips the permutation p (NaN).
    exact_max
        Largest ``n!`` enumerated exactly by the permutation test.
    level
        Confidence level of the CI.
    ci_method
        ``"percentile"`` or ``"bca"``; written in the ``ci_method`` column.
    rng
        Seed or generator.
    family
        ``"dataset"`` or ``"signature"``: the multiple-testing family.

    Returns
    -------
    pandas.DataFrame
        One row per (signature, target), columns :data:`ASSOCIATION_COLUMNS`.
    """
    sender = _check_numeric_table(sender, name="sender")
    receiver = _check_numeric_table(receiver, name="receiver")
    if sender.shape[1] == 0 or receiver.shape[1] == 0:
        msg = (
            f"{dataset}: sender has {sender.shape[1]} signature column(s) and receiver "
            f"{receiver.shape[1]} target column(s); both need at least one."
        )
        raise ValueError(msg)
    _check_level(level)
    _check_ci_method(ci_method)
    if family not in _FAMILIES:
        msg = f"family must be one of {_FAMILIES}, got {family!r}."
        raise ValueError(msg)
    if int(min_patients) < 4:
        msg = (
            f"min_patients must be at least 4 (leave-one-out needs 3 patients), got {min_patients}."
        )
        raise ValueError(msg)
    if n_boot < 0 or n_perm < 0:
        msg = f"n_boot and n_perm must be >= 0 (0 skips), got {n_boot} and {n_perm}."
        raise ValueError(msg)
    patients = sender.index.intersection(receiver.index, sort=False)
    dropped = sender.index.symmetric_difference(receiver.index)
    if len(dropped):
        logger.info(
            "%s: %d patient(s) are in only one of sender/receiver and are not used: %s",
            dataset,
            len(dropped),
            ", ".join(map(str, dropped)),
        )
    if len(patients) == 0:
        msg = (
            f"{dataset}: sender and receiver share no patient; both tables must be indexed "
            "by the same patient ids."
        )
        raise ValueError(msg)
    cov_names = ""
    cov_values = None
    if covariates is not None:
        covariates = _check_numeric_table(covariates, name="covariates")
        cov_names = ",".join(map(str, covariates.columns))
        cov_values = covariates.reindex(patients).to_numpy()
        absent = patients.difference(covariates.index)
        if len(absent):
            logger.warning(
                "%s: no covariates for patient(s) %s; they are left out of the partial correlation",
                dataset,
                ", ".join(map(str, absent)),
            )
    x_all = sender.loc[patients].to_numpy()
    y_all = receiver.loc[patients].to_numpy()
    labels = patients.astype(str).to_numpy()
    generators = as_rng(rng).spawn(sender.shape[1])

    blocks = []
    for s, signature in enumerate(sender.columns):
        block = _signature_block(
            x_all[:, s],
            y_all,
            labels=labels,
            covariates=cov_values,
            min_patients=int(min_patients),
            n_boot=n_boot,
            n_perm=n_perm,
            exact_max=exact_max,
            level=level,
            ci_method=ci_method,
            rng=generators[s],
        )
        block.insert(0, "target", receiver.columns.astype(str))
        block.insert(0, "signature", str(signature))
        blocks.append(block)
    table = pd.concat(blocks, ignore_index=True)
    table.insert(0, "dataset", dataset)
    table["partial_covariates"] = cov_names if covariates is not None else "none"
    table["ci_method"] = f"{ci_method} ({n_boot} resamples, level {level})" if n_boot else "none"

    table["q_value"] = np.nan
    table["perm_q_value"] = np.nan
    table["family"] = ""
    table["family_size"] = 0
    keys = ["signature"] if family == "signature" else []
    groups = table.groupby(keys, sort=False) if keys else [((), table)]
    for key, rows in groups:
        label = f"dataset={dataset}"
        if keys:
            label += f";signature={key[0] if isinstance(key, tuple) else key}"
        table.loc[rows.index, "q_value"] = benjamini_hochberg(rows["p_value"].to_numpy())
        table.loc[rows.index, "perm_q_value"] = benjamini_hochberg(rows["perm_p_value"].to_numpy())
        table.loc[rows.index, "family"] = label
        table.loc[rows.index, "family_size"] = int(rows["p_value"].notna().sum())
    return table.loc[:, list(ASSOCIATION_COLUMNS)]


def _signature_block(
    x: np.ndarray,
    y_all: np.ndarray,
    *,
    labels: np.ndarray,
    covariates: np.ndarray | None,
    min_patients: int,
    n_boot: int,
    n_perm: int,
    exact_max: int,
    level: float,
    ci_method: str,
    rng: np.random.Generator,
) -> pd.DataFrame:
    """All statistics of one signature against every target (columns of ``y_all``)."""
    t = y_all.shape[1]
    nan = np.full(t, np.nan)
    res = {
        "n_patients": np.zeros(t, dtype=int),
        "rho": nan.copy(),
        "p_value": nan.copy(),
        "pearson_r": nan.copy(),
        "pearson_p": nan.copy(),
        "ci_low": nan.copy(),
        "ci_high": nan.copy(),
        "perm_p_value": nan.copy(),
        "partial_rho": nan.copy(),
        "partial_p_value": nan.copy(),
        "partial_n_patients": np.zeros(t, dtype=int),
        "loo_max_delta": nan.copy(),
    }
    loo_patient = np.full(t, "", dtype=object)
    perm_method = np.full(t, "none", dtype=object)
    notes = np.full(t, "", dtype=object)
    masks = np.isfinite(x)[:, None] & np.isfinite(y_all)
    for mask, cols in _group_columns_by_mask(masks):
        n = int(mask.sum())
        res["n_patients"][cols] = n
        if n < min_patients:
            notes[cols] = f"n_patients={n} < min_patients={min_patients}"
            continue
        xs = x[mask]
        ys = y_all[mask][:, cols]
        rank_x = sps.rankdata(xs)
        rank_y = sps.rankdata(ys, axis=0)
        rho = _pearson_vec(rank_x, rank_y)
        res["rho"][cols] = rho
        res["p_value"][cols] = _correlation_p(rho, n - 2)
        r = _pearson_vec(xs, ys)
        res["pearson_r"][cols] = r
        res["pearson_p"][cols] = _correlation_p(r, n - 2)
        if np.ptp(xs) == 0:
            notes[cols] = "signature score constant across patients"
        else:
            for k in np.flatnonzero(~np.isfinite(rho)):
                notes[cols[k]] = "target constant across patients"

        loo = _loo_spearman(xs, ys)
        delta, which = _loo_summary(loo, rho)
        res["loo_max_delta"][cols] = delta
        patient_labels = labels[mask]
        loo_patient[cols] = np.where(which >= 0, patient_labels[np.maximum(which, 0)], "")

        # the draws come first and in a fixed order, so that skipping nothing changes them
        if n_boot:
            boot = _bootstrap_spearman(xs, ys, _bootstrap_weights(n, n_boot, rng))
            low, high = _ci_from_bootstrap(
                boot, level=level, method=ci_method, rho=rho, jackknife=loo
            )
            res["ci_low"][cols] = low
            res["ci_high"][cols] = high
        if n_perm:
            pval, method = _permutation_p_vec(
                rank_x, rank_y, rho, n_perm=n_perm, exact_max=exact_max, rng=rng
            )
            res["perm_p_value"][cols] = pval
            perm_method[cols] = method

        if covariates is not None:
            cov = covariates[mask]
            complete = np.isfinite(cov).all(axis=1)
            n_partial = int(complete.sum())
            res["partial_n_patients"][cols] = n_partial
            if n_partial < min_patients:
                for c in cols:
                    notes[c] = _join_notes(
                        notes[c],
                        f"partial: n_patients={n_partial} with covariates < "
                        f"min_patients={min_patients}",
                    )
            else:
                prho, pp, df = _partial_vec(xs[complete], ys[complete], cov[complete])
                res["partial_rho"][cols] = prho
                res["partial_p_value"][cols] = pp
                if df < 1:
                    for c in cols:
                        notes[c] = _join_notes(notes[c], "partial: no residual degrees of freedom")
    block = pd.DataFrame(res)
    block["loo_patient"] = loo_patient
    block["perm_method"] = perm_method
    block["note"] = notes
    return block
