"""Registry-driven readers: miniature files in the exact published layouts (written by
tests/published_layouts.py), served by the local test server, downloaded, verified, read and
harmonised; plus the real test data."""

from __future__ import annotations

import copy
import gzip
import logging
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.io
import scipy.sparse as sp
from http_server import serve
from published_layouts import (
    WU_CELLS,
    gse72056_files,
    gse103322_files,
    gse115978_files,
    gse131907_files,
    gse176078_files,
    tisch2_files,
    type_of,
    value,
)
from shared_data import SHARED_REFERENCE

from cd8exo.cells.harmonise import linear_values
from cd8exo.cells.public import check_harmonised, detect_value_scale, read_public
from cd8exo.genes import load_symbol_tables
from cd8exo.io.fetch import fetch_dataset
from cd8exo.io.obs import derive_obs, map_cellxgene_obs
from cd8exo.io.registry import load_registry, registry_entry
from cd8exo.vocabulary import CELL_TYPES

REPO = Path(__file__).resolve().parents[3]
REGISTRY = load_registry(REPO / "resources" / "datasets" / "registry.yaml")
SHARED_DATA = SHARED_REFERENCE / "data"
GENOME = REPO / "resources" / "genome"
NO_WAIT = {"backoff": 0.0, "sleep": lambda _: None, "timeout": 5.0}


@pytest.fixture(scope="module")
def tables():
    return load_symbol_tables(
        GENOME / "hgnc_alias_table.tsv.gz", GENOME / "gencode_v48_genes_homo_sapiens.csv.gz"
    )


@pytest.fixture
def server():
    with serve(lifetime=120) as srv:
        yield srv


def download_and_read(server, tmp_path, dataset_id, payloads, tables, *, entry=None):
    """Serve ``payloads`` (file name -> bytes) at the entry's file names, fetch, read."""
    entry = copy.deepcopy(entry or registry_entry(dataset_id, registry=REGISTRY))
    for spec in entry["files"].values():
        spec["url"] = server.add(f"{dataset_id}/{spec['filename']}", payloads[spec["filename"]])
        spec["sha256"] = None
        spec.pop("size_bytes", None)
    lock = tmp_path / "checksums.lock.tsv"
    paths = fetch_dataset(entry, tmp_path / "downloads" / dataset_id, lock_file=lock, **NO_WAIT)
    adata = read_public(dataset_id, paths, entry, symbol_tables=tables)
    recorded = lock.read_text().splitlines()
    assert len(recorded) == 1 + len(entry["files"])  # every file's checksum recorded
    return adata


# --------------------------------------------------------------------------- #
# GSE115978 (Jerby-Arnon 2018): CSV counts genes x cells + cell.annotations.csv
# --------------------------------------------------------------------------- #
def test_gse115978_counts_and_annotations(server, tmp_path, tables):
    payloads, counts = gse115978_files(np.random.default_rng(1))
    adata = download_and_read(server, tmp_path, "GSE115978", payloads, tables)
    check_harmonised(adata)
    assert adata.n_obs == 11  # the "?" cell is excluded
    assert "cy78_CD45_pos_2_D07_S211_comb" not in adata.obs_names
    # Mel129pa and Mel129pb are one patient, two samples
    assert sorted(adata.obs["patient"].unique()) == ["Mel129", "Mel78", "Mel79"]
    assert adata.obs.loc["Mel129pb_P2_A03_S3_comb", "sample"] == "Mel129pb"
    assert type_of(adata) == {
        "Mal": "malignant", "T.CD8": "CD8_T", "T.cell": "other", "Macrophage": "myeloid",
        "CAF": "fibroblast", "Endo.": "endothelial", "NK": "NK", "B.cell": "B", "T.CD4": "CD4_T",
    }  # fmt: skip
    assert adata.obs["malignant"].sum() == 2
    assert (adata.obs["malignant"] == (adata.obs["cell_type"] == "malignant")).all()
    assert list(adata.obs["cell_type"].cat.categories) == list(CELL_TYPES)
    # raw counts, untouched, in X and layers["counts"]
    assert value(adata, "cy78_CD45_neg_1_B04_S496_comb", "PLP2") == 123
    assert value(adata, "cy79_P1_CD45_pos_E09_S9_comb", "CD8A", "counts") == counts[3, 11]
    assert adata.uns["cd8exo"]["value_scale"] == "counts"
    # previous symbol mapped to the current one, with the original kept
    assert "SEPTIN7" in adata.var_names
    assert adata.var.loc["SEPTIN7", "original_name"] == "SEPT7"
    assert pd.api.types.is_numeric_dtype(adata.obs["no.of.genes"])
    assert "Jerby-Arnon" in adata.uns["cd8exo"]["citation"]


