"""How the report lists the per-pair figures: grouped by target role, rho and q in the labels.

Snakemake's ``report()`` accepts functions for ``subcategory`` and ``labels``; these are
built here (no Snakemake import) and evaluated at report time on each figure's wildcards
and the rule's input tables. The Snakefile imports this module, so it stays free of
matplotlib (the Snakemake environment has none): labels use the signature identifiers.
"""

from __future__ import annotations

from functools import lru_cache
from typing import TYPE_CHECKING

import numpy as np

from cd8exo.io.tables import read_table, read_targets
from cd8exo.vocabulary import ROLE_LABELS, ROLE_ORDER

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["PairListing"]


@lru_cache(maxsize=64)
def _table(path: str) -> pd.DataFrame:
    return read_table(path)


@lru_cache(maxsize=8)
def _roles(path: str) -> dict[str, str]:
    table = read_targets(path)
    if "role" not in table:
        return {}
    return dict(zip(table["gene"], table["role"].fillna("").astype(str), strict=True))


def _format(value: float, spec: str) -> str:
    return "NA" if value is None or not np.isfinite(value) else format(value, spec)


class PairListing:
    """``subcategory`` and ``labels`` functions for the report entries of per-pair figures.

    Parameters
    ----------
    targets
        The target table (``gene``, ``role``).
    """

    def __init__(self, targets: str) -> None:
        self.targets = str(targets)

    def role(self, target: str) -> str:
        """``1. miRNA target``, ``2. pathway``, ``3. positive control``, ``4. negative control``."""
        role = _roles(self.targets).get(str(target), "")
        if role in ROLE_ORDER:
            return f"{ROLE_ORDER.index(role) + 1}. {ROLE_LABELS[role]}"
        return f"{len(ROLE_ORDER) + 1}. other target"

    def scatter_subcategory(self, wildcards) -> str:
        return f"{wildcards.dataset}: {self.role(wildcards.target)}"

    def forest_subcategory(self, wildcards) -> str:
        return f"forest plots: {self.role(wildcards.target)}"

    def _labels(self, wildcards, rows: pd.DataFrame, *, rho: str, q: str) -> dict[str, str]:
        row = rows[
            (rows["signature"] == wildcards.signature) & (rows["target"] == wildcards.target)
        ]
        value = row.iloc[0] if len(row) else {}
        return {
            "target": wildcards.target,
            "signature": wildcards.signature,
            "rho": _format(value.get(rho, np.nan), ".2f"),
            "q": _format(value.get(q, np.nan), ".2g"),
        }

    def scatter_labels(self, wildcards, input) -> dict[str, str]:
        """Target, signature, rho and the permutation q of one dataset's scatter."""
        return self._labels(wildcards, _table(str(input.table)), rho="rho", q="perm_q_value")

    def forest_labels(self, wildcards, input) -> dict[str, str]:
        """Target, signature, pooled rho and its q of one forest plot."""
        return self._labels(wildcards, _table(str(input.meta)), rho="pooled_rho", q="q_value")
