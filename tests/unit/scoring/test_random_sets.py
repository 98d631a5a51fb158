"""Matched random gene sets scored like the signatures (the specificity null)."""

import numpy as np
import pandas as pd
import pytest

from cd8exo.cells.harmonise import log_normalise
from cd8exo.patients.aggregate import sender_scores
from cd8exo.scoring.random_sets import SET_SEPARATOR, random_set_scores
from cd8exo.scoring.score import score_signatures
from cd8exo.stats.specificity import null_score_tables


@pytest.fixture
def data(contract_adata):
    return log_normalise(contract_adata)


def test_random_sets_scored_like_signatures(data, signature_genes):
    signatures = {"sig": signature_genes}
    long = random_set_scores(data, signatures, n_sets=5, rng=3, method="ucell", max_rank=200)
    assert set(long.columns) == {"patient", "signature", "random_set", "score"}
    assert sorted(long["random_set"].unique()) == [0, 1, 2, 3, 4]
    # UCell scores lie in [0, 1]: the method was passed through
    assert long["score"].between(0, 1).all()
    # same seed, same null; other seed, other null
    again = random_set_scores(data, signatures, n_sets=5, rng=3, method="ucell", max_rank=200)
    pd.testing.assert_frame_equal(long, again)
    other = random_set_scores(data, signatures, n_sets=5, rng=4, method="ucell", max_rank=200)
    assert not np.allclose(long["score"], other["score"])


def test_null_table_equals_scoring_the_sets_by_hand(data, signature_genes):
    """Per-patient null scores are the CD8 means of each random set scored directly."""
    from cd8exo.scoring._chunks import gene_means
    from cd8exo.scoring.random_sets import matched_random_sets

    long = random_set_scores(data, {"sig": signature_genes}, n_sets=3, rng=11)
    null = null_score_tables(long)["sig"]
    means = pd.Series(gene_means(data.X), index=data.var_names)
    child = np.random.SeedSequence(11).spawn(1)[0]
    sets = matched_random_sets(signature_genes, means, n_sets=3, rng=np.random.default_rng(child))
    assert all(len(s) == len(signature_genes) for s in sets)
    assert not any(set(s) & set(signature_genes) for s in sets)
    named = {f"sig{SET_SEPARATOR}{i}": s for i, s in enumerate(sets)}
    direct = sender_scores(score_signatures(data, named, rng=11), data.obs)
    np.testing.assert_allclose(null.to_numpy(), direct.to_numpy(), rtol=1e-10)


def test_no_sets_requested_gives_an_empty_table(data, signature_genes):
    assert random_set_scores(data, {"sig": signature_genes}, n_sets=0, rng=1).empty
