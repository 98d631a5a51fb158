# cd8exo: is CD8+ T-cell activation / exosome competence, per patient, associated with
# lower expression of exosome-cargo target genes (miR-765 -> PLP2, ...) in the malignant cells?
# This file is the table of contents; the rules live in workflow/rules/ by stage.

from snakemake.utils import min_version

min_version("9.0")


configfile: "config/config.yaml"


report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"
include: "workflow/rules/download.smk"
include: "workflow/rules/prepare.smk"
include: "workflow/rules/qc.smk"
include: "workflow/rules/identity.smk"
include: "workflow/rules/scoring.smk"
include: "workflow/rules/aggregate.smk"
include: "workflow/rules/associate.smk"
include: "workflow/rules/receiver.smk"
include: "workflow/rules/screen.smk"
include: "workflow/rules/plots.smk"
include: "workflow/rules/provenance.smk"
include: "workflow/rules/report.smk"


rule all:
    default_target: True
    input:
        final_outputs(),
