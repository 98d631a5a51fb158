"""Rule meta_analysis: DerSimonian-Laird random-effects pooling of rho across datasets."""

from cd8exo.io.html import write_summary_table
from cd8exo.io.tables import read_table
from cd8exo.log import log_to
from cd8exo.patients.table import concatenate
from cd8exo.stats.meta import meta_analysis

with log_to(snakemake.log[0]):
    associations = concatenate([read_table(path) for path in snakemake.input.associations])
    table = meta_analysis(associations, level=snakemake.params.level)
    write_summary_table(table, snakemake.output.table)  # read only by figures and reports
