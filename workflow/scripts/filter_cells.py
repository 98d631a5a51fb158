"""Rule filter_cells: cell QC; the kept cells are passed on as a cell table (the matrix stays in prepare_dataset's file)."""

from cd8exo.cells.store import open_cells, write_cells
from cd8exo.io.tables import write_table
from cd8exo.log import log_to
from cd8exo.stages import cells as stages

with log_to(snakemake.log[0]):
    kept, removed = stages.filter_cells(
        open_cells(snakemake.input.h5ad),
        min_genes=snakemake.params.min_genes,
        max_mito_fraction=snakemake.params.max_mito_fraction,
    )
    write_table(removed, snakemake.output.removed)
    write_cells(kept, snakemake.output.h5ad)
