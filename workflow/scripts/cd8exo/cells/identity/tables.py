"""Tables of the identity step: the reference inputs it reads, and its per-cell outputs.

:func:`read_identity_references` reads the marker and gene-position tables
:func:`~cd8exo.cells.identity.annotate.identify_cells` takes; :func:`annotated_obs` and
:func:`identity_table` turn its result into the ``obs`` columns and the per-cell table.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from cd8exo.io.tables import read_tsv
from cd8exo.vocabulary import CELL_TYPES

if TYPE_CHECKING:
    from cd8exo.cells.identity.annotate import IdentityResult

__all__ = ["IDENTITY_COLUMNS", "annotated_obs", "identity_table", "read_identity_references"]

#: Columns of the per-cell identity table (:func:`identity_table`).
IDENTITY_COLUMNS: tuple[str, ...] = (
    "cell",
    "patient",
    "cell_type",
    "cell_type_original",
    "is_cd8",
    "is_malignant",
    "label_source",
    "label_source_cd8",
    "label_source_malignant",
    "confidence",
    "confidence_cd8",
    "confidence_malignant",
    "cd8_score",
    "cnv_score",
    "cnv_cluster",
    "lineage_score",
    "hidden_labels_is_cd8",
    "hidden_labels_is_malignant",
)


def annotated_obs(obs: pd.DataFrame, calls: pd.DataFrame) -> pd.DataFrame:
    """``obs`` with the labels used: cell_type, malignant, their source and confidence.

    Parameters
    ----------
    obs
        ``obs`` of the harmonised AnnData; not modified.
    calls
        :func:`~cd8exo.cells.identity.annotate.annotate_identity` output for the same cells.

    Returns
    -------
    A copy of ``obs`` with ``cell_type`` and ``malignant`` from ``calls`` and the new
    columns ``label_source`` (author/inferred), ``label_source_cd8``,
    ``label_source_malignant`` and ``identity_confidence`` (0-1; 1 for author labels).
    """
    if not calls.index.equals(obs.index):
        msg = "annotated_obs: the calls are not for the same cells, in the same order, as obs."
        raise ValueError(msg)
    out = obs.copy()
    out["cell_type"] = pd.Categorical(calls["cell_type"].astype(str), categories=list(CELL_TYPES))
    out["malignant"] = calls["is_malignant"].astype(bool).to_numpy()
    for column in ("label_source", "label_source_cd8", "label_source_malignant"):
        out[column] = pd.Categorical(
            calls[column].astype(str).to_numpy(), categories=["author", "inferred"]
        )
    out["identity_confidence"] = calls["confidence"].astype(float).to_numpy()
    return out


def identity_table(result: IdentityResult, *, obs: pd.DataFrame) -> pd.DataFrame:
    """One row per cell: the labels used, their source and confidence, the inference scores.

    Parameters
    ----------
    result
        :func:`~cd8exo.cells.identity.annotate.identify_cells` output.
    obs
        ``obs`` of the harmonised AnnData (for ``patient`` and ``cell_type_original``).

    Returns
    -------
    The columns :data:`IDENTITY_COLUMNS`; ``hidden_labels_is_cd8`` and
    ``hidden_labels_is_malignant`` are the calls of the hidden-label run (empty when it
    did not run).
    """
    calls = result.calls
    table = calls.copy()
    table["cell_type"] = table["cell_type"].astype(str)
    table.insert(0, "cell", calls.index.to_numpy())
    table["patient"] = obs["patient"].astype(str).reindex(calls.index).to_numpy()
    original = (
        obs["cell_type_original"].astype(str)
        if "cell_type_original" in obs
        else pd.Series("", index=obs.index)
    )
    table["cell_type_original"] = original.reindex(calls.index).to_numpy()
    for column in ("is_cd8", "is_malignant"):
        hidden = (
            result.hidden[column].astype("boolean")
            if result.hidden is not None
            else pd.Series(pd.NA, index=calls.index, dtype="boolean")
        )
        table[f"hidden_labels_{column}"] = hidden.reindex(calls.index).to_numpy()
    return table[list(IDENTITY_COLUMNS)].reset_index(drop=True)


def read_identity_references(
    cd8_markers: Sequence[str | Path], lineage_markers: str | Path, gene_positions: str | Path
) -> dict[str, pd.DataFrame]:
    """Read the identity step's reference tables as :func:`identify_cells` takes them.

    Parameters
    ----------
    cd8_markers
        CD8 marker tables, concatenated in order (``resources/markers/``
        ``cd8_identity_markers.tsv`` and ``cd8_support_markers.tsv``).
    lineage_markers
        ``resources/markers/malignant_lineage_markers.tsv``.
    gene_positions
        ``resources/genome/hg38_gencode_v27_gene_pos.txt`` (no header).

    Returns
    -------
    The keywords ``cd8_markers``, ``lineage_markers`` and ``gene_positions``.
    """
    return {
        "cd8_markers": pd.concat([read_tsv(p, what="CD8 markers") for p in cd8_markers]),
        "lineage_markers": read_tsv(lineage_markers, what="lineage markers"),
        "gene_positions": pd.read_csv(gene_positions, sep="\t", header=None),
    }
