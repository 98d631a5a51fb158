"""Compiled kernels of the rank-based scores (numba, single-threaded): one pass over each cell's stored values.

See :mod:`cd8exo.scoring.rank` for the method; this module holds only the loops.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import numba
import numpy as np

if TYPE_CHECKING:
    pass
logger = logging.getLogger(__name__)

# kernel modes
_UCELL, _AUCELL_MEAN, _AUCELL_ORDER = 0, 1, 2


_GOLDEN = np.uint64(0x9E3779B97F4A7C15)  # Fibonacci hashing multiplier


_M1 = np.uint64(0x5555555555555555)


_M2 = np.uint64(0x3333333333333333)


_M4 = np.uint64(0x0F0F0F0F0F0F0F0F)


_H01 = np.uint64(0x0101010101010101)


_ONE = np.uint64(1)


_BYTE = np.uint64(255)


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


# long: one compiled pass over a cell's stored values, shared by the three modes (its
# per-cell hash table, bitmap and prefix counts live across the steps); kept as one kernel
@numba.njit(cache=True, nogil=True)
def _score_rows(  # noqa: C901, PLR0912, PLR0915
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
