"""A miniature CELLxGENE Census, in the layout of a real release, and an S3 server for it.

:func:`build_census` writes, with TileDB-SOMA, the objects of the Census schema (2.x) that a
query touches: ``census_info/summary`` and ``census_info/datasets``, and
``census_data/homo_sapiens`` with ``obs`` (every column of the schema), ``ms/RNA/var``
(``feature_id``, ``feature_name``, ``feature_length``, ``nnz``, ``n_measured_obs``),
``ms/RNA/X/raw`` (float32 counts, no explicit zeros), ``ms/RNA/X/normalized`` and
``ms/RNA/feature_dataset_presence_matrix``. Three datasets, planted so a test can check
every cell: the same donor id ``P1`` in two datasets, non-primary duplicates, ``unknown``
cell types, and counts whose per-cell totals are known.

:func:`s3_census` serves such a folder from a local S3 server (moto, 127.0.0.1 only) in a
public-read bucket named like the real one, so ``cellxgene_census.open_soma`` reads it over
S3 with unsigned requests, exactly as it reads the public Census.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import scipy.sparse as sp
from http_server import free_port

VERSION = "2025-01-30"
BUCKET = "cellxgene-census-public-us-west-2"
PREFIX = f"cell-census/{VERSION}/soma/"
#: Where the real release lives (the same bucket and key layout is served by s3_census).
PUBLIC_URI = f"s3://{BUCKET}/{PREFIX}"

#: Three datasets: a breast cancer one queried by id, two melanoma ones queried by a filter.
DATASET_A = "5b3c1f2e-8d4a-4c6b-9e1f-0a2b3c4d5e6f"
DATASET_B = "7e9d2c1b-3a4f-4b5c-8d6e-1f2a3b4c5d6e"
DATASET_C = "9a8b7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d"
MELANOMA_FILTER = "disease == 'melanoma' and is_primary_data == True"

#: Genes (Ensembl id, symbol); the planted signal uses the named markers.
GENES = [
    ("ENSG00000153563", "CD8A"),
    ("ENSG00000172116", "CD8B"),
    ("ENSG00000100453", "GZMB"),
    ("ENSG00000180644", "PRF1"),
    ("ENSG00000117560", "FASLG"),
    ("ENSG00000188389", "PDCD1"),
    ("ENSG00000102007", "PLP2"),
    ("ENSG00000081237", "PTPRC"),
    ("ENSG00000119888", "EPCAM"),
    ("ENSG00000111057", "KRT18"),
    ("ENSG00000120215", "MLANA"),
    ("ENSG00000177455", "CD19"),
    ("ENSG00000170458", "CD14"),
    ("ENSG00000075624", "ACTB"),
    ("ENSG00000111640", "GAPDH"),
    ("ENSG00000166710", "B2M"),
]
#: cell_type (Cell Ontology label, id) -> marker counts planted in that cell type.
CELL_TYPES = {
    "malignant cell": ("CL:0001064", {"PLP2": 6, "EPCAM": 4, "KRT18": 5, "MLANA": 3}),
    "CD8-positive, alpha-beta T cell": (
        "CL:0000625",
        {"CD8A": 5, "CD8B": 3, "GZMB": 4, "PRF1": 2, "PTPRC": 3},
    ),
    "effector memory CD8-positive, alpha-beta T cell": (
        "CL:0000913",
        {"CD8A": 4, "GZMB": 6, "FASLG": 2, "PDCD1": 2, "PTPRC": 3},
    ),
    "B cell": ("CL:0000236", {"CD19": 4, "PTPRC": 3}),
    "macrophage": ("CL:0000235", {"CD14": 5, "PTPRC": 2}),
    "unknown": ("unknown", {"ACTB": 2}),
}
#: What a contract cell type each label becomes (cd8exo.readers.CELLXGENE_CELL_TYPES).
EXPECTED_TYPE = {
    "malignant cell": "malignant",
    "CD8-positive, alpha-beta T cell": "CD8_T",
    "effector memory CD8-positive, alpha-beta T cell": "CD8_T",
    "B cell": "B",
    "macrophage": "myeloid",
}


def _cells() -> pd.DataFrame:
    """The planted cells, one row each (before the Census columns are added)."""
    rows = []
    plan = [
        (DATASET_A, "breast carcinoma", "breast", ["A1", "A2", "A3"], 4),
        (DATASET_B, "melanoma", "skin of body", ["P1", "P2"], 3),
        (DATASET_C, "melanoma", "skin of body", ["P1", "P3"], 3),
    ]
    for dataset_id, disease, tissue, donors, per_type in plan:
        for donor in donors:
            for cell_type in CELL_TYPES:
                n = 1 if cell_type == "unknown" else per_type
                rows.extend(
                    {
                        "dataset_id": dataset_id,
                        "disease": disease,
                        "tissue": tissue,
                        "donor_id": donor,
                        "cell_type": cell_type,
                        "is_primary_data": True,
                    }
                    for _ in range(n)
                )
        # a duplicate of a malignant cell already in another dataset: not primary data
        rows.append(
            {
                "dataset_id": dataset_id,
                "disease": disease,
                "tissue": tissue,
                "donor_id": donors[0],
                "cell_type": "malignant cell",
                "is_primary_data": False,
            }
        )
    return pd.DataFrame(rows)


def census_tables(seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame, sp.coo_matrix]:
    """obs, var and the raw counts (cells x genes) of the miniature Census."""
    rng = np.random.default_rng(seed)
    cells = _cells()
    n, g = len(cells), len(GENES)
    index = {symbol: j for j, (_, symbol) in enumerate(GENES)}
    counts = np.zeros((n, g), dtype=np.float32)
    for i, cell_type in enumerate(cells["cell_type"]):
        for symbol, mean in CELL_TYPES[cell_type][1].items():
            counts[i, index[symbol]] = rng.poisson(mean) + 1
        for symbol in ("ACTB", "GAPDH", "B2M"):
            counts[i, index[symbol]] += rng.poisson(8) + 1
    raw = sp.coo_matrix(counts)
    detected, totals = (counts > 0).sum(axis=1), counts.sum(axis=1)
    tissue_id = np.where(cells["tissue"] == "breast", "UBERON:0000310", "UBERON:0002097")
    obs = pd.DataFrame(
        {
            "soma_joinid": np.arange(n, dtype=np.int64),
            "dataset_id": cells["dataset_id"],
            "assay": "10x 3' v3",
            "assay_ontology_term_id": "EFO:0009922",
            "cell_type": cells["cell_type"],
            "cell_type_ontology_term_id": [CELL_TYPES[t][0] for t in cells["cell_type"]],
            "development_stage": "adult stage",
            "development_stage_ontology_term_id": "HsapDv:0000087",
            "disease": cells["disease"],
            "disease_ontology_term_id": np.where(
                cells["disease"] == "melanoma", "MONDO:0005105", "MONDO:0004989"
            ),
            "donor_id": cells["donor_id"],
            "is_primary_data": cells["is_primary_data"].astype(bool),
            "observation_joinid": [f"obs{i:05d}" for i in range(n)],
            "self_reported_ethnicity": "unknown",
            "self_reported_ethnicity_ontology_term_id": "unknown",
            "sex": "female",
            "sex_ontology_term_id": "PATO:0000383",
            "suspension_type": "cell",
            "tissue": cells["tissue"],
            "tissue_ontology_term_id": tissue_id,
            "tissue_type": "tissue",
            # breast and skin of body are their own high-level tissues
            "tissue_general": cells["tissue"],
            "tissue_general_ontology_term_id": tissue_id,
            "raw_sum": totals.astype(np.float64),
            "nnz": detected.astype(np.int64),
            "raw_mean_nnz": (totals / detected).astype(np.float64),
            "raw_variance_nnz": np.array([row[row > 0].var() for row in counts], dtype=np.float64),
            "n_measured_vars": np.full(n, g, dtype=np.int64),
        }
    )
    for column in obs.columns:
        if obs[column].dtype == object:
            obs[column] = obs[column].astype("category")
    var = pd.DataFrame(
        {
            "soma_joinid": np.arange(g, dtype=np.int64),
            "feature_id": [ensembl for ensembl, _ in GENES],
            "feature_name": [symbol for _, symbol in GENES],
            "feature_length": np.full(g, 2000, dtype=np.int64),
            "nnz": (counts > 0).sum(axis=0).astype(np.int64),
            "n_measured_obs": np.full(g, n, dtype=np.int64),
        }
    )
    return obs, var, raw


def _write_frame(collection, name: str, frame: pd.DataFrame) -> None:
    import tiledbsoma as soma

    table = pa.Table.from_pandas(frame, preserve_index=False)
    created = collection.add_new_dataframe(
        name, schema=table.schema, domain=[[0, max(len(frame) - 1, 0)]]
    )
    created.close()
    # written through its own handle: written through the collection's, the categorical
    # (dictionary) columns lose their values in tiledbsoma 2.3
    with soma.DataFrame.open(created.uri, "w") as out:
        out.write(table)


def _write_sparse(collection, name: str, matrix: sp.coo_matrix, dtype) -> None:
    with collection.add_new_sparse_ndarray(name, type=dtype, shape=matrix.shape) as out:
        out.write(
            pa.Table.from_pydict(
                {
                    "soma_dim_0": matrix.row.astype(np.int64),
                    "soma_dim_1": matrix.col.astype(np.int64),
                    "soma_data": pa.array(matrix.data).cast(dtype),
                }
            )
        )


def build_census(root: Path, seed: int = 0) -> dict:
    """Write the miniature Census release at ``root``; return what was planted.

    Returns
    -------
    ``{"obs": obs, "var": var, "raw": counts (csr, cells x genes)}``.
    """
    import tiledbsoma as soma

    obs, var, raw = census_tables(seed)
    datasets = pd.DataFrame(
        {
            "soma_joinid": np.arange(3, dtype=np.int64),
            "citation": ["Test citation A", "Test citation B", "Test citation C"],
            "collection_id": ["c0llec71-0000-4000-8000-000000000001"] * 3,
            "collection_name": ["Miniature tumour collection"] * 3,
            "collection_doi": [""] * 3,
            "collection_doi_label": [""] * 3,
            "dataset_id": [DATASET_A, DATASET_B, DATASET_C],
            "dataset_version_id": [f"v-{d}" for d in (DATASET_A, DATASET_B, DATASET_C)],
            "dataset_title": ["Breast tumours", "Melanoma cohort 1", "Melanoma cohort 2"],
            "dataset_h5ad_path": [f"{d}.h5ad" for d in (DATASET_A, DATASET_B, DATASET_C)],
            "dataset_total_cell_count": [
                int((obs["dataset_id"] == d).sum()) for d in (DATASET_A, DATASET_B, DATASET_C)
            ],
        }
    )
    summary = pd.DataFrame(
        {
            "soma_joinid": np.arange(4, dtype=np.int64),
            "label": [
                "census_schema_version",
                "census_build_date",
                "dataset_schema_version",
                "total_cell_count",
            ],
            "value": ["2.1.0", VERSION, "5.2.0", str(len(obs))],
        }
    )
    presence = sp.coo_matrix(
        np.vstack(
            [
                raw.tocsr()[np.asarray(obs["dataset_id"] == d)].sum(axis=0).A1 > 0
                for d in (DATASET_A, DATASET_B, DATASET_C)
            ]
        )
    )
    normalized = sp.coo_matrix(sp.diags(1 / raw.tocsr().sum(axis=1).A1) @ raw.tocsr())
    with soma.Collection.create(str(root)) as census:
        info = census.add_new_collection("census_info")
        _write_frame(info, "summary", summary)
        _write_frame(info, "datasets", datasets)
        data = census.add_new_collection("census_data")
        experiment = data.add_new_collection("homo_sapiens", soma.Experiment)
        _write_frame(experiment, "obs", obs)
        ms = experiment.add_new_collection("ms")
        rna = ms.add_new_collection("RNA", soma.Measurement)
        _write_frame(rna, "var", var)
        x = rna.add_new_collection("X")
        _write_sparse(x, "raw", raw, pa.float32())
        _write_sparse(x, "normalized", normalized, pa.float32())
        _write_sparse(rna, "feature_dataset_presence_matrix", presence, pa.bool_())
    return {"obs": obs, "var": var, "raw": raw.tocsr()}


def down_census() -> dict:
    """``download.census`` settings pointing at an S3 server that is down (127.0.0.1)."""
    return {
        "uri": PUBLIC_URI,
        "tiledb_config": {
            "vfs.s3.endpoint_override": f"http://127.0.0.1:{free_port()}",
            "vfs.s3.scheme": "http",
            "vfs.s3.use_virtual_addressing": "false",
        },
    }


@contextmanager
def s3_census(root: Path) -> Iterator[dict]:
    """Serve the release folder ``root`` from a local S3 server; yield how to reach it.

    Yields
    ------
    ``{"uri": "s3://<bucket>/cell-census/<version>/soma/", "tiledb_config": {...}}``: the
    two ``download.census`` settings that point the workflow at this server.
    """
    import boto3
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # one line per S3 request
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    try:
        s3 = boto3.client(
            "s3",
            endpoint_url=endpoint,
            region_name="us-west-2",
            aws_access_key_id="test",
            aws_secret_access_key="test",
        )
        s3.create_bucket(
            Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": "us-west-2"}
        )
        s3.put_bucket_acl(Bucket=BUCKET, ACL="public-read")
        for path in sorted(p for p in Path(root).rglob("*") if p.is_file()):
            key = PREFIX + path.relative_to(root).as_posix()
            s3.put_object(Bucket=BUCKET, Key=key, Body=path.read_bytes(), ACL="public-read")
        yield {
            "uri": f"s3://{BUCKET}/{PREFIX}",
            "tiledb_config": {
                "vfs.s3.endpoint_override": endpoint,
                "vfs.s3.scheme": "http",
                "vfs.s3.use_virtual_addressing": "false",
            },
        }
    finally:
        server.stop()
