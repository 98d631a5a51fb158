"""The fixed vocabulary and the standard ``obs`` schema of a harmonised dataset."""

from __future__ import annotations

#: Cell types every harmonised dataset is mapped onto (``obs["cell_type"]``).
CELL_TYPES: tuple[str, ...] = (
    "CD8_T",
    "CD4_T",
    "NK",
    "B",
    "plasma",
    "myeloid",
    "fibroblast",
    "endothelial",
    "malignant",
    "other",
)

#: Columns every harmonised AnnData carries in ``obs``.
#: ``cell_type_original`` keeps the authors' label beside our vocabulary.
OBS_COLUMNS: dict[str, str] = {
    "patient": "category",
    "sample": "category",
    "cell_type": "category",
    "cell_type_original": "category",
    "malignant": "bool",
}

#: Scales the values of a dataset may be on (``uns["cd8exo"]["value_scale"]``).
#: ``counts``: raw UMI/read counts; ``log1p_norm``: ln(x/size*1e4 + 1) or similar
#: natural-log normalised values; ``log2_tpm10``: log2(TPM/10 + 1) as in Smart-seq2
#: GEO tables. Only ``counts`` is ever log-transformed by the workflow.
VALUE_SCALES: tuple[str, ...] = ("counts", "log1p_norm", "log2_tpm10")

#: Columns of the tables passed between rules that hold identifiers: always read back as
#: verbatim text (patient ``007`` stays ``007``, ``NA`` stays ``NA``), never as numbers.
ID_COLUMNS: tuple[str, ...] = (
    "cell",
    "patient",
    "sample",
    "dataset",
    "signature",
    "target",
    "gene",
    "cell_type",
    "set",
    "term",
)

#: Roles of the target table (column ``role``), in the order results are shown: the
#: hypothesis (miRNA targets), pathway read-outs, then the positive and negative controls.
ROLE_ORDER: tuple[str, ...] = (
    "mirna_target",
    "cargo_receptor_or_pathway",
    "positive_control",
    "negative_control",
)
#: Headings of the target roles in figures and the report.
ROLE_LABELS: dict[str, str] = {
    "mirna_target": "miRNA target",
    "cargo_receptor_or_pathway": "pathway",
    "positive_control": "positive control",
    "negative_control": "negative control",
}
