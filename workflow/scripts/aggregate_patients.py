"""Rule aggregate_patients: CD8 T-cell sender scores and malignant-cell target pseudobulk per patient."""

from cd8exo.cells.store import open_cells
from cd8exo.io.tables import read_scores, read_targets, write_table
from cd8exo.log import log_to
from cd8exo.stages import cells as stages

with log_to(snakemake.log[0]):
    params = snakemake.params
    table, excluded = stages.aggregate(
        open_cells(snakemake.input.matrix, snakemake.input.h5ad),
        read_scores(snakemake.input.scores),
        genes=stages.receiver_genes(read_targets(snakemake.input.targets), params.extra_targets),
        min_cd8_cells=params.min_cd8_cells,
        min_malignant_cells=params.min_malignant_cells,
        dataset=snakemake.wildcards.dataset,
    )
    write_table(excluded, snakemake.output.excluded)
    write_table(table, snakemake.output.patients)
