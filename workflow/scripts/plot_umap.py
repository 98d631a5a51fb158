"""Rule plot_umap: UMAP coloured by cell type and by patient."""

from cd8exo.io.tables import read_table
from cd8exo.log import log_to
from cd8exo.pl import save_figure
from cd8exo.pl.cells import umap_figure
from cd8exo.pl.names import DisplayNames

with log_to(snakemake.log[0]):
    names = DisplayNames.from_files(snakemake.input.library, simulated=snakemake.params.simulated)
    coords = read_table(snakemake.input.umap)
    save_figure(
        umap_figure(coords, title=snakemake.wildcards.dataset, names=names), snakemake.output.png
    )
