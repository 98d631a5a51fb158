"""Tests of cd8exo.screen: malignant pseudobulk, gene ranking, preranked GSEA, figure."""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps

from cd8exo.patients.aggregate import malignant_pseudobulk, receiver_expression
from cd8exo.pl.screen import top_programs_figure
from cd8exo.scoring.gene_sets import merge_gene_sets
from cd8exo.stats.screen import ENRICHMENT_COLUMNS, RANKED_COLUMNS, prerank, rank_genes

# --------------------------------------------------------------------------------------
# malignant_pseudobulk
# --------------------------------------------------------------------------------------


def _by_hand_filters(adata, patients):
    """Detection fraction and median CPM per gene, in dense numpy from the counts layer."""
    obs = adata.obs
    cells = obs["malignant"].to_numpy(bool) & obs["patient"].astype(str).isin(patients).to_numpy()
    counts = adata.layers["counts"][cells].toarray().astype(float)
    detected = (counts > 0).mean(axis=0)
    who = obs["patient"].astype(str).to_numpy()[cells]
    cpm = np.array(
        [counts[who == p].sum(axis=0) / counts[who == p].sum() * 1e6 for p in sorted(patients)]
    )
    return detected, np.median(cpm, axis=0)


def test_pseudobulk_without_filters_is_receiver_expression(contract_adata):
    result = malignant_pseudobulk(contract_adata, min_cells_fraction=0.0, min_cpm=0.0)
    expected = receiver_expression(contract_adata, genes=contract_adata.var_names)
    pd.testing.assert_frame_equal(result, expected)


def test_pseudobulk_filters_match_a_hand_computation(contract_adata):
    patients = ["P1", "P2", "P4", "P5"]
    result = malignant_pseudobulk(
        contract_adata, patients=patients, min_cells_fraction=0.3, min_cpm=500.0
    )
    detected, median_cpm = _by_hand_filters(contract_adata, patients)
    keep = (detected >= 0.3) & (median_cpm >= 500.0)
    assert 0 < keep.sum() < len(keep)  # the filters bite on this data
    assert result.columns.tolist() == contract_adata.var_names[keep].tolist()
    assert result.index.tolist() == patients
    # a patient's pseudobulk does not depend on which other patients are used
    full = receiver_expression(contract_adata, genes=result.columns)
    np.testing.assert_allclose(result.to_numpy(), full.loc[patients].to_numpy(), rtol=1e-10)
    np.testing.assert_allclose(
        np.exp2(result.to_numpy()) - 1, np.exp2(full.loc[patients].to_numpy()) - 1, rtol=1e-10
    )


def test_pseudobulk_unknown_patient_is_an_error_nothing_expressed_a_warning(contract_adata, caplog):
    with pytest.raises(ValueError, match=r"P99.*no malignant cells"):
        malignant_pseudobulk(contract_adata, patients=["P1", "P99"])
    with caplog.at_level(logging.WARNING, logger="cd8exo"):
        nothing = malignant_pseudobulk(contract_adata, min_cells_fraction=1.0, min_cpm=1e7)
    assert nothing.shape == (6, 0)  # the six patients, no gene: the screen stays empty
    assert "No gene is detected in >= 1 of the malignant cells with a median CPM >= 1e+07" in (
        caplog.text
    )
    assert "lower screen.min_cells_fraction / screen.min_cpm" in caplog.text
    with pytest.raises(ValueError, match="min_cells_fraction"):
        malignant_pseudobulk(contract_adata, min_cells_fraction=1.5)


def test_no_included_patient_gives_empty_tables_not_an_error(contract_adata, caplog):
    with caplog.at_level(logging.WARNING, logger="cd8exo"):
        pseudobulk = malignant_pseudobulk(contract_adata, patients=[])
        ranked = rank_genes(pd.DataFrame({"S": []}, dtype=float), pseudobulk)
        enrichment = prerank(ranked, {"A": ["X"]}, permutations=10)
    assert pseudobulk.empty
    assert ranked.empty
    assert list(ranked.columns) == list(RANKED_COLUMNS)
    assert enrichment.empty
    assert list(enrichment.columns) == list(ENRICHMENT_COLUMNS)
    assert "No patients given" in caplog.text


# --------------------------------------------------------------------------------------
# rank_genes
# --------------------------------------------------------------------------------------


