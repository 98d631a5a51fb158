"""Unit tests of cd8exo.identity on seeded synthetic tumours with planted answers.

The synthetic tumour (``make_tumour``) is built here in code: Poisson counts for CD8 and
CD4 T cells, NK cells, gamma-delta T cells, B cells, myeloid cells, fibroblasts,
endothelial cells, normal epithelial cells and malignant cells. Every type has its own
programme of 30 background genes (so the types form clusters) plus the real marker genes
of ``resources/markers``. Background genes sit on synthetic chromosomes chr1..chr8 (300
genes each); the malignant cells carry planted copy-number changes (a gain of the first
half of chr3, a loss of chr5, a gain of the second half of chr7), the normal epithelial
cells share their lineage markers but none of the changes. CD8 T cells express CD8A/CD8B
at the low detection rates of 10x tumour data (so single cells often miss them) and the
effector programme; NK cells express the effector programme and NK markers but no CD3 or
CD8.
"""

from __future__ import annotations

import itertools
import logging
from pathlib import Path

import anndata as ad
import matplotlib as mpl
import numpy as np
import pandas as pd
import pytest
import scanpy as sc
import scipy.sparse as sp

mpl.use("Agg")

from cd8exo.cells import identity
from cd8exo.cells.identity.cnv import CNV_EXCLUDED_GENES, _gene_positions_frame
from cd8exo.cells.identity.graph import _otsu
from cd8exo.pl.cells import cnv_heatmap

ROOT = Path(__file__).resolve().parents[4]
MARKERS = ROOT / "resources" / "markers"

CHROMOSOMES = [f"chr{i}" for i in range(1, 9)]
GENES_PER_CHROMOSOME = 300
PROGRAMME_SIZE = 30

# Per-cell expected counts of marker genes at the median library size (3000 UMI).
# Values near 0.1-0.3 give the drop-out rates of sparse 10x tumour data.
T_GENES = {"CD3D": 1.5, "CD3E": 0.8, "CD3G": 0.4, "CD2": 0.8, "TRAC": 1.5, "TRBC2": 1.0}
CYTOTOXIC = {"GZMA": 1.0, "GZMB": 1.0, "PRF1": 0.5, "NKG7": 1.5, "CCL5": 2.0, "GZMK": 0.5}
TYPE_MARKERS: dict[str, dict[str, float]] = {
    "CD8_T": {**T_GENES, "CD8A": 0.3, "CD8B": 0.2, **CYTOTOXIC, "PTPRC": 1.0, "CD52": 1.0},
    "CD4_T": {**T_GENES, "CD4": 0.3, "CD40LG": 0.3, "FOXP3": 0.2, "IL7R": 1.0, "PTPRC": 1.0},
    "gdT": {**T_GENES, "TRDC": 1.5, "TRGC1": 1.0, "TRGC2": 0.5, **CYTOTOXIC, "PTPRC": 1.0},
    "NK": {
        "KLRD1": 1.5,
        "NCR1": 0.5,
        "FCGR3A": 1.0,
        "GNLY": 2.0,
        **CYTOTOXIC,
        "PTPRC": 1.0,
        "CD2": 0.3,
    },
    "B": {"MS4A1": 1.5, "CD19": 0.5, "CD79A": 2.0, "PTPRC": 1.0, "CD52": 1.0, "CXCR4": 1.0},
    "myeloid": {"LAPTM5": 2.0, "SRGN": 2.0, "PTPRC": 1.0, "CXCR4": 1.0, "LYZ": 3.0},
    "fibroblast": {"COL1A1": 3.0, "COL1A2": 3.0, "COL3A1": 3.0, "DCN": 2.0, "LUM": 2.0, "FAP": 0.5},
    "endothelial": {"PECAM1": 2.0, "VWF": 2.0, "CDH5": 1.0, "CLDN5": 1.0, "PLVAP": 1.5},
    "epithelial": {"KRT8": 3.0, "KRT18": 3.0, "KRT19": 2.0, "EPCAM": 1.5, "ELF3": 1.0},
    "malignant": {"KRT8": 3.0, "KRT18": 3.0, "KRT19": 2.0, "EPCAM": 1.5, "ELF3": 1.0},
}
COUNTS = {
    "CD8_T": 60,
    "CD4_T": 70,
    "gdT": 15,
    "NK": 20,
    "B": 30,
    "myeloid": 50,
    "fibroblast": 60,
    "endothelial": 40,
    "epithelial": 30,
    "malignant": 120,
}
#: Planted copy-number changes of the malignant cells: chromosome, part, fold change.
PLANTED_CNV = [("chr3", "first", 2.0), ("chr5", "all", 0.5), ("chr7", "second", 1.6)]


