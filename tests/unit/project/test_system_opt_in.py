"""Tests that change the machine run only when asked: ``CD8EXO_SYSTEM_TESTS=1`` (system_opt_in)."""

from __future__ import annotations

import pytest
import system_opt_in
from system_opt_in import require_system_opt_in

WHAT = "install a package"


@pytest.fixture
def as_user(monkeypatch):
    monkeypatch.setattr(system_opt_in.os, "geteuid", lambda: 1000)


@pytest.fixture
def as_root(monkeypatch):
    monkeypatch.setattr(system_opt_in.os, "geteuid", lambda: 0)


def skip_reason(**kwargs) -> str | None:
    """The reason require_system_opt_in skips with, or None when it lets the test run."""
    try:
        require_system_opt_in(WHAT, **kwargs)
    except pytest.skip.Exception as skipped:
        return skipped.msg
    return None


@pytest.mark.usefixtures("as_root")
def test_without_the_variable_it_skips_and_says_how_to_run(monkeypatch):
    monkeypatch.delenv("CD8EXO_SYSTEM_TESTS", raising=False)
    assert skip_reason() == "set CD8EXO_SYSTEM_TESTS=1 to install a package; CI does"
    assert skip_reason(as_root=True) == (
        "set CD8EXO_SYSTEM_TESTS=1 (as root) to install a package; CI does"
    )


@pytest.mark.usefixtures("as_root")
@pytest.mark.parametrize("value", ["", "0", "yes", "true"])
def test_only_1_opts_in(monkeypatch, value):
    monkeypatch.setenv("CD8EXO_SYSTEM_TESTS", value)
    assert skip_reason(as_root=True) == (
        f"CD8EXO_SYSTEM_TESTS is {value!r}, not '1': "
        "set CD8EXO_SYSTEM_TESTS=1 (as root) to install a package; CI does"
    )


@pytest.mark.usefixtures("as_root")
def test_with_the_variable_it_runs(monkeypatch):
    monkeypatch.setenv("CD8EXO_SYSTEM_TESTS", "1")
    assert skip_reason() is None
    assert skip_reason(as_root=True) is None


@pytest.mark.usefixtures("as_user")
def test_with_the_variable_but_not_root(monkeypatch):
    monkeypatch.setenv("CD8EXO_SYSTEM_TESTS", "1")
    assert skip_reason() is None
    assert skip_reason(as_root=True) == (
        "CD8EXO_SYSTEM_TESTS=1 is set, but only root can install a package; "
        "run the tests as root (CI does)"
    )


@pytest.mark.usefixtures("as_user")
def test_without_the_variable_root_is_not_checked(monkeypatch):
    # the reason to give first is the opt-in, which is needed anyway
    monkeypatch.delenv("CD8EXO_SYSTEM_TESTS", raising=False)
    assert skip_reason(as_root=True) == (
        "set CD8EXO_SYSTEM_TESTS=1 (as root) to install a package; CI does"
    )
