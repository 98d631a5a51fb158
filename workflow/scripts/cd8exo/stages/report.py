"""The report's front matter: key results, figure 1, the landing page and readable tables.

Rules ``summarise_key_results`` and ``render_tables`` (``workflow/rules/report.smk``).
"""

from __future__ import annotations

import base64
import html
import logging
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from cd8exo.io.html import html_table
from cd8exo.pl.names import ROLE_LABELS, DisplayNames, target_set_label
from cd8exo.stats.key_results import POOLED

if TYPE_CHECKING:
    from collections.abc import Mapping

logger = logging.getLogger(__name__)

__all__ = ["landing_page", "simulated_banner", "target_set_sentences"]


def _n(value: float, digits: int = 2) -> str:
    if value is None or not np.isfinite(value):
        return "NA"
    return f"{value:.{digits}f}".replace("-", "\u2212")


def _p(value: float) -> str:
    if value is None or not np.isfinite(value):
        return "NA"
    return f"{value:.2g}".replace("-", "\u2212")


def simulated_banner(simulated: list[str]) -> str:
    """The banner of a run with simulated datasets (empty when there is none)."""
    if not simulated:
        return ""
    return (
        f"SIMULATED DATA: {', '.join(simulated)} "
        f"{'is' if len(simulated) == 1 else 'are'} simulated (dataset sheet column "
        "'simulated'). Their associations were planted by the simulator: they test the "
        "workflow, not biology."
    )


def _sentence(rows: pd.DataFrame, names: DisplayNames) -> str:
    """One sentence per primary target: the pooled estimate, else each dataset's."""
    target = rows["target"].iloc[0]
    pooled = rows[rows["dataset"] == POOLED]
    direction = rows["expected_direction"].iloc[0]
    head = f"<i>{html.escape(target)}</i> (expected {html.escape(str(direction))})"
    if len(pooled) and np.isfinite(pooled["rho"].iloc[0]):
        p = pooled.iloc[0]
        return (
            f"{head}: pooled \u03c1 = {_n(p.rho)} (95% CI {_n(p.ci_low)} to {_n(p.ci_high)}), "
            f"q = {_p(p.q_value)}, over {int(p.n_datasets)} datasets and "
            f"{int(p.n_patients)} patients."
        )
    parts = [
        f"{html.escape(names.dataset(r.dataset))}: \u03c1 = {_n(r.rho)} "
        f"[{_n(r.ci_low)}, {_n(r.ci_high)}], permutation q = {_p(r.perm_q_value)}, n = "
        f"{int(r.n_patients) if np.isfinite(r.n_patients) else 'NA'}"
        for r in rows[rows["dataset"] != POOLED].itertuples()
    ]
    return f"{head}: " + "; ".join(parts) + "."


def target_set_sentences(
    sets: pd.DataFrame | None, *, signature: str, mirnas: list[str], names: DisplayNames
) -> list[str]:
    """One HTML sentence per tested target set of the primary targets' miRNAs (``mirnas``).

    The set-level rows of ``signature`` (``results/associate_receiver_sets``): each dataset's
    rho with its 95% CI, permutation q in the target-set family and the set-specificity p.
    Sets tested in no dataset are left out; no rows, no sentence.
    """
    if sets is None or sets.empty:
        return []
    rows = sets[(sets["signature"] == signature) & sets["mirna"].astype(str).isin(mirnas)]
    sentences = []
    for target, group in rows.groupby("target", sort=False):
        tested = group[group["rho"].notna()]
        if tested.empty:
            continue
        parts = [
            f"{html.escape(names.dataset(r.dataset))}: \u03c1 = {_n(r.rho)} "
            f"[{_n(r.ci_low)}, {_n(r.ci_high)}], permutation q = {_p(r.perm_q_value)}, "
            f"set-specificity p = {_p(r.set_specificity_p)}, n = {int(r.n_patients)}"
            for r in tested.itertuples()
        ]
        head = f"{html.escape(target_set_label(target))}, set level (expected negative)"
        sentences.append(f"{head}: " + "; ".join(parts) + ".")
    return sentences


