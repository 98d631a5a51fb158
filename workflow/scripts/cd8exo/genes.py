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

**Duplicated symbols** (the same symbol on several rows) are resolved in two steps.
First (:func:`best_rows`), a row whose name needed less repair beats rows renamed onto
the same symbol: approved or Ensembl names, then Excel repairs, then aliases (an alias
colliding with a symbol the authors also measured under its approved name is most likely
another, older locus name). Rows tied at the same level (a file listing a symbol twice,
two Ensembl ids with one name) are then merged by the workflow's one duplicate rule,
:func:`cd8exo.harmonise.harmonise`'s: raw counts are summed, otherwise the row with the
highest mean is kept. Every dropped or merged row is logged by name.
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

from cd8exo.errors import InputError

__all__ = [
    "DEFAULT_ALIAS_TABLE",
    "DEFAULT_ENSEMBL_TABLE",
    "SymbolTables",
    "best_rows",
    "clean_var_names",
    "load_symbol_tables",
    "map_symbols",
    "repair_gene_names",
    "select_rows",
    "unique_symbols",
]

logger = logging.getLogger(__name__)

DEFAULT_ALIAS_TABLE = Path("resources/genome/hgnc_alias_table.tsv.gz")
DEFAULT_ENSEMBL_TABLE = Path("resources/genome/gencode_v48_genes_homo_sapiens.csv.gz")

#: The repository the package ships in: relative table paths missing from the working
#: directory (a run with ``--directory``) are looked up here.
_REPOSITORY = Path(__file__).resolve().parents[3]

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
_HUMAN_ORF = re.compile(r"^C[0-9XY]+orf\d+")
#: A mouse-style symbol: a capital, then lower case letters and digits (Cd8a, Gzmb, Rps27a).
_TITLE_CASE = re.compile(r"^[A-Z][a-z0-9.\-]*[a-z][a-z0-9.\-]*$")
_MOUSE_ENSEMBL = re.compile(r"^ENSMUSG\d{11}(\.\d+)?$")


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
    for path, what in (
        (alias_table, "HGNC alias table"),
        (ensembl_table, "Ensembl-to-symbol table"),
    ):
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
    return _load_tables(_resource(alias_table).resolve(), _resource(ensembl_table).resolve())


def _resource(path: str | Path) -> Path:
    """``path``, or the repository's file of that relative path when the first is absent."""
    path = Path(path)
    if not path.is_absolute() and not path.exists() and (_REPOSITORY / path).exists():
        return _REPOSITORY / path
    return path


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
    mapped = [
        _map_one(name, tables=tables, present_approved=present_approved) for name in originals
    ]
    symbols = [symbol for symbol, _ in mapped]
    statuses = [status for _, status in mapped]
    return pd.DataFrame({"original": originals, "symbol": symbols, "status": statuses})


def _map_one(name: str, *, tables: SymbolTables, present_approved: set[str]) -> tuple[str, str]:
    """(symbol, status) of one gene name, by the rules of the module docstring."""
    ensembl = _ENSEMBL.match(name)
    if ensembl:
        gene_id = ensembl.group(1)
        symbol = tables.ensembl.get(gene_id)
        if symbol is None:
            return gene_id, "unmapped"
        if symbol.startswith("ENSG"):
            return gene_id, "ensembl_unnamed"
        return symbol, "ensembl"
    if name in tables.approved:
        return name, "approved"
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
        # an alias shared by several genes resolves to the one the dataset lacks, if unique
        absent = tuple(symbol for symbol in candidates if symbol not in present_approved)
        candidates = absent if len(absent) == 1 else candidates
    if len(candidates) == 1:
        return candidates[0], "excel" if is_excel else "alias"
    if is_excel:
        return name, "excel_unresolved"
    return name, "ambiguous" if candidates else "unmapped"


