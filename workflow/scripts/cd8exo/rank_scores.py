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

import numba
import numpy as np
import pandas as pd
import scipy.sparse as sp

from .scoring import cell_chunks

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

logger = logging.getLogger(__name__)

__all__ = ["aucell_scores", "detected_genes", "ucell_scores"]

# kernel modes
_UCELL, _AUCELL_MEAN, _AUCELL_ORDER = 0, 1, 2
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)  # Fibonacci hashing multiplier
_M1 = np.uint64(0x5555555555555555)
_M2 = np.uint64(0x3333333333333333)
_M4 = np.uint64(0x0F0F0F0F0F0F0F0F)
_H01 = np.uint64(0x0101010101010101)
_ONE = np.uint64(1)
_BYTE = np.uint64(255)
_FLOAT_BITS = {
    # dtype: (unsigned view, bits of -0.0, bits of +inf)
    np.dtype(np.float32): (np.uint32, np.uint32(0x80000000), np.uint32(0x7F800000)),
    np.dtype(np.float64): (
        np.uint64,
        np.uint64(0x8000000000000000),
        np.uint64(0x7FF0000000000000),
    ),
}


@numba.njit(cache=True)
def _popcount(word):
    word = word - ((word >> _ONE) & _M1)
    word = (word & _M2) + ((word >> np.uint64(2)) & _M2)
    word = (word + (word >> np.uint64(4))) & _M4
    return np.int64((word * _H01) >> np.uint64(56))


@numba.njit(cache=True)
def _slot(table, key, shift, mask):
    """Slot of ``key`` in the open-addressing ``table`` (its slot or the empty one)."""
    h = np.int64((np.uint64(key) * _GOLDEN) >> shift)
    while table[h] != key and table[h] != 0:
        h = (h + 1) & mask
    return h


@numba.njit(cache=True)
def _mean_gain(low, high, n_up):
    """Mean of max(0, n_up - r) over the ranks r = low..high of a tie group."""
    low = float(low)
    high = float(high)
    top = min(high, n_up - 1.0)
    count = max(top - low + 1.0, 0.0)
    if count <= 0:
        return 0.0  # an empty group (a cell without zeros) gains nothing
    total = count * n_up - (low + top) * count / 2.0
    return total / (high - low + 1.0)


@numba.njit(cache=True)
def _set_bits(words, counts, position):
    w = position >> 6
    words[w] |= _ONE << np.uint64(position & 63)
    counts[w] += 1


@numba.njit(cache=True)
def _before(words, prefix, position):
    """Set bits below ``position``, given ``prefix`` (set bits before each word)."""
    w = position >> 6
    below = words[w] & ((_ONE << np.uint64(position & 63)) - _ONE)
    return prefix[w] + _popcount(below)


@numba.njit(cache=True)
def _prefix(counts, prefix):
    total = 0
    for w in range(counts.size):
        prefix[w] = total
        total += counts[w]


@numba.njit(cache=True)
def _sort(keys, n, scratch, histogram):
    """Sort ``keys[:n]`` (unsigned) in place: insertion sort, or LSD radix by bytes."""
    if n <= 32:
        for t in range(1, n):
            key = keys[t]
            k = t - 1
            while k >= 0 and keys[k] > key:
                keys[k + 1] = keys[k]
                k -= 1
            keys[k + 1] = key
        return
    source, target = keys, scratch
    swapped = False
    for byte in range(keys.itemsize):
        shift = np.uint64(8 * byte)
        histogram[:] = 0
        for t in range(n):
            histogram[np.int64((np.uint64(source[t]) >> shift) & _BYTE)] += 1
        if histogram[np.int64((np.uint64(source[0]) >> shift) & _BYTE)] == n:
            continue  # the same byte everywhere
        total = 0
        for digit in range(256):
            count = histogram[digit]
            histogram[digit] = total
            total += count
        for t in range(n):
            digit = np.int64((np.uint64(source[t]) >> shift) & _BYTE)
            target[histogram[digit]] = source[t]
            histogram[digit] += 1
        source, target = target, source
        swapped = not swapped
    if swapped:
        for t in range(n):  # (a loop: slice assignment costs ~1.5 s of compile time)
            keys[t] = source[t]