# --------------------------------------------------------------------------- #
# GSE72056 (Tirosh 2016): 3 metadata rows, log2(TPM/10+1), Excel-damaged names
# --------------------------------------------------------------------------- #
def test_gse72056_metadata_rows_and_excel_names(server, tmp_path, tables):
    payloads, values = gse72056_files(np.random.default_rng(2))
    adata = download_and_read(server, tmp_path, "GSE72056", payloads, tables)
    assert adata.n_obs == 9  # the unresolved cell is excluded
    assert sorted(adata.obs["patient"].unique()) == ["Mel79", "Mel80"]
    assert type_of(adata) == {
        "malignant": "malignant", "T": "other", "B": "B", "Macro.": "myeloid", "Endo.": "endothelial",
        "CAF": "fibroblast", "NK": "NK", "unassigned": "other",
    }  # fmt: skip
    # the values are the file's log2(TPM/10+1), not logged again
    assert adata.uns["cd8exo"]["value_scale"] == "log2_tpm10"
    cell = "cy80-CD45-neg-B10_S10_comb"
    assert value(adata, cell, "PLP2") == pytest.approx(values[6, 9], abs=1e-4)
    # 1-Mar (MARCHF1 or MTARC1) cannot be resolved: dropped; 1-Sep is SEPTIN1
    assert not any(name.endswith("-Mar") for name in adata.var["original_name"])
    assert adata.var.loc["SEPTIN1", "original_name"] == "1-Sep"
    # duplicated TSPAN6: the row with the higher mean is kept
    assert value(adata, cell, "TSPAN6") == pytest.approx(values[8, 9], abs=1e-4)
    np.testing.assert_allclose(
        linear_values(adata)[adata.obs_names.get_loc(cell), adata.var_names.get_loc("PLP2")],
        10 * (2 ** values[6, 9] - 1),
        rtol=1e-4,
    )


# --------------------------------------------------------------------------- #
# GSE103322 (Puram 2017): 5 metadata rows, quoted gene names, patient from cell id
# --------------------------------------------------------------------------- #
def test_gse103322_quoted_genes_and_patient_from_cell_id(server, tmp_path, tables):
    payloads, values = gse103322_files(np.random.default_rng(3))
    adata = download_and_read(server, tmp_path, "GSE103322", payloads, tables)
    assert "PLP2" in adata.var_names
    assert "'PLP2'" not in adata.var_names
    # HN26 and HNSCC26 are one patient; the combo cell (no patient) and the unclassified cell go
    assert sorted(adata.obs["patient"].unique()) == ["HN26", "HN28"]
    assert adata.obs.loc["HNSCC26_P24_H05_S377_comb", "patient"] == "HN26"
    assert "HNSCC_combo1_HNSCC_ComboP1_A01_S1_comb" not in adata.obs_names
    assert "HN28_P7_A01_S9_comb" not in adata.obs_names
    assert adata.n_obs == 8
    assert adata.obs.loc["HN28_P15_D06_S330_comb", "sample"] == "HN28_lymph_node"
    assert adata.obs.loc["HN28_P6_G05_S173_comb", "sample"] == "HN28_primary"
    assert type_of(adata) == {
        "T cell": "other", "-Fibroblast": "fibroblast", "cancer cell": "malignant",
        "Macrophage": "myeloid", "Endothelial": "endothelial", "Fibroblast": "fibroblast", "Mast": "other",
    }  # fmt: skip
    assert value(adata, "HN26_P3_B02_S10_comb", "CD8A") == pytest.approx(values[5, 6], abs=1e-4)
    assert adata.obs["classified  as cancer cell"].tolist().count(1) == 2  # authors' rows kept


