"""Patient-level summaries: the patient, never the cell, is the unit of inference.

Cells of one patient are not independent replicates; every quantity that enters
the association test is therefore one number per patient: the mean signature score
of the patient's CD8+ T cells (sender) and a pseudobulk of the patient's malignant
cells (receiver).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import scipy.sparse as sp

from cd8exo.cells.normalise import linear_values
from cd8exo.cells.qc import qc_metrics
from cd8exo.cells.store import column_sums, iter_rows

if TYPE_CHECKING:
    from collections.abc import Sequence

    import anndata as ad
logger = logging.getLogger(__name__)


__all__ = [
    "group_sums",
    "malignant_pseudobulk",
    "patient_counts",
    "receiver_expression",
    "select_patients",
    "sender_scores",
]

#: The sender cell type.
SENDER_CELL_TYPE = "CD8_T"


def patient_counts(obs: pd.DataFrame) -> pd.DataFrame:
    """Count cells per patient.

    Parameters
    ----------
    obs
        Harmonised ``obs`` (columns ``patient``, ``cell_type``, ``malignant``).

    Returns
    -------
    Indexed by patient (every category of ``patient``, so patients whose cells were all
    removed appear with 0): ``n_cells``, ``n_cd8`` (``cell_type == "CD8_T"``),
    ``n_malignant`` (``malignant``) and ``cd8_fraction`` (``n_cd8 / n_cells``; NaN for 0
    cells).
    """
    _require_columns(obs, ["patient", "cell_type", "malignant"], what="obs")
    patient = obs["patient"]
    if not isinstance(patient.dtype, pd.CategoricalDtype):
        patient = patient.astype("category")
    frame = pd.DataFrame(
        {
            "patient": patient.to_numpy(),
            "n_cells": 1,
            "n_cd8": (obs["cell_type"].astype(str) == SENDER_CELL_TYPE).to_numpy(dtype=int),
            "n_malignant": obs["malignant"].to_numpy(dtype=bool).astype(int),
        }
    )
    frame["patient"] = pd.Categorical(frame["patient"], categories=patient.cat.categories)
    counts = frame.groupby("patient", observed=False).sum()
    counts.index = pd.Index(counts.index.astype(str), name="patient")
    counts["cd8_fraction"] = counts["n_cd8"] / counts["n_cells"].replace(0, np.nan)
    return counts


def sender_scores(scores: pd.DataFrame, obs: pd.DataFrame) -> pd.DataFrame:
    """Mean signature score of each patient's CD8+ T cells.

    Parameters
    ----------
    scores
        Cells x signatures (from :func:`cd8exo.scoring.score_signatures`).
    obs
        Harmonised ``obs`` covering every cell of ``scores``.

    Returns
    -------
    Patient x signature means over the patient's ``CD8_T`` cells; only patients with at
    least one CD8_T cell appear (the index is named ``patient``).
    """
    _require_columns(obs, ["patient", "cell_type"], what="obs")
    missing = scores.index.difference(obs.index)
    if len(missing):
        msg = (
            f"{len(missing)} scored cells are not in obs (e.g. {missing[:3].tolist()}); "
            "score and aggregate the same AnnData."
        )
        raise ValueError(msg)
    cell_obs = obs.loc[scores.index]
    is_sender = (cell_obs["cell_type"].astype(str) == SENDER_CELL_TYPE).to_numpy()
    patients = cell_obs["patient"].astype(str).to_numpy()[is_sender]
    means = scores.loc[is_sender].groupby(patients, sort=True).mean()
    means.index.name = "patient"
    means.columns.name = None
    return means


def receiver_expression(adata: ad.AnnData, *, genes: Sequence[str]) -> pd.DataFrame:
    """Pseudobulk expression of target genes in each patient's malignant cells.

    The linear values (:func:`cd8exo.harmonise.linear_values`) of a patient's malignant
    cells are summed per gene and scaled to counts per million over all genes, then
    ``log2(CPM + 1)``. For raw counts this is the CPM of the summed counts; for
    normalised input it equals the mean of the per-cell linear values rescaled to 1e6
    (the number of cells cancels in the rescaling).

    Parameters
    ----------
    adata
        Harmonised AnnData (``obs["malignant"]``, ``obs["patient"]``).
    genes
        Target gene symbols; genes missing from the data give a column of NaN and a
        warning naming them.

    Returns
    -------
    Patient x gene ``log2(CPM+1)``, for the patients with at least one malignant cell.
    """
    genes = list(dict.fromkeys(map(str, genes)))
    malignant = adata.obs["malignant"].to_numpy(dtype=bool)
    patients = adata.obs["patient"].astype(str).to_numpy()[malignant]
    # summed a block of cells at a time: patients x genes, float64
    sums = group_sums(linear_values(adata[malignant]), patients, var_names=adata.var_names)
    uniques = sums.index.to_numpy()
    totals = sums.to_numpy().sum(axis=1)

    present = [g for g in genes if g in adata.var_names]
    missing = [g for g in genes if g not in adata.var_names]
    if missing:
        logger.warning("Target genes not in the data (NaN columns): %s", ", ".join(missing))
    result = pd.DataFrame(np.nan, index=pd.Index(uniques, name="patient"), columns=genes)
    if present and len(uniques):
        summed = sums[present].to_numpy()
        cpm = np.divide(
            summed * 1e6,
            totals[:, None],
            out=np.full_like(summed, np.nan),
            where=totals[:, None] > 0,
        )
        result[present] = np.log2(cpm + 1.0)
    return result


def select_patients(
    counts: pd.DataFrame, *, min_cd8_cells: int = 10, min_malignant_cells: int = 20
) -> tuple[pd.Index, pd.DataFrame]:
    """Keep the patients with enough sender and receiver cells.

    Parameters
    ----------
    counts
        From :func:`patient_counts`.
    min_cd8_cells
        Minimum number of CD8_T cells.
    min_malignant_cells
        Minimum number of malignant cells.

    Returns
    -------
    The kept patients, and one row per excluded patient: ``patient``, ``n_cd8``,
    ``n_malignant`` and ``reason`` (e.g. ``"6 CD8_T cells < min_cd8_cells=10"``; both
    reasons joined by ``"; "`` when both fail).
    """
    _require_columns(counts, ["n_cd8", "n_malignant"], what="patient counts")
    rows = []
    kept = []
    for patient, row in counts.iterrows():
        reasons = []
        if row["n_cd8"] < min_cd8_cells:
            reasons.append(f"{int(row['n_cd8'])} CD8_T cells < min_cd8_cells={min_cd8_cells}")
        if row["n_malignant"] < min_malignant_cells:
            reasons.append(
                f"{int(row['n_malignant'])} malignant cells < "
                f"min_malignant_cells={min_malignant_cells}"
            )
        if reasons:
            rows.append(
                {
                    "patient": patient,
                    "n_cd8": int(row["n_cd8"]),
                    "n_malignant": int(row["n_malignant"]),
                    "reason": "; ".join(reasons),
                }
            )
        else:
            kept.append(patient)
    excluded = pd.DataFrame(rows, columns=["patient", "n_cd8", "n_malignant", "reason"])
    logger.info(
        "%d of %d patients kept; excluded: %s",
        len(kept),
        len(counts),
        "; ".join(f"{r['patient']} ({r['reason']})" for r in rows) or "none",
    )
    return pd.Index(kept, name="patient"), excluded


def _require_columns(frame: pd.DataFrame, columns: Sequence[str], *, what: str) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        msg = f"The {what} lack column(s) {missing}; available: {list(frame.columns)}."
        raise ValueError(msg)


def median_counts(adata: ad.AnnData) -> pd.Series:
    """Median total counts (linear scale) per cell of each patient, a per-patient covariate.

    Sequencing depth differs between patients and can drive both a CD8 score and a
    pseudobulk value; the statistics can adjust for it (partial correlation).
    """

    totals = qc_metrics(adata)["total"]
    patients = adata.obs["patient"].astype(str).to_numpy()
    medians = totals.groupby(patients, sort=True).median()
    medians.index.name = "patient"
    return medians.rename("median_counts")


def malignant_pseudobulk(
    adata: ad.AnnData,
    *,
    patients: Sequence[str] | None = None,
    min_cells_fraction: float = 0.05,
    min_cpm: float = 10.0,
) -> pd.DataFrame:
    """Pseudobulk of every expressed gene in each patient's malignant cells.

    The values are those of :func:`cd8exo.aggregate.receiver_expression` (linear values
    summed over a patient's malignant cells, counts per million over all genes,
    ``log2(CPM + 1)``), for the genes that pass both expression filters.

    Parameters
    ----------
    adata
        Harmonised AnnData (``obs["malignant"]``, ``obs["patient"]``).
    patients
        Patients to use (e.g. those included in the association); their malignant cells
        alone define the expression filters. Default: every patient with malignant cells.
    min_cells_fraction
        A gene is kept when it is detected (value > 0) in at least this fraction of the
        malignant cells of these patients ...
    min_cpm
        ... and its median CPM over the patients is at least this. Both filters drop genes
        too sparse for a stable pseudobulk, whose rank across patients would be noise.

    Returns
    -------
    Patients x kept genes, ``log2(CPM + 1)``; patients sorted, genes in ``var`` order
    (empty, with a warning, when ``patients`` is empty).

    No gene passing the filters gives patients x 0 genes, with a warning.

    Raises
    ------
    ValueError
        When a requested patient has no malignant cells or a filter is out of range.
    """
    if not 0 <= min_cells_fraction <= 1:
        msg = f"min_cells_fraction must be between 0 and 1, got {min_cells_fraction}."
        raise ValueError(msg)
    if min_cpm < 0:
        msg = f"min_cpm must be >= 0, got {min_cpm}."
        raise ValueError(msg)
    malignant = adata.obs["malignant"].to_numpy(dtype=bool)
    cell_patients = adata.obs["patient"].astype(str).to_numpy()
    if patients is not None:
        patients = [str(p) for p in patients]
        if not patients:
            logger.warning("No patients given (none included?): the screen has nothing to rank")
            return pd.DataFrame(index=pd.Index([], name="patient", dtype=str))
        have = set(cell_patients[malignant])
        missing = [p for p in patients if p not in have]
        if missing:
            msg = (
                f"Patient(s) {missing} have no malignant cells in dataset "
                f"{adata.uns.get('cd8exo', {}).get('dataset', '?')!r}; the screen needs a "
                "malignant pseudobulk for every patient it is given (use the patients included "
                "by aggregate_patients)."
            )
            raise ValueError(msg)
        malignant &= np.isin(cell_patients, patients)
    if not malignant.any():
        msg = "No malignant cells: the tumour-side screen needs obs['malignant'] cells."
        raise ValueError(msg)
    subset = adata[malignant]
    detected = column_sums(linear_values(subset), binary=True) / subset.n_obs
    pseudobulk = receiver_expression(subset, genes=subset.var_names)
    with np.errstate(invalid="ignore"):
        median_cpm = np.nanmedian(np.exp2(pseudobulk.to_numpy(float)) - 1.0, axis=0)
    keep = (detected >= min_cells_fraction) & (median_cpm >= min_cpm)
    logger.info(
        "%d of %d genes expressed in the malignant cells of %d patients "
        "(detected in >= %g of cells and median CPM >= %g)",
        keep.sum(),
        len(keep),
        len(pseudobulk),
        min_cells_fraction,
        min_cpm,
    )
    if not keep.any():
        logger.warning(
            "No gene is detected in >= %g of the malignant cells with a median CPM >= %g "
            "(highest detection %.3g): the screen has nothing to rank; lower "
            "screen.min_cells_fraction / screen.min_cpm in the config",
            min_cells_fraction,
            min_cpm,
            detected.max(),
        )
    return pseudobulk.loc[:, keep]


def group_sums(
    x, groups: Sequence, *, var_names: Sequence[str], expm1: bool = False
) -> pd.DataFrame:
    """Sum the cells of each group, chunk by chunk (a pseudobulk).

    Parameters
    ----------
    x
        Cells x genes: sparse, dense, or a :class:`~cd8exo.cells.store.CellMatrix` (read
        from disk a block of cells at a time).
    groups
        Group label of every cell; missing labels (None/NaN) leave the cell out.
    var_names
        Gene names of the columns.
    expm1
        Sum ``exp(x) - 1`` instead of ``x`` (back from ln(x + 1) to the linear scale).

    Returns
    -------
    Groups (sorted) x genes, float64.
    """
    labels = pd.Series(list(groups), dtype=object)
    if len(labels) != x.shape[0]:
        msg = f"groups has {len(labels)} labels for {x.shape[0]} cells; give one per cell."
        raise ValueError(msg)
    keep = labels.notna().to_numpy()
    uniques = np.sort(labels[keep].astype(str).unique())
    codes = np.full(len(labels), -1, dtype=np.int64)
    codes[keep] = np.searchsorted(uniques, labels[keep].astype(str).to_numpy())
    sums = np.zeros((len(uniques), x.shape[1]))
    for start, stop, chunk in iter_rows(x):
        values = chunk.data.astype(np.float64)
        if expm1:
            np.expm1(values, out=values)
        block = sp.csr_matrix((values, chunk.indices, chunk.indptr), shape=chunk.shape)
        chunk_codes = codes[start:stop]
        inside = np.flatnonzero(chunk_codes >= 0)
        indicator = sp.csr_matrix(
            (np.ones(inside.size), (chunk_codes[inside], inside)),
            shape=(len(uniques), stop - start),
        )
        sums += (indicator @ block).toarray()
    return pd.DataFrame(sums, index=pd.Index(uniques, name="group"), columns=list(var_names))
