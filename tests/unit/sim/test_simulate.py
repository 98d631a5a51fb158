"""cd8exo.simulate: determinism, the author-like layout, and the planted signal recovered directly."""

from __future__ import annotations

import dataclasses
import inspect
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import pytest
from scipy import sparse, stats

from cd8exo.io.tables import read_gmt
from cd8exo.sim import demo
from cd8exo.sim.cohort import (
    AUTHOR_LABELS,
    CohortSpec,
    SignalSpec,
    label_map,
    simulate_cohort,
    simulate_from_specs,
)
from cd8exo.sim.demo import DEMO_SEED, DEMO_SEED_B, build_demo, write_cohort
from cd8exo.sim.profiles import HOUSEKEEPING_GENES, MARKER_GENES, MITOCHONDRIAL_GENES
from cd8exo.vocabulary import CELL_TYPES

ROOT = Path(__file__).resolve().parents[3]
RESOURCES = ROOT / "resources"
DEMO = RESOURCES / "demo"

ACTIVATION = [
    "Chu2023_CD8_c2_Teff",
    "Cytotoxic_cells_Danaher2017",
    "Exosome_biogenesis_core_curated",
]
INDEPENDENT = ["Tcell_exhaustion_SignatuR"]
NULL_TARGETS = ["CD274", "FAS", "TNFRSF10A", "TNFRSF10B", "NOTCH1", "HES1", "ACTB", "GAPDH", "PGK1"]
# the marker genes the brief asks for by name
MARKERS = [
    "CD3D",
    "CD3E",
    "CD3G",
    "CD2",
    "CD8A",
    "CD8B",
    "TRAC",
    "TRBC1",
    "TRBC2",
    "CD4",
    "FOXP3",
    "NKG7",
    "KLRD1",
    "NCR1",
    "FCGR3A",
    "MS4A1",
    "CD19",
    "CD79A",
    "MZB1",
    "JCHAIN",
    "CD14",
    "LYZ",
    "CD68",
    "COL1A1",
    "DCN",
    "PECAM1",
    "VWF",
    "MIA",
    "PMEL",
    "MLANA",
    "TYR",
    "SOX10",
]


@pytest.fixture(scope="module")
def signatures():
    return read_gmt(RESOURCES / "gene_sets" / "senders.gmt")


@pytest.fixture(scope="module")
def pool():
    table = pd.read_csv(RESOURCES / "genome" / "gencode_v48_genes_homo_sapiens.csv.gz", header=None)
    return table.loc[(table[4] == "protein_coding") & (table[1] != table[0]), 1].tolist()


def simulate(signatures, pool, **kwargs):
    params = {
        "n_patients": 10,
        "n_cells": 2000,
        "n_background_genes": 300,
        "signatures": signatures,
        "activation_signatures": ACTIVATION,
        "independent_signatures": INDEPENDENT,
        "null_targets": NULL_TARGETS,
        "extra_genes": ["EPCAM"],
        "background_pool": pool,
        "effect_size": 0.6,
        "rng": 1,
        "name": "unit",
    }
    return simulate_cohort(**(params | kwargs))


@pytest.fixture(scope="module")
def cohort(signatures, pool):
    return simulate(signatures, pool)


def assert_same_cohort(a, b):
    assert (a.adata.X != b.adata.X).nnz == 0
    pd.testing.assert_frame_equal(a.adata.obs, b.adata.obs)
    pd.testing.assert_index_equal(a.adata.var_names, b.adata.var_names)
    pd.testing.assert_frame_equal(a.truth, b.truth)
    pd.testing.assert_frame_equal(a.patients, b.patients)


def test_same_seed_gives_identical_data(signatures, pool):
    small = {"n_patients": 6, "n_cells": 600, "n_background_genes": 100}
    first = simulate(signatures, pool, rng=3, **small)
    assert_same_cohort(first, simulate(signatures, pool, rng=3, **small))
    # a Generator seeded the same way gives the same cohort as the integer seed
    assert_same_cohort(first, simulate(signatures, pool, rng=np.random.default_rng(3), **small))


def test_different_seed_gives_different_data(signatures, pool):
    small = {"n_patients": 6, "n_cells": 600, "n_background_genes": 100}
    a = simulate(signatures, pool, rng=3, **small)
    b = simulate(signatures, pool, rng=4, **small)
    assert not np.allclose(a.patients["activation"], b.patients["activation"])
    assert set(a.adata.var_names) != set(b.adata.var_names)  # other background genes
    assert not a.adata.obs_names.equals(b.adata.obs_names)  # other barcodes


