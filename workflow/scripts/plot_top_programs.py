"""Rule plot_top_programs: the top preranked-GSEA gene sets of every signature, as a dot plot."""

from cd8exo.io.tables import read_table
from cd8exo.log import log_to
from cd8exo.pl import save_figure
from cd8exo.pl.names import DisplayNames
from cd8exo.pl.screen import top_programs_figure

with log_to(snakemake.log[0]):
    names = DisplayNames.from_files(snakemake.input.library, simulated=snakemake.params.simulated)
    dataset = snakemake.wildcards.dataset
    enrichment = read_table(snakemake.input.enrichment)
    fig = top_programs_figure(
        enrichment,
        n=snakemake.params.n_top,
        title=names.title(
            f"{dataset}: top {snakemake.params.n_top} gene sets per signature", datasets=[dataset]
        ),
        names=names,
    )
    save_figure(fig, snakemake.output.png)
