"""Local single-cell inputs: h5ad, 10x Matrix Market folders, cell tables; the h5ad writer."""

from __future__ import annotations

import gzip
import logging
from pathlib import Path
from typing import TYPE_CHECKING

import anndata as ad
import numpy as np
import pandas as pd
import scipy.io
import scipy.sparse as sp

from cd8exo._utils import atomic_write
from cd8exo.io.tables import PathLike, _separator

if TYPE_CHECKING:
    pass
logger = logging.getLogger(__name__)

__all__ = ["read_dataset", "write_h5ad"]


# --------------------------------------------------------------------------- #
# Expression data
# --------------------------------------------------------------------------- #
def read_dataset(
    *,
    path: PathLike,
    data_format: str,
    cell_table: PathLike | None = None,
    cell_id_column: str | None = None,
) -> ad.AnnData:
    """Read one dataset as cells x genes AnnData (not yet harmonised).

    Parameters
    ----------
    path
        An ``.h5ad`` file (``data_format="h5ad"``) or a folder written the 10x way
        (``data_format="10x_mtx"``): ``matrix.mtx[.gz]`` with genes as rows and cells as
        columns, ``features.tsv[.gz]`` or ``genes.tsv[.gz]`` (one column = symbols;
        two or more columns = id, symbol[, type], the symbols are used) and, optionally,
        ``barcodes.tsv[.gz]``.
    data_format
        ``"h5ad"`` or ``"10x_mtx"``.
    cell_table
        Optional per-cell table (TSV, or CSV when the name ends in ``.csv``) whose columns
        are added to ``obs`` (a column already in ``obs`` is replaced). Its cell ids are
        in ``cell_id_column`` (default: its first column) and must cover every cell.
        For ``10x_mtx`` without barcodes it is required and must have one row per matrix
        column, in column order; its id column then becomes ``obs_names``.
    cell_id_column
        Column of ``cell_table`` holding the cell ids.

    Returns
    -------
    AnnData with ``X`` CSR float32 and ``var_names`` as in the input (gene ids, when
    present, are kept in ``var["gene_id"]``). Symbols may still be duplicated;
    :func:`cd8exo.harmonise.harmonise` resolves that.

    Raises
    ------
    ValueError
        Missing files, dimension mismatches between the matrix and its feature/barcode
        files or cell table, and cells missing from the cell table.
    """
    path = Path(path)
    if data_format == "h5ad":
        adata = _read_h5ad_input(path)
        if cell_table is not None:
            table = _read_cell_table(cell_table, cell_id_column=cell_id_column)
            adata.obs = _join_cell_table(adata.obs, table, source=f"{path}", table_path=cell_table)
        return adata
    if data_format == "10x_mtx":
        return _read_10x_mtx(path, cell_table=cell_table, cell_id_column=cell_id_column)
    msg = f"Unknown data_format {data_format!r} for {path}; use 'h5ad' or '10x_mtx'."
    raise ValueError(msg)


def _read_h5ad_input(path: Path) -> ad.AnnData:
    if not path.is_file():
        msg = f"The h5ad file {path} does not exist; check the dataset's path in the config."
        raise ValueError(msg)
    adata = ad.read_h5ad(path)
    adata.X = _as_csr_float32(adata.X)
    return adata


