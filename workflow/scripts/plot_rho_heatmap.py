"""Rule plot_rho_heatmap: Spearman rho of signatures x targets, q < FDR marked."""

from cd8exo.io.tables import read_table
from cd8exo.log import log_to
from cd8exo.pl import save_figure
from cd8exo.pl.associations import rho_heatmap
from cd8exo.pl.names import DisplayNames

with log_to(snakemake.log[0]):
    names = DisplayNames.from_files(snakemake.input.library, simulated=snakemake.params.simulated)
    table = read_table(snakemake.input.table)
    fig = rho_heatmap(
        table,
        fdr=snakemake.params.fdr,
        names=names,
        title=f"{snakemake.wildcards.dataset}: * q < {snakemake.params.fdr}",
    )
    save_figure(fig, snakemake.output.png)
