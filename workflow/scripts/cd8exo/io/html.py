"""Tables as self-contained HTML pages: sortable, searchable, readable numbers, no network.

Snakemake's report viewer only offers TSV files for download; an ``.html`` result is shown
in the page. :func:`html_table_page` writes one: a pandas ``to_html`` table (numbers with 3
significant digits, p and q values with 2, full precision in the cell's ``title``) and a
small inline script (no library, no external file) that sorts a column on a click on its
header and filters rows by a search box.
"""

from __future__ import annotations

import html
import math
import re
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from cd8exo._utils import atomic_write

if TYPE_CHECKING:
    from cd8exo.io.tables import PathLike

__all__ = [
    "fixed_float_format",
    "html_table",
    "html_table_page",
    "markdown_page",
    "write_summary_table",
    "write_text",
]

#: Significant digits of the summary tables a reader opens (``results/summary/*.tsv``).
SUMMARY_DIGITS = 6

_STYLE = """
body{font-family:system-ui,-apple-system,'Segoe UI',Roboto,'DejaVu Sans',sans-serif;font-size:13px;margin:12px;color:#222}
h1{font-size:16px;margin:0 0 4px}p.caption{margin:0 0 8px;color:#444;max-width:70em}
input.cd8exo-search{margin:4px 0 8px;padding:3px 6px;width:22em;font-size:13px}
table.cd8exo{border-collapse:collapse;font-variant-numeric:tabular-nums}
table.cd8exo th,table.cd8exo td{border-bottom:1px solid #ddd;padding:2px 8px;text-align:left;white-space:nowrap}
table.cd8exo th{position:sticky;top:0;background:#f4f4f4;cursor:pointer;user-select:none}
table.cd8exo th.asc::after{content:' \\25B2'}table.cd8exo th.desc::after{content:' \\25BC'}
table.cd8exo td.num{text-align:right}table.cd8exo tr.group td{background:#eef3f8;font-weight:600}
.simulated{background:#fff0e0;border:2px solid #d55e00;padding:6px 10px;margin:0 0 10px;font-weight:600}
"""

# Sorts on a header click (numbers by their data-value, text otherwise), filters on input.
_SCRIPT = """
(function(){
document.querySelectorAll('table.cd8exo').forEach(function(table){
  var body=table.tBodies[0];
  table.querySelectorAll('thead th').forEach(function(th,col){
    th.addEventListener('click',function(){
      var asc=!th.classList.contains('asc');
      table.querySelectorAll('thead th').forEach(function(h){h.classList.remove('asc','desc');});
      th.classList.add(asc?'asc':'desc');
      var rows=Array.prototype.slice.call(body.rows);
      rows.sort(function(a,b){
        var x=a.cells[col],y=b.cells[col];
        var u=x.getAttribute('data-value'),v=y.getAttribute('data-value');
        var r=(u!==null&&v!==null)?(parseFloat(u)-parseFloat(v)):x.textContent.localeCompare(y.textContent);
        if(isNaN(r)){r=(isNaN(parseFloat(u))?1:0)-(isNaN(parseFloat(v))?1:0);}
        return asc?r:-r;
      });
      rows.forEach(function(r){body.appendChild(r);});
    });
  });
  var box=document.querySelector('input[data-table="'+table.id+'"]');
  if(box){box.addEventListener('input',function(){
    var q=box.value.toLowerCase();
    Array.prototype.forEach.call(body.rows,function(r){
      r.style.display=r.textContent.toLowerCase().indexOf(q)>=0?'':'none';
    });
  });}
});
})();
"""

_P_COLUMNS = ("p_value", "q_value", "perm_p_value", "perm_q_value", "specificity_p")


def _shown(value: object, column: str) -> str:
    if isinstance(value, (bool, np.bool_)):
        return str(bool(value))
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if isinstance(value, (float, np.floating)):
        if not math.isfinite(value):
            return "NA" if np.isnan(value) else str(value)
        digits = 2 if column.endswith(_P_COLUMNS) or "p_value" in column else 3
        return f"{value:.{digits}g}".replace("-", "\u2212")
    return "" if value is None or (isinstance(value, float) and np.isnan(value)) else str(value)


