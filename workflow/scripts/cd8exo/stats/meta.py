"""Random-effects meta-analysis of patient-level correlations across datasets.

Each dataset contributes one correlation ``rho_i`` on ``n_i`` patients. On Fisher's
``z = atanh(rho)`` scale the within-dataset variance is ``1 / (n_i - 3)`` (weights
``n_i - 3``); between-dataset heterogeneity ``tau^2`` is estimated by the
DerSimonian-Laird method of moments (DerSimonian & Laird 1986, Control Clin Trials
7:177) and the pooled ``z`` back-transformed with ``tanh``.

``1 / (n - 3)`` is the variance of Fisher's z for Pearson's r under bivariate
normality; for Spearman's rho it is slightly too small (Fieller, Hartley & Pearson
1957 give about ``1.06 / (n - 3)``), so pooled intervals are, if anything, a little
narrow. The choice follows the analysis plan (issue 6).
"""

from __future__ import annotations

import logging
import math

import numpy as np
import pandas as pd
from scipy import stats as sps

from cd8exo.stats.multiple_testing import benjamini_hochberg

logger = logging.getLogger(__name__)

__all__ = ["META_COLUMNS", "dersimonian_laird", "meta_analysis"]


#: Columns of :func:`meta_analysis`, in order.
META_COLUMNS: tuple[str, ...] = (
    "signature",
    "target",
    "n_datasets",
    "n_patients_total",
    "datasets",
    "pooled_rho",
    "ci_low",
    "ci_high",
    "p_value",
    "q_value",
    "tau2",
    "i2",
    "q_stat",
    "heterogeneity_p",
    "family",
    "method",
    "note",
)


#: Largest |rho| used on the z scale; |rho| = 1 (possible with few patients) has
#: infinite Fisher z and is clipped to this.
RHO_CLIP = 0.999999


_METHOD = "DerSimonian-Laird random effects on Fisher z, var = 1/(n-3)"


def dersimonian_laird(
    rho: np.ndarray | list[float], n: np.ndarray | list[int], *, level: float = 0.95
) -> dict[str, float | int | np.ndarray]:
    """DerSimonian-Laird random-effects pooling of correlations on Fisher's z scale.

    With ``z_i = atanh(rho_i)``, ``v_i = 1 / (n_i - 3)`` and ``w_i = 1 / v_i``:

    - fixed-effect mean ``z_F = sum w_i z_i / sum w_i``;
    - Cochran's ``Q = sum w_i (z_i - z_F)^2`` on ``k - 1`` degrees of freedom;
    - ``tau^2 = max(0, (Q - (k - 1)) / (sum w_i - sum w_i^2 / sum w_i))``;
    - random-effects weights ``w*_i = 1 / (v_i + tau^2)``, pooled
      ``z_R = sum w*_i z_i / sum w*_i`` with standard error ``1 / sqrt(sum w*_i)``;
    - the CI and the two-sided p (normal) are computed on z, then ``tanh`` maps the
      estimate and the CI back to rho;
    - ``I^2 = max(0, (Q - (k - 1)) / Q)`` (Higgins & Thompson 2002).

    Unlike ``statsmodels.stats.meta_analysis.combine_effects(method_re="dl")`` (0.15),
    which lets ``tau^2`` and ``I^2`` go negative when ``Q < k - 1``, both are truncated
    at zero here, as in the original method; then the result equals the fixed-effect one.

    With a single dataset there is no heterogeneity to estimate: the result is that
    dataset's Fisher-z estimate and CI, ``tau2 = 0``, ``q_stat = 0`` and ``i2`` and
    ``heterogeneity_p`` NaN.

    Parameters
    ----------
    rho
        Per-dataset correlations; |rho| is clipped to :data:`RHO_CLIP`.
    n
        Per-dataset numbers of patients, each at least 4.
    level
        Confidence level of the pooled interval.

    Returns
    -------
    dict
        ``pooled_rho``, ``ci_low``, ``ci_high``, ``p_value``, ``tau2``, ``i2``,
        ``q_stat``, ``heterogeneity_p``, ``n_datasets``, ``n_patients_total``, and
        ``pooled_z``, ``se_z`` and ``weights`` (the relative random-effects weights, an
        array in the input order).
    """
    r = np.asarray(rho, dtype=float)
    size = np.asarray(n, dtype=float)
    if r.ndim != 1 or r.shape != size.shape or r.size == 0:
        msg = (
            f"dersimonian_laird: rho and n must be 1-D, non-empty and of equal length; got "
            f"shapes {r.shape} and {size.shape}."
        )
        raise ValueError(msg)
    if not (np.all(np.isfinite(r)) and np.all(np.isfinite(size))):
        msg = "dersimonian_laird: rho and n must not contain missing values; drop those datasets."
        raise ValueError(msg)
    if np.any(size < 4):
        msg = (
            f"dersimonian_laird: every dataset needs n >= 4 patients (variance 1/(n-3)); "
            f"got n = {size.tolist()}."
        )
        raise ValueError(msg)
    if np.any(np.abs(r) > 1):
        msg = f"dersimonian_laird: correlations must lie in [-1, 1], got {r.tolist()}."
        raise ValueError(msg)
    if not 0 < level < 1:
        msg = f"dersimonian_laird: level must be between 0 and 1, got {level!r}."
        raise ValueError(msg)
    z = np.arctanh(np.clip(r, -RHO_CLIP, RHO_CLIP))
    w = size - 3.0
    k = z.size
    z_fixed = (w * z).sum() / w.sum()
    q_stat = float((w * (z - z_fixed) ** 2).sum())
    df = k - 1
    if k > 1:
        c = w.sum() - (w**2).sum() / w.sum()
        tau2 = max(0.0, (q_stat - df) / c)
        i2 = max(0.0, (q_stat - df) / q_stat) if q_stat > 0 else 0.0
        heterogeneity_p = float(sps.chi2.sf(q_stat, df))
    else:
        tau2, i2, heterogeneity_p = 0.0, float("nan"), float("nan")
    w_random = 1.0 / (1.0 / w + tau2)
    z_pooled = float((w_random * z).sum() / w_random.sum())
    se = 1.0 / math.sqrt(w_random.sum())
    crit = float(sps.norm.ppf(0.5 + level / 2.0))
    return {
        "pooled_rho": math.tanh(z_pooled),
        "ci_low": math.tanh(z_pooled - crit * se),
        "ci_high": math.tanh(z_pooled + crit * se),
        "p_value": float(2.0 * sps.norm.sf(abs(z_pooled) / se)),
        "tau2": float(tau2),
        "i2": float(i2),
        "q_stat": q_stat,
        "heterogeneity_p": heterogeneity_p,
        "n_datasets": int(k),
        "n_patients_total": int(size.sum()),
        "pooled_z": z_pooled,
        "se_z": se,
        "weights": w_random / w_random.sum(),
    }


