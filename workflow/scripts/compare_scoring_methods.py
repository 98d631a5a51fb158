"""Rule compare_scoring_methods: every method's sender scores, and how far they agree."""

import anndata as ad

from cd8exo.concordance import concordance_figure, concordance_table, method_scores
from cd8exo.genes import load_symbol_tables
from cd8exo.io import read_gmt, read_targets, write_table
from cd8exo.log import log_to
from cd8exo.plotting import save_figure
from cd8exo.scoring import prepare_signatures, receiver_gene_sets
from cd8exo.signatures import select_signatures

with log_to(snakemake.log[0]):
    inputs, params = snakemake.input, snakemake.params
    adata = ad.read_h5ad(inputs.h5ad)
    targets = [*read_targets(inputs.targets)["gene"], *params.extra_targets]
    prepared = prepare_signatures(
        select_signatures([read_gmt(path) for path in inputs.gmt], include=params.include),
        adata.var_names,
        tables=load_symbol_tables(inputs.hgnc_aliases, inputs.ensembl_symbols),
        exclude=receiver_gene_sets(targets, programs=[read_gmt(p) for p in inputs.programs]),
        min_coverage=params.min_coverage,
    )
    cells, patients = method_scores(
        adata,
        prepared.signatures,
        rng=params.seed,
        min_cells=params.min_cd8_cells,
        n_bins=params.n_bins,
        ctrl_size=params.ctrl_size,
        max_rank=params.max_rank,
        n_up=params.n_up,
        aucell_ties=params.aucell_ties,
    )
    table = concordance_table(cells, patients)
    write_table(table, snakemake.output.table)
    save_figure(concordance_figure(table, title=snakemake.wildcards.dataset), snakemake.output.png)
