"""Memory and runtime a rule declares, from the size of its job's input (issue 11).

One table (``workflow/resources.tsv``) gives, for every rule, a straight line in the input
size on disk::

    mem_mb      = mem_base_mb      + mem_mb_per_input_mb      * input_mb
    runtime_min = runtime_base_min + runtime_min_per_input_mb * input_mb

with a ``source`` column saying where the numbers came from (the ``make bench-scale``
measurements they were fitted to). ``workflow/rules/common.smk`` turns each row into the
resource callables of its rule; Snakemake calls them with the job's input files, so a
cluster job asks for what its dataset needs, and ``--set-resources`` still overrides them.
"""

from __future__ import annotations

import csv
import math
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from cd8exo.errors import ConfigError

__all__ = ["COLUMNS", "ResourceModel", "folder_mb", "read_resource_table"]

#: The columns of the table, in order.
COLUMNS: tuple[str, ...] = (
    "rule",
    "mem_base_mb",
    "mem_mb_per_input_mb",
    "runtime_base_min",
    "runtime_min_per_input_mb",
    "source",
)

_NUMBERS = COLUMNS[1:5]


@dataclass(frozen=True)
class ResourceModel:
    """One rule's row: memory and runtime as straight lines in the input size (MB)."""

    mem_base_mb: float
    mem_mb_per_input_mb: float
    runtime_base_min: float
    runtime_min_per_input_mb: float
    source: str = ""

    def mem_mb(self, input_mb: float) -> int:
        """Memory to declare (MB, rounded up) for ``input_mb`` MB of input."""
        return math.ceil(self.mem_base_mb + self.mem_mb_per_input_mb * max(input_mb, 0.0))

    def runtime_min(self, input_mb: float) -> int:
        """Runtime to declare (minutes, rounded up) for ``input_mb`` MB of input."""
        minutes = self.runtime_base_min + self.runtime_min_per_input_mb * max(input_mb, 0.0)
        return math.ceil(minutes)


def read_resource_table(path: str | Path) -> dict[str, ResourceModel]:
    """Read the table: rule name -> :class:`ResourceModel`.

    Lines starting with ``#`` are comments. Every number must be finite and >= 0, the base
    memory and runtime > 0, and a rule may appear once.

    Raises
    ------
    ConfigError
        Naming the file, the line and what is wrong with it.
    """
    path = Path(path)
    with path.open(newline="") as handle:
        lines = [(i, line) for i, line in enumerate(handle, start=1) if not line.startswith("#")]
    reader = csv.reader((line for _, line in lines), delimiter="\t")
    rows = list(reader)
    if not rows or tuple(rows[0]) != COLUMNS:
        found = rows[0] if rows else "nothing"
        msg = (
            f"{path}: the header must be the tab-separated columns {list(COLUMNS)}; found {found}."
        )
        raise ConfigError(msg)
    table: dict[str, ResourceModel] = {}
    for (number, _), row in zip(lines[1:], rows[1:], strict=True):
        if not any(cell.strip() for cell in row):
            continue
        name, model = _parse_row(row, where=f"{path}, line {number}")
        if name in table:
            msg = f"{path}, line {number}: rule {name!r} appears twice; keep one row per rule."
            raise ConfigError(msg)
        table[name] = model
    return table


def _parse_row(row: list[str], *, where: str) -> tuple[str, ResourceModel]:
    if len(row) != len(COLUMNS):
        msg = f"{where}: {len(row)} fields, expected {len(COLUMNS)} ({', '.join(COLUMNS)})."
        raise ConfigError(msg)
    values = {}
    for column, text in zip(_NUMBERS, row[1:5], strict=True):
        try:
            value = float(text)
        except ValueError:
            value = math.nan
        if not math.isfinite(value) or value < 0:
            msg = f"{where}: {column} is {text!r}; give a number >= 0."
            raise ConfigError(msg)
        values[column] = value
    for column in ("mem_base_mb", "runtime_base_min"):
        if values[column] <= 0:
            msg = f"{where}: {column} is {row[COLUMNS.index(column)]!r}; give a number > 0."
            raise ConfigError(msg)
    return row[0].strip(), ResourceModel(**values, source=row[5])


def folder_mb(paths: Iterable[str | os.PathLike]) -> float:
    """MB of the files inside those of ``paths`` that are folders (e.g. a 10x folder), whose
    own size on disk Snakemake's ``input.size_mb`` counts as that of a directory entry."""
    total = 0
    for path in paths:
        if os.path.isdir(path):
            for root, _, files in os.walk(path):
                total += sum(os.path.getsize(os.path.join(root, f)) for f in files)
    return total / 2**20
