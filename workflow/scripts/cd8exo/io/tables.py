"""Text tables and gene-set files: GMT, TSV/CSV, the target table, and their writers."""

from __future__ import annotations

import gzip
import io
import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from cd8exo._utils import atomic_write, open_text
from cd8exo.vocabulary import ID_COLUMNS

if TYPE_CHECKING:
    from collections.abc import Sequence
logger = logging.getLogger(__name__)

__all__ = [
    "read_gmt",
    "read_patient_table",
    "read_scores",
    "read_table",
    "read_targets",
    "read_tsv",
    "write_table",
]

PathLike = str | os.PathLike


# --------------------------------------------------------------------------- #
# Gene sets, targets and small tables
# --------------------------------------------------------------------------- #
def read_gmt(path: PathLike) -> dict[str, list[str]]:
    """Read gene sets from a GMT file.

    Each line is ``name<TAB>description<TAB>gene<TAB>gene...``. Blank lines and
    lines starting with ``#`` are skipped; empty gene fields (trailing tabs) are
    ignored and a gene listed twice in one set is kept once.

    Parameters
    ----------
    path
        The GMT file (plain text, or gzip when the name ends in ``.gz``).

    Returns
    -------
    Gene-set name -> gene symbols, in file order.

    Raises
    ------
    ValueError
        When a set name occurs twice, or a line has no name or no genes; the
        message names the file and the line number.
    """
    path = Path(path)
    sets: dict[str, list[str]] = {}
    first_line: dict[str, int] = {}
    with open_text(path) as handle:
        for line_number, raw in enumerate(handle, start=1):
            line = raw.rstrip("\r\n")
            if not line.strip() or line.lstrip().startswith("#"):
                continue
            fields = line.split("\t")
            name = fields[0].strip()
            if not name:
                msg = (
                    f"{path}, line {line_number}: the gene set has no name. A GMT line is "
                    "'name<TAB>description<TAB>gene<TAB>gene...'."
                )
                raise ValueError(msg)
            genes = list(dict.fromkeys(g.strip() for g in fields[2:] if g.strip()))
            if not genes:
                msg = (
                    f"{path}, line {line_number}: gene set {name!r} has no genes. A GMT line "
                    "is 'name<TAB>description<TAB>gene<TAB>gene...' (tab-separated); add its "
                    "genes or delete the line."
                )
                raise ValueError(msg)
            if name in sets:
                msg = (
                    f"{path}, line {line_number}: gene set {name!r} is defined twice (first on "
                    f"line {first_line[name]}). Give each set a unique name or merge them."
                )
                raise ValueError(msg)
            sets[name] = genes
            first_line[name] = line_number
    if not sets:
        logger.warning("%s contains no gene sets", path)
    return sets


def read_tsv(
    path: PathLike,
    *,
    required_columns: Sequence[str] = (),
    what: str = "table",
    dtype: dict[str, type] | type | None = None,
) -> pd.DataFrame:
    """Read a tab-separated table with a header line and check its columns.

    Parameters
    ----------
    path
        The file (``.csv`` files are read comma-separated, everything else tab-separated;
        ``.gz`` is decompressed).
    required_columns
        Columns that must be present.
    what
        What the table is, for error messages (e.g. ``"label map"``).
    dtype
        Passed to :func:`pandas.read_csv`.

    Returns
    -------
    The table; surrounding whitespace is stripped from the column names.
    """
    path = Path(path)
    if not path.is_file():
        msg = f"The {what} {path} does not exist (or is not a file)."
        raise ValueError(msg)
    table = pd.read_csv(path, sep=_separator(path), dtype=dtype)
    table.columns = [str(c).strip() for c in table.columns]
    missing = [c for c in required_columns if c not in table.columns]
    if missing:
        msg = (
            f"The {what} {path} lacks the column(s) {missing}; its columns are "
            f"{list(table.columns)}. Add a header line with these names (tab-separated)."
        )
        raise ValueError(msg)
    return table


def read_targets(path: PathLike) -> pd.DataFrame:
    """Read the receiver target genes.

    Parameters
    ----------
    path
        A TSV with at least a ``gene`` column (HGNC symbols); further columns (e.g.
        ``compartment``, ``justification``) are kept.

    Returns
    -------
    The table with ``gene`` stripped of whitespace.

    Raises
    ------
    ValueError
        When the ``gene`` column is missing, a gene is empty or a gene is listed twice.
    """
    table = read_tsv(path, required_columns=["gene"], what="target gene table", dtype={"gene": str})
    genes = table["gene"].str.strip()
    empty = genes.isna() | (genes == "")
    if empty.any():
        rows = (np.flatnonzero(empty.to_numpy()) + 2).tolist()
        msg = f"{path}: the gene column is empty on line(s) {rows}; fill it in or delete the line."
        raise ValueError(msg)
    duplicated = genes[genes.duplicated()].unique().tolist()
    if duplicated:
        msg = f"{path}: gene(s) {duplicated} are listed more than once; keep one line per gene."
        raise ValueError(msg)
    return table.assign(gene=genes)


