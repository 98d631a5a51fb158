"""The container recipes install exactly the environment of requirements/lock.txt.

The images cannot be built here (no registry of images), so the recipes are read instead:
container/cd8exo.def (Apptainer) and container/Dockerfile must start from the Python minor
version the lock was made for, copy requirements/lock.txt in, install from it with
``--no-deps`` (nothing unpinned comes in) and pin any package they name to the lock's version.
"""

from __future__ import annotations

import re
import shlex
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]
LOCK = REPO / "requirements" / "lock.txt"
RECIPES = [REPO / "container" / "cd8exo.def", REPO / "container" / "Dockerfile"]
# The lock describes the environment this test suite runs in (.venv, built from it).
PYTHON_MINOR = f"{sys.version_info.major}.{sys.version_info.minor}"

# pip options that take a value (the value is not a package).
PIP_VALUE_OPTIONS = {
    "-c", "--constraint", "-e", "--editable", "-i", "--index-url", "--extra-index-url",
    "-f", "--find-links", "-t", "--target", "--prefix", "--root", "--cache-dir",
    "--python-version", "--platform", "--implementation", "--abi", "--progress-bar",
    "--log", "--timeout", "--retries", "--src", "--upgrade-strategy", "--report",
}  # fmt: skip
OTHER_INSTALLERS = re.compile(r"\b(conda|mamba|micromamba|pipx|easy_install)\s+install\b")


def normalise(name: str) -> str:
    """Package names as pip compares them (PEP 503)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def read_lock(text: str) -> dict[str, str]:
    """`name==version` lines of a lock file, by normalised name; error on any other line."""
    pins = {}
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        match = re.fullmatch(r"([A-Za-z0-9][A-Za-z0-9._-]*)==([A-Za-z0-9.+!_-]+)", line)
        if match is None:
            msg = f"lock file line {number} is not an exact pin `name==version`: {raw!r}"
            raise ValueError(msg)
        pins[normalise(match.group(1))] = match.group(2)
    return pins


def parse_recipe(text: str) -> tuple[str, dict[str, str], str]:
    """Base image, copies (source -> destination) and shell commands of a recipe.

    Understands Dockerfiles (FROM, COPY/ADD, RUN with `\\` continuations) and Apptainer
    definitions (`From:` header, `%files` and `%post` sections).
    """
    if re.search(r"^\s*Bootstrap:", text, flags=re.MULTILINE | re.IGNORECASE):
        base_match = re.search(r"^\s*From:\s*(\S+)", text, flags=re.MULTILINE)
        sections: dict[str, list[str]] = {}
        current = None
        for line in text.splitlines():
            header = re.match(r"^%(\w+)", line)
            if header:
                current = header.group(1)
                sections.setdefault(current, [])
            elif current is not None:
                sections[current].append(line)
        copies = {}
        for line in sections.get("files", []):
            fields = line.split("#", 1)[0].split()
            if fields:
                copies[fields[0]] = fields[-1]
        shell = "\n".join(sections.get("post", []))
    else:
        joined = re.sub(r"\\\n", " ", text)
        base_match = re.search(r"^\s*FROM\s+(?:--\S+\s+)*(\S+)", joined, flags=re.M | re.I)
        copies = {}
        for args in re.findall(r"^\s*(?:COPY|ADD)\s+(.+)$", joined, flags=re.M | re.I):
            fields = [f for f in args.split() if not f.startswith("--")]
            for source in fields[:-1]:
                copies[source] = fields[-1]
        shell = "\n".join(re.findall(r"^\s*RUN\s+(.+)$", joined, flags=re.M | re.I))
    base = base_match.group(1) if base_match else ""
    return base, copies, shell


def pip_installs(shell: str) -> list[list[str]]:
    """The argument lists after `pip install` in each command of a shell script."""
    installs = []
    lines = [line.split("#", 1)[0] for line in shell.splitlines()]
    for command in re.split(r"&&|\|\||;|\n", "\n".join(lines)):
        words = shlex.split(command)
        for i in range(len(words) - 1):
            # `pip`, `pip3`, `/venv/bin/pip` or `python -m pip`
            if re.fullmatch(r"(\S*/)?pip3?(\.\d+)?", words[i]):
                if words[i + 1] == "install":
                    installs.append(words[i + 2 :])
                break
    return installs


def recipe_problems(text: str, *, lock: dict[str, str], python_minor: str) -> list[str]:
    """What keeps a container recipe from installing exactly `lock` on `python_minor`."""
    problems = []
    base, copies, shell = parse_recipe(text)
    base_python = re.fullmatch(r"(?:\S+/)?python:(\d+\.\d+)(?:[.-]\S*)?(?:@\S+)?", base)
    if base_python is None:
        problems.append(f"base image {base!r} is not a python:<version> image")
    elif base_python.group(1) != python_minor:
        problems.append(
            f"base image {base!r} has Python {base_python.group(1)}, the lock is for {python_minor}"
        )
    lock_in_image = copies.get("requirements/lock.txt") or copies.get("./requirements/lock.txt")
    if lock_in_image is None:
        problems.append("requirements/lock.txt is not copied into the image")
    installs = pip_installs(shell)
    if not installs:
        problems.append("no `pip install` in the recipe")
    installed_from_lock = False
    for args in installs:
        if "--no-deps" not in args:
            problems.append(f"`pip install {shlex.join(args)}` lacks --no-deps")
        i = 0
        while i < len(args):
            word = args[i]
            requirement = None
            if word in ("-r", "--requirement"):
                requirement, i = args[i + 1], i + 1
            elif word.startswith("--requirement="):
                requirement = word.split("=", 1)[1]
            elif word.startswith("-r") and len(word) > 2:
                requirement = word[2:]
            elif word in ("-U", "--upgrade"):
                problems.append(f"`pip install {shlex.join(args)}` upgrades past the lock")
            elif word in PIP_VALUE_OPTIONS:
                i += 1
            elif not word.startswith("-"):
                pin = re.fullmatch(r"([A-Za-z0-9][A-Za-z0-9._-]*)==(\S+)", word)
                if pin is None:
                    problems.append(f"package {word!r} is installed without an exact pin")
                elif lock.get(normalise(pin.group(1))) != pin.group(2):
                    locked = lock.get(normalise(pin.group(1)), "absent")
                    problems.append(
                        f"package {word!r} differs from the lock ({pin.group(1)}: {locked})"
                    )
            if requirement is not None:
                if lock_in_image is not None and requirement == lock_in_image:
                    installed_from_lock = True
                else:
                    problems.append(f"installs from {requirement!r}, not the lock file")
            i += 1
    if installs and lock_in_image is not None and not installed_from_lock:
        problems.append(f"nothing is installed with -r {lock_in_image} (the copied lock file)")
    other = OTHER_INSTALLERS.search(shell)
    if other:
        problems.append(f"`{other.group(0)}` adds packages that the lock does not pin")
    return problems


@pytest.fixture(scope="module")
def lock() -> dict[str, str]:
    return read_lock(LOCK.read_text())


def test_lock_file_pins_every_package_exactly(lock):
    # Real packages of the environment are in it, each with one exact version.
    assert {"snakemake", "scanpy", "anndata", "snakemake-executor-plugin-slurm"} <= set(lock)
    assert lock["snakemake-executor-plugin-slurm"] == "2.8.0"
    assert all(re.fullmatch(r"\d[0-9A-Za-z.+!_-]*", version) for version in lock.values())


@pytest.mark.parametrize("recipe", RECIPES, ids=lambda p: p.name)
def test_recipe_installs_exactly_the_lock(recipe, lock):
    assert recipe.is_file(), f"container recipe {recipe} is missing"
    assert recipe_problems(recipe.read_text(), lock=lock, python_minor=PYTHON_MINOR) == []


def test_both_recipes_use_the_same_base_image():
    bases = {parse_recipe(recipe.read_text())[0] for recipe in RECIPES}
    assert len(bases) == 1, f"the recipes start from different images: {sorted(bases)}"


GOOD_DOCKERFILE = """\
FROM python:3.11-slim-bookworm
COPY requirements/lock.txt /opt/lock.txt
RUN python -m venv /v \\
    && /v/bin/pip install --no-cache-dir --no-deps -r /opt/lock.txt \\
    && /v/bin/pip install --no-deps snakemake==9.27.1
