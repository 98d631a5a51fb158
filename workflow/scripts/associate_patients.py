"""Rule associate_patients: each sender signature against each target, across patients."""

from cd8exo.io.tables import read_patient_table, read_table, write_table
from cd8exo.log import log_to
from cd8exo.stages import patients as stages
from cd8exo.stages.patients import AssociationSettings

with log_to(snakemake.log[0]):
    params = snakemake.params
    table = stages.associate(
        read_patient_table(snakemake.input.patients),
        read_table(snakemake.input.random_sets),
        dataset=params.dataset,
        settings=AssociationSettings.from_params(params),
        coverage=read_table(snakemake.input.coverage),
    )
    write_table(table, snakemake.output.table)
