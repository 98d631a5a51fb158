"""Run provenance: checksums, versions, the effective config."""

import hashlib
from importlib import metadata

from cd8exo._utils import sha256sum
from cd8exo.io.provenance import flatten, run_info


def test_run_info_records_checksums_versions_and_config(tmp_path):
    gmt = tmp_path / "sets.gmt"
    gmt.write_bytes(b"S1\tdesc\tA\tB\n")
    config = {"seed": 42, "qc": {"min_genes": 200}, "signatures": {"gmt": [str(gmt)]}}
    info = run_info(config=config, files=[gmt], packages=["pandas", "no-such-package"])
    assert info["seed"] == 42
    assert info["inputs"] == {str(gmt): hashlib.sha256(b"S1\tdesc\tA\tB\n").hexdigest()}
    assert info["software"]["packages"] == {
        "pandas": metadata.version("pandas"),
        "no-such-package": "not installed",
    }
    assert info["config"] == config
    assert sha256sum(gmt) == hashlib.sha256(gmt.read_bytes()).hexdigest()


def test_flatten_gives_one_row_per_leaf():
    table = flatten({"seed": 1, "config": {"qc": {"min_genes": 200}, "gmt": ["a.gmt", "b.gmt"]}})
    assert table.set_index("item")["value"].to_dict() == {
        "seed": "1",
        "config.qc.min_genes": "200",
        "config.gmt": "a.gmt, b.gmt",
    }
