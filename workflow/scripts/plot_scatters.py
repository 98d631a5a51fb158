"""Rule plot_scatters: one patient-level scatter per (signature, target) pair."""

from pathlib import Path

from cd8exo.io.tables import read_patient_table, read_table
from cd8exo.log import log_to
from cd8exo.patients.table import split_patient_table
from cd8exo.pl import save_figure
from cd8exo.pl.associations import association_scatter

with log_to(snakemake.log[0]):
    sender, receiver = split_patient_table(read_patient_table(snakemake.input.patients))
    table = read_table(snakemake.input.table)
    out = Path(snakemake.output.folder)
    out.mkdir(parents=True, exist_ok=True)
    for row in table.itertuples():
        fig = association_scatter(
            sender[row.signature],
            receiver[row.target],
            signature=row.signature,
            target=row.target,
            rho=row.rho,
            q_value=row.q_value,
            ci=(row.ci_low, row.ci_high),
        )
        save_figure(fig, str(out / f"{row.signature}__{row.target}.png"))
