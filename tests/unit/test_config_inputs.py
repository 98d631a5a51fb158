"""cd8exo.config.validate_inputs: GMT and target-table problems stop the run at start-up."""

from pathlib import Path

import pytest
import yaml

from cd8exo.config import load_schema, validate_config, validate_inputs
from cd8exo.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]
CONFIG_SCHEMA = load_schema(ROOT / "workflow/schemas/config.schema.yaml")
HALLMARK = str(ROOT / "resources/gene_sets/h.all.v7.0.symbols.gmt")
MIRNA_GMT = str(ROOT / "resources/targets/cargo_mirna_targets.gmt")
CARGO = str(ROOT / "resources/targets/cargo_mirnas.tsv")


def _config(tmp_path, *, gmt=None, targets=None, **sections):
    config = {
        "datasets": "x.tsv",
        "signatures": {"gmt": gmt or [str(ROOT / "resources/gene_sets/senders.gmt")]},
        "targets": {
            "table": targets or str(ROOT / "resources/targets/targets.tsv"),
            "mirna_gmt": MIRNA_GMT,
            "cargo_table": CARGO,
        },
        **sections,
    }
    return validate_config(config, CONFIG_SCHEMA)


def _file(tmp_path, name, data: bytes) -> str:
    path = tmp_path / name
    path.write_bytes(data)
    return str(path)


def test_shipped_config_passes():
    config = validate_config(
        yaml.safe_load((ROOT / "config/config.yaml").read_text()), CONFIG_SCHEMA
    )
    config["signatures"]["gmt"] = [str(ROOT / p) for p in config["signatures"]["gmt"]]
    for key in ("table", "mirna_gmt", "cargo_table"):
        config["targets"][key] = str(ROOT / config["targets"][key])
    validate_inputs(config, screen_gmt=[HALLMARK])


def test_every_problem_is_listed_with_its_key_file_and_line(tmp_path):
    latin1 = _file(tmp_path, "latin1.gmt", b"A\td\tCD8A\nB\td\tM\xfcller\n")
    no_genes = _file(tmp_path, "overlap.gmt", b"EMT\tdescription\n")
    targets = _file(tmp_path, "targets.tsv", b"symbol\nPLP2\n")
    empty_screen = _file(tmp_path, "screen.gmt", b"")
    config = _config(
        tmp_path,
        gmt=[latin1],
        targets=targets,
        signatures={"gmt": [latin1], "overlap_gmt": [no_genes]},
    )
    with pytest.raises(ConfigError) as info:
        validate_inputs(config, screen_gmt=[empty_screen])
    assert str(info.value).splitlines() == [
        "invalid gene sets or target genes in the configuration:",
        f"  - signatures.gmt: {latin1}, line 2: the GMT file is not UTF-8 text (byte 0xfc at "
        "position 6 of the line; a Latin-1 or Windows file, or not a text file at all). Save "
        "it as UTF-8 text.",
        f"  - signatures.overlap_gmt: {no_genes}, line 1: gene set 'EMT' has no genes. A GMT line "
        "is 'name<TAB>description<TAB>gene<TAB>gene...' (tab-separated); add its genes or "
        "delete the line.",
        f"  - targets.table: The target gene table {targets} lacks the column(s) ['gene']; its "
        "columns are ['symbol']. Add a header line with these names (tab-separated).",
        f"  - screen.gmt: {empty_screen}: the GMT file contains no gene set (it is empty, or "
        "every line is blank or a # comment). A GMT line is 'name<TAB>description<TAB>gene"
        "<TAB>gene...' (tab-separated).",
    ]


def test_missing_file_unknown_include_and_names_that_cannot_name_a_figure(tmp_path):
    sets = _file(tmp_path, "s.gmt", b"CD8/act\td\tCD8A\tGZMB\nok\td\tPRF1\n")
    config = _config(tmp_path, gmt=[sets], targets=str(tmp_path / "nope.tsv"))
    with pytest.raises(ConfigError) as info:
        validate_inputs(config)
    lines = str(info.value).splitlines()[1:]
    assert lines == [
        "  - signatures.gmt: signature 'CD8/act' cannot name a figure file (it contains "
        "'/'); rename it",
        f"  - targets.table: The target gene table {tmp_path / 'nope.tsv'} does not exist (or "
        "is not a file).",
    ]
    config = _config(tmp_path, gmt=[sets], signatures={"gmt": [sets], "include": ["nope"]})
    config["targets"]["extra"] = [".."]
    with pytest.raises(ConfigError) as info:
        validate_inputs(config)
    assert str(info.value).splitlines()[1:] == [
        "  - signatures: signatures.include names set(s) not found in the GMT files: nope; "
        "available: CD8/act, ok",
        "  - targets.extra: target gene '..' cannot name a figure file (it is '..'); rename it",
    ]


def test_screen_files_are_checked_only_when_the_screen_runs(tmp_path):
    broken = _file(tmp_path, "broken.gmt", b"no tab here\n")
    config = _config(tmp_path, screen={"enabled": False})
    validate_inputs(config, screen_gmt=[broken])
    config = _config(tmp_path, screen={"enabled": True})
    with pytest.raises(
        ConfigError, match=r"screen\.gmt: .*broken\.gmt, line 1: the line has no tab"
    ):
        validate_inputs(config, screen_gmt=[broken])


def test_mirna_gmt_without_a_cargo_set_and_a_broken_cargo_table_stop_at_start_up(tmp_path):
    other = _file(tmp_path, "other.gmt", b"MIR999\td\tPLP2\tCD8A\nX\td\tA\n")
    config = _config(tmp_path)
    config["targets"]["mirna_gmt"] = other
    with pytest.raises(ConfigError) as info:
        validate_inputs(config)
    (line,) = str(info.value).splitlines()[1:]
    assert line.startswith(f"  - targets.mirna_gmt ({other}): none of its 2 sets (MIR999, X")
    assert "miR-765__" in line
    assert "targets.cargo_table" in line
    no_prefix = _file(tmp_path, "cargo.tsv", b"mirna\tmsigdb_set\tstatus\nmiR-765\tMIR765\tx\n")
    config["targets"]["cargo_table"] = no_prefix
    with pytest.raises(ConfigError) as info:
        validate_inputs(config)
    assert "targets.cargo_table: The cargo miRNA table" in str(info.value)
    assert "lacks the column(s) ['target_set_prefix']" in str(info.value)


def test_full_msigdb_names_select_sets_and_a_bad_set_name_is_refused(tmp_path):
    gmt = _file(tmp_path, "c3.gmt", b"MIR765\td\tPLP2\tA\nmiR-298__a/b\td\tB\nMIR1\td\tC\n")
    config = _config(tmp_path)
    config["targets"]["mirna_gmt"] = gmt
    with pytest.raises(ConfigError) as info:
        validate_inputs(config)
    assert str(info.value).splitlines()[1:] == [
        f"  - targets.mirna_gmt ({gmt}): target set 'miR-298__a/b' cannot name a figure file "
        "(it contains '/'); rename it"
    ]
    config["targets"]["mirna_gmt"] = None  # no set-level test: nothing to check
    validate_inputs(config)
