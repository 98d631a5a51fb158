"""Rank-based per-cell signature scores, UCell and AUCell, on sparse chunks of cells.

Both methods rank the genes of each cell by expression (highest first) and ask how
high a signature's genes rank. They need only the ranks of the signature genes, and
every gene that is not expressed in a cell ties with the other zeros at the bottom,
so the ranks are computed from the stored (non-zero) values alone:

- each non-zero value is encoded with its cell in one unsigned 64-bit key
  ``(cell << 32) | ~value_bits`` (for non-negative float32 values the IEEE bit pattern
  orders like the value; other dtypes are first replaced by their rank among the
  chunk's distinct values), and the chunk's keys are sorted once;
- the ranks of the signature genes' entries are found by binary search in the sorted
  keys: the first and last positions of their tie group within their cell.

A chunk of about :data:`cd8exo.scoring.CHUNK_VALUES` stored values at a time: the
matrix is never densified, never copied whole and never transposed. The per-entry
contributions are then summed per signature by one sparse product with a genes x
signatures membership matrix.

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
order.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import scipy.sparse as sp

from cd8exo.scoring._chunks import cell_chunks

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence
logger = logging.getLogger(__name__)

__all__ = ["aucell_scores", "detected_genes", "ucell_scores"]

_VALUE_BITS = 32


_ALL_ONES = np.uint64(0xFFFFFFFF)


def _membership(
    var_names: Sequence[str], signatures: Mapping[str, Sequence[str]], *, usable: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Union of the signatures' usable genes, and union x signatures 0/1 membership.

    Returns ``(union, position, membership)``: gene columns in the union (sorted), the
    union position of every gene column (-1 outside it) and the dense membership.
    """
    names = pd.Index(list(map(str, var_names)))
    columns = []
    for genes in signatures.values():
        found = names.get_indexer(list(dict.fromkeys(map(str, genes))))
        found = found[found >= 0]
        columns.append(found[usable[found]])
    union = np.unique(np.concatenate(columns)) if columns else np.array([], dtype=np.int64)
    position = np.full(len(names), -1, dtype=np.int64)
    position[union] = np.arange(len(union))
    membership = np.zeros((len(union), len(signatures)))
    for j, found in enumerate(columns):
        membership[position[found], j] = 1.0
    return union, position, membership


def _check_values(data: np.ndarray, *, start: int, stop: int) -> None:
    if data.size and not (data >= 0).all():
        msg = (
            f"Cells {start}-{stop - 1} have negative or NaN values; rank-based scores "
            "(UCell, AUCell) need non-negative log-normalised expression, not scaled or "
            "centred values. Score the log-normalised matrix."
        )
        raise ValueError(msg)


def _value_codes(data: np.ndarray) -> np.ndarray:
    """Unsigned codes ordered like the (non-negative) values, as uint64."""
    if data.dtype == np.float32:
        return data.view(np.uint32).astype(np.uint64)
    order = np.argsort(data, kind="stable")
    ordered = data[order]
    codes = np.empty(data.size, dtype=np.uint64)
    codes[order] = np.cumsum(np.concatenate([[False], ordered[1:] != ordered[:-1]]))
    return codes


