"""Benchmark of the scoring methods against their reference implementations.

``make bench-scoring`` (``python -m cd8exo.sim.bench``) generates once, and caches outside
git (``.cache/bench/``), a synthetic log-normalised dataset of 200,000 cells x 20,000
genes with about 1,500 detected genes per cell (CSR float32), and 20 signatures of
20-200 genes. Each cd8exo method and each baseline then runs in its own subprocess,
one after the other, single-threaded (``OMP/MKL/OPENBLAS/NUMBA_NUM_THREADS=1``):

========================  ======================================================
cd8exo method             baseline
========================  ======================================================
tirosh, whole-bin         ``scanpy.tl.score_genes`` once per signature with
controls                  ``ctrl_size`` above every bin size and
                          ``ctrl_as_ref=False``: the same control genes, so the
                          scores must agree
tirosh, ctrl_size 50      ``scanpy.tl.score_genes`` with its own random controls
ucell                     ``pyucell.compute_ucell_scores`` (``n_jobs=1``)
aucell, ties="order"      ``decoupler.mt.aucell``, given decoupler's own gene
                          shuffle as the tie order: the scores must agree
aucell, ties="mean"       the same decoupler run (a different tie rule: agreement
                          is a correlation)
ssgsea                    none (gseapy itself scores the 200 patient pseudobulks)
========================  ======================================================

Wall time is that of the scoring call alone (loading the matrix and importing are not
counted; decoupler's numba functions are compiled on a small warm-up first). Peak RSS
is the maximum resident set size of the subprocess (``getrusage``), which includes the
loaded matrix: the target is at most 1.3 times ``matrix_mb``, the bytes of the CSR
arrays. The table goes to ``results/bench/scoring.tsv`` and standard output.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import resource
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp

logger = logging.getLogger(__name__)

__all__ = ["BenchData", "BenchSpec", "load_bench_data", "main", "make_bench_data", "run_bench"]

#: Columns of the benchmark table.
BENCH_COLUMNS: tuple[str, ...] = (
    "method",
    "baseline",
    "wall_s",
    "baseline_wall_s",
    "speedup",
    "peak_rss_mb",
    "matrix_mb",
    "agreement",
    "baseline_peak_rss_mb",
    "rss_ratio",
)


_THREAD_VARIABLES = (
    "OMP_NUM_THREADS",
    "MKL_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "NUMBA_NUM_THREADS",
    "NUMEXPR_NUM_THREADS",
)


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
def make_bench_data(folder: Path, spec: BenchSpec, *, chunk_cells: int = 5_000) -> Path:
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
    from cd8exo.scoring.rank import detected_genes

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


def _run_job(job: str, bench: BenchData, *, seed: int) -> np.ndarray:
    """Run one method or baseline; return cells (or patients) x signatures scores."""
    x, names, sigs = bench.x, bench.var_names, bench.signatures
    whole_bins = x.shape[1]  # ctrl_size above every bin size: every gene of the bin
    if job == "tirosh_same_controls":
        from cd8exo.scoring.tirosh import tirosh_scores

        return tirosh_scores(x, names, sigs, rng=seed, ctrl_size=whole_bins)
    if job == "tirosh":
        from cd8exo.scoring.tirosh import tirosh_scores

        return tirosh_scores(x, names, sigs, rng=seed, ctrl_size=50)
    if job == "ucell":
        from cd8exo.scoring.rank import ucell_scores

        return ucell_scores(x, names, sigs, max_rank=1500)
    if job == "aucell_order":
        from cd8exo.scoring.rank import aucell_scores

        return aucell_scores(x, names, sigs, ties="order", tie_order=_decoupler_tie_order(x))
    if job == "aucell":
        from cd8exo.scoring.rank import aucell_scores

        return aucell_scores(x, names, sigs, ties="mean")
    if job == "ssgsea":
        from cd8exo.scoring.ssgsea import group_sums, ssgsea_scores

        profiles = group_sums(x, bench.patients, var_names=names, expm1=True)
        return ssgsea_scores(profiles, sigs, rng=seed).to_numpy()
    if job in ("scanpy_same_controls", "scanpy"):
        import scanpy as sc

        adata = _anndata(bench)
        ctrl_size = whole_bins if job == "scanpy_same_controls" else 50
        for name, genes in sigs.items():
            sc.tl.score_genes(
                adata,
                genes,
                ctrl_size=ctrl_size,
                n_bins=25,
                score_name=name,
                random_state=seed % 2**32,
                ctrl_as_ref=False,
            )
        return adata.obs[list(sigs)].to_numpy(dtype=np.float64)
    if job == "pyucell":
        import pyucell

        adata = _anndata(bench)
        pyucell.compute_ucell_scores(adata, sigs, max_rank=1500, missing_genes="skip", n_jobs=1)
        return adata.obs[[f"{s}_UCell" for s in sigs]].to_numpy(dtype=np.float64)
    if job == "decoupler":
        import decoupler as dc

        adata = _anndata(bench)
        net = pd.DataFrame(
            [(s, g) for s, genes in sigs.items() for g in genes], columns=["source", "target"]
        )
        result = dc.mt.aucell(adata, net, tmin=1)
        scores = (adata if result is None else result).obsm["score_aucell"]
        return scores.reindex(index=adata.obs_names, columns=list(sigs)).to_numpy(np.float64)
    msg = f"unknown benchmark job {job!r}"
    raise ValueError(msg)


def _warm_up(job: str) -> None:
    """Compile decoupler's numba functions on a tiny matrix (not timed)."""
    if job != "decoupler":
        return
    import anndata as ad
    import decoupler as dc

    rng = np.random.default_rng(0)
    small = ad.AnnData(
        X=sp.csr_matrix(rng.poisson(1.0, size=(20, 50)).astype(np.float32)),
        obs=pd.DataFrame(index=[f"c{i}" for i in range(20)]),
        var=pd.DataFrame(index=[f"g{i}" for i in range(50)]),
    )
    net = pd.DataFrame({"source": ["s"] * 5, "target": [f"g{i}" for i in range(5)]})
    dc.mt.aucell(small, net, tmin=1)


