"""Local single-cell inputs: h5ad, 10x Matrix Market folders, text matrices, cell tables; the h5ad writer.

Every file is checked before it is read (:mod:`cd8exo.io.sniff`: it exists, is not
empty, is the format it claims, is not a web page or a truncated copy), and every problem
with a file stops with an :class:`~cd8exo.errors.InputError` naming the file and what was
found, never a library's traceback. Gene names are then made comparable
(:func:`cd8exo.genes.repair_gene_names`: Ensembl ids and Excel dates onto symbols, mouse
genes refused).
"""

from __future__ import annotations

import gzip
import logging
import warnings
import zlib
from pathlib import Path
from typing import NamedTuple

import anndata as ad
import h5py
import numpy as np
import pandas as pd
import scipy.io
import scipy.sparse as sp

from cd8exo._utils import atomic_write, is_gzip
from cd8exo.errors import InputError
from cd8exo.genes import SymbolTables, repair_gene_names
from cd8exo.io.formats import _read_error, _read_text_layout, _read_text_values
from cd8exo.io.mtx import MtxHeader, read_mtx_header
from cd8exo.io.sniff import (
    detect_separator,
    folder_10x_problems,
    h5ad_problem,
    require,
    table_separator,
    text_problem,
)
from cd8exo.io.tables import PathLike

logger = logging.getLogger(__name__)

__all__ = ["LOCAL_FORMATS", "TenxListing", "read_10x_listing", "read_dataset", "write_h5ad"]

#: The ``format`` values of a local dataset.
LOCAL_FORMATS = ("h5ad", "10x_mtx", "text_matrix")

#: Reading errors of a file's content (a library's words are turned into an InputError).
_FILE_ERRORS = (EOFError, OSError, ValueError, zlib.error)

#: How to fix a local text matrix (shown in its error messages).
_TEXT_HINT = (
    "A text matrix has a header line of cell ids, then one line per gene: its symbol and "
    "one number per cell, separated by tabs, commas or spaces"
)


# --------------------------------------------------------------------------- #
# Expression data
# --------------------------------------------------------------------------- #
def read_dataset(
    *,
    path: PathLike,
    data_format: str,
    cell_table: PathLike | None = None,
    cell_id_column: str | None = None,
    symbol_tables: SymbolTables | None = None,
) -> ad.AnnData:
    """Read one dataset as cells x genes AnnData (not yet harmonised).

    Parameters
    ----------
    path
        An ``.h5ad`` file (``data_format="h5ad"``); a folder written the 10x way
        (``data_format="10x_mtx"``): ``matrix.mtx[.gz]`` with genes as rows and cells as
        columns, ``features.tsv[.gz]`` or ``genes.tsv[.gz]`` (one column = symbols;
        two or more columns = id, symbol[, type], the symbols are used) and, optionally,
        ``barcodes.tsv[.gz]``; or a delimited genes x cells text file
        (``data_format="text_matrix"``: tab, comma or whitespace separated, detected;
        gzip or plain; a header line of cell ids, then one line per gene, its symbol
        first), read in chunks.
    data_format
        One of :data:`LOCAL_FORMATS`.
    cell_table
        Per-cell table (TSV or CSV, separator detected; gzip or plain) whose columns are
        added to ``obs`` (a column already in ``obs`` is replaced). Its cell ids are in
        ``cell_id_column`` (default: its first column) and must cover every cell.
        Required for ``text_matrix``. For ``10x_mtx`` without barcodes it is required and
        must have one row per matrix column, in column order; its id column then becomes
        ``obs_names``.
    cell_id_column
        Column of ``cell_table`` holding the cell ids.
    symbol_tables
        Gene-name tables for Ensembl ids and Excel dates (default: the shipped ones,
        :func:`cd8exo.genes.load_symbol_tables`, loaded only when a name needs them).

    Returns
    -------
    AnnData with ``X`` CSR float32 and ``var_names`` as in the input, except Ensembl ids
    (mapped to symbols; the ids are kept in ``var["gene_id"]``) and rescued Excel dates
    (:func:`cd8exo.genes.repair_gene_names`). Symbols may still be duplicated;
    :func:`cd8exo.cells.harmonise.harmonise` merges them.

    Raises
    ------
    InputError
        A missing, empty, truncated or wrongly formatted file (named, with what it looks
        like), dimension mismatches between the matrix and its feature/barcode files or
        cell table, cells missing from the cell table, mouse gene names.
    """
    path = Path(path)
    if data_format == "h5ad":
        adata = _read_h5ad_input(path)
        if cell_table is not None:
            table = _read_cell_table(cell_table, cell_id_column=cell_id_column)
            adata.obs = _join_cell_table(adata.obs, table, source=f"{path}", table_path=cell_table)
    elif data_format == "10x_mtx":
        adata = _read_10x_mtx(path, cell_table=cell_table, cell_id_column=cell_id_column)
    elif data_format == "text_matrix":
        adata = _read_text_input(path, cell_table=cell_table, cell_id_column=cell_id_column)
    else:
        msg = f"Unknown data_format {data_format!r} for {path}; use one of {', '.join(LOCAL_FORMATS)}."
        raise InputError(msg)
    return _repair_var_names(adata, source=path, tables=symbol_tables)


