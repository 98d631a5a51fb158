"""The receiver side's Tirosh path: a patient's mean profile scored = the mean of its cells' scores."""

from __future__ import annotations

import numpy as np
import pandas as pd

from cd8exo.cells.normalise import log_normalise
from cd8exo.scoring.receiver import patient_set_scorer, patient_set_scores
from cd8exo.scoring.score import score_signatures


def test_mean_profile_scores_equal_the_mean_of_cell_scores(contract_adata):
    cells = log_normalise(contract_adata)
    rng = np.random.default_rng(1)
    sets = {
        f"set{i}": rng.choice(cells.var_names, size=12, replace=False).tolist() for i in range(6)
    }
    patients = cells.obs["patient"].astype(str).to_numpy()
    per_cell = score_signatures(cells, sets, rng=4, method="tirosh")
    expected = per_cell.groupby(patients, sort=True).mean()
    got = patient_set_scores(cells, sets, rng=4, method="tirosh")
    assert got.shape == (len(np.unique(patients)), 6)
    np.testing.assert_allclose(got.to_numpy(), expected.to_numpy(), rtol=1e-10, atol=1e-12)
    assert got.index.tolist() == sorted(np.unique(patients).tolist())
    # the cached scorer gives the same, batch after batch
    scorer = patient_set_scorer()
    for batch in ({"set0": sets["set0"]}, sets):
        pd.testing.assert_frame_equal(scorer(cells, batch, rng=4), got[list(batch)])
    # other methods still average the per-cell scores
    ucell = patient_set_scores(cells, sets, rng=4, method="ucell")
    cells_ucell = score_signatures(cells, sets, rng=4, method="ucell").groupby(patients).mean()
    np.testing.assert_allclose(ucell.to_numpy(), cells_ucell.to_numpy())
