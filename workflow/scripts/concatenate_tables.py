"""Rules summarise_*: stack the per-dataset tables into one summary table, for readers.

Written with 6 significant digits (cd8exo.io.html.write_summary_table); rules that compute
from the associations read the exact per-dataset tables instead (README "Reproducibility").
"""

from cd8exo.io.html import write_summary_table
from cd8exo.io.tables import read_table
from cd8exo.log import log_to
from cd8exo.patients.table import concatenate

with log_to(snakemake.log[0]):
    tables = [read_table(path) for path in snakemake.input]
    write_summary_table(concatenate(tables), snakemake.output.table)
