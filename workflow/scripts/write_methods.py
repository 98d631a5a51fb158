"""Rule write_methods: the methods text of this run (parameters, versions, references with DOIs)."""

import yaml

from cd8exo.io.html import markdown_page, write_text
from cd8exo.io.tables import read_tsv
from cd8exo.log import log_to
from cd8exo.stages.methods import methods_markdown
from cd8exo.stages.report import simulated_banner

with log_to(snakemake.log[0]):
    with open(snakemake.input.run_info, encoding="utf-8") as handle:
        info = yaml.safe_load(handle)
    sheet = read_tsv(snakemake.input.sheet, what="dataset sheet", dtype=str).set_index("dataset")
    text = methods_markdown(
        info,
        sheet=sheet,
        references=read_tsv(snakemake.input.references, what="reference table").fillna(""),
        dataset_citations=snakemake.params.citations,
    )
    write_text(text, snakemake.output.markdown)
    markdown_page(
        text,
        snakemake.output.html,
        title="Methods",
        banner=simulated_banner(snakemake.params.simulated),
    )
