"""Run Snakemake on a real one-node SLURM cluster (started by the `slurm_cluster` fixture).

Every rule must run as its own SLURM job: the slurm executor plugin submits each job with
``--comment rule_<rule>[_wildcards_<values>]``, and the cluster keeps finished jobs in ``squeue``
(``MinJobAge`` of a day), so ``squeue --states=all`` tells which rules ran as which jobs.

Times measured on this 2-core machine kind (root, Debian 12, SLURM 22.05), shared with other
work (load 3 to 6), are in each test's docstring. Starting the cluster takes ~1 s once SLURM is
installed (apt-get install of slurm-wlm and munge on a fresh machine: ~1 min more); a session
waits while another test session on the machine holds the cluster. Each SLURM job costs ~10 s
more than the same rule run locally (two Snakemake start-ups inside the job, status polling).
The whole file: ~16 min with the slow test (`-m slurm`), ~10 min without it (`make test`).
"""

from __future__ import annotations

import collections
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.slurm

REPO = Path(__file__).resolve().parents[2]
SLURM_PROFILE = REPO / "profiles" / "slurm"
LOCAL_PROFILE = REPO / "profiles" / "local"

SNAKEMAKE = str(Path(sys.executable).parent / "snakemake")
# The plugin waits 40 s before its first status check (kind to a busy controller); a test
# cluster answers at once.
FAST_STATUS = ["--slurm-init-seconds-before-status-checks", "1"]
# Guard against a hung run (not a timing assertion): far above the measured times.
RUN_TIMEOUT_S = 1800
ACTIVE_STATES = {"PENDING", "RUNNING", "CONFIGURING", "COMPLETING", "SUSPENDED"}