def test_obs_is_author_like(cohort):
    adata = cohort.adata
    assert list(adata.obs.columns) == ["donor_id", "sample_id", "author_cell_type"]
    assert list(adata.obs["author_cell_type"].cat.categories) == list(AUTHOR_LABELS)
    assert set(adata.obs["author_cell_type"]) == set(AUTHOR_LABELS)  # all nine present
    assert list(adata.obs["donor_id"].cat.categories) == [f"P{i:02d}" for i in range(1, 11)]
    assert (
        adata.obs["sample_id"].astype(str) == adata.obs["donor_id"].astype(str) + "_tumour"
    ).all()
    assert adata.obs_names.is_unique
    assert adata.obs_names[0].startswith("P01_tumour_")
    # the label map covers every label and maps onto the fixed vocabulary
    table = label_map()
    assert list(table.columns) == ["label", "cell_type"]
    assert set(table["label"]) == set(AUTHOR_LABELS)
    assert set(table["cell_type"]) <= set(CELL_TYPES)
    assert dict(zip(table["label"], table["cell_type"], strict=True))["T cells CD8+"] == "CD8_T"
    assert dict(zip(table["label"], table["cell_type"], strict=True))["Cancer cells"] == "malignant"


def test_bundled_label_map_matches(tmp_path):
    pd.testing.assert_frame_equal(pd.read_csv(DEMO / "label_map.tsv", sep="\t"), label_map())


def test_every_requested_gene_is_present_once(cohort, signatures, pool):
    var = cohort.adata.var_names
    assert var.is_unique
    requested = set().union(*signatures.values()) | {"PLP2", "CXCL9", "CXCL10", "STAT1", "EPCAM"}
    assert set(MARKERS) <= set(MARKER_GENES)
    requested |= set(NULL_TARGETS) | set(MARKER_GENES) | set(MITOCHONDRIAL_GENES)
    requested |= set(HOUSEKEEPING_GENES)
    assert requested <= set(var)
    assert len(MITOCHONDRIAL_GENES) == 13
    assert var.str.startswith("MT-").sum() == 13
    background = set(var) - requested
    assert len(background) == 300
    assert background <= set(pool)  # the rest comes from the pool


def test_counts_are_nonnegative_integers_in_csr_float32(cohort):
    X = cohort.adata.X
    assert sparse.isspmatrix_csr(X)
    assert X.dtype == np.float32
    assert X.data.min() > 0
    np.testing.assert_array_equal(X.data, np.rint(X.data))


def qc_metrics(adata):
    counts = np.asarray(adata.X.sum(axis=1)).ravel()
    mt = np.asarray(adata[:, adata.var_names.str.startswith("MT-")].X.sum(axis=1)).ravel()
    genes = np.diff(adata.X.indptr)
    return counts, mt / counts, genes


def test_depth_mitochondria_and_low_quality_cells(cohort):
    adata = cohort.adata
    counts, pct_mt, genes = qc_metrics(adata)
    low = adata.obs_names.isin(adata.uns["simulation"]["low_quality_cells"])
    assert 0.015 < low.mean() < 0.05  # ~3%
    assert 2000 < np.median(counts[~low]) < 4000
    assert 0.02 < np.median(pct_mt[~low]) < 0.06
    # low-quality cells: high MT fraction and few genes (the demo test checks < 200 genes)
    assert (pct_mt[low] > 0.2).all()
    assert (pct_mt[~low] < 0.2).all()
    assert np.median(genes[low]) < 0.5 * np.median(genes[~low])


def test_composition(cohort):
    obs = cohort.adata.obs
    fractions = obs["author_cell_type"].value_counts(normalize=True)
    assert 0.09 < fractions["T cells CD8+"] < 0.16
    assert 0.33 < fractions["Cancer cells"] < 0.47
    cd8 = obs[obs["author_cell_type"] == "T cells CD8+"]["donor_id"].value_counts()
    patients = cohort.patients.set_index("patient")
    assert patients["low_cd8"].sum() == 1
    assert (cd8[patients.index[patients["low_cd8"]]] < 10).all()
    assert (cd8[patients.index[~patients["low_cd8"]]] >= 10).all()
    pd.testing.assert_series_equal(
        cd8.reindex(patients.index), patients["n_cd8_t"], check_names=False
    )
    # proportions vary between patients
    per_patient = pd.crosstab(obs["donor_id"], obs["author_cell_type"], normalize="index")
    assert per_patient["Cancer cells"].std() > 0.02


