"""File formats of published datasets: GEO text matrices, Matrix Market (plain or in a tar), TISCH2 h5, CELLxGENE h5ad."""

from __future__ import annotations

import csv
import logging
import shutil
import tarfile
import tempfile
import zlib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import anndata as ad
import numpy as np
import pandas as pd
import scipy.io
import scipy.sparse as sp

from cd8exo._utils import is_gzip, open_text
from cd8exo.errors import InputError
from cd8exo.io.obs import derive_obs, map_cellxgene_obs
from cd8exo.io.sniff import WHITESPACE, require, text_problem

logger = logging.getLogger(__name__)


# --------------------------------------------------------------------------- #
# Low-level file reading
# --------------------------------------------------------------------------- #
def _unquote(text: str) -> str:
    text = text.strip()
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "'\"":
        return text[1:-1]
    return text


@dataclass
class _TextLayout:
    cells: list[str]
    corner: bool
    metadata: pd.DataFrame
    trailing: bool = False  # every line ends in a separator (an empty last field)


#: Values parsed at a time from a text matrix (a dense float32 chunk of about 80 MB).
_TEXT_CHUNK_VALUES = 2e7

#: How to fix a text matrix of the registry (shown in its error messages).
_REGISTRY_HINT = (
    "Check matrix.sep and matrix.metadata_rows in the registry (a metadata row read as a gene?)"
)


def _split_line(line: str, sep: str) -> list[str]:
    """The fields of one line: csv rules (quotes) for one-character separators."""
    if sep == WHITESPACE:
        return [_unquote(field) for field in line.split()]
    return next(csv.reader([line], delimiter=sep, quotechar='"'), [])


def _text_lines(handle: Any) -> Iterator[tuple[int, str]]:
    """(line number, line) of the non-blank lines of a text file."""
    for number, line in enumerate(handle, start=1):
        if line.strip():
            yield number, line.rstrip("\r\n")


def _read_text_layout(
    path: Path, *, sep: str, metadata_rows: int, hint: str = _REGISTRY_HINT
) -> _TextLayout:
    """Cell ids (header), metadata rows and the layout of a genes x cells text matrix.

    Reads the header, the metadata rows and the first gene row only.
    """
    require(text_problem(path, what="a text matrix"), what="The text matrix", path=path)
    try:
        with open_text(path, newline="") as handle:
            lines = _text_lines(handle)
            header = _split_line(next(lines)[1], sep)
            rows = [_split_line(next(lines)[1], sep) for _ in range(metadata_rows)]
            reference = rows[0] if rows else _split_line(next(lines)[1], sep)
    except StopIteration:
        rows_wanted = f", {metadata_rows} metadata rows" if metadata_rows else ""
        msg = f"{path}: the file ends before its header line{rows_wanted} and a first gene row."
        raise InputError(msg) from None
    except (EOFError, OSError, UnicodeDecodeError, zlib.error) as error:
        msg = f"{path}: the start of the file cannot be read: {_read_error(error)}."
        raise InputError(msg) from error
    trailing = bool(header and reference and header[-1] == "" and reference[-1] == "")
    if trailing:
        # a trailing separator on every line: an empty last field that is no cell
        header, reference, rows = header[:-1], reference[:-1], [row[:-1] for row in rows]
    if len(reference) == len(header) + 1:
        corner, cells = False, header
    elif len(reference) == len(header):
        corner, cells = True, header[1:]
    else:
        msg = (
            f"{path}: the header has {len(header)} fields but the next row has {len(reference)}; "
            f"is the separator {_sep_name(sep)} right? {hint}."
        )
        raise InputError(msg)
    cells = [_unquote(cell) for cell in cells]
    duplicated = pd.Index(cells)[pd.Index(cells).duplicated()]
    if len(duplicated):
        msg = f"{path}: cell ids occur twice in the header: {list(duplicated[:5])}; each cell needs its own id."
        raise InputError(msg)
    metadata = pd.DataFrame(index=pd.Index(cells, dtype=str))
    for row in rows:
        if len(row) != len(cells) + 1:
            msg = (
                f"{path}: metadata row {row[0]!r} has {len(row) - 1} values for {len(cells)} cells."
            )
            raise InputError(msg)
        metadata[_unquote(row[0])] = [value.strip() for value in row[1:]]
    if metadata_rows:
        logger.info("%s: metadata rows %s", path.name, list(metadata.columns))
    return _TextLayout(cells=cells, corner=corner, metadata=metadata, trailing=trailing)


