"""Miniature files in the exact published layouts of the public datasets, with their quirks.

Each ``<id>_files(rng)`` returns ``({file name: bytes}, values)``: the files as the registry
(resources/datasets/registry.yaml) names them, and the matrix written, so tests can compare
what a reader returns with what was planted (`type_of` and `value`, at the end, read the
harmonised result back for the assertions). The layouts follow the real files (see
``PROVENANCE_data.md`` in the shared reference folder):

- GSE115978 (Jerby-Arnon 2018): R ``write.csv`` CSVs, counts genes x cells and
  cell.annotations (another row order than the matrix; "?" = not assigned; Mel129pa and
  Mel129pb are two samples of one patient).
- GSE72056 (Tirosh 2016): TSV with 3 metadata rows, log2(TPM/10+1), Excel-damaged gene names
  (``1-Mar`` twice, ``1-Sep``) and a duplicated gene.
- GSE103322 (Puram 2017): TSV with an empty corner cell, 5 metadata rows (one name with two
  spaces), gene names in single quotes, the patient only in the cell id.
- GSE176078 (Wu 2021): a tar.gz of one folder of Matrix Market files and ``metadata.csv``.
- GSE131907 (Kim 2020): a UMI text matrix (corner cell ``Index``) and an annotation table
  holding normal-tissue and lymph-node samples beside the tumour ones.
- TISCH2: ``<DS>_expression.h5`` (10x-style HDF5, genes x cells) and
  ``<DS>_CellMetainfo_table.tsv``.

Everything is built in memory: no folder is needed.
"""

from __future__ import annotations

import gzip
import io
import tarfile
from collections.abc import Sequence

import h5py
import numpy as np
import scipy.io
import scipy.sparse as sp


def r_csv(rows) -> str:
    """Lines as R's write.csv writes them: strings quoted, numbers bare."""

    def cell(v):
        return str(v) if isinstance(v, int | float | np.integer | np.floating) else f'"{v}"'

    return "".join(",".join(cell(v) for v in row) + "\n" for row in rows)


def log2_tpm10(rng: np.random.Generator, n_genes: int, n_cells: int) -> np.ndarray:
    """Genes x cells log2(TPM/10+1), rounded to the 4 decimals the GEO text files have."""
    tpm = rng.gamma(0.3, 1.0, size=(n_genes, n_cells))
    tpm = tpm / tpm.sum(axis=0) * 1e6
    return np.round(np.log2(tpm / 10 + 1), 4)


def _tsv_gz(rows) -> bytes:
    return gzip.compress(("\n".join("\t".join(row) for row in rows) + "\n").encode())


# --------------------------------------------------------------------------- #
# GSE115978 (Jerby-Arnon 2018): CSV counts genes x cells + cell.annotations.csv
# --------------------------------------------------------------------------- #
JERBY_CELLS = [  # cell, sample, label
    ("cy78_CD45_neg_1_B04_S496_comb", "Mel78", "Mal"),
    ("cy78_CD45_pos_2_C05_S101_comb", "Mel78", "T.CD8"),
    ("cy78_CD45_pos_2_D07_S211_comb", "Mel78", "?"),
    ("Mel129pa_P1_A01_S1_comb", "Mel129pa", "Mal"),
    ("Mel129pa_P1_B02_S2_comb", "Mel129pa", "T.CD8"),
    ("Mel129pb_P2_A03_S3_comb", "Mel129pb", "T.cell"),
    ("Mel129pb_P2_B04_S4_comb", "Mel129pb", "Macrophage"),
    ("cy79_P1_CD45_neg_A05_S5_comb", "Mel79", "CAF"),
    ("cy79_P1_CD45_pos_B06_S6_comb", "Mel79", "Endo."),
    ("cy79_P1_CD45_pos_C07_S7_comb", "Mel79", "NK"),
    ("cy79_P1_CD45_pos_D08_S8_comb", "Mel79", "B.cell"),
    ("cy79_P1_CD45_pos_E09_S9_comb", "Mel79", "T.CD4"),
]
JERBY_GENES = ["C9orf152", "RPS11", "PLP2", "CD8A", "SEPT7", "MLANA"]


