"""Rule score_signatures: every sender signature in every cell, with its gene coverage."""

import anndata as ad

from cd8exo.io import read_gmt, write_table
from cd8exo.log import log_to
from cd8exo.scoring import score_signatures, signature_coverage
from cd8exo.signatures import select_signatures

with log_to(snakemake.log[0]):
    adata = ad.read_h5ad(snakemake.input.h5ad)
    signatures = select_signatures(
        [read_gmt(path) for path in snakemake.input.gmt], include=snakemake.params.include
    )
    coverage = signature_coverage(adata.var_names, signatures)
    write_table(coverage, snakemake.output.coverage)
    scores = score_signatures(
        adata,
        signatures,
        rng=snakemake.params.seed,
        n_bins=snakemake.params.n_bins,
        ctrl_size=snakemake.params.ctrl_size,
    )
    scores = scores.join(adata.obs[["patient", "cell_type"]])
    scores.index.name = "cell"
    write_table(scores.reset_index(), snakemake.output.scores)
