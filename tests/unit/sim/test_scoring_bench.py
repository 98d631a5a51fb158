"""The scoring benchmark's synthetic data and agreement measures (not its timings)."""

from __future__ import annotations

import numpy as np
import pytest

from cd8exo.sim.bench import BenchSpec, _agreement, load_bench_data, make_bench_data


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
