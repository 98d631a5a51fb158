"""The identity step of the workflow (rule annotate_cells): cd8exo.identity.identify_cells
and its helpers, and the dataset-sheet columns it reads (cancer_type, optional labels).

The inference runs on the seeded synthetic tumour of ``test_identity.make_tumour`` (planted
cell types, planted copy-number changes in the malignant cells), whose truth is known.
"""

from __future__ import annotations

from pathlib import Path

import anndata as ad
import matplotlib as mpl
import numpy as np
import pandas as pd
import pytest
import yaml

mpl.use("Agg")

from test_identity_calls import f1, make_tumour, read_cd8_markers, read_lineage_markers

from cd8exo.cells import identity
from cd8exo.cells.identity import annotate as identity_annotate
from cd8exo.cells.identity.malignant import _resolve_cancer_type
from cd8exo.config import validate_datasets
from cd8exo.errors import ConfigError
from cd8exo.pl.cells import cnv_figure

ROOT = Path(__file__).resolve().parents[4]
DATASETS_SCHEMA = yaml.safe_load((ROOT / "workflow/schemas/datasets.schema.yaml").read_text())


# --------------------------------------------------------------------------- #
# Synthetic tumours with and without author labels
# --------------------------------------------------------------------------- #
def _labelled(adata: ad.AnnData, *, cd8: bool = True) -> ad.AnnData:
    """Author labels from the planted truth; ``cd8=False``: T cells not split (GSE72056-like)."""
    out = adata.copy()
    truth = out.obs["truth"].astype(str)
    cell_type = truth.map({"CD8_T": "CD8_T" if cd8 else "other", "malignant": "malignant"})
    out.obs["cell_type"] = cell_type.fillna("other").to_numpy()
    out.obs["malignant"] = (truth == "malignant").to_numpy()
    out.uns["cd8exo"] = {"log_normalised": True}
    return out


def _unlabelled(adata: ad.AnnData) -> ad.AnnData:
    """What harmonise gives a dataset without labels: all 'other', nothing malignant."""
    out = adata.copy()
    out.obs["cell_type"] = "other"
    out.obs["malignant"] = False
    out.uns["cd8exo"] = {"log_normalised": True}
    return out


def _identify(adata: ad.AnnData, **kwargs) -> identity.IdentityResult:
    arguments = {
        "cd8_markers": read_cd8_markers(),
        "lineage_markers": read_lineage_markers(),
        "gene_positions": adata.uns["gene_positions"],
        "cancer_type": "breast",
        "rng": 0,
    }
    return identity.identify_cells(adata, **{**arguments, **kwargs})


@pytest.fixture(scope="module")
def tumour() -> ad.AnnData:
    return make_tumour(seed=0)


@pytest.fixture(scope="module")
def truth(tumour) -> pd.Series:
    return tumour.obs["truth"].astype(str)


@pytest.fixture(scope="module")
def with_labels(tumour) -> identity.IdentityResult:
    """Author labels for both, agreement on: one inference run with the labels hidden."""
    return _identify(_labelled(tumour))


@pytest.fixture(scope="module")
def without_labels(tumour) -> identity.IdentityResult:
    return _identify(_unlabelled(tumour))


@pytest.fixture(scope="module")
def partial_labels(tumour) -> identity.IdentityResult:
    return _identify(_labelled(tumour, cd8=False))


# --------------------------------------------------------------------------- #
# Which author labels a dataset has
# --------------------------------------------------------------------------- #
def test_author_label_flags_known_answers():
    obs = pd.DataFrame(
        {"cell_type": ["CD8_T", "other", "malignant"], "malignant": [False, False, True]}
    )
    assert identity.author_label_flags(obs) == {"cd8": True, "malignant": True}
    # T cells not split into CD8/CD4 (mapped to 'other'): CD8 labels absent
    no_cd8 = obs.assign(cell_type=["other", "other", "malignant"])
    assert identity.author_label_flags(no_cd8) == {"cd8": False, "malignant": True}
    # a dataset without labels, as harmonise writes it
    nothing = obs.assign(cell_type="other", malignant=False)
    assert identity.author_label_flags(nothing) == {"cd8": False, "malignant": False}
    assert identity.author_label_flags(pd.DataFrame(index=["a"])) == {
        "cd8": False,
        "malignant": False,
    }