def _usable(rows: pd.DataFrame) -> pd.Series:
    return rows["rho"].notna() & rows["n_patients"].notna() & (rows["n_patients"] >= 4)


def meta_analysis(associations: pd.DataFrame, *, level: float = 0.95) -> pd.DataFrame:
    """Pool every (signature, target) over the datasets that tested it.

    A dataset tested a pair when its row has a rho (rows kept with NA because of too
    few patients are left out and named in ``note``). Each pair is pooled with
    :func:`dersimonian_laird`; ``q_value`` is Benjamini-Hochberg over all pairs with a
    pooled p value (family ``"meta: all signature x target pairs"``).

    Parameters
    ----------
    associations
        Rows of ``results/summary/associations.tsv``: at least ``dataset``,
        ``signature``, ``target``, ``n_patients`` and ``rho``; one row per
        (dataset, signature, target).
    level
        Confidence level of the pooled intervals.

    Returns
    -------
    pandas.DataFrame
        One row per (signature, target) in order of first appearance, columns
        :data:`META_COLUMNS`; ``datasets`` lists the pooled datasets, comma-separated.
    """
    required = ["dataset", "signature", "target", "n_patients", "rho"]
    missing = [c for c in required if c not in associations.columns]
    if missing:
        msg = f"meta_analysis: associations lacks columns {missing}; it needs {required}."
        raise ValueError(msg)
    keys = ["dataset", "signature", "target"]
    duplicated = associations.duplicated(keys)
    if duplicated.any():
        first = associations.loc[duplicated, keys].iloc[0].tolist()
        msg = (
            f"meta_analysis: {int(duplicated.sum())} duplicated (dataset, signature, target) "
            f"rows, e.g. {first}; give one row per dataset and pair."
        )
        raise ValueError(msg)
    records = []
    for (signature, target), rows in associations.groupby(
        ["signature", "target"], sort=False, observed=True
    ):
        usable = _usable(rows)
        skipped = rows.loc[~usable, "dataset"].astype(str).tolist()
        note = (
            f"not tested (too few patients or no rho) in: {', '.join(skipped)}" if skipped else ""
        )
        record = {"signature": signature, "target": target, "note": note}
        if usable.any():
            result = dersimonian_laird(
                rows.loc[usable, "rho"].to_numpy(float),
                rows.loc[usable, "n_patients"].to_numpy(float),
                level=level,
            )
            result.pop("weights")
            result.pop("pooled_z")
            result.pop("se_z")
            record.update(result)
            record["datasets"] = ",".join(rows.loc[usable, "dataset"].astype(str))
            if result["n_datasets"] == 1:
                record["note"] = "; ".join(
                    p for p in [note, "single dataset: no heterogeneity estimate"] if p
                )
        else:
            record.update({"n_datasets": 0, "n_patients_total": 0, "datasets": ""})
        records.append(record)
    table = pd.DataFrame.from_records(records).reindex(columns=list(META_COLUMNS))
    table["n_datasets"] = table["n_datasets"].fillna(0).astype(int)
    table["n_patients_total"] = table["n_patients_total"].fillna(0).astype(int)
    table["q_value"] = benjamini_hochberg(table["p_value"].to_numpy(float))
    table["family"] = "meta: all signature x target pairs"
    table["method"] = _METHOD
    table["note"] = table["note"].fillna("")
    return table


def _meta_row(
    meta: pd.DataFrame | pd.Series | None,
    associations: pd.DataFrame,
    *,
    signature: str,
    target: str,
) -> pd.Series:
    if meta is None:
        meta = meta_analysis(associations)
    if isinstance(meta, pd.Series):
        return meta
    hit = meta[(meta["signature"] == signature) & (meta["target"] == target)]
    if hit.empty:
        msg = (
            f"forest_plot: no meta-analysis row for signature {signature!r}, target "
            f"{target!r}; pass the table from meta_analysis() of the same associations."
        )
        raise ValueError(msg)
    return hit.iloc[0]