@numba.njit(cache=True, nogil=True)
def _score_rows(
    indptr,
    indices,
    bits,
    negative_zero,
    infinity,
    gene_ptr,
    gene_sigs,
    sizes,
    mode,
    limit,
    n_detected,
    priority,
    detected_before,
    union,
    out,
):
    """Add every cell's per-signature gains to ``out``; return a bad row or -1.

    ``bits`` are the values' bit patterns (unsigned view of float32/float64),
    ``gene_ptr``/``gene_sigs`` the signatures of every gene (CSR), ``limit`` UCell's
    ``max_rank`` or AUCell's ``n_up``. ``priority`` (tie order), ``detected_before``
    (detected genes before each gene in that order) and ``union`` (the signature genes)
    are used by ``mode == _AUCELL_ORDER`` only. A row with a negative or NaN value stops
    the loop: its index is returned.
    """
    n_rows = indptr.size - 1
    n_sig = out.shape[1]
    longest = 1
    for i in range(n_rows):
        longest = max(longest, indptr[i + 1] - indptr[i])
    size, log_size = 64, 6
    while size < 2 * longest:
        size *= 2
        log_size += 1
    shift = np.uint64(64 - log_size)
    mask = size - 1
    table = np.zeros(size, dtype=bits.dtype)  # 0 (the bits of +0.0) is the empty slot
    counts = np.zeros(size, dtype=np.int64)
    above = np.zeros(size, dtype=np.int64)
    used = np.empty(longest, dtype=np.int64)
    distinct = np.empty(longest, dtype=bits.dtype)
    scratch = np.empty(longest, dtype=bits.dtype)
    histogram = np.zeros(256, dtype=np.int64)
    q_entry = np.empty(longest, dtype=np.int64)
    q_slot = np.empty(longest, dtype=np.int64)
    nonzero = np.zeros(n_sig, dtype=np.int64)
    ordered = mode == _AUCELL_ORDER
    # tie order only: per-slot lists of pending genes, group segments, bitmaps
    n_words = (priority.size + 63) // 64 if ordered else 1
    head = np.full(size if ordered else 1, -1, dtype=np.int64)
    fill = np.zeros(size if ordered else 1, dtype=np.int64)
    following = np.empty(longest if ordered else 1, dtype=np.int64)
    groups = np.empty(longest if ordered else 1, dtype=np.int64)
    slot_of = np.empty(longest if ordered else 1, dtype=np.int64)
    segment = np.empty(longest if ordered else 1, dtype=np.int64)
    words = np.zeros(n_words, dtype=np.uint64)
    word_counts = np.zeros(n_words, dtype=np.int64)
    prefix = np.zeros(n_words, dtype=np.int64)
    stamp = np.full(priority.size if ordered else 1, -1, dtype=np.int64)
    for i in range(n_rows):
        start, stop = indptr[i], indptr[i + 1]
        n_distinct = 0
        n_query = 0
        n_positive = 0
        # 1. count the distinct non-zero values; note the signature genes
        for j in range(start, stop):
            value = bits[j]
            if value == 0 or value == negative_zero:
                if ordered:
                    slot_of[j - start] = -1
                continue
            if value > infinity:
                return i
            h = _slot(table, value, shift, mask)
            if table[h] == 0:
                table[h] = value
                counts[h] = 1
                used[n_distinct] = h
                n_distinct += 1
            else:
                counts[h] += 1
            n_positive += 1
            gene = indices[j]
            if gene_ptr[gene + 1] > gene_ptr[gene]:
                q_entry[n_query] = j
                q_slot[n_query] = h
                n_query += 1
                if ordered:
                    stamp[gene] = i
            if ordered:
                slot_of[j - start] = h
        # 2. values above each distinct value
        if n_query > 0:
            for t in range(n_distinct):
                distinct[t] = table[used[t]]
            _sort(distinct, n_distinct, scratch, histogram)
            total = 0
            for t in range(n_distinct - 1, -1, -1):
                h = _slot(table, distinct[t], shift, mask)
                above[h] = total
                total += counts[h]
        # 3. gains of the non-zero signature genes
        n_groups = 0
        for t in range(n_query):
            h = q_slot[t]
            first = above[h] + 1
            last = above[h] + counts[h]
            gene = indices[q_entry[t]]
            if mode == _UCELL:
                mean_rank = (first + last) / 2.0
                if mean_rank > limit:
                    continue
                gain = limit - mean_rank
            elif mode == _AUCELL_MEAN:
                gain = _mean_gain(first, last, limit)
                for k in range(gene_ptr[gene], gene_ptr[gene + 1]):
                    nonzero[gene_sigs[k]] += 1
            else:
                if first >= limit:
                    continue
                if counts[h] > 1:  # rank within the tie group: later
                    if head[h] < 0:
                        groups[n_groups] = h
                        n_groups += 1
                    following[t] = head[h]
                    head[h] = t
                    continue
                gain = float(limit - first)
            for k in range(gene_ptr[gene], gene_ptr[gene + 1]):
                out[i, gene_sigs[k]] += gain
        if mode == _AUCELL_MEAN:
            # every zero ties at ranks n_positive + 1 .. n_detected
            gain = _mean_gain(n_positive + 1, n_detected, limit)
            for s in range(n_sig):
                out[i, s] += gain * (sizes[s] - nonzero[s])
                nonzero[s] = 0
        if ordered and n_groups > 0:
            # the tie-order positions of each pending group's members, group by group
            total = 0
            for g in range(n_groups):
                h = groups[g]
                fill[h] = total
                total += counts[h]
            for j in range(start, stop):
                h = slot_of[j - start]
                if h >= 0 and head[h] >= 0:
                    segment[fill[h]] = priority[indices[j]]
                    fill[h] += 1
            for g in range(n_groups):
                h = groups[g]
                end = fill[h]
                begin = end - counts[h]
                n_pending = 0
                t = head[h]
                while t >= 0:
                    n_pending += 1
                    t = following[t]
                brute = n_pending * counts[h] <= n_words + 2 * counts[h]
                if not brute:
                    for k in range(begin, end):
                        _set_bits(words, word_counts, segment[k])
                    _prefix(word_counts, prefix)
                t = head[h]
                while t >= 0:
                    gene = indices[q_entry[t]]
                    position = priority[gene]
                    if brute:
                        before = 0
                        for k in range(begin, end):
                            before += segment[k] < position
                    else:
                        before = _before(words, prefix, position)
                    rank = above[h] + before + 1
                    if rank < limit:
                        for k in range(gene_ptr[gene], gene_ptr[gene + 1]):
                            out[i, gene_sigs[k]] += float(limit - rank)
                    t = following[t]
                if not brute:
                    for k in range(begin, end):
                        words[segment[k] >> 6] = 0
                        word_counts[segment[k] >> 6] = 0
                head[h] = -1
        if ordered and n_positive + 1 < limit:
            # zero genes rank after the non-zero values, among the detected zeros in tie
            # order: position n_positive + 1 + (detected before) - (non-zero before)
            for j in range(start, stop):
                if slot_of[j - start] >= 0:
                    _set_bits(words, word_counts, priority[indices[j]])
            _prefix(word_counts, prefix)
            for gene in union:
                if stamp[gene] == i:
                    continue
                rank = (
                    n_positive + 1 + detected_before[gene] - _before(words, prefix, priority[gene])
                )
                if rank < limit:
                    for k in range(gene_ptr[gene], gene_ptr[gene + 1]):
                        out[i, gene_sigs[k]] += float(limit - rank)
            for w in range(n_words):
                words[w] = 0
                word_counts[w] = 0
        for t in range(n_distinct):
            table[used[t]] = 0
    return -1


@numba.njit(cache=True, nogil=True)
def _detected(indices, data, detected):
    for j in range(indices.size):
        if data[j] != 0:
            detected[indices[j]] = True


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
