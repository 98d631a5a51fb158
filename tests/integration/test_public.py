"""Public datasets through Snakemake: a dataset-sheet row naming a registry id is downloaded
from a local HTTP server, verified, read and harmonised, then analysed like a local dataset.

The server (tests/http_server.py, 127.0.0.1 only) serves miniature files in the exact
published layouts, with their quirks (R-quoted CSV, metadata rows, quoted and Excel-damaged
gene names, a tar of Matrix Market files, a 10x-style HDF5), written by
tests/published_layouts.py. The registry URLs are pointed at the server by a test copy of the
registry (config ``download: registry:``), so the workflow and the package run unchanged.
"""

from __future__ import annotations

import hashlib
import shutil
import socket

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
import yaml
from http_server import closed_port_url, serve
from published_layouts import (
    WU_CELLS,
    gse72056_files,
    gse103322_files,
    gse115978_layout,
    gse131907_files,
    gse176078_files,
    tisch2_files,
    type_of,
    value,
)
from workflow_helpers import ROOT, no_traceback, run_snakemake, write_config

from cd8exo.cells.public import check_harmonised

pytestmark = pytest.mark.integration

REGISTRY = ROOT / "resources" / "datasets" / "registry.yaml"
#: Download settings of the tests: quick retries, no waiting.
FAST = {"retries": 2, "backoff": 0.0, "timeout": 10}


# --------------------------------------------------------------------------- #
# Helpers
# --------------------------------------------------------------------------- #
def sha256(payload: bytes) -> str:
    return hashlib.sha256(payload).hexdigest()


def served_registry(server, workdir, payloads, *, faults=None, checksums=False):
    """Serve ``payloads`` ({dataset id: {file name: bytes}}) and write a registry copy whose
    entries for these ids download from the server; return its path.

    ``faults``: {file name: [fault, ...]} (see tests/http_server.py). ``checksums``: put
    the sha256 of the served payloads into the registry (else the lock file records them).
    """
    registry = yaml.safe_load(REGISTRY.read_text())
    faults = faults or {}
    for dataset_id, files in payloads.items():
        if dataset_id.startswith("TISCH2_"):
            entry, prefix = registry["templates"]["TISCH2"], "TISCH2_{ds}"
        else:
            entry, prefix = registry["datasets"][dataset_id], dataset_id
        for spec in entry["files"].values():
            filename = spec["filename"].replace("{ds}", dataset_id.removeprefix("TISCH2_"))
            payload = files[filename]
            server.add(f"{dataset_id}/{filename}", payload, faults=faults.get(filename))
            spec["url"] = server.url(f"{prefix}/{spec['filename']}")
            spec["sha256"] = sha256(payload) if checksums else None
            spec.pop("size_bytes", None)  # the sizes of the real files
    path = workdir / "registry.yaml"
    path.write_text(yaml.safe_dump(registry, sort_keys=False))
    return path


def configure(workdir, registry, rows, **download):
    """A config whose download settings point at the test registry and lock file."""
    settings = {"registry": str(registry), "lock_file": str(workdir / "checksums.lock.tsv")}
    write_config(workdir, rows, download={**settings, **FAST, **download})


def public_rows(*dataset_ids):
    """Dataset-sheet rows: one line per dataset, naming its registry id only."""
    return [{"registry_id": dataset_id} for dataset_id in dataset_ids]


def prepared(workdir, dataset_id):
    adata = ad.read_h5ad(workdir / "results" / "prepare_dataset" / f"{dataset_id}.h5ad")
    check_harmonised(adata)
    return adata


def lock_entries(workdir):
    lock = pd.read_csv(workdir / "checksums.lock.tsv", sep="\t")
    return dict(zip(lock["filename"], lock["sha256"], strict=True))


# --------------------------------------------------------------------------- #
# GSE115978 from the simulated cohort (the other layouts: tests/published_layouts.py)
# --------------------------------------------------------------------------- #
#: The simulator's author labels as Jerby-Arnon 2018 wrote them ("?" = not assigned).
JERBY_LABELS = {
    "Cancer cells": "Mal", "T cells CD8+": "T.CD8", "T cells CD4+": "T.CD4", "NK cells": "NK",
    "B cells": "B.cell", "Plasma cells": "?", "Myeloid": "Macrophage", "CAFs": "CAF",
    "Endothelial": "Endo.",
}  # fmt: skip