def gse115978_layout(
    counts: np.ndarray, *, genes: Sequence[str], cells: Sequence[tuple[str, str, str]]
) -> dict[str, bytes]:
    """GSE115978_counts.csv.gz and GSE115978_cell.annotations.csv.gz holding ``counts``
    (integers, genes x cells) of ``cells`` given as (cell id, sample, authors' label)."""
    ids = [c for c, _, _ in cells]
    lines = ['"",' + ",".join(f'"{c}"' for c in ids) + "\n"]
    lines += [
        f'"{gene}",' + ",".join(map(str, row)) + "\n"
        for gene, row in zip(genes, np.asarray(counts, dtype=np.int64), strict=True)
    ]
    header = ["cells", "samples", "cell.types", "treatment.group", "Cohort", "no.of.genes",
              "no.of.reads"]  # fmt: skip
    rows = [
        [cell, sample, label, "treatment.naive", "Tirosh et al.", 3000 + i, 100000 + i]
        for i, (cell, sample, label) in enumerate(cells)
    ]
    annotation = r_csv([header, *rows[::-1]])  # another order than the matrix
    return {
        "GSE115978_counts.csv.gz": gzip.compress("".join(lines).encode()),
        "GSE115978_cell.annotations.csv.gz": gzip.compress(annotation.encode()),
    }


def gse115978_files(rng: np.random.Generator) -> tuple[dict[str, bytes], np.ndarray]:
    """The :data:`JERBY_CELLS` miniature; PLP2 of the first cell is 123."""
    counts = rng.integers(0, 40, size=(len(JERBY_GENES), len(JERBY_CELLS)))
    counts[JERBY_GENES.index("PLP2"), 0] = 123
    return gse115978_layout(counts, genes=JERBY_GENES, cells=JERBY_CELLS), counts


# --------------------------------------------------------------------------- #
# GSE72056 (Tirosh 2016): 3 metadata rows, log2(TPM/10+1), Excel-damaged names
# --------------------------------------------------------------------------- #
TIROSH_CELLS = [  # id, tumor, malignant code, non-malignant type code
    ("Cy79_CD45neg_A01_S1_comb", 79, 2, 0),
    ("Cy79_CD45pos_A02_S2_comb", 79, 1, 1),
    ("Cy79_CD45pos_A03_S3_comb", 79, 1, 2),
    ("cy80-CD45-pos-B04_S4_comb", 80, 1, 3),
    ("cy80-CD45-neg-B05_S5_comb", 80, 1, 4),
    ("cy80-CD45-neg-B06_S6_comb", 80, 1, 5),
    ("cy80-CD45-pos-B07_S7_comb", 80, 1, 6),
    ("cy80-CD45-neg-B08_S8_comb", 80, 0, 0),  # unresolved
    ("cy80-CD45-neg-B09_S9_comb", 80, 1, 0),  # non-malignant, type not assigned
    ("cy80-CD45-neg-B10_S10_comb", 80, 2, 0),
]
#: 1-Mar twice (MARCHF1 and MTARC1 in the real file), 1-Sep (SEPTIN1), TSPAN6 twice.
TIROSH_GENES = ["C9orf152", "RPS11", "ELMO2", "1-Mar", "1-Mar", "1-Sep", "PLP2", "TSPAN6",
                "TSPAN6", "MLANA"]  # fmt: skip


def gse72056_files(rng: np.random.Generator) -> tuple[dict[str, bytes], np.ndarray]:
    """The values are genes x cells log2(TPM/10+1); the first TSPAN6 row is the weaker one."""
    values = log2_tpm10(rng, len(TIROSH_GENES), len(TIROSH_CELLS))
    values[TIROSH_GENES.index("TSPAN6")] = 0.1
    rows = [
        ["Cell", *(c for c, *_ in TIROSH_CELLS)],
        ["tumor", *(str(t) for _, t, _, _ in TIROSH_CELLS)],
        ["malignant(1=no,2=yes,0=unresolved)", *(str(m) for _, _, m, _ in TIROSH_CELLS)],
        ["non-malignant cell type (1=T,2=B,3=Macro.4=Endo.,5=CAF;6=NK)",
         *(str(k) for *_, k in TIROSH_CELLS)],
    ]  # fmt: skip
    rows += [[g, *(f"{v:.4f}" for v in row)] for g, row in zip(TIROSH_GENES, values, strict=True)]
    return {"GSE72056_melanoma_single_cell_revised_v2.txt.gz": _tsv_gz(rows)}, values