def run_one(job: str, folder: Path, out: Path, *, seed: int) -> dict:
    """Load the data, run ``job`` once, save its scores and timing (subprocess entry)."""
    bench = load_bench_data(folder)
    _warm_up(job)
    start = time.perf_counter()
    scores = _run_job(job, bench, seed=seed)
    wall = time.perf_counter() - start
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    np.save(out.with_suffix(".npy"), np.asarray(scores, dtype=np.float64))
    result = {"job": job, "wall_s": wall, "peak_rss_mb": peak_mb, "matrix_mb": bench.matrix_mb}
    out.write_text(json.dumps(result))
    return result


# --------------------------------------------------------------------------- #
# The whole benchmark
# --------------------------------------------------------------------------- #
#: (method row, cd8exo job, baseline job, baseline label, how agreement is measured)
ROWS: tuple[tuple[str, str, str | None, str, str], ...] = (
    (
        "tirosh (same controls)",
        "tirosh_same_controls",
        "scanpy_same_controls",
        "scanpy.tl.score_genes x20 (whole-bin controls)",
        "equal",
    ),
    (
        "tirosh (ctrl_size=50)",
        "tirosh",
        "scanpy",
        "scanpy.tl.score_genes x20 (ctrl_size=50)",
        "corr",
    ),
    ("ucell", "ucell", "pyucell", "pyucell.compute_ucell_scores (n_jobs=1)", "equal"),
    ("aucell (ties=order)", "aucell_order", "decoupler", "decoupler.mt.aucell", "equal"),
    ("aucell (ties=mean)", "aucell", "decoupler", "decoupler.mt.aucell", "corr"),
    ("ssgsea (200 patient pseudobulks)", "ssgsea", None, "none", "none"),
)


def _agreement(ours: np.ndarray, reference: np.ndarray, kind: str) -> str:
    if kind == "none":
        return ""
    ours = np.asarray(ours, dtype=np.float64)
    reference = np.asarray(reference, dtype=np.float64)
    correlations = [
        np.corrcoef(ours[:, j], reference[:, j])[0, 1] for j in range(reference.shape[1])
    ]
    text = f"min r={min(correlations):.6f}"
    if kind == "equal":
        text = f"max|diff|={np.nanmax(np.abs(ours - reference)):.2e}; {text}"
    return text


