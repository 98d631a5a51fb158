"""Rank-based per-cell signature scores, UCell and AUCell, in one pass over the CSR rows.

Both methods rank the genes of each cell by expression (highest first) and ask how
high a signature's genes rank. They need only the ranks of the signature genes, and
every gene that is not expressed in a cell ties with the other zeros at the bottom,
so the ranks come from the stored (non-zero) values of the cell alone. One compiled
loop (numba, single-threaded, ``cache=True``) visits every cell once:

- the cell's non-zero values are counted in a small hash table keyed by their bit
  pattern (for non-negative floats equal values have equal bits and the bits order like
  the values); cells of log-normalised counts hold a few dozen distinct values among
  their ~1,500 non-zero ones, so this is one cheap pass over the row, no sort of it;
- the distinct values are sorted (a few dozen; insertion sort, or a byte-wise radix
  sort when there are many) and their counts accumulated from the
  highest: a signature gene of value ``v`` then has ``above(v)`` values above it and
  ties with ``count(v) - 1`` others, its tie group spanning ranks
  ``above(v) + 1 .. above(v) + count(v)``;
- each signature gene's contribution is added straight into its signatures' scores
  (a genes -> signatures index), so no per-entry array is ever built.

The matrix is never densified, copied or transposed; memory beyond the input is the
cells x signatures result and buffers the size of the longest cell. Values of other
dtypes than float32/float64 (and dense input) are converted a chunk of about
:data:`cd8exo.scoring.CHUNK_VALUES` values at a time.

**UCell** (Andreatta M & Carmona SJ, Comput Struct Biotechnol J 2021;19:3796, as in
``pyucell`` 0.8): ranks among the cell's non-zero values, ties averaged; a rank above
``max_rank``, and every zero, counts as ``max_rank``. With ``n`` signature genes of ranks
``r_i`` the score is ``1 - (sum r_i - n(n+1)/2) / (n max_rank - n(n+1)/2)``, the
Mann-Whitney U statistic normalised to [0, 1]. Here it is computed as
``sum(max_rank - r_i over r_i <= max_rank) / (n max_rank - n(n+1)/2)``, the same number.
These are pyucell's conventions (tested equal to it); the R package may differ in details
such as how the unexpressed genes are ranked.

**AUCell** (Aibar S et al., Nat Methods 2017;14:1083, as in ``decoupler.mt.aucell``
2.x): genes never detected in any cell are left out (decoupler removes empty
features); with ranks ``r`` over the remaining genes, the area under the recovery curve
of the signature in the top ``n_up`` genes is ``sum(max(0, n_up - r_i))``, divided by
its maximum ``k n_up - k(k+1)/2`` with ``k = min(n, n_up - 1)``. Ties need a rule:
R's AUCell breaks them at random, decoupler by gene order (after shuffling the genes
with a fixed seed). ``ties="mean"`` (default) gives the exact *expected* AUC over all
random orders of tied values (each gene's contribution averaged over the positions of
its tie group), which needs no random numbers and does not depend on the gene order;
``ties="order"`` breaks ties by column order, reproducing decoupler given the same gene
order. With ``ties="order"`` a signature gene inside a tie group ranks after the
members of its group that come first in the tie order: they are counted with a bitmap
over the tie-order positions (one bit per gene) and per-64-gene prefix counts, only
for tie groups that start above ``n_up``; a zero gene of a cell with fewer than
``n_up - 1`` non-zero values ranks after those values, among the detected zeros in tie
order, counted the same way.

The kernels are compiled on first use and cached by numba next to this file
(``__pycache__``); the first call in a fresh checkout (or after this file changes)
spends a few seconds compiling.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import scipy.sparse as sp

from cd8exo.scoring._chunks import cell_chunks
from cd8exo.scoring._rank_kernels import _AUCELL_MEAN, _AUCELL_ORDER, _UCELL, _detected, _score_rows

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence
logger = logging.getLogger(__name__)

__all__ = ["aucell_scores", "detected_genes", "ucell_scores"]

_FLOAT_BITS = {
    # dtype: (unsigned view, bits of -0.0, bits of +inf)
    np.dtype(np.float32): (np.uint32, np.uint32(0x80000000), np.uint32(0x7F800000)),
    np.dtype(np.float64): (
        np.uint64,
        np.uint64(0x8000000000000000),
        np.uint64(0x7FF0000000000000),
    ),
}


def _signature_columns(
    var_names: Sequence[str], signatures: Mapping[str, Sequence[str]], *, usable: np.ndarray
) -> list[np.ndarray]:
    """The usable gene columns of every signature (each gene once)."""
    names = pd.Index(list(map(str, var_names)))
    columns = []
    for genes in signatures.values():
        found = names.get_indexer(list(dict.fromkeys(map(str, genes))))
        found = found[found >= 0]
        columns.append(found[usable[found]].astype(np.int64))
    return columns


def _gene_index(columns: list[np.ndarray], n_genes: int) -> tuple[np.ndarray, np.ndarray]:
    """Genes -> signatures as CSR: signatures of gene ``g`` are ``sigs[ptr[g]:ptr[g + 1]]``."""
    genes = np.concatenate([*columns, np.zeros(0, dtype=np.int64)])
    signature = np.repeat(np.arange(len(columns), dtype=np.int64), [c.size for c in columns])
    order = np.argsort(genes, kind="stable")
    ptr = np.zeros(n_genes + 1, dtype=np.int64)
    np.cumsum(np.bincount(genes, minlength=n_genes), out=ptr[1:])
    return ptr, signature[order]


def _csr_blocks(x, chunk_size: int | None):
    """The whole CSR matrix at once when the kernel can read it as is, else chunks."""
    if chunk_size is None and sp.issparse(x) and x.format == "csr" and x.dtype in _FLOAT_BITS:
        yield 0, x.shape[0], x
        return
    yield from cell_chunks(x, chunk_size=chunk_size)


def _score(
    x,
    columns: list[np.ndarray],
    *,
    mode: int,
    limit: int,
    chunk_size: int | None,
    n_detected: int = 0,
    priority: np.ndarray | None = None,
    detected_before: np.ndarray | None = None,
) -> np.ndarray:
    """Run :func:`_score_rows` over ``x``: cells x signatures sums of the gains."""
    n_genes = x.shape[1]
    gene_ptr, gene_sigs = _gene_index(columns, n_genes)
    sizes = np.array([c.size for c in columns], dtype=np.float64)
    union = np.flatnonzero(np.diff(gene_ptr) > 0)
    unused = np.zeros(1, dtype=np.int64)
    out = np.zeros((x.shape[0], len(columns)))
    for start, stop, chunk in _csr_blocks(x, chunk_size):
        data = chunk.data
        if data.dtype not in _FLOAT_BITS:
            data = data.astype(np.float64)  # exact for counts; one chunk at a time
        view, negative_zero, infinity = _FLOAT_BITS[data.dtype]
        bad = _score_rows(
            np.asarray(chunk.indptr, dtype=np.int64),
            chunk.indices,
            data.view(view),
            negative_zero,
            infinity,
            gene_ptr,
            gene_sigs,
            sizes,
            mode,
            limit,
            n_detected,
            unused if priority is None else priority,
            unused if detected_before is None else detected_before,
            union,
            out[start:stop],
        )
        if bad >= 0:
            msg = (
                f"Cell {start + bad} has negative or NaN values; rank-based scores "
                "(UCell, AUCell) need non-negative log-normalised expression, not scaled or "
                "centred values. Score the log-normalised matrix."
            )
            raise ValueError(msg)
    return out


def ucell_scores(
    x,
    var_names: Sequence[str],
    signatures: Mapping[str, Sequence[str]],
    *,
    max_rank: int = 1500,
    chunk_size: int | None = None,
) -> np.ndarray:
    """UCell scores (module docstring) of a cells x genes matrix.

    Parameters
    ----------
    x
        Cells x genes, sparse or dense, non-negative (log-normalised expression).
    var_names
        Gene names of the columns.
    signatures
        Signature name -> genes; genes absent from ``var_names`` are ignored (like
        ``pyucell``'s ``missing_genes="skip"``), genes present but never expressed
        count with rank ``max_rank``.
    max_rank
        UCell's ``maxRank``: ranks above it count as ``max_rank``.
    chunk_size
        Cells per chunk (``None``: a float32/float64 CSR matrix in one pass, other
        input in chunks of about :data:`cd8exo.scoring.CHUNK_VALUES` values).

    Returns
    -------
    Cells x signatures, float64, in [0, 1]; equal to ``pyucell.compute_ucell_scores``
    (``ties_method="average"``, ``missing_genes="skip"``) up to its float32 rounding.

    Raises
    ------
    ValueError
        A signature with no gene in ``var_names`` or with more genes than ``max_rank``
        (as UCell), a ``max_rank`` below 1, or negative/NaN values.
    """
    if max_rank < 1:
        msg = f"max_rank must be at least 1, got {max_rank}."
        raise ValueError(msg)
    columns = _signature_columns(var_names, signatures, usable=np.ones(x.shape[1], dtype=bool))
    sizes = np.array([c.size for c in columns], dtype=np.float64)
    _check_sizes(signatures, sizes)
    too_long = [s for s, n in zip(signatures, sizes, strict=True) if n > max_rank]
    if too_long:
        msg = (
            f"Signature(s) {too_long} have more genes than max_rank={max_rank}; increase "
            "scoring.ucell_max_rank or use shorter signatures (as UCell requires)."
        )
        raise ValueError(msg)
    denominator = sizes * max_rank - sizes * (sizes + 1) / 2.0
    out = _score(x, columns, mode=_UCELL, limit=max_rank, chunk_size=chunk_size)
    return out / denominator


def detected_genes(x) -> np.ndarray:
    """Boolean mask of the genes with a non-zero value in at least one cell."""
    detected = np.zeros(x.shape[1], dtype=bool)
    for _, _, chunk in _csr_blocks(x, None):
        if chunk.dtype in _FLOAT_BITS:
            nnz = chunk.indptr[-1]
            _detected(chunk.indices[:nnz], chunk.data[:nnz], detected)
        else:
            detected[chunk.indices[chunk.data != 0]] = True
    return detected


def aucell_scores(
    x,
    var_names: Sequence[str],
    signatures: Mapping[str, Sequence[str]],
    *,
    n_up: int | None = None,
    ties: str = "mean",
    tie_order: Sequence[int] | None = None,
    chunk_size: int | None = None,
    detected: np.ndarray | None = None,
) -> np.ndarray:
    """AUCell scores (module docstring) of a cells x genes matrix.

    Parameters
    ----------
    x
        Cells x genes, sparse or dense, non-negative (log-normalised expression).
    var_names
        Gene names of the columns.
    signatures
        Signature name -> genes; genes absent from ``var_names`` or never detected are
        ignored (as in decoupler).
    n_up
        Length of the recovery curve (AUCell's ``aucMaxRank``); ``None`` takes
        ``ceil(0.05 * n_detected)`` clipped to [2, n_detected], decoupler's default.
    ties
        ``"mean"``: exact mean over random orders of tied values; ``"order"``: ties
        broken by gene order (decoupler's ordinal ranks for the same gene order).
    tie_order
        With ``ties="order"``: the position of every gene (column) in the tie-breaking
        order, a permutation of ``0 .. n_genes - 1``; ``None`` is the column order.
    chunk_size
        Cells per chunk (``None``: a float32/float64 CSR matrix in one pass, other
        input in chunks of about :data:`cd8exo.scoring.CHUNK_VALUES` values).

    Returns
    -------
    Cells x signatures, float64, in [0, 1]; a signature none of whose genes is ever
    detected scores NaN (logged).

    Raises
    ------
    ValueError
        Unknown ``ties``, ``n_up`` outside [2, n_detected], a signature with no gene in
        ``var_names``, or negative/NaN values.
    """
    if ties not in ("mean", "order"):
        msg = f"ties must be 'mean' or 'order', got {ties!r}."
        raise ValueError(msg)
    n_genes = x.shape[1]
    priority = np.arange(n_genes) if tie_order is None else np.asarray(tie_order, dtype=np.int64)
    if ties == "mean" and tie_order is not None:
        msg = "tie_order is used only with ties='order'."
        raise ValueError(msg)
    if priority.shape != (n_genes,) or not np.array_equal(np.sort(priority), np.arange(n_genes)):
        msg = f"tie_order must be a permutation of 0..{n_genes - 1} (one position per gene)."
        raise ValueError(msg)
    if detected is None:
        detected = detected_genes(x)
    n_detected = int(detected.sum())
    if n_up is None:
        n_up = int(np.clip(np.ceil(0.05 * n_detected), 2, max(n_detected, 2)))
    if not 2 <= n_up <= n_detected:
        msg = (
            f"n_up={n_up} must be between 2 and the number of detected genes ({n_detected}); "
            "set scoring.aucell_n_up accordingly (or null for 5% of the detected genes)."
        )
        raise ValueError(msg)
    present = [
        c.size for c in _signature_columns(var_names, signatures, usable=~np.zeros_like(detected))
    ]
    _check_sizes(signatures, np.array(present))
    columns = _signature_columns(var_names, signatures, usable=detected)
    sizes = np.array([c.size for c in columns], dtype=np.float64)
    never = [s for s, n, m in zip(signatures, sizes, present, strict=True) if n < m]
    if never:
        logger.info("AUCell: genes never detected in any cell are left out of %s", never)
    k = np.minimum(sizes, n_up - 1)
    max_auc = k * n_up - k * (k + 1) / 2.0
    with np.errstate(invalid="ignore", divide="ignore"):
        scale = np.where(max_auc > 0, 1.0 / max_auc, np.nan)
    if np.isnan(scale).any():
        empty = [s for s, v in zip(signatures, scale, strict=True) if np.isnan(v)]
        logger.warning("AUCell: no gene of %s is detected in any cell; scores are NaN", empty)
    if ties == "mean":
        out = _score(
            x, columns, mode=_AUCELL_MEAN, limit=n_up, n_detected=n_detected, chunk_size=chunk_size
        )
    else:
        # detected genes before each gene in the tie order, for the ranks of zeros
        in_order = np.zeros(n_genes, dtype=np.int64)
        in_order[priority] = detected
        detected_before = np.concatenate([[0], np.cumsum(in_order)[:-1]])[priority]
        out = _score(
            x,
            columns,
            mode=_AUCELL_ORDER,
            limit=n_up,
            n_detected=n_detected,
            priority=priority.astype(np.int64),
            detected_before=detected_before.astype(np.int64),
            chunk_size=chunk_size,
        )
    return out * scale[None, :]


def _check_sizes(signatures: Mapping[str, Sequence[str]], sizes: np.ndarray) -> None:
    empty = [s for s, n in zip(signatures, sizes, strict=True) if n == 0]
    if empty:
        msg = (
            f"Signature(s) {empty} have no genes in the data; drop them before scoring (see "
            "cd8exo.scoring.prepare_signatures) or check the gene symbols."
        )
        raise ValueError(msg)
