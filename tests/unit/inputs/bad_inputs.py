"""Generated inputs for the bad-input battery (``test_bad_inputs.py``): one small dataset
written as h5ad, a 10x folder or a text matrix, then broken in one way per case.

Each :class:`Case` writes its files into an empty folder and returns the dataset-sheet
rows naming them; the battery runs the sheet validation, the reader and the prepare stage
on them and checks where (and with which words) the run stops, or that it finishes with
the expected warning.
"""

from __future__ import annotations

import gzip
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import anndata as ad
import h5py
import numpy as np
import pandas as pd
import scipy.io
import scipy.sparse as sp

GENES = ["CD8A", "CD8B", "GZMB", "PRF1", "CD3D", "PLP2", "ACTB", "GAPDH", "CXCL9", "STAT1"]
CELLS = [f"CELL{i:02d}-1" for i in range(12)]
PATIENTS = ["p1", "p2"] * 6
LABELS = ["T8", "Tumor", "Myeloid", "Tumor"] * 3
LABEL_MAP = "label\tcell_type\nT8\tCD8_T\nTumor\tmalignant\nMyeloid\tmyeloid\n"
#: The same genes as Ensembl ids (GENCODE v48), versioned for every other one.
ENSEMBL = {
    "CD8A": "ENSG00000153563.16",
    "CD8B": "ENSG00000172116",
    "GZMB": "ENSG00000100453.13",
    "PRF1": "ENSG00000180644",
    "CD3D": "ENSG00000167286.10",
    "PLP2": "ENSG00000102007",
    "ACTB": "ENSG00000075624.18",
    "GAPDH": "ENSG00000111640",
    "CXCL9": "ENSG00000138755.6",
    "STAT1": "ENSG00000115415",
}


def counts(n_cells: int = len(CELLS), n_genes: int = len(GENES), seed: int = 0) -> np.ndarray:
    """Integer counts, cells x genes, every cell and gene expressed."""
    return np.random.default_rng(seed).poisson(3.0, size=(n_cells, n_genes)).astype(np.float32) + 1


def log_normalised(x: np.ndarray) -> np.ndarray:
    return np.log1p(x / x.sum(axis=1, keepdims=True) * 1e4).astype(np.float32)


# --------------------------------------------------------------------------- #
# Writers
# --------------------------------------------------------------------------- #
def write_label_map(folder: Path) -> str:
    (folder / "label_map.tsv").write_text(LABEL_MAP)
    return "label_map.tsv"


def write_h5ad(
    folder: Path,
    name: str = "data.h5ad",
    *,
    genes: list[str] | None = None,
    x: np.ndarray | None = None,
    layers: dict | None = None,
) -> str:
    genes = GENES if genes is None else genes
    x = counts(n_genes=len(genes)) if x is None else x
    obs = pd.DataFrame({"donor": PATIENTS, "label": LABELS}, index=pd.Index(CELLS))
    adata = ad.AnnData(X=sp.csr_matrix(x), obs=obs, var=pd.DataFrame(index=pd.Index(genes)))
    for key, value in (layers or {}).items():
        adata.layers[key] = sp.csr_matrix(value)
    adata.write_h5ad(folder / name)
    return name


def write_cell_table(
    folder: Path,
    name: str = "cells.tsv",
    *,
    ids: list[str] | None = None,
    sep: str = "\t",
    id_column: str = "cell",
    extra: dict | None = None,
) -> str:
    ids = CELLS if ids is None else ids
    n = len(ids)
    table = pd.DataFrame(
        {id_column: ids, "donor": (PATIENTS * 2)[:n], "label": (LABELS * 2)[:n], **(extra or {})}
    )
    text = table.to_csv(sep=sep, index=False)
    path = folder / name
    path.write_bytes(
        gzip.compress(text.encode(), mtime=0) if name.endswith(".gz") else text.encode()
    )
    return name