def _subprocess(job: str, folder: Path, work: Path, *, seed: int) -> dict:
    out = work / f"{job}.json"
    if out.is_file() and out.with_suffix(".npy").is_file():
        logger.info("%s: reusing %s", job, out)
        return json.loads(out.read_text())
    env = dict(os.environ, **dict.fromkeys(_THREAD_VARIABLES, "1"))
    package_root = str(Path(__file__).resolve().parents[2])  # workflow/scripts
    env["PYTHONPATH"] = os.pathsep.join([package_root, env.get("PYTHONPATH", "")]).rstrip(
        os.pathsep
    )
    command = [sys.executable, "-m", "cd8exo.sim.bench", "--run-one", job, "--data", str(folder)]
    command += ["--out", str(out), "--seed", str(seed)]
    logger.info("running %s", job)
    completed = subprocess.run(command, env=env, check=False)
    if completed.returncode != 0:
        msg = f"benchmark job {job} failed (exit {completed.returncode}); see its output above."
        raise RuntimeError(msg)
    result = json.loads(out.read_text())
    logger.info("%s: %.1f s, peak RSS %.0f MiB", job, result["wall_s"], result["peak_rss_mb"])
    return result


def run_bench(
    folder: Path, work: Path, *, seed: int, rows: tuple = ROWS, fresh: bool = True
) -> pd.DataFrame:
    """Run every job of ``rows`` in its own subprocess and build the table.

    Parameters
    ----------
    folder
        The dataset (:func:`make_bench_data`).
    work
        Folder for the per-job timings and scores.
    seed
        Seed of the random steps (Tirosh controls, ssGSEA).
    rows
        The comparisons (:data:`ROWS`).
    fresh
        Rerun every job (``False`` reuses finished jobs of an interrupted run).

    Returns
    -------
    The benchmark table (:data:`BENCH_COLUMNS`).
    """
    work.mkdir(parents=True, exist_ok=True)
    if fresh:
        for old in work.glob("*.json"):
            old.unlink()
    results: dict[str, dict] = {}
    table = []
    for method, job, baseline_job, baseline_label, kind in rows:
        for name in (job, baseline_job):
            if name is not None and name not in results:
                results[name] = _subprocess(name, folder, work, seed=seed)
        ours = results[job]
        row = {
            "method": method,
            "baseline": baseline_label,
            "wall_s": round(ours["wall_s"], 2),
            "peak_rss_mb": round(ours["peak_rss_mb"]),
            "matrix_mb": round(ours["matrix_mb"]),
            "rss_ratio": round(ours["peak_rss_mb"] / ours["matrix_mb"], 3),
        }
        if baseline_job is not None:
            base = results[baseline_job]
            row["baseline_wall_s"] = round(base["wall_s"], 2)
            row["speedup"] = round(base["wall_s"] / ours["wall_s"], 2)
            row["baseline_peak_rss_mb"] = round(base["peak_rss_mb"])
            row["agreement"] = _agreement(
                np.load(work / f"{job}.npy"), np.load(work / f"{baseline_job}.npy"), kind
            )
        table.append(row)
    return pd.DataFrame(table).reindex(columns=list(BENCH_COLUMNS))


def main(argv: list[str] | None = None) -> int:
    """Command line: ``python -m cd8exo.sim.bench [--cache .cache/bench] [--out ...]``."""
    parser = argparse.ArgumentParser(
        prog="python -m cd8exo.sim.bench",
        description="Benchmark cd8exo's scoring methods against scanpy, pyucell and decoupler.",
    )
    parser.add_argument("--cache", type=Path, default=Path(".cache/bench"))
    parser.add_argument("--out", type=Path, default=Path("results/bench/scoring.tsv"))
    parser.add_argument("--cells", type=int, default=BenchSpec.n_cells)
    parser.add_argument("--genes", type=int, default=BenchSpec.n_genes)
    parser.add_argument("--genes-per-cell", type=int, default=BenchSpec.genes_per_cell)
    parser.add_argument("--seed", type=int, default=BenchSpec.seed)
    parser.add_argument("--resume", action="store_true", help="reuse finished jobs")
    parser.add_argument("--run-one", help=argparse.SUPPRESS)
    parser.add_argument("--data", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    if args.run_one:
        run_one(args.run_one, args.data, args.out, seed=args.seed)
        return 0
    spec = BenchSpec(
        n_cells=args.cells,
        n_genes=args.genes,
        genes_per_cell=args.genes_per_cell,
        seed=args.seed,
    )
    folder = make_bench_data(args.cache, spec)
    table = run_bench(
        folder, args.cache / "runs" / spec.name, seed=args.seed, fresh=not args.resume
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_name(f".{args.out.name}.tmp")
    table.to_csv(tmp, sep="\t", index=False)
    tmp.replace(args.out)
    sys.stdout.write(table.to_string(index=False) + "\n")
    sys.stdout.write(f"written to {args.out}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
