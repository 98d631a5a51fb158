"""Rule score_random_sets: per-patient scores of random gene sets matched to each signature."""

import anndata as ad

from cd8exo.io.tables import read_gmt, write_table
from cd8exo.log import log_to
from cd8exo.scoring.random_sets import random_set_scores

with log_to(snakemake.log[0]):
    params = snakemake.params
    scores = random_set_scores(
        ad.read_h5ad(snakemake.input.h5ad),
        read_gmt(snakemake.input.gmt),
        n_sets=params.n_sets,
        rng=params.seed,
        **params.scoring,  # scored exactly as the signatures were
    )
    write_table(scores, snakemake.output.scores)
