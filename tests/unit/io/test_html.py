"""Readable tables: self-contained HTML pages and summary TSVs with 6 significant digits."""

from __future__ import annotations

import pandas as pd

from cd8exo.io.html import html_table_page, markdown_page, write_summary_table


def test_summary_tables_print_six_significant_digits(tmp_path):
    table = pd.DataFrame(
        {"dataset": ["007"], "rho": [-0.8999999999999999], "p": [4.871970948735605e-06]}
    )
    write_summary_table(table, tmp_path / "t.tsv")
    assert (tmp_path / "t.tsv").read_text() == "dataset\trho\tp\n007\t-0.9\t4.87197e-06\n"


def test_html_page_is_self_contained_sortable_and_keeps_exact_values(tmp_path):
    table = pd.DataFrame(
        {"target": ["PLP2", "<b>"], "rho": [-0.8999999999999999, 0.25], "ok": [True, False]}
    )
    html_table_page(table, tmp_path / "t.html", title="T", banner="SIMULATED DATA: x")
    page = (tmp_path / "t.html").read_text()
    assert "http" not in page  # nothing loaded from the network
    assert "<td>&lt;b&gt;</td>" in page  # text escaped
    assert 'data-value="-0.8999999999999999"' in page  # exact value kept for sorting
    assert ">\u22120.9</td>" in page  # shown rounded, with a true minus
    assert "addEventListener('click'" in page
    assert "SIMULATED DATA: x" in page


def test_markdown_page_renders_headings_lists_and_links(tmp_path):
    markdown_page(
        "# M\n\n- `a` **b**\n1. ref doi:[10.1/x](https://doi.org/10.1/x)\n",
        tmp_path / "m.html",
        title="M",
    )
    page = (tmp_path / "m.html").read_text()
    assert "<h1>M</h1>" in page
    assert "<li><code>a</code> <b>b</b></li>" in page
    assert '<a href="https://doi.org/10.1/x">10.1/x</a>' in page
