"""Text tables and gene-set files: GMT, TSV/CSV, the target table, and their writers."""

from __future__ import annotations

import gzip
import io
import logging
import os
import warnings
import zlib
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from cd8exo._utils import atomic_write, is_gzip
from cd8exo.errors import InputError
from cd8exo.vocabulary import ID_COLUMNS

if TYPE_CHECKING:
    from collections.abc import Iterator, Mapping, Sequence
logger = logging.getLogger(__name__)

__all__ = [
    "merge_gene_sets",
    "read_gmt",
    "read_patient_table",
    "read_scores",
    "read_table",
    "read_targets",
    "read_tsv",
    "select_signatures",
    "write_table",
]

PathLike = str | os.PathLike


# --------------------------------------------------------------------------- #
# Gene sets, targets and small tables
# --------------------------------------------------------------------------- #
_GMT_LINE = "'name<TAB>description<TAB>gene<TAB>gene...' (tab-separated)"


def _text_lines(path: Path, *, what: str) -> Iterator[tuple[int, str]]:
    """(line number, text without the line end) of a UTF-8 text file, gzip or not.

    A byte-order mark is dropped. A file that does not exist, a truncated gzip file and a
    line that is not UTF-8 raise :class:`InputError` naming the file (and the line).
    """
    if not path.is_file():
        msg = f"The {what} {path} does not exist (or is not a file)."
        raise InputError(msg)
    opener = gzip.open if is_gzip(path) else open
    line_number = 0
    try:
        with opener(path, "rb") as handle:
            for line_number, raw in enumerate(handle, start=1):
                text = raw.decode("utf-8-sig" if line_number == 1 else "utf-8")
                yield line_number, text.rstrip("\r\n")
    except UnicodeDecodeError as error:
        byte = error.object[error.start : error.start + 1].hex()
        msg = (
            f"{path}, line {line_number}: the {what} is not UTF-8 text (byte 0x{byte} at "
            f"position {error.start + 1} of the line; a Latin-1 or Windows file, or not a text file at all). "
            "Save it as UTF-8 text."
        )
        raise InputError(msg) from None
    except (EOFError, gzip.BadGzipFile, zlib.error) as error:
        msg = (
            f"{path}, after line {line_number}: the {what} is a damaged or truncated gzip "
            f"file ({error}). Compress it again, or give it uncompressed."
        )
        raise InputError(msg) from None


def _gmt_problem(fields: list[str], line: str) -> str | None:
    """Why a GMT line is not a gene set (None when it is one)."""
    if not fields[0].strip():
        return f"the gene set has no name. A GMT line is {_GMT_LINE}."
    if "\t" not in line:
        return (
            f"the line has no tab. A GMT line is {_GMT_LINE}; a file saved with spaces "
            "instead of tabs, or not a GMT file, looks like this."
        )
    return None


def read_gmt(path: PathLike, *, allow_empty: bool = True) -> dict[str, list[str]]:
    """Read gene sets from a GMT file.

    Each line is ``name<TAB>description<TAB>gene<TAB>gene...``. Blank lines and
    lines starting with ``#`` are skipped; empty gene fields (trailing tabs) are
    ignored and a gene listed twice in one set is kept once.

    Parameters
    ----------
    path
        The GMT file (UTF-8 text, or gzip of it).
    allow_empty
        Whether a file without any gene set is accepted (with a warning). The user's GMT
        files are checked with ``False`` at start-up (:func:`cd8exo.config.validate_inputs`);
        a dataset's prepared signatures may be empty (none could be scored).

    Returns
    -------
    Gene-set name -> gene symbols, in file order.

    Raises
    ------
    InputError
        When the file is missing, not UTF-8 text or a damaged gzip file, a set name occurs
        twice, a line has no name, no tab or no genes, or (``allow_empty=False``) there is
        no gene set at all; the message names the file and the line and says what to do.
    """
    path = Path(path)
    sets: dict[str, list[str]] = {}
    first_line: dict[str, int] = {}
    for line_number, line in _text_lines(path, what="GMT file"):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        fields = line.split("\t")
        name = fields[0].strip()
        problem = _gmt_problem(fields, line)
        genes = list(dict.fromkeys(g.strip() for g in fields[2:] if g.strip()))
        if problem is None and not genes:
            problem = (
                f"gene set {name!r} has no genes. A GMT line is {_GMT_LINE}; add its genes "
                "or delete the line."
            )
        if problem is None and name in sets:
            problem = (
                f"gene set {name!r} is defined twice (first on line {first_line[name]}). Give "
                "each set a unique name or merge them."
            )
        if problem is not None:
            msg = f"{path}, line {line_number}: {problem}"
            raise InputError(msg)
        sets[name] = genes
        first_line[name] = line_number
    if not sets:
        if not allow_empty:
            msg = (
                f"{path}: the GMT file contains no gene set (it is empty, or every line is "
                f"blank or a # comment). A GMT line is {_GMT_LINE}."
            )
            raise InputError(msg)
        logger.warning("%s contains no gene sets", path)
    return sets


