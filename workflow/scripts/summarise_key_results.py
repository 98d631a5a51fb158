"""Rule summarise_key_results: the key results table, figure 1 and the report's landing page."""

from cd8exo.io.html import html_table_page, write_summary_table, write_text
from cd8exo.io.tables import read_patient_table, read_table, read_targets
from cd8exo.log import log_to
from cd8exo.patients.table import concatenate, split_patient_table
from cd8exo.pl import save_figure
from cd8exo.pl.figure1 import figure1
from cd8exo.pl.names import DisplayNames
from cd8exo.stages.report import landing_page, simulated_banner, target_set_sentences
from cd8exo.stats.key_results import key_results_table, primary_signature

with log_to(snakemake.log[0]):
    inputs, output, params = snakemake.input, snakemake.output, snakemake.params
    names = DisplayNames.from_files(inputs.library, simulated=params.simulated)
    associations = concatenate([read_table(path) for path in inputs.associations])
    targets = read_targets(inputs.targets)
    key = key_results_table(
        associations, read_table(inputs.meta), targets, simulated=params.simulated
    )
    write_summary_table(key, output.table)
    signature = primary_signature(associations, params.primary_signature)
    patients = {
        dataset: split_patient_table(read_patient_table(path))
        for dataset, path in zip(params.datasets, inputs.patients, strict=True)
    }
    save_figure(figure1(key, patients, signature=signature, names=names), output.png)
    html_table_page(
        key,
        output.html,
        title="Key results: the miRNA targets and the controls, every signature",
        caption="Per dataset and pooled (DerSimonian-Laird); rho with its 95% CI, permutation p and q, specificity p. Hover a number for its exact value.",
        banner=simulated_banner(params.simulated),
    )
    # the primary targets' miRNAs at set level (their own FDR family), when sets are tested
    primary = targets[targets["role"] == "mirna_target"] if "role" in targets else targets.iloc[:0]
    sets = concatenate([read_table(path) for path in inputs.sets]) if inputs.sets else None
    set_sentences = target_set_sentences(
        sets,
        signature=signature,
        mirnas=primary.get("cargo", primary["gene"].iloc[:0]).astype(str).tolist(),
        names=names,
    )
    page = landing_page(
        key,
        signature=signature,
        datasets=read_table(inputs.datasets),
        sheet=params.sheet,
        names=names,
        figure_png=output.png,
        set_sentences=set_sentences,
    )
    write_text(page, output.landing)
