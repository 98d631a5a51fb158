"""Rule plot_top_programs: the top preranked-GSEA gene sets of every signature, as a dot plot."""

from cd8exo.io.tables import read_table
from cd8exo.log import log_to
from cd8exo.pl import save_figure
from cd8exo.pl.screen import top_programs_figure

with log_to(snakemake.log[0]):
    enrichment = read_table(snakemake.input.enrichment)
    fig = top_programs_figure(
        enrichment,
        n=snakemake.params.n_top,
        title=f"{snakemake.wildcards.dataset}: top {snakemake.params.n_top} gene sets per signature",
    )
    save_figure(fig, snakemake.output.png)