def _repair_var_names(
    adata: ad.AnnData, *, source: Path, tables: SymbolTables | None
) -> ad.AnnData:
    names = [str(name) for name in adata.var_names]
    repaired = repair_gene_names(names, source=str(source), tables=tables)
    if repaired == names:
        return adata
    var = adata.var.copy()
    if "gene_id" not in var.columns:
        ids = pd.Series(names, index=var.index)
        var["gene_id"] = ids.where(ids.str.match(r"^ENS[A-Z]*G\d"), "")
    var.index = pd.Index(repaired, dtype=str)
    with warnings.catch_warnings():
        # duplicated symbols are expected here: harmonise merges them by its documented rule
        warnings.filterwarnings("ignore", message="Variable names are not unique")
        return ad.AnnData(
            X=adata.X, obs=adata.obs, var=var, uns=dict(adata.uns), layers=dict(adata.layers)
        )


def _read_h5ad_input(path: Path) -> ad.AnnData:
    require(h5ad_problem(path), what="The h5ad file", path=path)
    _check_anndata_layout(path)
    try:
        with warnings.catch_warnings():
            # duplicated symbols are merged (and named) by harmonise
            warnings.filterwarnings("ignore", message="Variable names are not unique")
            adata = ad.read_h5ad(path)
    except (*_FILE_ERRORS, KeyError, TypeError) as error:
        msg = (
            f"The h5ad file {path} is HDF5 but cannot be read as AnnData "
            f"({type(error).__name__}: {error}); write it again with anndata "
            "(AnnData.write_h5ad)."
        )
        raise InputError(msg) from error
    if adata.X is None:
        msg = f"The h5ad file {path} has no expression matrix X; store the counts in X."
        raise InputError(msg)
    adata.X = _as_csr_float32(adata.X)
    return adata


def _check_anndata_layout(path: Path) -> None:
    """The HDF5 file holds an AnnData (groups obs and var), not a loom or 10x .h5 file."""
    try:
        with h5py.File(path, "r") as handle:
            keys = sorted(handle.keys())
    except OSError as error:
        msg = (
            f"The h5ad file {path} is not a readable HDF5 file ({error}); copy or export it again."
        )
        raise InputError(msg) from error
    if {"obs", "var"} <= set(keys):
        return
    if "matrix" in keys and {"row_attrs", "col_attrs"} <= set(keys):
        kind = "a loom file (convert it: anndata.read_loom(path).write_h5ad('file.h5ad'))"
    elif "matrix" in keys:
        kind = (
            "a 10x Cell Ranger .h5 file (convert it: scanpy.read_10x_h5(path)"
            ".write_h5ad('file.h5ad'), or use the matrix.mtx folder with format '10x_mtx')"
        )
    else:
        kind = "an HDF5 file without AnnData's obs and var groups"
    msg = f"The h5ad file {path} is {kind}; its top-level entries are {keys[:10]}."
    raise InputError(msg)