def best_rows(symbols: Sequence[str], *, status: Sequence[str]) -> np.ndarray:
    """Mark the rows that keep their symbol: the least repaired name(s) of each symbol.

    Parameters
    ----------
    symbols
        Symbol of each row (after :func:`map_symbols`).
    status
        Status of each row; a lower :data:`STATUS_PRIORITY` wins.

    Returns
    -------
    Boolean mask: ``True`` for every row whose status priority is the best among the rows
    of its symbol (ties are all kept, for the duplicate merge in ``harmonise``).
    """
    frame = pd.DataFrame(
        {"symbol": list(symbols), "priority": [STATUS_PRIORITY.get(value, 3) for value in status]}
    )
    best = frame.groupby("symbol", sort=False)["priority"].transform("min")
    return (frame["priority"] == best).to_numpy()


def select_rows(mapping: pd.DataFrame, *, drop_unmapped: bool = False) -> np.ndarray:
    """Rows of a :func:`map_symbols` table to keep, logging those dropped by name.

    Drops unresolvable Excel dates (and unmapped names when ``drop_unmapped``), then rows
    beaten by a less repaired row of the same symbol (:func:`best_rows`).

    Returns
    -------
    Boolean mask over the rows of ``mapping``.
    """
    drop = mapping["status"].eq("excel_unresolved").to_numpy()
    if drop_unmapped:
        drop |= mapping["status"].eq("unmapped").to_numpy()
    if drop.any():
        logger.warning(
            "dropped %d gene rows whose names are not resolvable to one gene symbol: %s",
            int(drop.sum()),
            ", ".join(mapping.loc[drop, "original"].head(50)),
        )
    keep = ~drop
    beaten = np.zeros(len(mapping), dtype=bool)
    beaten[keep] = ~best_rows(
        mapping.loc[keep, "symbol"].tolist(), status=mapping.loc[keep, "status"].tolist()
    )
    if beaten.any():
        losers = mapping.loc[beaten]
        logger.warning(
            "dropped %d renamed gene rows whose new symbol is also measured under its own name: %s",
            len(losers),
            ", ".join(f"{row.original}->{row.symbol}" for row in losers.head(50).itertuples()),
        )
    keep &= ~beaten
    changed = mapping.loc[keep & (mapping["original"] != mapping["symbol"]).to_numpy()]
    if len(changed):
        logger.info(
            "renamed %d genes to current HGNC symbols (%s), e.g. %s",
            len(changed),
            changed["status"].value_counts().to_dict(),
            ", ".join(f"{row.original}->{row.symbol}" for row in changed.head(10).itertuples()),
        )
    return keep


def clean_var_names(
    adata: ad.AnnData,
    *,
    tables: SymbolTables | None = None,
    drop_unmapped: bool = False,
    value_scale: str = "counts",
) -> ad.AnnData:
    """Return a copy of ``adata`` whose ``var_names`` are unique current HGNC symbols.

    Parameters
    ----------
    adata
        Cells x genes; ``var_names`` as the authors wrote them. Not modified.
    tables
        Lookup tables; :func:`load_symbol_tables` with its defaults when ``None``.
    drop_unmapped
        Also drop names found in no table (kept by default, flagged ``unmapped``).
    value_scale
        Scale of ``X`` (``"counts"`` sums remaining duplicates; any other keeps the
        highest-mean row), as in :func:`cd8exo.harmonise.harmonise`.

    Returns
    -------
    A new AnnData with ``var["original_name"]`` and ``var["symbol_status"]``, rows
    selected by :func:`select_rows` and remaining duplicates merged (module docstring).
    """
    tables = load_symbol_tables() if tables is None else tables
    mapping = map_symbols(list(adata.var_names), tables=tables)
    keep = select_rows(mapping, drop_unmapped=drop_unmapped)
    kept = mapping.loc[keep]
    var = adata.var.iloc[np.flatnonzero(keep)].copy()
    var["original_name"] = kept["original"].to_numpy()
    var["symbol_status"] = kept["status"].to_numpy()
    var.index = pd.Index(kept["symbol"].to_numpy(), dtype=str)
    x = sp.csr_matrix(adata.X[:, np.flatnonzero(keep)], dtype=np.float32)
    dataset = str(adata.uns.get("cd8exo", {}).get("dataset", ""))
    # remaining ties go to the workflow's one duplicate rule (counts summed, else top mean)
    x, var = unique_symbols(x, var, scale=value_scale, dataset=dataset)
    return ad.AnnData(X=x, obs=adata.obs.copy(), var=var, uns=dict(adata.uns))