def _patients(n):
    return pd.Index([f"P{i:02d}" for i in range(n)], name="patient")


def test_rank_genes_equals_scipy_spearmanr_per_gene():
    rng = np.random.default_rng(5)
    n, g = 12, 40
    patients = _patients(n)
    # rounded values: many ties inside a gene, as with few cells per patient
    pseudobulk = pd.DataFrame(
        np.round(rng.normal(size=(n, g)), 1), index=patients, columns=[f"G{i}" for i in range(g)]
    )
    pseudobulk["FLAT"] = 3.0  # constant: no rho, must be left out
    sender = pd.DataFrame(
        {"A": rng.normal(size=n), "B": np.round(rng.normal(size=n), 0)}, index=patients
    )
    sender.loc["P03", "B"] = np.nan  # B is scored in 11 patients only

    ranked = rank_genes(sender, pseudobulk, min_patients=6)

    assert list(ranked.columns) == list(RANKED_COLUMNS)
    assert "FLAT" not in set(ranked["gene"])
    for signature, rows in ranked.groupby("signature"):
        ok = sender[signature].notna()
        assert (rows["n_patients"] == ok.sum()).all()
        for _, row in rows.iterrows():
            expected = sps.spearmanr(sender.loc[ok, signature], pseudobulk.loc[ok, row["gene"]])
            assert row["rho"] == pytest.approx(expected.statistic, abs=1e-12)
            assert row["p_value"] == pytest.approx(expected.pvalue, rel=1e-9)
            pearson = sps.pearsonr(sender.loc[ok, signature], pseudobulk.loc[ok, row["gene"]])
            assert row["pearson_r"] == pytest.approx(pearson.statistic, abs=1e-12)
        # the ranked list: statistic = rho, rank 1 = most positive, ties by Pearson r
        assert (rows["statistic"] == rows["rho"]).all()
        assert rows["rank"].tolist() == list(range(1, g + 1))
        keys = list(zip(-rows["statistic"], -rows["pearson_r"], rows["gene"], strict=True))
        assert keys == sorted(keys)


def test_rank_genes_breaks_ties_by_pearson_then_name():
    patients = _patients(6)
    x = np.arange(6.0)
    pseudobulk = pd.DataFrame(
        {
            "WEAK": [0, 1, 2, 3, 4, 5.0],  # same ranks as x, Pearson 1
            "STRONG": [0, 1, 2, 3, 4, 50.0],  # same ranks, lower Pearson
            "ALSO_WEAK": [10, 11, 12, 13, 14, 15.0],  # identical Pearson: then by name
        },
        index=patients,
    )
    ranked = rank_genes(pd.DataFrame({"S": x}, index=patients), pseudobulk)
    assert ranked["gene"].tolist() == ["ALSO_WEAK", "WEAK", "STRONG"]
    assert (ranked["rho"] == 1.0).all()
    assert (ranked["p_value"] == 0.0).all()


def test_rank_genes_skips_signatures_with_too_few_patients(caplog):
    patients = _patients(8)
    rng = np.random.default_rng(1)
    pseudobulk = pd.DataFrame(rng.normal(size=(8, 5)), index=patients, columns=list("VWXYZ"))
    sender = pd.DataFrame(
        {"OK": rng.normal(size=8), "SPARSE": [1.0, 2, 3, np.nan, np.nan, np.nan, np.nan, np.nan]},
        index=patients,
    )
    with caplog.at_level(logging.WARNING, logger="cd8exo"):
        ranked = rank_genes(sender, pseudobulk, min_patients=6)
    assert set(ranked["signature"]) == {"OK"}
    assert "SPARSE: 3 patients" in caplog.text
    with pytest.raises(ValueError, match="share no patient"):
        rank_genes(sender.set_axis([f"X{i}" for i in range(8)]), pseudobulk)


# --------------------------------------------------------------------------------------
# prerank: a planted program must come out on top with the right sign
# --------------------------------------------------------------------------------------

SET_SIZE = 20


