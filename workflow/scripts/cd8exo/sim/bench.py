"""Benchmark of the scoring methods against their reference implementations.

``make bench-scoring`` (``python -m cd8exo.sim.bench``) generates once, and caches outside
git (``.cache/bench/``), a synthetic log-normalised dataset of 200,000 cells x 20,000
genes with about 1,500 detected genes per cell (CSR float32), and 20 signatures of
20-200 genes (``--n-cells`` for a smaller one). Each cd8exo method and each baseline
runs in its own subprocess, single-threaded (``OMP/MKL/OPENBLAS/NUMBA_NUM_THREADS=1``):

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
aucell, ties="mean"       the same decoupler runs (a different tie rule: agreement
                          is a correlation)
ssgsea                    none (gseapy itself scores the 200 patient pseudobulks)
========================  ======================================================

**Interleaved repeats.** A baseline and the methods compared to it run in turn,
``--repeats`` times (default 3): ``ucell, pyucell, ucell, pyucell, ucell, pyucell``;
``aucell order, aucell mean, decoupler, ...``. The table gives the median wall time of
each and their ratio (``speedup``, median baseline / median method) with its range over
the repeats (``speedup_min``, ``speedup_max``: baseline / method of the same repeat,
measured a minute apart). Whatever else runs on the machine then slows both sides of a
ratio alike, rather than whichever happened to run at a busy moment. The 1-minute load
average (``os.getloadavg``) is recorded before and after every run; ``load_avg`` is the
highest around the row's runs (the benchmark's own job counts about 1), and a warning is
logged when it exceeds the cores this process may use.

Wall time is that of the scoring call alone (loading the matrix and importing are not
counted). Numba-compiled code is compiled, or loaded from numba's cache, on a small
warm-up first, for decoupler and cd8exo alike (``warm_up_s`` in the per-run records).
Peak RSS is the maximum resident set size of the subprocess (``getrusage``, the highest
over the repeats), which includes the loaded matrix: the target is at most 1.3 times
``matrix_mb``, the bytes of the CSR arrays. The table goes to ``results/bench/scoring.tsv``
(with a Markdown copy for the README, ``scoring.md``) and standard output.
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
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp

from cd8exo.scoring.rank import aucell_scores, ucell_scores
from cd8exo.scoring.ssgsea import group_sums, ssgsea_scores
from cd8exo.scoring.tirosh import tirosh_scores
from cd8exo.sim.bench_data import (
    BenchData,
    BenchSpec,
    _anndata,
    _decoupler_tie_order,
    load_bench_data,
    make_bench_data,
)

logger = logging.getLogger(__name__)

__all__ = ["main", "run_bench"]

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
    "wall_s_min",
    "wall_s_max",
    "baseline_wall_s_min",
    "baseline_wall_s_max",
    "load_avg",
    "speedup_min",
    "speedup_max",
    "repeats",
)


_THREAD_VARIABLES = (
    "OMP_NUM_THREADS",
    "MKL_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "NUMBA_NUM_THREADS",
    "NUMEXPR_NUM_THREADS",
)


def _run_job(job: str, bench: BenchData, *, seed: int) -> np.ndarray:
    """Run one method or baseline; return cells (or patients) x signatures scores."""
    x, names, sigs = bench.x, bench.var_names, bench.signatures
    whole_bins = x.shape[1]  # ctrl_size above every bin size: every gene of the bin
    if job == "tirosh_same_controls":
        return tirosh_scores(x, names, sigs, rng=seed, ctrl_size=whole_bins)
    if job == "tirosh":
        return tirosh_scores(x, names, sigs, rng=seed, ctrl_size=50)
    if job == "ucell":
        return ucell_scores(x, names, sigs, max_rank=1500)
    if job == "aucell_order":
        return aucell_scores(x, names, sigs, ties="order", tie_order=_decoupler_tie_order(x))
    if job == "aucell":
        return aucell_scores(x, names, sigs, ties="mean")
    if job == "ssgsea":
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


def _warm_up(job: str, x: sp.csr_matrix) -> None:
    """Compile, or load from numba's cache, the job's numba code (not timed).

    decoupler's AUCell and cd8exo's UCell/AUCell kernels run once on a tiny matrix of the
    data's dtypes (numba compiles once per argument type).
    """
    rng = np.random.default_rng(0)
    small = sp.csr_matrix(rng.poisson(1.0, size=(20, 50)).astype(x.dtype))
    small.indices = small.indices.astype(x.indices.dtype)
    small.indptr = small.indptr.astype(x.indptr.dtype)
    names = [f"g{i}" for i in range(50)]
    if job == "decoupler":
        import anndata as ad
        import decoupler as dc

        adata = ad.AnnData(
            X=small,
            obs=pd.DataFrame(index=[f"c{i}" for i in range(20)]),
            var=pd.DataFrame(index=names),
        )
        net = pd.DataFrame({"source": ["s"] * 5, "target": names[:5]})
        dc.mt.aucell(adata, net, tmin=1)
    elif job == "ucell":
        ucell_scores(small, names, {"s": names[:5]}, max_rank=10)
    elif job in ("aucell", "aucell_order"):
        aucell_scores(small, names, {"s": names[:5]}, n_up=5, ties="order")
        aucell_scores(small, names, {"s": names[:5]}, n_up=5, ties="mean")


def run_one(job: str, folder: Path, out: Path, *, seed: int) -> dict:
    """Load the data, run ``job`` once, save its scores and timing (subprocess entry)."""
    bench = load_bench_data(folder)
    start = time.perf_counter()
    _warm_up(job, bench.x)
    warm_up = time.perf_counter() - start
    start = time.perf_counter()
    scores = _run_job(job, bench, seed=seed)
    wall = time.perf_counter() - start
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    np.save(out.with_suffix(".npy"), np.asarray(scores, dtype=np.float64))
    result = {
        "job": job,
        "wall_s": wall,
        "warm_up_s": warm_up,
        "peak_rss_mb": peak_mb,
        "matrix_mb": bench.matrix_mb,
    }
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


def _cores() -> int:
    """Cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def _load() -> float:
    """The 1-minute load average."""
    return os.getloadavg()[0]