def html_table(
    table: pd.DataFrame, *, table_id: str = "t1", max_rows: int = 5000, search: bool = True
) -> str:
    """An HTML ``<table>`` (with a search box unless ``search=False``: the box needs the
    page's script); numbers rounded for reading, exact in each cell's ``title``."""
    shown = table.head(max_rows)
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in shown.columns)
    numeric = {c for c in shown.columns if pd.api.types.is_numeric_dtype(shown[c])}
    numeric -= {c for c in shown.columns if pd.api.types.is_bool_dtype(shown[c])}
    rows = []
    for values in shown.itertuples(index=False, name=None):
        cells = []
        for column, value in zip(shown.columns, values, strict=True):
            text = html.escape(_shown(value, str(column)))
            if column in numeric:
                exact = "" if pd.isna(value) else repr(float(value))
                cells.append(
                    f'<td class="num" data-value="{exact or "NaN"}" title="{exact}">{text}</td>'
                )
            else:
                cells.append(f"<td>{text}</td>")
        rows.append("<tr>" + "".join(cells) + "</tr>")
    more = (
        f"<p>First {max_rows} of {len(table)} rows; the TSV has them all.</p>"
        if len(table) > max_rows
        else ""
    )
    box = (
        f'<input class="cd8exo-search" type="search" placeholder="Search the {len(shown)} rows" '
        f'data-table="{table_id}">\n'
        if search
        else ""
    )
    return (
        box + f'<table class="cd8exo" id="{table_id}"><thead><tr>{head}</tr></thead>\n'
        f"<tbody>{''.join(rows)}</tbody></table>{more}"
    )


def html_table_page(
    table: pd.DataFrame, path: PathLike, *, title: str, caption: str = "", banner: str = ""
) -> None:
    """Write ``table`` as a self-contained HTML page (sortable, searchable), atomically."""
    page = (
        "<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>"
        f"<title>{html.escape(title)}</title><style>{_STYLE}</style></head><body>\n"
        + (f"<div class='simulated'>{html.escape(banner)}</div>\n" if banner else "")
        + f"<h1>{html.escape(title)}</h1>\n"
        + (f"<p class='caption'>{html.escape(caption)}</p>\n" if caption else "")
        + html_table(table)
        + f"\n<script>{_SCRIPT}</script>\n</body></html>\n"
    )
    write_text(page, path)


def write_text(text: str, path: PathLike) -> None:
    """Write UTF-8 text atomically (whole or not at all)."""

    def write(tmp: str) -> None:
        with open(tmp, "w", encoding="utf-8") as handle:
            handle.write(text)

    atomic_write(path, write)


def fixed_float_format(digits: int = SUMMARY_DIGITS) -> str:
    """The ``float_format`` of the summary tables: ``digits`` significant digits."""
    return f"%.{digits}g"


def write_summary_table(
    table: pd.DataFrame, path: PathLike, *, digits: int = SUMMARY_DIGITS
) -> None:
    """A summary table for readers: TSV with ``digits`` significant digits (``-0.9``, not
    ``-0.8999999999999999``). Only for tables no rule reads back for a computation."""
    atomic_write(
        path,
        lambda tmp: table.to_csv(
            tmp, sep="\t", index=False, float_format=fixed_float_format(digits)
        ),
    )


def _inline(text: str) -> str:
    text = html.escape(text)
    text = re.sub(r"\*\*(.+?)\*\*", r"<b>\1</b>", text)
    text = re.sub(r"`(.+?)`", r"<code>\1</code>", text)
    return re.sub(r"\[(.+?)\]\((https?://[^)]+)\)", r'<a href="\2">\1</a>', text)


def markdown_page(markdown: str, path: PathLike, *, title: str, banner: str = "") -> None:
    """The small Markdown subset of the methods text (headings, lists, bold, code, links) as
    a self-contained HTML page."""
    body, in_list = [], False
    for line in markdown.splitlines():
        item = re.match(r"^(?:- |\d+\. )(.*)$", line)
        if in_list and not item:
            body.append("</ul>")
            in_list = False
        if line.startswith("#"):
            level = len(line) - len(line.lstrip("#"))
            body.append(f"<h{level}>{_inline(line.lstrip('#').strip())}</h{level}>")
        elif item:
            if not in_list:
                body.append("<ul>")
                in_list = True
            body.append(
                f"<li>{_inline(line)}</li>"
                if re.match(r"^\d", line)
                else f"<li>{_inline(item.group(1))}</li>"
            )
        elif line.strip():
            body.append(f"<p>{_inline(line)}</p>")
    if in_list:
        body.append("</ul>")
    page = (
        "<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>"
        f"<title>{html.escape(title)}</title><style>{_STYLE}</style></head><body>\n"
        + (f"<div class='simulated'>{html.escape(banner)}</div>\n" if banner else "")
        + "\n".join(body)
        + "\n</body></html>\n"
    )
    write_text(page, path)
