"""Untestable is a result: NA association rows with the reason, and each dataset's status.

A dataset whose patients are too few (after the cell-count thresholds), that has no CD8 T
cells or no malignant cells, whose signatures were all skipped, or that lacks a target
gene still gets its rows in ``associations.tsv``: NA statistics and the reason in
``note``. :func:`dataset_status` then says, per dataset, whether it was ``analysed``
(every pair tested), ``partly`` analysed or ``not testable``, and why.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np
import pandas as pd

from cd8exo.stats.association import ASSOCIATION_COLUMNS

logger = logging.getLogger(__name__)

__all__ = [
    "DATASET_STATUS_COLUMNS",
    "dataset_status",
    "not_testable_reason",
    "untested_table",
]

#: Columns of :func:`dataset_status`, in order.
DATASET_STATUS_COLUMNS: tuple[str, ...] = (
    "dataset",
    "status",
    "n_patients",
    "n_included",
    "n_pairs",
    "n_tested",
    "reason",
)

#: Statuses of :func:`dataset_status`.
ANALYSED, PARTLY, NOT_TESTABLE = "analysed", "partly", "not testable"


def _included(patients: pd.DataFrame) -> pd.Series:
    """Whether each patient entered the association (``included`` as bool or text)."""
    if "included" not in patients:
        return pd.Series(False, index=patients.index)
    return patients["included"].astype(str).str.lower() == "true"


def _total(patients: pd.DataFrame, column: str) -> float:
    return float(pd.to_numeric(patients[column]).sum()) if column in patients else np.nan


def not_testable_reason(
    patients: pd.DataFrame,
    *,
    min_patients: int,
    min_cd8_cells: int | None = None,
    min_malignant_cells: int | None = None,
) -> str:
    """Why the patients of one dataset cannot be tested at all (``""`` when they can).

    They cannot when fewer than ``min_patients`` patients are included (have enough CD8 T
    cells and malignant cells), e.g. ``"2 of 8 patients have >= 10 CD8 T cells and >= 20
    malignant cells; 6 needed"``. A dataset without any cell after QC, without CD8 T
    cells or without malignant cells says so first (``"no CD8 T cells; 0 of 8 ..."``,
    ``"no cell passed QC (no patient left); 6 needed"``).

    Parameters
    ----------
    patients
        The patient table of one dataset (:func:`cd8exo.patients.table.patient_table`).
    min_patients
        Patients an association needs (``association.min_patients``).
    min_cd8_cells, min_malignant_cells
        The thresholds that decided ``included`` (``aggregation.*``), quoted in the
        reason; None says "enough CD8 T cells and malignant cells" instead.
    """
    n_patients = len(patients)
    n_included = int(_included(patients).sum())
    if n_included >= min_patients:
        return ""
    if n_patients == 0:
        return f"no cell passed QC (no patient left); {min_patients} needed"
    if min_cd8_cells is None or min_malignant_cells is None:
        criterion = "are included (enough CD8 T cells and malignant cells)"
    else:
        criterion = (
            f"have >= {min_cd8_cells} CD8 T cells and >= {min_malignant_cells} malignant cells"
        )
    causes = []
    if _total(patients, "n_cells") == 0:
        causes.append("no cell passed QC")
    else:
        if _total(patients, "n_cd8") == 0:
            causes.append("no CD8 T cells")
        if _total(patients, "n_malignant") == 0:
            causes.append("no malignant cells")
    return "; ".join([*causes, f"{n_included} of {n_patients} patients {criterion}"]) + (
        f"; {min_patients} needed"
    )


def untested_table(
    dataset: str,
    signatures: Sequence[str],
    targets: Sequence[str],
    *,
    n_patients: int,
    note: str,
    covariates: str = "none",
) -> pd.DataFrame:
    """Association rows of pairs that were not tested: NA statistics and ``note``.

    One row per (signature, target), signatures outer, with the columns of
    :func:`cd8exo.stats.association.association_table` plus ``specificity_p`` (NA) and
    ``specificity_n_sets`` (0), so the rows stack with tested ones.
    """
    pairs = [(str(s), str(t)) for s in signatures for t in targets]
    table = pd.DataFrame(np.nan, index=range(len(pairs)), columns=list(ASSOCIATION_COLUMNS))
    table["dataset"] = dataset
    table["signature"] = [s for s, _ in pairs]
    table["target"] = [t for _, t in pairs]
    table["n_patients"] = int(n_patients)
    table["partial_n_patients"] = 0
    table["partial_covariates"] = covariates
    table["loo_patient"] = ""
    table["family"] = f"dataset={dataset}"
    table["family_size"] = 0
    table["perm_method"] = "none"
    table["ci_method"] = "none"
    table["note"] = note
    table["specificity_p"] = np.nan
    table["specificity_n_sets"] = 0
    return table


def _grouped_notes(rows: pd.DataFrame) -> str:
    """``"<k> pairs: <note>"`` per distinct note of untested rows, most frequent first."""
    notes = rows["note"].fillna("").astype(str).replace("", "no reason recorded")
    counts = notes.value_counts(sort=True)
    return "; ".join(
        f"{count} pair{'s' if count != 1 else ''}: {note}" for note, count in counts.items()
    )


def _status_row(dataset: str, rows: pd.DataFrame, patients: pd.DataFrame) -> dict[str, object]:
    """One row of :func:`dataset_status`."""
    tested = rows["rho"].notna() if len(rows) else pd.Series(dtype=bool)
    n_pairs, n_tested = len(rows), int(tested.sum())
    if n_pairs and n_tested == n_pairs:
        status, reason = ANALYSED, ""
    elif n_tested == 0:
        status = NOT_TESTABLE
        notes = list(dict.fromkeys(rows["note"].fillna("").astype(str))) if n_pairs else []
        reason = "; ".join(n for n in notes if n) if len(notes) == 1 else _grouped_notes(rows)
        reason = reason or "no (signature, target) pair to test"
    else:
        status = PARTLY
        reason = f"{n_tested} of {n_pairs} pairs tested; not tested: " + _grouped_notes(
            rows[~tested]
        )
    return {
        "dataset": dataset,
        "status": status,
        "n_patients": len(patients),
        "n_included": int(_included(patients).sum()),
        "n_pairs": n_pairs,
        "n_tested": n_tested,
        "reason": reason,
    }


def dataset_status(
    associations: pd.DataFrame, patients: pd.DataFrame, *, datasets: Sequence[str]
) -> pd.DataFrame:
    """Whether each dataset was analysed, partly analysed or not testable, and why.

    Parameters
    ----------
    associations
        ``results/summary/associations.tsv`` (every dataset).
    patients
        ``results/summary/patients.tsv`` (every dataset).
    datasets
        The datasets of the run, in sheet order (one row each, even without any row in
        the tables).

    Returns
    -------
    One row per dataset, columns :data:`DATASET_STATUS_COLUMNS`: ``status`` is
    ``analysed`` (every (signature, target) pair has a rho), ``partly`` (some have) or
    ``not testable`` (none has); ``reason`` is empty for ``analysed``, else the notes of
    the untested pairs (for ``partly``: how many pairs were tested, then each reason with
    its number of pairs). A warning names every dataset not fully analysed.
    """
    records = []
    for dataset in datasets:
        rows = associations[associations["dataset"].astype(str) == str(dataset)]
        mine = (
            patients[patients["dataset"].astype(str) == str(dataset)]
            if "dataset" in patients
            else patients.iloc[0:0]
        )
        record = _status_row(str(dataset), rows, mine)
        if record["status"] != ANALYSED:
            logger.warning("dataset %r: %s: %s", dataset, record["status"], record["reason"])
        records.append(record)
    return pd.DataFrame.from_records(records, columns=list(DATASET_STATUS_COLUMNS))