# --------------------------------------------------------------------------- #
# GSE103322 (Puram 2017): 5 metadata rows, quoted gene names, patient from cell id
# --------------------------------------------------------------------------- #
PURAM_CELLS = [  # id, lymph node, cancer, non-cancer, non-cancer type
    ("HN28_P15_D06_S330_comb", 1, 0, 1, "T cell"),
    ("HN28_P6_G05_S173_comb", 0, 0, 1, "-Fibroblast"),
    ("HN26_P14_D11_S239_comb", 1, 1, 0, "0"),
    ("HNSCC26_P24_H05_S377_comb", 0, 1, 0, "0"),
    ("HNSCC_combo1_HNSCC_ComboP1_A01_S1_comb", 0, 1, 0, "0"),  # no patient number
    ("HN28_P7_A01_S9_comb", 0, 0, 0, "0"),  # classified neither way
    ("HN26_P3_B02_S10_comb", 0, 0, 1, "Macrophage"),
    ("HN26_P3_C03_S11_comb", 0, 0, 1, "Endothelial"),
    ("HN28_P9_C01_S12_comb", 0, 0, 1, "Fibroblast"),
    ("HN28_P9_D01_S13_comb", 0, 0, 1, "Mast"),
]
PURAM_GENES = ["C9orf152", "RPS11", "ELMO2", "PLP2", "KRT5", "CD8A"]


def gse103322_files(rng: np.random.Generator) -> tuple[dict[str, bytes], np.ndarray]:
    """The values are genes x cells log2(TPM/10+1)."""
    values = log2_tpm10(rng, len(PURAM_GENES), len(PURAM_CELLS))
    rows = [
        ["", *(c for c, *_ in PURAM_CELLS)],
        ["processed by Maxima enzyme", *["1"] * len(PURAM_CELLS)],
        ["Lymph node", *(str(c[1]) for c in PURAM_CELLS)],
        ["classified  as cancer cell", *(str(c[2]) for c in PURAM_CELLS)],
        ["classified as non-cancer cells", *(str(c[3]) for c in PURAM_CELLS)],
        ["non-cancer cell type", *(c[4] for c in PURAM_CELLS)],
    ]
    rows += [
        [f"'{g}'", *(f"{v:.4f}" for v in row)] for g, row in zip(PURAM_GENES, values, strict=True)
    ]
    return {"GSE103322_HNSCC_all_data.txt.gz": _tsv_gz(rows)}, values


# --------------------------------------------------------------------------- #
# GSE176078 (Wu 2021): tar.gz of Matrix Market files and metadata.csv
# --------------------------------------------------------------------------- #
WU_CELLS = [  # barcode, patient, subtype, celltype_minor, celltype_major
    ("CID3586_AAGACCTCAGCATGAG", "CID3586", "HER2+", "Endothelial ACKR1", "Endothelial"),
    ("CID3586_AAGGTTCGTAGTACCT", "CID3586", "HER2+", "T cells CD8+", "T-cells"),
    ("CID3586_ACCAGTAGTTGTGGCC", "CID3586", "HER2+", "Cancer Her2 SC", "Cancer Epithelial"),
    ("CID4465_AAACGGGTCATCGATG", "CID4465", "TNBC", "Cycling T-cells", "T-cells"),
    ("CID4465_AAAGATGAGGCCCTTG", "CID4465", "TNBC", "Cancer Basal SC", "Cancer Epithelial"),
    ("CID4465_AACCATGTCTTGCATT", "CID4465", "TNBC", "Plasmablasts", "Plasmablasts"),
    ("CID4465_ACGATGTCACATGACT", "CID4465", "TNBC", "A label nobody listed", "Unknown"),
]
WU_GENES = ["RP11-34P13.7", "FO538757.3", "PLP2", "CD8A", "KRT5", "SEPT7"]
WU_FOLDER = "Wu_etal_2021_BRCA_scRNASeq"