def write_10x(
    folder: Path,
    name: str = "tenx",
    *,
    gz: bool = False,
    genes: list[str] | None = None,
    two_columns: bool = True,
    barcodes: list[str] | None = None,
) -> str:
    genes = GENES if genes is None else genes
    out = folder / name
    out.mkdir()
    suffix = ".gz" if gz else ""
    matrix = sp.coo_matrix(counts(n_genes=len(genes)).T.astype(np.int64))
    scipy.io.mmwrite(out / "matrix.mtx", matrix, field="integer")
    ids = [ENSEMBL.get(gene, f"ENSG{i:011d}") for i, gene in enumerate(genes)]
    features = [
        f"{i}\t{g}\tGene Expression" if two_columns else g for i, g in zip(ids, genes, strict=True)
    ]
    (out / "features.tsv").write_text("\n".join(features) + "\n")
    (out / "barcodes.tsv").write_text("\n".join(CELLS if barcodes is None else barcodes) + "\n")
    if gz:
        for file in list(out.iterdir()):
            (out / f"{file.name}{suffix}").write_bytes(gzip.compress(file.read_bytes(), mtime=0))
            file.unlink()
    return name


def text_lines(
    *, sep: str = ",", corner: bool = True, genes: list[str] | None = None, x=None
) -> list[str]:
    """A genes x cells text matrix as lines (header of cell ids, one line per gene)."""
    genes = GENES if genes is None else genes
    x = counts(n_genes=len(genes)) if x is None else x
    header = (["gene"] if corner else []) + CELLS
    lines = [sep.join(header)]
    for j, gene in enumerate(genes):
        lines.append(sep.join([gene, *(f"{v:g}" for v in x[:, j])]))
    return lines


def write_text(folder: Path, name: str, lines: list[str], *, encoding: str = "utf-8") -> str:
    data = ("\n".join(lines) + "\n").encode(encoding)
    (folder / name).write_bytes(gzip.compress(data, mtime=0) if name.endswith(".gz") else data)
    return name


def truncate(path: Path, fraction: float = 0.5) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * fraction)])


# --------------------------------------------------------------------------- #
# Sheet rows
# --------------------------------------------------------------------------- #
def h5ad_row(folder: Path, path: str | None = None, **extra) -> dict:
    return {
        "dataset": "mine",
        "format": "h5ad",
        "path": path or write_h5ad(folder),
        "patient_column": "donor",
        "cell_type_column": "label",
        "label_map": write_label_map(folder),
        **extra,
    }


def tenx_row(folder: Path, path: str | None = None, **extra) -> dict:
    return {
        **h5ad_row(folder, path=path or write_10x(folder)),
        "format": "10x_mtx",
        "cell_table": write_cell_table(folder),
        "cell_id_column": "cell",
        **extra,
    }


def text_row(folder: Path, path: str, **extra) -> dict:
    row = {**h5ad_row(folder, path=path), "format": "text_matrix"}
    row["cell_table"] = write_cell_table(folder)
    return {**row, **extra}


def written(folder: Path, name: str, content: bytes | str) -> str:
    path = folder / name
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    return name


# --------------------------------------------------------------------------- #
# Cases
# --------------------------------------------------------------------------- #
@dataclass(frozen=True)
class Case:
    """One generated input and its expected outcome.

    Attributes
    ----------
    name
        Test id.
    build
        Writes the files into an empty folder and returns the sheet rows naming them (or
        the sheet's text, for a broken sheet).
    stops
        Where the run stops: ``"sheet"`` (ConfigError from the sheet validation),
        ``"read"`` (InputError from the reader), ``"prepare"`` (InputError from the
        prepare stage), or ``None`` when it finishes.
    expect
        Phrases of the error message, or of the log when the run finishes.
    names
        What the message must name (default: the file of the row's ``path``).
    check
        For a finished case: a check of the prepared AnnData.
    large_gzip
        Run as if every gzip file were larger than the 4 MB that are decompressed whole at
        start-up (:data:`cd8exo.io.sniff._VERIFY_GZIP_BYTES`): a truncation is then found
        by the reader.
    """

    name: str
    build: Callable[[Path], list[dict] | str]
    stops: str | None
    expect: tuple[str, ...]
    names: str | None = None
    check: Callable[[ad.AnnData], None] | None = None
    large_gzip: bool = False


def _one(make_row: Callable[[Path], dict]) -> Callable[[Path], list[dict]]:
    return lambda folder: [make_row(folder)]


