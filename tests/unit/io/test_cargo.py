"""cd8exo.io.cargo: the cargo table decides which sets of a miRNA GMT are tested."""

from pathlib import Path

import pytest

from cd8exo.errors import InputError
from cd8exo.io.cargo import cargo_target_sets, read_cargo_table
from cd8exo.io.tables import read_gmt

ROOT = Path(__file__).resolve().parents[3]


def test_shipped_table_selects_the_three_sources_of_six_mirnas():
    cargo = read_cargo_table(ROOT / "resources/targets/cargo_mirnas.tsv")
    sets, annotation = cargo_target_sets(
        read_gmt(ROOT / "resources/targets/cargo_mirna_targets.gmt"), cargo
    )
    assert len(sets) == 18  # 6 miRNAs x (miRDB, miRTarBase all, miRTarBase strong)
    assert not any(name.startswith(("miR-21-", "let-7", "miR-4457")) for name in sets)
    row = annotation.set_index("target").loc["miR-765__MSIGDB71_MIRDB"]
    assert (row["mirna"], row["source"], row["status"], row["n_genes"]) == (
        "miR-765",
        "MSIGDB71_MIRDB",
        "confirmed",
        290,
    )
    assert "PLP2" in sets["miR-765__MSIGDB71_MIRDB"]
    # miR-142-3p and miR-142-5p share no prefix: each set goes to its own miRNA
    assert set(annotation.loc[annotation["target"].str.startswith("miR-142"), "mirna"]) == {
        "miR-142-3p",
        "miR-142-5p",
    }


def test_msigdb_names_match_and_repeated_mirnas_are_refused(tmp_path):
    table = tmp_path / "cargo.tsv"
    table.write_text(
        "mirna\ttarget_set_prefix\tmsigdb_set\tstatus\nmiR-765\tmiR-765__\tMIR765\tconfirmed\n"
    )
    sets, annotation = cargo_target_sets(
        {"MIR765": ["PLP2"], "MIR1": ["A"]}, read_cargo_table(table)
    )
    assert list(sets) == ["MIR765"]
    assert annotation["source"].tolist() == ["MSIGDB"]
    table.write_text(table.read_text() + "miR-765\tx__\t\tflagged\n")
    with pytest.raises(InputError, match=r"miRNA\(s\) \['miR-765'\] are listed more than once"):
        read_cargo_table(table)
