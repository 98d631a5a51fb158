"""Cell identity of a dataset: authors' labels where present, inferred CD8 T and malignant calls for the rest.

The step's reference tables and per-cell outputs are in :mod:`cd8exo.cells.identity.tables`
(re-exported here).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import NamedTuple

import anndata as ad
import numpy as np
import pandas as pd

from cd8exo._utils import RNGLike, as_rng
from cd8exo.cells.identity.agreement import _agreement_rows, _label_flags, author_label_flags
from cd8exo.cells.identity.cd8 import call_cd8
from cd8exo.cells.identity.cnv import CNVResult
from cd8exo.cells.identity.graph import MIN_GRAPH_CELLS, embed_cells
from cd8exo.cells.identity.malignant import call_malignant
from cd8exo.cells.identity.tables import (
    IDENTITY_COLUMNS,
    annotated_obs,
    identity_table,
    read_identity_references,
)
from cd8exo.vocabulary import CELL_TYPES

logger = logging.getLogger(__name__)

__all__ = [
    "IDENTITY_COLUMNS",
    "IdentityResult",
    "annotate_identity",
    "annotated_obs",
    "identify_cells",
    "identity_table",
    "read_identity_references",
]


def annotate_identity(
    adata: ad.AnnData,
    *,
    author_labels_present: bool | Mapping[str, bool],
    force_inference: bool = False,
    cd8_markers: pd.DataFrame | None = None,
    lineage_markers: pd.DataFrame | None = None,
    gene_positions: pd.DataFrame | None = None,
    cancer_type: str | None = None,
    reference_mask: np.ndarray | pd.Series | None = None,
    rng: RNGLike = 0,
    resolution: float = 1.0,
    return_cnv: bool = False,
    cd8_kwargs: Mapping[str, object] | None = None,
    malignant_kwargs: Mapping[str, object] | None = None,
) -> pd.DataFrame | tuple[pd.DataFrame, CNVResult | None]:
    """CD8 T-cell and malignant labels for every cell, from the authors or inferred.

    Author labels win when present: ``obs["cell_type"] == "CD8_T"`` for CD8 T cells and
    ``obs["malignant"]`` for malignant cells. ``force_inference`` ignores them (to
    validate the inference against them). Whatever is not given by the authors is
    inferred with :func:`call_cd8` and :func:`call_malignant`, which share one kNN
    graph (:func:`embed_cells`).

    Parameters
    ----------
    adata
        Contract AnnData; not modified.
    author_labels_present
        Whether the authors' labels can be used: one bool for both, or a mapping with
        keys ``"cd8"`` and ``"malignant"`` (e.g. GSE72056 has malignant labels but does not
        split T cells into CD8 and CD4).
    force_inference
        Infer both labels even when the authors' are present.
    cd8_markers
        Table for :func:`call_cd8` (needed when CD8 T cells are inferred).
    lineage_markers, gene_positions, cancer_type, reference_mask
        For :func:`call_malignant` (``gene_positions`` and ``lineage_markers`` or
        ``reference_mask`` needed when malignant cells are inferred).
    rng
        Generator or seed for every random step.
    resolution
        Leiden resolution of the shared clustering.
    return_cnv
        Also return the copy-number profiles (None when malignant labels are the authors').
    cd8_kwargs, malignant_kwargs
        Further keyword arguments of :func:`call_cd8` and :func:`call_malignant`.

    Returns
    -------
    One row per cell: ``cell_type`` (the contract vocabulary, with ``CD8_T`` and
    ``malignant`` set from the labels used; a cell that lost an author's ``CD8_T`` or
    ``malignant`` label under forced inference becomes ``other``), ``is_cd8``,
    ``is_malignant``, ``label_source`` ("author" when every label used is the authors',
    else "inferred"), ``label_source_cd8``, ``label_source_malignant``, ``confidence``
    (the lower of the two; author labels have confidence 1), ``confidence_cd8``,
    ``confidence_malignant``, and the inference columns ``cd8_score``, ``cnv_score``,
    ``cnv_cluster``, ``lineage_score`` (NaN/"" where not inferred).
    """
    flags = _label_flags(author_labels_present)
    use_author = {k: v and not force_inference for k, v in flags.items()}
    gen = as_rng(rng)
    _check_author_columns(adata.obs, use_author=use_author)
    embedding = None
    too_few = adata.n_obs < MIN_GRAPH_CELLS
    if not (use_author["cd8"] and use_author["malignant"]):
        if too_few:
            logger.warning(
                "Only %d cells: too few (at least %d) to infer CD8 T cells or malignant "
                "cells; no cell is called %s",
                adata.n_obs,
                MIN_GRAPH_CELLS,
                " or ".join(k for k in ("CD8 T", "malignant") if not use_author[_KEYS[k]]),
            )
        else:
            embedding = embed_cells(adata, rng=gen, resolution=resolution)
    cd8 = _cd8_labels(
        adata,
        use_author=use_author["cd8"],
        cd8_markers=cd8_markers,
        gen=gen,
        embedding=embedding,
        cd8_kwargs=cd8_kwargs,
    )
    malignant = _malignant_labels(
        adata,
        use_author=use_author["malignant"],
        gene_positions=gene_positions,
        reference_mask=reference_mask,
        lineage_markers=lineage_markers,
        cancer_type=cancer_type,
        gen=gen,
        embedding=embedding,
        malignant_kwargs=malignant_kwargs,
    )
    out = pd.DataFrame(index=adata.obs_names).assign(**cd8, **malignant.columns)
    _keep_malignant_of_double_calls(out)
    out = _with_labels_used(out, obs=adata.obs)
    n = adata.n_obs
    logger.info(
        "Identity: %d CD8 T cells (%s), %d malignant cells (%s)",
        int(out["is_cd8"].sum()),
        out["label_source_cd8"].iloc[0] if n else "-",
        int(out["is_malignant"].sum()),
        out["label_source_malignant"].iloc[0] if n else "-",
    )
    if return_cnv:
        return out, malignant.cnv
    return out


# --------------------------------------------------------------------------- #
# The steps of annotate_identity
# --------------------------------------------------------------------------- #
#: Words of the log -> keys of ``author_labels_present``.
_KEYS = {"CD8 T": "cd8", "malignant": "malignant"}


def _no_calls(n: int, *, kind: str) -> dict[str, object]:
    """The columns of ``kind`` ("cd8" or "malignant") when nothing could be inferred."""
    if kind == "cd8":
        return {
            "is_cd8": np.zeros(n, dtype=bool),
            "label_source_cd8": "inferred",
            "confidence_cd8": np.nan,
            "cd8_score": np.nan,
        }
    return {
        "is_malignant": np.zeros(n, dtype=bool),
        "label_source_malignant": "inferred",
        "confidence_malignant": np.nan,
        "cnv_score": np.nan,
        "cnv_cluster": "",
        "lineage_score": np.nan,
    }


class _MalignantLabels(NamedTuple):
    """The malignant-label columns of :func:`annotate_identity` and the profiles behind them."""

    #: column name -> values (or one value for every cell)
    columns: dict[str, object]
    #: None when the labels are the authors'
    cnv: CNVResult | None


def _check_author_columns(obs: pd.DataFrame, *, use_author: Mapping[str, bool]) -> None:
    """The ``obs`` columns of the author labels to be used exist."""
    if use_author["cd8"] and "cell_type" not in obs:
        msg = "author_labels_present says CD8 labels exist, but obs has no 'cell_type' column."
        raise ValueError(msg)
    if use_author["malignant"] and "malignant" not in obs:
        msg = (
            "author_labels_present says malignant labels exist, but obs has no 'malignant' column."
        )
        raise ValueError(msg)


def _cd8_labels(
    adata: ad.AnnData,
    *,
    use_author: bool,
    cd8_markers: pd.DataFrame | None,
    gen: np.random.Generator,
    embedding: ad.AnnData | None,
    cd8_kwargs: Mapping[str, object] | None,
) -> dict[str, object]:
    """CD8 T-cell columns: the authors' labels, or :func:`call_cd8`'s."""
    if use_author:
        return {
            "is_cd8": (adata.obs["cell_type"].astype(str) == "CD8_T").to_numpy(),
            "label_source_cd8": "author",
            "confidence_cd8": 1.0,
            "cd8_score": np.nan,
        }
    if adata.n_obs < MIN_GRAPH_CELLS:
        return _no_calls(adata.n_obs, kind="cd8")
    if cd8_markers is None:
        msg = "CD8 T cells must be inferred but cd8_markers was not given."
        raise ValueError(msg)
    cd8 = call_cd8(
        adata,
        markers=cd8_markers,
        rng=gen,
        embedding=embedding,
        **dict(cd8_kwargs or {}),
    )
    return {
        "is_cd8": cd8["is_cd8"].to_numpy(),
        "label_source_cd8": "inferred",
        "confidence_cd8": cd8["confidence"].to_numpy(),
        "cd8_score": cd8["cd8_score"].to_numpy(),
    }


def _malignant_labels(
    adata: ad.AnnData,
    *,
    use_author: bool,
    gene_positions: pd.DataFrame | None,
    reference_mask: np.ndarray | pd.Series | None,
    lineage_markers: pd.DataFrame | None,
    cancer_type: str | None,
    gen: np.random.Generator,
    embedding: ad.AnnData | None,
    malignant_kwargs: Mapping[str, object] | None,
) -> _MalignantLabels:
    """Malignant-cell columns: the authors' labels, or :func:`call_malignant`'s."""
    if use_author:
        malignant = adata.obs["malignant"]
        if malignant.isna().any() or not set(pd.unique(malignant)) <= {True, False}:
            msg = (
                "obs['malignant'] must be boolean (True/False, no missing values) to be used "
                "as the authors' labels; fix it in harmonisation or set the malignant flag of "
                "author_labels_present to False."
            )
            raise ValueError(msg)
        columns = {
            "is_malignant": malignant.astype(bool).to_numpy(),
            "label_source_malignant": "author",
            "confidence_malignant": 1.0,
            "cnv_score": np.nan,
            "cnv_cluster": "",
            "lineage_score": np.nan,
        }
        return _MalignantLabels(columns=columns, cnv=None)
    if adata.n_obs < MIN_GRAPH_CELLS:
        return _MalignantLabels(columns=_no_calls(adata.n_obs, kind="malignant"), cnv=None)
    if gene_positions is None:
        msg = "Malignant cells must be inferred but gene_positions was not given."
        raise ValueError(msg)
    mal, cnv = call_malignant(
        adata,
        gene_positions=gene_positions,
        reference_mask=reference_mask,
        lineage_markers=lineage_markers,
        cancer_type=cancer_type,
        rng=gen,
        embedding=embedding,
        return_cnv=True,
        **dict(malignant_kwargs or {}),
    )
    columns = {
        "is_malignant": mal["is_malignant"].to_numpy(),
        "label_source_malignant": "inferred",
        "confidence_malignant": mal["confidence"].to_numpy(),
        "cnv_score": mal["cnv_score"].to_numpy(),
        "cnv_cluster": mal["cnv_cluster"].to_numpy(),
        "lineage_score": mal["lineage_score"].to_numpy(),
    }
    return _MalignantLabels(columns=columns, cnv=cnv)


def _keep_malignant_of_double_calls(out: pd.DataFrame) -> None:
    """A cell labelled both CD8 T and malignant keeps only the malignant label (in place)."""
    both = out["is_cd8"] & out["is_malignant"]
    if both.any():
        # A cell cannot be both; the CD8 call rests on T-cell genes a tumour cell lacks,
        # while a CD8 T cell in a CNV-aberrant cluster is most likely a doublet.
        logger.warning(
            "%d cell(s) called both CD8 T and malignant: kept as malignant only", int(both.sum())
        )
        out.loc[both, "is_cd8"] = False


def _with_labels_used(out: pd.DataFrame, *, obs: pd.DataFrame) -> pd.DataFrame:
    """``out`` with ``cell_type`` (first), ``label_source`` and ``confidence`` of the labels used."""
    if "cell_type" in obs:
        cell_type = obs["cell_type"].astype(str).to_numpy().copy()
    else:
        cell_type = np.full(len(out), "other", dtype=object)
    cell_type = np.where((cell_type == "CD8_T") & ~out["is_cd8"].to_numpy(), "other", cell_type)
    cell_type = np.where(
        (cell_type == "malignant") & ~out["is_malignant"].to_numpy(), "other", cell_type
    )
    cell_type = np.where(out["is_cd8"].to_numpy(), "CD8_T", cell_type)
    cell_type = np.where(out["is_malignant"].to_numpy(), "malignant", cell_type)
    out.insert(0, "cell_type", pd.Categorical(cell_type, categories=list(CELL_TYPES)))
    sources = out[["label_source_cd8", "label_source_malignant"]]
    out["label_source"] = np.where((sources == "author").all(axis=1), "author", "inferred")
    out["confidence"] = out[["confidence_cd8", "confidence_malignant"]].min(axis=1)
    return out


@dataclass
class IdentityResult:
    """What :func:`identify_cells` found for one dataset.

    Attributes
    ----------
    calls
        :func:`annotate_identity` output: the labels used (author where given, else inferred).
    author_labels
        Which author labels the dataset carries (:func:`author_label_flags`).
    agreement
        :func:`agreement_table` rows of the classes CD8_T and malignant, with the columns
        ``author_labels`` (bool) and ``note`` (why a row has no figures).
    hidden
        Calls of the inference run with every author label hidden (for the agreement);
        None when it did not run.
    cnv
        Copy-number profiles of the run that inferred malignant cells (the labels used
        when they were inferred, else the hidden-label run); None when none did.
    cnv_groups
        A group per cell of ``cnv`` for :func:`cnv_heatmap` (None with ``cnv``).
    cnv_note
        Which run the profiles come from, or why there are none.
    """

    calls: pd.DataFrame
    author_labels: dict[str, bool]
    agreement: pd.DataFrame
    hidden: pd.DataFrame | None = None
    cnv: CNVResult | None = None
    cnv_groups: pd.Series | None = None
    cnv_note: str = ""


def identify_cells(
    adata: ad.AnnData,
    *,
    cd8_markers: pd.DataFrame,
    lineage_markers: pd.DataFrame,
    gene_positions: pd.DataFrame,
    cancer_type: str | None = None,
    force_inference: bool = False,
    agreement: bool = True,
    rng: RNGLike = 0,
    resolution: float = 1.0,
) -> IdentityResult:
    """CD8 T-cell and malignant labels of a dataset, and how well inference matches the authors'.

    The identity step of the workflow. Author labels win where the dataset has them
    (:func:`author_label_flags`); the rest is inferred with :func:`annotate_identity`
    (``force_inference`` infers everything). When the dataset has author labels and
    ``agreement`` is set, the inference is run a second time with every author label
    hidden, and its calls are compared with the authors' (:func:`agreement_table`); under
    ``force_inference`` the labels used are themselves inferred and are compared directly.
    The hidden-label run starts from the same seed as the first, so a label the first run
    inferred is the same in both.

    Parameters
    ----------
    adata
        Contract AnnData (``X`` = ln(CP10k+1)); not modified.
    cd8_markers, lineage_markers, gene_positions, cancer_type
        See :func:`call_cd8` and :func:`call_malignant`.
    force_inference
        Infer both labels even where the authors give them.
    agreement
        Compute the agreement table when author labels exist (one more inference run).
    rng
        Seed (an integer: each run starts from it).
    resolution
        Leiden resolution of the shared clustering.

    Returns
    -------
    :class:`IdentityResult`. A failure of the hidden-label run (e.g. too few
    non-malignant reference cells) does not stop the step: it is logged and its reason
    is the ``note`` of the agreement rows.
    """
    if isinstance(rng, np.random.Generator):
        msg = "identify_cells needs an integer seed (both inference runs start from it)."
        raise ValueError(msg)
    flags = author_label_flags(adata.obs)
    logger.info(
        "Author labels: CD8 T cells %s, malignant cells %s%s",
        "given" if flags["cd8"] else "absent",
        "given" if flags["malignant"] else "absent",
        " (inference forced)" if force_inference else "",
    )
    inputs = {
        "cd8_markers": cd8_markers,
        "lineage_markers": lineage_markers,
        "gene_positions": gene_positions,
        "cancer_type": cancer_type,
        "resolution": resolution,
        "return_cnv": True,
    }
    # the labels used
    calls, cnv = annotate_identity(
        adata, author_labels_present=flags, force_inference=force_inference, rng=rng, **inputs
    )
    profiles = _labels_used_profiles(calls, cnv=cnv)
    # agreement with the authors' labels
    if not (flags["cd8"] or flags["malignant"]):
        checked = _Agreement(_agreement_rows(None, adata.obs, author_labels=flags), None, profiles)
    elif force_inference:
        checked = _Agreement(
            _agreement_rows(calls, adata.obs, author_labels=flags), calls, profiles
        )
    elif not agreement:
        table = _agreement_rows(
            None, adata.obs, author_labels=flags, note="not computed (agreement switched off)"
        )
        checked = _Agreement(table, None, profiles)
    else:
        checked = _hidden_label_agreement(
            adata, flags=flags, rng=rng, inputs=inputs, profiles=profiles
        )
    _log_agreement(checked.table)
    return IdentityResult(
        calls=calls,
        author_labels=flags,
        agreement=checked.table,
        hidden=checked.hidden,
        cnv=checked.profiles.cnv,
        cnv_groups=checked.profiles.groups,
        cnv_note=checked.profiles.note,
    )


# --------------------------------------------------------------------------- #
# The steps of identify_cells
# --------------------------------------------------------------------------- #
class _CNVProfiles(NamedTuple):
    """The copy-number profiles kept (:attr:`IdentityResult.cnv` and the two after it)."""

    cnv: CNVResult | None
    groups: pd.Series | None
    note: str


class _Agreement(NamedTuple):
    """The agreement rows, the calls they come from, and the profiles kept after that run."""

    table: pd.DataFrame
    hidden: pd.DataFrame | None
    profiles: _CNVProfiles


def _labels_used_profiles(calls: pd.DataFrame, *, cnv: CNVResult | None) -> _CNVProfiles:
    """The profiles of the run that gave the labels used (None: malignant labels are the authors')."""
    if cnv is None:
        note = (
            "No copy-number inference ran: the malignant labels used are the authors' and the "
            "agreement check is off."
        )
        return _CNVProfiles(cnv=None, groups=None, note=note)
    groups = pd.Series(
        np.where(calls["is_malignant"], "malignant", "non-malignant"), index=calls.index
    )
    note = "Copy-number profiles of the malignant-cell inference (the labels used)."
    return _CNVProfiles(cnv=cnv, groups=groups, note=note)


def _hidden_label_agreement(
    adata: ad.AnnData,
    *,
    flags: dict[str, bool],
    rng: RNGLike,
    inputs: Mapping[str, object],
    profiles: _CNVProfiles,
) -> _Agreement:
    """The inference run again with every author label hidden, compared with the authors'."""
    if adata.n_obs < MIN_GRAPH_CELLS:
        why = f"only {adata.n_obs} cells (at least {MIN_GRAPH_CELLS} are needed to infer labels)"
        if profiles.cnv is None:
            profiles = profiles._replace(note=f"No copy-number profiles: {why}.")
        table = _agreement_rows(None, adata.obs, author_labels=flags, note=f"not computed: {why}")
        return _Agreement(table, None, profiles)
    hidden_adata = ad.AnnData(
        X=adata.X,
        obs=pd.DataFrame(index=adata.obs_names),
        var=pd.DataFrame(index=adata.var_names),
    )
    hidden_adata.uns["cd8exo"] = dict(adata.uns.get("cd8exo", {}))
    try:
        hidden, hidden_cnv = annotate_identity(
            hidden_adata, author_labels_present=False, rng=rng, **inputs
        )
    except ValueError as error:
        logger.warning("Inference with the author labels hidden failed: %s", error)
        if profiles.cnv is None:
            profiles = profiles._replace(
                note=f"No copy-number profiles: the inference with the author labels hidden failed ({error})."
            )
        table = _agreement_rows(
            None,
            adata.obs,
            author_labels=flags,
            note=f"inference with the author labels hidden failed: {error}",
        )
        return _Agreement(table, None, profiles)
    table = _agreement_rows(hidden, adata.obs, author_labels=flags)
    if profiles.cnv is None:
        profiles = _hidden_run_profiles(adata.obs, hidden=hidden, cnv=hidden_cnv)
    return _Agreement(table, hidden, profiles)


def _hidden_run_profiles(
    obs: pd.DataFrame, *, hidden: pd.DataFrame, cnv: CNVResult | None
) -> _CNVProfiles:
    """The hidden-label run's profiles, grouped by the authors' and the inferred malignant label."""
    author = obs["malignant"].fillna(False).astype(bool).to_numpy()
    called = hidden["is_malignant"].to_numpy()
    groups = pd.Series(
        np.select(
            [author & called, author & ~called, ~author & called],
            [
                "malignant: author and inferred",
                "malignant: author only",
                "malignant: inferred only",
            ],
            default="non-malignant",
        ),
        index=hidden.index,
    )
    note = (
        "Copy-number profiles of the inference with the author labels hidden "
        "(agreement check); the malignant labels used are the authors'."
    )
    return _CNVProfiles(cnv=cnv, groups=groups, note=note)


def _log_agreement(table: pd.DataFrame) -> None:
    for _, row in table.iterrows():
        logger.info(
            "Agreement %s: precision %.3f, recall %.3f, F1 %.3f (support %s)%s",
            row["class"],
            row["precision"],
            row["recall"],
            row["f1"],
            row["support"],
            f" - {row['note']}" if row["note"] else "",
        )
