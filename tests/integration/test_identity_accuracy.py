"""Measured accuracy of the identity calls on real tumours, with the authors' labels hidden.

* Wu et al. 2021 (Nat Genet; GEO GSE176078), breast cancer sample CID4465, 10x, raw UMI
  counts (~660 UMI per cell): inferred CD8 T cells against ``celltype_minor == "T cells
  CD8+"`` and inferred malignant cells against ``celltype_major == "Cancer Epithelial"``.
* Tirosh et al. 2016 (Nature; GEO GSE70630), oligodendroglioma, Smart-seq2, the
  downsampled example of broadinstitute/infercnv: malignant calls against the authors'.

Targets (issue 4): F1 >= 0.8 for CD8 T cells and >= 0.9 for malignant cells. Both malignant
targets are asserted. The CD8 target is not reached on CID4465 with the authors'
``celltype_minor`` as truth (see ``test_wu2021_cd8_t_cells``): the measured value is
asserted as a regression floor. Data provenance: ``/work/shared/reference/PROVENANCE_data.md``.
"""

from __future__ import annotations

from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scanpy as sc
import scipy.io
import scipy.sparse as sp
from shared_data import SHARED_REFERENCE

from cd8exo.cells import identity

ROOT = Path(__file__).resolve().parents[2]
MARKERS = ROOT / "resources" / "markers"
GENE_POSITIONS = ROOT / "resources" / "genome" / "hg38_gencode_v27_gene_pos.txt"
REFERENCE_DATA = SHARED_REFERENCE / "data"
WU2021 = REFERENCE_DATA / "wu2021_CID4465"
TIROSH2016 = REFERENCE_DATA / "tirosh2016_oligodendroglioma"

pytestmark = pytest.mark.skipif(
    not (WU2021.is_dir() and TIROSH2016.is_dir()),
    reason="real test data (/work/shared/reference/data) absent",
)

#: Author classes that are not split into CD8/CD4 (cycling T cells) or that the authors
#: separate from CD8 T cells on NK genes this sample barely detects (NKT, NK).
UNSPLIT_T_CLASSES = ["Cycling T-cells", "NKT cells", "NK cells"]


def read_gene_positions() -> pd.DataFrame:
    return pd.read_csv(
        GENE_POSITIONS, sep="\t", header=None, names=["gene", "chromosome", "start", "end"]
    )


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


def scores(pred: np.ndarray, true: np.ndarray) -> dict[str, float]:
    table = identity.agreement_table(pd.Series(pred, name="x"), pd.Series(true, name="x"))
    return table.iloc[0][["precision", "recall", "f1"]].astype(float).to_dict()


@pytest.fixture(scope="module")
def wu2021() -> ad.AnnData:
    counts = scipy.io.mmread(WU2021 / "matrix.mtx.gz").T.tocsr().astype(np.float32)
    genes = pd.read_csv(WU2021 / "genes.tsv.gz", header=None)[0].astype(str)
    obs = pd.read_csv(WU2021 / "obs.tsv", sep="\t", index_col=0)
    assert counts.shape == (len(obs), len(genes)) == (1564, 29733)
    adata = ad.AnnData(X=counts, obs=obs, var=pd.DataFrame(index=genes.to_numpy()))
    assert adata.var_names.is_unique
    # raw UMI counts: integers; normalise to ln(CP10k+1) as the contract requires
    assert np.all(counts.data == np.round(counts.data))
    adata.layers["counts"] = counts.copy()
    sc.pp.normalize_total(adata, target_sum=1e4)
    sc.pp.log1p(adata)
    return adata


@pytest.fixture(scope="module")
def tirosh2016() -> ad.AnnData:
    table = pd.read_csv(
        TIROSH2016 / "oligodendroglioma_expression_downsampled.counts.matrix.gz",
        sep="\t",
        index_col=0,
    )
    obs = pd.read_csv(TIROSH2016 / "obs.tsv", sep="\t", index_col=0).loc[table.columns]
    values = table.to_numpy(dtype=np.float64).T
    # TPM-like: linear (max in the tens of thousands, not log), not integer counts, each
    # cell summing to ~1e5 over these 10,338 of all genes. ln(CP10k+1) of them is the
    # contract's scale.
    assert values.max() > 1000
    assert not np.all(values == np.round(values))
    totals = values.sum(axis=1)
    assert 5e4 < np.median(totals) < 2e5
    adata = ad.AnnData(
        X=sp.csr_matrix(values.astype(np.float32)),
        obs=obs,
        var=pd.DataFrame(index=table.index.astype(str)),
    )
    assert adata.var_names.is_unique
    sc.pp.normalize_total(adata, target_sum=1e4)
    sc.pp.log1p(adata)
    return adata


@pytest.fixture(scope="module")
def wu2021_identity(wu2021) -> pd.DataFrame:
    """Both labels inferred with the authors' hidden (forced inference), seed 0."""
    hidden = ad.AnnData(X=wu2021.X, obs=pd.DataFrame(index=wu2021.obs_names), var=wu2021.var)
    return identity.annotate_identity(
        hidden,
        author_labels_present=False,
        cd8_markers=read_cd8_markers(),
        lineage_markers=read_lineage_markers(),
        gene_positions=read_gene_positions(),
        cancer_type="breast",
        rng=0,
    )


