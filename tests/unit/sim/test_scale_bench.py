"""make bench-scale: the collection of benchmark files and logs, the truth summary, the
merge of sizes, the figure, the measured child process and the run's config (no workflow
run here: fake run directories with known values)."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from cd8exo.sim import scale_bench
from cd8exo.sim.scale import ScaleSpec
from cd8exo.sim.scale_collect import (
    BASELINE,
    COLUMNS,
    TOTAL,
    collect_run,
    fit_resources,
    heavy_rules,
    job_log,
    merge_table,
    plot_scale,
    truth_summary,
)

HEADER = "s\th:m:s\tmax_rss\tmax_vms\tmax_uss\tmax_pss\tio_in\tio_out\tmean_load\tcpu_time\n"

LOG = textwrap.dedent(
    """\
    Building DAG of jobs...
    [Sat Dec  5 10:54:22 2026]
    localrule filter_cells:
        input: results/prepare_dataset/scale_10000.h5ad
        output: results/filter_cells/scale_10000.h5ad
        log: logs/filter_cells/scale_10000.log
        jobid: 3
        benchmark: benchmarks/filter_cells/scale_10000.tsv
        reason: Missing output files
        wildcards: dataset=scale_10000
        resources: tmpdir=/tmp, mem_mb=1029, mem=1.03 GB, mem_mib=982, runtime=11
    Shell command: None
    [Sat Dec  5 10:55:22 2026]
    localrule annotate_cells:
        input: {markers}, results/filter_cells/scale_10000.h5ad
        output: results/annotate_cells/scale_10000.h5ad
        log: logs/annotate_cells/scale_10000.log
        jobid: 5
        benchmark: benchmarks/annotate_cells/scale_10000.tsv
        wildcards: dataset=scale_10000
        threads: 2
        resources: tmpdir=/tmp, mem_mb=4125, mem=4.12 GB, mem_mib=3934, runtime=14
    [Sat Dec  5 10:56:00 2026]
    localrule check_truth:
        input: results/summary/associations.tsv
        output: results/summary/truth_check.tsv
        benchmark: benchmarks/check_truth/all.tsv
        resources: tmpdir=/tmp, mem_mb=1000, mem=1 GB, mem_mib=954, runtime=10
    Finished jobid: 5 (Rule: annotate_cells)
    """
)


def _write(path: Path, content: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content)
    return path


@pytest.fixture
def run_dir(tmp_path):
    run = tmp_path / "run"
    markers = _write(tmp_path / "outside" / "markers.tsv", b"m" * 2**20)  # absolute input
    _write(run / ".snakemake" / "log" / "2026-12-05T1.snakemake.log", LOG.format(markers=markers))
    _write(run / "results/prepare_dataset/scale_10000.h5ad", b"x" * 3 * 2**20)
    _write(run / "results/filter_cells/scale_10000.h5ad", b"x" * 5 * 2**20)
    _write(run / "results/summary/associations.tsv", b"x" * 2**19)
    _write(
        run / "benchmarks/filter_cells/scale_10000.tsv",
        HEADER + "12.5\t0:00:12\t800.25\t1\t1\t1\t1\t1\t1\t1\n",
    )
    # a benchmark with two repeats: the worst of each column
    _write(
        run / "benchmarks/annotate_cells/scale_10000.tsv",
        HEADER
        + "40.0\t0:00:40\t3000\t1\t1\t1\t1\t1\t1\t1\n"
        + "45.5\t0:00:45\t2900\t1\t1\t1\t1\t1\t1\t1\n",
    )
    _write(
        run / "benchmarks/check_truth/all.tsv", HEADER + "2.0\t0:00:02\t110\t1\t1\t1\t1\t1\t1\t1\n"
    )
    # a job without a log entry (e.g. its log was removed): resources unknown
    _write(
        run / "benchmarks/plot_umap/scale_10000.tsv",
        HEADER + "3.0\t0:00:03\t300\t-\t-\t-\t-\t-\t-\t-\n",
    )
    truth = pd.DataFrame(
        {
            "dataset": "scale_10000",
            "signature": ["A", "A", "B", "B"],
            "target": ["PLP2", "CXCL9", "PLP2", "ACTB"],
            "expected_sign": [-1, 1, 0, 0],
            "as_planted": [True, False, True, False],
        }
    )
    truth.to_csv(run / "results/summary/truth_check.tsv", sep="\t", index=False)
    return run


def test_job_log_reads_each_jobs_inputs_and_resources(run_dir):
    jobs = job_log(run_dir)
    assert set(jobs) == {
        "benchmarks/filter_cells/scale_10000.tsv",
        "benchmarks/annotate_cells/scale_10000.tsv",
        "benchmarks/check_truth/all.tsv",
    }
    annotate = jobs["benchmarks/annotate_cells/scale_10000.tsv"]
    assert annotate["rule"] == "annotate_cells"
    assert annotate["mem_mb"] == 4125
    assert annotate["runtime"] == 14
    assert annotate["input"][-1] == "results/filter_cells/scale_10000.h5ad"


def test_a_later_log_wins(run_dir):
    later = LOG.replace("mem_mb=1029", "mem_mb=2222").format(markers="m")
    _write(run_dir / ".snakemake/log/2026-12-05T2.snakemake.log", later)
    assert job_log(run_dir)["benchmarks/filter_cells/scale_10000.tsv"]["mem_mb"] == 2222


def test_collect_run_gives_one_row_per_rule_with_known_values(run_dir):
    table = collect_run(run_dir, n_cells=10_000, n_genes=20_000, wall_s=321.0)
    assert list(table.columns) == COLUMNS
    table = table.set_index("rule")
    assert set(table.index) == {"filter_cells", "annotate_cells", "check_truth", "plot_umap", TOTAL}
    assert (table["n_cells"] == 10_000).all()
    assert (table["n_genes"] == 20_000).all()
    filt = table.loc["filter_cells"]
    assert (filt["wall_s"], filt["max_rss_mb"]) == (12.5, 800.25)
    assert (filt["declared_mem_mb"], filt["declared_runtime_min"]) == (1029, 11)
    assert filt["input_mb"] == pytest.approx(3.0)
    annotate = table.loc["annotate_cells"]
    assert (annotate["wall_s"], annotate["max_rss_mb"]) == (45.5, 3000)
    assert annotate["input_mb"] == pytest.approx(6.0)  # absolute markers (1) + h5ad (5)
    assert table.loc["check_truth", "input_mb"] == pytest.approx(0.5)
    assert np.isnan(table.loc["plot_umap", "declared_mem_mb"])
    total = table.loc[TOTAL]
    assert (total["wall_s"], total["max_rss_mb"]) == (321.0, 3000)


def test_truth_summary_counts_planted_and_null_pairs(run_dir, tmp_path):
    row = truth_summary(run_dir, n_cells=10_000).iloc[0]
    assert (row["planted_pairs"], row["planted_recovered"]) == (2, 1)
    assert (row["null_pairs"], row["null_called"]) == (2, 1)
    assert not row["all_planted_recovered"]
    missing = truth_summary(tmp_path / "empty", n_cells=5).iloc[0]
    assert "missing" in missing["status"]


def test_merge_keeps_the_sizes_not_rerun(tmp_path):
    def rows(n_cells, wall):
        return pd.DataFrame({"n_cells": n_cells, "rule": ["a", "b"], "wall_s": wall})

    path = tmp_path / "scale.tsv"
    pd.concat([rows(10, 1.0), rows(100, 2.0)]).to_csv(path, sep="\t", index=False)
    merged = merge_table(path, rows(100, 9.0))
    assert merged["n_cells"].tolist() == [10, 10, 100, 100]
    assert merged["wall_s"].tolist() == [1.0, 1.0, 9.0, 9.0]
    assert merge_table(tmp_path / "new.tsv", rows(5, 1.0))["n_cells"].tolist() == [5, 5]


def _table() -> pd.DataFrame:
    rows = []
    for n, factor in ((10_000, 1), (100_000, 10)):
        for rule, wall, rss in (
            ("annotate_cells", 30, 2000),
            ("filter_cells", 5, 900),
            ("check_truth", 2, 100),
        ):
            rows.append(
                {
                    "n_cells": n,
                    "rule": rule,
                    "wall_s": wall * factor,
                    "max_rss_mb": rss * factor,
                    "status": "ok",
                }
            )
        rows.append(
            {
                "n_cells": n,
                "rule": TOTAL,
                "wall_s": 100 * factor,
                "max_rss_mb": 2000 * factor,
                "status": "ok",
            }
        )
        rows.append(
            {
                "n_cells": n,
                "rule": BASELINE,
                "wall_s": 10 * factor,
                "max_rss_mb": 700 * factor,
                "status": "ok",
            }
        )
    return pd.DataFrame(rows)


def test_heavy_rules_and_the_figure(tmp_path):
    table = _table()
    assert heavy_rules(table, n=2) == ["annotate_cells", "filter_cells"]
    fig = plot_scale(table, tmp_path / "scale.png")
    assert (tmp_path / "scale.png").stat().st_size > 10_000
    wall, memory = fig.axes[:2]
    assert wall.get_xscale() == memory.get_xscale() == "log"
    assert wall.get_yscale() == "log"
    labels = {line.get_label(): line for line in wall.get_lines()}
    assert {"annotate_cells", "filter_cells", "check_truth", TOTAL, BASELINE} <= set(labels)
    np.testing.assert_array_equal(labels[BASELINE].get_ydata(), [10, 100])
    np.testing.assert_array_equal(labels["annotate_cells"].get_xdata(), [10_000, 100_000])
    # the end-to-end line is a wall time only
    assert TOTAL not in {line.get_label() for line in memory.get_lines()}


def test_run_measured_reports_peak_rss_and_a_capped_child(tmp_path):
    # this process holds 800 MB while it starts the child: a peak taken from a plain
    # fork + exec would report at least that (Linux carries the forking process's
    # high-water RSS into the child's ru_maxrss), whatever the child itself used
    held = np.ones(800 * 2**20 // 8)
    grow = "import numpy as np; a = np.ones(300 * 2**20 // 8); print(a.sum())"
    ok = scale_bench.run_measured([sys.executable, "-c", grow], log=tmp_path / "ok.out")
    assert held.sum() == held.size
    assert ok.status == "ok"
    assert ok.returncode == 0
    assert 300 < ok.max_rss_mb < 600  # the 300 MB array, interpreter and numpy
    capped = scale_bench.run_measured(
        [sys.executable, "-c", "import numpy as np; a = np.ones(4 * 2**30 // 8)"],
        log=tmp_path / "capped.out",
        cap_mb=1500,
    )
    assert capped.returncode != 0
    assert capped.status == "out of memory (address space capped at 1500 MB)"
    failed = scale_bench.run_measured(
        [sys.executable, "-c", "raise SystemExit(3)"], log=tmp_path / "f.out"
    )
    assert failed.status.startswith("failed (exit 3")


def test_run_config_declares_the_cohort_with_the_default_config(tmp_path):
    files = {
        name: _write(tmp_path / "cache" / f"{name}.x", "x")
        for name in ("h5ad", "label_map", "truth")
    }
    spec = ScaleSpec(n_cells=10_000)
    path = scale_bench.write_run_config(tmp_path / "run", files, spec)
    config = yaml.safe_load(path.read_text())
    default = yaml.safe_load((scale_bench._ROOT / "config" / "config.yaml").read_text())
    assert config["datasets"] == "config/datasets.tsv"
    assert config["screen"]["enabled"] is True
    assert config["seed"] == default["seed"]
    assert config["association"] == default["association"]
    assert all(Path(p).is_file() for p in config["signatures"]["gmt"] + config["screen"]["gmt"])
    assert Path(config["targets"]["table"]).is_file()
    sheet = pd.read_csv(tmp_path / "run" / "config" / "datasets.tsv", sep="\t").iloc[0]
    assert sheet["dataset"] == "scale_10000"
    assert sheet["path"] == str(files["h5ad"].resolve())
    assert sheet["truth"] == str(files["truth"].resolve())
    assert sheet["cell_type_column"] == "author_cell_type"
    tenx = {**files, "tenx": tmp_path / "10x", "tenx_cells": tmp_path / "10x_cells.tsv"}
    scale_bench.write_run_config(tmp_path / "run10x", tenx, spec, data_format="10x_mtx")
    sheet = pd.read_csv(tmp_path / "run10x" / "config" / "datasets.tsv", sep="\t").iloc[0]
    assert (sheet["format"], sheet["path"]) == ("10x_mtx", str((tmp_path / "10x").resolve()))
    assert sheet["cell_table"] == str((tmp_path / "10x_cells.tsv").resolve())
    assert sheet["cell_id_column"] == "barcode"


def test_fit_resources_covers_every_measurement_with_margin():
    # peak RSS = 500 + 10 * input_mb, wall time = 60 s + 0.6 s per MB, at three sizes
    table = pd.DataFrame(
        {
            "n_cells": [10_000, 20_000, 100_000, 10_000, 20_000, 100_000],
            "rule": ["big"] * 3 + ["small"] * 3,
            "input_mb": [200.0, 400.0, 2000.0, 0.02, 0.03, 0.02],
            "max_rss_mb": [2500.0, 4500.0, 20_500.0, 110.0, 120.0, 115.0],
            "wall_s": [180.0, 300.0, 1260.0, 2.0, 2.5, 2.0],
            "status": "ok",
        }
    )
    extra = pd.DataFrame(
        [
            {
                "n_cells": 10_000,
                "rule": BASELINE,
                "input_mb": 9.0,
                "max_rss_mb": 1e6,
                "wall_s": 1.0,
                "status": "ok",
            }
        ]
    )
    fitted = fit_resources(
        pd.concat([table, extra]), mem_margin=1.25, time_margin=3.0, min_mem_mb=500
    ).set_index("rule")
    assert list(fitted.index) == ["big", "small"]  # the baseline is no rule
    big = fitted.loc["big"]
    assert big["mem_mb_per_input_mb"] == pytest.approx(12.5)  # 10 x 1.25
    assert big["mem_base_mb"] == 700  # 1.25 x 500 = 625, rounded up to 100 MB
    assert big["runtime_min_per_input_mb"] == pytest.approx(0.03)  # 0.01 min/MB x 3
    assert big["runtime_base_min"] == 10  # 3 x 1 min = 3 min, raised to the floor
    for _, row in table[table["rule"] == "big"].iterrows():
        declared = big["mem_base_mb"] + big["mem_mb_per_input_mb"] * row["input_mb"]
        assert declared >= 1.25 * row["max_rss_mb"]
    small = fitted.loc["small"]  # no size dependence worth a slope: the floor
    assert (small["mem_mb_per_input_mb"], small["mem_base_mb"]) == (0.0, 500)
    assert "10,000, 20,000, 100,000" in big["source"]
