"""Receiver gene sets in simulated cohorts: their genes, and a planted set-level repression.

A cargo miRNA represses many genes a little, not one gene a lot. The simulator plants that
as ``set_fraction`` of a target set's genes multiplied, in each patient's malignant cells,
by ``exp(-set_effect * a_p)`` (``a_p`` the activation latent that also drives the sender
signatures). The set genes are added to an already simulated cohort from a generator
spawned from the cohort's (:meth:`numpy.random.Generator.spawn` leaves the parent's stream
as it was): every other gene keeps the counts the same seed gives without target sets.
The added genes' counts are negative binomial around ``profile x patient noise x the
cell's non-mitochondrial UMI total``, with the same noise model as the other genes plus, in
malignant cells, one per-patient term per set shared by its genes (SD
``tumour_heterogeneity_sd``): a set varies between tumours as a programme.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import anndata as ad
import numpy as np
import pandas as pd
from scipy import sparse

from cd8exo.sim.profiles import TYPES

if TYPE_CHECKING:
    from collections.abc import Sequence

    from cd8exo.sim.specs import CohortSpec, SignalSpec

logger = logging.getLogger(__name__)

__all__ = ["add_target_set_genes", "planted_set_genes", "truth_table"]

#: Log-normal abundance (UMIs per 10k) of an added set gene: median and log-scale SD, those
#: of the background genes (:func:`cd8exo.sim.profiles.cell_type_profiles`).
_SET_GENE_MEDIAN, _SET_GENE_SD = 0.4, 1.5


def planted_set_genes(
    signal: SignalSpec, *, added: list[str], rng: np.random.Generator
) -> list[str]:
    """The repressed genes: ``set_fraction`` of each planted set, drawn among its added
    genes that are in no other target set (so no other set carries the effect)."""
    chosen: list[str] = []
    added_set = set(added)
    for name in signal.planted_sets:
        genes = list(dict.fromkeys(signal.target_sets[name]))
        others = {g for other, gs in signal.target_sets.items() if other != name for g in gs}
        candidates = [g for g in genes if g in added_set and g not in others]
        n = round(signal.set_fraction * len(genes))
        if n > len(candidates):
            msg = (
                f"planted set {name!r}: {n} genes to repress ({signal.set_fraction:g} of "
                f"{len(genes)}) but only {len(candidates)} are simulated for it alone (not "
                "already among the cohort's genes nor in another target set); lower "
                "set_fraction."
            )
            raise ValueError(msg)
        chosen += sorted(rng.choice(candidates, size=n, replace=False).tolist())
    return chosen


def _set_counts(
    x: sparse.csr_matrix,
    *,
    cell_types: np.ndarray,
    patients: np.ndarray,
    repression: np.ndarray,
    membership: np.ndarray,
    cohort: CohortSpec,
    rng: np.random.Generator,
) -> sparse.csr_matrix:
    """Counts of the added genes (cells x genes); ``repression`` is patients x genes, the
    multiplier of the malignant cells' means; ``membership`` sets x genes (bool)."""
    n_patients, n_genes = repression.shape
    profile = np.exp(rng.normal(np.log(_SET_GENE_MEDIAN), _SET_GENE_SD, size=n_genes))
    profiles = profile[None, :] * np.exp(rng.normal(0.0, 0.5, size=(len(TYPES), n_genes)))
    noise = rng.normal(0.0, cohort.patient_noise_sd, size=(n_patients, n_genes))
    tumour = rng.normal(0.0, cohort.tumour_heterogeneity_sd, size=(n_patients, n_genes))
    # a set varies between tumours as a whole too (a programme, not independent genes):
    # without it a set's mean would barely vary between patients (the genes' noise averages)
    programme = rng.normal(0.0, cohort.tumour_heterogeneity_sd, size=(n_patients, len(membership)))
    tumour += programme @ membership.astype(float)
    dispersion = np.exp(rng.normal(np.log(0.2), 0.5, size=n_genes))
    malignant = cell_types == TYPES.index("malignant")
    blocks = []
    for start in range(0, x.shape[0], 2000):  # bounded dense blocks of cells
        stop = min(start + 2000, x.shape[0])
        total = np.asarray(x[start:stop].sum(axis=1)).ravel()
        p = patients[start:stop]
        log_mu = np.log(profiles[cell_types[start:stop]] / 1e4) + noise[p]
        log_mu += np.where(malignant[start:stop, None], tumour[p] + np.log(repression[p]), 0.0)
        mu = np.exp(log_mu) * total[:, None]
        lam = rng.gamma(1.0 / dispersion[None, :], mu * dispersion[None, :])
        blocks.append(sparse.csr_matrix(rng.poisson(lam).astype(np.float32)))
    return sparse.vstack(blocks, format="csr")


