"""Rule check_truth: planted (simulated) associations against what the workflow recovered."""

import pandas as pd

from cd8exo.io.html import write_summary_table
from cd8exo.io.tables import read_table
from cd8exo.log import log_to
from cd8exo.patients.table import concatenate
from cd8exo.stats.truth import check_truth

with log_to(snakemake.log[0]) as logger:
    truth = pd.concat(
        read_table(path).assign(dataset=dataset)
        for dataset, path in zip(snakemake.params.datasets, snakemake.input.truth, strict=True)
    )
    # single genes (the exact per-dataset tables) and target sets (their own FDR family):
    # each pair once, by its name
    keys = ["dataset", "signature", "target", "rho", "q_value"]
    genes = concatenate([read_table(path) for path in snakemake.input.associations])
    sets = [read_table(path)[keys] for path in snakemake.input.sets]
    associations = pd.concat([genes[keys], *sets], ignore_index=True)
    table = check_truth(associations, truth, fdr=snakemake.params.fdr)
    logger.info("truth check:\n%s", table["outcome"].value_counts().to_string())
    write_summary_table(table, snakemake.output.table)
