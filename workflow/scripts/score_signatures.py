"""Rule score_signatures: every sender signature in every cell, with its coverage and overlap."""

import anndata as ad

from cd8exo.genes import load_symbol_tables
from cd8exo.io.tables import read_gmt, read_targets, write_gmt, write_table
from cd8exo.log import log_to
from cd8exo.scoring.gene_sets import select_signatures
from cd8exo.scoring.prepare import prepare_signatures, receiver_gene_sets
from cd8exo.scoring.score import score_signatures

with log_to(snakemake.log[0]):
    inputs, params = snakemake.input, snakemake.params
    adata = ad.read_h5ad(inputs.h5ad)
    targets = [*read_targets(inputs.targets)["gene"], *params.extra_targets]
    prepared = prepare_signatures(
        select_signatures({path: read_gmt(path) for path in inputs.gmt}, include=params.include),
        adata.var_names,
        tables=load_symbol_tables(inputs.hgnc_aliases, inputs.ensembl_symbols),
        exclude=receiver_gene_sets(targets, programs=[read_gmt(p) for p in inputs.programs]),
        min_coverage=params.min_coverage,
    )
    write_table(prepared.coverage, snakemake.output.coverage)
    write_table(prepared.overlap, snakemake.output.overlap)
    write_gmt(prepared.signatures, snakemake.output.prepared, description="as scored")
    scores = score_signatures(
        adata,
        prepared.signatures,
        rng=params.seed,
        **params.scoring,
    )
    scores = scores.join(adata.obs[["patient", "cell_type"]])
    scores.index.name = "cell"
    write_table(scores.reset_index(), snakemake.output.scores)
