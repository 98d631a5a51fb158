"""Rule plot_cnv_heatmap: inferred copy-number profiles (cells by group x genome)."""

import anndata as ad

from cd8exo.log import log_to
from cd8exo.pl import save_figure
from cd8exo.pl.cells import cnv_figure
from cd8exo.pl.names import DisplayNames

with log_to(snakemake.log[0]):
    names = DisplayNames.from_files(snakemake.input.library, simulated=snakemake.params.simulated)
    figure = cnv_figure(
        ad.read_h5ad(snakemake.input.cnv),
        title=snakemake.wildcards.dataset,
        rng=snakemake.params.seed,
        names=names,
    )
    save_figure(figure, snakemake.output.png)