def _sep_name(sep: str) -> str:
    return {"\t": "tab", ",": "comma", WHITESPACE: "whitespace"}.get(sep, repr(sep))


def _read_error(error: BaseException) -> str:
    """A library's reading error in words (truncated gzip, bad bytes, other)."""
    if isinstance(error, EOFError):
        return (
            "the gzip stream ends early: the file is truncated (an interrupted copy or download?)"
        )
    if isinstance(error, UnicodeDecodeError):
        byte = error.object[error.start : error.start + 1].hex()
        return (
            f"it is not UTF-8 text: byte 0x{byte} is not UTF-8 (Latin-1 or Windows text, "
            "e.g. an accented letter?); save it as UTF-8"
        )
    return f"{type(error).__name__}: {error}"


def _read_text_values(
    path: Path,
    *,
    sep: str,
    layout: _TextLayout,
    skip_rows: int,
    cells: Sequence[str],
    hint: str = _REGISTRY_HINT,
) -> tuple[list[str], sp.csr_matrix]:
    """Read the gene rows for ``cells`` (in that order): (gene names, cells x genes CSR).

    The file is read in chunks of rows (about 2e7 values each) and each chunk becomes a
    sparse block at once, so the whole text is never held in memory. Every row must have
    one number per cell: a short or long row, a value that is not a finite number, or a
    truncated gzip stream stops with the line it happens on.
    """
    n_cells = len(layout.cells)
    position = {cell: number for number, cell in enumerate(layout.cells)}
    wanted = np.array(sorted(position[cell] for cell in cells), dtype=np.intp)
    n_columns = n_cells + 1 + int(layout.trailing)
    # one column more than a row has: pandas silently cuts a long row that starts a chunk,
    # so a value in this sentinel column is how a long row shows
    dtype = {0: str, **dict.fromkeys(range(1, n_cells + 1), np.float32), n_columns: str}
    if layout.trailing:
        dtype[n_cells + 1] = str
    genes: list[str] = []
    blocks: list[sp.csr_matrix] = []
    try:
        reader = pd.read_csv(
            path,
            sep=sep,
            header=None,
            names=list(range(n_columns + 1)),
            index_col=False,
            skiprows=skip_rows,
            dtype=dtype,
            keep_default_na=False,
            na_values=[""],
            quotechar='"',
            compression="gzip" if is_gzip(path) else None,
            chunksize=max(1, int(_TEXT_CHUNK_VALUES // n_columns)),
            engine="c",
        )
        for chunk in reader:
            values = chunk.iloc[:, 1 : n_cells + 1].to_numpy(dtype=np.float32)
            beyond = chunk.iloc[:, n_cells + 1 :].notna().to_numpy()
            if beyond.any() or not np.isfinite(values).all():
                raise _BadRow
            genes.extend(_unquote(str(name)) for name in chunk[0])
            blocks.append(sp.csr_matrix(values[:, wanted]))
    except (_BadRow, ValueError, KeyError, IndexError, EOFError, OSError, zlib.error) as error:
        where = _first_bad_line(path, sep=sep, skip_rows=skip_rows, layout=layout)
        found = where or _read_error(error)
        msg = f"{path}: {found}. {hint}."
        raise InputError(msg) from None
    if not blocks:
        msg = (
            f"{path}: no gene rows after the header{' and metadata rows' if skip_rows > 1 else ''}."
        )
        raise InputError(msg)
    genes_by_cells = sp.vstack(blocks, format="csr")
    # columns are in file order; put them in the order of `cells`
    file_order = [layout.cells[column] for column in wanted]
    order = pd.Index(file_order).get_indexer(list(cells))
    return genes, sp.csr_matrix(genes_by_cells.T)[order]


class _BadRow(Exception):
    """A chunk of a text matrix holds a ragged row or a value that is not a finite number."""


def _first_bad_line(path: Path, *, sep: str, skip_rows: int, layout: _TextLayout) -> str | None:
    """The first problem of a text matrix's gene rows, with its line number (None if none).

    Streams the file again (only after reading it failed): a row with too few or too many
    fields, a value that is not a finite number, the end of a truncated gzip stream.
    """
    n_cells = len(layout.cells)
    n_fields = n_cells + 1 + int(layout.trailing)
    number = 0
    try:
        with open_text(path, newline="") as handle:
            for index, (number, line) in enumerate(_text_lines(handle)):
                if index < skip_rows:
                    continue
                problem = _row_problem(_split_line(line, sep), n_fields=n_fields, n_cells=n_cells)
                if problem is not None:
                    return f"line {number} {problem}"
    except EOFError:
        return (
            f"the gzip stream ends after line {number}, in the middle of the data: the file is "
            "truncated (an interrupted copy or download?); copy or download it again"
        )
    except (OSError, UnicodeDecodeError, zlib.error) as error:
        return f"after line {number}: {_read_error(error)}"
    return None


def _row_problem(row: list[str], *, n_fields: int, n_cells: int) -> str | None:
    gene = _unquote(row[0]) if row else ""
    if len(row) != n_fields:
        return (
            f"(gene {gene!r}) has {len(row) - 1} values but the header names {n_cells} cells "
            "(a ragged row: a missing or extra field, or a cut line)"
        )
    for column, value in enumerate(row[1 : n_cells + 1], start=2):
        try:
            number = float(value)
        except ValueError:
            number = None
        if number is None or not np.isfinite(number):
            return f"(gene {gene!r}), field {column}: {value!r} is not a finite number"
    if n_fields > n_cells + 1 and row[-1].strip():
        return f"(gene {gene!r}) has a value after the separator that ends the other lines"
    return None


def _read_annotation(path: Path, spec: Mapping[str, Any]) -> pd.DataFrame:
    header = spec.get("header", True)
    table = pd.read_csv(
        path,
        sep=spec.get("sep", "\t"),
        dtype=str,
        keep_default_na=False,
        encoding="utf-8-sig",
        header=0 if header else None,
        names=None if header else spec["columns"],
        compression="gzip" if is_gzip(path) else None,
    )
    cell_id = spec.get("cell_id", 0)
    if isinstance(cell_id, int):
        column = table.columns[cell_id]
    elif cell_id in table.columns:
        column = cell_id
    else:
        msg = (
            f"{path}: the cell id column {cell_id!r} (registry annotation.cell_id) is not among "
            f"the columns {list(table.columns)}."
        )
        raise InputError(msg)
    ids = table[column].map(_unquote)
    table = table.drop(columns=[column])
    table.index = pd.Index(ids, dtype=str)
    table.index.name = None
    duplicated = table.index[table.index.duplicated()]
    if len(duplicated):
        msg = f"{path}: cell ids occur more than once: {list(duplicated[:5])}."
        raise InputError(msg)
    return table


def _align(annotation: pd.DataFrame, matrix_cells: Sequence[str], *, where: str) -> pd.DataFrame:
    present = pd.Index(matrix_cells)
    missing = annotation.index.difference(present)
    if len(missing):
        msg = (
            f"{where}: {len(missing)} annotated cells are not in the expression matrix "
            f"(e.g. {list(missing[:5])}); are the two files from the same release?"
        )
        raise InputError(msg)
    unannotated = present.difference(annotation.index)
    if len(unannotated):
        logger.warning(
            "%s: %d matrix cells have no annotation and are dropped (e.g. %s)",
            where,
            len(unannotated),
            list(unannotated[:5]),
        )
    return annotation


# --------------------------------------------------------------------------- #
# Format readers: each returns (derived obs, gene names, cells x genes CSR)
# --------------------------------------------------------------------------- #
_Read = tuple[pd.DataFrame, list[str], sp.csr_matrix]


def _read_text_matrix(files: Mapping[str, Path], entry: Mapping[str, Any], *, where: str) -> _Read:
    layout_spec = entry.get("matrix") or {}
    sep = layout_spec.get("sep", "\t")
    metadata_rows = int(layout_spec.get("metadata_rows", 0))
    layout = _read_text_layout(files["matrix"], sep=sep, metadata_rows=metadata_rows)
    if "annotation" in files:
        annotation = _read_annotation(files["annotation"], entry.get("annotation") or {})
        annotation = _align(annotation, layout.cells, where=where)
        raw_obs = annotation.join(layout.metadata, how="left")
    else:
        raw_obs = layout.metadata
    obs = derive_obs(raw_obs, entry)
    genes, x = _read_text_values(
        files["matrix"], sep=sep, layout=layout, skip_rows=1 + metadata_rows, cells=list(obs.index)
    )
    return obs, genes, x


def _lines(path: Path, *, column: int = 0) -> list[str]:
    with open_text(path, newline="") as handle:
        return [
            _unquote(line.rstrip("\r\n").split("\t")[column]) for line in handle if line.strip()
        ]


def _read_mtx_files(
    matrix: Path,
    genes_path: Path,
    annotation_path: Path,
    barcodes_path: Path | None,
    entry: Mapping[str, Any],
    *,
    where: str,
) -> _Read:
    annotation = _read_annotation(annotation_path, entry.get("annotation") or {})
    genes = _lines(genes_path, column=int((entry.get("genes") or {}).get("column", 0)))
    barcodes = _lines(barcodes_path) if barcodes_path is not None else list(annotation.index)
    if barcodes_path is not None:
        annotation = _align(annotation, barcodes, where=where)
    obs = derive_obs(annotation, entry)
    values = scipy.io.mmread(matrix)
    orientation = (entry.get("matrix") or {}).get("orientation", "genes_x_cells")
    values = sp.csc_matrix(values if orientation == "genes_x_cells" else values.T)
    if values.shape != (len(genes), len(barcodes)):
        msg = (
            f"{where}: {matrix.name} is {values.shape[0]} x {values.shape[1]} ({orientation}) but "
            f"there are {len(genes)} genes and {len(barcodes)} cells listed; check "
            "matrix.orientation and that the files belong together."
        )
        raise InputError(msg)
    columns = pd.Index(barcodes).get_indexer(list(obs.index))
    x = sp.csr_matrix(values[:, columns].T, dtype=np.float32)
    return obs, genes, x


def _read_mtx(files: Mapping[str, Path], entry: Mapping[str, Any], *, where: str) -> _Read:
    return _read_mtx_files(
        files["matrix"],
        files["genes"],
        files["annotation"],
        files.get("barcodes"),
        entry,
        where=where,
    )


def _read_mtx_tar(files: Mapping[str, Path], entry: Mapping[str, Any], *, where: str) -> _Read:
    archive = files["archive"]
    members = dict(entry.get("members") or {})
    for role in ("matrix", "genes", "annotation"):
        if role not in members:
            msg = f"{where}: format mtx_tar needs members.{role} (a file name inside the archive)."
            raise InputError(msg)
    # stream the archive once; a temporary folder next to it (same disk as the data)
    with tempfile.TemporaryDirectory(dir=archive.parent, prefix=f".{archive.name}.") as folder:
        found: dict[str, Path] = {}
        seen: list[str] = []
        with tarfile.open(archive, "r|*") as tar:
            for member in tar:
                base = PurePosixPath(member.name).name
                seen.append(member.name)
                for role, name in members.items():
                    if base == name and member.isfile() and role not in found:
                        target = Path(folder) / f"{role}_{base}"
                        source = tar.extractfile(member)
                        with source, open(target, "wb") as out:
                            shutil.copyfileobj(source, out, 1 << 20)
                        found[role] = target
        absent = [f"{role} ({members[role]})" for role in members if role not in found]
        if absent:
            msg = (
                f"{where}: {archive.name} lacks {', '.join(absent)}; it holds {seen[:20]}. "
                "Fix `members` in the registry."
            )
            raise InputError(msg)
        return _read_mtx_files(
            found["matrix"],
            found["genes"],
            found["annotation"],
            found.get("barcodes"),
            entry,
            where=where,
        )


def _strings(dataset: Any) -> list[str]:
    return [
        value.decode("utf-8") if isinstance(value, bytes) else str(value) for value in dataset[()]
    ]


def _read_tisch2_h5(files: Mapping[str, Path], entry: Mapping[str, Any], *, where: str) -> _Read:
    import h5py

    annotation = _read_annotation(
        files["annotation"], entry.get("annotation") or {"cell_id": "Cell"}
    )
    path = files["expression"]
    with h5py.File(path, "r") as handle:
        group = handle["matrix"] if "matrix" in handle else handle[next(iter(handle.keys()))]
        if "features" in group and "name" in group["features"]:
            genes = _strings(group["features"]["name"])
        elif "gene_names" in group:
            genes = _strings(group["gene_names"])
        elif "genes" in group:
            genes = _strings(group["genes"])
        else:
            msg = (
                f"{path}: no gene names (features/name, gene_names or genes) in group {group.name}."
            )
            raise InputError(msg)
        barcodes = _strings(group["barcodes"])
        shape = tuple(int(n) for n in group["shape"][()])
        if shape != (len(genes), len(barcodes)):
            msg = f"{path}: shape {shape} does not match {len(genes)} genes x {len(barcodes)} barcodes."
            raise InputError(msg)
        # CSC genes x cells has the same arrays as CSR cells x genes
        x_all = sp.csr_matrix(
            (group["data"][()], group["indices"][()], group["indptr"][()]),
            shape=(len(barcodes), len(genes)),
        )
    annotation = _align(annotation, barcodes, where=where)
    obs = derive_obs(annotation, entry)
    rows = pd.Index(barcodes).get_indexer(list(obs.index))
    return obs, genes, sp.csr_matrix(x_all[rows], dtype=np.float32)


def _read_h5ad_cellxgene(
    files: Mapping[str, Path], entry: Mapping[str, Any], *, where: str
) -> _Read:
    adata = ad.read_h5ad(files["h5ad"])
    if adata.raw is not None:
        x_all, var = adata.raw.X, adata.raw.var
        logger.info("%s: using raw.X (raw counts) of the CELLxGENE file", where)
    else:
        x_all, var = adata.X, adata.var
    genes = (
        list(var["feature_name"].astype(str))
        if "feature_name" in var
        else list(var.index.astype(str))
    )
    if entry.get("obs"):
        obs = derive_obs(adata.obs, entry)
    else:
        obs = map_cellxgene_obs(
            adata.obs,
            cell_types=entry.get("cell_types"),
            cell_type_patterns=entry.get("cell_type_patterns"),
            dataset_id=entry.get("id", "CELLxGENE"),
        )
    rows = adata.obs_names.get_indexer(list(obs.index))
    return obs, genes, sp.csr_matrix(x_all[rows], dtype=np.float32)


_READERS = {
    "text_matrix": _read_text_matrix,
    "mtx_tar": _read_mtx_tar,
    "mtx": _read_mtx,
    "tisch2_h5": _read_tisch2_h5,
    "h5ad_cellxgene": _read_h5ad_cellxgene,
}