def _read_text_input(
    path: Path, *, cell_table: PathLike | None, cell_id_column: str | None
) -> ad.AnnData:
    """A genes x cells text matrix and its cell table (chunked: never all the text at once)."""
    if cell_table is None:
        msg = (
            f"The text matrix {path} needs a cell table (cell_table in the dataset sheet) "
            "naming each cell's patient; its ids must be the matrix's header."
        )
        raise InputError(msg)
    require(
        text_problem(path, what="a genes x cells text matrix"), what="The text matrix", path=path
    )
    sep = detect_separator(path)
    layout = _read_text_layout(path, sep=sep, metadata_rows=0, hint=_TEXT_HINT)
    table = _read_cell_table(cell_table, cell_id_column=cell_id_column)
    obs = _join_cell_table(
        pd.DataFrame(index=pd.Index(layout.cells, dtype=str)),
        table,
        source=f"the text matrix {path}",
        table_path=cell_table,
    )
    genes, x = _read_text_values(
        path, sep=sep, layout=layout, skip_rows=1, cells=layout.cells, hint=_TEXT_HINT
    )
    logger.info(
        "Read %s (%s-separated): %d genes x %d cells", path, _sep_word(sep), len(genes), x.shape[0]
    )
    var = pd.DataFrame(index=pd.Index(genes, dtype=str))
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Variable names are not unique")
        return ad.AnnData(X=sp.csr_matrix(x, dtype=np.float32), obs=obs, var=var)


def _sep_word(sep: str) -> str:
    return {"\t": "tab", ",": "comma"}.get(sep, "whitespace")


class TenxListing(NamedTuple):
    """A 10x Matrix Market folder without its matrix: what :func:`read_10x_listing` reads."""

    matrix: Path
    header: MtxHeader
    obs: pd.DataFrame  # one row per matrix column (cell), the cell table joined
    var: pd.DataFrame  # one row per matrix row (gene), names as in the folder


def read_10x_listing(
    folder: PathLike, *, cell_table: PathLike | None, cell_id_column: str | None
) -> TenxListing:
    """The matrix's header, the cells (barcodes or the cell table, joined) and the genes
    of a 10x folder, each file checked; the matrix itself is not read."""
    folder = Path(folder)
    problems = folder_10x_problems(folder)
    if problems:
        msg = f"The 10x folder {folder} " + "; it ".join(problems) + "."
        raise InputError(msg)
    matrix_path = _find_optional(folder, ["matrix.mtx", "matrix.mtx.gz"])
    features_path = _find_optional(
        folder, ["features.tsv", "features.tsv.gz", "genes.tsv", "genes.tsv.gz"]
    )
    barcodes_path = _find_optional(folder, ["barcodes.tsv", "barcodes.tsv.gz"])
    header = read_mtx_header(matrix_path)
    n_genes, n_cells = header.n_rows, header.n_cols
    features = _read_lines_table(features_path, what="gene/feature list")
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
        raise InputError(msg)
    var = _features_var(features)
    if barcodes_path is not None:
        obs = _barcodes_obs(barcodes_path, n_cells=n_cells, n_genes=n_genes, matrix=matrix_path)
        if cell_table is not None:
            table = _read_cell_table(cell_table, cell_id_column=cell_id_column)
            obs = _join_cell_table(obs, table, source=str(barcodes_path), table_path=cell_table)
    else:
        obs = _table_as_obs(
            cell_table, cell_id_column, folder=folder, n_cells=n_cells, matrix=matrix_path
        )
    return TenxListing(matrix_path, header, obs, var)