# --------------------------------------------------------------------------- #
# identify_cells
# --------------------------------------------------------------------------- #
def test_author_labels_win_and_agreement_comes_from_a_hidden_label_run(tumour, truth, with_labels):
    calls = with_labels.calls
    # the labels used are the authors' (the planted truth), exactly
    assert (calls["label_source"] == "author").all()
    assert (calls["confidence"] == 1.0).all()
    assert (calls["is_cd8"].to_numpy() == (truth == "CD8_T").to_numpy()).all()
    assert (calls["is_malignant"].to_numpy() == (truth == "malignant").to_numpy()).all()
    # the agreement is that of the hidden-label inference with the authors' labels
    hidden = with_labels.hidden
    assert hidden is not None
    assert (hidden["label_source"] == "inferred").all()
    table = with_labels.agreement.set_index("class")
    assert list(table.index) == ["CD8_T", "malignant"]
    assert table["author_labels"].all()
    assert (table["note"] == "").all()
    assert table.loc["CD8_T", "support"] == (truth == "CD8_T").sum() == 60
    assert table.loc["malignant", "support"] == (truth == "malignant").sum() == 120
    assert table.loc["CD8_T", "n_cells"] == tumour.n_obs
    expected_cd8 = f1(hidden["is_cd8"].to_numpy(), (truth == "CD8_T").to_numpy())
    assert table.loc["CD8_T", "f1"] == pytest.approx(expected_cd8)
    # the planted answers are recovered (as in test_identity's forced inference)
    assert table.loc["CD8_T", "f1"] >= 0.9
    assert table.loc["malignant", "f1"] >= 0.95
    # the heatmap shows the hidden-label run, grouped by author label x call
    assert with_labels.cnv is not None
    assert "author labels hidden" in with_labels.cnv_note
    groups = with_labels.cnv_groups
    author_malignant = groups.str.startswith("malignant: author").to_numpy()
    assert (author_malignant == (truth == "malignant").to_numpy()).all()


def test_a_dataset_without_labels_gets_both_inferred(truth, without_labels):
    calls = without_labels.calls
    assert without_labels.author_labels == {"cd8": False, "malignant": False}
    assert (calls["label_source"] == "inferred").all()
    assert f1(calls["is_cd8"].to_numpy(), (truth == "CD8_T").to_numpy()) >= 0.9
    assert f1(calls["is_malignant"].to_numpy(), (truth == "malignant").to_numpy()) >= 0.95
    assert set(calls.loc[calls["is_cd8"], "cell_type"]) == {"CD8_T"}
    assert set(calls.loc[calls["is_malignant"], "cell_type"]) == {"malignant"}
    # nothing to compare with: no hidden run, rows say why
    assert without_labels.hidden is None
    table = without_labels.agreement
    assert table["f1"].isna().all()
    assert (~table["author_labels"]).all()
    assert table["note"].str.startswith("no author labels").all()
    assert "malignant-cell inference" in without_labels.cnv_note


def test_partial_labels_infer_cd8_and_the_hidden_run_repeats_it(truth, partial_labels):
    calls = partial_labels.calls
    assert (calls["label_source_cd8"] == "inferred").all()
    assert (calls["label_source_malignant"] == "author").all()
    # both runs start from the same seed: the CD8 calls used are those of the hidden run
    assert (calls["is_cd8"].to_numpy() == partial_labels.hidden["is_cd8"].to_numpy()).all()
    table = partial_labels.agreement.set_index("class")
    assert np.isnan(table.loc["CD8_T", "f1"])
    assert table.loc["CD8_T", "note"].startswith("no author labels")
    assert table.loc["malignant", "f1"] >= 0.95
    assert f1(calls["is_cd8"].to_numpy(), (truth == "CD8_T").to_numpy()) >= 0.9