def test_latents_are_standardised_and_uncorrelated(cohort):
    a = cohort.patients["activation"].to_numpy()
    e = cohort.patients["independent"].to_numpy()
    np.testing.assert_allclose([a.mean(), a.std(), e.mean(), e.std()], [0, 1, 0, 1], atol=1e-12)
    assert abs(np.corrcoef(a, e)[0, 1]) < 1e-12
    # evenly spread: sorted levels lie close to a straight line over a wide range
    assert np.corrcoef(np.sort(a), np.arange(a.size))[0, 1] > 0.98
    assert np.ptp(a) > 2.5


def patient_log_expression(adata, genes, label):
    """Per-patient mean over cells of the mean ln(CP10k + 1) of ``genes`` in cells with ``label``."""
    cells = adata[adata.obs["author_cell_type"] == label]
    X = cells.X.toarray()
    logx = np.log1p(X / X.sum(axis=1, keepdims=True) * 1e4)
    idx = cells.var_names.get_indexer(genes)
    per_cell = pd.Series(logx[:, idx].mean(axis=1), index=cells.obs_names)
    return per_cell.groupby(cells.obs["donor_id"].to_numpy()).mean()


def patient_pseudobulk(adata, gene, label):
    """Per-patient ln(CPM) of ``gene`` in the summed counts of cells with ``label``."""
    cells = adata[adata.obs["author_cell_type"] == label]
    donors = cells.obs["donor_id"].astype(str).to_numpy()
    total = pd.Series(np.asarray(cells.X.sum(axis=1)).ravel()).groupby(donors).sum()
    gene_counts = pd.Series(cells[:, gene].X.toarray().ravel()).groupby(donors).sum()
    return np.log((gene_counts + 0.5) / total * 1e6)


def test_planted_signal_is_recoverable(cohort, signatures):
    adata = cohort.adata
    patients = cohort.patients.set_index("patient")
    kept = patients.index[~patients["low_cd8"]]
    a, e = patients.loc[kept, "activation"], patients.loc[kept, "independent"]
    activation_genes = sorted(set().union(*(signatures[s] for s in ACTIVATION)))
    exhaustion_genes = signatures["Tcell_exhaustion_SignatuR"]

    act = patient_log_expression(adata, activation_genes, "T cells CD8+").loc[kept]
    exh = patient_log_expression(adata, exhaustion_genes, "T cells CD8+").loc[kept]
    assert stats.spearmanr(act, a)[0] > 0.8
    assert stats.spearmanr(exh, e)[0] > 0.7  # the independent signal is there ...
    # ... and unrelated to activation: regress both on (a_p, e_p); the planted 0.6 shows up as
    # ~0.5 on this log1p scale (seeds 1-12 gave 0.41-0.61 for planted, |coef| < 0.09 for unplanted)
    design = np.column_stack([np.ones(a.size), a, e])
    act_on_a, act_on_e = np.linalg.lstsq(design, act.to_numpy(), rcond=None)[0][1:]
    exh_on_a, exh_on_e = np.linalg.lstsq(design, exh.to_numpy(), rcond=None)[0][1:]
    assert act_on_a > 0.3
    assert abs(act_on_e) < 0.15
    assert exh_on_e > 0.3
    assert abs(exh_on_a) < 0.15

    def slope(gene, label="Cancer cells"):
        y = patient_pseudobulk(adata, gene, label).loc[kept]
        return np.polyfit(a, y, 1)[0], stats.spearmanr(y, a)[0]

    # planted effect 0.6 per SD of a_p on the log scale
    plp2_slope, plp2_rho = slope("PLP2")
    assert -0.9 < plp2_slope < -0.35
    assert plp2_rho < -0.6
    for gene in ("CXCL9", "CXCL10", "STAT1"):
        gene_slope, gene_rho = slope(gene)
        assert 0.35 < gene_slope < 0.9, gene
        assert gene_rho > 0.5, gene
    # housekeeping genes and unplanted targets do not respond
    for gene in ("ACTB", "GAPDH", "PGK1", "NOTCH1", "FAS"):
        assert abs(slope(gene)[0]) < 0.2, gene
    # the targets respond only in malignant cells (myeloid cells express CXCL9/10 highly)
    assert abs(slope("CXCL10", label="Myeloid")[0]) < 0.2


