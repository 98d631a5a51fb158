"""Demo-sized inputs of every figure the workflow writes, drawn as its rule script draws them.

The demo cohorts have 16 and 24 patients, 4,000-4,800 cells, 4 sender signatures and 13
targets; the inputs here have that size (and a crowded variant: 60 patients, long names),
built in code with a fixed seed. Each case returns the figure its rule would save.
``FIGURE_SCRIPTS`` names the rule script each case stands for: the figure-standard test
fails when a rule script saves a figure no case draws.
"""

from __future__ import annotations

from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import scipy.sparse as sp

from cd8exo.cells.identity.cnv import CNVResult, cnv_to_anndata
from cd8exo.pl.associations import forest_plot, pair_scatter, rho_heatmap
from cd8exo.pl.cells import cnv_figure, umap_figure
from cd8exo.pl.figure1 import figure1
from cd8exo.pl.names import DisplayNames
from cd8exo.pl.receiver import mirna_panel, set_heatmap
from cd8exo.pl.scoring import concordance_figure, sender_scores_figure
from cd8exo.pl.screen import top_programs_figure
from cd8exo.stats.key_results import key_results_table
from cd8exo.stats.meta import meta_analysis
from cd8exo.vocabulary import CELL_TYPES

ROOT = Path(__file__).resolve().parents[3]
SIGNATURES = [
    "Chu2023_CD8_c2_Teff",
    "Cytotoxic_cells_Danaher2017",
    "Tcell_exhaustion_SignatuR",
    "Exosome_biogenesis_core_curated",
]
TARGET_TABLE = pd.read_csv(ROOT / "resources/targets/targets.tsv", sep="\t")
TARGETS = TARGET_TABLE["gene"].tolist()
NAMES = DisplayNames.from_files(
    ROOT / "resources/gene_sets/library.tsv", simulated=["demo_cohort", "demo_cohort_b"]
)


def patients(n: int, *, prefix: str = "MelB") -> list[str]:
    return [f"{prefix}{i:02d}" for i in range(1, n + 1)]


