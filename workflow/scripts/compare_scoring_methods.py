"""Rule compare_scoring_methods: every method's sender scores, and how far they agree (figure: plot_concordance)."""

from cd8exo.cells.store import open_cells
from cd8exo.io.tables import read_gmt, write_table
from cd8exo.log import log_to
from cd8exo.scoring.concordance import concordance_table, method_scores

with log_to(snakemake.log[0]):
    inputs, params = snakemake.input, snakemake.params
    adata = open_cells(inputs.matrix, inputs.h5ad)
    # the signatures as score_signatures prepared them, so both compare the same gene lists
    signatures = read_gmt(inputs.gmt)
    cells, patients = method_scores(
        adata,
        signatures,
        rng=params.seed,
        min_cells=params.min_cd8_cells,
        **params.scoring,
    )
    table = concordance_table(cells, patients)
    write_table(table, snakemake.output.table)
