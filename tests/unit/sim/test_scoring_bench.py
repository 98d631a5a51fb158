"""The scoring benchmark's synthetic data, agreement measures and interleaved repeats (not its
timings)."""

from __future__ import annotations

import json
import logging
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from cd8exo.sim import bench
from cd8exo.sim.bench import (
    BENCH_COLUMNS,
    ROWS,
    _agreement,
    interleaved_groups,
    markdown_table,
    run_bench,
)
from cd8exo.sim.bench_data import BenchSpec, load_bench_data, make_bench_data


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    spec = BenchSpec(n_cells=300, n_signatures=4, n_patients=5)  # 20,000 genes, ~1,500 per cell
    folder = make_bench_data(tmp_path_factory.mktemp("bench"), spec, chunk_cells=120)
    return spec, folder


def test_bench_data_is_log_normalised_csr_float32(tiny):
    spec, folder = tiny
    data = load_bench_data(folder)
    x = data.x
    assert x.shape == (spec.n_cells, spec.n_genes)
    assert x.format == "csr"
    assert x.dtype == np.float32
    # ln(CP10k + 1): every cell sums to 10,000 on the linear scale
    totals = np.asarray(x.expm1().sum(axis=1, dtype=np.float64)).ravel()
    np.testing.assert_allclose(totals, 1e4, rtol=1e-4)
    detected = np.diff(x.indptr)
    assert abs(detected.mean() - spec.genes_per_cell) < 0.1 * spec.genes_per_cell
    sizes = [len(genes) for genes in data.signatures.values()]
    assert sizes == [20, 80, 140, 200]
    assert all(len(set(genes)) == len(genes) for genes in data.signatures.values())
    assert set(np.unique(data.patients)) <= set(range(spec.n_patients))
    assert data.matrix_mb == pytest.approx(
        (x.data.nbytes + x.indices.nbytes + x.indptr.nbytes) / 2**20
    )


def test_bench_data_is_generated_once_and_deterministic(tiny, tmp_path):
    spec, folder = tiny
    stamp = (folder / "data.f32").stat().st_mtime_ns
    assert make_bench_data(folder.parent, spec) == folder
    assert (folder / "data.f32").stat().st_mtime_ns == stamp
    again = make_bench_data(tmp_path, spec, chunk_cells=120)
    assert (again / "data.f32").read_bytes() == (folder / "data.f32").read_bytes()


def test_agreement_text():
    ours = np.array([[1.0, 2.0], [2.0, 4.0], [3.0, 7.0]])
    assert _agreement(ours, ours + 1e-9, "equal") == "max|diff|=1.00e-09; min r=1.000000"
    assert _agreement(ours, ours * 2, "corr") == "min r=1.000000"
    assert _agreement(ours, ours, "none") == ""


# --------------------------------------------------------------------------- #
# Interleaved repeats (fake runs: no subprocess, no timing)
# --------------------------------------------------------------------------- #
def test_rows_sharing_a_baseline_share_its_runs():
    assert interleaved_groups(ROWS) == [
        ["tirosh_same_controls", "scanpy_same_controls"],
        ["tirosh", "scanpy"],
        ["ucell", "pyucell"],
        ["aucell_order", "aucell", "decoupler"],
        ["ssgsea"],
    ]


def _fake_runs(monkeypatch, walls: dict[str, list[float]], loads: dict[str, list[float]]):
    """Replace the subprocess by records of the given wall times; log the run order."""
    order = []

    def fake(job, folder, work, *, seed, repeat=0):
        order.append((job, repeat))
        scores = np.arange(8.0).reshape(4, 2) + (0.5 if job == "ucell" else 0.0)
        np.save(work / f"{job}.{repeat}.npy", scores)
        return {
            "job": job,
            "wall_s": walls[job][repeat],
            "peak_rss_mb": 100.0 + repeat,
            "matrix_mb": 80.0,
            "load_before": loads[job][repeat],
            "load_after": loads[job][repeat] + 0.1,
        }

    monkeypatch.setattr(bench, "_subprocess", fake)
    return order


