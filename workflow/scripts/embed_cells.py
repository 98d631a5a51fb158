"""Rule embed_cells: UMAP coordinates for the figures."""

import anndata as ad

from cd8exo.cells.embedding import umap_coordinates
from cd8exo.io.tables import write_table
from cd8exo.log import log_to

with log_to(snakemake.log[0]):
    coords = umap_coordinates(
        ad.read_h5ad(snakemake.input.h5ad),
        n_top_genes=snakemake.params.n_top_genes,
        n_pcs=snakemake.params.n_pcs,
        n_neighbors=snakemake.params.n_neighbors,
        rng=snakemake.params.seed,
    )
    write_table(coords.reset_index(), snakemake.output.umap)
