"""Rule check_truth: planted (simulated) associations against what the workflow recovered."""

import pandas as pd

from cd8exo.io.tables import read_table, write_table
from cd8exo.log import log_to
from cd8exo.stats.truth import check_truth

with log_to(snakemake.log[0]) as logger:
    truth = pd.concat(
        read_table(path).assign(dataset=dataset)
        for dataset, path in zip(snakemake.params.datasets, snakemake.input.truth, strict=True)
    )
    # single genes and target sets (their own FDR family): each pair once, by its name
    keys = ["dataset", "signature", "target", "rho", "q_value"]
    tables = [snakemake.input.associations, *snakemake.input.sets]
    associations = pd.concat([read_table(path)[keys] for path in tables], ignore_index=True)
    table = check_truth(associations, truth, fdr=snakemake.params.fdr)
    logger.info("truth check:\n%s", table["outcome"].value_counts().to_string())
    write_table(table, snakemake.output.table)
