"""Read only some cells (rows) of an h5ad file: the receiver side needs the malignant cells alone."""

from __future__ import annotations

import logging

import anndata as ad
import numpy as np

from cd8exo.errors import InputError
from cd8exo.io.tables import PathLike

logger = logging.getLogger(__name__)

__all__ = ["read_malignant_cells"]


def read_malignant_cells(path: PathLike) -> ad.AnnData:
    """The cells of ``path`` whose ``obs["malignant"]`` is true, in memory; nothing else.

    The file is opened backed (``obs``, ``var`` and ``uns`` are read, the matrix is not)
    and only the malignant cells' rows of ``X`` and of its layers are read: on a dataset
    of a million cells the matrix of the other cells never enters memory, and no copy of
    the file is written.

    Raises
    ------
    InputError
        When ``obs`` has no ``malignant`` column (the file is not an annotated dataset).
    """
    backed = ad.read_h5ad(path, backed="r")
    try:
        if "malignant" not in backed.obs:
            msg = (
                f"{path}: obs has no 'malignant' column; the receiver side reads the annotated "
                "cells (rule annotate_cells)."
            )
            raise InputError(msg)
        rows = np.flatnonzero(backed.obs["malignant"].to_numpy(dtype=bool))
        cells = backed[rows].to_memory()
    finally:
        backed.file.close()
    logger.info("%s: %d malignant of %d cells read", path, cells.n_obs, backed.n_obs)
    return cells
