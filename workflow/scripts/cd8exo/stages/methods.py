"""The methods text of a run (``results/summary/methods.md``), generated from what was run.

Every parameter comes from the effective configuration recorded in ``run_info`` (schema
defaults filled in), the software versions from the same record, the datasets from the
sheet, and the references (with DOIs) from ``resources/references/references.tsv`` and the
dataset registry's citations.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pandas as pd

if TYPE_CHECKING:
    from collections.abc import Mapping

__all__ = ["methods_markdown"]


def _datasets_text(sheet: pd.DataFrame, citations: Mapping[str, str]) -> list[str]:
    lines = []
    for dataset, row in sheet.iterrows():
        simulated = str(row.get("simulated", "")).lower() == "true"
        what = "**SIMULATED** " if simulated else ""
        source = citations.get(str(dataset)) or str(row.get("description", "") or "")
        registry = str(row.get("registry_id", "") or "")
        origin = f"public dataset {registry}" if registry else f"file {row.get('path', '')}"
        lines.append(f"- `{dataset}`: {what}{origin}. {source}".rstrip())
    return lines


def _steps(config: Mapping[str, Any]) -> list[str]:
    c = config
    a = c["association"]
    s = c["scoring"]
    screen = c.get("screen", {})
    gmt = ", ".join(c["signatures"]["gmt"])
    steps = [
        f"1. **Quality control.** Cells with fewer than {c['qc']['min_genes']} detected genes or "
        f"a mitochondrial fraction above {c['qc']['max_mito_fraction']} were removed.",
        "2. **Cell identity.** The authors' labels were mapped onto a fixed vocabulary; CD8+ T "
        "cells and malignant cells were otherwise inferred (marker gating on kNN neighbourhoods "
        f"and Leiden clusters, resolution {c['identity']['resolution']}; infercnvpy copy-number "
        "profiles with lineage markers), with inference forced: "
        f"{c['identity']['force_inference']}, agreement with hidden author labels computed: "
        f"{c['identity']['agreement']}.",
        f"3. **Sender scores.** Signatures from {gmt} were matched to each dataset through HGNC "
        "aliases, stripped of receiver-side genes (overlap guard) and kept when at least "
        f"{c['signatures']['min_coverage']} of their genes were found; every cell was scored with "
        f"the {s['method']} method ({s['n_bins']} expression bins, {s['ctrl_size']} control genes "
        f"per bin; UCell max rank {s['ucell_max_rank']}; AUCell ties {s['aucell_ties']}), and "
        "scores were averaged over each patient's CD8+ T cells.",
        f"4. **Targets.** Genes of {c['targets']['table']} (plus {c['targets'].get('extra') or 'none'}) "
        "were measured as pseudobulk (log2 CPM+1) of each patient's malignant cells. Patients "
        f"with fewer than {c['aggregation']['min_cd8_cells']} CD8+ T cells or "
        f"{c['aggregation']['min_malignant_cells']} malignant cells were excluded.",
        "5. **Association across patients** (the patient is the unit of inference): Spearman rho "
        f"in datasets with at least {a['min_patients']} patients, a percentile bootstrap "
        f"{a['ci_level']:.0%} CI over patients ({a['n_boot']} resamples), a patient-label "
        f"permutation p value ({a['n_perm']} permutations; exact up to 8 patients), "
        f"Benjamini-Hochberg q values at FDR {a['fdr']} over the family '{a['family']}' "
        "(asymptotic and permutation p separately), a partial Spearman rho adjusted for "
        f"{', '.join(a['covariates'])}, leave-one-patient-out influence, and a specificity p value "
        f"against {a['n_random_sets']} random gene sets matched to each signature in size and "
        "expression.",
        "6. **Meta-analysis.** Datasets were pooled per signature and target by DerSimonian-Laird "
        "random effects on Fisher z (variance 1/(n-3)), with tau^2, I^2 and Cochran's Q; with two "
        "datasets tau^2 rests on one degree of freedom and the pooled interval is unstable.",
    ]
    if c["targets"].get("mirna_gmt"):
        steps.append(
            f"{len(steps) + 1}. **Cargo miRNA target sets.** The target sets in "
            f"{c['targets']['mirna_gmt']} of the miRNAs listed in {c['targets']['cargo_table']} "
            "(miRDB predictions, miRTarBase validated and strongly validated targets) were "
            "matched like the signatures, stripped of sender-signature genes, kept at the same "
            f"minimum coverage, scored in every malignant cell with the {s['method']} method and "
            "averaged per patient. Each (signature, set) pair was tested like a target gene, "
            "with q values over the set-level pairs alone, plus a set-specificity p value against "
            f"{a['n_random_sets']} random gene sets matched to the set in size and malignant-cell "
            "expression; the expected direction is negative (repression)."
        )
    if screen.get("enabled"):
        steps.append(
            f"{len(steps) + 1}. **Tumour-side screen.** Every gene expressed in the malignant cells (at least "
            f"{screen['min_cpm']} CPM in {screen['min_cells_fraction']:.0%} of cells) was ranked by "
            "its Spearman rho with each signature across patients and tested by preranked GSEA "
            f"({screen['permutations']} permutations, gene sets of {screen['min_size']}-"
            f"{screen['max_size']} genes) on {', '.join(screen['gmt'])}."
        )
    steps.append(
        f"The random seed of every step was {c['seed']}. Figures follow one standard (89 or 183 mm "
        "wide, 6-8 pt text, PDF and SVG with text as text, 300 dpi PNG, Okabe-Ito colours)."
    )
    return steps


def methods_markdown(
    info: Mapping[str, Any],
    *,
    sheet: pd.DataFrame,
    references: pd.DataFrame,
    dataset_citations: Mapping[str, str] | None = None,
) -> str:
    """The methods text, in Markdown.

    Parameters
    ----------
    info
        ``results/summary/run_info.yaml`` (``config``, ``software``, ``inputs``, ``seed``).
    sheet
        The validated dataset sheet, indexed by dataset.
    references
        ``resources/references/references.tsv`` (``key``, ``used_for``, ``citation``, ``doi``).
    dataset_citations
        The registry citation of each public dataset of the run.
    """
    config = info["config"]
    software = info.get("software", {})
    packages = software.get("packages", {})
    lines = ["# Methods (generated by cd8exo from this run)", ""]
    lines += ["## Data", "", *_datasets_text(sheet, dataset_citations or {}), ""]
    lines += ["## Analysis", "", *_steps(config), ""]
    lines += [
        "## Software",
        "",
        f"Python {software.get('python', '?')} on {software.get('platform', '?')}; "
        + ", ".join(f"{name} {version}" for name, version in packages.items())
        + ".",
        "",
        "## Input files (sha256)",
        "",
        *[f"- `{path}`: `{digest}`" for path, digest in info.get("inputs", {}).items()],
        "",
        "## References",
        "",
    ]
    for i, row in enumerate(references.itertuples(), start=1):
        doi = f" doi:[{row.doi}](https://doi.org/{row.doi})" if str(row.doi or "") else ""
        lines.append(f"{i}. {row.citation}{doi} ({row.used_for})")
    lines.append("")
    return "\n".join(lines)