def test_misspelt_metadata_row_name_is_a_clear_error(server, tmp_path, tables):
    payloads, _ = gse103322_files(np.random.default_rng(4))
    entry = registry_entry("GSE103322", registry=REGISTRY)
    entry["obs"]["label"]["rules"][0]["when"] = {"classified as cancer cell": "1"}  # one space
    with pytest.raises(
        ValueError, match=r"'classified as cancer cell'.*'classified  as cancer cell'"
    ):
        download_and_read(server, tmp_path, "GSE103322", payloads, tables, entry=entry)


# --------------------------------------------------------------------------- #
# GSE176078 (Wu 2021): tar.gz of Matrix Market files and metadata.csv
# --------------------------------------------------------------------------- #
def test_gse176078_tar_of_matrix_market(server, tmp_path, tables, caplog):
    payloads, counts = gse176078_files(np.random.default_rng(5))
    with caplog.at_level(logging.WARNING, logger="cd8exo.io"):
        adata = download_and_read(server, tmp_path, "GSE176078", payloads, tables)
    assert adata.n_obs == len(WU_CELLS)
    assert sorted(adata.obs["patient"].unique()) == ["CID3586", "CID4465"]
    mapping = type_of(adata)
    assert mapping["T cells CD8+"] == "CD8_T"
    assert mapping["Cycling T-cells"] == "other"
    assert mapping["Cancer Her2 SC"] == mapping["Cancer Basal SC"] == "malignant"
    assert mapping["Plasmablasts"] == "plasma"
    assert mapping["A label nobody listed"] == "other"
    assert any("A label nobody listed" in r.getMessage() for r in caplog.records)  # never silent
    assert value(adata, "CID3586_ACCAGTAGTTGTGGCC", "PLP2") == 77
    assert value(adata, "CID4465_AACCATGTCTTGCATT", "CD8A") == counts[3, 5]
    assert adata.obs.loc["CID4465_AAAGATGAGGCCCTTG", "celltype_major"] == "Cancer Epithelial"
    # no unpacked files are left next to the archive
    assert sorted(p.name for p in (tmp_path / "downloads" / "GSE176078").iterdir()) == [
        "GSE176078_Wu_etal_2021_BRCA_scRNASeq.tar.gz"
    ]


# --------------------------------------------------------------------------- #
# GSE131907 (Kim 2020): text UMI matrix + annotation table
# --------------------------------------------------------------------------- #
def test_gse131907_umi_text_matrix_keeps_tumour_samples(server, tmp_path, tables):
    payloads, counts = gse131907_files(np.random.default_rng(6))
    adata = download_and_read(server, tmp_path, "GSE131907", payloads, tables)
    assert sorted(adata.obs["patient"].unique()) == ["BRONCHO_58", "LUNG_T06"]
    assert set(adata.obs["Sample_Origin"]) == {"tLung", "tL/B"}
    assert adata.n_obs == 7
    assert type_of(adata) == {
        "Malignant cells": "malignant", "Cytotoxic CD8+ T": "CD8_T", "CD8+/CD4+ Mixed Th": "other",
        "NK cells": "NK", "mo-Mac": "myeloid", "Fibroblasts": "fibroblast", "tS2": "malignant",
    }  # fmt: skip
    assert value(adata, "AAACGGGAGCTGCAAG_LUNG_T06", "CD8A") == 9
    # the cells of the excluded samples were never read: columns follow the kept cells
    np.testing.assert_array_equal(
        adata[:, "PLP2"].X.toarray().ravel(), counts[1, [1, 2, 3, 4, 5, 6, 7]]
    )


# --------------------------------------------------------------------------- #
# TISCH2: <DS>_expression.h5 (10x-style) + <DS>_CellMetainfo_table.tsv
# --------------------------------------------------------------------------- #
@pytest.mark.parametrize("scale", ["counts", "log1p_norm"])
def test_tisch2_h5_and_metainfo(server, tmp_path, tables, scale):
    payloads, values = tisch2_files(np.random.default_rng(7), scale=scale)
    adata = download_and_read(server, tmp_path, "TISCH2_SKCM_GSE72056", payloads, tables)
    assert adata.uns["cd8exo"]["value_scale"] == scale  # detected (value_scale: auto)
    assert type_of(adata) == {
        "Malignant": "malignant", "CD8Tex": "CD8_T", "CD4Tconv": "CD4_T", "CD8T": "CD8_T",
        "Mono/Macro": "myeloid", "Fibroblasts": "fibroblast",
    }  # fmt: skip
    assert adata.obs.loc["Mel80_AAAC", "sample"] == "Mel80_post"
    assert value(adata, "Mel79_AAAG", "GZMB") == pytest.approx(values[1, 2], rel=1e-6)
    assert ("counts" in adata.layers) == (scale == "counts")