def test_wu2021_malignant_cells(wu2021, wu2021_identity):
    truth = (wu2021.obs["celltype_major"] == "Cancer Epithelial").to_numpy()
    measured = scores(wu2021_identity["is_malignant"].to_numpy(), truth)
    # measured 2026 (seed 0): precision 0.976, recall 1.000, F1 0.988
    assert measured["f1"] >= 0.9  # issue-4 target
    assert measured["f1"] >= 0.97  # regression floor
    assert measured["recall"] >= 0.97
    # the 10 normal epithelial cells share the lineage markers but not the CNVs
    normal = (wu2021.obs["celltype_major"] == "Normal Epithelial").to_numpy()
    assert not wu2021_identity["is_malignant"].to_numpy()[normal].any()
    assert (wu2021_identity["label_source"] == "inferred").all()


def test_wu2021_cd8_t_cells(wu2021, wu2021_identity):
    """CD8 T cells of CID4465: the F1 >= 0.8 target is not reached; floor asserted.

    What limits it (CID4465, ~660 UMI per cell): CD8A is detected in 11% and CD8B in 6%
    of the authors' 35 CD8+ T cells (CD8B also in 5% of their CD4+ T cells; FOXP3 in
    none of the 1,564 cells), so CD8 vs CD4 rests mostly on the effector programme
    (CCL5, GZMA/B/K, NKG7, PRF1). The authors' truth also has classes outside "T cells
    CD8+" that are legitimately cytotoxic CD3+/CD8+ cells in this sample: 10 "Cycling
    T-cells" not split into CD8/CD4 (CD8B detected in 2) and 5 "NKT cells" / 2 "NK
    cells" with no CD3 read but TRAC/TRBC and GZMB/GNLY. Together they supply most false
    positives. While the method was developed, the best possible (oracle) threshold on a
    kNN-smoothed effector score of the T-cell cluster reached F1 0.79.
    """
    truth = (wu2021.obs["celltype_minor"] == "T cells CD8+").to_numpy()
    called = wu2021_identity["is_cd8"].to_numpy()
    measured = scores(called, truth)
    # measured 2026 (seed 0): precision 0.771, recall 0.771, F1 0.771 (27 of 35); over
    # seeds 0-7 of call_cd8 F1 0.740-0.822 (mean 0.780)
    assert measured["f1"] >= 0.74  # regression floor (target 0.8 not reached, see above)
    assert measured["recall"] >= 0.74
    # with the author classes that are not split into CD8/CD4 left out of the comparison
    unsplit = wu2021.obs["celltype_minor"].isin(UNSPLIT_T_CLASSES).to_numpy()
    without = scores(called[~unsplit], truth[~unsplit])
    # measured 2026 (seed 0): precision 0.964, recall 0.771, F1 0.857 (seeds 0-7: 0.80-0.91)
    assert without["f1"] >= 0.8
    assert without["precision"] >= 0.9
    # no CD8 call outside the immune compartment of the authors
    outside = ~wu2021.obs["celltype_major"].isin(["T-cells", "B-cells", "Plasmablasts"]).to_numpy()
    assert not called[outside].any()
    # CD8 T cells are never malignant and confidences are in range
    assert not (wu2021_identity["is_cd8"] & wu2021_identity["is_malignant"]).any()
    assert wu2021_identity["confidence"].between(0, 1).all()


def test_wu2021_cd8_f1_over_seeds(wu2021):
    """The CD8 F1 of one seed is one draw: the mean over four seeds is the stable figure."""
    truth = (wu2021.obs["celltype_minor"] == "T cells CD8+").to_numpy()
    f1s = []
    for seed in range(4):
        calls = identity.call_cd8(wu2021, markers=read_cd8_markers(), rng=seed)
        f1s.append(scores(calls["is_cd8"].to_numpy(), truth)["f1"])
    # measured 2026: 0.771, 0.822, 0.795, 0.740 (mean 0.782)
    assert np.mean(f1s) >= 0.76
    assert min(f1s) >= 0.72


def test_tirosh2016_malignant_cells(tirosh2016):
    truth = tirosh2016.obs["malignant"].astype(bool).to_numpy()
    hidden = ad.AnnData(
        X=tirosh2016.X, obs=pd.DataFrame(index=tirosh2016.obs_names), var=tirosh2016.var
    )
    calls = identity.call_malignant(
        hidden,
        gene_positions=read_gene_positions(),
        lineage_markers=read_lineage_markers(),
        cancer_type="oligodendroglioma",
        rng=0,
    )
    measured = scores(calls["is_malignant"].to_numpy(), truth)
    # measured 2026 (seed 0; also seeds 1-4): precision 1.000, recall 1.000, F1 1.000
    assert measured["f1"] >= 0.9  # issue-4 target
    assert measured["f1"] >= 0.97  # regression floor
    # microglia are the reference; oligodendrocytes are not reference cells, yet their
    # expression differences from microglia are not mistaken for copy-number changes
    cell_type = tirosh2016.obs["cell_type"].to_numpy()
    assert calls["is_reference"].to_numpy()[cell_type == "Microglia/Macrophage"].all()
    oligodendrocytes = cell_type == "Oligodendrocytes (non-malignant)"
    assert not calls["is_reference"].to_numpy()[oligodendrocytes].any()
    assert not calls["is_malignant"].to_numpy()[oligodendrocytes].any()
    assert calls["cnv_coherence"].to_numpy()[oligodendrocytes].max() < 1.2