def _has_genes(*genes: str) -> Callable[[ad.AnnData], None]:
    def check(adata: ad.AnnData) -> None:
        missing = set(genes) - set(adata.var_names)
        assert not missing, f"{missing} not in {list(adata.var_names)}"

    return check


def _is_counts(adata: ad.AnnData) -> None:
    assert adata.uns["cd8exo"]["value_scale"] == "counts"
    assert "counts" in adata.layers


def _excel_names(folder: Path) -> dict:
    genes = [*GENES[:8], "7-Sep", "1-Mar"]
    return h5ad_row(folder, path=write_h5ad(folder, genes=genes))


def _duplicated(folder: Path, *, log: bool) -> dict:
    genes = [*GENES[:9], "CD8A"]
    x = counts(n_genes=len(genes))
    x = log_normalised(x) if log else x
    value_scale = "log1p_norm" if log else "counts"
    return h5ad_row(folder, path=write_h5ad(folder, genes=genes, x=x), value_scale=value_scale)


def _loom_like(folder: Path) -> dict:
    with h5py.File(folder / "data.h5ad", "w") as handle:
        handle["matrix"] = np.zeros((2, 2))
        handle.create_group("row_attrs")
        handle.create_group("col_attrs")
    return h5ad_row(folder, path="data.h5ad")


def _cellranger_h5(folder: Path) -> dict:
    with h5py.File(folder / "data.h5ad", "w") as handle:
        group = handle.create_group("matrix")
        group["data"] = np.arange(3)
    return h5ad_row(folder, path="data.h5ad")


def _truncated(folder: Path, name: str, make: Callable[[Path], str], fraction: float = 0.5) -> str:
    make(folder)
    truncate(folder / name, fraction)
    return name


def _big_text_gz(folder: Path, name: str) -> str:
    """A gzip text matrix large enough that cutting it leaves its first block readable."""
    genes = [f"GENE{i}" for i in range(3000)]
    rng = np.random.default_rng(1)
    x = rng.poisson(2.0, size=(len(CELLS), len(genes)))
    return write_text(folder, name, text_lines(genes=genes, x=x))


def _ragged(drop: bool) -> Callable[[Path], dict]:
    def make(folder: Path) -> dict:
        lines = text_lines()
        lines[4] = lines[4].rsplit(",", 1)[0] if drop else lines[4] + ",7"
        return text_row(folder, write_text(folder, "matrix.csv", lines))

    return make


def _bad_value(value: str) -> Callable[[Path], dict]:
    def make(folder: Path) -> dict:
        lines = text_lines()
        fields = lines[3].split(",")
        fields[5] = value
        lines[3] = ",".join(fields)
        return text_row(folder, write_text(folder, "matrix.csv", lines))

    return make


def _latin1_table(folder: Path) -> dict:
    text = "cell\tdonor\tlabel\n" + "".join(
        f"{c}\t{p}\t{lab}\n" for c, p, lab in zip(CELLS, PATIENTS, LABELS, strict=True)
    )
    text = text.replace("Myeloid", "Myélo")
    name = written(folder, "cells.tsv", text.encode("latin-1"))
    return h5ad_row(folder, cell_table=name)


