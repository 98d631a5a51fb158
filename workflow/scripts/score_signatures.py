"""Rule score_signatures: every sender signature in every cell, with its coverage and overlap."""

from cd8exo.cells.store import open_cells
from cd8exo.genes import load_symbol_tables
from cd8exo.io.tables import read_gmt, read_targets, write_gmt, write_table
from cd8exo.log import log_to
from cd8exo.stages import cells as stages

with log_to(snakemake.log[0]):
    inputs, params = snakemake.input, snakemake.params
    scored = stages.score(
        open_cells(inputs.matrix, inputs.h5ad),
        gene_sets={path: read_gmt(path) for path in inputs.gmt},
        include=params.include,
        targets=stages.receiver_genes(read_targets(inputs.targets), params.extra_targets),
        programs=[read_gmt(path) for path in inputs.programs],
        tables=load_symbol_tables(inputs.hgnc_aliases, inputs.ensembl_symbols),
        min_coverage=params.min_coverage,
        rng=params.seed,
        scoring=params.scoring,
    )
    write_table(scored.prepared.coverage, snakemake.output.coverage)
    write_table(scored.prepared.overlap, snakemake.output.overlap)
    write_gmt(scored.prepared.signatures, snakemake.output.prepared, description="as scored")
    write_table(scored.scores.reset_index(), snakemake.output.scores)