def read_table(path: PathLike, *, index_col: int | str | None = None) -> pd.DataFrame:
    """Read a table written by :func:`write_table`, with its identifiers as text.

    Every column named in :data:`~cd8exo.vocabulary.ID_COLUMNS` (``patient``, ``cell``,
    ``signature``, ...) is read as verbatim strings: ids like ``007`` or ``NA`` survive the
    round trip. Only empty fields are missing values (that is how :func:`write_table`
    writes NaN), so a text field ``NA`` is not lost either. Floats are parsed exactly
    (``float_precision="round_trip"``): a table passed between rules holds the same
    numbers as the stage computed in memory.

    Parameters
    ----------
    path
        A ``.tsv``/``.txt`` (tab) or ``.csv`` (comma) file, optionally gzipped.
    index_col
        Column to use as the index (e.g. ``"cell"`` for per-cell score tables).

    Returns
    -------
    The table.
    """
    path = Path(path)
    if not path.is_file():
        msg = f"The table {path} does not exist."
        raise ValueError(msg)
    return pd.read_csv(
        path,
        sep=_separator(path),
        index_col=index_col,
        dtype=dict.fromkeys(ID_COLUMNS, str),
        keep_default_na=False,
        na_values=[""],
        # write_table writes shortest round-trip reprs: read them back to the same bits
        # (pandas' default parser can be off in the last digit)
        float_precision="round_trip",
    )


def read_scores(path: PathLike) -> pd.DataFrame:
    """Per-cell signature scores (rule ``score_signatures``), indexed by cell."""
    return read_table(path, index_col="cell")


def read_patient_table(path: PathLike) -> pd.DataFrame:
    """The patient table (rule ``aggregate_patients``): ``patient`` as text, ``included`` bool."""
    table = read_table(path)
    if "included" in table and table["included"].dtype != bool:
        msg = f"{path}: column 'included' holds {sorted(set(table['included'].astype(str)))}, not True/False."
        raise ValueError(msg)
    return table


def write_table(df: pd.DataFrame, path: PathLike, *, index: bool | None = None) -> None:
    """Write a table atomically (temporary file, then rename).

    Parameters
    ----------
    df
        The table.
    path
        Destination; ``.csv`` is written comma-separated, everything else (``.tsv``,
        ``.txt``) tab-separated, ``.gz`` compressed.
    index
        Whether to write the index. Default: only when it is not a plain
        :class:`~pandas.RangeIndex` (e.g. patient x signature tables keep their patients).
    """
    path = Path(path)
    if path.suffix == ".parquet":
        msg = f"{path}: parquet is not supported (no pyarrow); write .tsv instead."
        raise ValueError(msg)
    if index is None:
        index = not isinstance(df.index, pd.RangeIndex)
    sep = _separator(path)
    if path.suffix != ".gz":
        atomic_write(path, lambda tmp: df.to_csv(tmp, sep=sep, index=index))
        return

    def write_gzip(tmp: str) -> None:
        # no file name and mtime 0 in the gzip header: the same table gives the same bytes
        with (
            open(tmp, "wb") as raw,
            gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) as gz,
            io.TextIOWrapper(gz, encoding="utf-8", newline="") as text,
        ):
            df.to_csv(text, sep=sep, index=index)

    atomic_write(path, write_gzip)


# --------------------------------------------------------------------------- #
# Small helpers
# --------------------------------------------------------------------------- #
def _separator(path: Path) -> str:
    suffixes = [s.lower() for s in Path(path).suffixes]
    return "," if ".csv" in suffixes else "\t"


def write_yaml(data: object, path: PathLike) -> None:
    """Write a YAML file atomically (temporary file, then rename)."""
    import yaml

    def write(tmp: str) -> None:
        with open(tmp, "w") as fh:
            yaml.safe_dump(data, fh, sort_keys=False, default_flow_style=False)

    atomic_write(Path(path), write)


def write_gmt(gene_sets: dict[str, list[str]], path: PathLike, *, description: str = "") -> None:
    """Write gene sets as GMT (name, description, genes; tab-separated), atomically."""

    def write(tmp: str) -> None:
        with open(tmp, "w") as fh:
            for name, genes in gene_sets.items():
                fh.write("\t".join([name, description or name, *genes]) + "\n")

    atomic_write(Path(path), write)
