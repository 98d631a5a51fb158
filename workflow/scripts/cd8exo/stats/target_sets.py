"""Set-level tests: is a sender signature more associated with a cargo miRNA's target set than
with random gene sets matched to that set in size and malignant-cell expression?"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd

from cd8exo.stats.specificity import null_score_tables, specificity_p_values

logger = logging.getLogger(__name__)

__all__ = ["SET_COLUMNS", "set_family", "set_specificity_p_values"]

#: Columns the set-level table adds after ``target`` (the set) and at the end.
SET_COLUMNS: tuple[str, ...] = ("mirna", "source", "status", "expected_sign")


def set_specificity_p_values(
    associations: pd.DataFrame, random_sets: pd.DataFrame | None, *, sender: pd.DataFrame
) -> pd.DataFrame:
    """``set_specificity_p``: each (signature, target set) rho against matched random sets.

    The null of a target set is the Spearman rho of the *same* sender signature with
    each of the set's matched random gene sets (scored in the malignant cells exactly as
    the set), so the test asks whether the set is more associated with the signature than
    genes of the same number and expression; two-sided on ``|rho|``, ``(b + 1) / (m + 1)``
    (:func:`cd8exo.stats.specificity.empirical_p`, which the sender-side specificity p
    uses with the roles of signature and target swapped).

    Parameters
    ----------
    associations
        The set-level association rows of one dataset (``target`` = the set).
    random_sets
        Long table ``patient``, ``target``, ``random_set``, ``score`` (rule
        ``score_receiver_sets``); None leaves the p values NA.
    sender
        Patients x signatures, the table the rows were computed from.

    Returns
    -------
    ``associations`` with ``set_specificity_p`` and ``set_specificity_n_sets``; rows
    without random sets get NA and a note.
    """
    out = associations.copy()
    if random_sets is None or random_sets.empty or out.empty:
        out["set_specificity_p"] = np.nan
        out["set_specificity_n_sets"] = 0
        return out
    null = null_score_tables(
        random_sets.rename(columns={"target": "signature"}), patients=sender.index
    )
    swapped = out[["dataset", "signature", "target", "rho", "n_patients", "note"]].rename(
        columns={"signature": "target", "target": "signature"}
    )
    tested = specificity_p_values(swapped, null_scores=null, receiver=sender)
    out["set_specificity_p"] = tested["specificity_p"].to_numpy()
    out["set_specificity_n_sets"] = tested["specificity_n_sets"].to_numpy()
    # the notes of rows that were tested (an untested row keeps its own reason)
    out["note"] = np.where(out["rho"].notna(), tested["note"].to_numpy(), out["note"])
    return out


def set_family(table: pd.DataFrame) -> pd.DataFrame:
    """Name the set-level FDR family: ``dataset=<d>[;signature=<s>];target sets``.

    The set-level q values are computed over the set-level rows alone (their own family,
    apart from the single genes'); the label says so.
    """
    family = table["family"].fillna("").astype(str)
    return table.assign(family=family.where(family == "", family + ";target sets"))