def _marker_names() -> list[str]:
    names = {g for markers in TYPE_MARKERS.values() for g in markers}
    return sorted(names)


def make_tumour(
    *, seed: int = 0, cd8_marker_scale: float = 1.0, counts: dict[str, int] | None = None
) -> ad.AnnData:
    """A seeded synthetic tumour; ``obs["truth"]`` holds the planted cell type.

    ``X`` is ln(CP10k+1), ``layers["counts"]`` the counts, ``uns["gene_positions"]`` the
    positions of the background genes. ``cd8_marker_scale`` scales CD8A/CD8B in CD8 T
    cells (0 = never detected); ``counts`` overrides the number of cells per type.
    """
    n_cells = {**COUNTS, **(counts or {})}
    rng = np.random.default_rng(seed)
    background = [f"BG{i:04d}" for i in range(len(CHROMOSOMES) * GENES_PER_CHROMOSOME)]
    markers = _marker_names()
    genes = background + markers
    n_bg = len(background)
    base = rng.lognormal(mean=0.0, sigma=1.0, size=n_bg)
    base = base / base.sum() * 2500  # expected background counts per cell at 3000 UMI
    programmes = {t: rng.choice(n_bg, size=PROGRAMME_SIZE, replace=False) for t in COUNTS}
    types = [t for t in COUNTS if n_cells[t] > 0]
    chromosome = np.repeat(CHROMOSOMES, GENES_PER_CHROMOSOME)
    position = np.tile(np.arange(GENES_PER_CHROMOSOME), len(CHROMOSOMES))
    cnv_factor = np.ones(n_bg)
    for chrom, part, fold in PLANTED_CNV:
        on = chromosome == chrom
        if part == "first":
            on &= position < GENES_PER_CHROMOSOME // 2
        elif part == "second":
            on &= position >= GENES_PER_CHROMOSOME // 2
        cnv_factor[on] = fold
    blocks, truth = [], []
    for t in types:
        profile = np.concatenate([base, np.zeros(len(markers))])
        programme = programmes[t]
        # the epithelial lineage shares its programme with the tumour it gave rise to
        if t == "malignant":
            programme = programmes["epithelial"]
        profile[programme] *= 6.0
        for gene, rate in TYPE_MARKERS[t].items():
            profile[n_bg + markers.index(gene)] = rate * (
                cd8_marker_scale if t == "CD8_T" and gene in ("CD8A", "CD8B") else 1.0
            )
        if t == "malignant":
            profile[:n_bg] *= cnv_factor
        n = n_cells[t]
        size = rng.lognormal(mean=0.0, sigma=0.3, size=n)
        lam = np.outer(size, profile)
        blocks.append(rng.poisson(lam).astype(np.float32))
        truth += [t] * n
    counts = sp.csr_matrix(np.vstack(blocks))
    adata = ad.AnnData(
        X=counts.copy(),
        obs=pd.DataFrame(
            {"truth": pd.Categorical(truth), "patient": "P1"},
            index=[f"cell{i:04d}" for i in range(len(truth))],
        ),
        var=pd.DataFrame(index=genes),
    )
    adata.layers["counts"] = counts
    sc.pp.normalize_total(adata, target_sum=1e4)
    sc.pp.log1p(adata)
    adata.uns["gene_positions"] = pd.DataFrame(
        {
            "gene": background,
            "chromosome": chromosome,
            "start": position * 100_000 + 1,
            "end": position * 100_000 + 50_000,
        }
    )
    return adata