def gse176078_files(rng: np.random.Generator) -> tuple[dict[str, bytes], np.ndarray]:
    """A tar.gz of one folder: count_matrix_sparse.mtx (genes x cells, sparse),
    count_matrix_genes.tsv, count_matrix_barcodes.tsv and metadata.csv (R write.csv with row
    names, another order than the barcodes). PLP2 of the third cell is 77."""
    counts = rng.integers(1, 30, size=(len(WU_GENES), len(WU_CELLS))) * (
        rng.random((len(WU_GENES), len(WU_CELLS))) < 0.6
    )
    counts[WU_GENES.index("PLP2"), 2] = 77
    matrix = io.BytesIO()
    scipy.io.mmwrite(matrix, sp.coo_matrix(counts), field="integer")
    header = ["", "orig.ident", "nCount_RNA", "nFeature_RNA", "percent.mito", "subtype",
              "celltype_subset", "celltype_minor", "celltype_major"]  # fmt: skip
    rows = [[c, p, 4000 + i, 1500 + i, 1.5, s, f"{minor} s1", minor, major]
            for i, (c, p, s, minor, major) in enumerate(WU_CELLS)]  # fmt: skip
    members = {
        "count_matrix_sparse.mtx": matrix.getvalue(),
        "count_matrix_genes.tsv": ("\n".join(WU_GENES) + "\n").encode(),
        "count_matrix_barcodes.tsv": ("\n".join(c for c, *_ in WU_CELLS) + "\n").encode(),
        "metadata.csv": r_csv([header, *rows[::-1]]).encode(),
    }
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        folder = tarfile.TarInfo(WU_FOLDER)
        folder.type, folder.mode = tarfile.DIRTYPE, 0o755
        tar.addfile(folder)
        for name, payload in members.items():
            info = tarfile.TarInfo(f"{WU_FOLDER}/{name}")
            info.size = len(payload)
            tar.addfile(info, io.BytesIO(payload))
    return {"GSE176078_Wu_etal_2021_BRCA_scRNASeq.tar.gz": buffer.getvalue()}, counts


# --------------------------------------------------------------------------- #
# GSE131907 (Kim 2020): text UMI matrix + annotation table
# --------------------------------------------------------------------------- #
KIM_CELLS = [  # Index, Sample, Sample_Origin, Cell_type, Cell_type.refined, Cell_subtype
    ("AAACCTGAGAAACCAT_LUNG_N01", "LUNG_N01", "nLung", "Epithelial cells", "Epithelial cells", "AT2"),
    ("AAACCTGCAGCTCGAC_LUNG_T06", "LUNG_T06", "tLung", "Epithelial cells", "Epithelial cells", "Malignant cells"),
    ("AAACGGGAGCTGCAAG_LUNG_T06", "LUNG_T06", "tLung", "T lymphocytes", "T lymphocytes", "Cytotoxic CD8+ T"),
    ("AAAGATGCAAGCCCAC_LUNG_T06", "LUNG_T06", "tLung", "T lymphocytes", "T lymphocytes", "CD8+/CD4+ Mixed Th"),
    ("AAAGCAAAGATGTGTA_LUNG_T06", "LUNG_T06", "tLung", "NK cells", "NK cells", "NA"),
    ("AACTCAGTCAGCTTAG_BRONCHO_58", "BRONCHO_58", "tL/B", "Myeloid cells", "Myeloid cells", "mo-Mac"),
    ("AACTCCCAGCGTTCCG_BRONCHO_58", "BRONCHO_58", "tL/B", "Fibroblasts", "Fibroblasts", "NA"),
    ("AACTCTTAGGACAGAA_BRONCHO_58", "BRONCHO_58", "tL/B", "Epithelial cells", "Epithelial cells", "tS2"),
    ("AAGGAGCGTCTAGCCG_EBUS_10", "EBUS_10", "mLN", "B lymphocytes", "B lymphocytes", "Follicular B cells"),
]  # fmt: skip
KIM_GENES = ["RP11-34P13.7", "PLP2", "CD8A", "EPCAM"]


def gse131907_files(rng: np.random.Generator) -> tuple[dict[str, bytes], np.ndarray]:
    """A tab-separated UMI matrix (genes x cells, corner cell 'Index') and the cell annotation
    table. CD8A of the third cell (AAACGGGAGCTGCAAG_LUNG_T06) is 9."""
    counts = rng.integers(0, 5, size=(len(KIM_GENES), len(KIM_CELLS)))
    counts[KIM_GENES.index("CD8A"), 2] = 9
    matrix = [["Index", *(c[0] for c in KIM_CELLS)]]
    matrix += [[g, *map(str, row)] for g, row in zip(KIM_GENES, counts, strict=True)]
    annotation = [["Index", "Barcode", "Sample", "Sample_Origin", "Cell_type",
                   "Cell_type.refined", "Cell_subtype"]]  # fmt: skip
    annotation += [[c[0], c[0].split("_")[0], *c[1:]] for c in KIM_CELLS]
    return {
        "GSE131907_Lung_Cancer_raw_UMI_matrix.txt.gz": _tsv_gz(matrix),
        "GSE131907_Lung_Cancer_cell_annotation.txt.gz": _tsv_gz(annotation),
    }, counts


