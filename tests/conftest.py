"""Test-suite-wide hooks (fixtures live in the conftest.py of each folder)."""

from __future__ import annotations

import pytest


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Run the SLURM tests first.

    They are the longest file (a real cluster, the demo run twice) and mostly wait on job
    submission; `make test` runs files on two workers (`-n 2 --dist loadfile`), so starting
    them first lets the rest of the suite run beside them instead of after them.
    """
    items.sort(key=lambda item: 0 if item.get_closest_marker("slurm") else 1)