@pytest.fixture(scope="module")
def planted():
    """20 patients, 600 genes; UP_PROGRAM follows the ACT signature, DOWN_PROGRAM opposes it.

    ``ACT`` is a noisy readout of a latent per-patient level; ``NULL`` is independent of it.
    Ten further sets of 20 background genes carry no signal.
    """
    rng = np.random.default_rng(20261126)
    n, g = 20, 600
    patients = _patients(n)
    latent = rng.normal(size=n)
    genes = [f"GENE{i:03d}" for i in range(g)]
    values = rng.normal(size=(n, g))
    values[:, :SET_SIZE] += 1.2 * latent[:, None]  # planted up
    values[:, SET_SIZE : 2 * SET_SIZE] -= 1.2 * latent[:, None]  # planted down
    pseudobulk = pd.DataFrame(values + 8.0, index=patients, columns=genes)
    # NULL is made exactly uncorrelated with the latent level: gene-set permutation ignores
    # that the genes of a program co-vary, so a chance correlation would be "enriched"
    null = rng.normal(size=n)
    centred = latent - latent.mean()
    null -= null.mean() + centred * (centred @ null) / (centred @ centred)
    assert abs(sps.spearmanr(null, latent).statistic) < 0.15
    sender = pd.DataFrame({"ACT": latent + 0.3 * rng.normal(size=n), "NULL": null}, index=patients)
    sets = {
        "UP_PROGRAM": genes[:SET_SIZE],
        "DOWN_PROGRAM": genes[SET_SIZE : 2 * SET_SIZE][::-1],
    }
    for k in range(10):
        start = 2 * SET_SIZE + k * 50
        sets[f"RANDOM_{k}"] = genes[start : start + SET_SIZE]
    sets["TOO_SMALL"] = genes[:3]
    sets["ABSENT"] = ["NOT_A_GENE"] * 30
    ranked = rank_genes(sender, pseudobulk)
    return {"ranked": ranked, "sets": sets}


@pytest.fixture(scope="module")
def enrichment(planted):
    return prerank(planted["ranked"], planted["sets"], permutations=300, rng=3, min_size=10)


def test_prerank_puts_the_planted_programs_on_top_with_their_sign(enrichment):
    act = enrichment[enrichment["signature"] == "ACT"].set_index("term")
    # the two planted programs are the two most significant, up positive and down negative
    assert set(act.index[:2]) == {"UP_PROGRAM", "DOWN_PROGRAM"}
    assert act.loc["UP_PROGRAM", "nes"] > 1.5
    assert act.loc["DOWN_PROGRAM", "nes"] < -1.5
    assert act["nes"].idxmax() == "UP_PROGRAM"
    assert act["nes"].idxmin() == "DOWN_PROGRAM"
    assert act.loc[["UP_PROGRAM", "DOWN_PROGRAM"], "fdr_q_value"].max() < 0.01
    random = act.drop(index=["UP_PROGRAM", "DOWN_PROGRAM"])
    assert (random["fdr_q_value"] > 0.05).all()
    # the independent signature finds neither program
    null = enrichment[enrichment["signature"] == "NULL"].set_index("term")
    assert null.loc[["UP_PROGRAM", "DOWN_PROGRAM"], "nom_p_value"].min() > 0.05


def test_prerank_table_columns_and_values(enrichment, planted):
    assert list(enrichment.columns) == list(ENRICHMENT_COLUMNS)
    assert enrichment["signature"].drop_duplicates().tolist() == ["ACT", "NULL"]
    # sets outside min_size-max_size are not tested
    assert not {"TOO_SMALL", "ABSENT"} & set(enrichment["term"])
    assert (enrichment["n_genes"] == SET_SIZE).all()
    assert (enrichment["n_ranked_genes"] == 600).all()
    assert (enrichment["permutations"] == 300).all()
    up = enrichment.query("signature == 'ACT' and term == 'UP_PROGRAM'").iloc[0]
    lead = up["leading_edge_genes"].split(";")
    assert len(lead) == up["leading_edge_size"]
    assert set(lead) <= set(planted["sets"]["UP_PROGRAM"])
    assert 0 < up["peak_rank_fraction"] < 0.2  # the peak is near the top of the list
    # within a signature: sorted by FDR, then |NES|
    for _, rows in enrichment.groupby("signature"):
        assert rows["fdr_q_value"].is_monotonic_increasing


