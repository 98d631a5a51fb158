"""Rules summarise_*: stack the per-dataset tables into one summary table."""

from cd8exo.io.tables import read_table, write_table
from cd8exo.log import log_to
from cd8exo.patients.table import concatenate

with log_to(snakemake.log[0]):
    tables = [read_table(path) for path in snakemake.input]
    write_table(concatenate(tables), snakemake.output.table)
