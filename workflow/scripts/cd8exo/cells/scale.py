"""The value scale of an expression matrix (counts, log-normalised, TPM), detected from the values."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, NamedTuple

import numpy as np
import scipy.sparse as sp

from cd8exo.errors import InputError
from cd8exo.vocabulary import VALUE_SCALES

if TYPE_CHECKING:
    pass
logger = logging.getLogger(__name__)

__all__ = ["detect_value_scale"]

#: Log-scaled single-cell values never exceed this; larger non-integer values are linear
#: (TPM/CPM-like), which the workflow does not accept (ln(1e6+1) = 13.8,
#: log2(1e6/10+1) = 16.6).
_MAX_LOG_VALUE = 20.0


#: Coefficient of variation of per-cell library sizes below which they count as constant.
_CONSTANT_LIBRARY_CV = 0.05


#: Cells inspected by :func:`detect_value_scale` (evenly spaced, deterministic).
_N_CELLS_INSPECTED = 2000


#: Stored values / cells processed at a time: bounds the float64 temporaries.
_CHUNK_VALUES = 10_000_000


# --------------------------------------------------------------------------- #
# Value scale
# --------------------------------------------------------------------------- #
def detect_value_scale(x: np.ndarray | sp.spmatrix | sp.sparray, *, allow_tpm: bool = False) -> str:
    """Guess the scale of an expression matrix (cells x genes).

    The rule, applied in this order:

    1. Non-finite or negative values -> :class:`ValueError` (scaled/centred data cannot
       be used; give counts or log-normalised values).
    2. All values integer -> ``"counts"``.
    3. Maximum above 20 -> non-integer values this large are linear TPM/CPM-like values
       (ln(1e6+1) = 13.8 and log2(1e6/10+1) = 16.6 bound the log scales): ``"tpm"`` with
       ``allow_tpm`` (a published matrix the reader converts), else :class:`ValueError`
       (not a supported scale of a local dataset).
    4. On up to 2,000 evenly spaced cells, undo each candidate log and compute the
       per-cell totals: ``sum(expm1(x))`` (``log1p_norm``: ln(CP10k+1), or ln(x/size*s+1)
       for any constant s) and ``sum(10 * (2**x - 1))`` (``log2_tpm10``: log2(TPM/10+1),
       totals ~1e6). The candidate whose totals are constant across cells (coefficient
       of variation < 0.05, the smaller of the two) wins.
    5. Otherwise (e.g. genes were removed after normalising, so totals vary) the maximum
       decides: above 10 -> ``"log2_tpm10"``, else ``"log1p_norm"`` (ln(CP10k+1) rarely
       exceeds 9.2), and a warning recommends declaring ``value_scale`` in the config.

    Parameters
    ----------
    x
        Dense or sparse matrix, cells as rows.
    allow_tpm
        Return ``"tpm"`` for linear TPM/CPM-like values instead of raising.

    Returns
    -------
    One of :data:`~cd8exo.vocabulary.VALUE_SCALES`, or ``"tpm"`` with ``allow_tpm``.
    """
    summary = _value_summary(x)
    if summary.size == 0:
        msg = "The expression matrix is empty; its value scale cannot be determined."
        raise InputError(msg)
    if not summary.finite:
        msg = "The expression matrix has NaN or infinite values; fix them in the input data."
        raise InputError(msg)
    minimum = summary.minimum
    if minimum < 0:
        msg = (
            f"The expression matrix has negative values (min {minimum:.3g}): it looks scaled "
            "or centred. Provide raw counts or log-normalised values (ln(CP10k+1) or "
            "log2(TPM/10+1)) instead."
        )
        raise InputError(msg)
    if summary.integer:
        return "counts"
    maximum = summary.maximum
    if maximum > _MAX_LOG_VALUE:
        if allow_tpm:
            return "tpm"
        msg = (
            f"The expression values are non-integer with maximum {maximum:.4g}: they look like "
            "linear TPM/CPM values, which are not a supported scale "
            f"({', '.join(VALUE_SCALES)}). Provide raw counts, or transform to "
            "log2(TPM/10+1) and declare value_scale 'log2_tpm10'."
        )
        raise InputError(msg)

    n_cells = x.shape[0]
    rows = np.unique(np.linspace(0, n_cells - 1, num=min(n_cells, _N_CELLS_INSPECTED)).astype(int))
    # Both inverse transforms map 0 to 0, so they can work on the stored values only.
    sample = sp.csr_matrix(x[rows], dtype=np.float64)
    row_of_value = np.repeat(np.arange(sample.shape[0]), np.diff(sample.indptr))
    expressed = np.bincount(row_of_value, minlength=sample.shape[0]) > 0  # skip empty cells
    totals_ln = np.bincount(row_of_value, weights=np.expm1(sample.data), minlength=len(rows))
    totals_log2 = np.bincount(
        row_of_value, weights=10.0 * (np.exp2(sample.data) - 1.0), minlength=len(rows)
    )
    cv_ln = _coefficient_of_variation(totals_ln[expressed])
    cv_log2 = _coefficient_of_variation(totals_log2[expressed])
    if min(cv_ln, cv_log2) < _CONSTANT_LIBRARY_CV:
        scale = "log1p_norm" if cv_ln <= cv_log2 else "log2_tpm10"
        logger.info(
            "Detected value scale %s (per-cell totals CV: expm1 %.3g, 10*(2^x-1) %.3g)",
            scale,
            cv_ln,
            cv_log2,
        )
        return scale
    scale = "log2_tpm10" if maximum > 10 else "log1p_norm"
    logger.warning(
        "Value scale guessed as %s from the maximum value %.3g; per-cell totals are not "
        "constant on either log scale (CV: expm1 %.3g, 10*(2^x-1) %.3g). Declare "
        "value_scale for this dataset in the config to be sure.",
        scale,
        maximum,
        cv_ln,
        cv_log2,
    )
    return scale


class _ValueSummary(NamedTuple):
    size: int
    finite: bool
    minimum: float
    maximum: float
    integer: bool
    n_fractional: int
    fractional_examples: list[float]


def _value_summary(x) -> _ValueSummary:
    """Finiteness, range and integrality of the stored values, in bounded memory."""
    values = x.data if sp.issparse(x) else np.asarray(x).reshape(-1)
    finite, integer = True, True
    minimum, maximum = np.inf, -np.inf
    n_fractional, examples = 0, []
    for start in range(0, values.size, _CHUNK_VALUES):
        chunk = values[start : start + _CHUNK_VALUES]
        if np.issubdtype(chunk.dtype, np.integer) or chunk.dtype == bool:
            chunk_finite, fractional = True, np.zeros(0)
        else:
            chunk_finite = bool(np.isfinite(chunk).all())
            fractional = chunk[chunk != np.round(chunk)] if chunk_finite else np.zeros(0)
        finite &= chunk_finite
        if not chunk_finite:
            integer = False
            continue
        minimum = min(minimum, float(chunk.min()))
        maximum = max(maximum, float(chunk.max()))
        if fractional.size:
            integer = False
            n_fractional += int(fractional.size)
            examples += fractional[: 3 - len(examples)].tolist()
    if sp.issparse(x) and values.size < x.shape[0] * x.shape[1]:
        # Implicit zeros of a sparse matrix are values too.
        minimum, maximum = min(minimum, 0.0), max(maximum, 0.0)
    return _ValueSummary(values.size, finite, minimum, maximum, integer, n_fractional, examples)


def _coefficient_of_variation(totals: np.ndarray) -> float:
    if totals.size < 2:
        return float("inf")
    mean = float(np.mean(totals))
    if mean <= 0:
        return float("inf")
    return float(np.std(totals) / mean)
