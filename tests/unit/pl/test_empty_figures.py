"""A figure with nothing to show says so, and why (issue 12): it never stops the run."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest

from cd8exo.errors import InputError
from cd8exo.pl import pair_figure_path, save_figure
from cd8exo.pl.associations import forest_plot, pair_scatter, rho_heatmap
from cd8exo.pl.cells import umap_figure
from cd8exo.pl.scoring import sender_scores_figure
from cd8exo.stats.meta import meta_analysis
from cd8exo.stats.testable import untested_table

REASON = "2 of 8 patients have >= 10 CD8 T cells and >= 20 malignant cells; 6 needed"


def _texts(fig) -> str:
    parts = [fig._suptitle.get_text()] if fig._suptitle else []
    for ax in fig.axes:
        parts += [ax.get_title(), *(t.get_text() for t in ax.texts)]
    plt.close(fig)
    return "\n".join(parts)


def _associations() -> pd.DataFrame:
    good = untested_table("good", ["s"], ["PLP2", "ACTB"], n_patients=12, note="").assign(
        rho=[-0.7, 0.1], q_value=[0.01, 0.8]
    )
    tiny = untested_table("tiny", ["s"], ["PLP2", "ACTB"], n_patients=2, note=REASON)
    return pd.concat([good, tiny], ignore_index=True)


def test_forest_plot_of_a_pair_no_dataset_tested_says_why(tmp_path):
    associations = _associations()
    untested = associations[associations["dataset"] == "tiny"]
    meta = meta_analysis(untested)
    assert meta["n_datasets"].tolist() == [0, 0]
    fig = forest_plot(untested, meta, signature="s", target="PLP2")
    text = _texts(fig)
    assert "No dataset has a rho for this pair; nothing to draw." in text
    assert f"tiny: {REASON}" in text
    # and a pair tested in one dataset still gets its forest plot
    full = meta_analysis(associations)
    fig = forest_plot(associations, full, signature="s", target="PLP2")
    assert "good (12)" in [t.get_text() for t in fig.axes[0].texts]
    save_figure(fig, str(tmp_path / "forest.png"))
    assert (tmp_path / "forest.png").stat().st_size > 1000


def test_rho_heatmap_of_an_untestable_dataset_gives_the_reason():
    tiny = _associations().query("dataset == 'tiny'")
    text = _texts(rho_heatmap(tiny, title="tiny: * q < 0.05"))
    assert f"tiny: * q < 0.05\nnot testable: {REASON}" in text
    assert text.count("NA") >= 2
    assert "No association was computed" in _texts(rho_heatmap(tiny.iloc[0:0], title="x"))


def test_scatter_of_an_untested_pair_says_why():
    row = _associations().iloc[2]
    sender = pd.DataFrame({"s": [1.0, 2.0]}, index=pd.Index(["007", " 7 "], name="patient"))
    receiver = pd.DataFrame({"PLP2": [3.0, 4.0], "ACTB": [1.0, 1.0]}, index=sender.index)
    assert f"Not tested: {REASON}." in _texts(pair_scatter(row, sender, receiver))
    skipped = row.copy()
    skipped["signature"], skipped["note"] = "mouse", "signature skipped: none of its 2 genes"
    assert "Not tested: signature skipped" in _texts(pair_scatter(skipped, sender, receiver))


def test_scatter_labels_are_the_patient_ids_verbatim():
    row = _associations().iloc[0].copy()
    row[["ci_low", "ci_high"]] = [-0.9, -0.2]
    ids = ["007", " 7 ", "Zoë/..", "NA"]
    sender = pd.DataFrame({"s": [1.0, 2.0, 3.0, 4.0]}, index=pd.Index(ids, name="patient"))
    receiver = pd.DataFrame({"PLP2": [4.0, 3.0, 2.0, 1.0]}, index=sender.index)
    fig = pair_scatter(row, sender, receiver)
    labels = [t.get_text() for t in fig.axes[0].texts]
    plt.close(fig)
    assert labels == ids


@pytest.mark.parametrize(
    ("coords", "text"),
    [
        (
            pd.DataFrame(
                {
                    "UMAP1": [np.nan] * 3,
                    "UMAP2": [np.nan] * 3,
                    "patient": "P1",
                    "cell_type": "CD8_T",
                    "note": "no UMAP: only 3 cells (at least 10 are needed)",
                }
            ),
            "no UMAP: only 3 cells (at least 10 are needed).",
        ),
        (
            pd.DataFrame(columns=["cell", "UMAP1", "UMAP2", "patient", "cell_type", "note"]),
            "no UMAP: no cell passed QC.",
        ),
    ],
    ids=["few cells", "no cells"],
)
def test_umap_figure_without_coordinates_gives_the_reason(coords, text):
    assert text in _texts(umap_figure(coords, title="tiny"))


def test_sender_scores_figure_without_cd8_cells_or_signatures():
    empty = pd.DataFrame(columns=["patient", "cell_type", "s"])
    assert "no CD8 T cells in this dataset" in _texts(
        sender_scores_figure(empty, signatures=["s"], title="d")
    )
    cells = pd.DataFrame({"patient": ["P1"], "cell_type": ["CD8_T"]})
    assert "no signature could be scored in this dataset" in _texts(
        sender_scores_figure(cells, signatures=[], title="d")
    )


@pytest.mark.parametrize(("signature", "target"), [("a/b", "PLP2"), ("s", ".."), ("s", "")])
def test_figure_paths_never_leave_their_folder(tmp_path, signature, target):
    with pytest.raises(InputError, match="cannot name a figure file"):
        pair_figure_path(tmp_path, signature, target)
    assert pair_figure_path(tmp_path, "Zoë 1", "PLP2") == str(tmp_path / "Zoë 1__PLP2.png")
