"""CELLxGENE Census datasets through Snakemake: queried over S3 from a local server.

A miniature Census release in the real layout (tests/census_layout.py) is served from a
local S3 server (moto, 127.0.0.1) in a public-read bucket, and the workflow is pointed at it
with the two documented settings ``download: census: uri:`` and ``tiledb_config:``. Two
dataset-sheet rows name registry ids only: ``CENSUS_<dataset id>`` (the registry template)
and an entry of a test registry that selects cells by an obs filter spanning two datasets.
"""

from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import yaml
from census_layout import (
    DATASET_A,
    DATASET_B,
    DATASET_C,
    EXPECTED_TYPE,
    MELANOMA_FILTER,
    PUBLIC_URI,
    VERSION,
    build_census,
    down_census,
    s3_census,
)
from http_server import free_port
from workflow_helpers import ROOT, no_traceback, run_snakemake, write_config

from cd8exo._utils import sha256sum
from cd8exo.cells.public import check_harmonised
from cd8exo.io.census import RELEASE_DIRECTORY_URL, query_census

pytestmark = pytest.mark.integration

BY_ID = f"CENSUS_{DATASET_A}"
BY_FILTER = "MELANOMA_CENSUS"
FAST = {"retries": 1, "backoff": 0.0, "timeout": 10}


def census_registry(workdir):
    """The repository's registry plus one entry selecting cells by an obs filter."""
    registry = yaml.safe_load((ROOT / "resources/datasets/registry.yaml").read_text())
    registry["datasets"][BY_FILTER] = {
        "title": "Melanoma cells of two Census datasets",
        "citation": "test",
        "format": "h5ad_cellxgene",
        "census": {
            "census_version": VERSION,
            "organism": "Homo sapiens",
            "obs_value_filter": MELANOMA_FILTER,
        },
        "files": {"h5ad": {"url": None, "filename": f"census_{VERSION}_melanoma.h5ad"}},
        "value_scale": "counts",
    }
    path = workdir / "registry.yaml"
    path.write_text(yaml.safe_dump(registry, sort_keys=False))
    return path


def configure(workdir, *registry_ids, census):
    settings = {
        "registry": str(census_registry(workdir)),
        "lock_file": str(workdir / "checksums.lock.tsv"),
        "census": census,
    }
    write_config(
        workdir, [{"registry_id": rid} for rid in registry_ids], download={**settings, **FAST}
    )


def prepare(workdir, *registry_ids, check=True):
    targets = [f"results/prepare_dataset/{rid}.h5ad" for rid in registry_ids]
    return run_snakemake(workdir, "--cores", "1", *targets, check=check)


def downloaded(workdir, registry_id, filename):
    return workdir / "resources" / "datasets" / "downloads" / registry_id / filename


@pytest.fixture(scope="module")
def release(tmp_path_factory):
    root = tmp_path_factory.mktemp("census_release") / "soma"
    truth = build_census(root)
    return root, truth


@pytest.fixture(scope="module")
def census_run(release, tmp_path_factory):
    root, truth = release
    workdir = tmp_path_factory.mktemp("census_run")
    with s3_census(root) as served:
        configure(workdir, BY_ID, BY_FILTER, census=served)
        result = prepare(workdir, BY_ID, BY_FILTER)
    return workdir, truth, result


def planted(truth, query):
    """Planted cells of a query, as the harmonised table should hold them."""
    obs = truth["obs"].assign(total=np.asarray(truth["raw"].sum(axis=1)).ravel())
    cells = obs.query(query, engine="python")
    cells = cells[cells["cell_type"].astype(str) != "unknown"]
    return cells.assign(cell_type=cells["cell_type"].astype(str).map(EXPECTED_TYPE))


def test_census_dataset_by_id_keeps_primary_cells_with_patients_labels_and_counts(census_run):
    workdir, truth, _ = census_run
    adata = ad.read_h5ad(workdir / "results/prepare_dataset" / f"{BY_ID}.h5ad")
    check_harmonised(adata)
    expected = planted(truth, f"dataset_id == '{DATASET_A}' and is_primary_data == True")
    # 3 donors x 5 known cell types x 4 cells; the non-primary and "unknown" cells are out
    assert adata.n_obs == len(expected) == 60
    assert sorted(adata.obs["patient"].unique()) == ["A1", "A2", "A3"]
    assert adata.obs["cell_type"].astype(str).value_counts().to_dict() == {
        "CD8_T": 24,
        "malignant": 12,
        "B": 12,
        "myeloid": 12,
    }
    assert adata.uns["cd8exo"]["value_scale"] == "counts"
    # the counts are the planted ones: per patient and cell type, the same totals
    got = (
        pd.DataFrame(
            {
                "patient": adata.obs["patient"].astype(str),
                "cell_type": adata.obs["cell_type"].astype(str),
                "total": np.asarray(adata.X.sum(axis=1)).ravel(),
            }
        )
        .groupby(["patient", "cell_type"])["total"]
        .sum()
    )
    want = (
        expected.assign(patient=expected["donor_id"].astype(str))
        .groupby(["patient", "cell_type"])["total"]
        .sum()
    )
    pd.testing.assert_series_equal(got, want, check_dtype=False)
    # genes by symbol (feature_name), not Ensembl id; PLP2 only in the malignant cells
    assert "PLP2" in adata.var_names
    assert "CD8A" in adata.var_names
    plp2 = np.asarray(adata[:, "PLP2"].X.todense()).ravel()
    assert (plp2[adata.obs["cell_type"] == "malignant"] > 0).all()
    assert (plp2[adata.obs["cell_type"] != "malignant"] == 0).all()