# --------------------------------------------------------------------------- #
# CELLxGENE: schema obs mapping, and a portal h5ad
# --------------------------------------------------------------------------- #
def cellxgene_obs():
    return pd.DataFrame(
        {
            "donor_id": ["D1", "D1", "D1", "D2", "D2", "D2", "D2", "D3"],
            "cell_type": [
                "malignant cell",
                "CD8-positive, alpha-beta T cell",
                "effector memory CD8-positive, alpha-beta T cell",
                "CD4-positive, alpha-beta T cell",
                "classical monocyte",
                "natural killer cell",
                "unknown",
                "mature NK T cell",
            ],
            "tissue": ["skin of body"] * 8,
            "disease": ["melanoma"] * 8,
            "assay": ["10x 3' v3"] * 8,
        },
        index=[f"cell{i}" for i in range(8)],
    )


def test_map_cellxgene_obs_on_a_hand_made_frame():
    obs = map_cellxgene_obs(cellxgene_obs())
    assert "cell6" not in obs.index  # "unknown" is excluded
    assert obs["cell_type"].tolist() == [
        "malignant",
        "CD8_T",
        "CD8_T",
        "CD4_T",
        "myeloid",
        "NK",
        "other",
    ]
    assert obs["patient"].tolist() == ["D1", "D1", "D1", "D2", "D2", "D2", "D3"]
    assert obs["sample"].tolist() == obs["patient"].tolist()  # no sample column: the donor
    assert obs["malignant"].tolist() == [True, False, False, False, False, False, False]
    assert (
        obs.loc["cell2", "cell_type_original"] == "effector memory CD8-positive, alpha-beta T cell"
    )
    assert obs.loc["cell0", "disease"] == "melanoma"


def test_cellxgene_h5ad_uses_raw_counts_and_feature_names(server, tmp_path, tables):
    obs = cellxgene_obs()
    obs["sample_id"] = ["S1", "S1", "S2", "S3", "S3", "S3", "S3", "S4"]
    counts = np.random.default_rng(8).integers(0, 20, size=(8, 3)).astype(np.float32)
    var = pd.DataFrame(
        {"feature_name": ["TP53", "PLP2", "CD8A"]},
        index=["ENSG00000141510", "ENSG00000102007", "ENSG00000153563"],
    )
    raw = ad.AnnData(X=sp.csr_matrix(counts), obs=obs, var=var)
    normalised = raw.copy()
    normalised.X = sp.csr_matrix(
        np.log1p(counts / counts.sum(1, keepdims=True) * 1e4).astype(np.float32)
    )
    normalised.raw = raw
    path = tmp_path / "build.h5ad"
    normalised.write_h5ad(path)
    version = "0123abcd-0000-4000-8000-00000000cafe"
    adata = download_and_read(
        server, tmp_path, f"CELLXGENE_{version}", {f"{version}.h5ad": path.read_bytes()}, tables
    )
    assert list(adata.var_names) == ["TP53", "PLP2", "CD8A"]
    assert adata.uns["cd8exo"]["value_scale"] == "counts"
    assert value(adata, "cell1", "CD8A") == counts[1, 2]
    assert adata.obs.loc["cell2", "sample"] == "S2"
    assert adata.obs.loc["cell1", "cell_type"] == "CD8_T"


# --------------------------------------------------------------------------- #
# The real test data, read through the same code, keep the authors' labels
# --------------------------------------------------------------------------- #
needs_shared = pytest.mark.skipif(
    not SHARED_DATA.is_dir(), reason="../shared/reference/data absent"
)