H5AD_CASES = [
    Case("h5ad-valid", _one(h5ad_row), None, ("harmonised",), check=_is_counts),
    Case(
        "h5ad-zero-bytes",
        _one(lambda f: h5ad_row(f, path=written(f, "data.h5ad", b""))),
        "sheet",
        ("is empty (0 bytes)",),
    ),
    Case(
        "h5ad-truncated",
        _one(lambda f: h5ad_row(f, path=_truncated(f, "data.h5ad", write_h5ad))),
        "sheet",
        ("is truncated", "bytes, but its HDF5 header says"),
    ),
    Case(
        "h5ad-csv-saved-as-h5ad",
        _one(lambda f: h5ad_row(f, path=write_text(f, "data.h5ad", text_lines()))),
        "sheet",
        ("starts with 'gene,CELL00-1", "comma-separated text (a CSV), not HDF5", "text_matrix"),
    ),
    Case(
        "h5ad-html-page",
        _one(
            lambda f: h5ad_row(
                f,
                path=written(f, "data.h5ad", "<!DOCTYPE html>\n<html><body>Sign in</body></html>"),
            )
        ),
        "sheet",
        ("an HTML page", "download"),
    ),
    Case(
        "h5ad-gzipped",
        _one(
            lambda f: h5ad_row(
                f,
                path=written(
                    f, "data.h5ad", gzip.compress((f / write_h5ad(f, "x.h5ad")).read_bytes())
                ),
            )
        ),
        "sheet",
        ("gzip-compressed, not HDF5", "decompress it first"),
    ),
    Case(
        "h5ad-path-is-a-folder",
        _one(lambda f: h5ad_row(f, path=write_10x(f, "data.h5ad"))),
        "sheet",
        ("is a folder, not a file", "use format '10x_mtx'"),
    ),
    Case(
        "h5ad-missing",
        _one(lambda f: h5ad_row(f, path="nowhere.h5ad")),
        "sheet",
        ("file 'nowhere.h5ad' does not exist",),
    ),
    Case("h5ad-loom-file", _one(_loom_like), "read", ("is a loom file", "read_loom")),
    Case(
        "h5ad-cellranger-h5", _one(_cellranger_h5), "read", ("10x Cell Ranger .h5", "read_10x_h5")
    ),
    Case(
        "h5ad-ensembl-ids",
        _one(lambda f: h5ad_row(f, path=write_h5ad(f, genes=[ENSEMBL[g] for g in GENES]))),
        None,
        ("10 of 10 Ensembl gene ids mapped to gene symbols through GENCODE v48",),
        check=_has_genes(*GENES),
    ),
    Case(
        "h5ad-excel-dates",
        _one(_excel_names),
        None,
        ("look like dates made by Excel", "7-Sep->SEPTIN7", "1-Mar (MARCHF1 or MTARC1)"),
        check=_has_genes("SEPTIN7", "1-Mar"),
    ),
    Case(
        "h5ad-mouse-case",
        _one(lambda f: h5ad_row(f, path=write_h5ad(f, genes=[g.capitalize() for g in GENES]))),
        "read",
        ("look like mouse genes", "Cd8a", "human orthologues"),
    ),
    Case(
        "h5ad-mouse-ensembl",
        _one(
            lambda f: h5ad_row(
                f, path=write_h5ad(f, genes=[f"ENSMUSG{i:011d}" for i in range(len(GENES))])
            )
        ),
        "read",
        ("look like mouse genes", "mouse Ensembl gene ids"),
    ),
    Case(
        "h5ad-duplicated-symbols-counts",
        _one(lambda f: _duplicated(f, log=False)),
        None,
        ("occur more than once and are merged (counts summed): CD8A",),
    ),
    Case(
        "h5ad-duplicated-symbols-log",
        _one(lambda f: _duplicated(f, log=True)),
        None,
        ("occur more than once and are merged (highest-mean gene kept): CD8A",),
    ),
    Case(
        "h5ad-log-x-with-counts-layer",
        _one(
            lambda f: h5ad_row(
                f,
                path=write_h5ad(f, x=log_normalised(counts()), layers={"counts": counts()}),
            )
        ),
        None,
        ("layers['counts'] integer counts: the counts layer is used",),
        check=_is_counts,
    ),
    Case(
        "h5ad-log-x-with-non-integer-counts-layer",
        _one(
            lambda f: h5ad_row(
                f,
                path=write_h5ad(f, x=log_normalised(counts()), layers={"counts": counts() + 0.5}),
            )
        ),
        None,
        ("layers['counts'] is not usable as counts",),
    ),
    Case(
        "h5ad-patient-column-absent",
        _one(lambda f: h5ad_row(f, patient_column="patient")),
        "prepare",
        ("patient_column 'patient' is not a column", "available columns are"),
        names="mine",
    ),
    Case(
        "h5ad-negative-values",
        _one(lambda f: h5ad_row(f, path=write_h5ad(f, x=counts() - 4.5))),
        "prepare",
        ("negative values", "scaled or centred"),
        names="Dataset 'mine'",
    ),
    Case(
        "h5ad-nan-values",
        _one(lambda f: h5ad_row(f, path=write_h5ad(f, x=np.where(counts() > 5, np.nan, counts())))),
        "prepare",
        ("NaN or infinite values",),
        names="Dataset 'mine'",
    ),
    Case(
        "h5ad-unmapped-label",
        _one(
            lambda f: {
                **h5ad_row(f),
                "label_map": written(f, "label_map.tsv", "label\tcell_type\nT8\tCD8_T\n"),
            }
        ),
        "prepare",
        ("not in the label map", "'Tumor'"),
        names="mine",
    ),
    Case(
        "h5ad-cell-table-ids-lack-suffix",
        _one(
            lambda f: h5ad_row(
                f, cell_table=write_cell_table(f, ids=[c.removesuffix("-1") for c in CELLS])
            )
        ),
        "read",
        ("12 of 12 cells of", "are missing from the cell table", "'-1'-like suffix"),
        names="cells.tsv",
    ),
    Case(
        "h5ad-cell-table-ids-in-another-column",
        _one(
            lambda f: h5ad_row(
                f,
                cell_table=write_cell_table(
                    f, ids=[f"x{i}" for i in range(12)], extra={"barcode": CELLS}
                ),
            )
        ),
        "read",
        ("set cell_id_column to 'barcode'",),
        names="cells.tsv",
    ),
    Case(
        "cell-table-latin1",
        _one(_latin1_table),
        "read",
        ("The cell table", "is not UTF-8 text: byte 0xe9", "save it as UTF-8"),
        names="cells.tsv",
    ),
    Case(
        "cell-table-html",
        _one(
            lambda f: h5ad_row(
                f, cell_table=written(f, "cells.tsv", "<html><head><title>404</title></head>")
            )
        ),
        "sheet",
        ("column 'cell_table'", "an HTML page"),
        names="cells.tsv",
    ),
    Case(
        "cell-table-empty",
        _one(lambda f: h5ad_row(f, cell_table=written(f, "cells.tsv", b""))),
        "sheet",
        ("column 'cell_table'", "is empty (0 bytes)"),
        names="cells.tsv",
    ),
    Case(
        "label-map-is-a-folder",
        _one(lambda f: {**h5ad_row(f), "label_map": write_10x(f, "maps")}),
        "sheet",
        ("column 'label_map'", "is a folder, not a file"),
        names="maps",
    ),
]