def unique_symbols(
    x: sp.csr_matrix, var: pd.DataFrame, *, scale: str, dataset: str
) -> tuple[sp.csr_matrix, pd.DataFrame]:
    """Merge genes that share a symbol: counts summed, otherwise the most expressed kept."""
    symbols = pd.Index(var.index.astype(str).str.strip())
    if symbols.is_unique:
        new_var = var.copy()
        new_var.index = symbols
        return x, new_var
    duplicated = symbols[symbols.duplicated()].unique()
    logger.warning(
        "Dataset %r: %d gene symbols occur more than once and are merged (%s): %s",
        dataset,
        len(duplicated),
        "counts summed" if scale == "counts" else "highest-mean gene kept",
        ", ".join(map(str, duplicated)),
    )
    codes, uniques = pd.factorize(symbols)
    if scale == "counts":
        # Sum the duplicates: every molecule of the symbol counts.
        n_genes = len(symbols)
        merge = sp.csr_matrix(
            (np.ones(n_genes, dtype=np.float32), (np.arange(n_genes), codes)),
            shape=(n_genes, len(uniques)),
        )
        merged = sp.csr_matrix(x @ merge, dtype=np.float32)
        first = pd.Series(np.arange(n_genes)).groupby(codes).first().to_numpy()
        new_var = var.iloc[first].copy()
    else:
        # Summing log values means nothing: keep the most expressed duplicate.
        means = np.asarray(x.mean(axis=0, dtype=np.float64)).ravel()
        order = pd.DataFrame({"code": codes, "mean": means, "position": np.arange(len(codes))})
        keep = (
            order.sort_values(["code", "mean", "position"], ascending=[True, False, True])
            .drop_duplicates("code")
            .sort_values("code")["position"]
            .to_numpy()
        )
        merged = x[:, keep]
        new_var = var.iloc[keep].copy()
    new_var.index = pd.Index(uniques.astype(str))
    merged.sort_indices()
    return sp.csr_matrix(merged), new_var


# --------------------------------------------------------------------------- #
# Gene names of a user's dataset
# --------------------------------------------------------------------------- #
def repair_gene_names(
    names: Sequence[str], *, source: str, tables: SymbolTables | None = None
) -> list[str]:
    """Gene names of a local dataset made comparable with the gene sets, changing only
    what is certainly wrong.

    - **Mouse genes** (most names in Title case, ``Cd8a``, ``Gzmb``, or mouse Ensembl
      ids ``ENSMUSG...``) stop with an :class:`~cd8exo.errors.InputError`: the gene sets
      and targets are human.
    - **Ensembl ids** (``ENSG...``, with or without version) become their GENCODE v48
      gene names; the number mapped is logged, ids not in the table keep the bare id.
    - **Excel dates** (``7-Sep``, ``1-Mar``) become the one symbol they stand for
      (``SEPTIN7``), logged as a warning; an ambiguous date (``1-Mar``: MARCHF1 or
      MTARC1), or one whose symbol the data already hold, keeps its name.

    Every other name is returned as it is (duplicates are merged later by
    :func:`cd8exo.cells.harmonise.harmonise`).

    Parameters
    ----------
    names
        The dataset's gene names, in order.
    source
        The file they come from, for messages.
    tables
        Lookup tables; :func:`load_symbol_tables` with its defaults when ``None``,
        loaded only when a name is an Ensembl id or an Excel date.

    Returns
    -------
    The names, in order, with Ensembl ids and Excel dates replaced.
    """
    names = [str(name).strip() for name in names]
    _refuse_mouse(names, source=source)
    is_ensembl = [bool(_ENSEMBL.match(name)) for name in names]
    is_excel = [bool(_EXCEL_DATE.match(name)) for name in names]
    if not any(is_ensembl) and not any(is_excel):
        return names
    tables = load_symbol_tables() if tables is None else tables
    mapping = map_symbols(names, tables=tables)
    out = list(names)
    if any(is_ensembl):
        _map_ensembl(out, mapping, is_ensembl, source=source)
    if any(is_excel):
        _rescue_excel(out, mapping, is_excel, tables=tables, source=source)
    return out