def read_cd8_markers() -> pd.DataFrame:
    return pd.concat(
        [
            pd.read_csv(MARKERS / "cd8_identity_markers.tsv", sep="\t"),
            pd.read_csv(MARKERS / "cd8_support_markers.tsv", sep="\t"),
        ],
        ignore_index=True,
    )


def read_lineage_markers() -> pd.DataFrame:
    return pd.read_csv(MARKERS / "malignant_lineage_markers.tsv", sep="\t")


def f1(pred: np.ndarray, true: np.ndarray) -> float:
    tp = int((pred & true).sum())
    if tp == 0:
        return 0.0
    precision, recall = tp / pred.sum(), tp / true.sum()
    return 2 * precision * recall / (precision + recall)


@pytest.fixture(scope="module")
def tumour() -> ad.AnnData:
    return make_tumour(seed=0)


@pytest.fixture(scope="module")
def cd8_calls(tumour) -> pd.DataFrame:
    return identity.call_cd8(tumour, markers=read_cd8_markers(), rng=0)


@pytest.fixture(scope="module")
def malignant_calls(tumour) -> tuple[pd.DataFrame, identity.CNVResult]:
    return identity.call_malignant(
        tumour,
        gene_positions=tumour.uns["gene_positions"],
        lineage_markers=read_lineage_markers(),
        cancer_type="breast",
        rng=0,
        return_cnv=True,
    )


# --------------------------------------------------------------------------- #
# CD8 T cells
# --------------------------------------------------------------------------- #
def test_call_cd8_recovers_planted_cd8_t_cells(tumour, cd8_calls):
    truth = tumour.obs["truth"].to_numpy() == "CD8_T"
    assert cd8_calls.index.equals(tumour.obs_names)
    assert f1(cd8_calls["is_cd8"].to_numpy(), truth) >= 0.95
    called = tumour.obs.loc[cd8_calls["is_cd8"], "truth"].value_counts()
    # cytotoxic NK and gamma-delta T cells, CD4 T and B cells are not CD8 T cells
    assert called.get("NK", 0) == 0
    # gamma-delta T cells among CD8 neighbours can be outvoted; most are excluded
    assert called.get("gdT", 0) <= 0.2 * COUNTS["gdT"]
    assert called.get("CD4_T", 0) <= 2
    assert called.get("B", 0) == 0


def test_call_cd8_t_compartment_holds_the_t_cells_and_nothing_else(tumour, cd8_calls):
    in_t = cd8_calls["t_compartment"].to_numpy()
    truth = tumour.obs["truth"].to_numpy()
    t_like = np.isin(truth, ["CD8_T", "CD4_T", "gdT"])
    assert in_t[t_like].mean() >= 0.95
    assert not in_t[np.isin(truth, ["myeloid", "fibroblast", "endothelial", "malignant"])].any()
    # scores exist exactly inside the compartment
    assert cd8_calls.loc[in_t, "cd8_score"].notna().all()
    assert cd8_calls.loc[~in_t, "cd8_score"].isna().all()
    assert (cd8_calls.loc[in_t, "t_subcluster"] != "").all()


def test_call_cd8_confidence_is_bounded_and_lower_near_the_threshold(cd8_calls):
    confidence = cd8_calls["confidence"]
    assert confidence.between(0, 1).all()
    inside = cd8_calls[cd8_calls["t_compartment"]]
    distance = (inside["cd8_score"] - inside["cd8_threshold"]).abs()
    near = distance <= distance.quantile(0.2)
    far = distance >= distance.quantile(0.8)
    assert inside.loc[near, "confidence"].mean() < inside.loc[far, "confidence"].mean()


