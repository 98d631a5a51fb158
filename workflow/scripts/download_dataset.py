"""Rule download_dataset: fetch and verify the files of a public dataset's registry entry."""

from cd8exo.io.fetch import fetch_dataset, write_manifest
from cd8exo.log import log_to

with log_to(snakemake.log[0]) as logger:
    paths = fetch_dataset(
        snakemake.params.entry,
        snakemake.params.folder,
        lock_file=snakemake.params.lock_file,
        local_dir=snakemake.params.local_dir,
        retries=snakemake.params.retries,
        backoff=snakemake.params.backoff,
        timeout=snakemake.params.timeout,
        census_uri=snakemake.params.census.get("uri"),
        census_tiledb_config=snakemake.params.census.get("tiledb_config"),
    )
    logger.info(
        "%s: %d verified file(s) in %s",
        snakemake.wildcards.dataset,
        len(paths),
        snakemake.params.folder,
    )
    write_manifest(paths, snakemake.output.manifest)
