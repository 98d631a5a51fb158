"""Identity above identity.max_graph_cells: inferred on a stratified subsample, carried by kNN.

On the planted tumour of ``test_identity_calls.make_tumour`` (truth known), written as the
workflow writes a matrix, the subsample path must give the same labels as the full
inference for nearly every cell, and author labels must reach every cell unchanged.
"""

from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd
import pytest
from test_identity_calls import f1, make_tumour, read_cd8_markers, read_lineage_markers

from cd8exo.cells.identity.transfer import _vote, stratified_subsample
from cd8exo.cells.store import open_cells, write_matrix
from cd8exo.stages import cells as stages


def test_stratified_subsample_keeps_every_group_in_proportion():
    obs = pd.DataFrame(
        {
            "patient": ["A"] * 9000 + ["B"] * 900 + ["C"] * 100,
            "cell_type": (["x", "y"] * 5000),
        }
    )
    picked = stratified_subsample(obs, 1000, min_per_group=30, rng=3)
    assert np.all(np.diff(picked) > 0)
    counts = obs.iloc[picked].groupby(["patient", "cell_type"]).size()
    assert counts[("A", "x")] == 450
    assert counts[("B", "y")] == 45
    assert counts[("C", "x")] == 30  # 5 by proportion, lifted to min_per_group
    assert np.array_equal(picked, stratified_subsample(obs, 1000, min_per_group=30, rng=3))
    assert not np.array_equal(picked, stratified_subsample(obs, 1000, min_per_group=30, rng=4))
    assert np.array_equal(stratified_subsample(obs, 20_000), np.arange(10_000))
    # 300 groups of 100 cells: the floor of 30 per group would give 9,000 cells, not 1,000
    many = pd.DataFrame({"patient": np.repeat(np.arange(300), 100), "cell_type": "x"})
    assert 900 <= len(stratified_subsample(many, 1000, min_per_group=30)) <= 1000


def test_vote_takes_the_most_common_value_nearest_first_on_ties():
    taken = np.array(
        [["a", "b", "b"], ["b", "a", "c"], [True, False, False], ["", "c1", ""]], dtype=object
    )
    assert _vote(taken).tolist() == ["b", "b", False, ""]


def _written(tmp_path, adata: ad.AnnData, *, labelled: bool) -> str:
    truth = adata.obs["truth"].astype(str)
    obs = pd.DataFrame(index=adata.obs_names)
    obs["patient"] = pd.Categorical(np.where(np.arange(adata.n_obs) % 2, "P1", "P2"))
    if labelled:
        cell_type = truth.where(truth.isin(["CD8_T", "malignant"]), "other")
        obs["cell_type"] = pd.Categorical(cell_type)
        obs["malignant"] = (truth == "malignant").to_numpy()
    else:
        obs["cell_type"] = pd.Categorical(["other"] * adata.n_obs)
        obs["malignant"] = False
    obs["cell_type_original"] = "x"
    counts = ad.AnnData(
        X=adata.layers["counts"],
        obs=obs,
        var=pd.DataFrame(index=adata.var_names),
        uns={"cd8exo": {"dataset": "t", "value_scale": "counts", "log_normalised": False}},
    )
    path = tmp_path / ("labelled.h5ad" if labelled else "unlabelled.h5ad")
    write_matrix(counts, path)
    return path


@pytest.fixture(scope="module")
def tumour() -> ad.AnnData:
    return make_tumour(seed=0, counts={"malignant": 400, "CD8_T": 200, "CD4_T": 200})


def _identify(path, tumour, max_cells):
    references = {
        "cd8_markers": read_cd8_markers(),
        "lineage_markers": read_lineage_markers(),
        "gene_positions": tumour.uns["gene_positions"],
    }
    return stages.identify(
        open_cells(path), references=references, cancer_type="breast", rng=0, max_cells=max_cells
    )


def test_subsampled_inference_agrees_with_the_full_one(tmp_path, tumour):
    path = _written(tmp_path, tumour, labelled=False)
    full = _identify(path, tumour, max_cells=100_000).result.calls
    part = _identify(path, tumour, max_cells=600)
    calls = part.result.calls
    assert calls.index.equals(full.index)
    truth = tumour.obs["truth"].astype(str)
    for column, kind in (("is_cd8", "CD8_T"), ("is_malignant", "malignant")):
        agreement = (calls[column] == full[column]).mean()
        assert agreement > 0.95, (column, agreement)
        expected = (truth == kind).to_numpy()
        assert f1(calls[column].to_numpy(bool), expected) > 0.9
    assert set(calls["label_source"]) == {"inferred"}
    assert (part.adata.obs["cell_type"].astype(str) == calls["cell_type"].astype(str)).all()
    assert part.result.agreement["note"].str.contains("stratified subsample of").all()


def test_author_labels_reach_every_cell_unchanged(tmp_path, tumour):
    path = _written(tmp_path, tumour, labelled=True)
    found = _identify(path, tumour, max_cells=600)
    calls = found.result.calls
    truth = tumour.obs["truth"].astype(str)
    assert np.array_equal(calls["is_cd8"].to_numpy(bool), (truth == "CD8_T").to_numpy())
    assert np.array_equal(calls["is_malignant"].to_numpy(bool), (truth == "malignant").to_numpy())
    assert set(calls["label_source"]) == {"author"}
    assert (calls["confidence"] == 1).all()
    hidden = found.result.hidden
    assert hidden is not None
    assert 580 <= len(hidden) <= 620  # the stratified subsample: about max_cells
    agreement = found.result.agreement.set_index("class")
    assert (agreement["n_cells"] == len(hidden)).all()
    assert agreement.loc["CD8_T", "f1"] > 0.8
