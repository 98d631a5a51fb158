"""Tirosh et al. (2016) signature scores, as scanpy.tl.score_genes computes them, in chunks."""

from __future__ import annotations

import logging
import zlib
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import scipy.sparse as sp

from cd8exo._utils import RNGLike
from cd8exo.scoring._chunks import cell_chunks, gene_means

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

logger = logging.getLogger(__name__)

__all__ = ["control_genes", "expression_bins", "signature_weights"]


# --------------------------------------------------------------------------- #
# Tirosh / scanpy.tl.score_genes
# --------------------------------------------------------------------------- #
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
    rng: RNGLike,
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


def tirosh_scores(
    x,
    var_names: Sequence[str],
    signatures: Mapping[str, Sequence[str]],
    *,
    rng: RNGLike,
    n_bins: int = 25,
    ctrl_size: int = 50,
    controls: Mapping[str, Sequence[str]] | None = None,
    chunk_size: int | None = None,
    means: np.ndarray | None = None,
) -> np.ndarray:
    """Tirosh scores of a cells x genes matrix (see :func:`score_signatures`).

    ``controls`` (signature -> control genes) replaces the random draw, e.g. to give two
    implementations the same control genes; ``means`` (per gene) replaces the gene means
    of ``x`` the control genes are binned by. Returns cells x signatures, float64.
    """
    if controls is None:
        if means is None:
            means = gene_means(x)
        controls = control_genes(
            var_names, means, signatures, rng=rng, n_bins=n_bins, ctrl_size=ctrl_size
        )
    no_controls = [s for s in signatures if not controls.get(s)]
    if no_controls:
        msg = (
            f"Signature(s) {no_controls} found no control genes; the data have too few genes "
            f"({len(var_names)}) for n_bins={n_bins}."
        )
        raise ValueError(msg)
    for signature in signatures:
        logger.debug("Signature %r: %d control genes", signature, len(controls[signature]))
    weights = signature_weights(var_names, signatures, controls)
    # csr x dense costs ~ stored values x signatures, csr x sparse ~ stored values x
    # (non-zeros per row of W) with a larger constant: dense W for a few signatures or
    # a dense W (whole-bin controls), sparse W for many sets (e.g. 200 random sets).
    n_sets = len(signatures)
    if n_sets <= 32 or weights.nnz / max(1, weights.shape[0]) >= n_sets / 3:
        weights = weights.toarray()
    else:
        weights = weights.tocsr()
    out = np.empty((x.shape[0], n_sets), dtype=np.float64)
    for start, stop, chunk in cell_chunks(x, chunk_size=chunk_size):
        chunk64 = sp.csr_matrix(
            (chunk.data.astype(np.float64), chunk.indices, chunk.indptr), shape=chunk.shape
        )
        product = chunk64 @ weights
        out[start:stop] = product.toarray() if sp.issparse(product) else product
    return out