def test_prerank_is_reproducible_from_its_seed(planted, enrichment):
    again = prerank(planted["ranked"], planted["sets"], permutations=300, rng=3, min_size=10)
    pd.testing.assert_frame_equal(again, enrichment)
    other = prerank(planted["ranked"], planted["sets"], permutations=300, rng=4, min_size=10)
    key = ["signature", "term"]
    other, enrichment = other.set_index(key).sort_index(), enrichment.set_index(key).sort_index()
    pd.testing.assert_series_equal(other["es"], enrichment["es"])  # ES needs no permutation
    assert not np.allclose(other["nom_p_value"], enrichment["nom_p_value"])


def test_prerank_keeps_gseapy_messages_out_of_stderr(planted, capsys, caplog):
    ranked = planted["ranked"].assign(statistic=planted["ranked"]["statistic"].round(1))
    with caplog.at_level(logging.INFO, logger="cd8exo"):
        prerank(ranked, planted["sets"], permutations=50, rng=1, min_size=10)
    assert capsys.readouterr().err == ""
    assert "Duplicated values" in caplog.text  # gseapy's tie warning, now in our log


def test_prerank_with_no_set_in_range_gives_an_empty_table_and_a_warning(planted, caplog):
    with caplog.at_level(logging.WARNING, logger="cd8exo"):
        table = prerank(planted["ranked"], planted["sets"], permutations=50, rng=1, min_size=25)
    assert table.empty
    assert list(table.columns) == list(ENRICHMENT_COLUMNS)
    assert "No gene set has 25-500 genes" in caplog.text


def test_prerank_rejects_bad_arguments(planted):
    with pytest.raises(ValueError, match="permutations"):
        prerank(planted["ranked"], planted["sets"], permutations=0)
    with pytest.raises(ValueError, match="min_size"):
        prerank(planted["ranked"], planted["sets"], min_size=50, max_size=10)
    with pytest.raises(ValueError, match="lacks column"):
        prerank(planted["ranked"].drop(columns="statistic"), planted["sets"])


def test_prerank_names_a_changed_gseapy_output(planted, monkeypatch):
    import gseapy

    class Result:
        res2d = pd.DataFrame({"Term": ["UP_PROGRAM"], "ES": [0.5]})

    monkeypatch.setattr(gseapy, "prerank", lambda **_: Result())
    with pytest.raises(RuntimeError, match=r"NES.*gseapy 1\.3\.1"):
        prerank(planted["ranked"], planted["sets"], permutations=10, min_size=10)


def test_screen_gene_sets_merge_and_a_name_in_two_files_names_screen_gmt():
    # the screen_tumour_genes rule merges the screen.gmt files with this call
    combined = merge_gene_sets(
        {"a.gmt": {"S1": ["X", "Y"]}, "b.gmt": {"S2": ["Z"]}}, config_key="screen.gmt"
    )
    assert combined == {"S1": ["X", "Y"], "S2": ["Z"]}
    with pytest.raises(ValueError, match=r"is in both") as error:
        merge_gene_sets({"a.gmt": {"S1": ["X"]}, "b.gmt": {"S1": ["Z"]}}, config_key="screen.gmt")
    message = str(error.value)
    assert "'S1' is in both a.gmt and b.gmt" in message
    assert "drop one file from screen.gmt" in message
    assert "signatures.gmt" not in message


# --------------------------------------------------------------------------------------
# figure
# --------------------------------------------------------------------------------------


def test_top_programs_figure_shows_the_top_sets_up_on_top(enrichment):
    import matplotlib.pyplot as plt

    fig = top_programs_figure(enrichment, n=3)
    ax = fig.axes[0]
    labels = [t.get_text() for t in ax.get_yticklabels()]
    xlabels = [t.get_text() for t in ax.get_xticklabels()]
    assert xlabels == ["ACT", "NULL"]
    assert 3 <= len(labels) <= 6  # the union of 3 sets per signature
    # rows are drawn bottom to top by mean NES: the planted up program at the top
    # gene sets carry display names (underscores as spaces)
    assert labels[-1] == "UP PROGRAM"
    assert labels[0] == "DOWN PROGRAM"
    plt.close(fig)


def test_top_programs_figure_without_tested_sets_says_so():
    import matplotlib.pyplot as plt

    fig = top_programs_figure(pd.DataFrame(columns=list(ENRICHMENT_COLUMNS)))
    texts = [t.get_text() for t in fig.axes[0].texts]
    assert any("no gene set tested" in t for t in texts)
    plt.close(fig)
