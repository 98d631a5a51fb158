"""Rule plot_scatters: one patient-level scatter per (signature, target) pair."""

from pathlib import Path

from cd8exo.io.tables import read_patient_table, read_table
from cd8exo.log import log_to
from cd8exo.patients.table import split_patient_table
from cd8exo.pl import pair_figure_path, save_figure
from cd8exo.pl.associations import pair_scatter
from cd8exo.pl.names import DisplayNames

with log_to(snakemake.log[0]):
    names = DisplayNames.from_files(snakemake.input.library, simulated=snakemake.params.simulated)
    sender, receiver = split_patient_table(read_patient_table(snakemake.input.patients))
    table = read_table(snakemake.input.table)
    out = Path(snakemake.output.folder)
    out.mkdir(parents=True, exist_ok=True)
    for _, row in table.iterrows():
        fig = pair_scatter(row, sender, receiver, names=names)
        save_figure(fig, pair_figure_path(out, row["signature"], row["target"]))
