"""Cell identity: kNN graph, CD8 T-cell and malignant calls, copy-number profiles, agreement with the authors' labels.

The public functions of the sub-modules are importable from here (``from cd8exo.cells import identity``).
"""

from __future__ import annotations

from cd8exo.cells.identity.agreement import AGREEMENT_CLASSES, agreement_table, author_label_flags
from cd8exo.cells.identity.annotate import IdentityResult, annotate_identity, identify_cells
from cd8exo.cells.identity.cd8 import call_cd8
from cd8exo.cells.identity.cnv import CNVResult, cnv_from_anndata, cnv_subsample, cnv_to_anndata
from cd8exo.cells.identity.compartments import (
    CANCER_TYPE_LINEAGES,
    KNOWN_CANCER_TYPES,
    find_compartments,
)
from cd8exo.cells.identity.graph import embed_cells
from cd8exo.cells.identity.malignant import call_malignant
from cd8exo.cells.identity.tables import (
    IDENTITY_COLUMNS,
    annotated_obs,
    identity_table,
    read_identity_references,
)

__all__ = [
    "AGREEMENT_CLASSES",
    "CANCER_TYPE_LINEAGES",
    "IDENTITY_COLUMNS",
    "KNOWN_CANCER_TYPES",
    "CNVResult",
    "IdentityResult",
    "agreement_table",
    "annotate_identity",
    "annotated_obs",
    "author_label_flags",
    "call_cd8",
    "call_malignant",
    "cnv_from_anndata",
    "cnv_subsample",
    "cnv_to_anndata",
    "embed_cells",
    "find_compartments",
    "identify_cells",
    "identity_table",
    "read_identity_references",
]
