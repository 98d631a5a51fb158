"""Rule associate_patients: Spearman rho of each sender signature with each target, across patients."""

import pandas as pd

from cd8exo.associate import associate
from cd8exo.io import write_table
from cd8exo.log import log_to
from cd8exo.tables import split_patient_table

with log_to(snakemake.log[0]):
    sender, receiver = split_patient_table(pd.read_csv(snakemake.input.patients, sep="\t"))
    table = associate(
        sender, receiver, dataset=snakemake.params.dataset, min_patients=snakemake.params.min_patients
    )
    write_table(table, snakemake.output.table)
