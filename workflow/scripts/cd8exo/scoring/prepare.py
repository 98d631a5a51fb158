"""Signatures prepared for one dataset: symbol matching with alias rescue, coverage, the overlap guard."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, NamedTuple

import numpy as np
import pandas as pd

from cd8exo.genes import map_symbols

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping, Sequence

    from cd8exo.genes import SymbolTables
logger = logging.getLogger(__name__)

__all__ = [
    "COVERAGE_COLUMNS",
    "OVERLAP_COLUMNS",
    "PreparedSignatures",
    "prepare_signatures",
    "receiver_gene_sets",
    "signature_coverage",
]

#: Columns of the coverage table (:func:`signature_coverage`, :func:`prepare_signatures`).
COVERAGE_COLUMNS: tuple[str, ...] = (
    "signature",
    "status",
    "reason",
    "n_genes",
    "n_found",
    "n_rescued",
    "n_missing",
    "coverage",
    "n_overlap",
    "n_scored",
    "genes_found",
    "genes_rescued",
    "genes_missing",
    "genes_overlap",
    "genes_scored",
)


#: Columns of the overlap table (:func:`prepare_signatures`).
OVERLAP_COLUMNS: tuple[str, ...] = ("signature", "gene", "overlaps_with", "action")


# --------------------------------------------------------------------------- #
# Gene matching, coverage and the overlap guard
# --------------------------------------------------------------------------- #
@dataclass(frozen=True)
class PreparedSignatures:
    """The signatures to score in one dataset, and how they were obtained.

    Attributes
    ----------
    signatures
        Signature name -> gene names *as in the data*, for the signatures that are
        scored (status ``scored``), in the order given.
    coverage
        One row per input signature (:data:`COVERAGE_COLUMNS`): genes found under their
        own name, rescued through an alias (``alias->symbol``), missing, removed by the
        overlap guard and scored, by name; ``status`` is ``scored`` or ``skipped`` and
        ``reason`` says why a signature was skipped.
    overlap
        One row per gene removed from a signature by the overlap guard
        (:data:`OVERLAP_COLUMNS`); empty when nothing overlapped.
    """

    signatures: dict[str, list[str]]
    coverage: pd.DataFrame
    overlap: pd.DataFrame


def _symbol_lookup(tables: SymbolTables | None):
    """Name -> (current symbol, status); identity when there are no tables."""
    if tables is None:
        return lambda name: (name, "approved")

    cache: dict[str, tuple[str, str]] = {}

    def lookup(name: str) -> tuple[str, str]:
        if name not in cache:
            # one name at a time: an ambiguous alias is never resolved by its neighbours
            row = map_symbols([name], tables=tables).iloc[0]
            cache[name] = (str(row["symbol"]), str(row["status"]))
        return cache[name]

    return lookup


def _data_symbols(var_names: Sequence[str], tables: SymbolTables | None) -> dict[str, str]:
    """Current symbol -> data name, for data names that are not current symbols."""
    if tables is None:
        return {}

    names = list(map(str, var_names))
    present = set(names)
    mapping = map_symbols(names, tables=tables)
    renamed = mapping[(mapping["symbol"] != mapping["original"]) & ~mapping["symbol"].isin(present)]
    out: dict[str, str] = {}
    for original, symbol in zip(renamed["original"], renamed["symbol"], strict=True):
        out.setdefault(str(symbol), str(original))
    return out


def signature_coverage(
    var_names: Sequence[str],
    signatures: Mapping[str, Sequence[str]],
    *,
    tables: SymbolTables | None = None,
) -> pd.DataFrame:
    """How many genes of each signature the data contain, by name, with alias rescue.

    Parameters
    ----------
    var_names
        Gene symbols of the data.
    signatures
        Signature name -> gene symbols (a gene listed twice counts once).
    tables
        HGNC lookup tables (:func:`cd8exo.genes.load_symbol_tables`) for the alias rescue;
        ``None`` matches names exactly.

    Returns
    -------
    One row per signature with the columns of :data:`COVERAGE_COLUMNS`: ``n_found``
    genes present under their own name, ``n_rescued`` present under another name
    (``genes_rescued`` lists ``name->data name``), ``n_missing`` absent (including
    ambiguous aliases), ``coverage = (n_found + n_rescued) / n_genes``. Before the
    overlap guard and the minimum coverage, ``status`` is ``scored``, ``n_overlap`` 0 and
    ``genes_scored`` the matched data names.
    """
    present = set(map(str, var_names))
    lookup = _symbol_lookup(tables)
    renamed_in_data = _data_symbols(var_names, tables)
    rows = []
    for name, genes in signatures.items():
        unique = list(dict.fromkeys(map(str, genes)))
        found, rescued, missing, scored = [], [], [], []
        for gene in unique:
            if gene in present:
                found.append(gene)
                scored.append(gene)
                continue
            symbol, status = lookup(gene)
            target = None
            if status in ("approved", "alias", "excel", "ensembl"):
                if symbol in present:
                    target = symbol
                elif symbol in renamed_in_data:
                    target = renamed_in_data[symbol]
            if target is None:
                missing.append(gene)
                if status == "ambiguous":
                    logger.info(
                        "Signature %r: %s is an alias of several genes; not matched", name, gene
                    )
                continue
            rescued.append(f"{gene}->{target}")
            scored.append(target)
        scored = list(dict.fromkeys(scored))
        if len(scored) < len(found) + len(rescued):
            logger.info(
                "Signature %r lists the same gene under two names (%s); it is scored once",
                name,
                ", ".join(rescued),
            )
        n_genes = len(unique)
        rows.append(
            {
                "signature": name,
                "status": "scored",
                "reason": "",
                "n_genes": n_genes,
                "n_found": len(found),
                "n_rescued": len(rescued),
                "n_missing": len(missing),
                "coverage": (len(found) + len(rescued)) / n_genes if n_genes else np.nan,
                "n_overlap": 0,
                "n_scored": len(scored),
                "genes_found": ",".join(found),
                "genes_rescued": ",".join(rescued),
                "genes_missing": ",".join(missing),
                "genes_overlap": "",
                "genes_scored": ",".join(scored),
            }
        )
    return pd.DataFrame(rows, columns=list(COVERAGE_COLUMNS))


def receiver_gene_sets(
    targets: Sequence[str], *, programs: Sequence[Mapping[str, Sequence[str]]] = ()
) -> dict[str, list[str]]:
    """The receiver-side gene sets of the overlap guard (``exclude`` of
    :func:`prepare_signatures`).

    Parameters
    ----------
    targets
        The tested target genes (the target table's ``gene`` column and extra targets).
    programs
        Collections (name -> genes, e.g. read from GMT files) of tumour-side programmes.

    Returns
    -------
    ``{"target": targets, <programme>: genes, ...}``.

    Raises
    ------
    ValueError
        When a programme is called ``target`` or two collections define the same name.
    """
    sets: dict[str, list[str]] = {"target": list(dict.fromkeys(map(str, targets)))}
    for collection in programs:
        for name, genes in collection.items():
            if name in sets:
                msg = (
                    f"Receiver-side gene set {name!r} is defined twice (or is called 'target') "
                    "in signatures.overlap_gmt; give every programme a unique name."
                )
                raise ValueError(msg)
            sets[str(name)] = list(genes)
    return sets


class _Guarded(NamedTuple):
    """A signature after the overlap guard: its matched genes, those removed, those scored."""

    genes: list[str]
    removed: list[str]
    scored: list[str]


def _receiver_sources(
    exclude: Mapping[str, Sequence[str]] | None, *, lookup: Callable[[str], tuple[str, str]]
) -> dict[str, list[str]]:
    """Gene (as given and as its current symbol) -> the receiver-side sets that hold it."""
    sources: dict[str, list[str]] = {}
    for source, genes in (exclude or {}).items():
        for gene in dict.fromkeys(map(str, genes)):
            for key in {gene, lookup(gene)[0]}:
                sources.setdefault(key, []).append(str(source))
    return sources


def _overlap_guard(
    name: str,
    genes: list[str],
    *,
    sources: Mapping[str, list[str]],
    lookup: Callable[[str], tuple[str, str]],
) -> tuple[_Guarded, list[dict[str, str]]]:
    """Remove a signature's genes that are receiver-side genes; the overlap table's rows."""
    removed = []
    rows = []
    for gene in genes:
        hits = sources.get(gene) or sources.get(lookup(gene)[0])
        if hits:
            removed.append(gene)
            rows.append(
                {
                    "signature": name,
                    "gene": gene,
                    "overlaps_with": ",".join(dict.fromkeys(hits)),
                    "action": "removed from signature",
                }
            )
    scored = [g for g in genes if g not in removed]
    if removed:
        # the sets on the other side: targets and programmes for a sender signature, the
        # sender signatures for a receiver target set
        other = dict.fromkeys(source for row in rows for source in row["overlaps_with"].split(","))
        logger.warning(
            "Signature %r: %d gene(s) removed by the overlap guard (also in %s): %s",
            name,
            len(removed),
            ", ".join(other),
            ", ".join(removed),
        )
    return _Guarded(genes, removed, scored), rows


def _skip_reason(row: pd.Series, guarded: _Guarded, *, min_coverage: float) -> str:
    """Why a signature is not scored; ``""`` when it is."""
    genes, removed, scored = guarded
    n_genes = int(row["n_genes"])
    if not scored and not genes:
        return f"none of its {n_genes} genes is in the data"
    if not scored:
        return f"all {len(genes)} matched genes are receiver-side genes (overlap guard)"
    if len(scored) / n_genes < min_coverage:
        return (
            f"only {len(scored)} of {n_genes} genes scored ({len(scored) / n_genes:.0%}): "
            f"{int(row['n_missing'])} missing, {len(removed)} removed by the overlap guard; "
            f"below signatures.min_coverage={min_coverage:g}"
        )
    return ""


def _log_scored(row: pd.Series, guarded: _Guarded) -> None:
    """Log how a scored signature's genes were found, rescued, missed or removed."""
    logger.info(
        "Signature %r: %d of %d genes scored (%d found, %d rescued by alias%s, "
        "%d missing%s, %d removed by the overlap guard)",
        row["signature"],
        len(guarded.scored),
        int(row["n_genes"]),
        int(row["n_found"]),
        int(row["n_rescued"]),
        f": {row['genes_rescued']}" if row["genes_rescued"] else "",
        int(row["n_missing"]),
        f": {row['genes_missing']}" if row["genes_missing"] else "",
        len(guarded.removed),
    )


def prepare_signatures(
    signatures: Mapping[str, Sequence[str]],
    var_names: Sequence[str],
    *,
    tables: SymbolTables | None = None,
    exclude: Mapping[str, Sequence[str]] | None = None,
    min_coverage: float = 0.5,
) -> PreparedSignatures:
    """Match signatures to the data, remove receiver-side genes, skip poorly covered ones.

    Steps (module docstring): match every gene by name or alias
    (:func:`signature_coverage`); remove from each signature the genes that are in any
    set of ``exclude`` (the overlap guard: target genes and tumour-side programmes, which
    are correlated with the sender score later); keep a signature only when the genes
    left are at least ``min_coverage`` of its genes.

    Parameters
    ----------
    signatures
        Signature name -> gene symbols.
    var_names
        Gene names of the data.
    tables
        HGNC lookup tables for the alias rescue (also applied to the ``exclude`` genes);
        ``None`` matches names exactly.
    exclude
        Receiver-side gene sets, name -> genes (e.g. ``{"target": [...], "HALLMARK_EMT":
        [...]}``). A sender gene in any of them is removed from the signature, once,
        before scoring: the signature is scored without every receiver gene it contains
        (not only the one tested), which is the conservative choice.
    min_coverage
        Minimum fraction (0-1) of a signature's genes that must be scored, after the
        overlap guard. Below it the signature is skipped (``status`` ``skipped``).

    Returns
    -------
    :class:`PreparedSignatures`. When no signature is left to score, ``signatures`` is
    empty and a warning names every signature and why it was skipped (the dataset is
    then not testable, and its association rows say why).

    Raises
    ------
    ValueError
        When ``min_coverage`` is outside [0, 1].
    """
    if not 0.0 <= min_coverage <= 1.0:
        msg = f"min_coverage must be between 0 and 1 (a fraction of the genes), got {min_coverage}."
        raise ValueError(msg)
    coverage = signature_coverage(var_names, signatures, tables=tables)
    lookup = _symbol_lookup(tables)
    sources = _receiver_sources(exclude, lookup=lookup)
    overlap_rows = []
    kept: dict[str, list[str]] = {}
    for index, row in coverage.iterrows():
        name = row["signature"]
        genes = [g for g in row["genes_scored"].split(",") if g]
        guarded, rows = _overlap_guard(name, genes, sources=sources, lookup=lookup)
        overlap_rows.extend(rows)
        reason = _skip_reason(row, guarded, min_coverage=min_coverage)
        coverage.loc[index, ["n_overlap", "n_scored"]] = [
            len(guarded.removed),
            len(guarded.scored),
        ]
        coverage.loc[index, ["genes_overlap", "genes_scored"]] = [
            ",".join(guarded.removed),
            ",".join(guarded.scored),
        ]
        if reason:
            coverage.loc[index, ["status", "reason"]] = ["skipped", reason]
            logger.warning("Signature %r skipped: %s", name, reason)
        else:
            kept[name] = guarded.scored
            _log_scored(row, guarded)
    if not kept:
        # not an error: the dataset is not testable, and its association rows say why
        reasons = "; ".join(f"{r.signature!r}: {r.reason}" for r in coverage.itertuples())
        logger.warning(
            "No signature can be scored in this dataset (%d genes): %s. Check the gene "
            "symbols (human HGNC, not mouse or Ensembl ids), the GMT files, or lower "
            "signatures.min_coverage.",
            len(list(var_names)),
            reasons or "no signatures given",
        )
    overlap = pd.DataFrame(overlap_rows, columns=list(OVERLAP_COLUMNS))
    coverage = coverage.astype({"n_overlap": int, "n_scored": int})
    return PreparedSignatures(signatures=kept, coverage=coverage, overlap=overlap)
