"""Rule score_random_sets: per-patient scores of random gene sets matched to each signature."""

from cd8exo.cells.store import open_cells
from cd8exo.io.tables import read_gmt, write_table
from cd8exo.log import log_to
from cd8exo.stages import cells as stages

with log_to(snakemake.log[0]):
    scores = stages.score_random_sets(
        open_cells(snakemake.input.matrix, snakemake.input.h5ad),
        read_gmt(snakemake.input.gmt),
        n_sets=snakemake.params.n_sets,
        rng=snakemake.params.seed,
        scoring=snakemake.params.scoring,  # scored exactly as the signatures were
    )
    write_table(scores, snakemake.output.scores)
