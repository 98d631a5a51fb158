"""Rule record_run_info: software versions, the effective config, input checksums and the seed."""

from cd8exo.io.provenance import flatten, run_info
from cd8exo.io.tables import write_table, write_yaml
from cd8exo.log import log_to

with log_to(snakemake.log[0]):
    info = run_info(config=snakemake.params.config, files=snakemake.input)
    write_yaml(info, snakemake.output.yaml)
    write_table(flatten(info), snakemake.output.table)
