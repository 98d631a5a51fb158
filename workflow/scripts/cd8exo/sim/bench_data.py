"""The synthetic dataset of the scoring benchmark: generated once, in chunks, into a cache folder."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp

from cd8exo.scoring.rank import detected_genes

logger = logging.getLogger(__name__)

__all__ = ["BenchData", "BenchSpec", "load_bench_data", "make_bench_data"]


@dataclass(frozen=True)
class BenchSpec:
    """Size and seed of the synthetic benchmark dataset."""

    n_cells: int = 200_000
    n_genes: int = 20_000
    genes_per_cell: int = 1_500
    n_signatures: int = 20
    n_patients: int = 200
    seed: int = 20261126

    @property
    def name(self) -> str:
        """Folder name of this dataset in the cache."""
        return (
            f"cells{self.n_cells}_genes{self.n_genes}_per{self.genes_per_cell}_"
            f"sig{self.n_signatures}_pat{self.n_patients}_seed{self.seed}"
        )


@dataclass(frozen=True)
class BenchData:
    """A loaded benchmark dataset."""

    x: sp.csr_matrix
    var_names: list[str]
    signatures: dict[str, list[str]]
    patients: np.ndarray

    @property
    def matrix_mb(self) -> float:
        """Size of the CSR arrays in MiB."""
        return (self.x.data.nbytes + self.x.indices.nbytes + self.x.indptr.nbytes) / 2**20


# --------------------------------------------------------------------------- #
# The synthetic dataset
# --------------------------------------------------------------------------- #
# long: the generator's numbered steps share the chunk loop's state (rng, offsets, writers)
def make_bench_data(  # noqa: PLR0915
    folder: Path, spec: BenchSpec, *, chunk_cells: int = 5_000
) -> Path:
    """Generate the dataset into ``folder/spec.name`` unless it is already there.

    Genes have log-normal base weights; 20 programmes of 150 genes are raised 6-fold in
    the cells of 10 states (two programmes per state). Every cell draws about
    ``genes_per_cell`` distinct genes with probability proportional to its state's
    weights, counts ``1 + Poisson`` that grow with the weight, and is normalised to
    ln(CP10k + 1) in float32. Signature ``j`` (20 to 200 genes) takes 70% of its genes
    from programme ``j`` and 30% at random. Cells are written chunk by chunk, so the
    generator holds one chunk at a time.

    Returns
    -------
    The dataset's folder.
    """
    target = Path(folder) / spec.name
    if (target / "meta.json").is_file():
        logger.info("benchmark data cached in %s", target)
        return target
    target.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(spec.seed)
    n_genes = spec.n_genes
    weights = rng.lognormal(0.0, 1.5, n_genes)
    n_programmes = spec.n_signatures
    programme_size = min(150, n_genes // (2 * n_programmes))
    programme_genes = rng.permutation(n_genes)[: n_programmes * programme_size].reshape(
        n_programmes, programme_size
    )
    n_states = max(1, n_programmes // 2)
    cumulative = []
    for state in range(n_states):
        boosted = weights.copy()
        boosted[programme_genes[2 * state : 2 * state + 2].ravel()] *= 6.0
        cumulative.append(np.cumsum(boosted / boosted.sum()))
    count_rate = 0.4 * weights / np.median(weights)
    sizes = np.linspace(20, 200, spec.n_signatures).round().astype(int)
    signatures: dict[str, list[str]] = {}
    for j, size in enumerate(sizes):
        own = programme_genes[j % n_programmes][: round(0.7 * int(size))]
        others = np.setdiff1d(np.arange(n_genes), own)
        extra = rng.choice(others, size=size - len(own), replace=False)
        signatures[f"sig{j:02d}_{size}"] = [f"G{g:05d}" for g in np.concatenate([own, extra])]

    patients = rng.integers(0, spec.n_patients, spec.n_cells).astype(np.int32)
    states = (patients % n_states + rng.integers(0, 2, spec.n_cells)) % n_states
    indptr = np.zeros(spec.n_cells + 1, dtype=np.int64)
    children = np.random.SeedSequence(spec.seed).spawn(
        (spec.n_cells + chunk_cells - 1) // chunk_cells
    )
    paths = {name: target / f"{name}.part" for name in ("data", "indices")}
    with paths["data"].open("wb") as data_file, paths["indices"].open("wb") as index_file:
        for k, start in enumerate(range(0, spec.n_cells, chunk_cells)):
            stop = min(start + chunk_cells, spec.n_cells)
            chunk_rng = np.random.default_rng(children[k])
            n = stop - start
            wanted = np.clip(
                np.round(spec.genes_per_cell * chunk_rng.lognormal(-0.02, 0.2, n)),
                200,
                n_genes // 2,
            ).astype(np.int64)
            # draws with replacement, then distinct genes: about 1.31 draws per gene kept
            n_draws = np.round(wanted * 1.31).astype(np.int64)
            cells = np.repeat(np.arange(n, dtype=np.int64), n_draws)
            genes = np.empty(cells.size, dtype=np.int64)
            uniform = chunk_rng.random(cells.size)
            cell_state = states[start:stop][cells]
            for state in range(n_states):
                mask = cell_state == state
                genes[mask] = np.searchsorted(cumulative[state], uniform[mask])
            np.minimum(genes, n_genes - 1, out=genes)
            keys = np.sort(cells * n_genes + genes)  # (np.unique hashes: far slower here)
            keys = keys[np.concatenate([[True], keys[1:] != keys[:-1]])]
            cells, genes = keys // n_genes, keys % n_genes
            counts = 1.0 + chunk_rng.poisson(count_rate[genes])
            totals = np.bincount(cells, weights=counts, minlength=n)
            values = np.log1p(counts / totals[cells] * 1e4).astype(np.float32)
            data_file.write(values.tobytes())
            index_file.write(genes.astype(np.int32).tobytes())
            indptr[start + 1 : stop + 1] = indptr[start] + np.cumsum(
                np.bincount(cells, minlength=n)
            )
            if k % 10 == 0:
                logger.info("generated %d of %d cells", stop, spec.n_cells)
    paths["data"].replace(target / "data.f32")
    paths["indices"].replace(target / "indices.i32")
    indptr.tofile(target / "indptr.i64")
    patients.tofile(target / "patients.i32")
    meta = {
        "spec": spec.__dict__,
        "n_cells": spec.n_cells,
        "n_genes": n_genes,
        "nnz": int(indptr[-1]),
        "signatures": signatures,
    }
    tmp = target / "meta.json.tmp"
    tmp.write_text(json.dumps(meta))
    tmp.replace(target / "meta.json")
    logger.info(
        "benchmark data: %d cells x %d genes, %.0f detected genes per cell",
        spec.n_cells,
        n_genes,
        indptr[-1] / spec.n_cells,
    )
    return target


def load_bench_data(folder: Path) -> BenchData:
    """Load a dataset written by :func:`make_bench_data` (read straight into memory)."""
    folder = Path(folder)
    meta = json.loads((folder / "meta.json").read_text())
    data = np.fromfile(folder / "data.f32", dtype=np.float32)
    indices = np.fromfile(folder / "indices.i32", dtype=np.int32)
    indptr = np.fromfile(folder / "indptr.i64", dtype=np.int64)
    if indptr[-1] <= np.iinfo(np.int32).max:
        indptr = indptr.astype(np.int32)
    x = sp.csr_matrix((data, indices, indptr), shape=(meta["n_cells"], meta["n_genes"]), copy=False)
    return BenchData(
        x=x,
        var_names=[f"G{g:05d}" for g in range(meta["n_genes"])],
        signatures=meta["signatures"],
        patients=np.fromfile(folder / "patients.i32", dtype=np.int32),
    )


# --------------------------------------------------------------------------- #
# One job (run in its own process)
# --------------------------------------------------------------------------- #
def _decoupler_tie_order(x: sp.csr_matrix) -> np.ndarray:
    """decoupler's tie order: never-detected genes dropped, the rest shuffled with seed 0."""

    detected = np.flatnonzero(detected_genes(x))
    shuffle = np.random.default_rng(seed=0).choice(
        np.arange(detected.size), detected.size, replace=False
    )
    positions = np.empty(x.shape[1], dtype=np.int64)
    positions[detected[shuffle]] = np.arange(detected.size)
    undetected = np.setdiff1d(np.arange(x.shape[1]), detected)
    positions[undetected] = np.arange(detected.size, x.shape[1])
    return positions


def _anndata(bench: BenchData):
    import anndata as ad

    return ad.AnnData(
        X=bench.x,
        obs=pd.DataFrame(index=pd.Index([f"c{i}" for i in range(bench.x.shape[0])])),
        var=pd.DataFrame(index=pd.Index(bench.var_names)),
    )
