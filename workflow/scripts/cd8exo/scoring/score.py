"""Per-cell signature scores by a named method (tirosh, ucell, aucell, ssgsea)."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from cd8exo._utils import RNGLike
from cd8exo.scoring._chunks import gene_means as _gene_means
from cd8exo.scoring.prepare import signature_coverage
from cd8exo.scoring.rank import aucell_scores, detected_genes, ucell_scores
from cd8exo.scoring.ssgsea import ssgsea_cell_scores
from cd8exo.scoring.tirosh import tirosh_scores

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    import anndata as ad

logger = logging.getLogger(__name__)

__all__ = ["METHODS", "score_matrix", "score_signatures"]

#: Scoring methods of :func:`score_signatures`.
METHODS: tuple[str, ...] = ("tirosh", "ucell", "aucell", "ssgsea")


# --------------------------------------------------------------------------- #
# All methods
# --------------------------------------------------------------------------- #
def score_matrix(
    x,
    var_names: Sequence[str],
    signatures: Mapping[str, Sequence[str]],
    *,
    method: str = "tirosh",
    rng: RNGLike = None,
    n_bins: int = 25,
    ctrl_size: int = 50,
    max_rank: int = 1500,
    n_up: int | None = None,
    aucell_ties: str = "mean",
    chunk_size: int | None = None,
    reference: Mapping[str, np.ndarray] | None = None,
) -> np.ndarray:
    """Per-cell scores of a cells x genes matrix (sparse or dense) by a per-cell method.

    ``reference`` holds what the methods take from all cells when ``x`` is a subset of
    them: ``gene_means`` (Tirosh control bins), ``detected`` (AUCell's detected genes).

    The matrix-level core of :func:`score_signatures` (``method`` ``tirosh``, ``ucell``
    or ``aucell``; its parameters are described there). It imports neither AnnData nor
    scanpy. Returns cells x signatures, float64, in the order of ``signatures``.
    """
    if method == "tirosh":
        return tirosh_scores(
            x,
            var_names,
            signatures,
            rng=rng,
            n_bins=n_bins,
            ctrl_size=ctrl_size,
            chunk_size=chunk_size,
            means=(reference or {}).get("gene_means"),
        )
    if method == "ucell":
        return ucell_scores(x, var_names, signatures, max_rank=max_rank, chunk_size=chunk_size)
    if method == "aucell":
        return aucell_scores(
            x,
            var_names,
            signatures,
            n_up=n_up,
            ties=aucell_ties,
            chunk_size=chunk_size,
            detected=(reference or {}).get("detected"),
        )
    msg = (
        f"Unknown per-cell scoring method {method!r}; use one of 'tirosh', 'ucell', 'aucell' "
        "('ssgsea' scores patients: see score_signatures)."
    )
    raise ValueError(msg)


def score_signatures(
    adata: ad.AnnData,
    signatures: Mapping[str, Sequence[str]],
    *,
    rng: RNGLike,
    method: str = "tirosh",
    n_bins: int = 25,
    ctrl_size: int = 50,
    max_rank: int = 1500,
    n_up: int | None = None,
    aucell_ties: str = "mean",
    chunk_size: int | None = None,
    cells: np.ndarray | None = None,
    gene_means: np.ndarray | None = None,
) -> pd.DataFrame:
    """Score every cell for every signature.

    Parameters
    ----------
    adata
        Log-normalised AnnData (``uns["cd8exo"]["log_normalised"]``); ``X`` is used.
        ``method="ssgsea"`` also needs ``obs["patient"]`` and ``obs["cell_type"]``.
    signatures
        Signature name -> gene symbols as in ``adata.var_names`` (see
        :func:`prepare_signatures`). Genes missing from the data are logged by name and
        ignored.
    rng
        Seed or generator for everything random (the Tirosh control genes; the ssGSEA
        seed). UCell and AUCell are deterministic.
    method
        One of :data:`METHODS` (module docstring).
    n_bins, ctrl_size
        Tirosh: number of expression bins; control genes drawn per bin.
    max_rank
        UCell: ranks beyond ``max_rank`` count as ``max_rank`` (UCell's ``maxRank``).
    n_up
        AUCell: the recovery curve runs over the top ``n_up`` genes of each cell (AUCell's
        ``aucMaxRank``); ``None`` takes 5% of the genes detected in any cell, rounded up
        (decoupler's default).
    aucell_ties
        AUCell: ``"mean"`` (default) gives the exact mean AUC over random orders of tied
        values, ``"order"`` breaks ties by gene (column) order like decoupler's ordinal
        ranks (see :func:`cd8exo.scoring.rank.aucell_scores`).
    chunk_size
        Cells per chunk; ``None`` sizes chunks to about :data:`CHUNK_VALUES` stored values.
    cells
        Boolean mask: score only these cells (e.g. the CD8 T cells, when only their scores
        are used). What a method takes from all cells (Tirosh's gene means, AUCell's
        detected genes) still comes from all cells, so each score equals that of the same
        cell in a run over all cells; only the rows scored, read and kept are fewer.
    gene_means
        Tirosh: the per-gene means over all cells, when the caller has them already.

    Returns
    -------
    Cells (``adata.obs_names``) x signatures, float64. Per-cell methods do not depend on
    whether ``X`` is dense or sparse, nor on the order of the cells or genes. For
    ``ssgsea`` every CD8 T cell carries its patient's score and all other cells NaN, so
    that the per-patient CD8 T-cell mean is the patient's ssGSEA score.

    Raises
    ------
    ValueError
        When some signatures have no gene in the data (all are named: prepare them
        first with :func:`prepare_signatures`), a signature finds no control genes, or
        the method is unknown.

    Notes
    -----
    Tirosh differs from scanpy only in how the controls are drawn: from the bin without
    the signature's genes (scanpy >= 2.0 behaviour, ``ctrl_as_ref=False``), with random
    numbers from :func:`numpy.random.default_rng` per signature, so the control genes,
    not the method, differ from scanpy's for a given seed.
    """
    if method not in METHODS:
        msg = f"Unknown scoring method {method!r}; use one of {', '.join(METHODS)}."
        raise ValueError(msg)
    info = adata.uns.get("cd8exo", {})
    if isinstance(info, dict) and info and not info.get("log_normalised", False):
        logger.warning(
            "Scoring dataset %r whose values are not flagged log-normalised; scores assume "
            "log-scaled X",
            info.get("dataset"),
        )
    if not signatures or adata.n_obs == 0:
        # no signature could be scored in this dataset, or no cell is left: not an error
        return pd.DataFrame(
            index=adata.obs_names.copy(), columns=list(signatures), dtype=np.float64
        )
    coverage = signature_coverage(adata.var_names, signatures)
    empty = coverage.loc[coverage["n_scored"] == 0, "signature"].tolist()
    if empty:
        msg = (
            f"Signature(s) {empty} have no genes in the data ({adata.n_vars} genes); drop them "
            "before scoring (see prepare_signatures) or check the gene symbols (HGNC, "
            "species)."
        )
        raise ValueError(msg)
    for row in coverage.itertuples():
        if row.n_missing:
            logger.warning(
                "Signature %r: %d of %d genes not in the data and ignored: %s",
                row.signature,
                row.n_missing,
                row.n_genes,
                row.genes_missing,
            )
    if method == "ssgsea":
        scores = ssgsea_cell_scores(adata, signatures, rng=rng)
        return scores if cells is None else scores.loc[np.asarray(cells, dtype=bool)]
    reference = _reference(adata, method=method, cells=cells, gene_means=gene_means)
    if cells is not None:
        adata = adata[np.asarray(cells, dtype=bool)]
    scores = score_matrix(
        adata.X,
        adata.var_names,
        signatures,
        method=method,
        rng=rng,
        n_bins=n_bins,
        ctrl_size=ctrl_size,
        max_rank=max_rank,
        n_up=n_up,
        aucell_ties=aucell_ties,
        chunk_size=chunk_size,
        reference=reference,
    )
    return pd.DataFrame(scores, index=adata.obs_names.copy(), columns=list(signatures))


def _reference(
    adata, *, method: str, cells: np.ndarray | None, gene_means: np.ndarray | None
) -> dict[str, np.ndarray] | None:
    """What ``method`` takes from all cells, when only ``cells`` are scored."""
    if method == "tirosh" and (cells is not None or gene_means is not None):
        return {"gene_means": gene_means if gene_means is not None else _gene_means(adata.X)}
    if method == "aucell" and cells is not None:
        return {"detected": detected_genes(adata.X)}
    return None
