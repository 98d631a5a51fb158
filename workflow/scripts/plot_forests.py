"""Rule plot_forests: one forest plot per (signature, target) of any dataset (untested pairs say why)."""

from pathlib import Path

from cd8exo.io.tables import read_table
from cd8exo.log import log_to
from cd8exo.pl import pair_figure_path, save_figure
from cd8exo.pl.associations import forest_plot

with log_to(snakemake.log[0]):
    associations = read_table(snakemake.input.associations)
    meta = read_table(snakemake.input.meta)
    out = Path(snakemake.output.folder)
    out.mkdir(parents=True, exist_ok=True)
    for row in meta.itertuples():
        fig = forest_plot(
            associations,
            meta,
            signature=row.signature,
            target=row.target,
            level=snakemake.params.level,
        )
        save_figure(fig, pair_figure_path(out, row.signature, row.target))