def test_census_obs_filter_spans_datasets_without_merging_their_donors(census_run):
    workdir, truth, _ = census_run
    adata = ad.read_h5ad(workdir / "results/prepare_dataset" / f"{BY_FILTER}.h5ad")
    check_harmonised(adata)
    expected = planted(truth, MELANOMA_FILTER)
    assert adata.n_obs == len(expected) == 60
    # donor P1 is in both melanoma datasets: two patients, not one
    assert sorted(adata.obs["patient"].unique()) == [
        f"{DATASET_B[:8]}:P1",
        f"{DATASET_B[:8]}:P2",
        f"{DATASET_C[:8]}:P1",
        f"{DATASET_C[:8]}:P3",
    ]
    assert adata.obs.groupby("patient", observed=True).size().tolist() == [15, 15, 15, 15]


def test_census_query_is_logged_and_its_checksum_recorded(census_run):
    workdir, _, _ = census_run
    log = (workdir / "logs/download_dataset" / f"{BY_FILTER}.log").read_text()
    assert "64 cells match (2 dataset(s), 4 donor(s)); reading their counts" in log
    assert "read 64 cells x 16 genes" in log
    lock = pd.read_csv(workdir / "checksums.lock.tsv", sep="\t")
    files = {
        f"census_{VERSION}_{DATASET_A}.h5ad": BY_ID,
        f"census_{VERSION}_melanoma.h5ad": BY_FILTER,
    }
    assert set(lock["filename"]) == set(files)
    for filename, registry_id in files.items():
        path = downloaded(workdir, registry_id, filename)
        assert lock.set_index("filename").loc[filename, "sha256"] == sha256sum(path)
        assert not path.with_name(path.name + ".part").exists()


def test_census_over_s3_gives_the_bytes_of_a_local_copy(census_run, release, tmp_path):
    workdir, _, _ = census_run
    root, _ = release
    census = {"census_version": VERSION, "obs_value_filter": MELANOMA_FILTER}
    local = query_census(census, tmp_path / "local.h5ad", uri=str(root), lock_file=None)
    served = downloaded(workdir, BY_FILTER, f"census_{VERSION}_melanoma.h5ad")
    assert sha256sum(local) == sha256sum(served)


def test_census_file_already_there_is_verified_without_the_server(census_run):
    workdir, _, _ = census_run
    path = downloaded(workdir, BY_ID, f"census_{VERSION}_{DATASET_A}.h5ad")
    before = sha256sum(path)
    # the server is gone; the query result on disk is verified against the lock file
    configure(workdir, BY_ID, BY_FILTER, census=down_census())
    result = run_snakemake(
        workdir, "--cores", "1", "--forcerun", "download_dataset",
        f"results/prepare_dataset/{BY_ID}.h5ad",
    )  # fmt: skip
    assert result.returncode == 0
    assert sha256sum(path) == before
    assert (
        "querying CELLxGENE" not in (workdir / "logs/download_dataset" / f"{BY_ID}.log").read_text()
    )


def test_census_server_down_stops_fast_naming_the_settings(tmp_path):
    config = down_census()
    configure(tmp_path, BY_ID, census=config)
    result = prepare(tmp_path, BY_ID, check=False)
    assert result.returncode == 1
    no_traceback(result)
    assert "the CELLxGENE query" in result.stderr
    assert "download: census: uri:" in result.stderr
    assert f"census_{VERSION}_{DATASET_A}.h5ad" in result.stderr
    folder = tmp_path / "resources/datasets/downloads" / BY_ID
    assert not any(folder.glob("*.h5ad")), "no file (whole or partial) may be left"


def test_census_offline_stops_at_once_naming_the_release_and_the_ways_out(tmp_path, monkeypatch):
    # every HTTP(S) request goes to a port nothing listens on: this machine is "offline"
    proxy = f"http://127.0.0.1:{free_port()}"
    for name in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy"):
        monkeypatch.setenv(name, proxy)
    for name in ("NO_PROXY", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
    configure(tmp_path, BY_ID, census={"uri": None})
    result = prepare(tmp_path, BY_ID, check=False)
    assert result.returncode == 1
    no_traceback(result)
    assert f"cannot reach the CELLxGENE Census release directory {RELEASE_DIRECTORY_URL}" in (
        result.stderr
    )
    assert PUBLIC_URI in result.stderr
    assert "download: census: uri:" in result.stderr
    assert f"resources/datasets/downloads/{BY_ID}/ as 'census_{VERSION}_{DATASET_A}.h5ad'" in (
        result.stderr
    )