def test_run_bench_interleaves_and_summarises_the_repeats(monkeypatch, tmp_path):
    rows = (
        ("ucell", "ucell", "pyucell", "pyucell (n_jobs=1)", "equal"),
        ("ssgsea", "ssgsea", None, "none", "none"),
    )
    walls = {"ucell": [2.0, 1.0, 4.0], "pyucell": [20.0, 30.0, 10.0], "ssgsea": [5.0, 6.0, 7.0]}
    loads = {"ucell": [0.5, 0.9, 1.0], "pyucell": [1.2, 3.5, 0.7], "ssgsea": [1.0, 1.0, 1.0]}
    order = _fake_runs(monkeypatch, walls, loads)
    table = run_bench(tmp_path, tmp_path / "runs", seed=1, rows=rows, repeats=3)
    assert order == [
        ("ucell", 0),
        ("pyucell", 0),
        ("ucell", 1),
        ("pyucell", 1),
        ("ucell", 2),
        ("pyucell", 2),
        ("ssgsea", 0),
        ("ssgsea", 1),
        ("ssgsea", 2),
    ]
    assert list(table.columns) == list(BENCH_COLUMNS)
    ucell = table.iloc[0]
    # medians 2.0 and 20.0; per-repeat ratios 20/2, 30/1, 10/4
    assert (ucell.wall_s, ucell.wall_s_min, ucell.wall_s_max) == (2.0, 1.0, 4.0)
    assert (ucell.baseline_wall_s, ucell.baseline_wall_s_min, ucell.baseline_wall_s_max) == (
        20.0,
        10.0,
        30.0,
    )
    assert (ucell.speedup, ucell.speedup_min, ucell.speedup_max) == (10.0, 2.5, 30.0)
    assert ucell.load_avg == 3.6  # the highest recorded around the row's six runs
    assert ucell.peak_rss_mb == 102  # the highest run
    assert ucell.rss_ratio == pytest.approx(102 / 80, abs=1e-3)
    assert ucell.repeats == 3
    assert ucell.agreement == "max|diff|=5.00e-01; min r=1.000000"
    ssgsea = table.iloc[1]
    assert (ssgsea.wall_s, ssgsea.wall_s_min, ssgsea.wall_s_max) == (6.0, 5.0, 7.0)
    assert np.isnan(ssgsea.speedup)
    assert ssgsea.load_avg == 1.1
    markdown = markdown_table(table)
    assert "| ucell | pyucell (n_jobs=1) | 2.00 (1.00-4.00) | 20.0 (10.0-30.0) |" in markdown
    assert "**10.0x** (2.5-30.0)" in markdown
    assert "max\\|diff\\|" in markdown


def test_run_bench_needs_a_repeat(tmp_path):
    with pytest.raises(ValueError, match="repeats must be at least 1"):
        run_bench(tmp_path, tmp_path / "runs", seed=1, repeats=0)


def test_a_run_on_a_busy_machine_is_flagged(monkeypatch, tmp_path, caplog):
    def fake_run(command, env, check):
        out = Path(command[command.index("--out") + 1])
        out.write_text(json.dumps({"job": "ucell", "wall_s": 1.0, "peak_rss_mb": 1.0}))
        out.with_suffix(".npy").write_bytes(b"")
        assert env["NUMBA_NUM_THREADS"] == env["OMP_NUM_THREADS"] == "1"
        return subprocess.CompletedProcess(command, 0)

    monkeypatch.setattr(bench.subprocess, "run", fake_run)
    monkeypatch.setattr(bench, "_cores", lambda: 2)
    monkeypatch.setattr(bench, "_load", lambda: 1.5)
    # independent of what earlier tests in this process did to logging (levels, a
    # logging.config call that disabled existing loggers)
    monkeypatch.setattr(bench.logger, "disabled", False)
    caplog.set_level(logging.WARNING, logger=bench.logger.name)
    result = bench._subprocess("ucell", tmp_path, tmp_path, seed=1, repeat=1)
    assert (result["load_before"], result["load_after"], result["repeat"]) == (1.5, 1.5, 1)
    assert json.loads((tmp_path / "ucell.1.json").read_text())["load_after"] == 1.5
    assert "competed for the CPU" not in caplog.text
    monkeypatch.setattr(bench, "_load", lambda: 2.5)
    bench._subprocess("ucell", tmp_path, tmp_path, seed=1, repeat=2)
    assert "load average of 2.50 on 2 cores" in caplog.text


def test_command_line_size_and_repeats(monkeypatch, tmp_path):
    seen = {}

    def fake_data(folder, spec):
        seen["spec"] = spec
        return tmp_path

    def fake_bench(folder, work, *, seed, repeats, fresh):
        seen["repeats"] = repeats
        return pd.DataFrame(
            [{"method": "m", "baseline": "none", "wall_s": 1.0, "wall_s_min": 1.0}]
        ).reindex(columns=list(BENCH_COLUMNS))

    monkeypatch.setattr(bench, "make_bench_data", fake_data)
    monkeypatch.setattr(bench, "run_bench", fake_bench)
    out = tmp_path / "bench" / "scoring.tsv"
    assert bench.main(["--n-cells", "20000", "--repeats", "5", "--out", str(out)]) == 0
    assert seen["spec"].n_cells == 20_000
    assert seen["spec"].n_genes == BenchSpec.n_genes
    assert seen["repeats"] == 5
    assert list(pd.read_csv(out, sep="\t").columns) == list(BENCH_COLUMNS)
    assert out.with_suffix(".md").is_file()
    bench.main(["--out", str(out)])
    assert seen["spec"].n_cells == 200_000
    assert seen["repeats"] == 3
