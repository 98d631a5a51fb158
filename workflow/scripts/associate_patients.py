"""Rule associate_patients: each sender signature against each target, across patients."""

from cd8exo.io.tables import read_patient_table, read_table, write_table
from cd8exo.log import log_to
from cd8exo.stages import patients as stages

with log_to(snakemake.log[0]):
    params = snakemake.params
    table = stages.associate(
        read_patient_table(snakemake.input.patients),
        read_table(snakemake.input.random_sets),
        dataset=params.dataset,
        covariates=params.covariates,
        min_patients=params.min_patients,
        n_boot=params.n_boot,
        n_perm=params.n_perm,
        ci_level=params.ci_level,
        family=params.family,
        rng=params.seed,
        min_cd8_cells=params.min_cd8_cells,
        min_malignant_cells=params.min_malignant_cells,
        coverage=read_table(snakemake.input.coverage),
    )
    write_table(table, snakemake.output.table)