@needs_shared
def test_real_wu2021_cid4465_keeps_the_authors_labels(tmp_path, tables):
    folder = SHARED_DATA / "wu2021_CID4465"
    entry = registry_entry("wu2021_CID4465", registry=REGISTRY)
    paths = fetch_dataset(entry, tmp_path, lock_file=None, local_dir=folder)  # verified by sha256
    adata = read_public("wu2021_CID4465", paths, entry, symbol_tables=tables)
    authors = pd.read_csv(folder / "obs.tsv", sep="\t", index_col="cell")
    assert adata.n_obs == 1564
    assert (
        adata.obs["cell_type_original"].astype(str)
        == authors.loc[adata.obs_names, "celltype_minor"]
    ).all()
    assert set(adata.obs["patient"]) == {"CID4465"}
    assert (
        (adata.obs["cell_type"] == "CD8_T").sum()
        == 35
        == (authors["celltype_minor"] == "T cells CD8+").sum()
    )
    malignant = adata.obs_names[adata.obs["malignant"]]
    assert len(malignant) == 124
    assert set(authors.loc[malignant, "celltype_major"]) == {"Cancer Epithelial"}
    # counts equal the Matrix Market file's, gene by gene
    genes = pd.read_csv(folder / "genes.tsv.gz", header=None)[0].tolist()
    mtx = sp.csr_matrix(scipy.io.mmread(folder / "matrix.mtx.gz"))
    for gene in ("CD8A", "PLP2", "EPCAM"):
        np.testing.assert_array_equal(
            adata[:, gene].layers["counts"].toarray().ravel(),
            mtx[genes.index(gene)].toarray().ravel(),
        )


@needs_shared
def test_real_tirosh2016_oligodendroglioma_keeps_the_authors_labels(tmp_path, tables):
    folder = SHARED_DATA / "tirosh2016_oligodendroglioma"
    entry = registry_entry("tirosh2016_oligodendroglioma", registry=REGISTRY)
    paths = fetch_dataset(entry, tmp_path, lock_file=None, local_dir=folder)
    adata = read_public("tirosh2016_oligodendroglioma", paths, entry, symbol_tables=tables)
    labels = pd.read_csv(
        folder / "oligodendroglioma_annotations_downsampled.txt", sep="\t", header=None, index_col=0
    )[1]
    reference = pd.read_csv(folder / "obs.tsv", sep="\t", index_col="cell", dtype=str)
    assert adata.n_obs == 184
    assert (adata.obs["cell_type_original"].astype(str) == labels.loc[adata.obs_names]).all()
    assert (adata.obs["patient"].astype(str) == reference.loc[adata.obs_names, "patient"]).all()
    assert adata.obs["malignant"].sum() == 142
    assert sorted(adata.obs.loc[adata.obs["malignant"], "patient"].unique()) == [
        "93",
        "97",
        "MGH36",
        "MGH53",
    ]
    assert (adata.obs["malignant"] == (reference.loc[adata.obs_names, "malignant"] == "True")).all()
    # linear TPM-like values stored as log2(TPM/10+1); pseudobulk gets the file's values back
    assert adata.uns["cd8exo"]["value_scale"] == "log2_tpm10"
    assert adata.uns["cd8exo"]["value_scale_original"] == "tpm"
    table = pd.read_csv(
        folder / "oligodendroglioma_expression_downsampled.counts.matrix.gz", sep="\t", index_col=0
    )
    np.testing.assert_allclose(
        linear_values(adata[:, "A2M"]).toarray().ravel(),
        table.loc["A2M", adata.obs_names],
        rtol=1e-4,
        atol=1e-3,
    )


# --------------------------------------------------------------------------- #
# Value scales, the schema check, the registry
# --------------------------------------------------------------------------- #
@pytest.fixture(scope="module")
def scales():
    rng = np.random.default_rng(9)
    counts = rng.negative_binomial(2, 0.3, size=(300, 400)).astype(np.float64)
    counts[:, 0] += 1
    tpm = counts / counts.sum(axis=1, keepdims=True) * 1e6
    return {
        "counts": counts,
        "tpm": tpm,
        "log2_tpm10": np.log2(tpm / 10 + 1),
        "ln_cp10k": np.log1p(counts / counts.sum(axis=1, keepdims=True) * 1e4),
        "ln_cpm": np.log1p(tpm),
    }


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("counts", "counts"),
        ("tpm", "tpm"),
        ("log2_tpm10", "log2_tpm10"),
        ("ln_cp10k", "log1p_norm"),
        ("ln_cpm", "log1p_norm"),
    ],
)
def test_detect_value_scale(scales, name, expected):
    assert detect_value_scale(sp.csr_matrix(scales[name]), allow_tpm=True) == expected


