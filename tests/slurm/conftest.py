"""Fixtures for the SLURM tests: a real one-node SLURM cluster on this machine.

The cluster is started once per test session by ``tests/slurm/start_cluster.sh`` (which installs
Debian's ``slurm-wlm`` and ``munge`` when missing) and stopped by ``stop_cluster.sh`` (which stops
exactly the daemons it started and restores ``/etc/slurm/slurm.conf``). Because that changes the
machine, it happens only when ``CD8EXO_SYSTEM_TESTS=1`` is set (``tests/system_opt_in.py``; CI sets
it) and needs root (CI runs as root); otherwise the SLURM tests are skipped with the reason.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from system_opt_in import require_system_opt_in

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]

# Files and folders a copy of the workflow needs; outputs and Snakemake state are left behind.
WORKFLOW_PARTS = ("Snakefile", "config", "workflow", "resources", "profiles", "envs")
# One test cluster at a time on a machine: it owns /etc/slurm/slurm.conf.
CLUSTER_LOCK = Path("/tmp/cd8exo-slurm-tests.lock")
CLUSTER_LOCK_WAIT_S = 1800
IGNORED = shutil.ignore_patterns(
    "results", "logs", "benchmarks", ".snakemake", "__pycache__", "*.pyc", ".pytest_cache"
)


def _read_env_file(path: Path) -> dict[str, str]:
    env = {}
    for line in path.read_text().splitlines():
        key, sep, value = line.partition("=")
        if sep:
            env[key.strip()] = value.strip()
    return env


@pytest.fixture(scope="session")
def slurm_cluster(tmp_path_factory):
    """Start the one-node SLURM cluster, yield the environment to reach it, stop it.

    Yields
    ------
    dict
        ``os.environ`` plus ``SLURM_CONF`` (the cluster's slurm.conf), ``CD8EXO_SLURM_STATE``
        (its state folder: logs, pids), ``CD8EXO_SLURM_PARTITION`` and a ``PATH`` that starts
        with this Python's ``bin`` folder, so jobs find the same ``snakemake``.
    """
    require_system_opt_in(
        "install slurm-wlm/munge when missing, write /etc/slurm/slurm.conf (restored afterwards) "
        "and start a one-node SLURM cluster",
        as_root=True,
    )
    state = tmp_path_factory.mktemp("slurm_cluster")
    with CLUSTER_LOCK.open("w") as lock:
        # Another test session on this machine may have the cluster: wait for it to finish.
        deadline = time.monotonic() + CLUSTER_LOCK_WAIT_S
        while True:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    pytest.fail(
                        f"another test session held {CLUSTER_LOCK} (its SLURM test cluster) "
                        f"for over {CLUSTER_LOCK_WAIT_S} s; let it finish and retry",
                        pytrace=False,
                    )
                time.sleep(2)
        yield from _run_cluster(state)


def _run_cluster(state: Path):
    started = subprocess.run(
        ["bash", str(HERE / "start_cluster.sh"), str(state)],
        capture_output=True,
        text=True,
        check=False,
    )
    if started.returncode != 0:
        pytest.fail(
            "tests/slurm/start_cluster.sh could not start the test cluster "
            f"(exit {started.returncode}):\n{started.stderr}",
            pytrace=False,
        )
    env = dict(os.environ)
    env.update(_read_env_file(Path(started.stdout.strip().splitlines()[-1])))
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    # Snakemake must not think it already runs inside a SLURM job.
    for key in [k for k in env if k.startswith("SLURM_") and k != "SLURM_CONF"]:
        del env[key]
    try:
        yield env
    finally:
        stopped = subprocess.run(
            ["bash", str(HERE / "stop_cluster.sh"), str(state)],
            capture_output=True,
            text=True,
            check=False,
        )
        if stopped.returncode != 0:
            msg = f"stop_cluster.sh failed (exit {stopped.returncode}):\n{stopped.stderr}"
            raise RuntimeError(msg)


def _copy_tree(source_root: Path, dest: Path) -> Path:
    dest.mkdir(parents=True, exist_ok=True)
    for part in WORKFLOW_PARTS:
        source = source_root / part
        if source.is_dir():
            shutil.copytree(source, dest / part, ignore=IGNORED, symlinks=True)
        elif source.is_file():
            shutil.copy2(source, dest / part)
    return dest


@pytest.fixture(scope="session")
def copy_workflow(tmp_path_factory):
    """Skip while the real workflow (a Snakefile at the repository root) does not exist; else
    return a function that copies the workflow (not its results or Snakemake state) to a folder.

    Every copy comes from one snapshot taken when the session first needs it, so runs compared
    with each other see the same code and data even if the work tree changes meanwhile.
    """
    if not (REPO / "Snakefile").is_file():
        pytest.skip(f"no Snakefile at {REPO}: the end-to-end workflow is not there yet")
    snapshot = _copy_tree(REPO, tmp_path_factory.mktemp("workflow_snapshot"))

    def copy(dest: Path) -> Path:
        return _copy_tree(snapshot, dest)

    return copy
