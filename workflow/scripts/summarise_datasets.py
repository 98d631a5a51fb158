"""Rule summarise_datasets: each dataset analysed, partly analysed or not testable, and why."""

from cd8exo.io.tables import read_patient_table, read_table, write_table
from cd8exo.log import log_to
from cd8exo.patients.table import concatenate
from cd8exo.stages import patients as stages

with log_to(snakemake.log[0]):
    table = stages.summarise_datasets(
        concatenate([read_table(path) for path in snakemake.input.associations]),
        read_patient_table(snakemake.input.patients),
        datasets=snakemake.params.datasets,
    )
    write_table(table, snakemake.output.table)