def _subprocess(job: str, folder: Path, work: Path, *, seed: int, repeat: int = 0) -> dict:
    """Run ``job`` once in a fresh single-threaded process; its record, with the load."""
    out = work / f"{job}.{repeat}.json"
    if out.is_file() and out.with_suffix(".npy").is_file():
        logger.info("%s (repeat %d): reusing %s", job, repeat + 1, out)
        return json.loads(out.read_text())
    env = dict(os.environ, **dict.fromkeys(_THREAD_VARIABLES, "1"))
    package_root = str(Path(__file__).resolve().parents[2])  # workflow/scripts
    env["PYTHONPATH"] = os.pathsep.join([package_root, env.get("PYTHONPATH", "")]).rstrip(
        os.pathsep
    )
    command = [sys.executable, "-m", "cd8exo.sim.bench", "--run-one", job, "--data", str(folder)]
    command += ["--out", str(out), "--seed", str(seed)]
    load_before = _load()
    logger.info("running %s (repeat %d), load average %.2f", job, repeat + 1, load_before)
    completed = subprocess.run(command, env=env, check=False)
    if completed.returncode != 0:
        msg = f"benchmark job {job} failed (exit {completed.returncode}); see its output above."
        raise RuntimeError(msg)
    result = json.loads(out.read_text())
    result.update(repeat=repeat, load_before=load_before, load_after=_load())
    out.write_text(json.dumps(result))
    logger.info(
        "%s (repeat %d): %.2f s, peak RSS %.0f MiB, load average %.2f",
        job,
        repeat + 1,
        result["wall_s"],
        result["peak_rss_mb"],
        result["load_after"],
    )
    cores = _cores()
    if max(load_before, result["load_after"]) > cores:
        logger.warning(
            "%s (repeat %d) ran with a load average of %.2f on %d cores: other work competed "
            "for the CPU; its time is not that of a quiet machine.",
            job,
            repeat + 1,
            max(load_before, result["load_after"]),
            cores,
        )
    return result


