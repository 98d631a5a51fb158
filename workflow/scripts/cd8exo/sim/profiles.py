"""Cell-type tables of the simulator: composition, expression profiles and library depth.

Every table is keyed by the cell types of :data:`TYPES` (names of
:data:`cd8exo.vocabulary.CELL_TYPES`); :func:`cell_type_profiles` turns them into the expected
expression of every gene in every type, :func:`composition` into cells per patient and type.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

__all__ = [
    "DEPTH_FACTOR",
    "HOUSEKEEPING_GENES",
    "MARKER_GENES",
    "MITOCHONDRIAL_GENES",
    "MT_PROFILE",
    "TYPES",
    "cell_type_profiles",
    "composition",
]

# Cohort-wide expected cell-type composition of a melanoma biopsy (fractions of cells).
_BASE_PROPORTIONS: dict[str, float] = {
    "CD8_T": 0.125,
    "CD4_T": 0.09,
    "NK": 0.04,
    "B": 0.05,
    "plasma": 0.03,
    "myeloid": 0.10,
    "fibroblast": 0.10,
    "endothelial": 0.065,
    "malignant": 0.40,
}


#: The simulated cell types, in the row order of the profiles and composition.
TYPES: tuple[str, ...] = tuple(_BASE_PROPORTIONS)


#: Cell-type marker genes: gene -> {cell type: expected UMIs per 10,000 in that type}.
#: Types not listed express the gene at ~0.5% of its lowest listed level.
#: Genes follow scGate (CD8 identity), Tirosh 2016 Table S3 (melanoma, CAF, endothelial)
#: and common knowledge; see ``/work/shared/reference/markers/``.
MARKER_GENES: dict[str, dict[str, float]] = {
    # pan-immune
    "PTPRC": dict.fromkeys(("CD8_T", "CD4_T", "NK", "B", "myeloid"), 25.0) | {"plasma": 5.0},
    # T cells (alpha-beta TCR, CD3 complex, CD2)
    "CD3D": {"CD8_T": 30.0, "CD4_T": 30.0},
    "CD3E": {"CD8_T": 20.0, "CD4_T": 20.0},
    "CD3G": {"CD8_T": 12.0, "CD4_T": 12.0},
    "CD2": {"CD8_T": 15.0, "CD4_T": 12.0, "NK": 8.0},
    "TRAC": {"CD8_T": 25.0, "CD4_T": 25.0},
    "TRBC1": {"CD8_T": 15.0, "CD4_T": 15.0},
    "TRBC2": {"CD8_T": 30.0, "CD4_T": 30.0},
    # CD8 vs CD4
    "CD8A": {"CD8_T": 20.0},
    "CD8B": {"CD8_T": 15.0},
    "CD4": {"CD4_T": 8.0, "myeloid": 3.0},
    "FOXP3": {"CD4_T": 3.0},
    "IL7R": {"CD4_T": 15.0, "CD8_T": 4.0},
    # NK (NKG7 and KLRD1 are also expressed by effector CD8+ T cells)
    "NKG7": {"NK": 60.0, "CD8_T": 20.0},
    "KLRD1": {"NK": 25.0, "CD8_T": 6.0},
    "NCR1": {"NK": 6.0},
    "FCGR3A": {"NK": 20.0, "myeloid": 6.0, "CD8_T": 1.0},
    # B and plasma cells
    "MS4A1": {"B": 30.0},
    "CD19": {"B": 6.0},
    "CD79A": {"B": 30.0, "plasma": 20.0},
    "MZB1": {"plasma": 80.0, "B": 2.0},
    "JCHAIN": {"plasma": 150.0},
    "IGKC": {"plasma": 800.0, "B": 60.0},
    "IGHG1": {"plasma": 400.0},
    # myeloid
    "CD14": {"myeloid": 20.0},
    "LYZ": {"myeloid": 150.0},
    "CD68": {"myeloid": 25.0},
    "C1QA": {"myeloid": 40.0},
    "TYROBP": {"myeloid": 60.0, "NK": 20.0},
    # cancer-associated fibroblasts
    "COL1A1": {"fibroblast": 120.0},
    "COL1A2": {"fibroblast": 100.0},
    "COL3A1": {"fibroblast": 120.0},
    "DCN": {"fibroblast": 60.0},
    "LUM": {"fibroblast": 40.0},
    # endothelial
    "PECAM1": {"endothelial": 25.0},
    "VWF": {"endothelial": 40.0},
    "CLDN5": {"endothelial": 20.0},
    "RAMP2": {"endothelial": 30.0},
    # melanoma malignant cells (Tirosh 2016)
    "MIA": {"malignant": 60.0},
    "PMEL": {"malignant": 40.0},
    "MLANA": {"malignant": 40.0},
    "TYR": {"malignant": 12.0},
    "SOX10": {"malignant": 10.0},
    "MITF": {"malignant": 8.0},
    "S100B": {"malignant": 30.0},
}


#: Mitochondrially encoded genes (the 13 protein-coding genes of chrM).
MITOCHONDRIAL_GENES: tuple[str, ...] = (
    "MT-ND1",
    "MT-ND2",
    "MT-CO1",
    "MT-CO2",
    "MT-ATP8",
    "MT-ATP6",
    "MT-CO3",
    "MT-ND3",
    "MT-ND4L",
    "MT-ND4",
    "MT-ND5",
    "MT-ND6",
    "MT-CYB",
)


# Relative abundance of each MT gene within the mitochondrial fraction.
_MT_WEIGHTS = np.array([6, 4, 14, 10, 2, 9, 12, 3, 1, 10, 3, 1, 8], dtype=float)

#: Share of each of :data:`MITOCHONDRIAL_GENES` in a cell's mitochondrial reads.
MT_PROFILE: np.ndarray = _MT_WEIGHTS / _MT_WEIGHTS.sum()


#: Housekeeping and ribosomal genes: gene -> UMIs per 10,000 in every cell type.
HOUSEKEEPING_GENES: dict[str, float] = {
    "ACTB": 150.0,
    "GAPDH": 80.0,
    "PGK1": 15.0,
    "B2M": 200.0,
    "TMSB4X": 200.0,
    "EEF1A1": 200.0,
    "TPT1": 120.0,
    "FTL": 120.0,
    "FTH1": 120.0,
    "MALAT1": 250.0,
    "PPIA": 40.0,
    "UBC": 30.0,
    "HSP90AB1": 40.0,
    "RPLP0": 80.0,
    "RPL3": 90.0,
    "RPL4": 70.0,
    "RPL7": 70.0,
    "RPL10": 110.0,
    "RPL13": 120.0,
    "RPL13A": 120.0,
    "RPL32": 80.0,
    "RPL34": 80.0,
    "RPL41": 150.0,
    "RPS2": 90.0,
    "RPS3": 80.0,
    "RPS6": 90.0,
    "RPS12": 110.0,
    "RPS18": 110.0,
    "RPS27": 130.0,
}


# Effector / exhaustion genes whose expression is restricted to cytotoxic lymphocytes;
# other signature genes are modelled as broadly expressed.
_CYTOTOXIC_LYMPHOCYTE_GENES: frozenset[str] = frozenset(
    [
        "GZMA",
        "GZMB",
        "GZMH",
        "GZMK",
        "GZMM",
        "PRF1",
        "GNLY",
        "NKG7",
        "KLRD1",
        "KLRB1",
        "KLRK1",
        "KLRG1",
        "CTSW",
        "FGFBP2",
        "CX3CR1",
        "S1PR5",
        "SPON2",
        "FCRL6",
        "ADGRG1",
        "TBX21",
        "HOPX",
        "LAIR2",
        "SAMD3",
        "MATK",
        "BIN2",
        "MYO1F",
        "MYO1G",
        "TTC38",
        "TTC16",
        "C12orf75",
        "PATL2",
        "CD300A",
        "ASCL2",
        "EOMES",
        "IFNG",
        "FASLG",
        "CD8A",
        "CD8B",
        "HAVCR2",
        "CTLA4",
        "PDCD1",
        "TIGIT",
        "LAG3",
        "TOX",
        "CXCL13",
        "ENTPD1",
        "LAYN",
        "CD244",
        "TNFRSF9",
        "CCL5",
        "CCL4",
        "CCL3",
        "XCL1",
        "XCL2",
    ]
)


# Expression of tumour-side target genes (UMIs per 10,000) in malignant and myeloid cells.
_TARGET_LEVELS: dict[str, dict[str, float]] = {
    "PLP2": {"malignant": 6.0},
    "CXCL9": {"malignant": 1.5, "myeloid": 15.0},
    "CXCL10": {"malignant": 2.0, "myeloid": 20.0},
    "STAT1": {"malignant": 8.0},
    "CD274": {"malignant": 1.0, "myeloid": 3.0},
}


# Patients other than the planted low-CD8 ones get at least this many CD8+ T cells.
_MIN_CD8 = 12


#: Per-cell-type library-size multiplier (lymphocytes are small, tumour and stromal cells large).
DEPTH_FACTOR: dict[str, float] = {
    "CD8_T": 0.7,
    "CD4_T": 0.7,
    "NK": 0.75,
    "B": 0.7,
    "plasma": 1.4,
    "myeloid": 1.2,
    "fibroblast": 1.3,
    "endothelial": 1.1,
    "malignant": 1.35,
}


def cell_type_profiles(
    genes: np.ndarray,
    *,
    gene_index: Mapping[str, int],
    signature_genes: Sequence[str],
    targets: Sequence[str],
    is_mt: np.ndarray,
    rng: np.random.Generator,
) -> np.ndarray:
    """Expected UMIs per 10k of every gene in every cell type (types x genes)."""
    n_types, n_genes = len(TYPES), genes.size
    # Background: log-normal abundances, scaled so that most genes are rarely detected,
    # and a cell-type deviation on every gene.
    base = np.exp(rng.normal(np.log(0.4), 1.5, size=n_genes))
    profiles = base[None, :] * np.exp(rng.normal(0.0, 0.6, size=(n_types, n_genes)))

    def set_levels(gene: str, levels: Mapping[str, float], *, jitter_sd: float = 0.15) -> None:
        i = gene_index[gene]
        floor = 0.005 * min(levels.values())
        jitter = np.exp(rng.normal(0.0, jitter_sd, size=n_types))
        profiles[:, i] = [levels.get(t, floor) for t in TYPES] * jitter

    for gene in sorted(set(signature_genes)):
        level = float(np.exp(rng.normal(np.log(3.0), 0.6)))
        if gene in _CYTOTOXIC_LYMPHOCYTE_GENES:
            set_levels(gene, {"CD8_T": level, "NK": 1.5 * level, "CD4_T": 0.3 * level})
        else:
            # broadly expressed (e.g. ESCRT machinery), varying between cell types
            set_levels(gene, dict.fromkeys(TYPES, level), jitter_sd=0.5)
    for gene in targets:
        if gene in HOUSEKEEPING_GENES:
            continue
        levels = _TARGET_LEVELS.get(gene, {"malignant": 4.0})
        floor = dict.fromkeys(TYPES, 0.5)
        set_levels(gene, floor | levels)
    for gene, levels in MARKER_GENES.items():
        set_levels(gene, levels)
    for gene, level in HOUSEKEEPING_GENES.items():
        set_levels(gene, dict.fromkeys(TYPES, level))
    profiles[:, is_mt] = 1.0  # placeholder: mitochondrial reads are added per cell
    return profiles


def composition(
    n_patients: int, n_cells: int, *, low_cd8_patients: int, rng: np.random.Generator
) -> np.ndarray:
    """Cells per patient and cell type (patients x types)."""
    per_patient = rng.multinomial(n_cells, rng.dirichlet(np.full(n_patients, 30.0)))
    base = np.array([_BASE_PROPORTIONS[t] for t in TYPES])
    counts = np.vstack([rng.multinomial(n, rng.dirichlet(base * 80.0)) for n in per_patient])
    cd8, malignant = TYPES.index("CD8_T"), TYPES.index("malignant")
    low = np.sort(rng.choice(n_patients, size=low_cd8_patients, replace=False))
    for p in range(n_patients):
        if p in low:
            kept = int(rng.integers(2, 8))
            counts[p, malignant] += max(counts[p, cd8] - kept, 0)
            counts[p, cd8] = min(kept, counts[p, cd8])
        elif counts[p, cd8] < _MIN_CD8:
            # only the planted low-CD8 patients may fall below the workflow's threshold
            moved = min(_MIN_CD8 - counts[p, cd8], counts[p, malignant] - 1)
            counts[p, cd8] += moved
            counts[p, malignant] -= moved
    return counts
