"""Rule plot_concordance: how far the four scoring methods agree, per cell and per patient."""

from cd8exo.io.tables import read_table
from cd8exo.log import log_to
from cd8exo.pl import save_figure
from cd8exo.pl.names import DisplayNames
from cd8exo.pl.scoring import concordance_figure

with log_to(snakemake.log[0]):
    names = DisplayNames.from_files(snakemake.input.library, simulated=snakemake.params.simulated)
    table = read_table(snakemake.input.table)
    fig = concordance_figure(table, title=snakemake.wildcards.dataset, names=names)
    save_figure(fig, snakemake.output.png)
