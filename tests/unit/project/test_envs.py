"""envs/*.yaml pin exactly the versions of requirements/lock.txt."""

from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[3]
# conda-forge names that differ from the PyPI distribution names
CONDA_TO_PYPI = {
    "matplotlib-base": "matplotlib",
    "python-igraph": "igraph",
    "tiledbsoma-py": "tiledbsoma",
}


def _lock() -> dict[str, str]:
    pins = {}
    for line in (ROOT / "requirements/lock.txt").read_text().splitlines():
        line = line.split("#")[0].strip()
        if line:
            name, version = line.split("==")
            pins[name.lower().replace("_", "-")] = version
    return pins


ENV_FILES = sorted((ROOT / "envs").glob("*.yaml"))


def test_there_are_env_files():
    assert {p.name for p in ENV_FILES} >= {"scanpy.yaml", "stats.yaml", "snakemake.yaml"}


@pytest.mark.parametrize("path", ENV_FILES, ids=lambda p: p.name)
def test_env_pins_match_lock(path):
    env = yaml.safe_load(path.read_text())
    assert env["channels"] == ["conda-forge", "bioconda", "nodefaults"]
    lock = _lock()
    for dep in env["dependencies"]:
        if isinstance(dep, dict):  # `pip:` packages that conda-forge does not carry
            assert set(dep) == {"pip"}, f"{path.name}: unexpected {dep}"
            assert "pip" in env["dependencies"], f"{path.name}: a pip: section needs pip"
            for requirement in dep["pip"]:
                name, _, version = requirement.partition("==")
                assert version, f"{path.name}: pip package {name} is not pinned with =="
                key = name.lower().replace("_", "-")
                assert version == lock.get(key), (
                    f"{path.name}: {requirement} but lock has {lock.get(key)}"
                )
            continue
        if dep == "pip":  # the installer of the pip: section, not a library
            continue
        name, _, version = dep.partition("=")
        assert version, f"{path.name}: {name} is not pinned"
        if name == "python":
            assert version == "3.11"
            continue
        pypi = CONDA_TO_PYPI.get(name, name).lower().replace("_", "-")
        assert pypi in lock, f"{path.name}: {name} is not in requirements/lock.txt"
        assert version == lock[pypi], f"{path.name}: {name}={version} but lock has {lock[pypi]}"


def test_every_rule_env_exists():
    for smk in (ROOT / "workflow/rules").glob("*.smk"):
        for line in smk.read_text().splitlines():
            if "envs/" in line:
                env = line.strip().strip('"').replace("../../", "")
                assert (ROOT / env).is_file(), f"{smk.name} names missing {env}"
