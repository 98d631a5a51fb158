"""Gene names onto current HGNC symbols: Excel damage, aliases, previous symbols, Ensembl ids.

Public tables name genes in several ways that must meet before two datasets (or a
dataset and a gene set) can be compared. :func:`map_symbols` resolves each name in this
order, and records how in a ``status`` column:

``ensembl``
    An Ensembl gene id (``ENSG00000141510``, with or without a ``.version`` or
    ``_PAR_Y`` suffix) is replaced by its GENCODE v48 gene name
    (``resources/genome/gencode_v48_genes_homo_sapiens.csv.gz``). Ids whose GENCODE name
    is the id itself (unnamed lncRNAs) keep the bare id (``ensembl_unnamed``).
``approved``
    The name is a current HGNC symbol (HGNC snapshot 2022-04, through the HGNChelper
    table ``resources/genome/hgnc_alias_table.tsv.gz``): kept as it is. An approved
    symbol is never re-mapped, even when it is also another gene's alias.
``excel``
    An Excel-corrupted name (``1-Mar``, ``2-Sep``, ``1-Dec``, ``MAR-01`` ...) that the
    table maps to one current symbol (``1-Sep`` -> ``SEPTIN1``).
``alias``
    A previous symbol or alias mapped to its one current symbol (``SEPT7`` -> ``SEPTIN7``,
    ``KIAA0101`` -> ``PCLAF``); lookups are exact first, then upper-cased (keeping
    ``orf`` lower-case, as HGNC writes ``C1orf112``).
``ambiguous``
    The name maps to several current symbols. If exactly one of them is not already
    present in the same dataset under its approved name, that one is taken (status
    ``alias``/``excel``); otherwise the original name is kept and flagged.
``excel_unresolved``
    An Excel-date name that cannot be resolved (``1-Mar`` is MARCHF1 or MTARC1): such a
    row is not a gene name at all and :func:`clean_var_names` drops it (logged by name).
``unmapped``
    Not found anywhere (clone-based names such as ``RP11-34P13.7``, new genes): kept as
    they are; pass ``drop_unmapped=True`` to drop them.

**Duplicated symbols** (the same symbol from two rows: a file listing a gene twice, an
alias landing on a symbol also present, two Ensembl ids with one name) are resolved by
keeping one row: the one whose name needed the least repair (approved or Ensembl, then
Excel, then alias/ambiguous/unmapped), then the one with the largest total expression
across cells, then the first. The dropped rows are logged by name. Rows are never summed:
two rows that HGNC considers one gene are often different loci measured separately, and
summing log-scale values would be wrong.
"""

from __future__ import annotations

import gzip
import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import scipy.sparse as sp

__all__ = [
    "DEFAULT_ALIAS_TABLE",
    "DEFAULT_ENSEMBL_TABLE",
    "SymbolTables",
    "clean_var_names",
    "keep_one_per_symbol",
    "load_symbol_tables",
    "map_symbols",
]

logger = logging.getLogger(__name__)

DEFAULT_ALIAS_TABLE = Path("resources/genome/hgnc_alias_table.tsv.gz")
DEFAULT_ENSEMBL_TABLE = Path("resources/genome/gencode_v48_genes_homo_sapiens.csv.gz")

#: Priority of a status when several rows end up with one symbol (lower wins).
STATUS_PRIORITY: dict[str, int] = {
    "approved": 0,
    "ensembl": 0,
    "ensembl_unnamed": 0,
    "excel": 1,
    "alias": 2,
    "ambiguous": 3,
    "unmapped": 3,
    "excel_unresolved": 4,
}

_MONTHS = "JAN|FEB|MAR|APR|MAY|JUN|JUL|AUG|SEP|SEPT|OCT|NOV|DEC"
_EXCEL_DATE = re.compile(
    rf"^(\d{{1,2}}-({_MONTHS})|({_MONTHS})-\d{{1,2}}|\d{{1,4}}[-/]\d{{1,2}}([-/]\d{{1,4}})?)$",
    re.IGNORECASE,
)
_ENSEMBL = re.compile(r"^(ENSG\d{11})(\.\d+)?(_PAR_Y)?$")
_ORF = re.compile(r"^(C[0-9XY]+)ORF(\d+)$")


@dataclass(frozen=True)
class SymbolTables:
    """Offline lookup tables for gene names.

    Attributes
    ----------
    approved
        Current HGNC symbols.
    alias
        Lookup key (a name as HGNChelper writes it) -> the current symbols it stands for.
    ensembl
        Ensembl gene id without version -> GENCODE gene name.
    """

    approved: frozenset[str]
    alias: dict[str, tuple[str, ...]]
    ensembl: dict[str, str]