def add_target_set_genes(
    adata: ad.AnnData,
    *,
    cohort: CohortSpec,
    signal: SignalSpec,
    activation: np.ndarray,
    cell_types: np.ndarray,
    rng: np.random.Generator,
) -> tuple[ad.AnnData, dict[str, object]]:
    """The cohort with the target sets' missing genes added (and the planted repression).

    Parameters
    ----------
    adata
        The simulated cohort (raw counts; ``obs["donor_id"]`` categories in patient order).
    cohort, signal
        The specs it was simulated from (``signal.target_sets``, ``planted_sets``, ...).
    activation
        The patients' activation latent ``a_p``.
    cell_types
        The vocabulary cell type of every cell.
    rng
        The simulator's generator; a child is spawned from it, its stream is not used.

    Returns
    -------
    The cohort (genes sorted by name, as the simulator writes them; ``adata`` itself when
    nothing is added) and the ``uns["simulation"]`` entries of the target sets.
    """
    present = set(adata.var_names)
    added = sorted({g for genes in signal.target_sets.values() for g in genes} - present)
    if not added:
        return adata, {}
    child = rng.spawn(1)[0]
    planted = planted_set_genes(signal, added=added, rng=child)
    repression = np.ones((activation.size, len(added)))
    columns = np.searchsorted(added, planted)
    repression[:, columns] = np.exp(-signal.set_effect * activation)[:, None]
    is_mt = adata.var_names.str.startswith("MT-")
    membership = np.array([np.isin(added, list(genes)) for genes in signal.target_sets.values()])
    counts = _set_counts(
        sparse.csr_matrix(adata.X)[:, np.flatnonzero(~is_mt)],
        cell_types=np.array([TYPES.index(t) for t in cell_types]),
        patients=adata.obs["donor_id"].cat.codes.to_numpy(),
        repression=repression,
        membership=membership,
        cohort=cohort,
        rng=child,
    )
    genes = np.concatenate([adata.var_names.to_numpy(dtype=str), np.array(added)])
    order = np.argsort(genes, kind="stable")
    x = sparse.hstack([adata.X, counts], format="csr")[:, order]
    x.sort_indices()
    out = ad.AnnData(X=x, obs=adata.obs, var=pd.DataFrame(index=pd.Index(genes[order])))
    out.uns = dict(adata.uns)
    logger.info(
        "%d target-set genes added (%d repressed by the activation latent in malignant cells)",
        len(added),
        len(planted),
    )
    record = {
        "target_sets": np.array(list(signal.target_sets), dtype=str),
        "planted_sets": np.array(list(signal.planted_sets), dtype=str),
        "planted_set_genes": np.array(planted, dtype=str),
        "set_fraction": float(signal.set_fraction),
        "set_effect_size": float(signal.set_effect),
    }
    return out, record


def truth_table(
    signal: SignalSpec, *, targets: Sequence[str], correlated: Sequence[str], name: str
) -> pd.DataFrame:
    """One row per (signature, target gene), then per (signature, target set), with the
    planted sign (-1, 0 or 1): the activation signatures against the negative (-1),
    positive (+1) and correlated targets (the sign of the correlation times the effect)
    and against a planted set (-1 for a repressing effect); 0 for every other pair."""
    correlated_sign = int(np.sign(signal.target_correlation) * np.sign(signal.correlated_effect))
    set_sign = -int(np.sign(signal.set_effect))
    signs = dict.fromkeys(signal.negative_targets, -1) | dict.fromkeys(signal.positive_targets, 1)
    signs |= dict.fromkeys(correlated, correlated_sign) | dict.fromkeys(
        signal.planted_sets, set_sign
    )
    # the genes' rows first (as before target sets existed), then the sets'
    rows = [
        (name, signature, target, signs.get(target, 0) if active else 0)
        for receivers in (targets, list(signal.target_sets))
        for signature in signal.signatures
        for active in [signature in signal.activation_signatures]
        for target in receivers
    ]
    return pd.DataFrame(rows, columns=["dataset", "signature", "target", "expected_sign"])