def test_call_cd8_dropouts_do_not_decide_a_cell_alone(tumour, cd8_calls):
    """CD8 T cells with no CD8A/CD8B count at all are still called (from their neighbours)."""
    x = tumour[:, ["CD8A", "CD8B"]].layers["counts"].toarray()
    truth = tumour.obs["truth"].to_numpy() == "CD8_T"
    silent = truth & (x.sum(axis=1) == 0)
    assert silent.sum() >= 20  # most planted CD8 T cells miss both genes
    assert cd8_calls["is_cd8"].to_numpy()[silent].mean() >= 0.9


def test_call_cd8_nk_gate_needs_cd3_and_cd8_absent(tumour, cd8_calls):
    truth = tumour.obs["truth"].to_numpy()
    # NK cells share NKG7/GZMB/PRF1 with CD8 T cells but are not called
    assert not cd8_calls["is_cd8"].to_numpy()[truth == "NK"].any()
    # CD8 T cells express NKG7 too: the NK markers alone never exclude them
    nkg7 = tumour[:, "NKG7"].layers["counts"].toarray().ravel() > 0
    cd8_with_nkg7 = (truth == "CD8_T") & nkg7
    assert cd8_with_nkg7.sum() >= 20
    assert cd8_calls["is_cd8"].to_numpy()[cd8_with_nkg7].mean() >= 0.9
    assert not cd8_calls["nk_gated"].to_numpy()[truth == "CD8_T"].any()


def test_call_cd8_is_reproducible_and_leaves_the_input_alone(tumour, cd8_calls):
    before_x = tumour.X.copy()
    before_obs = tumour.obs.copy()
    again = identity.call_cd8(tumour, markers=read_cd8_markers(), rng=0)
    pd.testing.assert_frame_equal(again, cd8_calls)
    assert (before_x != tumour.X).nnz == 0
    pd.testing.assert_frame_equal(tumour.obs, before_obs)
    assert "connectivities" not in tumour.obsp


def test_call_cd8_sorted_cd8_cells_fall_back_to_the_canonical_contrast():
    """With no CD4 T cells the scores are unimodal; Otsu would split CD8 T cells in two."""
    adata = make_tumour(seed=1, cd8_marker_scale=3.0)
    keep = ~adata.obs["truth"].isin(["CD4_T", "gdT", "NK"]).to_numpy()
    adata = adata[keep].copy()
    calls = identity.call_cd8(adata, markers=read_cd8_markers(), rng=0)
    truth = adata.obs["truth"].to_numpy() == "CD8_T"
    assert calls["is_cd8"].to_numpy()[truth].mean() >= 0.9
    assert not calls["is_cd8"].to_numpy()[~truth].any()
    assert calls.loc[calls["t_compartment"], "method"].str.contains("canonical").all()


def test_call_cd8_without_t_cells_calls_none(caplog):
    adata = make_tumour(seed=2)
    adata = adata[~adata.obs["truth"].isin(["CD8_T", "CD4_T", "gdT"]).to_numpy()].copy()
    with caplog.at_level(logging.WARNING, logger="cd8exo.cells"):
        calls = identity.call_cd8(adata, markers=read_cd8_markers(), rng=0)
    assert not calls["is_cd8"].any()
    assert "no CD8 T cells called" in caplog.text


def test_call_cd8_rejects_raw_counts(tumour):
    raw = ad.AnnData(X=tumour.layers["counts"].copy(), obs=tumour.obs.copy(), var=tumour.var)
    with pytest.raises(ValueError, match=r"ln\(CP10k\+1\)"):
        identity.call_cd8(raw, markers=read_cd8_markers(), rng=0)


def test_call_cd8_rejects_a_bad_marker_table(tumour):
    markers = read_cd8_markers()
    with pytest.raises(ValueError, match="lacks the column"):
        identity.call_cd8(tumour, markers=markers.drop(columns="use"), rng=0)
    typo = markers.assign(use=markers["use"].replace({"negative": "negtive"}))
    with pytest.raises(ValueError, match="negtive"):
        identity.call_cd8(tumour, markers=typo, rng=0)


