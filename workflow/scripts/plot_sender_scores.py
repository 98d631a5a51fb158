"""Rule plot_sender_scores: signature scores of CD8 T cells, by patient."""

from cd8exo.io.tables import read_patient_table, read_scores
from cd8exo.log import log_to
from cd8exo.pl import save_figure
from cd8exo.pl.names import DisplayNames
from cd8exo.pl.scoring import sender_scores_figure

with log_to(snakemake.log[0]):
    names = DisplayNames.from_files(snakemake.input.library, simulated=snakemake.params.simulated)
    scores = read_scores(snakemake.input.scores)
    patients = read_patient_table(snakemake.input.patients)
    cd8 = scores[scores["cell_type"] == "CD8_T"]
    signatures = [c for c in scores.columns if c not in ("patient", "cell_type")]
    included = set(patients.loc[patients["included"], "patient"].astype(str))
    cd8 = cd8.assign(patient=cd8["patient"].astype(str))
    fig = sender_scores_figure(
        cd8,
        signatures=signatures,
        included=included,
        title=snakemake.wildcards.dataset,
        names=names,
    )
    save_figure(fig, snakemake.output.png)
