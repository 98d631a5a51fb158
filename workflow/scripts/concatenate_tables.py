"""Rules summarise_*: stack the per-dataset tables into one summary table."""

import pandas as pd

from cd8exo.io.tables import write_table
from cd8exo.log import log_to
from cd8exo.patients.table import concatenate

with log_to(snakemake.log[0]):
    tables = [pd.read_csv(path, sep="\t") for path in snakemake.input]
    write_table(concatenate(tables), snakemake.output.table)
