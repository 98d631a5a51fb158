"""Gene-signature scores per cell: honest gene matching, an overlap guard and four methods.

**Which genes are scored** (:func:`prepare_signatures`). A signature's genes are matched
to the data by name; a gene not found under its own name is looked up in the HGNC alias
table (:mod:`cd8exo.genes`): an alias or previous symbol that maps to exactly one current
symbol measured in the data is *rescued* (``SEPT7 -> SEPTIN7``), and a current symbol
that the data still carry under an old name is rescued the other way round. Ambiguous
aliases (one name, several current genes) and unknown names are *missing*. Every gene is
reported by name in the coverage table. Genes that are also tested on the receiver side
(target genes, tumour-side programmes) are then removed from each sender signature
(*overlap guard*), so that a sender score never contains the gene it is correlated with.
A signature is scored only when the genes left are at least ``min_coverage`` of its
genes; otherwise it is skipped for that dataset, with the reason in the coverage table
and the log, never silently scored from a handful of genes.

**Methods** (:func:`score_signatures`, ``method=``):

``tirosh`` (default)
    Mean expression of the signature's genes minus the mean of control genes drawn from
    the same expression bins (Tirosh I et al., Science 2016, doi:10.1126/science.aad0501;
    Satija R et al., Nat Biotechnol 2015): the algorithm of :func:`scanpy.tl.score_genes`,
    computed for all signatures at once as ``X @ W`` over chunks of cells.
``ucell``
    UCell's normalised Mann-Whitney U statistic on per-cell gene ranks capped at
    ``max_rank`` (Andreatta M & Carmona SJ, Comput Struct Biotechnol J 2021,
    doi:10.1016/j.csbj.2021.06.043), as in ``pyucell.compute_ucell_scores``
    (:func:`cd8exo.rank_scores.ucell_scores`).
``aucell``
    AUCell's area under the recovery curve of the signature's genes in the top ``n_up``
    genes of each cell (Aibar S et al., Nat Methods 2017, doi:10.1038/nmeth.4463), as in
    ``decoupler.mt.aucell`` (:func:`cd8exo.rank_scores.aucell_scores`).
``ssgsea``
    Single-sample GSEA (Barbie DA et al., Nature 2009) by :func:`gseapy.ssgsea` on each
    patient's CD8 T-cell pseudobulk (:mod:`cd8exo.ssgsea`): one score per patient.

No method ever densifies the expression matrix: cells are processed in chunks of about
:data:`CHUNK_VALUES` stored values.
"""

from __future__ import annotations

import itertools
import logging
import zlib
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import scipy.sparse as sp

if TYPE_CHECKING:
    from collections.abc import Iterator, Mapping, Sequence

    import anndata as ad

    from cd8exo.genes import SymbolTables

logger = logging.getLogger(__name__)

#: Stored values summed at a time by :func:`gene_means`.
_CHUNK_VALUES = 10_000_000

#: Stored values (non-zero entries) per chunk of cells in the scoring loops.
CHUNK_VALUES = 4_000_000

#: Scoring methods of :func:`score_signatures`.
METHODS: tuple[str, ...] = ("tirosh", "ucell", "aucell", "ssgsea")

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

