"""Every figure the workflow writes meets the figure standard (issue 13).

PDF, SVG and a 300 dpi PNG; 89 or 183 mm wide; text 6-8 pt at that width; fonts embedded
as text. The figures are drawn from demo-sized inputs (``figure_cases.py``) by the functions
the rule scripts call, and checked from the written files with ``figure_problems``.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import matplotlib as mpl
import matplotlib.pyplot as plt
import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))
from figure_cases import FIGURE_SCRIPTS, NAMES, ROOT, case_figures

from cd8exo.pl import figure_problems, save_figure
from cd8exo.pl.labels import label_points
from cd8exo.pl.names import gene_set_label, italic, target_set_label
from cd8exo.pl.style import OKABE_ITO, distinct_colours, new_figure

CASES = case_figures()


@pytest.mark.parametrize("name", sorted(CASES))
def test_figure_meets_the_standard(name, tmp_path):
    paths = save_figure(CASES[name](), tmp_path / f"{name}.png")
    assert sorted(Path(p).suffix for p in paths.values()) == [".pdf", ".png", ".svg"]
    assert figure_problems(paths["png"]) == []
    svg = Path(paths["svg"]).read_text()
    assert "<text" in svg  # text stays text (svg.fonttype none)
    assert b"/FontFile2" in Path(paths["pdf"]).read_bytes()  # TrueType embedded (fonttype 42)


def test_every_figure_script_has_a_case():
    """A new rule script that saves a figure needs a case here (so the standard is checked)."""
    scripts = sorted(
        p.name for p in (ROOT / "workflow/scripts").glob("*.py") if "save_figure(" in p.read_text()
    )
    assert scripts == sorted(FIGURE_SCRIPTS)
    assert {c for cases in FIGURE_SCRIPTS.values() for c in cases} <= set(CASES)


def test_every_figure_rule_declares_the_three_formats():
    for smk in (ROOT / "workflow/rules").glob("*.smk"):
        if smk.name == "common.smk":  # target lists name the PNG only
            continue
        text = smk.read_text()
        for stem in re.findall(r'"(results/[^"]+)\.png"', text):
            assert f'"{stem}.pdf"' in text, (smk.name, stem)
            assert f'"{stem}.svg"' in text, (smk.name, stem)


def test_the_checker_catches_small_text_wrong_width_and_low_dpi(tmp_path):
    fig, ax = new_figure("single", 50)
    ax.set_title("tiny", fontsize=4)
    save_figure(fig, tmp_path / "small.png")
    assert any("text sizes" in p for p in figure_problems(tmp_path / "small.png"))
    fig = plt.figure(figsize=(5, 3))
    fig.savefig(tmp_path / "wide.png", dpi=150)
    fig.savefig(tmp_path / "wide.svg")
    fig.savefig(tmp_path / "wide.pdf")
    plt.close(fig)
    problems = figure_problems(tmp_path / "wide.png")
    assert any("not 89 or 183 mm" in p for p in problems)
    assert any("dpi" in p for p in problems)


def test_palette_starts_with_okabe_ito_and_never_repeats():
    colours = distinct_colours(300)
    assert colours[:8] == list(OKABE_ITO)
    assert len(set(colours)) == 300
    # the extension stays away from the grey of "other"
    assert "#999999" not in colours


def test_point_labels_do_not_overlap():
    rng = np.random.default_rng(3)
    fig, ax = new_figure("single", 80)
    x, y = rng.normal(size=24), rng.normal(size=24)
    ax.scatter(x, y, s=14)
    placed = label_points(ax, x, y, [f"MelB{i:02d}" for i in range(24)])
    renderer = fig.canvas.get_renderer()
    # the text boxes (an Annotation's own extent also covers its leader line)
    for t in placed:
        t.update_positions(renderer)
    boxes = [mpl.text.Text.get_window_extent(t, renderer) for t in placed]
    assert len(placed) >= 20  # most labels find a free place at demo size
    for i, a in enumerate(boxes):
        for b in boxes[i + 1 :]:
            assert not a.overlaps(b)
    plt.close(fig)


def test_display_names():
    assert NAMES.signature("Chu2023_CD8_c2_Teff") == "CD8+ Teff, c2 (Chu 2023)"
    assert NAMES.signature("HALLMARK_INTERFERON_GAMMA_RESPONSE") == "Interferon gamma response"
    assert gene_set_label("HALLMARK_TNFA_SIGNALING_VIA_NFKB") == "TNFA signalling via NFKB"
    assert NAMES.signature("my_own_set") == "my own set"
    assert NAMES.cell_type("CD8_T") == "CD8+ T"
    assert target_set_label("miR-765__MSIGDB71_MIRDB") == "miR-765 targets (miRDB, predicted)"
    assert target_set_label("miR-142-3p__MIRTARBASE8_STRONG") == (
        "miR-142-3p targets (miRTarBase, strong evidence)"
    )
    assert target_set_label("let-7-5p_family__MY_SETS") == "let-7-5p_family targets (MY SETS)"
    assert italic("PLP2") == r"$\mathit{PLP2}$"
    assert italic("HLA-A") == r"$\mathit{HLA}$-$\mathit{A}$"
    assert NAMES.dataset("demo_cohort") == "demo_cohort (SIMULATED)"
    assert NAMES.title("x", datasets=["demo_cohort"]) == "SIMULATED data: x"
    assert NAMES.title("x", datasets=["GSE115978"]) == "x"


def test_simulated_datasets_say_so_in_their_titles(tmp_path):
    texts = []
    for name in (
        "scatter",
        "forest",
        "umap",
        "rho_heatmap",
        "target_set_panel",
        "target_set_heatmap",
    ):
        fig = CASES[name]()
        texts.append(" ".join(t.get_text() for t in fig.findobj(mpl.text.Text)))
        plt.close(fig)
    assert all("SIMULATED" in t for t in texts)


def test_the_standard_holds_after_a_library_changes_matplotlib_defaults(tmp_path):
    """A library imported later (scanpy's plotting can) may reset rcParams: figures re-apply them.

    Regression: in a full test run the forest plot's legend came out at 10 pt.
    """
    with mpl.rc_context({"font.size": 10, "legend.fontsize": "medium"}):
        paths = save_figure(CASES["forest"](), tmp_path / "forest.png")
    assert figure_problems(paths["png"]) == []
