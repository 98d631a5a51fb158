"""Signature scoring: gene sets, their preparation for a dataset, and the four scoring methods.

:data:`METHODS` maps a method name to its function; :func:`score_signatures` scores a dataset by name.
"""

from __future__ import annotations

from cd8exo.scoring._chunks import cell_chunks, gene_means
from cd8exo.scoring.gene_sets import merge_gene_sets, select_signatures
from cd8exo.scoring.prepare import (
    COVERAGE_COLUMNS,
    OVERLAP_COLUMNS,
    PreparedSignatures,
    prepare_signatures,
    receiver_gene_sets,
    signature_coverage,
)
from cd8exo.scoring.rank import aucell_scores, detected_genes, ucell_scores
from cd8exo.scoring.score import METHODS, score_matrix, score_signatures
from cd8exo.scoring.ssgsea import group_sums, ssgsea_cell_scores, ssgsea_scores
from cd8exo.scoring.tirosh import control_genes, expression_bins, signature_weights

__all__ = [
    "COVERAGE_COLUMNS",
    "METHODS",
    "OVERLAP_COLUMNS",
    "PreparedSignatures",
    "aucell_scores",
    "cell_chunks",
    "control_genes",
    "detected_genes",
    "expression_bins",
    "gene_means",
    "group_sums",
    "merge_gene_sets",
    "prepare_signatures",
    "receiver_gene_sets",
    "score_matrix",
    "score_signatures",
    "select_signatures",
    "signature_coverage",
    "signature_weights",
    "ssgsea_cell_scores",
    "ssgsea_scores",
    "ucell_scores",
]
