"""Rule render_tables: the main summary tables as sortable, searchable HTML pages for the report."""

import pandas as pd

from cd8exo.io.html import html_table_page
from cd8exo.io.tables import read_table
from cd8exo.log import log_to
from cd8exo.stages.report import simulated_banner

# the columns a reader needs first; the TSV beside each page has them all
SHORT = {
    "associations": [
        "dataset",
        "signature",
        "target",
        "n_patients",
        "rho",
        "ci_low",
        "ci_high",
        "perm_p_value",
        "perm_q_value",
        "q_value",
        "specificity_p",
        "partial_rho",
        "loo_max_delta",
        "loo_patient",
        "note",
    ],
    "receiver_sets": [
        "dataset",
        "signature",
        "mirna",
        "source",
        "target",
        "n_patients",
        "rho",
        "ci_low",
        "ci_high",
        "perm_p_value",
        "perm_q_value",
        "q_value",
        "set_specificity_p",
        "partial_rho",
        "loo_max_delta",
        "note",
    ],
}
TITLES = {
    "associations": "Associations (main columns; all 26 in results/summary/associations.tsv)",
    "meta": "Random-effects meta-analysis across datasets",
    "datasets": "Datasets: analysed, partly or not testable, and why",
    "patients": "Patients: cell counts, scores, target expression, inclusion",
    "run_info": "Run information: software, configuration, checksums, seed",
    "truth": "Planted truth vs recovered (simulated data)",
    "receiver_sets": "Target-set associations (q values in the target-set family; "
    "all columns in results/summary/receiver_set_associations.tsv)",
}
# optional inputs (an empty list when not made) and what their page says then
MISSING = {
    "truth": "no dataset has a planted truth (only simulated data have one)",
    "receiver_sets": "no target set was tested (targets.mirna_gmt is null)",
}

with log_to(snakemake.log[0]):
    banner = simulated_banner(snakemake.params.simulated)
    for name, title in TITLES.items():
        paths = getattr(snakemake.input, name, None)
        path = paths[0] if isinstance(paths, list) and paths else paths
        table = read_table(path) if path else pd.DataFrame({"note": [MISSING[name]]})
        columns = [c for c in SHORT.get(name, table.columns) if c in table.columns]
        html_table_page(table[columns], snakemake.output[name], title=title, banner=banner)