def _compact(rows: pd.DataFrame, names: DisplayNames) -> pd.DataFrame:
    """The landing table: one line per (target, dataset or pooled) of the primary signature."""
    q = rows["perm_q_value"].where(rows["perm_q_value"].notna(), rows["q_value"])
    return pd.DataFrame(
        {
            "target": rows["target"],
            "role": rows["role"].map(ROLE_LABELS).fillna(rows["role"]),
            "dataset": [
                names.dataset(d) if d != POOLED else "pooled (DL)" for d in rows["dataset"]
            ],
            "n": rows["n_patients"],
            "\u03c1": rows["rho"],
            "95% CI": [
                f"{_n(lo)}, {_n(hi)}"
                for lo, hi in zip(rows["ci_low"], rows["ci_high"], strict=True)
            ],
            "q (perm.; pooled: DL)": q,
            "specificity p": rows["specificity_p"],
        }
    )


def _figure_tag(path: str | Path | None) -> str:
    if not path or not Path(path).is_file():
        return ""
    data = base64.b64encode(Path(path).read_bytes()).decode("ascii")
    return f'<p><img alt="Figure 1" style="max-width:100%" src="data:image/png;base64,{data}"></p>'


def landing_page(
    key: pd.DataFrame,
    *,
    signature: str,
    datasets: pd.DataFrame,
    sheet: Mapping[str, Mapping[str, str]],
    names: DisplayNames,
    figure_png: str | Path | None = None,
    set_sentences: list[str] = (),
) -> str:
    """The HTML fragment the report opens on (``workflow.rst`` includes it).

    The simulated-data banner, one sentence per primary target, then per tested target set
    of its miRNA (``set_sentences``, :func:`target_set_sentences`; their q values are of the
    target-set family), the key results of the primary signature (compact table), figure 1
    and the datasets as the sheet gives them.
    """
    simulated = [d for d in datasets["dataset"] if names.is_simulated(d)]
    banner = simulated_banner(simulated)
    # Snakemake's report centres this text vertically beside the rule graph, which hides the
    # top of a text taller than the window: align it to the top, and let it be wider
    parts = [
        "<style>.items-center.justify-center.h-screen{align-items:flex-start;"
        "justify-content:flex-start}"
        ".prose.max-w-lg{max-width:52rem}</style>"
    ]
    if banner:
        parts.append(
            '<div style="background:#fff0e0;border:2px solid #d55e00;padding:6px 10px;'
            f'font-weight:600" id="simulated-banner">{html.escape(banner)}</div>'
        )
    rows = key[key["signature"] == signature]
    parts.append('<h2 id="key-results">Key results</h2>')
    parts.append(
        f"<p>Sender signature: <b>{html.escape(names.signature(signature))}</b> "
        f"(<code>{html.escape(signature)}</code>), mean score in each patient's CD8+ T cells, "
        "against each target's pseudobulk in the same patient's malignant cells "
        "(Spearman \u03c1 across patients, 95% bootstrap CI over patients, permutation q; pooled: "
        "DerSimonian-Laird on Fisher z).</p>"
    )
    primary = rows[rows["role"] == "mirna_target"]
    for target in dict.fromkeys(primary["target"]):
        parts.append(f"<p>{_sentence(primary[primary['target'] == target], names)}</p>")
    parts += [f"<p>{sentence}</p>" for sentence in set_sentences]
    if rows.empty:
        parts.append("<p>No key result: the primary signature was not tested.</p>")
    else:
        parts.append(html_table(_compact(rows, names), table_id="key-results-table", search=False))
    parts.append(
        "<p>Every signature: <i>0. Key results</i> (table) and "
        "<code>results/summary/key_results.tsv</code>.</p>"
    )
    parts.append(_figure_tag(figure_png))
    shown = datasets.copy()
    for column in ("simulated", "description"):
        shown[column] = [str(sheet.get(d, {}).get(column, "")) for d in shown["dataset"]]
    parts.append("<h3>Datasets</h3>")
    parts.append(html_table(shown, table_id="datasets-table", search=False))
    return "\n".join(p for p in parts if p) + "\n"