def _mini_entry(value_scale):
    entry = registry_entry("tirosh2016_oligodendroglioma", registry=REGISTRY)
    entry["value_scale"] = value_scale
    return entry


def _write_mini(tmp_path, values):
    cells = [f"P{i % 3}_C{i}" for i in range(values.shape[0])]
    genes = [f"GENE{j}" for j in range(values.shape[1])]
    frame = pd.DataFrame(values.T, index=genes, columns=cells)
    matrix = tmp_path / "oligodendroglioma_expression_downsampled.counts.matrix.gz"
    frame.to_csv(matrix, sep="\t", compression="gzip")
    annotation = tmp_path / "oligodendroglioma_annotations_downsampled.txt"
    annotation.write_text("".join(f"{c}\tmalignant_{c[:2]}\n" for c in cells))
    return {"matrix": matrix, "annotation": annotation}


@pytest.mark.parametrize(
    ("declared", "data", "message"),
    [
        ("tpm", "log2_tpm10", "look log-transformed already"),
        ("log2_tpm10", "tpm", "they are linear"),
        ("log1p_norm", "tpm", "they are linear"),
        ("counts", "ln_cp10k", "look log-transformed"),
    ],
)
def test_declared_scale_contradicted_by_the_values_is_refused(
    tmp_path, tables, scales, declared, data, message
):
    files = _write_mini(tmp_path, scales[data][:30, :50])
    with pytest.raises(ValueError, match=message):
        read_public("mini", files, _mini_entry(declared), symbol_tables=tables)


def test_tpm_is_logged_once_and_undone_exactly(tmp_path, tables, scales):
    files = _write_mini(tmp_path, scales["tpm"][:30, :50])
    adata = read_public("mini", files, _mini_entry("tpm"), symbol_tables=tables)
    np.testing.assert_allclose(
        adata.X.toarray(), np.log2(scales["tpm"][:30, :50] / 10 + 1), rtol=1e-5
    )
    np.testing.assert_allclose(linear_values(adata).toarray(), scales["tpm"][:30, :50], rtol=1e-4)


def _valid():
    obs = pd.DataFrame(
        {
            "patient": pd.Categorical(["P1", "P2"]),
            "sample": pd.Categorical(["S1", "S2"]),
            "cell_type": pd.Categorical(["CD8_T", "malignant"], categories=CELL_TYPES),
            "cell_type_original": pd.Categorical(["T.CD8", "Mal"]),
            "malignant": [False, True],
        },
        index=["c1", "c2"],
    )
    x = sp.csr_matrix(np.array([[1, 0], [2, 3]], dtype=np.float32))
    return ad.AnnData(X=x, obs=obs, var=pd.DataFrame(index=["PLP2", "CD8A"]),
                      uns={"cd8exo": {"dataset": "toy", "value_scale": "counts"}})  # fmt: skip


def test_check_harmonised_accepts_the_contract():
    check_harmonised(_valid())


@pytest.mark.parametrize(
    ("breakage", "message"),
    [
        (lambda a: a.obs.pop("patient"), "lacks the column 'patient'"),
        (lambda a: a.obs.__setitem__("malignant", ["no", "yes"]), "'malignant'.* not bool"),
        (lambda a: a.obs.__setitem__("sample", ["S1", "S2"]), "'sample'.* not category"),
        (
            lambda a: setattr(a, "X", sp.csr_matrix(np.array([[1, 0], [-2, 3]], dtype=np.float32))),
            "negative values",
        ),
        (
            lambda a: setattr(
                a, "X", sp.csr_matrix(np.array([[1, 0], [np.nan, 3]], dtype=np.float32))
            ),
            "NaN",
        ),
        (lambda a: setattr(a, "X", a.X.toarray()), "not a CSR"),
        (lambda a: setattr(a, "X", sp.csr_matrix(a.X, dtype=np.float64)), "not float32"),
        (lambda a: a.uns["cd8exo"].__setitem__("value_scale", "tpm"), "value_scale"),
        (
            lambda a: a.obs.__setitem__("cell_type", pd.Categorical(["CD8", "malignant"])),
            "outside the vocabulary",
        ),
    ],
)
def test_check_harmonised_names_the_problem(breakage, message):
    adata = _valid()
    breakage(adata)
    with pytest.raises(ValueError, match=f"dataset toy: .*{message}"):
        check_harmonised(adata)


