"""The association table: every (signature, target) pair of a dataset, tested across patients."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import pandas as pd
from scipy import stats as sps

from cd8exo._utils import RNGLike, as_rng
from cd8exo.stats.correlation import (
    _bootstrap_spearman,
    _bootstrap_weights,
    _check_ci_method,
    _check_level,
    _check_numeric_table,
    _ci_from_bootstrap,
    _correlation_p,
    _loo_spearman,
    _loo_summary,
    _partial_vec,
    _pearson_vec,
    _permutation_p_vec,
)
from cd8exo.stats.multiple_testing import benjamini_hochberg

logger = logging.getLogger(__name__)

__all__ = ["ASSOCIATION_COLUMNS", "association_table"]

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


_FAMILIES = ("dataset", "signature")


def _join_notes(*parts: str) -> str:
    return "; ".join(p for p in parts if p)


def _group_columns_by_mask(masks: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
    """Group the columns of a boolean (n, t) matrix by identical column; (mask, columns)."""
    if masks.shape[1] == 0:
        return []
    unique, inverse = np.unique(masks.T, axis=0, return_inverse=True)
    inverse = np.asarray(inverse).ravel()
    return [(unique[g], np.flatnonzero(inverse == g)) for g in range(unique.shape[0])]


@dataclass(frozen=True)
class _Settings:
    """How every (signature, target) pair is tested (the arguments of :func:`association_table`)."""

    min_patients: int
    n_boot: int
    n_perm: int
    exact_max: int
    level: float
    ci_method: str


class _Covariates(NamedTuple):
    """The covariates of the partial correlation, aligned to the shared patients.

    ``label`` is the ``partial_covariates`` column (the covariate names, or ``"none"``);
    ``values`` is patients x covariates, ``None`` for no partial correlation.
    """

    label: str
    values: np.ndarray | None


def _check_arguments(
    sender: pd.DataFrame,
    receiver: pd.DataFrame,
    *,
    dataset: str,
    level: float,
    ci_method: str,
    family: str,
    min_patients: int,
    n_boot: int,
    n_perm: int,
) -> None:
    """Stop on tables without columns and on settings outside their range."""
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


def _shared_patients(sender: pd.DataFrame, receiver: pd.DataFrame, *, dataset: str) -> pd.Index:
    """The patients in both tables (in sender order); the others are named in the log."""
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
    return patients


def _covariate_values(
    covariates: pd.DataFrame | None, patients: pd.Index, *, dataset: str
) -> _Covariates:
    """The covariates of ``patients`` (NaN for a patient without them, named in the log)."""
    if covariates is None:
        return _Covariates("none", None)
    covariates = _check_numeric_table(covariates, name="covariates")
    values = covariates.reindex(patients).to_numpy()
    absent = patients.difference(covariates.index)
    if len(absent):
        logger.warning(
            "%s: no covariates for patient(s) %s; they are left out of the partial correlation",
            dataset,
            ", ".join(map(str, absent)),
        )
    return _Covariates(",".join(map(str, covariates.columns)), values)


def _signature_blocks(
    sender: pd.DataFrame,
    receiver: pd.DataFrame,
    *,
    covariates: np.ndarray | None,
    settings: _Settings,
    rng: RNGLike,
) -> pd.DataFrame:
    """The statistics of every (signature, target) pair, one child generator per signature."""
    x_all = sender.to_numpy()
    y_all = receiver.to_numpy()
    labels = sender.index.astype(str).to_numpy()
    generators = as_rng(rng).spawn(sender.shape[1])
    blocks = []
    for s, signature in enumerate(sender.columns):
        block = _signature_block(
            x_all[:, s],
            y_all,
            labels=labels,
            covariates=covariates,
            settings=settings,
            rng=generators[s],
        )
        block.insert(0, "target", receiver.columns.astype(str))
        block.insert(0, "signature", str(signature))
        blocks.append(block)
    return pd.concat(blocks, ignore_index=True)


def _adjust_in_families(table: pd.DataFrame, *, dataset: str, family: str) -> None:
    """Benjamini-Hochberg q values within each multiple-testing family (``table`` in place)."""
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
    rng: RNGLike,
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
    _check_arguments(
        sender,
        receiver,
        dataset=dataset,
        level=level,
        ci_method=ci_method,
        family=family,
        min_patients=min_patients,
        n_boot=n_boot,
        n_perm=n_perm,
    )
    patients = _shared_patients(sender, receiver, dataset=dataset)
    cov = _covariate_values(covariates, patients, dataset=dataset)
    settings = _Settings(int(min_patients), n_boot, n_perm, exact_max, level, ci_method)
    table = _signature_blocks(
        sender.loc[patients],
        receiver.loc[patients],
        covariates=cov.values,
        settings=settings,
        rng=rng,
    )
    table.insert(0, "dataset", dataset)
    table["partial_covariates"] = cov.label
    table["ci_method"] = f"{ci_method} ({n_boot} resamples, level {level})" if n_boot else "none"
    _adjust_in_families(table, dataset=dataset, family=family)
    return table.loc[:, list(ASSOCIATION_COLUMNS)]


@dataclass(frozen=True)
class _BlockColumns:
    """The columns of one signature's block, filled in group of targets by group."""

    values: dict[str, np.ndarray]
    loo_patient: np.ndarray
    perm_method: np.ndarray
    notes: np.ndarray

    @classmethod
    def empty(cls, t: int) -> _BlockColumns:
        """NaN statistics, no patients and no notes for ``t`` targets."""
        nan = np.full(t, np.nan)
        values = {
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
        return cls(
            values,
            loo_patient=np.full(t, "", dtype=object),
            perm_method=np.full(t, "none", dtype=object),
            notes=np.full(t, "", dtype=object),
        )

    def frame(self) -> pd.DataFrame:
        block = pd.DataFrame(self.values)
        block["loo_patient"] = self.loo_patient
        block["perm_method"] = self.perm_method
        block["note"] = self.notes
        return block


class _Group(NamedTuple):
    """Targets (columns ``cols``) with the same complete patients: values and ranks."""

    cols: np.ndarray
    x: np.ndarray
    y: np.ndarray
    rank_x: np.ndarray
    rank_y: np.ndarray


def _ranked_group(cols: np.ndarray, *, x: np.ndarray, y: np.ndarray) -> _Group:
    return _Group(cols, x, y, sps.rankdata(x), sps.rankdata(y, axis=0))


def _correlations(out: _BlockColumns, *, group: _Group) -> np.ndarray:
    """Spearman's rho and Pearson's r with their t-test p values; notes on constant values."""
    cols, n = group.cols, len(group.x)
    rho = _pearson_vec(group.rank_x, group.rank_y)
    out.values["rho"][cols] = rho
    out.values["p_value"][cols] = _correlation_p(rho, n - 2)
    r = _pearson_vec(group.x, group.y)
    out.values["pearson_r"][cols] = r
    out.values["pearson_p"][cols] = _correlation_p(r, n - 2)
    if np.ptp(group.x) == 0:
        out.notes[cols] = "signature score constant across patients"
    else:
        for k in np.flatnonzero(~np.isfinite(rho)):
            out.notes[cols[k]] = "target constant across patients"
    return rho


def _influence(
    out: _BlockColumns, *, group: _Group, rho: np.ndarray, labels: np.ndarray
) -> np.ndarray:
    """Leave-one-patient-out: the largest change of rho and its patient; the rhos left."""
    loo = _loo_spearman(group.x, group.y)
    delta, which = _loo_summary(loo, rho)
    out.values["loo_max_delta"][group.cols] = delta
    out.loo_patient[group.cols] = np.where(which >= 0, labels[np.maximum(which, 0)], "")
    return loo


def _resampling(
    out: _BlockColumns,
    *,
    group: _Group,
    rho: np.ndarray,
    loo: np.ndarray,
    settings: _Settings,
    rng: np.random.Generator,
) -> None:
    """The bootstrap CI of rho, then the permutation p (in this order: they share ``rng``)."""
    cols = group.cols
    if settings.n_boot:
        weights = _bootstrap_weights(len(group.x), settings.n_boot, rng)
        boot = _bootstrap_spearman(group.x, group.y, weights)
        low, high = _ci_from_bootstrap(
            boot, level=settings.level, method=settings.ci_method, rho=rho, jackknife=loo
        )
        out.values["ci_low"][cols] = low
        out.values["ci_high"][cols] = high
    if settings.n_perm:
        pval, method = _permutation_p_vec(
            group.rank_x,
            group.rank_y,
            rho,
            n_perm=settings.n_perm,
            exact_max=settings.exact_max,
            rng=rng,
        )
        out.values["perm_p_value"][cols] = pval
        out.perm_method[cols] = method


def _partial(
    out: _BlockColumns, *, group: _Group, covariates: np.ndarray, settings: _Settings
) -> None:
    """The rank partial correlation given the covariates, over the patients that have them."""
    cols = group.cols
    complete = np.isfinite(covariates).all(axis=1)
    n_partial = int(complete.sum())
    out.values["partial_n_patients"][cols] = n_partial
    if n_partial < settings.min_patients:
        for c in cols:
            out.notes[c] = _join_notes(
                out.notes[c],
                f"partial: n_patients={n_partial} with covariates < "
                f"min_patients={settings.min_patients}",
            )
        return
    prho, pp, df = _partial_vec(group.x[complete], group.y[complete], covariates[complete])
    out.values["partial_rho"][cols] = prho
    out.values["partial_p_value"][cols] = pp
    if df < 1:
        for c in cols:
            out.notes[c] = _join_notes(out.notes[c], "partial: no residual degrees of freedom")


def _signature_block(
    x: np.ndarray,
    y_all: np.ndarray,
    *,
    labels: np.ndarray,
    covariates: np.ndarray | None,
    settings: _Settings,
    rng: np.random.Generator,
) -> pd.DataFrame:
    """All statistics of one signature against every target (columns of ``y_all``)."""
    out = _BlockColumns.empty(y_all.shape[1])
    masks = np.isfinite(x)[:, None] & np.isfinite(y_all)
    for mask, cols in _group_columns_by_mask(masks):
        n = int(mask.sum())
        out.values["n_patients"][cols] = n
        if n < settings.min_patients:
            out.notes[cols] = f"n_patients={n} < min_patients={settings.min_patients}"
            continue
        group = _ranked_group(cols, x=x[mask], y=y_all[mask][:, cols])
        rho = _correlations(out, group=group)
        loo = _influence(out, group=group, rho=rho, labels=labels[mask])
        # the draws come first and in a fixed order, so that skipping nothing changes them
        _resampling(out, group=group, rho=rho, loo=loo, settings=settings, rng=rng)
        if covariates is not None:
            _partial(out, group=group, covariates=covariates[mask], settings=settings)
    return out.frame()
