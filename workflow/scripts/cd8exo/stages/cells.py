"""Stages of the per-dataset path that work on cells (rules in ``envs/scanpy.yaml``).

prepare, filter, identify, score, random sets, aggregate; see :mod:`cd8exo.stages`.
"""

from __future__ import annotations

import copy
import dataclasses
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import anndata as ad
import pandas as pd

from cd8exo._utils import RNGLike
from cd8exo.cells import identity
from cd8exo.cells.embedding import umap_coordinates
from cd8exo.cells.harmonise import harmonise
from cd8exo.cells.identity.transfer import (
    MAX_GRAPH_CELLS,
    identify_large,
    stratified_subsample,
)
from cd8exo.cells.large import harmonise_10x, harmonise_h5ad
from cd8exo.cells.normalise import log_normalise
from cd8exo.cells.qc import filter_cells as qc_filter_cells
from cd8exo.cells.store import Cells, write_matrix
from cd8exo.genes import SymbolTables
from cd8exo.io.local import read_dataset
from cd8exo.patients.aggregate import (
    median_counts,
    patient_counts,
    receiver_expression,
    select_patients,
    sender_scores,
)
from cd8exo.patients.table import patient_table
from cd8exo.scoring.gene_sets import select_signatures
from cd8exo.scoring.prepare import PreparedSignatures, prepare_signatures, receiver_gene_sets
from cd8exo.scoring.random_sets import random_set_scores
from cd8exo.scoring.score import score_signatures

logger = logging.getLogger(__name__)

__all__ = [
    "Identified",
    "Scored",
    "aggregate",
    "embed",
    "filter_cells",
    "identify",
    "prepare",
    "prepare_file",
    "receiver_genes",
    "score",
    "score_random_sets",
]


def prepare(
    raw: ad.AnnData,
    *,
    dataset: str,
    patient_column: str,
    sample_column: str | None = None,
    cell_type_column: str | None = None,
    malignant_column: str | None = None,
    label_map: Mapping[str, str] | None = None,
    value_scale: str = "auto",
) -> ad.AnnData:
    """Rule ``prepare_dataset``: a local dataset harmonised onto the obs contract."""
    return harmonise(
        raw,
        dataset=dataset,
        patient_column=patient_column,
        sample_column=sample_column,
        cell_type_column=cell_type_column,
        malignant_column=malignant_column,
        label_map=label_map,
        value_scale=value_scale,
    )


def prepare_file(
    *,
    path: str,
    data_format: str,
    out: str,
    cell_table: str | None = None,
    cell_id_column: str | None = None,
    **harmonise_options,
) -> ad.AnnData:
    """Rule ``prepare_dataset``: read a local dataset, harmonise it, write the matrix file.

    An ``.h5ad`` of at least :data:`~cd8exo.cells.large.STREAM_MIN_CELLS` cells stored as
    CSR is harmonised block by block (:func:`~cd8exo.cells.large.harmonise_h5ad`), and so
    is a 10x Matrix Market folder of as many cells (:func:`~cd8exo.cells.large.harmonise_10x`,
    through a temporary CSR file); any other input is read and harmonised in memory
    (:func:`prepare`). ``harmonise_options`` are :func:`prepare`'s. Returns the harmonised AnnData (without ``X`` when streamed).
    """
    stream = {"h5ad": harmonise_h5ad, "10x_mtx": harmonise_10x}.get(data_format)
    if stream is not None:
        streamed = stream(
            path, out, cell_table=cell_table, cell_id_column=cell_id_column, **harmonise_options
        )
        if streamed is not None:
            return streamed
    raw = read_dataset(
        path=path, data_format=data_format, cell_table=cell_table, cell_id_column=cell_id_column
    )
    adata = prepare(raw, **harmonise_options)
    write_matrix(adata, out)
    return adata


def filter_cells(
    adata: ad.AnnData, *, min_genes: int, max_mito_fraction: float
) -> tuple[ad.AnnData, pd.DataFrame]:
    """Rule ``filter_cells``: QC, then ln(CP10k+1) of the kept cells (never twice).

    Returns
    -------
    The kept, log-normalised cells and the table of removed cells per patient and type.
    """
    kept, removed = qc_filter_cells(adata, min_genes=min_genes, max_mito_fraction=max_mito_fraction)
    if adata.n_obs and not kept.n_obs:
        # not an error: the dataset's association rows will say it could not be tested
        logger.warning(
            "QC removed all %d cells (qc.min_genes=%d of the data's %d genes, "
            "qc.max_mito_fraction=%g): nothing of this dataset can be tested",
            adata.n_obs,
            min_genes,
            adata.n_vars,
            max_mito_fraction,
        )
    return log_normalise(kept), removed


@dataclass(frozen=True)
class Identified:
    """What rule ``annotate_cells`` writes.

    Attributes
    ----------
    adata
        The input, annotated in place: identity labels in ``obs``,
        ``uns["cd8exo"]["identity"]``.
    result
        :class:`cd8exo.cells.identity.IdentityResult` (agreement, CNV profiles, ...).
    """

    adata: ad.AnnData
    result: identity.IdentityResult