def _tenx_both(folder: Path) -> dict:
    row = tenx_row(folder)
    data = (folder / "tenx" / "matrix.mtx").read_bytes()
    (folder / "tenx" / "matrix.mtx.gz").write_bytes(gzip.compress(data, mtime=0))
    return row


def _tenx_file(folder: Path, name: str, content: bytes | str, *, gz: bool = False) -> dict:
    row = tenx_row(folder, path=write_10x(folder, gz=gz))
    written(folder / "tenx", name, content)
    return row


def _tenx_truncated_matrix(folder: Path) -> dict:
    genes = [f"GENE{i}" for i in range(400)]
    row = tenx_row(folder, path=write_10x(folder, gz=True, genes=genes))
    truncate(folder / "tenx" / "matrix.mtx.gz", 0.6)
    return row


TENX_CASES = [
    Case("10x-valid", _one(tenx_row), None, ("harmonised",), check=_is_counts),
    Case(
        "10x-gzipped-valid",
        _one(lambda f: tenx_row(f, path=write_10x(f, gz=True))),
        None,
        ("harmonised",),
    ),
    Case(
        "10x-no-matrix",
        _one(lambda f: (tenx_row(f), (f / "tenx" / "matrix.mtx").unlink())[0]),
        "sheet",
        ("has no count matrix (matrix.mtx or matrix.mtx.gz)", "the folder holds"),
        names="tenx",
    ),
    Case(
        "10x-truncated-matrix-gz",
        _one(_tenx_truncated_matrix),
        "sheet",
        ("has a bad matrix.mtx.gz: it is a truncated gzip file",),
        names="tenx",
    ),
    Case(
        "10x-truncated-matrix-gz-beyond-start-up-check",
        _one(_tenx_truncated_matrix),
        "read",
        ("matrix.mtx.gz cannot be read as Matrix Market", "truncated"),
        names="matrix.mtx.gz",
        large_gzip=True,
    ),
    Case(
        "10x-matrix-named-gz-not-gzip",
        _one(
            lambda f: (
                tenx_row(f),
                (f / "tenx" / "matrix.mtx").rename(f / "tenx" / "matrix.mtx.gz"),
            )[0]
        ),
        "sheet",
        ("has a bad matrix.mtx.gz: it is named .gz but is not gzip-compressed",),
        names="tenx",
    ),
    Case(
        "10x-matrix-is-html",
        _one(lambda f: _tenx_file(f, "matrix.mtx", "<!doctype html><html></html>")),
        "sheet",
        ("has a bad matrix.mtx: it is an HTML page",),
        names="tenx",
    ),
    Case(
        "10x-features-with-header-line",
        _one(
            lambda f: _tenx_file(
                f, "features.tsv", "gene_id\tgene\n" + "".join(f"{g}\n" for g in GENES)
            )
        ),
        "read",
        ("lists 11 genes but", "remove its header line"),
        names="features.tsv",
    ),
    Case(
        "10x-barcodes-count-mismatch",
        _one(lambda f: tenx_row(f, path=write_10x(f, barcodes=CELLS[:-1]))),
        "read",
        ("lists 11 barcodes but", "12 columns (cells)"),
        names="barcodes.tsv",
    ),
    Case(
        "10x-plain-and-gz-matrix",
        _one(_tenx_both),
        "sheet",
        ("holds several files for its count matrix", "keep only one"),
        names="tenx",
    ),
    Case(
        "10x-ensembl-only-features",
        _one(
            lambda f: tenx_row(
                f, path=write_10x(f, genes=[ENSEMBL[g] for g in GENES], two_columns=False)
            )
        ),
        None,
        ("10 of 10 Ensembl gene ids mapped",),
        check=_has_genes(*GENES),
    ),
    Case(
        "10x-path-is-a-file",
        _one(lambda f: tenx_row(f, path=write_h5ad(f))),
        "sheet",
        ("is not a folder (it is a file: an HDF5 file)",),
    ),
    Case(
        "10x-cell-table-missing-cells",
        _one(lambda f: tenx_row(f, cell_table=write_cell_table(f, "part.tsv", ids=CELLS[:10]))),
        "read",
        ("2 of 12 cells of", "missing from the cell table", "has 10 rows"),
        names="part.tsv",
    ),
]