# --------------------------------------------------------------------------- #
# TISCH2: <DS>_expression.h5 (10x-style) + <DS>_CellMetainfo_table.tsv
# --------------------------------------------------------------------------- #
TISCH_CELLS = [  # Cell, malignancy, major lineage, patient, sample
    ("Mel79_AAAC", "Malignant cells", "Malignant", "Mel79", "Mel79_pre"),
    ("Mel79_AAAG", "Immune cells", "CD8Tex", "Mel79", "Mel79_pre"),
    ("Mel79_AACC", "Immune cells", "CD4Tconv", "Mel79", "Mel79_pre"),
    ("Mel80_AAAC", "Immune cells", "CD8T", "Mel80", "Mel80_post"),
    ("Mel80_AAGG", "Immune cells", "Mono/Macro", "Mel80", "Mel80_post"),
    ("Mel80_ACGT", "Stromal cells", "Fibroblasts", "Mel80", "Mel80_post"),
    ("Mel80_AGGT", "Malignant cells", "Malignant", "Mel80", "Mel80_post"),
]
TISCH_GENES = ["PLP2", "CD8A", "GZMB", "MLANA", "COL1A1"]


def tisch2_files(
    rng: np.random.Generator, *, scale: str = "counts"
) -> tuple[dict[str, bytes], np.ndarray]:
    """SKCM_GSE72056's two files. The values are cells x genes: counts, or with
    ``scale="log1p_norm"`` what TISCH2 may ship instead, ln(CP10k+1) over all genes."""
    counts = rng.integers(0, 30, size=(len(TISCH_CELLS), len(TISCH_GENES))).astype(np.float64)
    counts[:, 0] += 1  # no empty cell
    if scale == "counts":
        values = counts
    elif scale == "log1p_norm":
        values = np.log1p(counts / counts.sum(axis=1, keepdims=True) * 1e4)
    else:
        msg = f"scale must be 'counts' or 'log1p_norm', not {scale!r}"
        raise ValueError(msg)
    csc = sp.csc_matrix(values.T)  # genes x cells
    buffer = io.BytesIO()
    with h5py.File(buffer, "w") as handle:
        group = handle.create_group("matrix")
        group["barcodes"] = np.array([c[0] for c in TISCH_CELLS], dtype="S")
        group["data"] = csc.data.astype(np.float32)
        group["indices"] = csc.indices
        group["indptr"] = csc.indptr
        group["shape"] = np.array(csc.shape)
        features = group.create_group("features")
        features["name"] = np.array(TISCH_GENES, dtype="S")
        features["id"] = np.array(TISCH_GENES, dtype="S")
        features["feature_type"] = np.array(["Gene Expression"] * len(TISCH_GENES), dtype="S")
        features["genome"] = np.array(["GRCh38"] * len(TISCH_GENES), dtype="S")
    meta = [["Cell", "UMAP_1", "UMAP_2", "Cluster", "Celltype (malignancy)",
             "Celltype (major-lineage)", "Celltype (minor-lineage)", "Patient", "Sample"]]  # fmt: skip
    meta += [[c, "0.5", "-1.2", str(i), mal, major, major, p, s]
             for i, (c, mal, major, p, s) in enumerate(TISCH_CELLS)]  # fmt: skip
    table = "".join("\t".join(row) + "\n" for row in meta)
    return {
        "SKCM_GSE72056_expression.h5": buffer.getvalue(),
        "SKCM_GSE72056_CellMetainfo_table.tsv": table.encode(),
    }, values


# --------------------------------------------------------------------------- #
# Reading the harmonised result back (for the assertions)
# --------------------------------------------------------------------------- #
def type_of(adata):
    """Authors' label -> cell type, as harmonised."""
    pairs = adata.obs[["cell_type_original", "cell_type"]].astype(str).drop_duplicates()
    return dict(zip(pairs["cell_type_original"], pairs["cell_type"], strict=True))


def value(adata, cell, gene, layer=None):
    matrix = adata.layers[layer] if layer else adata.X
    return float(matrix[adata.obs_names.get_loc(cell), adata.var_names.get_loc(gene)])