def test_force_inference_compares_the_labels_used(tumour, truth, with_labels):
    forced = _identify(_labelled(tumour), force_inference=True)
    assert (forced.calls["label_source"] == "inferred").all()
    assert forced.hidden is forced.calls
    # inference never reads the labels: the same seed gives the hidden run's calls
    for column in ("is_cd8", "is_malignant"):
        assert (forced.calls[column] == with_labels.hidden[column]).all()
    pd.testing.assert_frame_equal(forced.agreement, with_labels.agreement)
    assert "malignant-cell inference" in forced.cnv_note


def test_agreement_off_runs_no_inference(tumour, truth):
    result = _identify(_labelled(tumour), agreement=False)
    assert result.hidden is None
    assert result.cnv is None
    assert result.agreement["f1"].isna().all()
    assert (result.agreement["note"] == "not computed (agreement switched off)").all()
    assert result.agreement["support"].tolist() == [60, 120]
    assert "agreement check is off" in result.cnv_note


def test_a_failed_hidden_run_is_noted_not_fatal(tumour, monkeypatch):
    original = identity.annotate_identity

    def fail_when_hidden(adata, *, author_labels_present, **kwargs):
        # the hidden-label run, or a run that must infer everything, fails
        flags = author_labels_present
        if not (any(flags.values()) if isinstance(flags, dict) else flags):
            msg = "Only 3 confidently non-malignant reference cells"
            raise ValueError(msg)
        return original(adata, author_labels_present=author_labels_present, **kwargs)

    monkeypatch.setattr(identity_annotate, "annotate_identity", fail_when_hidden)
    result = _identify(_labelled(tumour))
    assert (result.calls["label_source"] == "author").all()
    assert result.hidden is None
    assert result.agreement["note"].str.contains("Only 3 confidently non-malignant").all()
    assert result.cnv is None
    assert "failed" in result.cnv_note
    # without author labels the inference is needed: its failure is an error
    with pytest.raises(ValueError, match="Only 3"):
        _identify(_unlabelled(tumour))


def test_identify_cells_needs_an_integer_seed(tumour):
    with pytest.raises(ValueError, match="integer seed"):
        _identify(_labelled(tumour), rng=np.random.default_rng(0))


# --------------------------------------------------------------------------- #
# obs, per-cell table, stored profiles, figure
# --------------------------------------------------------------------------- #
def test_annotated_obs_sets_labels_source_and_confidence(tumour, without_labels):
    obs = _unlabelled(tumour).obs
    out = identity.annotated_obs(obs, without_labels.calls)
    assert (out["cell_type"] == without_labels.calls["cell_type"]).all()
    assert (out["malignant"] == without_labels.calls["is_malignant"]).all()
    assert out["malignant"].dtype == bool
    assert set(out["label_source"]) == {"inferred"}
    assert list(out["label_source"].cat.categories) == ["author", "inferred"]
    assert out["identity_confidence"].between(0, 1).all()
    assert "truth" in out.columns  # other columns kept
    assert (obs["cell_type"] == "other").all()  # input untouched
    with pytest.raises(ValueError, match="not for the same cells"):
        identity.annotated_obs(obs.iloc[::-1], without_labels.calls)


def test_identity_table_columns_and_hidden_calls(tumour, with_labels, without_labels):
    obs = _labelled(tumour).obs.assign(cell_type_original="x")
    table = identity.identity_table(with_labels, obs=obs)
    assert tuple(table.columns) == identity.IDENTITY_COLUMNS
    assert table["cell"].tolist() == list(tumour.obs_names)
    assert (table["patient"] == "P1").all()
    hidden = with_labels.hidden["is_cd8"].to_numpy()
    assert (table["hidden_labels_is_cd8"].to_numpy(dtype=bool) == hidden).all()
    empty = identity.identity_table(without_labels, obs=obs)
    assert empty["hidden_labels_is_malignant"].isna().all()


