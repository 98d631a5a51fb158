"""cd8exo: sender-state -> receiver-target analysis of tumour single-cell RNA-seq.

Does a patient's CD8+ T-cell activation / exosome competence go with lower
expression, in that patient's malignant cells, of the genes that CD8+ T-cell
exosome cargo is reported to silence (e.g. miR-765 -> PLP2)?

The package holds all analysis logic and never imports Snakemake; the rule
scripts under ``workflow/scripts/`` only unpack ``snakemake`` and call it.
"""

__version__ = "0.1.0"