def test_truth_table(cohort, signatures):
    truth = cohort.truth
    assert list(truth.columns) == ["dataset", "signature", "target", "expected_sign"]
    assert (truth["dataset"] == "unit").all()
    targets = ["PLP2", "CXCL9", "CXCL10", "STAT1", *NULL_TARGETS]
    assert len(truth) == len(signatures) * len(targets)
    assert set(truth["target"]) == set(targets)
    sign = truth.set_index(["signature", "target"])["expected_sign"]
    for signature in ACTIVATION:
        assert sign[signature, "PLP2"] == -1
        assert [sign[signature, t] for t in ("CXCL9", "CXCL10", "STAT1")] == [1, 1, 1]
        assert (sign.loc[signature].loc[NULL_TARGETS] == 0).all()
    assert (sign.loc["Tcell_exhaustion_SignatuR"] == 0).all()
    assert (truth["expected_sign"] != 0).sum() == 3 * 4


def test_gene_in_activation_and_independent_signature_is_an_error(signatures, pool):
    clashing = dict(signatures) | {"Tcell_exhaustion_SignatuR": ["PDCD1", "GZMB"]}  # GZMB: Danaher
    with pytest.raises(ValueError, match=r"GZMB.*both an activation signature"):
        simulate(clashing, pool)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"activation_signatures": ["no_such_set"]}, "not in `signatures`"),
        ({"positive_targets": ["PLP2"]}, "both negative and positive targets"),
        ({"n_background_genes": 10**6}, "background pool has"),
        ({"low_cd8_patients": 8}, "low_cd8_patients=8"),
        ({"n_cells": 100}, "too few"),
    ],
)
def test_bad_input_is_a_clear_error(signatures, pool, kwargs, match):
    with pytest.raises(ValueError, match=match):
        simulate(signatures, pool, **kwargs)


def test_write_cohort_round_trip(tmp_path, signatures, pool):
    cohort = simulate(signatures, pool, n_patients=5, n_cells=500, n_background_genes=50, rng=9)
    paths = write_cohort(cohort, tmp_path)
    assert {p.name for p in tmp_path.iterdir()} == {"unit.h5ad", "truth.tsv", "patients.tsv"}
    back = ad.read_h5ad(paths["h5ad"])
    assert (back.X != cohort.adata.X).nnz == 0
    assert back.X.dtype == np.float32
    pd.testing.assert_frame_equal(back.obs, cohort.adata.obs)
    assert list(back.uns["simulation"]["low_quality_cells"]) == list(
        cohort.adata.uns["simulation"]["low_quality_cells"]
    )
    assert back.uns["simulation"]["seed"] == 9
    pd.testing.assert_frame_equal(pd.read_csv(paths["truth"], sep="\t"), cohort.truth)
    # existing outputs are never replaced silently
    with pytest.raises(FileExistsError, match="overwrite=True"):
        write_cohort(cohort, tmp_path)
    write_cohort(cohort, tmp_path, tables_prefix="unit.", overwrite=True)
    assert (tmp_path / "unit.truth.tsv").is_file()
    assert not list(tmp_path.glob(".*"))  # no temporary files left behind


def test_specs_give_the_cohort_of_the_keyword_arguments(signatures, pool):
    small = {"n_patients": 6, "n_cells": 600, "n_background_genes": 100, "rng": 3}
    correlated = {"correlated_targets": ["IDO1"], "target_correlation": -0.5}
    for extra in ({}, correlated):
        by_keywords = simulate(signatures, pool, **small, **extra)
        cohort = CohortSpec(
            n_patients=6,
            n_cells=600,
            n_background_genes=100,
            extra_genes=["EPCAM"],
            background_pool=pool,
            name="unit",
        )
        signal = SignalSpec(
            signatures=signatures,
            activation_signatures=ACTIVATION,
            independent_signatures=INDEPENDENT,
            null_targets=NULL_TARGETS,
            effect_size=0.6,
            **extra,
        )
        by_specs = simulate_from_specs(cohort=cohort, signal=signal, rng=3)
        assert_same_cohort(by_keywords, by_specs)
        assert by_keywords.adata.uns["simulation"].keys() == by_specs.adata.uns["simulation"].keys()


def test_keyword_arguments_are_the_spec_fields_with_the_same_defaults():
    keywords = dict(inspect.signature(simulate_cohort).parameters)
    assert keywords.pop("rng").default is inspect.Parameter.empty
    fields = {f.name: f for spec in (CohortSpec, SignalSpec) for f in dataclasses.fields(spec)}
    assert keywords.keys() == fields.keys()
    for name, parameter in keywords.items():
        assert parameter.kind is inspect.Parameter.KEYWORD_ONLY
        default, factory = fields[name].default, fields[name].default_factory
        if factory is not dataclasses.MISSING:  # a mutable default (target_sets: {})
            default = factory()
        expected = inspect.Parameter.empty if default is dataclasses.MISSING else default
        assert parameter.default == expected, name