def _read_10x_mtx(
    folder: Path, *, cell_table: PathLike | None, cell_id_column: str | None
) -> ad.AnnData:
    listing = read_10x_listing(folder, cell_table=cell_table, cell_id_column=cell_id_column)
    try:
        with _open_binary(listing.matrix) as handle:
            matrix = scipy.io.mmread(handle)
    except _FILE_ERRORS as error:
        msg = f"The count matrix {listing.matrix} cannot be read as Matrix Market ({_read_error(error)})."
        raise InputError(msg) from error
    n_genes, n_cells = matrix.shape
    # 10x writes genes as rows and cells as columns; AnnData wants cells as rows.
    x = _as_csr_float32(sp.coo_matrix(matrix).T)
    logger.info("Read %s: %d genes x %d cells", listing.matrix, n_genes, n_cells)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Variable names are not unique")
        return ad.AnnData(X=x, obs=listing.obs, var=listing.var)


def _features_var(features: pd.DataFrame) -> pd.DataFrame:
    """var of a 10x gene list: one column = symbols; id, symbol[, type] otherwise."""
    if features.shape[1] < 2:
        var = pd.DataFrame(index=pd.Index(features.iloc[:, 0].to_numpy(), dtype=str))
    else:
        var = pd.DataFrame(
            {"gene_id": features.iloc[:, 0].to_numpy()},
            index=pd.Index(features.iloc[:, 1].to_numpy(), dtype=str),
        )
        if features.shape[1] >= 3:
            var["feature_type"] = features.iloc[:, 2].to_numpy()
    var.index.name = None
    return var


def _barcodes_obs(barcodes_path: Path, *, n_cells: int, n_genes: int, matrix: Path) -> pd.DataFrame:
    barcodes = _read_lines_table(barcodes_path, what="barcode list").iloc[:, 0]
    if len(barcodes) != n_cells:
        msg = (
            f"{barcodes_path} lists {len(barcodes)} barcodes but {matrix} has "
            f"{n_cells} columns (cells) and {n_genes} rows (genes); they must match "
            "line for column. Check that both files come from the same sample/export."
        )
        raise InputError(msg)
    obs = pd.DataFrame(index=pd.Index(barcodes.to_numpy(), dtype=str))
    _check_unique_ids(obs.index, source=str(barcodes_path))
    return obs


def _table_as_obs(
    cell_table: PathLike | None,
    cell_id_column: str | None,
    *,
    folder: Path,
    n_cells: int,
    matrix: Path,
) -> pd.DataFrame:
    """Without barcodes: the cell table, one row per matrix column in column order."""
    if cell_table is None:
        msg = (
            f"{folder} has no barcodes.tsv[.gz]; give a cell table (one row per matrix "
            "column, in column order, with the cell ids in its first column or in "
            "cell_id_column) or add the barcodes file."
        )
        raise InputError(msg)
    table = _read_cell_table(cell_table, cell_id_column=cell_id_column)
    if len(table) != n_cells:
        msg = (
            f"The cell table {cell_table} has {len(table)} rows but {matrix} has "
            f"{n_cells} columns (cells); without barcodes.tsv the table must have exactly "
            "one row per matrix column, in column order. Use the table exported with this "
            "matrix, or add barcodes.tsv so that rows can be matched by id."
        )
        raise InputError(msg)
    _check_unique_ids(table.index, source=str(cell_table))
    return table


def _read_lines_table(path: Path, *, what: str) -> pd.DataFrame:
    """A headerless tab-separated 10x file (features/genes, barcodes) as text."""
    try:
        return pd.read_csv(
            path,
            sep="\t",
            header=None,
            dtype=str,
            keep_default_na=False,
            compression="gzip" if is_gzip(path) else None,
        )
    except _FILE_ERRORS as error:
        msg = f"The {what} {path} cannot be read as tab-separated text ({_read_error(error)})."
        raise InputError(msg) from error


