"""Rule associate_patients: each sender signature against each target, across patients."""

import pandas as pd

from cd8exo.io.tables import write_table
from cd8exo.log import log_to
from cd8exo.patients.table import patient_covariates, split_patient_table
from cd8exo.scoring.random_sets import null_score_tables
from cd8exo.stats.association import association_table
from cd8exo.stats.specificity import specificity_p_values

with log_to(snakemake.log[0]):
    patients = pd.read_csv(snakemake.input.patients, sep="\t")
    sender, receiver = split_patient_table(patients)
    covariates = patient_covariates(patients, columns=snakemake.params.covariates)
    table = association_table(
        sender,
        receiver,
        dataset=snakemake.params.dataset,
        covariates=covariates,
        min_patients=snakemake.params.min_patients,
        n_boot=snakemake.params.n_boot,
        n_perm=snakemake.params.n_perm,
        level=snakemake.params.ci_level,
        family=snakemake.params.family,
        rng=snakemake.params.seed,
    )
    null = null_score_tables(
        pd.read_csv(snakemake.input.random_sets, sep="\t"), patients=sender.index
    )
    table = specificity_p_values(table, null_scores=null, receiver=receiver)
    write_table(table, snakemake.output.table)