def interleaved_groups(rows: tuple = ROWS) -> list[list[str]]:
    """Jobs measured in turn: each baseline after the methods compared to it.

    Rows sharing a baseline share its runs (the two AUCell rows and decoupler); a row
    without a baseline is a group of its own.
    """
    groups: dict[str, list[str]] = {}
    for _, job, baseline_job, _, _ in rows:
        members = groups.setdefault(baseline_job or job, [])
        if job not in members:
            members.append(job)
    return [members if key in members else [*members, key] for key, members in groups.items()]


def _spread(values: list[float]) -> tuple[float, float, float]:
    return float(np.median(values)), float(min(values)), float(max(values))


def run_bench(
    folder: Path,
    work: Path,
    *,
    seed: int,
    rows: tuple = ROWS,
    repeats: int = 3,
    fresh: bool = True,
) -> pd.DataFrame:
    """Run every job of ``rows`` ``repeats`` times, interleaved, and build the table.

    Parameters
    ----------
    folder
        The dataset (:func:`make_bench_data`).
    work
        Folder for the per-run timings and scores (``<job>.<repeat>.json``/``.npy``).
    seed
        Seed of the random steps (Tirosh controls, ssGSEA).
    rows
        The comparisons (:data:`ROWS`).
    repeats
        Runs of every job; the methods and baseline of a group take turns
        (:func:`interleaved_groups`).
    fresh
        Rerun every job (``False`` reuses finished runs of an interrupted run).

    Returns
    -------
    The benchmark table (:data:`BENCH_COLUMNS`): median wall times, their min-max, the
    ratio of the medians and its range over the repeats, peak RSS (highest run) and the
    highest load average recorded around the row's runs.
    """
    if repeats < 1:
        msg = f"repeats must be at least 1, got {repeats}."
        raise ValueError(msg)
    work.mkdir(parents=True, exist_ok=True)
    if fresh:
        for old in work.glob("*.json"):
            old.unlink()
    runs: dict[str, list[dict]] = {}
    for group in interleaved_groups(rows):
        for repeat in range(repeats):
            for job in group:
                runs.setdefault(job, []).append(
                    _subprocess(job, folder, work, seed=seed, repeat=repeat)
                )
    table = []
    for method, job, baseline_job, baseline_label, kind in rows:
        ours = runs[job]
        wall, wall_min, wall_max = _spread([r["wall_s"] for r in ours])
        peak = max(r["peak_rss_mb"] for r in ours)
        loads = [r.get(k, np.nan) for r in ours for k in ("load_before", "load_after")]
        row = {
            "method": method,
            "baseline": baseline_label,
            "wall_s": round(wall, 2),
            "wall_s_min": round(wall_min, 2),
            "wall_s_max": round(wall_max, 2),
            "peak_rss_mb": round(peak),
            "matrix_mb": round(ours[0]["matrix_mb"]),
            "rss_ratio": round(peak / ours[0]["matrix_mb"], 3),
            "repeats": len(ours),
        }
        if baseline_job is not None:
            base = runs[baseline_job]
            base_wall, base_min, base_max = _spread([r["wall_s"] for r in base])
            ratios = [b["wall_s"] / o["wall_s"] for o, b in zip(ours, base, strict=True)]
            loads += [r.get(k, np.nan) for r in base for k in ("load_before", "load_after")]
            row.update(
                baseline_wall_s=round(base_wall, 2),
                baseline_wall_s_min=round(base_min, 2),
                baseline_wall_s_max=round(base_max, 2),
                speedup=round(base_wall / wall, 2),
                speedup_min=round(min(ratios), 2),
                speedup_max=round(max(ratios), 2),
                baseline_peak_rss_mb=round(max(r["peak_rss_mb"] for r in base)),
                agreement=_agreement(
                    np.load(work / f"{job}.0.npy"), np.load(work / f"{baseline_job}.0.npy"), kind
                ),
            )
        row["load_avg"] = round(float(np.nanmax(loads)), 2) if not np.isnan(loads).all() else None
        table.append(row)
    return pd.DataFrame(table).reindex(columns=list(BENCH_COLUMNS))