def _read_cell_table(path: PathLike, *, cell_id_column: str | None) -> pd.DataFrame:
    """Read a per-cell table, indexed by its cell-id column (ids read as strings).

    The separator is a tab or a comma (a ``.csv`` name, or a header holding commas and
    no tab); gzip is recognised by its first bytes.
    """
    path = Path(path)
    require(text_problem(path, what="a cell table (TSV or CSV)"), what="The cell table", path=path)
    sep = table_separator(path)
    try:
        raw = pd.read_csv(path, sep=sep, dtype=str, compression="gzip" if is_gzip(path) else None)
    except _FILE_ERRORS as error:
        msg = f"The cell table {path} cannot be read as {_sep_word(sep)}-separated text ({_read_error(error)})."
        raise InputError(msg) from error
    header = raw.columns
    id_column = header[0] if cell_id_column is None else cell_id_column
    if id_column not in header:
        msg = (
            f"The cell table {path} has no column {id_column!r} (cell_id_column); its columns "
            f"are {list(header)}."
        )
        raise InputError(msg)
    ids = raw[id_column]
    if ids.isna().any():
        rows = (np.flatnonzero(ids.isna().to_numpy()) + 2).tolist()[:10]
        msg = f"The cell table {path} has empty cell ids in column {id_column!r} (lines {rows})."
        raise InputError(msg)
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
            f"table {table_path} (e.g. {example}); the table has {len(table)} rows, with ids "
            f"like {', '.join(map(str, table.index[:3]))}. Its ids must equal the data's cell "
            f"ids (barcodes/obs_names){_id_hint(obs.index, table)}."
        )
        raise InputError(msg)
    n_extra = len(table.index.difference(obs.index, sort=False))
    if n_extra:
        logger.warning(
            "Cell table %s: %d of its %d rows match no cell of %s and are ignored",
            table_path,
            n_extra,
            len(table),
            source,
        )
    replaced = [c for c in table.columns if c in obs.columns]
    if replaced:
        logger.info("Cell table %s replaces obs column(s) %s", table_path, replaced)
    joined = obs.drop(columns=replaced).join(table, how="left")
    return joined


def _id_hint(cells: pd.Index, table: pd.DataFrame) -> str:
    """How the cell table's ids could be made to match (a column, a suffix, a prefix)."""
    wanted = set(map(str, cells))
    for column in table.columns:
        values = table[column].astype(str).str.strip()
        if wanted <= set(values):
            return f": its column {column!r} holds them, set cell_id_column to {column!r}"
    ids = pd.Index(table.index.astype(str))
    stripped = pd.Index(cells.astype(str)).str.replace(r"-\d+$", "", regex=True)
    if set(stripped) <= set(ids):
        return ": the data's ids end in a '-1'-like suffix the table's lack; add it to the table"
    if set(map(str, cells)) <= set(ids.str.replace(r"-\d+$", "", regex=True)):
        return ": the table's ids end in a '-1'-like suffix the data's lack; remove it"
    prefixed = ids.str.extract(r"^.+?[_:#-](.+)$")[0].dropna()
    if len(prefixed) and wanted <= set(prefixed):
        return ": the table's ids carry a sample prefix the data's lack; remove it"
    return (
        "; set cell_id_column to the column holding them, or fix the id format (sample "
        "prefixes, '-1' suffixes)"
    )


def _check_unique_ids(ids: pd.Index, *, source: str) -> None:
    if not ids.is_unique:
        duplicated = ids[ids.duplicated()].unique()[:5].tolist()
        msg = (
            f"Cell ids in {source} are not unique (e.g. {duplicated}); each cell needs its own id."
        )
        raise InputError(msg)


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


def _find_optional(folder: Path, names: list[str]) -> Path | None:
    found = [folder / n for n in names if (folder / n).is_file()]
    if len(found) > 1:
        msg = (
            f"{folder} holds several candidate files {[p.name for p in found]}; keep only one "
            "(e.g. the .gz) so that it is clear which to read."
        )
        raise InputError(msg)
    return found[0] if found else None