def gse115978_from_cohort(cohort):
    """GSE115978's two files holding a simulated cohort's counts, in the authors' labels;
    its first patient's cells are split into samples Mel129pa/Mel129pb."""
    adata = cohort.adata
    donors = sorted(adata.obs["donor_id"].unique())
    rename = {d: f"Mel{60 + i}" for i, d in enumerate(donors)}
    rename[donors[0]] = "Mel129"
    patient = adata.obs["donor_id"].map(rename).astype(str)
    sample = patient.copy()
    first = np.flatnonzero(patient == "Mel129")
    sample.iloc[first] = np.where(np.arange(first.size) % 2 == 0, "Mel129pa", "Mel129pb")
    counts = sp.csc_matrix(adata.X).toarray().T.astype(np.int64)  # genes x cells
    cells = [f"{c}_comb" for c in adata.obs_names]
    labels = adata.obs["author_cell_type"].astype(str).map(JERBY_LABELS)
    files = gse115978_layout(
        counts, genes=adata.var_names, cells=list(zip(cells, sample, labels, strict=True))
    )
    truth = pd.DataFrame(
        {"patient": patient.to_numpy(), "sample": sample.to_numpy(), "label": labels.to_numpy()},
        index=cells,
    )
    return files, counts, truth


# --------------------------------------------------------------------------- #
# GSE115978 end to end, up to the associations, through retries and a resume
# --------------------------------------------------------------------------- #
@pytest.fixture(scope="module")
def jerby_run(small_cohort, tmp_path_factory):
    workdir = tmp_path_factory.mktemp("public_gse115978")
    files, counts, truth = gse115978_from_cohort(small_cohort["cohort"])
    matrix = "GSE115978_counts.csv.gz"
    with serve(lifetime=600) as server:
        # the matrix: a server error, then a transfer cut at 40%, then a resumed transfer
        faults = {matrix: [("status", 503), ("truncate", len(files[matrix]) * 2 // 5)]}
        registry = served_registry(server, workdir, {"GSE115978": files}, faults=faults)
        configure(workdir, registry, public_rows("GSE115978"))
        run_snakemake(
            workdir, "results/summary/associations.tsv", "results/summary/patients.tsv",
            "--cores", "2", "--configfile", "config/config.yaml",
        )  # fmt: skip
        requests = {name: server.requests_for(f"GSE115978/{name}") for name in files}
    return {
        "workdir": workdir, "files": files, "counts": counts, "truth": truth,
        "genes": small_cohort["cohort"].adata.var_names, "requests": requests,
    }  # fmt: skip


def test_gse115978_downloaded_through_a_server_error_and_a_resume(jerby_run):
    workdir, files = jerby_run["workdir"], jerby_run["files"]
    folder = workdir / "resources" / "datasets" / "downloads" / "GSE115978"
    assert sorted(p.name for p in folder.iterdir()) == sorted(files)  # no .part, nothing aside
    for name, payload in files.items():
        assert (folder / name).read_bytes() == payload
    # 503, then a full request cut short, then a Range request for the rest
    ranges = jerby_run["requests"]["GSE115978_counts.csv.gz"]
    assert ranges[:2] == [None, None]
    cut = len(files["GSE115978_counts.csv.gz"]) * 2 // 5
    assert ranges[2] == f"bytes={cut}-"
    # the checksums of the first download are recorded in the lock file
    assert lock_entries(workdir) == {name: sha256(payload) for name, payload in files.items()}
    manifest = pd.read_csv(workdir / "results/download_dataset/GSE115978.files.tsv", sep="\t")
    assert dict(zip(manifest["role"], manifest["size_bytes"], strict=True)) == {
        "matrix": len(files["GSE115978_counts.csv.gz"]),
        "annotation": len(files["GSE115978_cell.annotations.csv.gz"]),
    }


def test_gse115978_prepared_with_the_authors_labels_and_patients(jerby_run):
    adata = prepared(jerby_run["workdir"], "GSE115978")
    truth = jerby_run["truth"]
    kept = truth[truth["label"] != "?"]  # cells the authors could not assign are excluded
    assert sorted(adata.obs_names) == sorted(kept.index)
    # Mel129pa and Mel129pb: two samples of one patient
    mel129 = adata.obs[adata.obs["patient"] == "Mel129"]
    assert (mel129.index.map(kept["patient"]) == "Mel129").all()
    assert set(mel129["sample"]) == {"Mel129pa", "Mel129pb"}
    assert adata.obs["patient"].nunique() == truth["patient"].nunique() == 12
    assert (adata.obs["cell_type_original"].astype(str) == kept.loc[adata.obs_names, "label"]).all()
    assert type_of(adata)["T.CD8"] == "CD8_T"
    assert type_of(adata)["Mal"] == "malignant"
    assert adata.uns["cd8exo"]["dataset"] == "GSE115978"
    assert adata.uns["cd8exo"]["value_scale"] == "counts"
    assert "Jerby-Arnon" in adata.uns["cd8exo"]["citation"]
    # raw counts, as in the CSV (genes x cells), in X: the one matrix file keeps no copy
    assert "counts" not in adata.layers
    genes = list(jerby_run["genes"])
    for cell in adata.obs_names[:: max(1, adata.n_obs // 7)]:
        column = truth.index.get_loc(cell)
        for gene in ("PLP2", "CD8A", "GZMB"):
            expected = jerby_run["counts"][genes.index(gene), column]
            assert value(adata, cell, gene) == expected


def test_gse115978_associations_recover_the_planted_signal(jerby_run, small_cohort):
    workdir = jerby_run["workdir"]
    assoc = pd.read_csv(workdir / "results/summary/associations.tsv", sep="\t")
    assert set(assoc["dataset"]) == {"GSE115978"}
    row = assoc.set_index(["signature", "target"]).loc[("Chu2023_CD8_c2_Teff", "PLP2")]
    assert row["rho"] < -0.6
    assert row["q_value"] < 0.05
    # the patient is the unit: 12 patients, the planted low-CD8 one excluded
    patients = pd.read_csv(workdir / "results/summary/patients.tsv", sep="\t")
    assert len(patients) == 12
    assert int(patients["included"].sum()) == 11
    assert set(assoc["n_patients"].dropna()) == {11}


# --------------------------------------------------------------------------- #
# Every other registry format, up to results/prepare_dataset/{dataset}.h5ad
# --------------------------------------------------------------------------- #
@pytest.fixture(scope="module")
def formats_run(tmp_path_factory):
    """One Snakemake run preparing one miniature dataset of each other format."""
    workdir = tmp_path_factory.mktemp("public_formats")
    rng = np.random.default_rng(2026)
    payloads, expected = {}, {}
    payloads["GSE72056"], expected["GSE72056"] = gse72056_files(rng)
    payloads["GSE103322"], expected["GSE103322"] = gse103322_files(rng)
    payloads["GSE176078"], expected["GSE176078"] = gse176078_files(rng)
    payloads["GSE131907"], expected["GSE131907"] = gse131907_files(rng)
    payloads["TISCH2_SKCM_GSE72056"], expected["TISCH2"] = tisch2_files(rng)
    with serve(lifetime=600) as server:
        registry = served_registry(server, workdir, payloads)
        configure(workdir, registry, public_rows(*payloads))
        targets = [f"results/prepare_dataset/{d}.h5ad" for d in payloads]
        result = run_snakemake(
            workdir, *targets, "--cores", "2", "--keep-going", "--configfile", "config/config.yaml",
            check=False,
        )  # fmt: skip
    return {"workdir": workdir, "payloads": payloads, "expected": expected, "result": result}


def formats_prepared(formats_run, dataset_id):
    path = formats_run["workdir"] / "results" / "prepare_dataset" / f"{dataset_id}.h5ad"
    if not path.exists():
        log = formats_run["workdir"] / "logs"
        logs = "\n".join(p.read_text()[-3000:] for p in log.rglob(f"{dataset_id}.log"))
        pytest.fail(
            f"{dataset_id} was not prepared:\n{logs}\n{formats_run['result'].stderr[-3000:]}"
        )
    # the downloaded files are the served ones, their checksums recorded
    folder = formats_run["workdir"] / "resources" / "datasets" / "downloads" / dataset_id
    recorded = lock_entries(formats_run["workdir"])
    for name, payload in formats_run["payloads"][dataset_id].items():
        assert (folder / name).read_bytes() == payload
        assert recorded[name] == sha256(payload)
    return prepared(formats_run["workdir"], dataset_id)


def test_gse72056_metadata_rows_and_excel_gene_names(formats_run):
    adata = formats_prepared(formats_run, "GSE72056")
    values = formats_run["expected"]["GSE72056"]
    assert adata.n_obs == 9  # the unresolved cell is excluded
    assert sorted(adata.obs["patient"].unique()) == ["Mel79", "Mel80"]
    assert type_of(adata) == {
        "malignant": "malignant", "T": "other", "B": "B", "Macro.": "myeloid",
        "Endo.": "endothelial", "CAF": "fibroblast", "NK": "NK", "unassigned": "other",
    }  # fmt: skip
    assert adata.uns["cd8exo"]["value_scale"] == "log2_tpm10"  # the file's values, not logged again
    cell = "cy80-CD45-neg-B10_S10_comb"
    assert value(adata, cell, "PLP2") == pytest.approx(values[6, 9], abs=1e-4)
    assert adata.var.loc["SEPTIN1", "original_name"] == "1-Sep"
    assert "1-Mar" not in set(adata.var["original_name"])  # MARCHF1 or MTARC1: dropped


def test_gse103322_quoted_genes_and_patient_from_the_cell_id(formats_run):
    adata = formats_prepared(formats_run, "GSE103322")
    values = formats_run["expected"]["GSE103322"]
    assert "PLP2" in adata.var_names
    assert sorted(adata.obs["patient"].unique()) == ["HN26", "HN28"]
    assert adata.obs.loc["HNSCC26_P24_H05_S377_comb", "patient"] == "HN26"
    assert "HNSCC_combo1_HNSCC_ComboP1_A01_S1_comb" not in adata.obs_names  # no patient number
    assert "HN28_P7_A01_S9_comb" not in adata.obs_names  # classified neither way
    assert adata.obs.loc["HN28_P15_D06_S330_comb", "sample"] == "HN28_lymph_node"
    assert type_of(adata)["T cell"] == "other"  # the authors did not split CD8/CD4
    assert type_of(adata)["-Fibroblast"] == "fibroblast"
    assert value(adata, "HN26_P3_B02_S10_comb", "CD8A") == pytest.approx(values[5, 6], abs=1e-4)


def test_gse176078_tar_of_matrix_market(formats_run):
    adata = formats_prepared(formats_run, "GSE176078")
    counts = formats_run["expected"]["GSE176078"]
    assert adata.n_obs == len(WU_CELLS)
    assert sorted(adata.obs["patient"].unique()) == ["CID3586", "CID4465"]
    mapping = type_of(adata)
    assert mapping["T cells CD8+"] == "CD8_T"
    assert mapping["Cancer Her2 SC"] == mapping["Cancer Basal SC"] == "malignant"
    assert mapping["Cycling T-cells"] == "other"
    assert value(adata, "CID3586_ACCAGTAGTTGTGGCC", "PLP2") == 77
    assert value(adata, "CID4465_AACCATGTCTTGCATT", "CD8A") == counts[3, 5]  # counts in X
    assert adata.var.loc["SEPTIN7", "original_name"] == "SEPT7"
    # the archive is all that is kept: nothing unpacked next to it
    folder = formats_run["workdir"] / "resources" / "datasets" / "downloads" / "GSE176078"
    assert [p.name for p in folder.iterdir()] == ["GSE176078_Wu_etal_2021_BRCA_scRNASeq.tar.gz"]


def test_gse131907_umi_matrix_keeps_the_tumour_samples(formats_run):
    adata = formats_prepared(formats_run, "GSE131907")
    counts = formats_run["expected"]["GSE131907"]
    assert sorted(adata.obs["patient"].unique()) == ["BRONCHO_58", "LUNG_T06"]
    assert adata.n_obs == 7  # normal lung and lymph-node samples left out
    assert type_of(adata) == {
        "Malignant cells": "malignant", "Cytotoxic CD8+ T": "CD8_T", "CD8+/CD4+ Mixed Th": "other",
        "NK cells": "NK", "mo-Mac": "myeloid", "Fibroblasts": "fibroblast", "tS2": "malignant",
    }  # fmt: skip
    assert value(adata, "AAACGGGAGCTGCAAG_LUNG_T06", "CD8A") == counts[2, 2] == 9


def test_tisch2_template_id_h5_and_metainfo(formats_run):
    adata = formats_prepared(formats_run, "TISCH2_SKCM_GSE72056")
    counts = formats_run["expected"]["TISCH2"]
    assert adata.uns["cd8exo"]["value_scale"] == "counts"  # detected (value_scale: auto)
    assert type_of(adata) == {
        "Malignant": "malignant", "CD8Tex": "CD8_T", "CD4Tconv": "CD4_T", "CD8T": "CD8_T",
        "Mono/Macro": "myeloid", "Fibroblasts": "fibroblast",
    }  # fmt: skip
    assert adata.obs.loc["Mel80_AAAC", "sample"] == "Mel80_post"
    assert value(adata, "Mel79_AAAG", "GZMB") == counts[1, 2]


# --------------------------------------------------------------------------- #
# Faults through the workflow
# --------------------------------------------------------------------------- #
def test_corrupted_download_is_kept_aside_and_the_next_run_recovers(tmp_path):
    payloads, _ = gse72056_files(np.random.default_rng(3))
    name = "GSE72056_melanoma_single_cell_revised_v2.txt.gz"
    good = payloads[name]
    corrupted = bytearray(good)
    corrupted[len(good) // 2] ^= 0xFF
    folder = tmp_path / "resources" / "datasets" / "downloads" / "GSE72056"
    with serve(lifetime=300) as server:
        registry = served_registry(
            server, tmp_path, {"GSE72056": payloads}, checksums=True,
            faults={name: [("body", bytes(corrupted))]},
        )  # fmt: skip
        configure(tmp_path, registry, public_rows("GSE72056"))
        target = "results/prepare_dataset/GSE72056.h5ad"
        first = run_snakemake(
            tmp_path, target, "--cores", "1", "--configfile", "config/config.yaml", check=False
        )
        assert first.returncode == 1
        no_traceback(first)
        assert f"checksum mismatch for {name}" in first.stderr
        assert sha256(good) in first.stderr  # the expected checksum, from the registry
        aside = folder / f"{name}.bad-{sha256(bytes(corrupted))[:8]}"
        assert aside.read_bytes() == bytes(corrupted)
        assert not (folder / name).exists()  # a bad file never takes the good name
        # the server now sends the right file: the next run completes, the bad file stays
        run_snakemake(tmp_path, target, "--cores", "1", "--configfile", "config/config.yaml")
    assert (folder / name).read_bytes() == good
    assert aside.read_bytes() == bytes(corrupted)
    assert prepared(tmp_path, "GSE72056").n_obs == 9


def test_server_down_stops_fast_and_local_dir_is_the_way_out(tmp_path):
    payloads, _ = gse72056_files(np.random.default_rng(4))
    name = "GSE72056_melanoma_single_cell_revised_v2.txt.gz"
    registry = yaml.safe_load(REGISTRY.read_text())
    url = closed_port_url(f"GSE72056/{name}")
    registry["datasets"]["GSE72056"]["files"]["matrix"]["url"] = url
    (tmp_path / "registry.yaml").write_text(yaml.safe_dump(registry, sort_keys=False))
    configure(
        tmp_path, tmp_path / "registry.yaml", public_rows("GSE72056"), retries=5, backoff=30.0
    )
    target = "results/prepare_dataset/GSE72056.h5ad"
    result = run_snakemake(
        tmp_path, target, "--cores", "1", "--configfile", "config/config.yaml", check=False
    )
    assert result.returncode == 1
    no_traceback(result)
    assert f"cannot reach the server for {url}" in result.stderr
    assert f"put it in resources/datasets/downloads/GSE72056/ as '{name}'" in result.stderr
    log = (tmp_path / "logs/download_dataset/GSE72056.log").read_text()
    assert "retry" not in log  # no retry loop (5 retries with a 30 s back-off would be minutes)
    # files downloaded by hand: `download: local_dir:` points at them; used as they are
    mine = tmp_path / "by_hand"
    mine.mkdir()
    (mine / name).write_bytes(payloads[name])
    configure(tmp_path, tmp_path / "registry.yaml", public_rows("GSE72056"), local_dir=str(mine))
    run_snakemake(tmp_path, target, "--cores", "1", "--configfile", "config/config.yaml")
    linked = tmp_path / "resources" / "datasets" / "downloads" / "GSE72056" / name
    assert linked.resolve() == (mine / name).resolve()
    assert (mine / name).read_bytes() == payloads[name]
    assert lock_entries(tmp_path) == {name: sha256(payloads[name])}
    assert prepared(tmp_path, "GSE72056").n_obs == 9
    # a verified file that later goes missing is named, with the way to fetch it again
    (mine / name).rename(tmp_path / name)
    again = run_snakemake(
        tmp_path, target, "--cores", "1", "--configfile", "config/config.yaml",
        "--forcerun", "prepare_public_dataset", check=False,
    )  # fmt: skip
    assert again.returncode == 1
    no_traceback(again)
    manifest = "results/download_dataset/GSE72056.files.tsv"
    assert f"listed in {manifest} is gone; delete {manifest}" in again.stderr


# --------------------------------------------------------------------------- #
# The shipped public configuration
# --------------------------------------------------------------------------- #
@pytest.fixture
def public_workdir(tmp_path):
    """A working directory with the shipped config/public.yaml and the resources it names."""
    shutil.copytree(ROOT / "config", tmp_path / "config")
    resources = tmp_path / "resources"
    (resources / "datasets").mkdir(parents=True)
    for name in ("gene_sets", "targets", "demo"):
        (resources / name).symlink_to(ROOT / "resources" / name)
    for name in ("registry.yaml", "checksums.lock.tsv"):
        shutil.copy(ROOT / "resources" / "datasets" / name, resources / "datasets" / name)
    return tmp_path


def test_public_config_plans_download_then_the_shared_stages(public_workdir):
    result = run_snakemake(
        public_workdir,
        "-n",
        "--cores",
        "1",
        "--configfile",
        "config/public.yaml",
        "--quiet",
        "rules",
    )
    sheet = pd.read_csv(ROOT / "config" / "public_datasets.tsv", sep="\t")
    assert len(sheet) >= 3
    assert "GSE115978" in set(sheet["registry_id"])
    counts = dict(line.split()[:2] for line in result.stdout.splitlines() if len(line.split()) == 2)
    assert counts["download_dataset"] == counts["prepare_public_dataset"] == str(len(sheet))
    assert counts["filter_cells"] == str(len(sheet))
    assert "prepare_dataset" not in counts  # no local dataset in this sheet


def _offline():
    try:
        socket.getaddrinfo("ftp.ncbi.nlm.nih.gov", 443)
    except OSError:
        return True
    return False


@pytest.mark.skipif(not _offline(), reason="network available: this would download ~1 GB")
def test_public_config_offline_fails_fast_naming_url_and_folder(public_workdir):
    result = run_snakemake(
        public_workdir, "--cores", "1", "--configfile", "config/public.yaml", check=False
    )
    assert result.returncode == 1
    no_traceback(result)
    assert "cannot reach the server for https://ftp.ncbi.nlm.nih.gov/geo/series/" in result.stderr
    assert "resources/datasets/downloads/" in result.stderr
    assert "download: local_dir:" in result.stderr
    assert not list((public_workdir / "results").rglob("*.h5ad"))
