"""Rule score_random_sets: per-patient scores of random gene sets matched to each signature."""

import anndata as ad

from cd8exo.io import read_gmt, write_table
from cd8exo.log import log_to
from cd8exo.signatures import select_signatures
from cd8exo.specificity import random_set_scores

with log_to(snakemake.log[0]):
    adata = ad.read_h5ad(snakemake.input.h5ad)
    signatures = select_signatures(
        [read_gmt(path) for path in snakemake.input.gmt], include=snakemake.params.include
    )
    scores = random_set_scores(
        adata,
        signatures,
        n_sets=snakemake.params.n_sets,
        n_bins=snakemake.params.n_bins,
        ctrl_size=snakemake.params.ctrl_size,
        rng=snakemake.params.seed,
    )
    write_table(scores, snakemake.output.scores)
