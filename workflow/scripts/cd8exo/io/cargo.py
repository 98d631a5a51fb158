"""The cargo-miRNA table and the receiver-side target sets it selects from a GMT file.

``resources/targets/cargo_mirnas.tsv`` (config ``targets.cargo_table``) lists the miRNAs
whose target sets are tested, one row each, with the evidence that CD8+ T-cell exosomes
carry them. ``targets.mirna_gmt`` holds the sets. A set of the GMT is a target set of a
cargo miRNA when its name starts with the row's ``target_set_prefix`` (the shipped sets:
``miR-765__MSIGDB71_MIRDB``, ``miR-765__MIRTARBASE8_ALL``, ...) or equals its
``msigdb_set`` (the full MSigDB C3 MIR:MIRDB file names them ``MIR765``, ``MIR150_5P``).
Sets of no cargo miRNA are not tested: the table decides.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pandas as pd

from cd8exo.errors import InputError
from cd8exo.io.tables import read_tsv

if TYPE_CHECKING:
    from collections.abc import Mapping

    from cd8exo.io.tables import PathLike

__all__ = ["CARGO_COLUMNS", "TARGET_SET_COLUMNS", "cargo_target_sets", "read_cargo_table"]

#: Columns the cargo table must have (``msigdb_set`` may be empty on a row).
CARGO_COLUMNS: tuple[str, ...] = ("mirna", "target_set_prefix", "msigdb_set", "status")


#: Columns of the target-set annotation (:func:`cargo_target_sets`).
TARGET_SET_COLUMNS: tuple[str, ...] = ("target", "mirna", "source", "status", "n_genes")


def read_cargo_table(path: PathLike) -> pd.DataFrame:
    """Read the cargo-miRNA table (one row per miRNA; see the module docstring).

    Raises
    ------
    InputError
        When the file cannot be read as a table, lacks a column of :data:`CARGO_COLUMNS`,
        has no row, an empty ``mirna`` or ``target_set_prefix``, or a miRNA listed twice.
    """
    table = read_tsv(path, required_columns=CARGO_COLUMNS, what="cargo miRNA table", dtype=str)
    if table.empty:
        msg = f"{path}: the cargo miRNA table has no rows; add one line per cargo miRNA."
        raise InputError(msg)
    table = table.fillna("")
    for column in ("mirna", "target_set_prefix"):
        empty = table[column].str.strip() == ""
        if empty.any():
            lines = (empty.to_numpy().nonzero()[0] + 2).tolist()
            msg = f"{path}: column {column!r} is empty on line(s) {lines}; fill it in."
            raise InputError(msg)
    repeated = table.loc[table["mirna"].duplicated(), "mirna"].tolist()
    if repeated:
        msg = f"{path}: miRNA(s) {repeated} are listed more than once; keep one line each."
        raise InputError(msg)
    return table.apply(lambda column: column.str.strip())


def _match(name: str, cargo: pd.DataFrame) -> pd.Series | None:
    """The cargo row whose prefix starts ``name`` (longest prefix) or whose MSigDB set it is."""
    exact = cargo[cargo["msigdb_set"] == name]
    if len(exact):
        return exact.iloc[0]
    prefixed = cargo[[name.startswith(p) for p in cargo["target_set_prefix"]]]
    if prefixed.empty:
        return None
    longest = prefixed["target_set_prefix"].str.len().to_numpy().argmax()
    return prefixed.iloc[int(longest)]


def cargo_target_sets(
    sets: Mapping[str, list[str]], cargo: pd.DataFrame, *, gmt: str = "targets.mirna_gmt"
) -> tuple[dict[str, list[str]], pd.DataFrame]:
    """The sets of a GMT that belong to a cargo miRNA, and which miRNA each belongs to.

    Parameters
    ----------
    sets
        Set name -> genes (:func:`cd8exo.io.tables.read_gmt` of ``targets.mirna_gmt``).
    cargo
        :func:`read_cargo_table`.
    gmt
        The file (or config key) named in the error message.

    Returns
    -------
    The selected sets (GMT order) and their annotation, one row per set
    (:data:`TARGET_SET_COLUMNS`): ``source`` is the name's part after the prefix (e.g.
    ``MSIGDB71_MIRDB``) or ``MSIGDB`` for a set named as ``msigdb_set``.

    Raises
    ------
    InputError
        When no set of the GMT belongs to any cargo miRNA.
    """
    selected: dict[str, list[str]] = {}
    rows = []
    for name, genes in sets.items():
        row = _match(str(name), cargo)
        if row is None:
            continue
        prefix = str(row["target_set_prefix"])
        source = str(name)[len(prefix) :] if str(name).startswith(prefix) else "MSIGDB"
        selected[str(name)] = list(genes)
        rows.append((str(name), row["mirna"], source or "custom", row["status"], len(genes)))
    if not selected:
        shown = ", ".join(list(map(str, sets))[:5])
        msg = (
            f"{gmt}: none of its {len(sets)} sets ({shown}, ...) belongs to a miRNA of the "
            "cargo table: a set is tested when its name starts with a row's "
            f"target_set_prefix ({', '.join(cargo['target_set_prefix'])}) or equals its "
            "msigdb_set. Rename the sets or add their miRNAs to the cargo table "
            "(targets.cargo_table)."
        )
        raise InputError(msg)
    return selected, pd.DataFrame(rows, columns=list(TARGET_SET_COLUMNS))
