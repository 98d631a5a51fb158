"""An ``.h5ad`` written piece by piece with h5py: a CSR matrix appended a block of rows at a
time, and the AnnData groups around it (anndata's 0.1.0 encodings).

For matrices too large to build in memory: the scale cohorts of ``make bench-scale``
(:mod:`cd8exo.sim.scale`) and a 10x Matrix Market file converted to CSR
(:mod:`cd8exo.io.mtx`).
"""

from __future__ import annotations

from collections.abc import Mapping

import h5py
import numpy as np
import pandas as pd
import scipy.sparse as sp
from anndata.io import write_elem

__all__ = ["CsrWriter", "write_anndata_parts"]


class CsrWriter:
    """A CSR matrix of ``n_cols`` columns written into ``group`` block of rows by block.

    ``chunks`` and ``dataset_options`` (e.g. ``compression``) go to the ``data`` and
    ``indices`` datasets.
    """

    def __init__(
        self, group: h5py.Group, n_cols: int, *, chunks: int = 1 << 18, **dataset_options
    ) -> None:
        self.group = group
        self.n_cols = n_cols
        self.indptr = [np.zeros(1, dtype=np.int64)]
        self.nnz = 0
        self.n_rows = 0
        for name, dtype in (("data", np.float32), ("indices", np.int32)):
            group.create_dataset(
                name, shape=(0,), maxshape=(None,), dtype=dtype, chunks=(chunks,), **dataset_options
            )

    def append(self, block: sp.csr_matrix) -> None:
        """The next ``block.shape[0]`` rows (their column indices sorted here)."""
        block.sort_indices()
        n = block.nnz
        for name, values in (("data", block.data), ("indices", block.indices)):
            dataset = self.group[name]
            dataset.resize((self.nnz + n,))
            dataset[self.nnz :] = values
        self.indptr.append(self.nnz + block.indptr[1:].astype(np.int64))
        self.nnz += n
        self.n_rows += block.shape[0]

    def close(self, *, n_rows: int | None = None) -> None:
        """Write the row pointers; rows up to ``n_rows`` not appended are empty."""
        if n_rows is not None and n_rows > self.n_rows:
            self.indptr.append(np.full(n_rows - self.n_rows, self.nnz, dtype=np.int64))
            self.n_rows = n_rows
        indptr = np.concatenate(self.indptr)
        # 32-bit where it fits, as anndata and scipy write it (readers then keep int32 indices)
        if indptr[-1] < np.iinfo(np.int32).max:
            indptr = indptr.astype(np.int32)
        self.group.create_dataset("indptr", data=indptr)
        self.group.attrs["encoding-type"] = "csr_matrix"
        self.group.attrs["encoding-version"] = "0.1.0"
        self.group.attrs["shape"] = (indptr.size - 1, self.n_cols)


def write_anndata_parts(
    f: h5py.File, *, obs: pd.DataFrame, var: pd.DataFrame, uns: Mapping | None = None
) -> None:
    """``obs``, ``var``, ``uns``, the empty mappings and the file's AnnData attributes: an
    ``.h5ad`` once its ``X`` is written too."""
    write_elem(f, "obs", obs)
    write_elem(f, "var", var)
    write_elem(f, "uns", dict(uns or {}))
    for empty in ("layers", "obsm", "obsp", "varm", "varp"):
        write_elem(f, empty, {})
    f.attrs["encoding-type"] = "anndata"
    f.attrs["encoding-version"] = "0.1.0"
