"""Rule prepare_public_dataset: read a downloaded public dataset by its registry entry and harmonise it."""

from cd8exo.cells.public import read_public
from cd8exo.cells.store import write_matrix
from cd8exo.genes import load_symbol_tables
from cd8exo.io.fetch import read_manifest
from cd8exo.log import log_to

with log_to(snakemake.log[0]) as logger:
    adata = read_public(
        snakemake.params.dataset,
        read_manifest(snakemake.input.manifest),
        snakemake.params.entry,
        symbol_tables=load_symbol_tables(
            snakemake.input.hgnc_aliases, snakemake.input.ensembl_symbols
        ),
    )
    logger.info(
        "harmonised %s: %d cells x %d genes", snakemake.params.dataset, adata.n_obs, adata.n_vars
    )
    write_matrix(adata, snakemake.output.h5ad)