def markdown_table(table: pd.DataFrame) -> str:
    """The README's table: medians, speed-up with its range, peak RSS, agreement, load."""
    lines = [
        "| method | baseline | wall_s (min-max) | baseline_wall_s (min-max) | speedup (min-max) "
        "| peak_rss_mb | rss_ratio | agreement | load_avg |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for row in table.itertuples(index=False):
        has_baseline = not pd.isna(row.baseline_wall_s)
        cells = [
            row.method,
            row.baseline,
            f"{row.wall_s:.2f} ({row.wall_s_min:.2f}-{row.wall_s_max:.2f})",
            f"{row.baseline_wall_s:.1f} ({row.baseline_wall_s_min:.1f}-{row.baseline_wall_s_max:.1f})"
            if has_baseline
            else "",
            f"**{row.speedup:.1f}x** ({row.speedup_min:.1f}-{row.speedup_max:.1f})"
            if has_baseline
            else "",
            f"{row.peak_rss_mb:.0f}",
            f"{row.rss_ratio:.2f}",
            "" if pd.isna(row.agreement) else str(row.agreement).replace("|", "\\|"),
            "" if pd.isna(row.load_avg) else f"{row.load_avg:.2f}",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    """Command line: ``python -m cd8exo.sim.bench [--n-cells N] [--repeats R] [--out ...]``."""
    parser = argparse.ArgumentParser(
        prog="python -m cd8exo.sim.bench",
        description="Benchmark cd8exo's scoring methods against scanpy, pyucell and decoupler.",
    )
    parser.add_argument("--cache", type=Path, default=Path(".cache/bench"))
    parser.add_argument("--out", type=Path, default=Path("results/bench/scoring.tsv"))
    parser.add_argument(
        "--n-cells",
        "--cells",
        dest="cells",
        type=int,
        default=BenchSpec.n_cells,
        help="cells of the synthetic dataset (default %(default)s; e.g. 20000 for a quick run)",
    )
    parser.add_argument("--genes", type=int, default=BenchSpec.n_genes)
    parser.add_argument("--genes-per-cell", type=int, default=BenchSpec.genes_per_cell)
    parser.add_argument("--seed", type=int, default=BenchSpec.seed)
    parser.add_argument(
        "--repeats",
        type=int,
        default=3,
        help="interleaved runs of every method and baseline (default %(default)s)",
    )
    parser.add_argument("--resume", action="store_true", help="reuse finished runs")
    parser.add_argument("--run-one", help=argparse.SUPPRESS)
    parser.add_argument("--data", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    if args.run_one:
        run_one(args.run_one, args.data, args.out, seed=args.seed)
        return 0
    if args.repeats < 1:
        parser.error(f"--repeats must be at least 1, got {args.repeats}")
    spec = BenchSpec(
        n_cells=args.cells,
        n_genes=args.genes,
        genes_per_cell=args.genes_per_cell,
        seed=args.seed,
    )
    folder = make_bench_data(args.cache, spec)
    table = run_bench(
        folder,
        args.cache / "runs" / spec.name,
        seed=args.seed,
        repeats=args.repeats,
        fresh=not args.resume,
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_name(f".{args.out.name}.tmp")
    table.to_csv(tmp, sep="\t", index=False)
    tmp.replace(args.out)
    markdown = args.out.with_suffix(".md")
    markdown.write_text(markdown_table(table))
    sys.stdout.write(table.to_string(index=False) + "\n")
    sys.stdout.write(f"written to {args.out} and {markdown}\n")
    busy = table.loc[table["load_avg"] > _cores(), "method"].tolist()
    if busy:
        logger.warning(
            "rows %s ran while the load average exceeded the %d cores: not a quiet machine.",
            busy,
            _cores(),
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
