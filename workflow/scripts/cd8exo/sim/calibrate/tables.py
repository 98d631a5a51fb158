"""Type I error and power tables from the per-cohort p values, with exact and cohort-clustered CIs."""

from __future__ import annotations

import logging
import math

import numpy as np
import pandas as pd
from scipy import stats as sps

from cd8exo.stats.meta import meta_analysis

logger = logging.getLogger(__name__)

__all__ = [
    "EXTRA_KINDS",
    "P_VALUE_KINDS",
    "binomial_ci",
    "power_table",
    "rejections",
    "type1_table",
]

#: The p values the workflow writes to ``associations.tsv``, in the order reported.
P_VALUE_KINDS: tuple[str, ...] = (
    "p_value",
    "perm_p_value",
    "pearson_p",
    "partial_p_value",
    "specificity_p",
)


#: Further tests reported: the bootstrap CI read as a test (rejects when the
#: ``1 - alpha`` interval excludes 0) and the meta-analysis p over two null cohorts.
EXTRA_KINDS: tuple[str, ...] = ("bootstrap_ci", "meta_p_value")


def binomial_ci(successes: int, trials: int, *, level: float = 0.95) -> tuple[float, float]:
    """Exact (Clopper-Pearson) confidence interval of a binomial proportion.

    Parameters
    ----------
    successes, trials
        Counts; ``(nan, nan)`` when ``trials`` is 0.
    level
        Confidence level.

    Returns
    -------
    ``(low, high)``, as :meth:`scipy.stats.binomtest(...).proportion_ci(method="exact")`.
    """
    if trials == 0:
        return float("nan"), float("nan")
    ci = sps.binomtest(int(successes), int(trials)).proportion_ci(
        confidence_level=level, method="exact"
    )
    return float(ci.low), float(ci.high)


def rejections(table: pd.DataFrame, *, alpha: float = 0.05) -> pd.DataFrame:
    """Whether each test rejects at ``alpha``: 1.0, 0.0, or NaN when it was not computed.

    A p value rejects when ``p <= alpha``; ``bootstrap_ci`` rejects when the interval
    (level ``1 - alpha``) excludes 0.

    Parameters
    ----------
    table
        Rows with the columns of :data:`P_VALUE_KINDS`, ``ci_low`` and ``ci_high``.
    alpha
        Significance level.

    Returns
    -------
    Same index, one column per kind (:data:`P_VALUE_KINDS` then ``bootstrap_ci``).
    """
    out = {}
    for kind in P_VALUE_KINDS:
        p = table[kind].to_numpy(dtype=float)
        out[kind] = np.where(np.isfinite(p), (p <= alpha).astype(float), np.nan)
    low = table["ci_low"].to_numpy(dtype=float)
    high = table["ci_high"].to_numpy(dtype=float)
    ok = np.isfinite(low) & np.isfinite(high)
    out["bootstrap_ci"] = np.where(ok, ((low > 0) | (high < 0)).astype(float), np.nan)
    return pd.DataFrame(out, index=table.index)


def _meta_rejections(primary: pd.DataFrame, *, alpha: float) -> np.ndarray:
    """Pool consecutive pairs of null cohorts by :func:`cd8exo.meta.meta_analysis`."""
    ordered = primary.sort_values("cohort")
    out = []
    for start in range(0, len(ordered) - 1, 2):
        pair = ordered.iloc[start : start + 2]
        rows = pair.assign(dataset=[f"cohort{c}" for c in pair["cohort"]])
        meta = meta_analysis(rows[["dataset", "signature", "target", "n_patients", "rho"]])
        p = float(meta["p_value"].iloc[0]) if len(meta) else float("nan")
        out.append(float(p <= alpha) if math.isfinite(p) else np.nan)
    return np.array(out, dtype=float)


def _rate_row(values: np.ndarray) -> dict[str, float | int]:
    valid = values[np.isfinite(values)]
    k, m = int(valid.sum()), int(valid.size)
    low, high = binomial_ci(k, m)
    return {
        "n_tests": m,
        "rejection_rate": k / m if m else np.nan,
        "ci_low": low,
        "ci_high": high,
    }


def _clustered_rate(values: pd.DataFrame, *, column: str) -> dict[str, float | int]:
    """Rate over all pairs with a 95% normal interval that treats the cohort as the unit."""
    frame = values[["cohort", column]].dropna()
    per = frame.groupby("cohort")[column].agg(["sum", "count"])
    total, m = float(per["sum"].sum()), float(per["count"].sum())
    n_clusters = len(per)
    if m == 0:
        return {"n_tests_all_pairs": 0, "rejection_rate_all_pairs": np.nan,
                "all_pairs_ci_low": np.nan, "all_pairs_ci_high": np.nan}  # fmt: skip
    rate = total / m
    if n_clusters > 1:
        # ratio estimator's variance (clustered): sum_c (y_c - rate * m_c)^2 / M^2 * C/(C-1)
        resid = per["sum"] - rate * per["count"]
        se = math.sqrt((resid**2).sum() / m**2 * n_clusters / (n_clusters - 1))
    else:
        se = float("nan")
    z = float(sps.norm.ppf(0.975))
    return {
        "n_tests_all_pairs": int(m),
        "rejection_rate_all_pairs": rate,
        "all_pairs_ci_low": max(0.0, rate - z * se),
        "all_pairs_ci_high": min(1.0, rate + z * se),
    }