def test_check_harmonised_catches_duplicate_symbols():
    adata = _valid()
    adata.var_names = ["PLP2", "PLP2"]
    with pytest.raises(ValueError, match="var_names are not unique"):
        check_harmonised(adata)


def test_every_registry_entry_resolves_and_is_valid():
    for dataset_id in REGISTRY["datasets"]:
        entry = registry_entry(dataset_id, registry=REGISTRY)
        assert entry["citation"].strip()
        for spec in entry["files"].values():
            assert spec["filename"]
    entry = registry_entry("GSE115978", registry=REGISTRY)
    assert entry["files"]["matrix"]["url"].startswith(
        "https://ftp.ncbi.nlm.nih.gov/geo/series/GSE115nnn/"
    )
    assert (
        registry_entry("wu2021_CID4465", registry=REGISTRY)["cell_types"]["T cells CD8+"] == "CD8_T"
    )


def test_unknown_dataset_and_bad_entries_are_clear_errors():
    with pytest.raises(ValueError, match=r"GSE000000.*TISCH2"):
        registry_entry("GSE000000", registry=REGISTRY)
    broken = copy.deepcopy(REGISTRY)
    broken["datasets"]["GSE115978"]["cell_types"]["T.CD8"] = "CD8"
    with pytest.raises(ValueError, match=r"'T\.CD8' to 'CD8', not in"):
        registry_entry("GSE115978", registry=broken)
    broken["datasets"]["GSE115978"]["format"] = "excel"
    with pytest.raises(ValueError, match="format 'excel' is not one of"):
        registry_entry("GSE115978", registry=broken)


def test_derive_obs_unmatched_patient_is_an_error_unless_excluded():
    obs = pd.DataFrame({"label": ["a", "b"]}, index=["HN1_x", "weird"])
    entry = {"id": "t", "obs": {"patient": {"column": "@cell", "regex": "^HN(\\d+)_"}, "label": {"column": "label"}},
             "cell_types": {"a": "malignant", "b": "B"}}  # fmt: skip
    with pytest.raises(ValueError, match=r"1 cells have no patient.*'weird'.*unmatched: exclude"):
        derive_obs(obs, entry)
    entry["obs"]["patient"]["unmatched"] = "exclude"
    assert derive_obs(obs, entry)["patient"].tolist() == ["1"]


def test_text_matrix_with_bom_crlf_and_trailing_tabs(tmp_path, tables):
    # the same oligodendroglioma layout, written by a Windows tool: BOM, CRLF, a trailing tab
    cells = ["MGH1_P1_A01", "MGH1_P1_A02", "MGH2_P1_A03"]
    lines = ["\ufeff" + "\t".join(cells) + "\t", "PLP2\t1.5\t0\t30.25\t", "CD8A\t0\t2.5\t0\t"]
    matrix = tmp_path / "oligodendroglioma_expression_downsampled.counts.matrix.gz"
    matrix.write_bytes(gzip.compress("\r\n".join(lines).encode() + b"\r\n"))
    annotation = tmp_path / "oligodendroglioma_annotations_downsampled.txt"
    annotation.write_bytes(b"\xef\xbb\xbfMGH1_P1_A01\tmalignant_MGH1\r\nMGH1_P1_A02\tMicroglia/Macrophage\r\n"
                           b"MGH2_P1_A03\tmalignant_MGH2\r\n")  # fmt: skip
    entry = registry_entry("tirosh2016_oligodendroglioma", registry=REGISTRY)
    adata = read_public(
        "mini", {"matrix": matrix, "annotation": annotation}, entry, symbol_tables=tables
    )
    assert list(adata.obs_names) == cells
    assert list(adata.obs["patient"]) == ["MGH1", "MGH1", "MGH2"]
    np.testing.assert_allclose(
        linear_values(adata[:, "PLP2"]).toarray().ravel(), [1.5, 0, 30.25], rtol=1e-5
    )