def _read_text(path: Path) -> list[str]:
    opener = gzip.open if path.read_bytes()[:2] == b"\x1f\x8b" else open
    with opener(path, "rt", encoding="utf-8") as handle:
        return handle.read().splitlines()


@lru_cache(maxsize=4)
def _load_tables(alias_table: Path, ensembl_table: Path) -> SymbolTables:
    for path, what in ((alias_table, "HGNC alias table"), (ensembl_table, "Ensembl-to-symbol table")):
        if not path.is_file():
            msg = (
                f"{what} not found at {path}. It ships with the workflow in resources/genome/ "
                "(see resources/genome/PROVENANCE_genome.md); run from the repository root or "
                "pass the path explicitly."
            )
            raise FileNotFoundError(msg)
    lines = _read_text(alias_table)
    header = lines[0].split("\t")
    if header[:2] != ["Symbol", "Approved.Symbol"]:
        msg = (
            f"{alias_table}: expected the columns 'Symbol' and 'Approved.Symbol' first "
            f"(HGNChelper hgnc.table), found {header[:3]}"
        )
        raise ValueError(msg)
    alias: dict[str, list[str]] = {}
    approved: set[str] = set()
    for line in lines[1:]:
        fields = line.split("\t")
        if len(fields) < 2 or not fields[1]:
            continue
        key, symbol = fields[0], fields[1]
        approved.add(symbol)
        targets = alias.setdefault(key, [])
        if symbol not in targets:
            targets.append(symbol)
    ensembl: dict[str, str] = {}
    for line in _read_text(ensembl_table):
        fields = line.split(",")
        if len(fields) >= 2 and fields[0].startswith("ENSG"):
            ensembl.setdefault(fields[0].split(".")[0], fields[1])
    return SymbolTables(
        approved=frozenset(approved),
        alias={key: tuple(value) for key, value in alias.items()},
        ensembl=ensembl,
    )


def load_symbol_tables(
    alias_table: str | Path = DEFAULT_ALIAS_TABLE,
    ensembl_table: str | Path = DEFAULT_ENSEMBL_TABLE,
) -> SymbolTables:
    """Load (once per process) the HGNC alias table and the GENCODE id-to-name table.

    Parameters
    ----------
    alias_table
        HGNChelper's ``hgnc.table`` as TSV (``Symbol``, ``Approved.Symbol``, ``chromosome``).
    ensembl_table
        CELLxGENE's GENCODE v48 ``genes_homo_sapiens.csv.gz`` (``gene_id,gene_name,...``,
        no header).

    Returns
    -------
    The lookup tables.
    """
    return _load_tables(Path(alias_table).resolve(), Path(ensembl_table).resolve())


def _lookup_keys(name: str) -> list[str]:
    upper = name.upper()
    keys = [name, upper]
    orf = _ORF.match(upper)
    if orf:
        keys.append(f"{orf.group(1)}orf{orf.group(2)}")
    return list(dict.fromkeys(keys))


def map_symbols(names: Sequence[str], *, tables: SymbolTables) -> pd.DataFrame:
    """Map gene names onto current HGNC symbols (rules in the module docstring).

    Parameters
    ----------
    names
        Gene names as the authors wrote them (quotes already stripped).
    tables
        From :func:`load_symbol_tables`.

    Returns
    -------
    One row per input name, in input order: ``original``, ``symbol``, ``status``.
    """
    originals = [str(name).strip() for name in names]
    present_approved = {name for name in originals if name in tables.approved}
    symbols: list[str] = []
    statuses: list[str] = []
    for name in originals:
        ensembl = _ENSEMBL.match(name)
        if ensembl:
            gene_id = ensembl.group(1)
            symbol = tables.ensembl.get(gene_id)
            if symbol is None:
                symbols.append(gene_id)
                statuses.append("unmapped")
            elif symbol.startswith("ENSG"):
                symbols.append(gene_id)
                statuses.append("ensembl_unnamed")
            else:
                symbols.append(symbol)
                statuses.append("ensembl")
            continue
        if name in tables.approved:
            symbols.append(name)
            statuses.append("approved")
            continue
        is_excel = bool(_EXCEL_DATE.match(name))
        candidates: tuple[str, ...] = ()
        for key in _lookup_keys(name):
            if key in tables.approved:
                candidates = (key,)
                break
            if key in tables.alias:
                candidates = tables.alias[key]
                break
        if len(candidates) > 1:
            absent = tuple(symbol for symbol in candidates if symbol not in present_approved)
            candidates = absent if len(absent) == 1 else candidates
        if len(candidates) == 1:
            symbols.append(candidates[0])
            statuses.append("excel" if is_excel else "alias")
        elif is_excel:
            symbols.append(name)
            statuses.append("excel_unresolved")
        elif candidates:
            symbols.append(name)
            statuses.append("ambiguous")
        else:
            symbols.append(name)
            statuses.append("unmapped")
    return pd.DataFrame({"original": originals, "symbol": symbols, "status": statuses})