__all__ = [
    "COVERAGE_COLUMNS",
    "METHODS",
    "OVERLAP_COLUMNS",
    "PreparedSignatures",
    "cell_chunks",
    "control_genes",
    "expression_bins",
    "gene_means",
    "prepare_signatures",
    "receiver_gene_sets",
    "score_matrix",
    "score_signatures",
    "signature_coverage",
    "signature_weights",
]


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
    from cd8exo.genes import map_symbols

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
    from cd8exo.genes import map_symbols

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
    :class:`PreparedSignatures`.

    Raises
    ------
    ValueError
        When ``min_coverage`` is outside [0, 1], or no signature is left to score; the
        message names every signature and why it was skipped (e.g. a single signature
        none of whose genes is in the data).
    """
    if not 0.0 <= min_coverage <= 1.0:
        msg = f"min_coverage must be between 0 and 1 (a fraction of the genes), got {min_coverage}."
        raise ValueError(msg)
    coverage = signature_coverage(var_names, signatures, tables=tables)
    lookup = _symbol_lookup(tables)
    sources: dict[str, list[str]] = {}
    for source, genes in (exclude or {}).items():
        for gene in dict.fromkeys(map(str, genes)):
            for key in {gene, lookup(gene)[0]}:
                sources.setdefault(key, []).append(str(source))
    overlap_rows = []
    kept: dict[str, list[str]] = {}
    for index, row in coverage.iterrows():
        name = row["signature"]
        genes = [g for g in row["genes_scored"].split(",") if g]
        removed = []
        for gene in genes:
            hits = sources.get(gene) or sources.get(lookup(gene)[0])
            if hits:
                removed.append(gene)
                overlap_rows.append(
                    {
                        "signature": name,
                        "gene": gene,
                        "overlaps_with": ",".join(dict.fromkeys(hits)),
                        "action": "removed from signature",
                    }
                )
        scored = [g for g in genes if g not in removed]
        if removed:
            logger.warning(
                "Signature %r: %d gene(s) also tested on the receiver side removed: %s",
                name,
                len(removed),
                ", ".join(removed),
            )
        n_genes = int(row["n_genes"])
        reason = ""
        if not scored and not genes:
            reason = f"none of its {n_genes} genes is in the data"
        elif not scored:
            reason = f"all {len(genes)} matched genes are receiver-side genes (overlap guard)"
        elif len(scored) / n_genes < min_coverage:
            reason = (
                f"only {len(scored)} of {n_genes} genes scored ({len(scored) / n_genes:.0%}): "
                f"{int(row['n_missing'])} missing, {len(removed)} removed by the overlap guard; "
                f"below signatures.min_coverage={min_coverage:g}"
            )
        coverage.loc[index, ["n_overlap", "n_scored"]] = [len(removed), len(scored)]
        coverage.loc[index, ["genes_overlap", "genes_scored"]] = [
            ",".join(removed),
            ",".join(scored),
        ]
        if reason:
            coverage.loc[index, ["status", "reason"]] = ["skipped", reason]
            logger.warning("Signature %r skipped: %s", name, reason)
        else:
            kept[name] = scored
            logger.info(
                "Signature %r: %d of %d genes scored (%d found, %d rescued by alias%s, "
                "%d missing%s, %d removed by the overlap guard)",
                name,
                len(scored),
                n_genes,
                int(row["n_found"]),
                int(row["n_rescued"]),
                f": {row['genes_rescued']}" if row["genes_rescued"] else "",
                int(row["n_missing"]),
                f": {row['genes_missing']}" if row["genes_missing"] else "",
                len(removed),
            )
    if not kept:
        reasons = "; ".join(f"{r.signature!r}: {r.reason}" for r in coverage.itertuples())
        msg = (
            f"No signature can be scored in this dataset ({len(list(var_names))} genes): "
            f"{reasons or 'no signatures given'}. Check the gene symbols (human HGNC, not "
            "mouse or Ensembl ids), the GMT files, or lower signatures.min_coverage."
        )
        raise ValueError(msg)
    overlap = pd.DataFrame(overlap_rows, columns=list(OVERLAP_COLUMNS))
    coverage = coverage.astype({"n_overlap": int, "n_scored": int})
    return PreparedSignatures(signatures=kept, coverage=coverage, overlap=overlap)


# --------------------------------------------------------------------------- #
# Shared helpers
# --------------------------------------------------------------------------- #
def gene_means(x: np.ndarray | sp.spmatrix | sp.sparray) -> np.ndarray:
    """Mean of every gene (column) over all cells, in float64, without densifying."""
    if sp.issparse(x):
        if x.format != "csr":
            x = sp.csr_matrix(x)
        sums = np.zeros(x.shape[1])
        # Chunks of stored values bound the float64 temporaries on large data.
        for start in range(0, x.data.size, _CHUNK_VALUES):
            stop = start + _CHUNK_VALUES
            sums += np.bincount(
                x.indices[start:stop],
                weights=x.data[start:stop].astype(np.float64),
                minlength=x.shape[1],
            )
        return sums / x.shape[0]
    return np.mean(x, axis=0, dtype=np.float64)


def cell_chunks(
    x, *, chunk_size: int | None = None, max_values: int = CHUNK_VALUES
) -> Iterator[tuple[int, int, sp.csr_matrix]]:
    """Yield ``(start, stop, chunk)``: consecutive blocks of cells as CSR matrices.

    Sparse input is sliced without copying its values (the chunk shares ``data`` and
    ``indices`` with ``x``); dense input is converted one block at a time. A block holds
    ``chunk_size`` cells, or, when it is ``None``, about ``max_values`` stored values.
    """
    if sp.issparse(x) and x.format != "csr":
        x = sp.csr_matrix(x)
    n_cells = x.shape[0]
    if chunk_size is not None and chunk_size < 1:
        msg = f"chunk_size must be a positive number of cells, got {chunk_size}."
        raise ValueError(msg)
    if sp.issparse(x):
        indptr = np.asarray(x.indptr, dtype=np.int64)
        if chunk_size is None:
            # Cut where the running number of stored values passes multiples of max_values.
            cuts = np.searchsorted(indptr, np.arange(max_values, indptr[-1], max_values))
            bounds = np.unique(np.concatenate([[0], cuts, [n_cells]]))
        else:
            bounds = np.unique(np.concatenate([np.arange(0, n_cells, chunk_size), [n_cells]]))
        for start, stop in itertools.pairwise(bounds):
            first, last = indptr[start], indptr[stop]
            chunk = sp.csr_matrix(
                (x.data[first:last], x.indices[first:last], indptr[start : stop + 1] - first),
                shape=(int(stop - start), x.shape[1]),
                copy=False,
            )
            yield int(start), int(stop), chunk
        return
    step = chunk_size or max(1, max_values // max(1, x.shape[1]))
    for start in range(0, n_cells, step):
        stop = min(start + step, n_cells)
        yield start, stop, sp.csr_matrix(np.asarray(x[start:stop]))


# --------------------------------------------------------------------------- #
# Tirosh / scanpy.tl.score_genes
# --------------------------------------------------------------------------- #
def expression_bins(means: np.ndarray, *, n_bins: int = 25) -> np.ndarray:
    """Expression bin of every gene, exactly as :func:`scanpy.tl.score_genes` cuts them.

    Genes are ranked by mean expression (ties get the lowest rank) and the rank is
    floor-divided by ``round(n_genes / (n_bins - 1))``, which gives about ``n_bins``
    bins of equal size.

    Parameters
    ----------
    means
        Mean expression per gene (finite).
    n_bins
        Number of bins (at least 2).

    Returns
    -------
    Integer bin per gene.
    """
    if n_bins < 2:
        msg = f"n_bins must be at least 2, got {n_bins}."
        raise ValueError(msg)
    n_items = int(np.round(len(means) / (n_bins - 1)))
    if n_items < 1:
        msg = (
            f"Too few genes ({len(means)}) for n_bins={n_bins}; use fewer bins "
            f"(at most {2 * len(means)})."
        )
        raise ValueError(msg)
    ranks = pd.Series(means).rank(method="min").to_numpy()
    return (ranks // n_items).astype(np.int64)


def control_genes(
    var_names: Sequence[str],
    means: np.ndarray,
    signatures: Mapping[str, Sequence[str]],
    *,
    rng: int | np.random.Generator | np.random.SeedSequence | None,
    n_bins: int = 25,
    ctrl_size: int = 50,
) -> dict[str, list[str]]:
    """Draw the control genes of each signature.

    For every expression bin (see :func:`expression_bins`) that holds a gene of the
    signature, ``ctrl_size`` genes are drawn without replacement from the bin's genes
    that are not in the signature (all of them when the bin has fewer); the controls
    are the union over bins. Each signature draws from its own generator, seeded by
    ``rng`` and the signature's name, so adding or dropping a signature does not change
    the controls of the others.

    Parameters
    ----------
    var_names
        Gene symbols (unique), in the order of ``means``.
    means
        Mean expression per gene over all cells (:func:`gene_means`).
    signatures
        Signature name -> genes; genes not in ``var_names`` are ignored.
    rng
        Seed or generator (:func:`numpy.random.default_rng`).
    n_bins, ctrl_size
        As in :func:`scanpy.tl.score_genes`.

    Returns
    -------
    Signature -> control genes, in ``var_names`` order.
    """
    names = pd.Index(list(map(str, var_names)))
    means = np.asarray(means, dtype=np.float64)
    if not np.all(np.isfinite(means)):
        msg = "Gene means contain NaN/inf; the expression matrix must be finite."
        raise ValueError(msg)
    bins = expression_bins(means, n_bins=n_bins)
    base_seed = int(np.random.default_rng(rng).integers(2**63))
    chosen: dict[str, list[str]] = {}
    for signature, genes in signatures.items():
        positions = names.get_indexer(list(dict.fromkeys(genes)))
        positions = positions[positions >= 0]
        in_signature = np.zeros(len(names), dtype=bool)
        in_signature[positions] = True
        generator = np.random.default_rng([base_seed, zlib.crc32(signature.encode("utf-8"))])
        picked: list[np.ndarray] = []
        for cut in np.unique(bins[positions]):
            candidates = np.flatnonzero((bins == cut) & ~in_signature)
            if len(candidates) == 0:
                logger.warning(
                    "Signature %r: no control genes in expression bin %d", signature, cut
                )
                continue
            if len(candidates) > ctrl_size:
                candidates = generator.choice(candidates, size=ctrl_size, replace=False)
            picked.append(candidates)
        positions_ctrl = np.unique(np.concatenate(picked)) if picked else np.array([], int)
        chosen[signature] = names[positions_ctrl].tolist()
    return chosen


def signature_weights(
    var_names: Sequence[str],
    signatures: Mapping[str, Sequence[str]],
    controls: Mapping[str, Sequence[str]],
) -> sp.csc_matrix:
    """Genes x signatures weights: ``+1/n`` on signature genes, ``-1/m`` on controls.

    ``X @ W`` is then mean(signature genes) - mean(control genes) for every cell.
    """
    names = pd.Index(list(map(str, var_names)))
    rows, cols, values = [], [], []
    for j, signature in enumerate(signatures):
        plus = names.get_indexer(list(dict.fromkeys(signatures[signature])))
        plus = plus[plus >= 0]
        minus = names.get_indexer(list(controls[signature]))
        if len(plus) == 0 or len(minus) == 0 or (minus < 0).any():
            msg = f"Signature {signature!r}: no genes, or control genes missing from the data."
            raise ValueError(msg)
        rows += [plus, minus]
        cols += [np.full(len(plus), j), np.full(len(minus), j)]
        values += [np.full(len(plus), 1.0 / len(plus)), np.full(len(minus), -1.0 / len(minus))]
    return sp.csc_matrix(
        (np.concatenate(values), (np.concatenate(rows), np.concatenate(cols))),
        shape=(len(names), len(signatures)),
    )


def tirosh_scores(
    x,
    var_names: Sequence[str],
    signatures: Mapping[str, Sequence[str]],
    *,
    rng: int | np.random.Generator | np.random.SeedSequence | None,
    n_bins: int = 25,
    ctrl_size: int = 50,
    controls: Mapping[str, Sequence[str]] | None = None,
    chunk_size: int | None = None,
) -> np.ndarray:
    """Tirosh scores of a cells x genes matrix (see :func:`score_signatures`).

    ``controls`` (signature -> control genes) replaces the random draw, e.g. to give two
    implementations the same control genes. Returns cells x signatures, float64.
    """
    if controls is None:
        controls = control_genes(
            var_names, gene_means(x), signatures, rng=rng, n_bins=n_bins, ctrl_size=ctrl_size
        )
    no_controls = [s for s in signatures if not controls.get(s)]
    if no_controls:
        msg = (
            f"Signature(s) {no_controls} found no control genes; the data have too few genes "
            f"({len(var_names)}) for n_bins={n_bins}."
        )
        raise ValueError(msg)
    for signature in signatures:
        logger.debug("Signature %r: %d control genes", signature, len(controls[signature]))
    weights = signature_weights(var_names, signatures, controls)
    # csr x dense costs ~ stored values x signatures, csr x sparse ~ stored values x
    # (non-zeros per row of W) with a larger constant: dense W for a few signatures or
    # a dense W (whole-bin controls), sparse W for many sets (e.g. 200 random sets).
    n_sets = len(signatures)
    if n_sets <= 32 or weights.nnz / max(1, weights.shape[0]) >= n_sets / 3:
        weights = weights.toarray()
    else:
        weights = weights.tocsr()
    out = np.empty((x.shape[0], n_sets), dtype=np.float64)
    for start, stop, chunk in cell_chunks(x, chunk_size=chunk_size):
        chunk64 = sp.csr_matrix(
            (chunk.data.astype(np.float64), chunk.indices, chunk.indptr), shape=chunk.shape
        )
        product = chunk64 @ weights
        out[start:stop] = product.toarray() if sp.issparse(product) else product
    return out


# --------------------------------------------------------------------------- #
# All methods
# --------------------------------------------------------------------------- #
def score_matrix(
    x,
    var_names: Sequence[str],
    signatures: Mapping[str, Sequence[str]],
    *,
    method: str = "tirosh",
    rng: int | np.random.Generator | np.random.SeedSequence | None = None,
    n_bins: int = 25,
    ctrl_size: int = 50,
    max_rank: int = 1500,
    n_up: int | None = None,
    aucell_ties: str = "mean",
    chunk_size: int | None = None,
) -> np.ndarray:
    """Per-cell scores of a cells x genes matrix (sparse or dense) by a per-cell method.

    The matrix-level core of :func:`score_signatures` (``method`` ``tirosh``, ``ucell``
    or ``aucell``; its parameters are described there). It imports neither AnnData nor
    scanpy. Returns cells x signatures, float64, in the order of ``signatures``.
    """
    if method == "tirosh":
        return tirosh_scores(
            x,
            var_names,
            signatures,
            rng=rng,
            n_bins=n_bins,
            ctrl_size=ctrl_size,
            chunk_size=chunk_size,
        )
    if method == "ucell":
        from cd8exo.rank_scores import ucell_scores

        return ucell_scores(x, var_names, signatures, max_rank=max_rank, chunk_size=chunk_size)
    if method == "aucell":
        from cd8exo.rank_scores import aucell_scores

        return aucell_scores(
            x, var_names, signatures, n_up=n_up, ties=aucell_ties, chunk_size=chunk_size
        )
    msg = (
        f"Unknown per-cell scoring method {method!r}; use one of 'tirosh', 'ucell', 'aucell' "
        "('ssgsea' scores patients: see score_signatures)."
    )
    raise ValueError(msg)


def score_signatures(
    adata: ad.AnnData,
    signatures: Mapping[str, Sequence[str]],
    *,
    rng: int | np.random.Generator | np.random.SeedSequence | None,
    method: str = "tirosh",
    n_bins: int = 25,
    ctrl_size: int = 50,
    max_rank: int = 1500,
    n_up: int | None = None,
    aucell_ties: str = "mean",
    chunk_size: int | None = None,
) -> pd.DataFrame:
    """Score every cell for every signature.

    Parameters
    ----------
    adata
        Log-normalised AnnData (``uns["cd8exo"]["log_normalised"]``); ``X`` is used.
        ``method="ssgsea"`` also needs ``obs["patient"]`` and ``obs["cell_type"]``.
    signatures
        Signature name -> gene symbols as in ``adata.var_names`` (see
        :func:`prepare_signatures`). Genes missing from the data are logged by name and
        ignored.
    rng
        Seed or generator for everything random (the Tirosh control genes; the ssGSEA
        seed). UCell and AUCell are deterministic.
    method
        One of :data:`METHODS` (module docstring).
    n_bins, ctrl_size
        Tirosh: number of expression bins; control genes drawn per bin.
    max_rank
        UCell: ranks beyond ``max_rank`` count as ``max_rank`` (UCell's ``maxRank``).
    n_up
        AUCell: the recovery curve runs over the top ``n_up`` genes of each cell (AUCell's
        ``aucMaxRank``); ``None`` takes 5% of the genes detected in any cell, rounded up
        (decoupler's default).
    aucell_ties
        AUCell: ``"mean"`` (default) gives the exact mean AUC over random orders of tied
        values, ``"order"`` breaks ties by gene (column) order like decoupler's ordinal
        ranks (see :func:`cd8exo.rank_scores.aucell_scores`).
    chunk_size
        Cells per chunk; ``None`` sizes chunks to about :data:`CHUNK_VALUES` stored values.

    Returns
    -------
    Cells (``adata.obs_names``) x signatures, float64. Per-cell methods do not depend on
    whether ``X`` is dense or sparse, nor on the order of the cells or genes. For
    ``ssgsea`` every CD8 T cell carries its patient's score and all other cells NaN, so
    that the per-patient CD8 T-cell mean is the patient's ssGSEA score.

    Raises
    ------
    ValueError
        When some signatures have no gene in the data (all are named: prepare them
        first with :func:`prepare_signatures`), a signature finds no control genes, or
        the method is unknown.

    Notes
    -----
    Tirosh differs from scanpy only in how the controls are drawn: from the bin without
    the signature's genes (scanpy >= 2.0 behaviour, ``ctrl_as_ref=False``), with random
    numbers from :func:`numpy.random.default_rng` per signature, so the control genes,
    not the method, differ from scanpy's for a given seed.
    """
    if method not in METHODS:
        msg = f"Unknown scoring method {method!r}; use one of {', '.join(METHODS)}."
        raise ValueError(msg)
    info = adata.uns.get("cd8exo", {})
    if isinstance(info, dict) and info and not info.get("log_normalised", False):
        logger.warning(
            "Scoring dataset %r whose values are not flagged log-normalised; scores assume "
            "log-scaled X",
            info.get("dataset"),
        )
    coverage = signature_coverage(adata.var_names, signatures)
    empty = coverage.loc[coverage["n_scored"] == 0, "signature"].tolist()
    if empty:
        msg = (
            f"Signature(s) {empty} have no genes in the data ({adata.n_vars} genes); drop them "
            "before scoring (see prepare_signatures) or check the gene symbols (HGNC, "
            "species)."
        )
        raise ValueError(msg)
    for row in coverage.itertuples():
        if row.n_missing:
            logger.warning(
                "Signature %r: %d of %d genes not in the data and ignored: %s",
                row.signature,
                row.n_missing,
                row.n_genes,
                row.genes_missing,
            )
    if method == "ssgsea":
        from cd8exo.ssgsea import ssgsea_cell_scores

        return ssgsea_cell_scores(adata, signatures, rng=rng)
    scores = score_matrix(
        adata.X,
        adata.var_names,
        signatures,
        method=method,
        rng=rng,
        n_bins=n_bins,
        ctrl_size=ctrl_size,
        max_rank=max_rank,
        n_up=n_up,
        aucell_ties=aucell_ties,
        chunk_size=chunk_size,
    )
    return pd.DataFrame(scores, index=adata.obs_names.copy(), columns=list(signatures))
