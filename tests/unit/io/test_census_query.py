"""cd8exo.census: queries of a miniature Census release read from a local folder.

The release (tests/census_layout.py) has the real Census layout; the S3 path and the
workflow around it are tested in tests/integration/test_census.py.
"""

from __future__ import annotations

import logging

import anndata as ad
import numpy as np
import pandas as pd
import pytest
from census_layout import DATASET_A, DATASET_B, DATASET_C, MELANOMA_FILTER, VERSION, build_census

from cd8exo._utils import sha256sum
from cd8exo.errors import ChecksumError, DownloadError
from cd8exo.io.census import census_tiledb_config, query_census
from cd8exo.io.obs import map_cellxgene_obs
from cd8exo.io.registry import registry_entry
from cd8exo.io.verify import record_checksum


@pytest.fixture(scope="module")
def release(tmp_path_factory):
    root = tmp_path_factory.mktemp("census") / "soma"
    return root, build_census(root)


def census(value_filter):
    return {"census_version": VERSION, "organism": "Homo sapiens", "obs_value_filter": value_filter}


def test_query_returns_the_planted_cells_and_counts_of_the_filter(release, tmp_path):
    root, truth = release
    out = query_census(census(MELANOMA_FILTER), tmp_path / "m.h5ad", uri=str(root))
    adata = ad.read_h5ad(out)
    obs = truth["obs"]
    mask = (obs["disease"] == "melanoma") & obs["is_primary_data"]
    assert adata.n_obs == int(mask.sum()) == 64
    assert set(adata.obs["dataset_id"]) == {DATASET_B, DATASET_C}
    # counts (raw, float32) equal the planted ones, cell for cell (soma_joinid kept in obs)
    rows = adata.obs["soma_joinid"].to_numpy()
    np.testing.assert_array_equal(adata.X.toarray(), truth["raw"][rows].toarray())
    assert list(adata.var["feature_name"]) == list(truth["var"]["feature_name"])
    assert adata.uns["census_query"]["obs_value_filter"] == MELANOMA_FILTER


def test_filter_without_is_primary_data_warns_and_returns_the_duplicates(release, tmp_path, caplog):
    root, _ = release
    with caplog.at_level(logging.WARNING, logger="cd8exo.io"):
        out = query_census(census("disease == 'melanoma'"), tmp_path / "d.h5ad", uri=str(root))
    assert "does not select is_primary_data == True" in caplog.text
    assert ad.read_h5ad(out).n_obs == 64 + 2  # one non-primary duplicate per dataset


def test_query_matching_nothing_stops_with_the_filter_and_writes_nothing(release, tmp_path):
    root, _ = release
    with pytest.raises(DownloadError, match="matched no cells; check the dataset id"):
        query_census(census("dataset_id == 'no-such-dataset'"), tmp_path / "x.h5ad", uri=str(root))
    assert list(tmp_path.iterdir()) == []


def test_invalid_filter_names_the_filter_and_the_settings(release, tmp_path):
    root, _ = release
    with pytest.raises(DownloadError, match=r"no_such_column.*download: census: uri:"):
        query_census(census("no_such_column == 'x'"), tmp_path / "x.h5ad", uri=str(root))
    assert list(tmp_path.iterdir()) == []


def test_other_bytes_than_recorded_are_kept_aside_and_dest_not_written(release, tmp_path):
    root, _ = release
    lock = tmp_path / "lock.tsv"
    dest = tmp_path / f"census_{VERSION}_{DATASET_A}.h5ad"
    record_checksum(lock, filename=dest.name, sha256="0" * 64, size=1, url=None)
    value_filter = f"dataset_id == '{DATASET_A}' and is_primary_data == True"
    with pytest.raises(ChecksumError, match="kept aside"):
        query_census(census(value_filter), dest, uri=str(root), lock_file=lock)
    assert not dest.exists()
    (aside,) = tmp_path.glob(f"{dest.name}.bad-*")
    assert aside.stat().st_size > 0
    assert pd.read_csv(lock, sep="\t", dtype=str)["sha256"].tolist() == ["0" * 64]  # unchanged


def test_first_query_records_its_checksum_and_a_repeat_matches_it(release, tmp_path):
    root, _ = release
    lock = tmp_path / "lock.tsv"
    first = query_census(
        census(MELANOMA_FILTER), tmp_path / "a" / "m.h5ad", uri=str(root), lock_file=lock
    )
    again = query_census(
        census(MELANOMA_FILTER), tmp_path / "b" / "m.h5ad", uri=str(root), lock_file=lock
    )
    recorded = pd.read_csv(lock, sep="\t").set_index("filename")["sha256"]
    assert recorded["m.h5ad"] == sha256sum(first) == sha256sum(again)


def test_tiledb_settings_take_the_download_options_and_the_users_keys_win():
    settings = census_tiledb_config(
        {"vfs.s3.region": "eu-central-1", "vfs.s3.connect_max_tries": 9}, retries=2, timeout=7.5
    )
    assert settings == {
        "vfs.s3.connect_max_tries": "9",
        "vfs.s3.connect_timeout_ms": "7500",
        "vfs.s3.request_timeout_ms": "7500",
        "vfs.s3.region": "eu-central-1",
    }


def test_patients_of_several_datasets_are_prefixed_with_the_dataset(release):
    _, truth = release
    obs = truth["obs"][truth["obs"]["disease"] == "melanoma"].copy()
    obs.index = obs["observation_joinid"].astype(str)
    mapped = map_cellxgene_obs(obs, dataset_id="melanoma")
    assert sorted(mapped["patient"].unique()) == [
        f"{DATASET_B[:8]}:P1",
        f"{DATASET_B[:8]}:P2",
        f"{DATASET_C[:8]}:P1",
        f"{DATASET_C[:8]}:P3",
    ]
    one = obs[obs["dataset_id"] == DATASET_B]
    assert sorted(map_cellxgene_obs(one, dataset_id="b")["patient"].unique()) == ["P1", "P2"]


def test_registry_census_entries_need_a_filter_and_no_url():
    base = {
        "format": "h5ad_cellxgene",
        "files": {"h5ad": {"url": None, "filename": "q.h5ad"}},
        "value_scale": "counts",
    }
    registry = {
        "datasets": {
            "NOFILTER": {**base, "census": {"census_version": VERSION}},
            "WITHURL": {
                **base,
                "census": census("is_primary_data == True"),
                "files": {"h5ad": {"url": "https://example.org/q.h5ad", "filename": "q.h5ad"}},
            },
        },
        "templates": {},
        "path": "test",
    }
    with pytest.raises(ValueError, match="needs an `obs_value_filter`"):
        registry_entry("NOFILTER", registry=registry)
    with pytest.raises(ValueError, match="no file url"):
        registry_entry("WITHURL", registry=registry)
    shipped = registry_entry(f"CENSUS_{DATASET_A}")
    assert shipped["census"]["obs_value_filter"] == (
        f"dataset_id == '{DATASET_A}' and is_primary_data == True"
    )
    assert shipped["files"]["h5ad"]["filename"] == f"census_{VERSION}_{DATASET_A}.h5ad"
