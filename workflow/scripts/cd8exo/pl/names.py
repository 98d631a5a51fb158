"""What figures call things: display names of signatures, gene sets, cell types and genes.

Raw identifiers (``Chu2023_CD8_c2_Teff``, ``HALLMARK_INTERFERON_GAMMA_RESPONSE``, ``CD8_T``)
are file names, not figure text. A signature's display name comes from the gene-set library
(``resources/gene_sets/library.tsv``, column ``display_name``); a name the library does not
know is cleaned up (prefix ``HALLMARK_`` dropped, underscores as spaces). Gene symbols are set
in italics (mathtext), as the HGNC guidelines ask. Datasets the sheet marks as simulated carry
"SIMULATED" in every title.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import pandas as pd

from cd8exo.io.tables import read_tsv
from cd8exo.vocabulary import ROLE_LABELS, ROLE_ORDER

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping

    from cd8exo.io.tables import PathLike

__all__ = [
    "CELL_TYPE_LABELS",
    "ROLE_LABELS",
    "ROLE_ORDER",
    "SET_SOURCE_LABELS",
    "DisplayNames",
    "gene_set_label",
    "italic",
    "read_display_names",
    "set_source_label",
    "target_order",
    "target_set_label",
]

#: Figure labels of the cell-type vocabulary (:data:`cd8exo.vocabulary.CELL_TYPES`).
CELL_TYPE_LABELS: dict[str, str] = {
    "CD8_T": "CD8+ T",
    "CD4_T": "CD4+ T",
    "NK": "NK",
    "B": "B",
    "plasma": "Plasma",
    "myeloid": "Myeloid",
    "fibroblast": "Fibroblast",
    "endothelial": "Endothelial",
    "malignant": "Malignant",
    "other": "Other",
}

#: Words of gene-set names kept in capitals (Hallmark names are all capitals).
_ACRONYMS = frozenset(
    [
        "DNA",
        "UV",
        "MTORC1",
        "E2F",
        "G2M",
        "MYC",
        "V1",
        "V2",
        "KRAS",
        "IL2",
        "STAT5",
        "IL6",
        "JAK",
        "STAT3",
        "TNFA",
        "NFKB",
        "TGF",
        "PI3K",
        "AKT",
        "MTOR",
        "P53",
        "WNT",
        "ROS",
        "UPR",
        "ESCRT",
        "GO",
        "CD8",
        "CD4",
        "NK",
        "IFN",
        "IFNG",
        "TCR",
        "MHC",
    ]
)
_WORD_FIXES = {
    "ALPHA": "alpha",
    "BETA": "beta",
    "GAMMA": "gamma",
    "SIGNALING": "signalling",
    "DN": "down",
}


#: Figure labels of the sources of the cargo miRNAs' target sets (``<miRNA>__<source>``,
#: ``resources/targets/PROVENANCE.md``); another source is shown with spaces for underscores.
SET_SOURCE_LABELS: dict[str, str] = {
    "MSIGDB71_MIRDB": "miRDB, predicted",
    "MSIGDB": "MSigDB MIR, predicted",
    "MIRTARBASE8_ALL": "miRTarBase, validated",
    "MIRTARBASE8_STRONG": "miRTarBase, strong evidence",
}


def set_source_label(source: str) -> str:
    """``MIRTARBASE8_STRONG`` -> ``miRTarBase, strong evidence``; others with spaces."""
    return SET_SOURCE_LABELS.get(str(source), str(source).replace("_", " "))


def target_set_label(name: str) -> str:
    """``miR-765__MSIGDB71_MIRDB`` -> ``miR-765 targets (miRDB, predicted)``.

    miRNA names stay upright (they are not gene symbols); a name without ``__`` is cleaned
    up like any gene set.
    """
    mirna, sep, source = str(name).partition("__")
    if not sep:
        return gene_set_label(name)
    return f"{mirna} targets ({set_source_label(source)})"


def italic(symbol: str) -> str:
    """A gene symbol in italics (mathtext); hyphens and dots stay upright between italic parts."""
    parts = re.split(r"([-.])", str(symbol))
    out = []
    for part in parts:
        if part in {"-", "."} or not part:
            out.append(part)
        else:
            escaped = re.sub(r"([_$#%&{}\\^~])", r"\\\1", part)
            out.append(f"$\\mathit{{{escaped}}}$")
    return "".join(out)


def gene_set_label(name: str) -> str:
    """``HALLMARK_INTERFERON_GAMMA_RESPONSE`` -> ``Interferon gamma response``; others cleaned up."""
    name = str(name)
    if name.startswith("HALLMARK_"):
        words = name.removeprefix("HALLMARK_").split("_")
        shown = [w if w in _ACRONYMS else _WORD_FIXES.get(w, w.lower()) for w in words if w]
        text = " ".join(shown)
        return text[:1].upper() + text[1:]
    return name.replace("_", " ")


def read_display_names(path: PathLike) -> dict[str, str]:
    """``set -> display_name`` of a gene-set library table (rows without one are left out)."""
    table = read_tsv(path, what="gene-set library")
    if not {"set", "display_name"} <= set(table.columns):
        return {}
    rows = table[table["display_name"].fillna("").astype(str).str.strip() != ""]
    return dict(zip(rows["set"].astype(str), rows["display_name"].astype(str), strict=True))


@dataclass(frozen=True)
class DisplayNames:
    """How figures name things, and which datasets are simulated.

    Parameters
    ----------
    signatures
        Display name of each gene set (signature or program) by its identifier.
    simulated
        Datasets whose data are simulated (the dataset sheet's ``simulated`` column).
    """

    signatures: Mapping[str, str] = field(default_factory=dict)
    simulated: frozenset[str] = frozenset()

    @classmethod
    def from_files(
        cls, library: PathLike | None = None, *, simulated: Iterable[str] = ()
    ) -> DisplayNames:
        """Display names from a library table (None: none), and the simulated datasets."""
        names = read_display_names(library) if library else {}
        return cls(signatures=names, simulated=frozenset(map(str, simulated)))

    def signature(self, name: str) -> str:
        """A signature's or gene set's display name."""
        return self.signatures.get(str(name)) or gene_set_label(name)

    @staticmethod
    def gene(symbol: str) -> str:
        """A gene symbol, in italics."""
        return italic(symbol)

    @staticmethod
    def cell_type(name: str) -> str:
        """A cell type of the vocabulary, as a label."""
        return CELL_TYPE_LABELS.get(str(name), str(name).replace("_", " "))

    def is_simulated(self, dataset: str) -> bool:
        return str(dataset) in self.simulated

    def dataset(self, dataset: str) -> str:
        """A dataset's label: its id, with ``(SIMULATED)`` when the sheet says so."""
        return f"{dataset} (SIMULATED)" if self.is_simulated(dataset) else str(dataset)

    def title(self, text: str, *, datasets: Iterable[str] = ()) -> str:
        """``text``, prefixed ``SIMULATED data:`` when any of ``datasets`` is simulated."""
        if any(self.is_simulated(d) for d in datasets):
            return f"SIMULATED data: {text}" if text else "SIMULATED data"
        return text


def target_order(targets: Iterable[str], roles: pd.Series | None) -> list[str]:
    """Targets ordered by role (miRNA target, pathway, positive, negative control), then as given."""
    targets = list(dict.fromkeys(map(str, targets)))
    if roles is None or roles.empty:
        return targets
    rank = {role: i for i, role in enumerate(ROLE_ORDER)}
    return sorted(
        targets, key=lambda t: (rank.get(str(roles.get(t, "")), len(rank)), targets.index(t))
    )