def run_snakemake(args, *, cwd: Path, env: dict, what: str) -> subprocess.CompletedProcess:
    """Run snakemake with `args` in `cwd`; fail the test with its output if it fails."""
    proc = subprocess.run(
        [SNAKEMAKE, *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT_S,
        check=False,
    )
    if proc.returncode != 0:
        pytest.fail(
            f"{what}: `snakemake {' '.join(args)}` in {cwd} exited {proc.returncode}\n"
            f"--- stdout (end) ---\n{proc.stdout[-4000:]}\n--- stderr (end) ---\n"
            f"{proc.stderr[-8000:]}",
            pytrace=False,
        )
    return proc


def slurm_jobs(env: dict) -> dict[int, dict[str, str]]:
    """All jobs the test cluster knows, finished ones included, by job id."""
    out = subprocess.run(
        ["squeue", "--noheader", "--states=all", "--format=%i|%j|%k|%T|%C|%m"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    jobs = {}
    for line in out.splitlines():
        job_id, name, comment, state, cpus, memory = line.strip().split("|")
        jobs[int(job_id)] = {
            "name": name,
            "comment": comment,
            "state": state,
            "cpus": cpus,
            "memory": memory,
        }
    return jobs


def new_jobs(env: dict, before: dict) -> dict[int, dict[str, str]]:
    return {job_id: job for job_id, job in slurm_jobs(env).items() if job_id not in before}


def rule_of(comment: str, rules) -> str:
    """The rule named in a job comment `rule_<rule>` or `rule_<rule>_wildcards_<values>`."""
    matches = [
        rule
        for rule in rules
        if comment == f"rule_{rule}" or comment.startswith(f"rule_{rule}_wildcards_")
    ]
    assert matches, f"SLURM job comment {comment!r} names none of the rules {sorted(rules)}"
    return max(matches, key=len)


def planned_jobs(workdir: Path, env: dict) -> collections.Counter:
    """Jobs per rule that a full run of the workflow in `workdir` has to do (dry run)."""
    proc = run_snakemake(
        ["--profile", str(LOCAL_PROFILE), "--dry-run", "--forceall", "--quiet", "rules"],
        cwd=workdir,
        env=env,
        what="dry run",
    )
    text = proc.stdout + proc.stderr
    table = text[text.index("Job stats:") :]
    counts = collections.Counter()
    for line in table.splitlines()[3:]:
        fields = line.split()
        if len(fields) != 2 or not fields[1].isdigit():
            break
        counts[fields[0]] = int(fields[1])
    counts.pop("total", None)
    assert counts, f"no job table in the dry run output:\n{text}"
    return counts


def result_files(workdir: Path) -> set[str]:
    return {str(p.relative_to(workdir)) for p in (workdir / "results").rglob("*") if p.is_file()}


# A workflow of two rules, the second reading the first's output; each writes the SLURM job it
# ran in. `make_b` asks for 2 threads (the plugin turns them into --cpus-per-task) and `make_a`
# for 100 MB (--mem).
TINY_SNAKEFILE = """
rule all:
    input:
        "b.txt",


rule make_a:
    output:
        "a.txt",
    resources:
        mem_mb=100,
        runtime=5,
    shell:
        "echo job=$SLURM_JOB_ID partition=$SLURM_JOB_PARTITION > {output}"


rule make_b:
    input:
        "a.txt",
    output:
        "b.txt",
    threads: 2
    shell:
        "cat {input} > {output} && "
        "echo job=$SLURM_JOB_ID cpus=$SLURM_CPUS_PER_TASK >> {output}"
"""


def test_two_rule_workflow_runs_each_rule_as_a_slurm_job(slurm_cluster, tmp_path):
    """Measured: 25-30 s (two jobs one after the other)."""
    env = slurm_cluster
    (tmp_path / "Snakefile").write_text(TINY_SNAKEFILE)
    before = slurm_jobs(env)

    run_snakemake(
        ["--profile", str(SLURM_PROFILE), *FAST_STATUS, "--jobs", "2"],
        cwd=tmp_path,
        env=env,
        what="two-rule workflow under SLURM",
    )

    lines_a = (tmp_path / "a.txt").read_text().splitlines()
    lines_b = (tmp_path / "b.txt").read_text().splitlines()
    match_a = re.fullmatch(r"job=(\d+) partition=(\S+)", lines_a[0])
    assert match_a, f"a.txt does not name a SLURM job: {lines_a}"
    assert match_a.group(2) == env["CD8EXO_SLURM_PARTITION"]
    assert lines_b[0] == lines_a[0]  # make_b really read make_a's output
    match_b = re.fullmatch(r"job=(\d+) cpus=(\d+)", lines_b[1])
    assert match_b, f"b.txt does not name a SLURM job: {lines_b}"
    job_a, job_b = int(match_a.group(1)), int(match_b.group(1))
    assert job_b > job_a  # submitted only after make_a was done
    assert match_b.group(2) == "2"  # threads: 2 -> --cpus-per-task=2

    jobs = new_jobs(env, before)
    assert set(jobs) == {job_a, job_b}
    assert jobs[job_a]["comment"] == "rule_make_a"
    assert jobs[job_b]["comment"] == "rule_make_b"
    assert {job["state"] for job in jobs.values()} == {"COMPLETED"}
    assert jobs[job_a]["memory"] == "100M"  # mem_mb=100 on the rule
    # make_b declares no memory: the profile's default-resources mem_mb=2000 applies.
    assert jobs[job_b]["memory"] == "2000M"
    assert jobs[job_b]["cpus"] == "2"
    # The profile keeps the SLURM log of every job, successful ones too.
    for job_id, rule in ((job_a, "make_a"), (job_b, "make_b")):
        log = tmp_path / ".snakemake" / "slurm_logs" / f"rule_{rule}" / f"{job_id}.log"
        assert log.is_file(), f"no SLURM log {log}"


@pytest.fixture(scope="session")
def local_reference(copy_workflow, tmp_path_factory):
    """The demo workflow run to completion locally with profiles/local (shared by the tests)."""
    workdir = copy_workflow(tmp_path_factory.mktemp("local_run"))
    run_snakemake(
        ["--profile", str(LOCAL_PROFILE)],
        cwd=workdir,
        env=dict(os.environ),
        what="local reference run of the workflow",
    )
    return workdir


ASSOCIATIONS = Path("results/summary/associations.tsv")


def test_workflow_under_slurm_matches_local_run(
    slurm_cluster, local_reference, copy_workflow, tmp_path
):
    """Measured: 8-14 min: the local reference run of the demo (195-380 s, shared with the
    next test), then the same demo with every job submitted to SLURM (280-440 s)."""
    env = slurm_cluster
    workdir = copy_workflow(tmp_path / "repo")
    planned = planned_jobs(workdir, env)
    planned.pop("all", None)  # the target rule has no action: nothing to submit
    before = slurm_jobs(env)

    run_snakemake(
        ["--profile", "profiles/slurm", *FAST_STATUS],
        cwd=workdir,
        env=env,
        what="workflow under SLURM",
    )

    jobs = new_jobs(env, before)
    ran = collections.Counter(rule_of(job["comment"], planned) for job in jobs.values())
    assert ran == planned, "not every job of the workflow ran as one SLURM job"
    assert {job["state"] for job in jobs.values()} == {"COMPLETED"}
    assert len({job["name"] for job in jobs.values()}) == 1  # all from this one run
    logs = workdir / ".snakemake" / "slurm_logs"
    assert {int(p.stem) for p in logs.rglob("*.log")} == set(jobs)

    assert (workdir / ASSOCIATIONS).read_bytes() == (local_reference / ASSOCIATIONS).read_bytes()
    assert result_files(workdir) == result_files(local_reference)


@pytest.mark.slow
def test_workflow_killed_under_slurm_reruns_to_identical_results(
    slurm_cluster, local_reference, copy_workflow, tmp_path
):
    """Measured: ~6 min (370 s at load 5): a partial run under SLURM, then the rest; plus the
    local reference run if the previous test did not make it."""
    env = slurm_cluster
    workdir = copy_workflow(tmp_path / "repo")
    before = slurm_jobs(env)
    snakemake = subprocess.Popen(
        [SNAKEMAKE, "--profile", "profiles/slurm", *FAST_STATUS],
        cwd=workdir,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    # Interrupt once one job has finished and another is running: the run is half done and a
    # job is writing its outputs.
    deadline = time.monotonic() + RUN_TIMEOUT_S
    interrupted = False
    while snakemake.poll() is None and time.monotonic() < deadline:
        states = collections.Counter(job["state"] for job in new_jobs(env, before).values())
        if states["COMPLETED"] >= 1 and states["RUNNING"] >= 1:
            os.killpg(snakemake.pid, signal.SIGKILL)  # like a lost login session: no clean-up
            snakemake.wait()
            interrupted = True
            break
        time.sleep(0.3)
    if not interrupted:
        os.killpg(snakemake.pid, signal.SIGKILL)
        pytest.fail("the workflow ended before it could be interrupted part-way")
    # The jobs it left behind are cancelled, as an administrator or `scancel -u` would.
    left = [
        str(job_id)
        for job_id, job in new_jobs(env, before).items()
        if job["state"] in ACTIVE_STATES
    ]
    assert left, "no job was running when snakemake was killed"
    subprocess.run(["scancel", *left], env=env, check=True)
    # scancel takes a moment to end the job steps
    deadline = time.monotonic() + 120
    while any(job["state"] in ACTIVE_STATES for job in new_jobs(env, before).values()):
        assert time.monotonic() < deadline, f"SLURM jobs {left} still active 2 min after scancel"
        time.sleep(0.5)
    assert not (workdir / ASSOCIATIONS).exists(), "the interrupted run got to the end"

    run_snakemake(["--unlock"], cwd=workdir, env=env, what="unlock after the kill")
    run_snakemake(
        ["--profile", "profiles/slurm", *FAST_STATUS],
        cwd=workdir,
        env=env,
        what="rerun under SLURM after the kill",
    )

    assert (workdir / ASSOCIATIONS).read_bytes() == (local_reference / ASSOCIATIONS).read_bytes()
    # No partial or temporary file of the killed jobs is left among the results.
    assert result_files(workdir) == result_files(local_reference)
    dry = run_snakemake(
        ["--profile", str(LOCAL_PROFILE), "--dry-run"], cwd=workdir, env=env, what="dry run"
    )
    assert "Nothing to be done" in dry.stdout + dry.stderr
