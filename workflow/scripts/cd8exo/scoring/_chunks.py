"""Cells in chunks of bounded size, so that scoring never densifies the whole matrix."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import numpy as np
import scipy.sparse as sp

from cd8exo.cells.store import CellMatrix, column_sums, iter_rows

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
def gene_means(x) -> np.ndarray:
    """Mean of every gene (column) over all cells, in float64, without densifying.

    ``x``: CSR, dense, or a :class:`cd8exo.cells.store.CellMatrix` read block by block.
    """
    if isinstance(x, CellMatrix):
        return column_sums(x, max_values=_CHUNK_VALUES) / x.shape[0]
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
    ``indices`` with ``x``); dense input is converted one block at a time; a
    :class:`~cd8exo.cells.store.CellMatrix` is read from disk a block at a time. A block
    holds ``chunk_size`` cells, or, when it is ``None``, about ``max_values`` stored values.
    """
    yield from iter_rows(x, chunk_size=chunk_size, max_values=max_values)
