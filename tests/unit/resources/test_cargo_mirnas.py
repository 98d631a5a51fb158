"""The cargo miRNA table and its target sets, checked on the shipped files themselves.

``resources/targets/cargo_mirnas.tsv`` names the CD8+ T-cell exosome cargo miRNAs that are tested;
``cargo_mirna_targets.gmt`` holds their target sets (``<miRNA>__<SOURCE>``) and
``cargo_mirna_targets_summary.tsv`` the set sizes written when the sets were built. Where the team's
shared reference folder exists, the copies are compared with it byte for byte and the sets are
rebuilt from the full MSigDB C3 and miRTarBase tables they came from.
"""

from __future__ import annotations

import gzip
import hashlib
import re
from pathlib import Path

import pandas as pd
import pytest
from shared_data import SHARED_REFERENCE

ROOT = Path(__file__).resolve().parents[3]
TARGETS = ROOT / "resources" / "targets"
CARGO = TARGETS / "cargo_mirnas.tsv"
GMT = TARGETS / "cargo_mirna_targets.gmt"
SUMMARY = TARGETS / "cargo_mirna_targets_summary.tsv"
SHARED_MIRNA = SHARED_REFERENCE / "mirna"

# set-name suffix -> summary column giving its size
SOURCES = {
    "MSIGDB71_MIRDB": "n_msigdb_mirdb",
    "MIRTARBASE8_ALL": "n_mirtarbase_all",
    "MIRTARBASE8_STRONG": "n_mirtarbase_strong",
}
SET_NAME = re.compile(r"^(?P<mirna>.+)__(?P<source>" + "|".join(SOURCES) + r")$")
DOI = re.compile(r"^10\.\d{4,9}/\S+$")
PMID = re.compile(r"^[1-9]\d{6,8}$")
COLUMNS = [
    "mirna",
    "target_set_prefix",
    "msigdb_set",
    "status",
    "evidence",
    "paper",
    "doi",
    "pmid",
    "model",
    "verified",
]


def raw_gmt(path: Path) -> dict[str, list[str]]:
    """Set name -> genes in file order; an independent parser that keeps everything."""
    opener = gzip.open if path.suffix == ".gz" else open
    sets: dict[str, list[str]] = {}
    with opener(path, "rt") as handle:
        for line in handle:
            name, _description, *genes = line.rstrip("\n").split("\t")
            assert name not in sets, f"{path.name}: {name} twice"
            sets[name] = genes
    return sets


@pytest.fixture(scope="module")
def cargo() -> pd.DataFrame:
    return pd.read_csv(CARGO, sep="\t", dtype=str, keep_default_na=False)


@pytest.fixture(scope="module")
def gmt() -> dict[str, list[str]]:
    return raw_gmt(GMT)


@pytest.fixture(scope="module")
def summary() -> pd.DataFrame:
    return pd.read_csv(SUMMARY, sep="\t").set_index("query_mirna")


def test_cargo_table_columns_and_rows(cargo):
    assert list(cargo.columns) == COLUMNS
    assert cargo["mirna"].is_unique
    assert list(cargo["mirna"]) == [
        "miR-765",
        "miR-298",
        "miR-150-5p",
        "miR-142-3p",
        "miR-142-5p",
        "miR-155-5p",
    ]
    assert set(cargo["status"]) <= {"confirmed", "flagged"}
    # the only cargo shown in a CD8+ T-cell exosome -> tumour-cell setting is miR-765 -> PLP2
    assert cargo.loc[cargo["status"] == "confirmed", "mirna"].tolist() == ["miR-765"]
    for column in ("evidence", "paper", "model", "verified"):
        assert (cargo[column].str.len() > 20).all(), column
    # every verification note says when it was checked
    assert cargo["verified"].str.contains(r"\d{4}-\d{2}-\d{2}").all()
    # a flagged row says what was not confirmed
    flagged = cargo[cargo["status"] == "flagged"]
    assert flagged["verified"].str.contains("NOT|not", regex=True).all()


def test_every_row_cites_a_doi_or_pmid(cargo):
    for row in cargo.itertuples():
        assert row.doi or row.pmid, row.mirna
        assert not row.doi or DOI.match(row.doi), (row.mirna, row.doi)
        assert not row.pmid or PMID.match(row.pmid), (row.mirna, row.pmid)
        assert re.search(r"\b(19|20)\d{2}$", row.paper), row.paper


def test_set_names_follow_the_convention(gmt, summary):
    for name in gmt:
        match = SET_NAME.match(name)
        assert match, name
        assert match["mirna"] in summary.index, name
    assert len(gmt) == 36


