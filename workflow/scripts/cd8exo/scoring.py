"""Gene-signature scores per cell (Tirosh et al. 2016; ``scanpy.tl.score_genes``).

The score of a cell for a signature is the mean expression of the signature's genes
minus the mean expression of control genes drawn at random from the same expression
bins (Tirosh I et al., Science 2016, doi:10.1126/science.aad0501; Satija R et al.,
Nat Biotechnol 2015). This is the algorithm of :func:`scanpy.tl.score_genes`, computed
here for all signatures at once as one sparse product ``X @ W`` in chunks of cells, so
that ``X`` is never densified.
"""

from __future__ import annotations

import logging
import zlib
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import scipy.sparse as sp

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    import anndata as ad

logger = logging.getLogger(__name__)

#: Stored values summed at a time by :func:`gene_means`.
_CHUNK_VALUES = 10_000_000

__all__ = [
    "control_genes",
    "expression_bins",
    "score_signatures",
    "signature_coverage",
    "signature_weights",
]


def signature_coverage(
    var_names: Sequence[str], signatures: Mapping[str, Sequence[str]]
) -> pd.DataFrame:
    """How many genes of each signature the data contain.

    Parameters
    ----------
    var_names
        Gene symbols of the data.
    signatures
        Signature name -> gene symbols.

    Returns
    -------
    One row per signature: ``signature``, ``n_genes``, ``n_found``, ``n_missing``,
    ``fraction_found``, ``genes_found`` and ``genes_missing`` (comma-joined, in
    signature order).
    """
    present = set(map(str, var_names))
    rows = []
    for name, genes in signatures.items():
        unique = list(dict.fromkeys(genes))
        found = [g for g in unique if g in present]
        missing = [g for g in unique if g not in present]
        rows.append(
            {
                "signature": name,
                "n_genes": len(unique),
                "n_found": len(found),
                "n_missing": len(missing),
                "fraction_found": len(found) / len(unique) if unique else np.nan,
                "genes_found": ",".join(found),
                "genes_missing": ",".join(missing),
            }
        )
    columns = [
        "signature",
        "n_genes",
        "n_found",
        "n_missing",
        "fraction_found",
        "genes_found",
        "genes_missing",
    ]
    return pd.DataFrame(rows, columns=columns)


def gene_means(x: np.ndarray | sp.spmatrix | sp.sparray) -> np.ndarray:
    """Mean of every gene (column) over all cells, in float64, without densifying."""
    if sp.issparse(x):
        x = sp.csr_matrix(x)
        sums = np.zeros(x.shape[1])
        # Chunks of stored values bound the float64 temporaries on large data.
        for start in range(0, x.data.size, _CHUNK_VALUES):
            stop = start + _CHUNK_VALUES
            sums += np.bincount(
                x.indices[start:stop],
                weights=x.data[start:stop].astype(np.float64),
                minlength=x.shape[1],
            )
        return sums / x.shape[0]
    return np.mean(x, axis=0, dtype=np.float64)