def umap_coords(n_patients: int = 24, n_cells: int = 4000, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    types = rng.choice(CELL_TYPES, size=n_cells)
    centre = {t: rng.normal(0, 6, 2) for t in CELL_TYPES}
    xy = np.array([centre[t] for t in types]) + rng.normal(0, 1, (n_cells, 2))
    return pd.DataFrame(
        {
            "UMAP1": xy[:, 0],
            "UMAP2": xy[:, 1],
            "cell_type": types,
            "patient": rng.choice(patients(n_patients), size=n_cells),
        }
    )


def cnv_stored(n_cells: int = 3000, seed: int = 0) -> ad.AnnData:
    rng = np.random.default_rng(seed)
    chromosomes = [f"chr{i}" for i in range(1, 23)] + ["chrX"]
    windows = 30 * len(chromosomes)
    matrix = sp.csr_matrix(rng.normal(0, 0.1, (n_cells, windows)).astype(np.float32))
    cells = pd.Index([f"c{i}" for i in range(n_cells)])
    cnv = CNVResult(
        matrix=matrix, obs_names=cells, chr_pos={c: 30 * i for i, c in enumerate(chromosomes)}
    )
    groups = pd.Series(rng.choice(["malignant", "non-malignant"], size=n_cells), index=cells)
    return cnv_to_anndata(cnv, groups=groups, note="infercnvpy, 12 reference clusters")


def cd8_scores(n_patients: int = 24, n_cells: int = 1500, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    table = pd.DataFrame(rng.normal(0, 0.3, (n_cells, len(SIGNATURES))), columns=SIGNATURES).assign(
        patient=rng.choice(patients(n_patients), size=n_cells), cell_type="CD8_T"
    )
    return table


def concordance(seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    methods = ["tirosh", "ucell", "aucell", "ssgsea"]
    rows = []
    for level, n in (("cell", 1500), ("patient", 24)):
        for i, a in enumerate(methods):
            for b in methods[i + 1 :]:
                if level == "cell" and "ssgsea" in (a, b):
                    continue
                rows += [
                    {
                        "level": level,
                        "signature": s,
                        "method_a": a,
                        "method_b": b,
                        "spearman": rng.uniform(0.5, 1),
                        "n": n,
                    }
                    for s in SIGNATURES
                ]
    return pd.DataFrame(rows)


def associations(seed: int = 0) -> pd.DataFrame:
    """Two demo-like datasets (15 and 23 patients) x 4 signatures x 13 targets."""
    rng = np.random.default_rng(seed)
    rows = []
    for dataset, n in (("demo_cohort", 15), ("demo_cohort_b", 23)):
        for signature in SIGNATURES:
            for target in TARGETS:
                rho = -0.85 if target == "PLP2" else rng.uniform(-0.3, 0.3)
                rows.append(
                    {
                        "dataset": dataset,
                        "signature": signature,
                        "target": target,
                        "n_patients": n,
                        "rho": rho,
                        "p_value": 1e-5 if target == "PLP2" else 0.5,
                        "q_value": 1e-4 if target == "PLP2" else 0.8,
                        "ci_low": max(-1.0, rho - 0.25),
                        "ci_high": min(1.0, rho + 0.25),
                        "perm_p_value": 1e-4 if target == "PLP2" else 0.5,
                        "perm_q_value": 1e-3 if target == "PLP2" else 0.8,
                        "specificity_p": 0.02,
                        "note": "",
                    }
                )
    return pd.DataFrame(rows)


CARGO = ["miR-765", "miR-298", "miR-155-5p", "miR-150-5p", "miR-142-3p", "miR-142-5p"]
SET_SOURCES = ["MSIGDB71_MIRDB", "MIRTARBASE8_ALL", "MIRTARBASE8_STRONG"]


def set_associations(n: int = 23, seed: int = 0) -> pd.DataFrame:
    """Set-level rows of one demo-like dataset: 4 signatures x 6 cargo miRNAs x 3 sources.

    As in the demo, the miRDB sets are tested (miR-765's planted: rho -0.7), the miRTarBase
    sets mostly skipped for coverage (their note says why), miR-142-3p's strong set tested.
    """
    rng = np.random.default_rng(seed)
    rows = []
    for signature in SIGNATURES:
        for mirna in CARGO:
            for source in SET_SOURCES:
                tested = source == "MSIGDB71_MIRDB" or (
                    mirna == "miR-142-3p" and source == "MIRTARBASE8_STRONG"
                )
                rho = (-0.7 if mirna == "miR-765" else rng.uniform(-0.4, 0.4)) if tested else np.nan
                rows.append(
                    {
                        "dataset": "demo_cohort_b",
                        "signature": signature,
                        "target": f"{mirna}__{source}",
                        "mirna": mirna,
                        "source": source,
                        "n_patients": n,
                        "rho": rho,
                        "q_value": (0.003 if rho < -0.6 else 0.7) if tested else np.nan,
                        "ci_low": max(-1.0, rho - 0.3) if tested else np.nan,
                        "ci_high": min(1.0, rho + 0.3) if tested else np.nan,
                        "perm_q_value": (0.003 if rho < -0.6 else 0.7) if tested else np.nan,
                        "set_specificity_p": (0.03 if rho < -0.6 else 0.6) if tested else np.nan,
                        "note": ""
                        if tested
                        else "target set skipped: only 96 of 350 genes scored (27%): 252 "
                        "missing, 2 removed by the overlap guard; below signatures.min_coverage=0.5",
                    }
                )
    return pd.DataFrame(rows)


def set_scores(sender: pd.DataFrame, seed: int = 0) -> pd.DataFrame:
    """Patients x target sets: miR-765's set falls with the sender latent, the others do not."""
    rng = np.random.default_rng(seed)
    latent = sender.mean(axis=1).to_numpy()
    n = len(sender)
    return pd.DataFrame(
        {
            f"{mirna}__{source}": (-0.2 * latent if mirna == "miR-765" else 0.0)
            + rng.normal(0, 0.05, n)
            for mirna in CARGO
            for source in SET_SOURCES
        },
        index=sender.index,
    )


def patient_tables(n: int = 23, seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    rng = np.random.default_rng(seed)
    index = pd.Index(patients(n), name="patient")
    latent = rng.normal(0, 1, n)
    sender = pd.DataFrame({s: latent + rng.normal(0, 0.3, n) for s in SIGNATURES}, index=index)
    receiver = pd.DataFrame({t: 5 - latent + rng.normal(0, 0.4, n) for t in TARGETS}, index=index)
    return sender, receiver


def prerank(seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    hallmark = [
        line.split("\t")[0]
        for line in (ROOT / "resources/gene_sets/h.all.v7.0.symbols.gmt").read_text().splitlines()
    ]
    return pd.DataFrame(
        [
            {
                "signature": s,
                "term": t,
                "nes": rng.normal(0, 1.5),
                "fdr_q_value": rng.uniform(0, 1) ** 3,
                "permutations": 1000,
            }
            for s in SIGNATURES
            for t in hallmark
        ]
    )


def case_figures() -> dict[str, object]:
    """``name -> figure`` of every case (each drawn afresh)."""
    table = associations()
    meta = meta_analysis(table)
    sender, receiver = patient_tables()
    plp2 = table[(table["dataset"] == "demo_cohort_b") & (table["target"] == "PLP2")].iloc[0]
    untested = plp2.copy()
    untested["rho"] = np.nan
    untested["note"] = "2 of 8 patients have >= 10 CD8 T cells and >= 20 malignant cells"
    sets = set_associations()
    plp2_rows = table[(table["dataset"] == "demo_cohort_b") & (table["target"] == "PLP2")]

    def panel(mirna: str, genes: pd.DataFrame):
        return lambda: mirna_panel(
            mirna,
            sets=sets,
            genes=genes,
            sender=sender,
            set_scores=set_scores(sender),
            expression=receiver,
            dataset="demo_cohort_b",
            names=NAMES,
        )

    return {
        "target_set_panel": panel("miR-765", plp2_rows),
        "target_set_panel_two_sets": panel("miR-142-3p", plp2_rows.iloc[:0]),
        "target_set_panel_untested": lambda: mirna_panel(
            "miR-765",
            sets=sets.assign(rho=np.nan),
            genes=plp2_rows.iloc[:0],
            sender=sender,
            set_scores=set_scores(sender),
            expression=receiver,
            dataset="demo_cohort_b",
            names=NAMES,
        ),
        "target_set_heatmap": lambda: set_heatmap(
            sets, title="demo_cohort_b: * q < 0.05 (target-set family)", names=NAMES
        ),
        "umap": lambda: umap_figure(umap_coords(), title="demo_cohort_b", names=NAMES),
        "umap_60_patients": lambda: umap_figure(
            umap_coords(60, 8000), title="crowded", names=NAMES
        ),
        "umap_empty": lambda: umap_figure(umap_coords().iloc[:0], title="x", names=NAMES),
        "cnv_heatmap": lambda: cnv_figure(cnv_stored(), title="demo_cohort", names=NAMES),
        "cnv_none": lambda: cnv_figure(cnv_to_anndata(None, note="no reference cells"), title="x"),
        "sender_scores": lambda: sender_scores_figure(
            cd8_scores(), signatures=SIGNATURES, title="demo_cohort_b", names=NAMES
        ),
        "sender_scores_60_patients": lambda: sender_scores_figure(
            cd8_scores(60, 4000), signatures=SIGNATURES, title="crowded", names=NAMES
        ),
        "sender_scores_empty": lambda: sender_scores_figure(
            cd8_scores().iloc[:0], signatures=SIGNATURES, title="x"
        ),
        "concordance": lambda: concordance_figure(concordance(), title="demo_cohort", names=NAMES),
        "rho_heatmap": lambda: rho_heatmap(
            table[table["dataset"] == "demo_cohort"], title="demo_cohort", names=NAMES
        ),
        "scatter": lambda: pair_scatter(plp2, sender, receiver, names=NAMES),
        "scatter_untested": lambda: pair_scatter(untested, sender, receiver, names=NAMES),
        "forest": lambda: forest_plot(
            table, meta, signature="Chu2023_CD8_c2_Teff", target="PLP2", names=NAMES
        ),
        "top_programs": lambda: top_programs_figure(prerank(), n=10, names=NAMES),
        "figure1": lambda: figure1(
            key_results_table(table, meta, TARGET_TABLE, simulated=NAMES.simulated),
            {"demo_cohort": patient_tables(15, 1), "demo_cohort_b": (sender, receiver)},
            signature="Chu2023_CD8_c2_Teff",
            names=NAMES,
        ),
    }


#: The rule scripts that save figures, and the cases that draw what they save.
FIGURE_SCRIPTS: dict[str, list[str]] = {
    "plot_umap.py": ["umap", "umap_60_patients", "umap_empty"],
    "plot_cnv_heatmap.py": ["cnv_heatmap", "cnv_none"],
    "plot_sender_scores.py": ["sender_scores", "sender_scores_60_patients", "sender_scores_empty"],
    "plot_concordance.py": ["concordance"],
    "plot_rho_heatmap.py": ["rho_heatmap"],
    "plot_scatters.py": ["scatter", "scatter_untested"],
    "plot_forests.py": ["forest"],
    "plot_top_programs.py": ["top_programs"],
    "summarise_key_results.py": ["figure1"],
    "plot_target_sets.py": [
        "target_set_panel",
        "target_set_panel_two_sets",
        "target_set_panel_untested",
        "target_set_heatmap",
    ],
}
