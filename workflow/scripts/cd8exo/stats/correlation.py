"""Patient-level Spearman correlation: bootstrap CI, permutation p, partial rho, leave-one-out."""

from __future__ import annotations

import itertools
import logging
import math
import warnings
from collections.abc import Iterable, Sequence

import numpy as np
import pandas as pd
from scipy import stats as sps
from scipy.special import ndtr, ndtri

from cd8exo._utils import RNGLike, as_rng

logger = logging.getLogger(__name__)

__all__ = ["loo_influence", "partial_spearman", "permutation_p", "spearman_bootstrap_ci"]

_CI_METHODS = ("percentile", "bca")


# Work arrays are processed in chunks of about this many float64 elements (~16 MB).
_CHUNK_ELEMENTS = 2_000_000


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


def spearman_bootstrap_ci(
    x: Sequence[float] | np.ndarray | pd.Series,
    y: Sequence[float] | np.ndarray | pd.Series,
    *,
    n_boot: int = 2000,
    level: float = 0.95,
    method: str = "percentile",
    rng: RNGLike,
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
    rng: RNGLike,
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
