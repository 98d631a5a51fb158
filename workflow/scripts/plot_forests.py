"""Rule plot_forests: one forest plot per (signature, target) of any dataset (untested pairs say why)."""

from pathlib import Path

from cd8exo.io.tables import read_table
from cd8exo.log import log_to
from cd8exo.patients.table import concatenate
from cd8exo.pl import pair_figure_path, save_figure
from cd8exo.pl.associations import forest_plot
from cd8exo.pl.names import DisplayNames

with log_to(snakemake.log[0]):
    names = DisplayNames.from_files(snakemake.input.library, simulated=snakemake.params.simulated)
    associations = concatenate([read_table(path) for path in snakemake.input.associations])
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
            names=names,
        )
        save_figure(fig, pair_figure_path(out, row.signature, row.target))