def _text_gz_truncated(folder: Path) -> dict:
    name = _big_text_gz(folder, "matrix.tsv.gz")
    truncate(folder / name, 0.5)
    return text_row(folder, name)


TEXT_CASES = [
    Case(
        "text-csv-valid",
        _one(lambda f: text_row(f, write_text(f, "matrix.csv", text_lines()))),
        None,
        ("comma-separated): 10 genes x 12 cells", "harmonised"),
        check=_is_counts,
    ),
    Case(
        "text-tsv-gz-valid",
        _one(lambda f: text_row(f, write_text(f, "matrix.tsv.gz", text_lines(sep="\t")))),
        None,
        ("tab-separated): 10 genes x 12 cells",),
    ),
    Case(
        "text-whitespace-valid",
        _one(lambda f: text_row(f, write_text(f, "matrix.txt", text_lines(sep="   ")))),
        None,
        ("whitespace-separated): 10 genes x 12 cells",),
    ),
    Case(
        "text-header-without-corner",
        _one(
            lambda f: text_row(f, write_text(f, "matrix.tsv", text_lines(sep="\t", corner=False)))
        ),
        None,
        ("10 genes x 12 cells",),
    ),
    Case(
        "text-log-values",
        _one(
            lambda f: text_row(
                f, write_text(f, "matrix.csv", text_lines(x=log_normalised(counts())))
            )
        ),
        None,
        ("value scale log1p_norm",),
    ),
    Case(
        "text-ragged-short-row",
        _one(_ragged(drop=True)),
        "read",
        ("line 5 (gene 'PRF1') has 11 values but the header names 12 cells", "ragged"),
    ),
    Case(
        "text-ragged-long-row",
        _one(_ragged(drop=False)),
        "read",
        ("line 5 (gene 'PRF1') has 13 values but the header names 12 cells",),
    ),
    Case(
        "text-truncated-gzip",
        _one(_text_gz_truncated),
        "sheet",
        ("is a truncated gzip file", "copy or download it again"),
    ),
    Case(
        "text-truncated-gzip-beyond-start-up-check",
        _one(_text_gz_truncated),
        "read",
        ("the gzip stream ends after line", "in the middle of the data", "truncated"),
        large_gzip=True,
    ),
    Case(
        "text-html-page",
        _one(
            lambda f: text_row(
                f, written(f, "matrix.csv", "<!DOCTYPE html><html><body>Error 404</body></html>")
            )
        ),
        "sheet",
        ("is an HTML page", "not a genes x cells text matrix"),
    ),
    Case(
        "text-value-not-a-number",
        _one(_bad_value("high")),
        "read",
        ("line 4 (gene 'GZMB'), field 6: 'high' is not a finite number",),
    ),
    Case(
        "text-infinite-value",
        _one(_bad_value("inf")),
        "read",
        ("line 4 (gene 'GZMB'), field 6: 'inf' is not a finite number",),
    ),
    Case(
        "text-na-value",
        _one(_bad_value("NA")),
        "read",
        ("'NA' is not a finite number",),
    ),
    Case(
        "text-cell-table-fewer-rows",
        _one(
            lambda f: text_row(
                f,
                write_text(f, "matrix.csv", text_lines()),
                cell_table=write_cell_table(f, "short.tsv", ids=CELLS[:9]),
            )
        ),
        "read",
        ("3 of 12 cells of the text matrix", "missing from the cell table", "has 9 rows"),
        names="short.tsv",
    ),
    Case(
        "text-cell-table-more-rows",
        _one(
            lambda f: text_row(
                f,
                write_text(f, "matrix.csv", text_lines()),
                cell_table=write_cell_table(f, "long.tsv", ids=[*CELLS, "EXTRA-1", "EXTRA-2"]),
            )
        ),
        None,
        ("2 of its 14 rows match no cell", "are ignored"),
    ),
    Case(
        "text-without-cell-table",
        _one(
            lambda f: {
                k: v
                for k, v in text_row(f, write_text(f, "matrix.csv", text_lines())).items()
                if k != "cell_table"
            }
        ),
        "sheet",
        ("required column 'cell_table' is missing", "name the cell_table"),
        names="row 2 (dataset 'mine')",
    ),
    Case(
        "text-one-column",
        _one(lambda f: text_row(f, write_text(f, "matrix.txt", ["gene", *GENES]))),
        "sheet",
        ("has no tab, comma or whitespace separating its fields",),
    ),
    Case(
        "text-duplicated-cell-ids",
        _one(
            lambda f: text_row(
                f,
                write_text(
                    f,
                    "matrix.csv",
                    [text_lines()[0].replace("CELL01-1", "CELL00-1"), *text_lines()[1:]],
                ),
            )
        ),
        "read",
        ("cell ids occur twice in the header", "CELL00-1"),
    ),
    Case(
        "text-named-gz-not-gzip",
        _one(lambda f: text_row(f, written(f, "matrix.csv.gz", "\n".join(text_lines())))),
        "sheet",
        ("is named .gz but is not gzip-compressed",),
    ),
    Case(
        "text-empty-file",
        _one(lambda f: text_row(f, written(f, "matrix.csv", b""))),
        "sheet",
        ("is empty (0 bytes)",),
    ),
    Case(
        "text-header-only",
        _one(lambda f: text_row(f, write_text(f, "matrix.csv", text_lines()[:1]))),
        "read",
        ("the file ends before its header line and a first gene row",),
    ),
    Case(
        "text-latin1-gene-name",
        _one(
            lambda f: text_row(
                f,
                write_text(
                    f,
                    "matrix.csv",
                    [*text_lines(), "GÜN1," + ",".join(["1"] * 12)],
                    encoding="latin-1",
                ),
            )
        ),
        "read",
        ("is not UTF-8 text: byte 0xdc", "save it as UTF-8"),
    ),
    Case(
        "text-excel-and-ensembl-names",
        _one(
            lambda f: text_row(
                f,
                write_text(
                    f,
                    "matrix.csv",
                    text_lines(genes=[ENSEMBL["CD8A"], *GENES[1:9], "7-Sep"]),
                ),
            )
        ),
        None,
        ("1 of 1 Ensembl gene ids mapped", "7-Sep->SEPTIN7"),
        check=_has_genes("CD8A", "SEPTIN7"),
    ),
]