"""
TOY_LOCK = {"snakemake": "9.27.1", "scanpy": "1.11.5", "pyyaml": "6.0.3"}


def test_checker_accepts_a_recipe_with_an_extra_package_pinned_as_in_the_lock():
    assert recipe_problems(GOOD_DOCKERFILE, lock=TOY_LOCK, python_minor="3.11") == []


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        (("3.11-slim", "3.12-slim"), "has Python 3.12, the lock is for 3.11"),
        (("snakemake==9.27.1", "snakemake==9.0.0"), "'snakemake==9.0.0' differs from the lock"),
        (("snakemake==9.27.1", "snakemake"), "'snakemake' is installed without an exact pin"),
        (("snakemake==9.27.1", "PyYAML==6.0.3 numpy==2.4.6"), "'numpy==2.4.6' differs"),
        (("--no-deps -r", "-r"), "lacks --no-deps"),
        (("-r /opt/lock.txt", "-r /opt/other.txt"), "installs from '/opt/other.txt'"),
        (("COPY requirements/lock.txt", "COPY requirements/requirements.in"), "not copied"),
        (("--no-deps snakemake", "--no-deps -U snakemake"), "upgrades past the lock"),
    ],
)
def test_checker_finds_what_breaks_the_pins(change, problem):
    old, new = change
    assert old in GOOD_DOCKERFILE
    problems = recipe_problems(
        GOOD_DOCKERFILE.replace(old, new), lock=TOY_LOCK, python_minor="3.11"
    )
    assert any(problem in p for p in problems), problems


def test_checker_reads_apptainer_definitions():
    definition = (REPO / "container" / "cd8exo.def").read_text()
    base, copies, shell = parse_recipe(definition)
    assert base == "python:3.11-slim-bookworm"
    assert copies == {"requirements/lock.txt": "/opt/cd8exo/lock.txt"}
    assert pip_installs(shell) == [["--no-cache-dir", "--no-deps", "-r", "/opt/cd8exo/lock.txt"]]
    broken = definition.replace("--no-deps -r /opt/cd8exo/lock.txt", "scanpy")
    problems = recipe_problems(broken, lock=TOY_LOCK, python_minor="3.11")
    assert "package 'scanpy' is installed without an exact pin" in problems
    assert "nothing is installed with -r /opt/cd8exo/lock.txt (the copied lock file)" in problems