def _refuse_mouse(names: Sequence[str], *, source: str) -> None:
    named = [name for name in names if any(c.isalpha() for c in name)]
    mouse_ids = [name for name in named if _MOUSE_ENSEMBL.match(name)]
    title = [name for name in named if _TITLE_CASE.match(name) and not _HUMAN_ORF.match(name)]
    if len(mouse_ids) * 2 > len(named):
        found, examples = "mouse Ensembl gene ids (ENSMUSG...)", mouse_ids[:3]
    elif len(title) >= 3 and len(title) * 2 > len(named):
        found = "written as mouse genes are (a capital, then lower case)"
        examples = title[:3]
    else:
        return
    share = max(len(mouse_ids), len(title))
    msg = (
        f"The gene names of {source} look like mouse genes: {share:,} of {len(named):,} are "
        f"{found}, e.g. {', '.join(examples)}. cd8exo analyses human data named by HGNC "
        "symbols (CD8A, GZMB): map mouse genes to their human orthologues first, or, if the "
        "data are human and only the case was changed, write the gene names in upper case."
    )
    raise InputError(msg)


def _map_ensembl(
    out: list[str], mapping: pd.DataFrame, is_ensembl: Sequence[bool], *, source: str
) -> None:
    rows = np.flatnonzero(is_ensembl)
    status = mapping["status"].to_numpy()[rows]
    for row in rows:
        out[row] = mapping["symbol"].iat[row]
    n_mapped = int((status == "ensembl").sum())
    unmapped = [out[row] for row in rows[status != "ensembl"]]
    logger.info(
        "%s: %d of %d Ensembl gene ids mapped to gene symbols through GENCODE v48 (%s)%s",
        source,
        n_mapped,
        len(rows),
        DEFAULT_ENSEMBL_TABLE.name,
        f"; {len(unmapped)} without a name there keep their id (e.g. {', '.join(unmapped[:5])})"
        if unmapped
        else "",
    )


def _rescue_excel(
    out: list[str],
    mapping: pd.DataFrame,
    is_excel: Sequence[bool],
    *,
    tables: SymbolTables,
    source: str,
) -> None:
    present = set(out)
    rescued, kept = [], []
    for row in np.flatnonzero(is_excel):
        name, symbol, status = mapping.iloc[row][["original", "symbol", "status"]]
        if status == "excel" and symbol not in present:
            out[row] = symbol
            rescued.append(f"{name}->{symbol}")
        elif status == "excel":
            kept.append(f"{name} ({symbol} is already a gene of the data)")
        elif status == "excel_unresolved":
            candidates = next(
                (tables.alias[key] for key in _lookup_keys(name) if key in tables.alias), ()
            )
            kept.append(f"{name} ({' or '.join(candidates) or 'no gene known'})")
    if rescued or kept:
        logger.warning(
            "%s: gene names that look like dates made by Excel (%d)%s%s",
            source,
            len(rescued) + len(kept),
            f"; renamed to the symbol they stand for: {', '.join(rescued)}" if rescued else "",
            f"; not resolvable to one gene, they keep their names: {', '.join(kept)}"
            if kept
            else "",
        )