def _sheet_rows(change: Callable[[dict], dict]) -> Callable[[Path], list[dict]]:
    return lambda folder: [change(h5ad_row(folder))]


def _drop(*columns: str) -> Callable[[dict], dict]:
    return lambda row: {k: v for k, v in row.items() if k not in columns}


SHEET_CASES = [
    Case(
        "sheet-missing-path-column",
        _sheet_rows(_drop("path")),
        "sheet",
        ("required column 'path' is missing", "a local dataset needs format, path"),
        names="datasets.tsv",
    ),
    Case(
        "sheet-missing-format-and-patient-columns",
        _sheet_rows(_drop("format", "patient_column")),
        "sheet",
        ("required columns 'format', 'patient_column' are missing",),
        names="datasets.tsv",
    ),
    Case(
        "sheet-duplicate-dataset-ids",
        lambda f: [h5ad_row(f), h5ad_row(f, path="data.h5ad")],
        "sheet",
        ("dataset ids must be unique; repeated: mine",),
        names="datasets.tsv",
    ),
    Case(
        "sheet-format-csv",
        _sheet_rows(lambda row: {**row, "format": "csv"}),
        "sheet",
        ("column 'format' must be one of", "got 'csv'", "is format 'text_matrix'"),
        names="datasets.tsv",
    ),
    Case(
        "sheet-format-wrong-case",
        _sheet_rows(lambda row: {**row, "format": "H5AD"}),
        "sheet",
        ("got 'H5AD'", "write it as 'h5ad'"),
        names="datasets.tsv",
    ),
    Case(
        "sheet-format-loom",
        _sheet_rows(lambda row: {**row, "format": "loom"}),
        "sheet",
        ("got 'loom'", "convert it to .h5ad first"),
        names="datasets.tsv",
    ),
    Case(
        "sheet-unknown-column",
        _sheet_rows(lambda row: {**row, "patient": "donor"}),
        "sheet",
        ("unknown column(s) 'patient'", "allowed columns"),
        names="datasets.tsv",
    ),
    Case(
        "sheet-label-map-without-cell-type-column",
        _sheet_rows(_drop("cell_type_column")),
        "sheet",
        ("required column 'cell_type_column' is missing", "a label_map needs the column it maps"),
        names="datasets.tsv",
    ),
    Case(
        "sheet-bad-value-scale",
        _sheet_rows(lambda row: {**row, "value_scale": "tpm"}),
        "sheet",
        ("column 'value_scale' must be one of", "got 'tpm'"),
        names="datasets.tsv",
    ),
    Case(
        "sheet-bad-dataset-id",
        _sheet_rows(lambda row: {**row, "dataset": "my data/1"}),
        "sheet",
        ("column 'dataset' must match the pattern",),
        names="datasets.tsv",
    ),
    Case(
        "sheet-no-rows",
        lambda f: "dataset\tformat\tpath\tpatient_column\n",
        "sheet",
        ("no dataset rows",),
        names="datasets.tsv",
    ),
    Case(
        "sheet-empty-file",
        lambda f: "",
        "sheet",
        ("is empty", "a header line"),
        names="datasets.tsv",
    ),
    Case(
        "sheet-comma-separated",
        lambda f: "dataset,format,path,patient_column\nmine,h5ad,data.h5ad,donor\n",
        "sheet",
        ("comma-separated", "tab-separated"),
        names="datasets.tsv",
    ),
    Case(
        "sheet-text-matrix-path-is-a-folder",
        lambda f: [text_row(f, write_10x(f, "matrix.csv"))],
        "sheet",
        ("is a folder, not a file", "expected a genes x cells text matrix"),
    ),
]

CASES = [*H5AD_CASES, *TENX_CASES, *TEXT_CASES, *SHEET_CASES]
