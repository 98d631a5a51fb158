"""Rule embed_cells: UMAP coordinates for the figures."""

from cd8exo.cells.store import open_cells
from cd8exo.io.tables import write_table
from cd8exo.log import log_to
from cd8exo.stages import cells as stages

with log_to(snakemake.log[0]):
    params = snakemake.params
    coords = stages.embed(
        open_cells(snakemake.input.matrix, snakemake.input.h5ad),
        n_top_genes=params.n_top_genes,
        n_pcs=params.n_pcs,
        n_neighbors=params.n_neighbors,
        rng=params.seed,
        max_cells=params.max_graph_cells,
    )
    write_table(coords.reset_index(), snakemake.output.umap)