def _entry_ranks(
    chunk: sp.csr_matrix,
    wanted: np.ndarray,
    *,
    start: int,
    ordinal: bool,
    priority: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Ranks (1 = highest) of the ``wanted`` genes' non-zero entries within their cell.

    Returns ``(rows, cols, low, high, n_positive)``: for every non-zero entry of a wanted
    gene, in CSR order, its cell (row of the chunk), gene column and the first and last
    rank of its tie group (equal when ``ordinal``: ties broken by ``priority``, the
    position of every column in the tie order, default the column order), and the
    number of non-zero values of every cell.
    """
    n_rows, n_genes = chunk.shape
    data, indices = chunk.data, chunk.indices
    _check_values(data, start=start, stop=start + n_rows)
    lengths = np.diff(chunk.indptr).astype(np.int64)
    positive = data > 0
    if not positive.all():
        # explicit zeros are zeros
        rows = np.repeat(np.arange(n_rows, dtype=np.uint64), lengths)[positive]
        data, indices = data[positive], indices[positive]
        lengths = np.bincount(rows.astype(np.int64), minlength=n_rows)
    else:
        rows = np.repeat(np.arange(n_rows, dtype=np.uint64), lengths)
    row_start = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    keys = _value_codes(data)
    np.subtract(_ALL_ONES, keys, out=keys)  # highest value first
    query = wanted[indices]
    q_rows = rows[query].astype(np.int64)
    q_cols = indices[query].astype(np.int64)
    if ordinal:
        col_bits = max(1, int(n_genes - 1).bit_length())
        if n_rows >= 2 ** (64 - _VALUE_BITS - col_bits):
            msg = f"Internal: {n_rows} cells are too many for one chunk of {n_genes} genes."
            raise ValueError(msg)
        keys <<= np.uint64(col_bits)
        keys |= (indices if priority is None else priority[indices]).astype(np.uint64)
        rows <<= np.uint64(_VALUE_BITS + col_bits)
    else:
        rows <<= np.uint64(_VALUE_BITS)
    keys |= rows
    del rows
    q_keys = keys[query]
    keys.sort()
    offset = row_start[q_rows]
    if ordinal:
        low = np.searchsorted(keys, q_keys) - offset + 1
        return q_rows, q_cols, low, low, lengths
    first = np.flatnonzero(np.concatenate([[True], keys[1:] != keys[:-1]]))
    last = np.append(first[1:], keys.size)
    group = np.searchsorted(keys[first], q_keys)
    return q_rows, q_cols, first[group] - offset + 1, last[group] - offset, lengths


def _row_blocks(chunk: sp.csr_matrix, max_rows: int):
    for begin in range(0, chunk.shape[0], max_rows):
        end = min(begin + max_rows, chunk.shape[0])
        first, last = chunk.indptr[begin], chunk.indptr[end]
        yield (
            begin,
            end,
            sp.csr_matrix(
                (
                    chunk.data[first:last],
                    chunk.indices[first:last],
                    chunk.indptr[begin : end + 1] - first,
                ),
                shape=(end - begin, chunk.shape[1]),
                copy=False,
            ),
        )


def _summed(
    rows: np.ndarray,
    union_positions: np.ndarray,
    values: np.ndarray,
    *,
    n_rows: int,
    membership: np.ndarray,
) -> np.ndarray:
    """Per-cell sums of entry values over each signature's genes (cells x signatures)."""
    indptr = np.concatenate([[0], np.cumsum(np.bincount(rows, minlength=n_rows))])
    entries = sp.csr_matrix((values, union_positions, indptr), shape=(n_rows, membership.shape[0]))
    return np.asarray(entries @ membership)


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
        Cells per chunk (``None``: about :data:`cd8exo.scoring.CHUNK_VALUES` values).

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
    n_genes = x.shape[1]
    _, position, membership = _membership(
        var_names, signatures, usable=np.ones(n_genes, dtype=bool)
    )
    sizes = membership.sum(axis=0)
    _check_sizes(signatures, sizes)
    too_long = [s for s, n in zip(signatures, sizes, strict=True) if n > max_rank]
    if too_long:
        msg = (
            f"Signature(s) {too_long} have more genes than max_rank={max_rank}; increase "
            "scoring.ucell_max_rank or use shorter signatures (as UCell requires)."
        )
        raise ValueError(msg)
    wanted = position >= 0
    denominator = sizes * max_rank - sizes * (sizes + 1) / 2.0
    out = np.empty((x.shape[0], len(signatures)))
    for start, stop, chunk in cell_chunks(x, chunk_size=chunk_size):
        rows, cols, low, high, _ = _entry_ranks(chunk, wanted, start=start, ordinal=False)
        rank = (low + high) / 2.0
        gain = np.where(rank <= max_rank, max_rank - rank, 0.0)
        out[start:stop] = _summed(
            rows, position[cols], gain, n_rows=stop - start, membership=membership
        )
    return out / denominator


def detected_genes(x) -> np.ndarray:
    """Boolean mask of the genes with a non-zero value in at least one cell."""
    detected = np.zeros(x.shape[1], dtype=bool)
    for _, _, chunk in cell_chunks(x):
        detected[chunk.indices[chunk.data != 0]] = True
    return detected


def _mean_gain(low: np.ndarray, high: np.ndarray, n_up: int) -> np.ndarray:
    """Mean of max(0, n_up - r) over the ranks r = low..high of a tie group."""
    low = np.asarray(low, dtype=np.float64)
    high = np.asarray(high, dtype=np.float64)
    top = np.minimum(high, n_up - 1.0)
    count = np.maximum(top - low + 1.0, 0.0)
    total = count * n_up - (low + top) * count / 2.0
    # an empty group (a cell without zeros) gains nothing
    return np.divide(total, high - low + 1.0, out=np.zeros_like(total), where=count > 0)


def aucell_scores(
    x,
    var_names: Sequence[str],
    signatures: Mapping[str, Sequence[str]],
    *,
    n_up: int | None = None,
    ties: str = "mean",
    tie_order: Sequence[int] | None = None,
    chunk_size: int | None = None,
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
        Cells per chunk (``None``: about :data:`cd8exo.scoring.CHUNK_VALUES` values).

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
    _, _, present = _membership(var_names, signatures, usable=np.ones(x.shape[1], dtype=bool))
    _check_sizes(signatures, present.sum(axis=0))
    union, position, membership = _membership(var_names, signatures, usable=detected)
    sizes = membership.sum(axis=0)
    never = [s for s, n, m in zip(signatures, sizes, present.sum(axis=0), strict=True) if n < m]
    if never:
        logger.info("AUCell: genes never detected in any cell are left out of %s", never)
    k = np.minimum(sizes, n_up - 1)
    max_auc = k * n_up - k * (k + 1) / 2.0
    with np.errstate(invalid="ignore", divide="ignore"):
        scale = np.where(max_auc > 0, 1.0 / max_auc, np.nan)
    if np.isnan(scale).any():
        empty = [s for s, v in zip(signatures, scale, strict=True) if np.isnan(v)]
        logger.warning("AUCell: no gene of %s is detected in any cell; scores are NaN", empty)
    wanted = position >= 0
    col_bits = max(1, int(x.shape[1] - 1).bit_length())
    max_rows = 2 ** (64 - _VALUE_BITS - col_bits) - 1
    # detected genes before each gene in the tie order, for the ranks of zeros
    in_order = np.zeros(n_genes, dtype=np.int64)
    in_order[priority] = detected
    detected_before = np.concatenate([[0], np.cumsum(in_order)[:-1]])[priority]
    out = np.empty((x.shape[0], len(signatures)))
    for start, _, big_chunk in cell_chunks(x, chunk_size=chunk_size):
        for begin, end, chunk in _row_blocks(big_chunk, max_rows):
            first_cell = start + begin
            n_rows = end - begin
            rows, cols, low, high, n_positive = _entry_ranks(
                chunk, wanted, start=first_cell, ordinal=ties == "order", priority=priority
            )
            gain = _mean_gain(low, high, n_up)
            scores = _summed(rows, position[cols], gain, n_rows=n_rows, membership=membership)
            if ties == "mean":
                # every zero of a cell ties at ranks n_positive+1 .. n_detected
                zero_gain = _mean_gain(n_positive + 1, np.full(n_rows, n_detected), n_up)
                n_nonzero = _summed(
                    rows, position[cols], np.ones(len(rows)), n_rows=n_rows, membership=membership
                )
                scores += zero_gain[:, None] * (sizes[None, :] - n_nonzero)
            else:
                scores += _zero_gains_in_order(
                    chunk,
                    union,
                    membership,
                    n_positive=n_positive,
                    detected_before=detected_before,
                    priority=priority,
                    n_up=n_up,
                )
            out[first_cell : first_cell + n_rows] = scores * scale[None, :]
    return out


def _zero_gains_in_order(
    chunk: sp.csr_matrix,
    union: np.ndarray,
    membership: np.ndarray,
    *,
    n_positive: np.ndarray,
    detected_before: np.ndarray,
    priority: np.ndarray,
    n_up: int,
) -> np.ndarray:
    """AUC gains of signature genes that are zero in a cell, ties in ``priority`` order.

    A zero gene ``g`` of a cell ranks after the cell's non-zero values, among the
    detected zeros in tie order: ``n_positive + 1 + (detected genes before g) -
    (non-zero genes before g)``. Only cells with fewer than ``n_up - 1`` non-zero values
    can gain anything.
    """
    n_rows, n_genes = chunk.shape
    out = np.zeros((n_rows, membership.shape[1]))
    short = np.flatnonzero(n_positive + 1 < n_up)
    if short.size == 0 or union.size == 0:
        return out
    block = max(1, 2_000_000 // union.size)
    for begin in range(0, short.size, block):
        cells = short[begin : begin + block]
        sub = chunk[cells]
        sub_rows = np.repeat(np.arange(len(cells), dtype=np.int64), np.diff(sub.indptr))
        nonzero = sub.data > 0
        positive_keys = np.sort(sub_rows[nonzero] * n_genes + priority[sub.indices[nonzero]])
        query = np.arange(len(cells), dtype=np.int64)[:, None] * n_genes + priority[union][None, :]
        query = query.ravel()
        where = np.searchsorted(positive_keys, query)
        is_positive = (where < positive_keys.size) & (
            positive_keys[np.minimum(where, positive_keys.size - 1)] == query
        )
        row_offset = np.searchsorted(positive_keys, np.arange(len(cells)) * n_genes)
        before = where - np.repeat(row_offset, union.size)
        rank = (
            np.repeat(n_positive[cells] + 1, union.size)
            + np.tile(detected_before[union], len(cells))
            - before
        )
        gain = np.where(is_positive, 0.0, np.maximum(n_up - rank, 0.0))
        out[cells] = gain.reshape(len(cells), union.size) @ membership
    return out


def _check_sizes(signatures: Mapping[str, Sequence[str]], sizes: np.ndarray) -> None:
    empty = [s for s, n in zip(signatures, sizes, strict=True) if n == 0]
    if empty:
        msg = (
            f"Signature(s) {empty} have no genes in the data; drop them before scoring (see "
            "cd8exo.scoring.prepare_signatures) or check the gene symbols."
        )
        raise ValueError(msg)