def type1_table(
    null: pd.DataFrame,
    *,
    alpha: float = 0.05,
    primary_signature: str,
    primary_target: str,
    perm_target: tuple[float, float] = (0.03, 0.07),
) -> pd.DataFrame:
    """Type I error of every p value over null cohorts, pooled and by cohort size.

    Parameters
    ----------
    null
        Output of :func:`run_null_cohorts`.
    alpha
        Significance level.
    primary_signature, primary_target
        The pair whose rejection rate (one test per cohort) is ``rejection_rate``.
    perm_target
        The acceptance band of the permutation p's rate, stated in ``note``.

    Returns
    -------
    One row per (``p_value_kind``, ``n_patients``; ``"all"`` pooled first): ``n_cohorts``,
    ``alpha``, ``n_tests`` (cohorts where the primary pair's test was computed),
    ``rejection_rate`` with its exact binomial 95% CI ``ci_low`` / ``ci_high``, the rate
    over all (signature, target) pairs (``n_tests_all_pairs``,
    ``rejection_rate_all_pairs``, ``all_pairs_ci_*``: cohort-clustered 95% CI) and a
    ``note``. ``meta_p_value`` pools consecutive pairs of null cohorts (so its
    ``n_cohorts`` counts meta-analyses) and is reported pooled only.
    """
    if null.empty:
        msg = "type1_table: no null cohorts to summarise."
        raise ValueError(msg)
    rejected = rejections(null, alpha=alpha).assign(
        cohort=null["cohort"].to_numpy(), n_planned=null["n_planned"].to_numpy()
    )
    is_primary = (
        (null["signature"] == primary_signature) & (null["target"] == primary_target)
    ).to_numpy()
    if not is_primary.any():
        msg = (
            f"type1_table: no row for the primary pair ({primary_signature}, {primary_target}); "
            "pass the pair the cohorts were analysed for."
        )
        raise ValueError(msg)
    kinds = [*P_VALUE_KINDS, EXTRA_KINDS[0]]  # the meta-analysis p is added below
    groups: list[tuple[str, np.ndarray]] = [("all", np.ones(len(null), dtype=bool))]
    for n in sorted(pd.unique(null["n_planned"])):
        groups.append((str(int(n)), (null["n_planned"] == n).to_numpy()))
    rows = []
    for kind in kinds:
        for label, mask in groups:
            subset = rejected.loc[mask]
            primary_values = subset.loc[is_primary[mask], kind].to_numpy(dtype=float)
            row = {
                "p_value_kind": kind,
                "n_patients": label,
                "n_cohorts": int(subset["cohort"].nunique()),
                "alpha": alpha,
                **_rate_row(primary_values),
                **_clustered_rate(subset, column=kind),
            }
            rows.append(row)
    primary = null.loc[is_primary]
    meta = _meta_rejections(primary, alpha=alpha)
    rows.append(
        {
            "p_value_kind": "meta_p_value",
            "n_patients": "all",
            "n_cohorts": int(meta.size),
            "alpha": alpha,
            **_rate_row(meta),
            "n_tests_all_pairs": 0,
            "rejection_rate_all_pairs": np.nan,
            "all_pairs_ci_low": np.nan,
            "all_pairs_ci_high": np.nan,
        }
    )
    table = pd.DataFrame(rows)
    notes = []
    for row in table.itertuples():
        note = ""
        if row.p_value_kind == "perm_p_value" and row.n_patients == "all":
            low, high = perm_target
            met = low <= row.rejection_rate <= high
            note = f"target {low}-{high}: {'met' if met else 'NOT met'}"
        elif row.p_value_kind == "bootstrap_ci":
            note = f"{1 - alpha:.0%} percentile CI excludes 0"
        elif row.p_value_kind == "meta_p_value":
            note = "DerSimonian-Laird over 2 null cohorts (consecutive pairs)"
        notes.append(note)
    table["note"] = notes
    return table


def power_table(power: pd.DataFrame, *, alpha: float = 0.05) -> pd.DataFrame:
    """Power of every p value per (cohort size, planted rho).

    Parameters
    ----------
    power
        Output of :func:`run_power_cohorts`.
    alpha
        Significance level.

    Returns
    -------
    One row per (``n_patients`` planned, ``planted_rho``, ``p_value_kind``): ``power``
    (share of cohorts rejecting at ``alpha``), ``n_cohorts``, ``n_tests``, its exact 95%
    CI ``ci_low`` / ``ci_high``, ``mean_rho`` (mean Spearman rho the workflow measured),
    ``mean_latent_r`` (mean sample Pearson r of the planted latents ``a_p`` and ``c_p``)
    and ``mean_n_analysed`` (patients left after QC and the cell-count thresholds).
    """
    if power.empty:
        msg = "power_table: no power cohorts to summarise."
        raise ValueError(msg)
    rejected = rejections(power, alpha=alpha)
    rows = []
    for (n, rho), idx in power.groupby(["n_planned", "planted_rho"], sort=True).groups.items():
        cohorts = power.loc[idx]
        for kind in rejected.columns:
            rate = _rate_row(rejected.loc[idx, kind].to_numpy(dtype=float))
            rows.append(
                {
                    "n_patients": int(n),
                    "planted_rho": float(rho),
                    "p_value_kind": kind,
                    "power": rate["rejection_rate"],
                    "n_cohorts": int(cohorts["cohort"].nunique()),
                    "n_tests": rate["n_tests"],
                    "ci_low": rate["ci_low"],
                    "ci_high": rate["ci_high"],
                    "mean_rho": float(cohorts["rho"].mean()),
                    "mean_latent_r": float(cohorts["latent_r"].mean()),
                    "mean_n_analysed": float(cohorts["n_patients"].mean()),
                }
            )
    return pd.DataFrame(rows)