def _read_10x_mtx(
    folder: Path, *, cell_table: PathLike | None, cell_id_column: str | None
) -> ad.AnnData:
    if not folder.is_dir():
        msg = f"The 10x folder {folder} does not exist (data_format '10x_mtx' expects a folder)."
        raise ValueError(msg)
    matrix_path = _find_one(folder, ["matrix.mtx", "matrix.mtx.gz"], what="count matrix")
    features_path = _find_one(
        folder,
        ["features.tsv", "features.tsv.gz", "genes.tsv", "genes.tsv.gz"],
        what="gene/feature list",
    )
    barcodes_path = _find_optional(folder, ["barcodes.tsv", "barcodes.tsv.gz"])

    with _open_binary(matrix_path) as handle:
        matrix = scipy.io.mmread(handle)
    n_genes, n_cells = matrix.shape
    # 10x writes genes as rows and cells as columns; AnnData wants cells as rows.
    x = _as_csr_float32(sp.coo_matrix(matrix).T)
    logger.info("Read %s: %d genes x %d cells", matrix_path, n_genes, n_cells)

    features = pd.read_csv(features_path, sep="\t", header=None, dtype=str)
    if len(features) != n_genes:
        hint = (
            " It has one line more than the matrix has rows: remove its header line."
            if len(features) == n_genes + 1
            else " Check that both files come from the same sample/export."
        )
        msg = (
            f"{features_path} lists {len(features)} genes but {matrix_path} has {n_genes} rows "
            f"(genes) and {n_cells} columns (cells); they must match line for row.{hint}"
        )
        raise ValueError(msg)
    var = pd.DataFrame(index=pd.Index(features.iloc[:, 0].to_numpy(), dtype=str))
    if features.shape[1] >= 2:
        var = pd.DataFrame(
            {"gene_id": features.iloc[:, 0].to_numpy()},
            index=pd.Index(features.iloc[:, 1].to_numpy(), dtype=str),
        )
        if features.shape[1] >= 3:
            var["feature_type"] = features.iloc[:, 2].to_numpy()
    var.index.name = None

    if barcodes_path is not None:
        barcodes = pd.read_csv(barcodes_path, sep="\t", header=None, dtype=str).iloc[:, 0]
        if len(barcodes) != n_cells:
            msg = (
                f"{barcodes_path} lists {len(barcodes)} barcodes but {matrix_path} has "
                f"{n_cells} columns (cells) and {n_genes} rows (genes); they must match "
                "line for column. Check that both files come from the same sample/export."
            )
            raise ValueError(msg)
        obs = pd.DataFrame(index=pd.Index(barcodes.to_numpy(), dtype=str))
        _check_unique_ids(obs.index, source=str(barcodes_path))
        if cell_table is not None:
            table = _read_cell_table(cell_table, cell_id_column=cell_id_column)
            obs = _join_cell_table(obs, table, source=str(barcodes_path), table_path=cell_table)
    else:
        if cell_table is None:
            msg = (
                f"{folder} has no barcodes.tsv[.gz]; give a cell table (one row per matrix "
                "column, in column order, with the cell ids in its first column or in "
                "cell_id_column) or add the barcodes file."
            )
            raise ValueError(msg)
        table = _read_cell_table(cell_table, cell_id_column=cell_id_column)
        if len(table) != n_cells:
            msg = (
                f"The cell table {cell_table} has {len(table)} rows but {matrix_path} has "
                f"{n_cells} columns (cells); without barcodes.tsv the table must have exactly "
                "one row per matrix column, in column order. Use the table exported with this "
                "matrix, or add barcodes.tsv so that rows can be matched by id."
            )
            raise ValueError(msg)
        _check_unique_ids(table.index, source=str(cell_table))
        obs = table

    adata = ad.AnnData(X=x, obs=obs, var=var)
    return adata


def _read_cell_table(path: PathLike, *, cell_id_column: str | None) -> pd.DataFrame:
    """Read a per-cell table, indexed by its cell-id column (ids read as strings)."""
    path = Path(path)
    if not path.is_file():
        msg = f"The cell table {path} does not exist; check the dataset's cell_table in the config."
        raise ValueError(msg)
    sep = _separator(path)
    header = pd.read_csv(path, sep=sep, nrows=0).columns
    if len(header) == 0:
        msg = f"The cell table {path} has no header line."
        raise ValueError(msg)
    id_column = header[0] if cell_id_column is None else cell_id_column
    if id_column not in header:
        msg = (
            f"The cell table {path} has no column {id_column!r} (cell_id_column); its columns "
            f"are {list(header)}."
        )
        raise ValueError(msg)
    raw = pd.read_csv(path, sep=sep, dtype=str)
    ids = raw[id_column]
    if ids.isna().any():
        rows = (np.flatnonzero(ids.isna().to_numpy()) + 2).tolist()[:10]
        msg = f"The cell table {path} has empty cell ids in column {id_column!r} (lines {rows})."
        raise ValueError(msg)
    table = _infer_numeric(raw.drop(columns=[id_column]))
    table.index = pd.Index(ids.str.strip().to_numpy(), dtype=str)
    return table