def test_call_cd8_rejects_data_without_marker_symbols(tumour):
    renamed = tumour.copy()
    renamed.var_names = [f"ENSG{i:011d}" for i in range(renamed.n_vars)]
    with pytest.raises(ValueError, match="HGNC symbols"):
        identity.call_cd8(renamed, markers=read_cd8_markers(), rng=0)


def test_otsu_threshold_and_separation():
    values = np.concatenate([np.zeros(50), np.ones(50)])
    threshold, eta = _otsu(values)
    assert threshold == pytest.approx(0.5)
    assert eta == pytest.approx(1.0)
    # a normal distribution separates with eta = 2/pi
    gaussian = np.random.default_rng(0).normal(size=20_000)
    assert _otsu(gaussian)[1] == pytest.approx(2 / np.pi, abs=0.01)


# --------------------------------------------------------------------------- #
# Malignant cells
# --------------------------------------------------------------------------- #
def test_call_malignant_recovers_planted_copy_number_changes(tumour, malignant_calls):
    calls, _ = malignant_calls
    truth = tumour.obs["truth"].to_numpy()
    assert calls.index.equals(tumour.obs_names)
    assert f1(calls["is_malignant"].to_numpy(), truth == "malignant") >= 0.97
    # normal epithelial cells share the lineage markers but not the CNVs
    assert calls["is_malignant"].to_numpy()[truth == "epithelial"].mean() <= 0.05


def test_call_malignant_reference_is_immune_and_stromal(tumour, malignant_calls):
    calls, _ = malignant_calls
    truth = tumour.obs["truth"].to_numpy()
    reference = calls["is_reference"].to_numpy()
    assert not reference[np.isin(truth, ["malignant", "epithelial"])].any()
    assert reference[np.isin(truth, ["myeloid", "fibroblast", "endothelial"])].mean() >= 0.95
    compartments = pd.crosstab(truth, calls["compartment"])
    assert compartments.loc["fibroblast"].idxmax() == "CAF / fibroblast"
    assert compartments.loc["endothelial"].idxmax() == "endothelial"
    assert compartments.loc["myeloid"].idxmax() == "immune"
    assert compartments.loc["malignant"].idxmax() == "lineage"


def test_call_malignant_coherence_separates_clones_from_normal_cells(tumour, malignant_calls):
    calls, _ = malignant_calls
    truth = tumour.obs["truth"].to_numpy()
    coherence = calls["cnv_coherence"].to_numpy()
    assert np.median(coherence[truth == "malignant"]) >= 1.5
    assert np.median(coherence[truth == "epithelial"]) < 1.2
    # the per-cell CNV score is higher in malignant cells than in normal epithelium
    score = calls["cnv_score"].to_numpy()
    assert np.median(score[truth == "malignant"]) > 2 * np.median(score[truth == "epithelial"])