def test_cnv_profiles_round_trip_and_subsample(tmp_path, with_labels):
    cnv, groups = with_labels.cnv, with_labels.cnv_groups
    kept, kept_groups = identity.cnv_subsample(cnv, groups=groups, max_cells=100, rng=0)
    assert 95 <= kept.matrix.shape[0] <= 105
    # proportional per group, every group kept
    full = groups.value_counts(normalize=True)
    sub = kept_groups.value_counts(normalize=True)
    assert set(sub.index) == set(full.index)
    assert (sub - full).abs().max() < 0.05
    path = tmp_path / "cnv.h5ad"
    identity.cnv_to_anndata(kept, groups=kept_groups, note="hello").write_h5ad(path)
    back, back_groups, note = identity.cnv_from_anndata(ad.read_h5ad(path))
    assert note == "hello"
    assert back.chr_pos == kept.chr_pos
    assert np.allclose(back.matrix.toarray(), kept.matrix.toarray())
    assert (back_groups.to_numpy() == kept_groups.to_numpy()).all()
    # no profiles: only the note survives, and the figure says it
    identity.cnv_to_anndata(None, note="No copy-number inference ran.").write_h5ad(path)
    stored = ad.read_h5ad(path)
    assert identity.cnv_from_anndata(stored) == (None, None, "No copy-number inference ran.")
    figure = cnv_figure(stored, title="demo")
    texts = [t.get_text() for t in figure.axes[0].texts]
    assert texts == ["No copy-number inference ran."]
    figure = cnv_figure(identity.cnv_to_anndata(kept, groups=kept_groups, note="n"))
    assert len(figure.axes[0].images) == 1


# --------------------------------------------------------------------------- #
# The dataset sheet: cancer_type, rows without labels
# --------------------------------------------------------------------------- #
def test_schema_cancer_types_are_those_identity_knows():
    enum = DATASETS_SCHEMA["properties"]["cancer_type"]["enum"]
    assert enum == list(identity.KNOWN_CANCER_TYPES)
    for name in enum:  # every listed name is accepted by the malignant caller
        _resolve_cancer_type(name)


@pytest.fixture
def sheet_files(tmp_path):
    ad.AnnData(np.ones((2, 2), dtype=np.float32)).write_h5ad(tmp_path / "data.h5ad")
    return tmp_path


def _sheet(rows):
    return pd.DataFrame(rows).fillna("")


def test_sheet_accepts_a_local_row_without_labels(sheet_files):
    row = {"dataset": "mine", "format": "h5ad", "path": "data.h5ad", "patient_column": "donor"}
    table = validate_datasets(
        _sheet([{**row, "cancer_type": "breast"}]), DATASETS_SCHEMA, base_dir=sheet_files
    )
    assert table.loc["mine", "cancer_type"] == "breast"
    assert "cell_type_column" not in table.columns


def test_sheet_rejects_an_unknown_cancer_type_by_name(sheet_files):
    row = {
        "dataset": "mine",
        "format": "h5ad",
        "path": "data.h5ad",
        "patient_column": "donor",
        "cancer_type": "Breast cancer",
    }
    with pytest.raises(ConfigError) as info:
        validate_datasets(_sheet([row]), DATASETS_SCHEMA, base_dir=sheet_files)
    message = str(info.value)
    assert "row 2 (dataset 'mine'): column 'cancer_type' must be one of" in message
    assert "'breast'" in message
    assert "'melanoma'" in message
    assert "got 'Breast cancer'" in message
    assert "selects the lineage markers" in message


def test_sheet_accepts_cancer_type_on_a_registry_row(sheet_files):
    table = validate_datasets(
        _sheet([{"registry_id": "GSE103322", "cancer_type": "hnscc"}]),
        DATASETS_SCHEMA,
        base_dir=sheet_files,
    )
    assert table.loc["GSE103322", "cancer_type"] == "hnscc"
