"""Cells in chunks of bounded size, so that scoring never densifies the whole matrix."""

from __future__ import annotations

import itertools
import logging
from typing import TYPE_CHECKING

import numpy as np
import scipy.sparse as sp

if TYPE_CHECKING:
    from collections.abc import Iterator

logger = logging.getLogger(__name__)

__all__ = ["cell_chunks", "gene_means"]

#: Stored values summed at a time by :func:`gene_means`.
_CHUNK_VALUES = 10_000_000


#: Stored values (non-zero entries) per chunk of cells in the scoring loops.
CHUNK_VALUES = 4_000_000


# --------------------------------------------------------------------------- #
# Shared helpers
# --------------------------------------------------------------------------- #
def gene_means(x: np.ndarray | sp.spmatrix | sp.sparray) -> np.ndarray:
    """Mean of every gene (column) over all cells, in float64, without densifying."""
    if sp.issparse(x):
        if x.format != "csr":
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


def cell_chunks(
    x, *, chunk_size: int | None = None, max_values: int = CHUNK_VALUES
) -> Iterator[tuple[int, int, sp.csr_matrix]]:
    """Yield ``(start, stop, chunk)``: consecutive blocks of cells as CSR matrices.

    Sparse input is sliced without copying its values (the chunk shares ``data`` and
    ``indices`` with ``x``); dense input is converted one block at a time. A block holds
    ``chunk_size`` cells, or, when it is ``None``, about ``max_values`` stored values.
    """
    if sp.issparse(x) and x.format != "csr":
        x = sp.csr_matrix(x)
    n_cells = x.shape[0]
    if chunk_size is not None and chunk_size < 1:
        msg = f"chunk_size must be a positive number of cells, got {chunk_size}."
        raise ValueError(msg)
    if sp.issparse(x):
        indptr = np.asarray(x.indptr, dtype=np.int64)
        if chunk_size is None:
            # Cut where the running number of stored values passes multiples of max_values.
            cuts = np.searchsorted(indptr, np.arange(max_values, indptr[-1], max_values))
            bounds = np.unique(np.concatenate([[0], cuts, [n_cells]]))
        else:
            bounds = np.unique(np.concatenate([np.arange(0, n_cells, chunk_size), [n_cells]]))
        for start, stop in itertools.pairwise(bounds):
            first, last = indptr[start], indptr[stop]
            chunk = sp.csr_matrix(
                (x.data[first:last], x.indices[first:last], indptr[start : stop + 1] - first),
                shape=(int(stop - start), x.shape[1]),
                copy=False,
            )
            yield int(start), int(stop), chunk
        return
    step = chunk_size or max(1, max_values // max(1, x.shape[1]))
    for start in range(0, n_cells, step):
        stop = min(start + step, n_cells)
        yield start, stop, sp.csr_matrix(np.asarray(x[start:stop]))
