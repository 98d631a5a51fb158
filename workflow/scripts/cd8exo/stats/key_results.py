"""The key results: the primary targets and the controls, per dataset and pooled, in one table."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

if TYPE_CHECKING:
    from collections.abc import Iterable

__all__ = ["KEY_COLUMNS", "KEY_ROLES", "POOLED", "key_results_table", "primary_signature"]

#: Target roles shown in the key results, in this order: the hypothesis, then its controls.
KEY_ROLES: tuple[str, ...] = ("mirna_target", "positive_control", "negative_control")
#: The ``dataset`` of a pooled (meta-analysis) row.
POOLED = "pooled"
KEY_COLUMNS: tuple[str, ...] = (
    "role",
    "target",
    "expected_direction",
    "signature",
    "dataset",
    "simulated",
    "n_datasets",
    "n_patients",
    "rho",
    "ci_low",
    "ci_high",
    "ci_method",
    "perm_p_value",
    "perm_q_value",
    "p_value",
    "q_value",
    "specificity_p",
    "note",
)


def primary_signature(associations: pd.DataFrame, chosen: str | None = None) -> str | None:
    """The signature of the main figure: ``chosen`` when tested, else the first one of the table."""
    signatures = list(dict.fromkeys(associations["signature"].astype(str)))
    if chosen and chosen in signatures:
        return chosen
    return signatures[0] if signatures else None


def _dataset_rows(associations: pd.DataFrame, simulated: set[str]) -> pd.DataFrame:
    rows = associations.copy()
    rows["simulated"] = rows["dataset"].astype(str).isin(simulated)
    rows["n_datasets"] = 1
    rows["ci_method"] = np.where(rows["ci_low"].notna(), "bootstrap over patients", "")
    return rows


def _pooled_rows(meta: pd.DataFrame, simulated: set[str]) -> pd.DataFrame:
    rows = meta.rename(columns={"pooled_rho": "rho", "n_patients_total": "n_patients"}).copy()
    rows["dataset"] = POOLED
    rows["simulated"] = [
        any(d in simulated for d in str(ds).split(",") if d) for ds in rows.get("datasets", "")
    ]
    rows["ci_method"] = np.where(rows["rho"].notna(), "DerSimonian-Laird, Fisher z", "")
    return rows


def key_results_table(
    associations: pd.DataFrame,
    meta: pd.DataFrame,
    targets: pd.DataFrame,
    *,
    simulated: Iterable[str] = (),
    roles: Iterable[str] = KEY_ROLES,
) -> pd.DataFrame:
    """One row per (target of a key role, signature, dataset or pooled), in reading order.

    Parameters
    ----------
    associations
        ``results/summary/associations.tsv``.
    meta
        ``results/summary/meta_analysis.tsv`` (its rows become ``dataset == "pooled"``;
        pooled rows have no permutation or specificity p value, the bootstrap is per dataset).
    targets
        The target table (``gene``, ``role``, ``expected_direction``).
    simulated
        Datasets the sheet marks as simulated (column ``simulated``; a pooled row is
        simulated when any of its datasets is).
    roles
        Target roles to keep, in the order shown.

    Returns
    -------
    The rows, ordered by role, target (as in the target table), signature (as tested),
    then each dataset and the pooled row last; columns :data:`KEY_COLUMNS`.
    """
    roles = list(roles)
    simulated = set(map(str, simulated))
    info = targets.drop_duplicates("gene").set_index("gene")
    if "role" not in info:  # a target table without roles has no primary target or control
        info = info.assign(role="")
    keep = info.index[info["role"].isin(roles)]
    rows = pd.concat(
        [_dataset_rows(associations, simulated), _pooled_rows(meta, simulated)], ignore_index=True
    )
    rows = rows[rows["target"].isin(keep)].copy()
    rows["role"] = rows["target"].map(info["role"])
    rows["expected_direction"] = rows["target"].map(info.get("expected_direction"))
    order = {
        "role": {r: i for i, r in enumerate(roles)},
        "target": {t: i for i, t in enumerate(info.index)},
        "signature": {s: i for i, s in enumerate(dict.fromkeys(associations["signature"]))},
        "dataset": {d: i for i, d in enumerate([*dict.fromkeys(associations["dataset"]), POOLED])},
    }
    rows = rows.sort_values(
        list(order), key=lambda column: column.map(order[column.name]), kind="stable"
    )
    for column in KEY_COLUMNS:
        if column not in rows:
            rows[column] = np.nan
    return rows[list(KEY_COLUMNS)].reset_index(drop=True)
