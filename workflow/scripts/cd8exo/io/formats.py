"""File formats of published datasets: GEO text matrices, Matrix Market (plain or in a tar), TISCH2 h5, CELLxGENE h5ad."""

from __future__ import annotations

import csv
import logging
import shutil
import tarfile
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import anndata as ad
import numpy as np
import pandas as pd
import scipy.io
import scipy.sparse as sp

from cd8exo._utils import is_gzip, open_text
from cd8exo.io.obs import derive_obs, map_cellxgene_obs

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


def _read_text_layout(path: Path, *, sep: str, metadata_rows: int) -> _TextLayout:
    with open_text(path, newline="") as handle:
        reader = csv.reader(handle, delimiter=sep, quotechar='"')
        try:
            header = next(reader)
            rows = [next(reader) for _ in range(metadata_rows)]
            reference = rows[0] if rows else next(reader)
        except StopIteration:
            msg = f"{path}: the file ends before its header, {metadata_rows} metadata rows and a gene row."
            raise ValueError(msg) from None
    if header and reference and header[-1] == "" and reference[-1] == "":
        # a trailing separator on every line: an empty last field that is no cell
        header, reference, rows = header[:-1], reference[:-1], [row[:-1] for row in rows]
    if len(reference) == len(header) + 1:
        corner, cells = False, header
    elif len(reference) == len(header):
        corner, cells = True, header[1:]
    else:
        msg = (
            f"{path}: the header has {len(header)} fields but the next row has {len(reference)}; "
            f"is the separator {sep!r} right (registry matrix.sep)?"
        )
        raise ValueError(msg)
    cells = [_unquote(cell) for cell in cells]
    duplicated = pd.Index(cells)[pd.Index(cells).duplicated()]
    if len(duplicated):
        msg = f"{path}: cell ids occur twice in the header: {list(duplicated[:5])}."
        raise ValueError(msg)
    metadata = pd.DataFrame(index=pd.Index(cells, dtype=str))
    for row in rows:
        if len(row) != len(cells) + 1:
            msg = (
                f"{path}: metadata row {row[0]!r} has {len(row) - 1} values for {len(cells)} cells."
            )
            raise ValueError(msg)
        metadata[_unquote(row[0])] = [value.strip() for value in row[1:]]
    if metadata_rows:
        logger.info("%s: metadata rows %s", path.name, list(metadata.columns))
    return _TextLayout(cells=cells, corner=corner, metadata=metadata)


def _read_text_values(
    path: Path, *, sep: str, layout: _TextLayout, skip_rows: int, cells: Sequence[str]
) -> tuple[list[str], sp.csr_matrix]:
    """Read the gene rows for ``cells`` (in that order): (gene names, cells x genes CSR)."""
    position = {cell: number for number, cell in enumerate(layout.cells)}
    wanted = sorted(position[cell] + 1 for cell in cells)  # +1: the gene-name column
    chunk_rows = max(1, int(2e7 // max(1, len(wanted))))
    reader = pd.read_csv(
        path,
        sep=sep,
        header=None,
        skiprows=skip_rows,
        usecols=[0, *wanted],
        dtype={0: str, **dict.fromkeys(wanted, np.float32)},
        na_filter=False,
        quotechar='"',
        compression="gzip" if is_gzip(path) else None,
        chunksize=chunk_rows,
        engine="c",
    )
    genes: list[str] = []
    blocks: list[sp.csr_matrix] = []
    try:
        for chunk in reader:
            genes.extend(_unquote(name) for name in chunk[0])
            blocks.append(sp.csr_matrix(chunk[wanted].to_numpy(dtype=np.float32)))
    except ValueError as error:
        msg = (
            f"{path}: a value is not a number ({error}). Check matrix.metadata_rows in the "
            "registry (a metadata row read as a gene?) and the separator."
        )
        raise ValueError(msg) from error
    if not blocks:
        msg = f"{path}: no gene rows after the header and metadata rows."
        raise ValueError(msg)
    genes_by_cells = sp.vstack(blocks, format="csr")
    # columns are in file order; put them in the order of `cells`
    file_order = [layout.cells[column - 1] for column in wanted]
    order = pd.Index(file_order).get_indexer(list(cells))
    return genes, sp.csr_matrix(genes_by_cells.T)[order]


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
        raise ValueError(msg)
    ids = table[column].map(_unquote)
    table = table.drop(columns=[column])
    table.index = pd.Index(ids, dtype=str)
    table.index.name = None
    duplicated = table.index[table.index.duplicated()]
    if len(duplicated):
        msg = f"{path}: cell ids occur more than once: {list(duplicated[:5])}."
        raise ValueError(msg)
    return table


def _align(annotation: pd.DataFrame, matrix_cells: Sequence[str], *, where: str) -> pd.DataFrame:
    present = pd.Index(matrix_cells)
    missing = annotation.index.difference(present)
    if len(missing):
        msg = (
            f"{where}: {len(missing)} annotated cells are not in the expression matrix "
            f"(e.g. {list(missing[:5])}); are the two files from the same release?"
        )
        raise ValueError(msg)
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
        raise ValueError(msg)
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
            raise ValueError(msg)
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
            raise ValueError(msg)
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
            raise ValueError(msg)
        barcodes = _strings(group["barcodes"])
        shape = tuple(int(n) for n in group["shape"][()])
        if shape != (len(genes), len(barcodes)):
            msg = f"{path}: shape {shape} does not match {len(genes)} genes x {len(barcodes)} barcodes."
            raise ValueError(msg)
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