def merge_gene_sets(
    collections: Mapping[str, Mapping[str, Sequence[str]]], *, config_key: str
) -> dict[str, list[str]]:
    """Merge gene-set collections (e.g. several GMT files) into one mapping.

    Parameters
    ----------
    collections
        Source (the GMT path, named in an error) -> gene-set name -> genes.
    config_key
        The config key that listed the collections (e.g. ``"screen.gmt"``), named in the
        error so the user knows where to fix it.

    Returns
    -------
    Gene-set name -> genes, in source order.

    Raises
    ------
    InputError
        When a set name occurs in two sources (the results are keyed by set name).
    """
    merged: dict[str, list[str]] = {}
    origin: dict[str, str] = {}
    for source, sets in collections.items():
        for name, genes in sets.items():
            if name in merged:
                msg = (
                    f"Gene set {name!r} is in both {origin[name]} and {source}; set names must "
                    f"be unique across the {config_key} files: rename the set in one of them, "
                    f"or drop one file from {config_key} in the config."
                )
                raise InputError(msg)
            merged[name] = list(genes)
            origin[name] = str(source)
    return merged


def select_signatures(
    collections: Mapping[str, Mapping[str, Sequence[str]]],
    *,
    include: Sequence[str] = (),
    config_key: str = "signatures.gmt",
) -> dict[str, list[str]]:
    """Merge gene-set collections and keep the sets named in ``include`` (all when empty).

    Parameters
    ----------
    collections
        As for :func:`merge_gene_sets` (GMT path -> set name -> genes).
    include
        Set names to keep, in this order (empty: all, in source order).
    config_key
        The config key that listed the GMT files, named in the errors.

    Raises
    ------
    InputError
        When a set name occurs in two collections, or ``include`` names a set that none has.
    """
    merged = merge_gene_sets(collections, config_key=config_key)
    if not include:
        return merged
    missing = [name for name in include if name not in merged]
    if missing:
        msg = (
            f"signatures.include names set(s) not found in the GMT files: {', '.join(missing)}; "
            f"available: {', '.join(sorted(merged))}"
        )
        raise InputError(msg)
    return {name: merged[name] for name in include}


def _first_undecodable_line(path: Path) -> int:
    """The number of the first line of ``path`` that is not UTF-8 (0 when every line is)."""
    opener = gzip.open if is_gzip(path) else open
    with opener(path, "rb") as handle:
        for line_number, raw in enumerate(handle, start=1):
            try:
                raw.decode("utf-8")
            except UnicodeDecodeError:
                return line_number
    return 0


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

    Raises
    ------
    InputError
        When the file is missing, empty, not UTF-8, not a table (rows of different
        lengths) or lacks a required column; the message names the file.
    """
    path = Path(path)
    if not path.is_file():
        msg = f"The {what} {path} does not exist (or is not a file)."
        raise InputError(msg)
    try:
        with warnings.catch_warnings():
            # a row longer than the header would silently become the index, or be cut
            warnings.simplefilter("error", pd.errors.ParserWarning)
            table = pd.read_csv(
                path, sep=_separator(path), dtype=dtype, encoding="utf-8-sig", index_col=False
            )
    except pd.errors.ParserWarning:
        msg = (
            f"The {what} {path} has a row with more fields than its header line; give every "
            f"row the header's {'commas' if _separator(path) == ',' else 'tabs'}."
        )
        raise InputError(msg) from None
    except pd.errors.EmptyDataError:
        msg = f"The {what} {path} is empty; it needs a header line and one row per entry."
        raise InputError(msg) from None
    except UnicodeDecodeError:
        line = _first_undecodable_line(path)
        where = f", line {line}" if line else ""
        msg = f"{path}{where}: the {what} is not UTF-8 text. Save it as UTF-8 text."
        raise InputError(msg) from None
    except pd.errors.ParserError as error:
        msg = (
            f"The {what} {path} is not a {'comma' if _separator(path) == ',' else 'tab'}"
            f"-separated table: {error}"
        )
        raise InputError(msg) from None
    table.columns = [str(c).strip() for c in table.columns]
    missing = [c for c in required_columns if c not in table.columns]
    if missing:
        columns = list(table.columns)
        shown = f"{columns[:8]} and {len(columns) - 8} more" if len(columns) > 10 else columns
        msg = (
            f"The {what} {path} lacks the column(s) {missing}; its columns are "
            f"{shown}. Add a header line with these names (tab-separated)."
        )
        raise InputError(msg)
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
    InputError
        When the file cannot be read as a table (:func:`read_tsv`), the ``gene`` column
        is missing, the table has no gene, a gene is empty or a gene is listed twice.
    """
    table = read_tsv(path, required_columns=["gene"], what="target gene table", dtype={"gene": str})
    if table.empty:
        msg = f"{path}: the target gene table has no rows; add one line per target gene."
        raise InputError(msg)
    genes = table["gene"].str.strip()
    empty = genes.isna() | (genes == "")
    if empty.any():
        rows = (np.flatnonzero(empty.to_numpy()) + 2).tolist()
        msg = f"{path}: the gene column is empty on line(s) {rows}; fill it in or delete the line."
        raise InputError(msg)
    duplicated = genes[genes.duplicated()].unique().tolist()
    if duplicated:
        msg = f"{path}: gene(s) {duplicated} are listed more than once; keep one line per gene."
        raise InputError(msg)
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
    if "included" in table and table.empty:
        return table.astype({"included": bool})  # a dataset without any cell left
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
