"""Rule plot_target_sets: per cargo miRNA the patient-level scatters; the signatures x miRNAs heatmap."""

from pathlib import Path

from cd8exo._utils import file_name_problem
from cd8exo.errors import InputError
from cd8exo.io.tables import read_patient_table, read_table, read_targets
from cd8exo.log import log_to
from cd8exo.patients.table import split_patient_table
from cd8exo.pl import save_figure
from cd8exo.pl.names import DisplayNames
from cd8exo.pl.receiver import mirna_panel, set_heatmap

with log_to(snakemake.log[0]):
    inputs, dataset = snakemake.input, snakemake.wildcards.dataset
    names = DisplayNames.from_files(inputs.library, simulated=snakemake.params.simulated)
    sender, expression = split_patient_table(read_patient_table(inputs.patients))
    set_scores = read_table(inputs.scores, index_col="patient").reindex(sender.index)
    sets, genes = read_table(inputs.sets), read_table(inputs.genes)
    targets = read_targets(inputs.targets)
    cargo = targets.get("cargo", targets["gene"].iloc[:0]).astype(str)
    out = Path(snakemake.output.folder)
    out.mkdir(parents=True, exist_ok=True)
    for mirna in dict.fromkeys(sets["mirna"].astype(str)):
        if file_name_problem(mirna):
            msg = f"cargo miRNA {mirna!r} cannot name a figure file; rename it."
            raise InputError(msg)
        validated = targets.loc[cargo == mirna, "gene"]
        fig = mirna_panel(
            mirna,
            sets=sets,
            genes=genes[genes["target"].isin(validated)],
            sender=sender,
            set_scores=set_scores,
            expression=expression,
            dataset=dataset,
            names=names,
        )
        save_figure(fig, out / f"{mirna}.png")  # and .pdf, .svg beside it
    fdr = snakemake.params.fdr
    title = f"{dataset}: Spearman \u03c1, * q < {fdr} (target-set family)"
    save_figure(set_heatmap(sets, fdr=fdr, title=title, names=names), snakemake.output.png)
