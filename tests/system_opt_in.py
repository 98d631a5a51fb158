"""The one opt-in for tests that change the machine they run on.

Some tests install system packages or write system configuration (the SLURM tests install
Debian's ``slurm-wlm`` and ``munge`` and write ``/etc/slurm/slurm.conf``). They run only when
``CD8EXO_SYSTEM_TESTS=1`` is set (CI sets it in ``.ci/run``); otherwise they are skipped with a
reason that says how to run them, and the machine is left untouched. Call
:func:`require_system_opt_in` first thing in the fixture or test that would change the system.
"""

from __future__ import annotations

import os

import pytest

ENV_VAR = "CD8EXO_SYSTEM_TESTS"


def require_system_opt_in(what: str, *, as_root: bool = False) -> None:
    """Skip the calling test or fixture unless ``CD8EXO_SYSTEM_TESTS=1`` (and root, if `as_root`).

    Parameters
    ----------
    what
        What the test does to the machine, completing "to ...", e.g. ``"install slurm-wlm/munge
        and start a one-node SLURM cluster"``; it is part of the skip reason.
    as_root
        The test also needs root (checked only once opted in, with its own skip reason).
    """
    value = os.environ.get(ENV_VAR)
    if value != "1":
        found = "" if value is None else f"{ENV_VAR} is {value!r}, not '1': "
        root = " (as root)" if as_root else ""
        pytest.skip(f"{found}set {ENV_VAR}=1{root} to {what}; CI does")
    if as_root and os.geteuid() != 0:
        pytest.skip(
            f"{ENV_VAR}=1 is set, but only root can {what}; run the tests as root (CI does)"
        )
