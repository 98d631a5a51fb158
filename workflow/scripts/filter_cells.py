"""Rule filter_cells: cell QC, then log-normalisation of raw counts (never twice)."""

import anndata as ad

from cd8exo.io.local import write_h5ad
from cd8exo.io.tables import write_table
from cd8exo.log import log_to
from cd8exo.stages import cells as stages

with log_to(snakemake.log[0]):
    kept, removed = stages.filter_cells(
        ad.read_h5ad(snakemake.input.h5ad),
        min_genes=snakemake.params.min_genes,
        max_mito_fraction=snakemake.params.max_mito_fraction,
    )
    write_table(removed, snakemake.output.removed)
    write_h5ad(kept, snakemake.output.h5ad)
