"""score_signatures(cells=...): scoring only the CD8 T cells gives their scores of a full run.

The random-set null and the method comparison use only the CD8 T cells' scores; scoring
just those rows (a tenth of the cells) must not change a single value, for every method,
whether the cells are in memory or read from disk.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from cd8exo.cells.normalise import log_normalise
from cd8exo.cells.store import open_cells, write_matrix
from cd8exo.scoring.concordance import method_scores
from cd8exo.scoring.random_sets import random_set_scores
from cd8exo.scoring.score import METHODS, score_signatures


@pytest.fixture
def data(contract_adata, tmp_path):
    normalised = log_normalise(contract_adata)
    rng = np.random.default_rng(5)
    genes = normalised.var_names
    signatures = {f"sig{i}": rng.choice(genes, size=8, replace=False).tolist() for i in range(3)}
    path = tmp_path / "matrix.h5ad"
    write_matrix(contract_adata, path)
    return normalised, signatures, open_cells(path)


@pytest.mark.parametrize("method", METHODS)
def test_scores_of_a_subset_equal_those_of_the_full_run(data, method):
    normalised, signatures, _ = data
    mask = (normalised.obs["cell_type"].astype(str) == "CD8_T").to_numpy()
    assert 0 < mask.sum() < len(mask)
    full = score_signatures(normalised, signatures, rng=3, method=method)
    part = score_signatures(normalised, signatures, rng=3, method=method, cells=mask)
    pd.testing.assert_frame_equal(part, full.loc[mask])


def test_the_null_and_the_comparison_are_the_same_from_disk(data):
    normalised, signatures, cells = data
    assert cells.obs_names.equals(normalised.obs_names)
    memory = random_set_scores(normalised, signatures, n_sets=5, rng=2)
    disk = random_set_scores(cells, signatures, n_sets=5, rng=2)
    pd.testing.assert_frame_equal(memory, disk)
    assert memory["score"].notna().all()
    cells_memory, patients_memory = method_scores(normalised, signatures, rng=1, min_cells=1)
    cells_disk, patients_disk = method_scores(cells, signatures, rng=1, min_cells=1)
    for method in METHODS:
        pd.testing.assert_frame_equal(patients_memory[method], patients_disk[method])
    for method in cells_memory:
        pd.testing.assert_frame_equal(cells_memory[method], cells_disk[method])
