"""Rule associate_receiver_sets: each sender signature against each cargo miRNA's target set."""

from cd8exo.io.cargo import cargo_target_sets, read_cargo_table
from cd8exo.io.tables import read_gmt, read_patient_table, read_table, write_table
from cd8exo.log import log_to
from cd8exo.stages.patients import AssociationSettings
from cd8exo.stages.receiver_patients import associate_receiver_sets

with log_to(snakemake.log[0]):
    inputs, params = snakemake.input, snakemake.params
    _, annotation = cargo_target_sets(read_gmt(inputs.gmt), read_cargo_table(inputs.cargo))
    table = associate_receiver_sets(
        read_patient_table(inputs.patients),
        read_table(inputs.scores, index_col="patient"),
        read_table(inputs.random_sets),
        annotation=annotation,
        dataset=params.dataset,
        settings=AssociationSettings.from_params(params),
        coverage=read_table(inputs.coverage),
        set_coverage=read_table(inputs.set_coverage),
    )
    write_table(table, snakemake.output.table)