def _infer_numeric(table: pd.DataFrame) -> pd.DataFrame:
    """Make columns numeric where every value is a number, keeping ids such as "07".

    Columns read as text keep leading zeros of ids (patient "07" must not become 7).
    """
    table = table.copy()
    for column in table.columns:
        text = table[column].dropna().str.strip()
        if text.empty or text.str.match(r"^[+-]?0\d").any():
            continue
        try:
            table[column] = pd.to_numeric(table[column])
        except (ValueError, TypeError):
            continue
    return table


def _join_cell_table(
    obs: pd.DataFrame, table: pd.DataFrame, *, source: str, table_path: PathLike
) -> pd.DataFrame:
    """Add the cell table's columns to ``obs``, matching cell ids exactly."""
    _check_unique_ids(table.index, source=str(table_path))
    missing = obs.index.difference(table.index, sort=False)
    if len(missing) > 0:
        example = ", ".join(map(str, missing[:5]))
        msg = (
            f"{len(missing)} of {obs.shape[0]} cells of {source} are missing from the cell "
            f"table {table_path} (e.g. {example}). Its ids must equal the data's cell ids "
            "(barcodes/obs_names); set cell_id_column to the column holding them, or fix "
            "the id format (sample prefixes, '-1' suffixes)."
        )
        raise ValueError(msg)
    n_extra = len(table.index.difference(obs.index, sort=False))
    if n_extra:
        logger.info("Cell table %s: %d rows match no cell and are ignored", table_path, n_extra)
    replaced = [c for c in table.columns if c in obs.columns]
    if replaced:
        logger.info("Cell table %s replaces obs column(s) %s", table_path, replaced)
    joined = obs.drop(columns=replaced).join(table, how="left")
    return joined


def _check_unique_ids(ids: pd.Index, *, source: str) -> None:
    if not ids.is_unique:
        duplicated = ids[ids.duplicated()].unique()[:5].tolist()
        msg = (
            f"Cell ids in {source} are not unique (e.g. {duplicated}); each cell needs its own id."
        )
        raise ValueError(msg)


def _as_csr_float32(x) -> sp.csr_matrix:
    if sp.issparse(x):
        return sp.csr_matrix(x, dtype=np.float32)
    return sp.csr_matrix(np.asarray(x, dtype=np.float32))


# --------------------------------------------------------------------------- #
# Writers (atomic)
# --------------------------------------------------------------------------- #
def write_h5ad(adata: ad.AnnData, path: PathLike) -> None:
    """Write AnnData to ``path`` atomically (temporary file, then rename).

    Parameters
    ----------
    adata
        The object to write.
    path
        Destination ``.h5ad``; its folder is created if needed.
    """
    atomic_write(Path(path), lambda tmp: adata.write_h5ad(tmp))


def _open_binary(path: Path):
    if path.suffix == ".gz":
        return gzip.open(path, "rb")
    return path.open("rb")


def _find_one(folder: Path, names: list[str], *, what: str) -> Path:
    found = _find_optional(folder, names)
    if found is None:
        present = sorted(p.name for p in folder.iterdir())
        msg = (
            f"{folder} has no {what}: expected one of {names}; the folder holds {present}. "
            "Rename the file to the 10x name or point the config at the right folder."
        )
        raise ValueError(msg)
    return found


def _find_optional(folder: Path, names: list[str]) -> Path | None:
    found = [folder / n for n in names if (folder / n).is_file()]
    if len(found) > 1:
        msg = (
            f"{folder} holds several candidate files {[p.name for p in found]}; keep only one "
            "(e.g. the .gz) so that it is clear which to read."
        )
        raise ValueError(msg)
    return found[0] if found else None