def test_every_cargo_mirna_has_its_predicted_and_validated_sets(cargo, gmt, summary):
    for row in cargo.itertuples():
        assert row.target_set_prefix == f"{row.mirna}__"
        assert row.mirna in summary.index, row.mirna
        predicted = f"{row.target_set_prefix}MSIGDB71_MIRDB"
        validated = f"{row.target_set_prefix}MIRTARBASE8_ALL"
        assert len(gmt.get(predicted, [])) >= 100, predicted
        assert len(gmt.get(validated, [])) >= 50, validated
        strong = f"{row.target_set_prefix}MIRTARBASE8_STRONG"
        assert (strong in gmt) == (summary.loc[row.mirna, "n_mirtarbase_strong"] > 0), strong
        # no other set shares the prefix (a name like miR-142 would catch miR-142-3p and -5p)
        own = {n for n in gmt if n.startswith(row.target_set_prefix)}
        assert own <= {predicted, validated, strong}, own


@pytest.mark.parametrize("source", SOURCES)
def test_set_sizes_match_the_summary(gmt, summary, source):
    column = SOURCES[source]
    for mirna, expected in summary[column].items():
        name = f"{mirna}__{source}"
        if expected == 0:
            assert name not in gmt, name
        else:
            assert len(gmt[name]) == expected, name
            assert len(set(gmt[name])) == expected, f"{name} lists a gene twice"


def test_predicted_and_validated_overlap_matches_the_summary(gmt, summary):
    for mirna, expected in summary["n_msigdb_and_mirtarbase"].items():
        predicted = set(gmt.get(f"{mirna}__MSIGDB71_MIRDB", []))
        validated = set(gmt.get(f"{mirna}__MIRTARBASE8_ALL", []))
        assert len(predicted & validated) == expected, mirna


def test_plp2_membership_matches_the_summary(gmt, summary):
    assert "PLP2" in gmt["miR-765__MSIGDB71_MIRDB"]
    assert bool(summary.loc["miR-765", "PLP2_in_msigdb"]) is True
    # miRTarBase 8.0 predates Zhou 2021: its miR-765 targets do not include PLP2
    assert "PLP2" not in gmt["miR-765__MIRTARBASE8_ALL"]
    assert gmt["miR-765__MIRTARBASE8_STRONG"] == ["EMP3", "HES1", "HNF4A", "INPP4B", "NTRK3"]
    for mirna, row in summary.iterrows():
        for flag, source in (
            ("PLP2_in_msigdb", "MSIGDB71_MIRDB"),
            ("PLP2_in_mirtarbase", "MIRTARBASE8_ALL"),
        ):
            assert bool(row[flag]) == ("PLP2" in gmt.get(f"{mirna}__{source}", [])), (mirna, flag)


def test_provenance_names_the_files_and_their_terms():
    provenance = (TARGETS / "PROVENANCE.md").read_text()
    for path in (GMT, SUMMARY):
        assert path.name in provenance
        assert hashlib.sha256(path.read_bytes()).hexdigest() in provenance, path.name
    assert "cargo_mirnas.tsv" in provenance
    assert "v7.1" in provenance
    assert "miRTarBase 8.0" in provenance
    assert "free for academic and non-profit use" in provenance
    assert "CC BY 4.0" in provenance


needs_shared = pytest.mark.skipif(
    not SHARED_MIRNA.is_dir(), reason=f"shared reference data not found ({SHARED_MIRNA})"
)


@needs_shared
@pytest.mark.parametrize("path", [GMT, SUMMARY], ids=lambda p: p.name)
def test_shipped_copy_is_byte_identical_to_the_shared_file(path):
    assert path.read_bytes() == (SHARED_MIRNA / path.name).read_bytes()


@needs_shared
def test_predicted_sets_are_the_msigdb_sets(cargo, gmt):
    msigdb = raw_gmt(SHARED_MIRNA / "c3.mir.mirdb.v7.1.symbols.gmt")
    for row in cargo.itertuples():
        shipped = gmt[f"{row.target_set_prefix}MSIGDB71_MIRDB"]
        assert set(shipped) == set(msigdb[row.msigdb_set]), row.mirna
    assert "PLP2" in msigdb["MIR765"]


@needs_shared
def test_validated_sets_are_the_mirtarbase_targets(cargo, gmt):
    mti = pd.read_csv(
        SHARED_MIRNA / "hsa_MTI.csv.gz", usecols=["miRNA", "Target Gene", "Support Type"]
    )
    for row in cargo.itertuples():
        rows = mti[mti["miRNA"] == f"hsa-{row.mirna}"]
        strong = rows[rows["Support Type"] == "Functional MTI"]
        assert set(gmt[f"{row.target_set_prefix}MIRTARBASE8_ALL"]) == set(rows["Target Gene"])
        assert set(gmt.get(f"{row.target_set_prefix}MIRTARBASE8_STRONG", [])) == set(
            strong["Target Gene"]
        ), row.mirna