def expression_bins(means: np.ndarray, *, n_bins: int = 25) -> np.ndarray:
    """Expression bin of every gene, exactly as :func:`scanpy.tl.score_genes` cuts them.

    Genes are ranked by mean expression (ties get the lowest rank) and the rank is
    floor-divided by ``round(n_genes / (n_bins - 1))``, which gives about ``n_bins``
    bins of equal size.

    Parameters
    ----------
    means
        Mean expression per gene (finite).
    n_bins
        Number of bins (at least 2).

    Returns
    -------
    Integer bin per gene.
    """
    if n_bins < 2:
        msg = f"n_bins must be at least 2, got {n_bins}."
        raise ValueError(msg)
    n_items = int(np.round(len(means) / (n_bins - 1)))
    if n_items < 1:
        msg = (
            f"Too few genes ({len(means)}) for n_bins={n_bins}; use fewer bins "
            f"(at most {2 * len(means)})."
        )
        raise ValueError(msg)
    ranks = pd.Series(means).rank(method="min").to_numpy()
    return (ranks // n_items).astype(np.int64)


def control_genes(
    var_names: Sequence[str],
    means: np.ndarray,
    signatures: Mapping[str, Sequence[str]],
    *,
    rng: int | np.random.Generator | np.random.SeedSequence | None,
    n_bins: int = 25,
    ctrl_size: int = 50,
) -> dict[str, list[str]]:
    """Draw the control genes of each signature.

    For every expression bin (see :func:`expression_bins`) that holds a gene of the
    signature, ``ctrl_size`` genes are drawn without replacement from the bin's genes
    that are not in the signature (all of them when the bin has fewer); the controls
    are the union over bins. Each signature draws from its own generator, seeded by
    ``rng`` and the signature's name, so adding or dropping a signature does not change
    the controls of the others.

    Parameters
    ----------
    var_names
        Gene symbols (unique), in the order of ``means``.
    means
        Mean expression per gene over all cells (:func:`gene_means`).
    signatures
        Signature name -> genes; genes not in ``var_names`` are ignored.
    rng
        Seed or generator (:func:`numpy.random.default_rng`).
    n_bins, ctrl_size
        As in :func:`scanpy.tl.score_genes`.

    Returns
    -------
    Signature -> control genes, in ``var_names`` order.
    """
    names = pd.Index(list(map(str, var_names)))
    means = np.asarray(means, dtype=np.float64)
    if not np.all(np.isfinite(means)):
        msg = "Gene means contain NaN/inf; the expression matrix must be finite."
        raise ValueError(msg)
    bins = expression_bins(means, n_bins=n_bins)
    base_seed = int(np.random.default_rng(rng).integers(2**63))
    chosen: dict[str, list[str]] = {}
    for signature, genes in signatures.items():
        positions = names.get_indexer(list(dict.fromkeys(genes)))
        positions = positions[positions >= 0]
        in_signature = np.zeros(len(names), dtype=bool)
        in_signature[positions] = True
        generator = np.random.default_rng([base_seed, zlib.crc32(signature.encode("utf-8"))])
        picked: list[np.ndarray] = []
        for cut in np.unique(bins[positions]):
            candidates = np.flatnonzero((bins == cut) & ~in_signature)
            if len(candidates) == 0:
                logger.warning(
                    "Signature %r: no control genes in expression bin %d", signature, cut
                )
                continue
            if len(candidates) > ctrl_size:
                candidates = generator.choice(candidates, size=ctrl_size, replace=False)
            picked.append(candidates)
        positions_ctrl = np.unique(np.concatenate(picked)) if picked else np.array([], int)
        chosen[signature] = names[positions_ctrl].tolist()
    return chosen


def signature_weights(
    var_names: Sequence[str],
    signatures: Mapping[str, Sequence[str]],
    controls: Mapping[str, Sequence[str]],
) -> sp.csc_matrix:
    """Genes x signatures weights: ``+1/n`` on signature genes, ``-1/m`` on controls.

    ``X @ W`` is then mean(signature genes) - mean(control genes) for every cell.
    """
    names = pd.Index(list(map(str, var_names)))
    rows, cols, values = [], [], []
    for j, signature in enumerate(signatures):
        plus = names.get_indexer(list(dict.fromkeys(signatures[signature])))
        plus = plus[plus >= 0]
        minus = names.get_indexer(list(controls[signature]))
        if len(plus) == 0 or len(minus) == 0 or (minus < 0).any():
            msg = f"Signature {signature!r}: no genes, or control genes missing from the data."
            raise ValueError(msg)
        rows += [plus, minus]
        cols += [np.full(len(plus), j), np.full(len(minus), j)]
        values += [np.full(len(plus), 1.0 / len(plus)), np.full(len(minus), -1.0 / len(minus))]
    return sp.csc_matrix(
        (np.concatenate(values), (np.concatenate(rows), np.concatenate(cols))),
        shape=(len(names), len(signatures)),
    )


def score_signatures(
    adata: ad.AnnData,
    signatures: Mapping[str, Sequence[str]],
    *,
    rng: int | np.random.Generator | np.random.SeedSequence | None,
    n_bins: int = 25,
    ctrl_size: int = 50,
    chunk_size: int = 20000,
) -> pd.DataFrame:
    """Score every cell for every signature (Tirosh et al. 2016).

    Same algorithm as :func:`scanpy.tl.score_genes`: gene means over all cells are
    ranked and cut into ``n_bins`` expression bins; for each bin holding a signature
    gene, ``ctrl_size`` control genes are drawn from that bin (never the signature's
    own genes); the score is the mean of the signature genes minus the mean of the
    control genes. All signatures are computed together as ``X @ W`` (see
    :func:`signature_weights`) over chunks of cells, never densifying ``X``.

    Parameters
    ----------
    adata
        Log-normalised AnnData (``uns["cd8exo"]["log_normalised"]``); ``X`` is used.
    signatures
        Signature name -> gene symbols. Genes missing from the data are logged by name
        and ignored.
    rng
        Seed or generator for the control genes (:func:`numpy.random.default_rng`).
    n_bins
        Number of expression bins.
    ctrl_size
        Control genes drawn per bin.
    chunk_size
        Cells per chunk of the matrix product (bounds memory).

    Returns
    -------
    Cells (``adata.obs_names``) x signatures, float64. The result does not depend on
    whether ``X`` is dense or sparse, nor on the order of the cells.

    Raises
    ------
    ValueError
        When some signatures have no gene in the data (all are named: drop them first,
        see :func:`signature_coverage`), or a signature finds no control genes.

    Notes
    -----
    Differences from scanpy: controls are drawn from the bin without the signature's
    genes (scanpy >= 2.0 behaviour, ``ctrl_as_ref=False``), and the random numbers come
    from :func:`numpy.random.default_rng` per signature, so the control genes, not the
    method, differ from scanpy's for a given seed.
    """
    info = adata.uns.get("cd8exo", {})
    if isinstance(info, dict) and info and not info.get("log_normalised", False):
        logger.warning(
            "Scoring dataset %r whose values are not flagged log-normalised; scores assume "
            "log-scaled X",
            info.get("dataset"),
        )
    coverage = signature_coverage(adata.var_names, signatures)
    empty = coverage.loc[coverage["n_found"] == 0, "signature"].tolist()
    if empty:
        msg = (
            f"Signature(s) {empty} have no genes in the data ({adata.n_vars} genes); drop them "
            "before scoring (see signature_coverage) or check the gene symbols (HGNC, "
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

    x = adata.X
    means = gene_means(x)
    controls = control_genes(
        adata.var_names, means, signatures, rng=rng, n_bins=n_bins, ctrl_size=ctrl_size
    )
    no_controls = [s for s, c in controls.items() if not c]
    if no_controls:
        msg = (
            f"Signature(s) {no_controls} found no control genes; the data have too few genes "
            f"({adata.n_vars}) for n_bins={n_bins}."
        )
        raise ValueError(msg)
    for signature, genes in controls.items():
        logger.debug("Signature %r: %d control genes", signature, len(genes))
    weights = signature_weights(adata.var_names, signatures, controls)
    scores = _chunked_product(x, weights, chunk_size=chunk_size)
    return pd.DataFrame(scores, index=adata.obs_names.copy(), columns=list(signatures))


def _chunked_product(x, weights: sp.csc_matrix, *, chunk_size: int) -> np.ndarray:
    if sp.issparse(x) and x.format != "csr":
        x = sp.csr_matrix(x)
    n_cells = x.shape[0]
    out = np.empty((n_cells, weights.shape[1]), dtype=np.float64)
    dense_weights = None
    for start in range(0, n_cells, chunk_size):
        stop = min(start + chunk_size, n_cells)
        if sp.issparse(x):
            chunk = sp.csr_matrix(x[start:stop], dtype=np.float64)
            out[start:stop] = (chunk @ weights).toarray()
        else:
            if dense_weights is None:
                dense_weights = weights.toarray()
            out[start:stop] = np.asarray(x[start:stop], dtype=np.float64) @ dense_weights
    return out
