"""Rule screen_tumour_genes: every expressed malignant-cell gene ranked against each signature, then preranked GSEA."""

from cd8exo.cells.store import open_cells
from cd8exo.io.tables import merge_gene_sets, read_gmt, read_patient_table, write_table
from cd8exo.log import log_to
from cd8exo.patients.aggregate import malignant_pseudobulk
from cd8exo.patients.table import split_patient_table
from cd8exo.stats.screen import prerank, rank_genes

with log_to(snakemake.log[0]):
    patients = read_patient_table(snakemake.input.patients)
    sender, _ = split_patient_table(patients, included_only=True)
    pseudobulk = malignant_pseudobulk(
        open_cells(snakemake.input.matrix, snakemake.input.h5ad),
        patients=sender.index,
        min_cells_fraction=snakemake.params.min_cells_fraction,
        min_cpm=snakemake.params.min_cpm,
    )
    ranked = rank_genes(sender, pseudobulk, min_patients=snakemake.params.min_patients)
    enrichment = prerank(
        ranked,
        merge_gene_sets(
            {path: read_gmt(path) for path in snakemake.input.gmt}, config_key="screen.gmt"
        ),
        permutations=snakemake.params.permutations,
        rng=snakemake.params.seed,
        min_size=snakemake.params.min_size,
        max_size=snakemake.params.max_size,
        threads=snakemake.threads,
    )
    write_table(ranked, snakemake.output.ranked)
    write_table(enrichment, snakemake.output.prerank)