def test_call_malignant_profiles_show_the_planted_gain_and_loss(tumour, malignant_calls):
    _, cnv = malignant_calls
    assert cnv.matrix.shape[0] == tumour.n_obs
    assert list(cnv.chr_pos) == CHROMOSOMES
    starts = [*cnv.chr_pos.values(), cnv.matrix.shape[1]]
    window = dict(zip(CHROMOSOMES, itertools.pairwise(starts), strict=True))
    malignant = tumour.obs["truth"].to_numpy() == "malignant"
    profile = np.asarray(cnv.matrix[malignant].mean(axis=0)).ravel()
    b3, e3 = window["chr3"]
    b5, e5 = window["chr5"]
    assert profile[b3 : b3 + (e3 - b3) // 3].mean() > 0.1  # gain of the first half of chr3
    assert profile[b5:e5].mean() < -0.1  # loss of chr5
    b1, e1 = window["chr1"]
    assert abs(profile[b1:e1].mean()) < 0.05  # chr1 untouched


def test_find_compartments_when_the_tumour_dominates():
    """Regression: with most clusters malignant (9 of 12), the first version compared each
    cluster with the median cluster and found no lineage cluster at all."""
    adata = make_tumour(
        seed=3,
        counts={
            "malignant": 900,
            "CD8_T": 20,
            **dict.fromkeys(("CD4_T", "gdT", "NK", "B", "epithelial"), 0),
            "myeloid": 40,
            "fibroblast": 40,
            "endothelial": 30,
        },
    )
    found = identity.find_compartments(
        adata, markers=read_lineage_markers(), cancer_type="breast", rng=0
    )
    truth = adata.obs["truth"].to_numpy()
    assert (found["compartment"].to_numpy()[truth == "malignant"] == "lineage").mean() >= 0.98
    assert (found["compartment"].to_numpy()[truth == "fibroblast"] == "CAF / fibroblast").all()
    assert (found["compartment"].to_numpy()[truth == "myeloid"] == "immune").all()
    # no lineage markers for gliomas: no lineage compartment, no lineage score
    glioma = identity.find_compartments(
        adata, markers=read_lineage_markers(), cancer_type="glioblastoma", rng=0
    )
    assert "lineage" not in set(glioma["compartment"])
    assert glioma["lineage_score"].isna().all()


def test_call_malignant_without_lineage_markers_uses_the_reference_mask(tumour, malignant_calls):
    truth = tumour.obs["truth"].to_numpy()
    mask = np.isin(truth, ["myeloid", "fibroblast", "endothelial"])
    calls = identity.call_malignant(
        tumour, gene_positions=tumour.uns["gene_positions"], reference_mask=mask, rng=0
    )
    assert f1(calls["is_malignant"].to_numpy(), truth == "malignant") >= 0.95
    assert calls["lineage_score"].isna().all()
    assert (calls["is_reference"].to_numpy() == mask).all()


def test_call_malignant_is_reproducible(tumour, malignant_calls):
    calls, _ = malignant_calls
    again = identity.call_malignant(
        tumour,
        gene_positions=tumour.uns["gene_positions"],
        lineage_markers=read_lineage_markers(),
        cancer_type="breast",
        rng=0,
    )
    pd.testing.assert_frame_equal(again, calls)


def test_call_malignant_leaves_immunoglobulin_loci_out():
    """Regression: plasma cells' IG loci looked like amplifications on chr14/2/22."""
    positions = pd.DataFrame(
        {
            "gene": ["IGHV1-2", "IGKC", "TRBV5-1", "HLA-A", "IGF1", "TRAF1", "BG0001"],
            "chromosome": ["chr14", "chr2", "chr7", "chr6", "chr12", "chr9", "chr1"],
            "start": [1, 1, 1, 1, 1, 1, 1],
            "end": [2, 2, 2, 2, 2, 2, 2],
        }
    )
    table = _gene_positions_frame(positions)
    excluded = table.index.str.match(CNV_EXCLUDED_GENES)
    assert sorted(table.index[excluded]) == ["HLA-A", "IGHV1-2", "IGKC", "TRBV5-1"]


def test_call_malignant_rejects_bad_inputs(tumour):
    positions = tumour.uns["gene_positions"]
    with pytest.raises(ValueError, match="lacks the column"):
        identity.call_malignant(
            tumour,
            gene_positions=positions.drop(columns="start"),
            lineage_markers=read_lineage_markers(),
            rng=0,
        )
    with pytest.raises(ValueError, match="genomic position"):
        identity.call_malignant(
            tumour,
            gene_positions=positions.iloc[:300],
            lineage_markers=read_lineage_markers(),
            rng=0,
        )
    with pytest.raises(ValueError, match=r"lineage_markers .* or an explicit reference_mask"):
        identity.call_malignant(tumour, gene_positions=positions, rng=0)
    with pytest.raises(ValueError, match="Unknown cancer type 'brest'"):
        identity.call_malignant(
            tumour,
            gene_positions=positions,
            lineage_markers=read_lineage_markers(),
            cancer_type="brest",
            rng=0,
        )
    with pytest.raises(ValueError, match="reference cells"):
        identity.call_malignant(
            tumour,
            gene_positions=positions,
            reference_mask=np.zeros(tumour.n_obs, dtype=bool),
            rng=0,
        )


def test_gene_positions_unnamed_columns_and_numeric_checks():
    raw = pd.DataFrame([["A", "1", 10, 20], ["B", "chr2", 5, 9], ["A", "chr3", 1, 2]])
    table = _gene_positions_frame(raw)
    assert table.loc["A", "chromosome"] == "chr1"  # first position kept, prefix added
    assert table.loc["B", "start"] == 5
    bad = pd.DataFrame({"gene": ["A"], "chromosome": ["chr1"], "start": ["x"], "end": [3]})
    with pytest.raises(ValueError, match="non-numeric"):
        _gene_positions_frame(bad)


def test_cnv_heatmap_draws_on_the_given_axes(tumour, malignant_calls):
    import matplotlib.pyplot as plt

    calls, cnv = malignant_calls
    groups = calls["is_malignant"].map({True: "malignant", False: "non-malignant"})
    fig, ax = plt.subplots()
    out = cnv_heatmap(cnv, groups=groups, ax=ax, max_cells=200, rng=0)
    assert out is fig
    image = ax.get_images()[0].get_array()
    assert image.shape[1] == cnv.matrix.shape[1]
    assert 190 <= image.shape[0] <= 210
    labels = [t.get_text() for t in ax.get_yticklabels()]
    assert labels[0].startswith("malignant")
    assert labels[1].startswith("non-malignant")
    # chromosome labels alternate between two rows (a leading newline) so they never collide
    assert [t.get_text().strip() for t in ax.get_xticklabels()] == [c[3:] for c in CHROMOSOMES]
    plt.close(fig)
    again = cnv_heatmap(cnv, groups=groups, max_cells=200, rng=0)
    assert np.array_equal(again.axes[0].get_images()[0].get_array(), image)
    plt.close(again)


# --------------------------------------------------------------------------- #
# Author labels vs inference
# --------------------------------------------------------------------------- #
def _with_author_labels(adata: ad.AnnData) -> ad.AnnData:
    out = adata.copy()
    truth = out.obs["truth"].astype(str)
    out.obs["cell_type"] = truth.map({"CD8_T": "CD8_T", "malignant": "malignant"}).fillna("other")
    out.obs["malignant"] = (truth == "malignant").to_numpy()
    return out


def _inference_inputs(adata: ad.AnnData) -> dict:
    return {
        "cd8_markers": read_cd8_markers(),
        "lineage_markers": read_lineage_markers(),
        "gene_positions": adata.uns["gene_positions"],
        "cancer_type": "breast",
        "rng": 0,
    }


def test_annotate_identity_author_labels_win(tumour):
    labelled = _with_author_labels(tumour)
    # deliberately wrong-looking author labels still win: nothing is inferred
    labelled.obs.loc[labelled.obs_names[:5], "cell_type"] = "CD8_T"
    out = identity.annotate_identity(labelled, author_labels_present=True)
    assert (out["label_source"] == "author").all()
    assert (out["confidence"] == 1.0).all()
    assert out["is_cd8"].sum() == (labelled.obs["cell_type"] == "CD8_T").sum()
    assert (out["is_malignant"].to_numpy() == labelled.obs["malignant"].to_numpy()).all()


def test_annotate_identity_force_inference_and_partial_labels(tumour):
    labelled = _with_author_labels(tumour)
    forced = identity.annotate_identity(
        labelled, author_labels_present=True, force_inference=True, **_inference_inputs(tumour)
    )
    assert (forced["label_source"] == "inferred").all()
    assert forced["confidence"].between(0, 1).all()
    truth = tumour.obs["truth"].to_numpy()
    assert f1(forced["is_cd8"].to_numpy(), truth == "CD8_T") >= 0.9
    assert f1(forced["is_malignant"].to_numpy(), truth == "malignant") >= 0.95
    assert set(forced["cell_type"].cat.categories) >= {"CD8_T", "malignant", "other"}
    assert (forced.loc[forced["is_cd8"], "cell_type"] == "CD8_T").all()
    assert not (forced["is_cd8"] & forced["is_malignant"]).any()

    # GSE72056-like: malignant labels from the authors, CD8 T cells inferred
    partial = identity.annotate_identity(
        labelled,
        author_labels_present={"cd8": False, "malignant": True},
        cd8_markers=read_cd8_markers(),
        rng=0,
    )
    assert (partial["label_source_malignant"] == "author").all()
    assert (partial["label_source_cd8"] == "inferred").all()
    assert (partial["label_source"] == "inferred").all()
    assert partial["cnv_score"].isna().all()
    assert (partial["confidence"] == partial["confidence_cd8"]).all()


def test_annotate_identity_explains_missing_inputs(tumour):
    with pytest.raises(ValueError, match="no 'cell_type' column"):
        identity.annotate_identity(tumour, author_labels_present=True)
    with pytest.raises(ValueError, match="cd8_markers was not given"):
        identity.annotate_identity(tumour, author_labels_present=False, rng=0)
    with pytest.raises(ValueError, match="unknown key"):
        identity.annotate_identity(tumour, author_labels_present={"CD8": True})
    labelled = _with_author_labels(tumour)
    labelled.obs["malignant"] = labelled.obs["malignant"].astype(object)
    labelled.obs.loc[labelled.obs_names[0], "malignant"] = None
    with pytest.raises(ValueError, match="must be boolean"):
        identity.annotate_identity(labelled, author_labels_present=True)


# --------------------------------------------------------------------------- #
# Agreement table
# --------------------------------------------------------------------------- #
def test_agreement_table_known_answer():
    index = [f"c{i}" for i in range(10)]
    author = pd.Series([True] * 4 + [False] * 6, index=index, name="is_cd8")
    inferred = pd.Series(
        [True, True, True, False, True, True, False, False, False, False], index=index
    )
    table = identity.agreement_table(inferred, author)
    row = table.iloc[0]
    assert row["class"] == "is_cd8"
    assert (row["support"], row["n_predicted"], row["true_positive"]) == (4, 5, 3)
    assert row["precision"] == pytest.approx(3 / 5)
    assert row["recall"] == pytest.approx(3 / 4)
    assert row["f1"] == pytest.approx(2 * 0.6 * 0.75 / 1.35)


def test_agreement_table_labels_and_frames():
    index = ["a", "b", "c", "d"]
    author = pd.Series(["CD8_T", "CD8_T", "malignant", "other"], index=index)
    inferred = pd.Series(["CD8_T", "other", "malignant", "malignant"], index=index[::-1][::-1])
    table = identity.agreement_table(inferred, author).set_index("class")
    assert table.loc["CD8_T", "recall"] == pytest.approx(0.5)
    assert table.loc["CD8_T", "precision"] == pytest.approx(1.0)
    assert table.loc["malignant", "precision"] == pytest.approx(0.5)
    assert table.loc["other", "f1"] == pytest.approx(0.0)
    frames = identity.agreement_table(
        pd.DataFrame({"is_cd8": [True, False], "is_malignant": [False, False]}, index=["x", "y"]),
        pd.DataFrame({"is_cd8": [True, True], "is_malignant": [False, False]}, index=["y", "x"]),
    ).set_index("class")
    # aligned by cell id, not by position: x is (True, True), y is (False, True)
    assert frames.loc["is_cd8", "recall"] == pytest.approx(0.5)
    assert np.isnan(frames.loc["is_malignant", "precision"])


def test_agreement_table_rejects_unaligned_inputs():
    with pytest.raises(ValueError, match="share no cell id"):
        identity.agreement_table(pd.Series([True], index=["a"]), pd.Series([True], index=["b"]))
    with pytest.raises(ValueError, match="two Series or two DataFrames"):
        identity.agreement_table(pd.Series([True], index=["a"]), pd.DataFrame({"x": [True]}))
