"""Rule aggregate_patients: CD8 T-cell sender scores and malignant-cell target pseudobulk per patient."""

import anndata as ad
import pandas as pd

from cd8exo.io.tables import read_targets, write_table
from cd8exo.log import log_to
from cd8exo.patients.aggregate import (
    median_counts,
    patient_counts,
    receiver_expression,
    select_patients,
    sender_scores,
)
from cd8exo.patients.table import patient_table

with log_to(snakemake.log[0]):
    adata = ad.read_h5ad(snakemake.input.h5ad)
    scores = pd.read_csv(snakemake.input.scores, sep="\t", index_col="cell")
    genes = list(
        dict.fromkeys(
            [*read_targets(snakemake.input.targets)["gene"], *snakemake.params.extra_targets]
        )
    )
    counts = patient_counts(adata.obs).join(median_counts(adata))
    _, excluded = select_patients(
        counts,
        min_cd8_cells=snakemake.params.min_cd8_cells,
        min_malignant_cells=snakemake.params.min_malignant_cells,
    )
    signatures = scores.columns.difference(["patient", "cell_type"], sort=False)
    table = patient_table(
        counts,
        sender_scores(scores[signatures], adata.obs),
        receiver_expression(adata, genes=genes),
        excluded,
        dataset=snakemake.wildcards.dataset,
    )
    write_table(excluded, snakemake.output.excluded)
    write_table(table, snakemake.output.patients)
