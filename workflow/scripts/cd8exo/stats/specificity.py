"""Specificity p values: is a signature more associated than random gene sets matched to it?"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
from scipy import stats as sps

from cd8exo.stats.association import _check_numeric_table, _group_columns_by_mask, _join_notes
from cd8exo.stats.correlation import _unit_columns

logger = logging.getLogger(__name__)

__all__ = ["empirical_p", "null_score_tables", "specificity_p_values"]


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


def null_score_tables(
    long: pd.DataFrame, *, patients: pd.Index | None = None
) -> dict[str, pd.DataFrame]:
    """Turn the long table of :func:`random_set_scores` into signature -> patients x sets."""
    out = {}
    for signature, rows in long.groupby("signature", sort=False):
        table = rows.pivot(index="patient", columns="random_set", values="score")
        table.index = table.index.astype(str)
        if patients is not None:
            table = table.reindex(patients.astype(str))
        out[str(signature)] = table
    return out