def test_specs_store_tuples_and_resolve_the_default_effects():
    signal = SignalSpec(
        signatures={"a": ["GZMB", "PRF1"]},
        activation_signatures=["a"],
        independent_signatures=iter([]),
        effect_size=0.4,
        correlated_effect_size=-1.0,
    )
    assert signal.signatures == {"a": ("GZMB", "PRF1")}
    assert signal.activation_signatures == ("a",)
    assert signal.independent_signatures == ()
    assert signal.independent_effect == 0.4  # effect_size when not given
    assert signal.correlated_effect == -1.0
    assert CohortSpec(background_pool=["X", "Y"]).background_pool == ("X", "Y")
    with pytest.raises(dataclasses.FrozenInstanceError):
        signal.effect_size = 1.0


def test_demo_cli_defaults_to_the_repository_resources():
    # regression: the default pointed at workflow/resources/ after the move into sim/
    assert demo._RESOURCES == RESOURCES
    assert (demo._RESOURCES / "gene_sets" / "senders.gmt").is_file()


@pytest.fixture(scope="module")
def regenerated():
    return build_demo(RESOURCES, seed=DEMO_SEED, seed_b=DEMO_SEED_B)


@pytest.mark.parametrize(
    ("index", "h5ad", "tables_prefix", "n_patients"),
    [(0, "demo_cohort.h5ad", "", 16), (1, "demo_cohort_b.h5ad", "demo_cohort_b.", 24)],
)
def test_bundled_demo_equals_a_fresh_regeneration(
    regenerated, index, h5ad, tables_prefix, n_patients
):
    fresh = regenerated[index]
    bundled = ad.read_h5ad(DEMO / h5ad)
    assert fresh.name == Path(h5ad).stem
    assert bundled.shape == fresh.adata.shape
    np.testing.assert_array_equal(bundled.X.indptr, fresh.adata.X.indptr)
    np.testing.assert_array_equal(bundled.X.indices, fresh.adata.X.indices)
    np.testing.assert_array_equal(bundled.X.data, fresh.adata.X.data)
    pd.testing.assert_frame_equal(bundled.obs, fresh.adata.obs)
    pd.testing.assert_index_equal(bundled.var_names, fresh.adata.var_names)
    pd.testing.assert_frame_equal(
        pd.read_csv(DEMO / f"{tables_prefix}truth.tsv", sep="\t"), fresh.truth
    )
    pd.testing.assert_frame_equal(
        pd.read_csv(DEMO / f"{tables_prefix}patients.tsv", sep="\t"),
        fresh.patients,
        check_exact=False,
        atol=1e-6,
    )
    assert fresh.patients.shape[0] == n_patients


def test_bundled_demo_meets_its_specification():
    total = sum(p.stat().st_size for p in DEMO.iterdir() if p.is_file())
    # 8.1 MB before the cargo miRNAs' target-set genes (~1,180 per cohort) were added; 10.7 MiB after
    assert total < 12 * 1024**2
    demo = ad.read_h5ad(DEMO / "demo_cohort.h5ad", backed="r")
    assert demo.obs["donor_id"].nunique() >= 12
    assert demo.n_obs >= 4000
    assert demo.n_vars >= 2000 + 100  # background genes plus the requested ones
    demo_b = ad.read_h5ad(DEMO / "demo_cohort_b.h5ad", backed="r")
    assert demo_b.obs["donor_id"].nunique() == 24
    assert demo_b.uns["simulation"]["effect_size"] < demo.uns["simulation"]["effect_size"]
    # a standard QC (>= 200 genes, < 20% mitochondrial reads) removes exactly the low-quality cells
    counts, pct_mt, genes = qc_metrics(demo.to_memory())
    low = demo.obs_names.isin(demo.uns["simulation"]["low_quality_cells"])
    np.testing.assert_array_equal((genes < 200) | (pct_mt >= 0.2), low)
    assert 2000 < np.median(counts[~low]) < 4000
    readme = (DEMO / "README.md").read_text()
    assert "SIMULATED" in readme
    assert "python -m cd8exo.sim.demo --out resources/demo" in readme
    assert f"--seed {DEMO_SEED}" in readme
    assert f"--seed-b {DEMO_SEED_B}" in readme
