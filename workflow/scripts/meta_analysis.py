"""Rule meta_analysis: DerSimonian-Laird random-effects pooling of rho across datasets."""

from cd8exo.io.tables import read_table, write_table
from cd8exo.log import log_to
from cd8exo.stats.meta import meta_analysis

with log_to(snakemake.log[0]):
    associations = read_table(snakemake.input.associations)
    write_table(meta_analysis(associations, level=snakemake.params.level), snakemake.output.table)