def identify(
    adata: ad.AnnData | Cells,
    *,
    references: Mapping[str, pd.DataFrame],
    cancer_type: str | None = None,
    force_inference: bool = False,
    agreement: bool = True,
    rng: int = 0,
    resolution: float = 1.0,
    max_cells: int = MAX_GRAPH_CELLS,
) -> Identified:
    """Rule ``annotate_cells``: CD8 T-cell and malignant labels (author's where given).

    ``references`` are :func:`cd8exo.cells.identity.read_identity_references`' tables.
    An in-memory AnnData is labelled in place (``obs`` and ``uns``). :class:`Cells` on
    disk are loaded when there are at most ``max_cells`` of them; above that, the graph
    steps run on a stratified subsample whose calls are carried to the other cells
    (:func:`cd8exo.cells.identity.transfer.identify_large`). Either way the matrix is
    never copied.
    """
    kwargs = {
        **references,
        "cancer_type": cancer_type or None,
        "force_inference": force_inference,
        "agreement": agreement,
        "resolution": resolution,
    }
    if isinstance(adata, Cells) and adata.n_obs > max_cells:
        result = identify_large(adata, max_cells=max_cells, rng=rng, **kwargs)
    else:
        cells = adata.to_memory() if isinstance(adata, Cells) else adata
        result = identity.identify_cells(cells, rng=rng, **kwargs)
    uns = adata.uns if not isinstance(adata, Cells) else copy.deepcopy(adata.uns)
    uns["cd8exo"]["identity"] = {
        "author_labels": result.author_labels,
        "force_inference": force_inference,
    }
    obs = identity.annotated_obs(adata.obs, result.calls)
    if isinstance(adata, Cells):
        adata = dataclasses.replace(adata, obs=obs, uns=uns)
    else:
        adata.obs = obs
    return Identified(adata=adata, result=result)


def embed(
    adata: ad.AnnData | Cells,
    *,
    n_top_genes: int,
    n_pcs: int,
    n_neighbors: int,
    rng: int,
    max_cells: int = MAX_GRAPH_CELLS,
) -> pd.DataFrame:
    """Rule ``embed_cells``: UMAP coordinates for the figures.

    Above ``max_cells`` cells, of a stratified subsample of ``max_cells`` (per patient and
    cell type, seeded): a figure of a million points shows no more than one of 20,000.
    """
    if isinstance(adata, Cells):
        if adata.n_obs > max_cells:
            adata = adata[stratified_subsample(adata.obs, max_cells, rng=rng)]
            logger.info("UMAP of a stratified subsample of %d cells", adata.n_obs)
        adata = adata.to_memory()
    return umap_coordinates(
        adata, n_top_genes=n_top_genes, n_pcs=n_pcs, n_neighbors=n_neighbors, rng=rng
    )


def receiver_genes(targets: pd.DataFrame, extra_targets: Sequence[str] = ()) -> list[str]:
    """The target genes of the receiver side: the target table's, then the extras, once each."""
    return list(dict.fromkeys([*targets["gene"], *extra_targets]))


@dataclass(frozen=True)
class Scored:
    """What rule ``score_signatures`` writes: the prepared signatures and per-cell scores."""

    prepared: PreparedSignatures
    scores: pd.DataFrame


def score(
    adata: ad.AnnData,
    *,
    gene_sets: Mapping[str, Mapping[str, Sequence[str]]],
    include: Sequence[str] = (),
    targets: Sequence[str],
    programs: Sequence[Mapping[str, Sequence[str]]] = (),
    tables: SymbolTables | None,
    min_coverage: float,
    rng: RNGLike,
    scoring: Mapping[str, object],
) -> Scored:
    """Rule ``score_signatures``: signatures prepared for the dataset, scored in every cell.

    Parameters
    ----------
    gene_sets
        GMT path -> its sets (``signatures.gmt`` of the config).
    include
        Signatures to keep (``signatures.include``; empty keeps all).
    targets
        Receiver genes; they and the ``programs``' genes are removed from every signature
        (overlap guard).
    tables
        HGNC alias tables for symbol rescue (None: exact names only).
    scoring
        Keyword arguments of :func:`cd8exo.scoring.score.score_signatures` (``method``,
        ``n_bins``, ...), as ``scoring_options()`` of ``common.smk`` builds them.

    Returns
    -------
    :class:`Scored`; ``scores`` is indexed by cell with one column per signature plus
    ``patient`` and ``cell_type``.
    """
    prepared = prepare_signatures(
        select_signatures(gene_sets, include=include),
        adata.var_names,
        tables=tables,
        exclude=receiver_gene_sets(list(targets), programs=list(programs)),
        min_coverage=min_coverage,
    )
    scores = score_signatures(adata, prepared.signatures, rng=rng, **scoring)
    scores = scores.join(adata.obs[["patient", "cell_type"]])
    scores.index.name = "cell"
    return Scored(prepared=prepared, scores=scores)


def score_random_sets(
    adata: ad.AnnData,
    signatures: Mapping[str, Sequence[str]],
    *,
    n_sets: int,
    rng: RNGLike,
    scoring: Mapping[str, object],
) -> pd.DataFrame:
    """Rule ``score_random_sets``: per-patient scores of random sets matched to each
    prepared signature, scored exactly as the signatures (same ``scoring`` options)."""
    return random_set_scores(adata, signatures, n_sets=n_sets, rng=rng, **scoring)


def aggregate(
    adata: ad.AnnData,
    scores: pd.DataFrame,
    *,
    genes: Sequence[str],
    min_cd8_cells: int,
    min_malignant_cells: int,
    dataset: str,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Rule ``aggregate_patients``: the patient table and the excluded patients.

    Parameters
    ----------
    scores
        Per-cell scores as :func:`score` returns them (signature columns plus ``patient``
        and ``cell_type``).
    genes
        Receiver genes measured as malignant-cell pseudobulk.
    """
    counts = patient_counts(adata.obs).join(median_counts(adata))
    _, excluded = select_patients(
        counts, min_cd8_cells=min_cd8_cells, min_malignant_cells=min_malignant_cells
    )
    signatures = scores.columns.difference(["patient", "cell_type"], sort=False)
    table = patient_table(
        counts,
        sender_scores(scores[signatures], adata.obs),
        receiver_expression(adata, genes=list(genes)),
        excluded,
        dataset=dataset,
    )
    return table, excluded