def _column_totals(X: np.ndarray | sp.spmatrix) -> np.ndarray:
    return np.asarray(X.sum(axis=0), dtype=np.float64).ravel()


def keep_one_per_symbol(
    symbols: Sequence[str], *, status: Sequence[str], totals: Sequence[float]
) -> np.ndarray:
    """Choose one row per symbol (the documented duplicate rule).

    Parameters
    ----------
    symbols
        Symbol of each row (after :func:`map_symbols`).
    status
        Status of each row; a lower :data:`STATUS_PRIORITY` wins.
    totals
        Total expression of each row across cells; a larger total wins a tie.

    Returns
    -------
    Boolean mask of the rows to keep (the first row wins a remaining tie).
    """
    frame = pd.DataFrame(
        {
            "symbol": list(symbols),
            "priority": [STATUS_PRIORITY.get(value, 3) for value in status],
            "total": np.asarray(totals, dtype=np.float64),
            "order": np.arange(len(symbols)),
        }
    )
    ranked = frame.sort_values(["symbol", "priority", "total", "order"], ascending=[True, True, False, True])
    winners = ranked.drop_duplicates("symbol", keep="first")["order"].to_numpy()
    keep = np.zeros(len(frame), dtype=bool)
    keep[winners] = True
    return keep


def clean_var_names(
    adata: ad.AnnData,
    *,
    tables: SymbolTables | None = None,
    drop_unmapped: bool = False,
) -> ad.AnnData:
    """Return a copy of ``adata`` whose ``var_names`` are unique current HGNC symbols.

    Parameters
    ----------
    adata
        Cells x genes; ``var_names`` as the authors wrote them.
    tables
        Lookup tables; :func:`load_symbol_tables` with its defaults when ``None``.
    drop_unmapped
        Also drop names found in no table (kept by default, flagged ``unmapped``).

    Returns
    -------
    A new AnnData with ``var["original_name"]`` and ``var["symbol_status"]``; rows that
    are unresolvable Excel dates and all but one row per duplicated symbol are removed
    (see the module docstring), each logged by name.
    """
    tables = load_symbol_tables() if tables is None else tables
    mapping = map_symbols(list(adata.var_names), tables=tables)
    drop = mapping["status"].eq("excel_unresolved").to_numpy()
    if drop_unmapped:
        drop |= mapping["status"].eq("unmapped").to_numpy()
    if drop.any():
        logger.warning(
            "dropped %d gene rows whose names cannot be resolved to one symbol: %s",
            int(drop.sum()),
            ", ".join(mapping.loc[drop, "original"].head(50)),
        )
    keep = ~drop
    kept_mapping = mapping.loc[keep].reset_index(drop=True)
    subset = adata[:, keep]
    winners = keep_one_per_symbol(
        kept_mapping["symbol"].tolist(),
        status=kept_mapping["status"].tolist(),
        totals=_column_totals(subset.X),
    )
    if not winners.all():
        losers = kept_mapping.loc[~winners]
        logger.warning(
            "kept one row per duplicated symbol (least repaired name, then highest total); "
            "dropped %d rows: %s",
            len(losers),
            ", ".join(f"{row.original}->{row.symbol}" for row in losers.head(50).itertuples()),
        )
    n_changed = int((kept_mapping["original"] != kept_mapping["symbol"]).sum())
    if n_changed:
        logger.info(
            "renamed %d genes to current HGNC symbols (%s)",
            n_changed,
            kept_mapping.loc[kept_mapping["original"] != kept_mapping["symbol"], "status"]
            .value_counts()
            .to_dict(),
        )
    result = subset[:, winners].copy()
    final = kept_mapping.loc[winners]
    var = result.var.copy()
    var["original_name"] = final["original"].to_numpy()
    var["symbol_status"] = pd.Categorical(final["status"].to_numpy())
    var.index = pd.Index(final["symbol"].to_numpy(), name=None)
    result.var = var
    return result
