"""The curated resources: gene sets, default senders and targets, genome tables, provenance."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pandas as pd
import pytest

from cd8exo.io.tables import read_gmt

ROOT = Path(__file__).resolve().parents[3]
RESOURCES = ROOT / "resources"
GENE_SETS = RESOURCES / "gene_sets"
TARGETS = RESOURCES / "targets"

SENDERS = {
    # set name -> (category written in senders.gmt, source file it was copied from)
    "Chu2023_CD8_c2_Teff": ("activation_effector", "cd8_tcell_signatures.gmt"),
    "Cytotoxic_cells_Danaher2017": ("cytotoxicity", "cd8_tcell_signatures.gmt"),
    "Tcell_exhaustion_SignatuR": ("exhaustion", "cd8_tcell_signatures.gmt"),
    "Exosome_biogenesis_core_curated": ("exosome_biogenesis", "exosome_biogenesis.gmt"),
}


def raw_gmt(path: Path) -> dict[str, tuple[str, list[str]]]:
    """Name -> (description, genes in file order, nothing removed): a tiny independent parser."""
    sets = {}
    for line in path.read_text().splitlines():
        name, description, *genes = line.split("\t")
        assert name not in sets, f"{path.name}: {name} twice"
        sets[name] = (description, genes)
    return sets


@pytest.mark.parametrize(
    ("file", "n_sets"),
    [
        ("cd8_tcell_signatures.gmt", 55),
        ("exosome_biogenesis.gmt", 18),
        ("h.all.v7.0.symbols.gmt", 50),
        ("senders.gmt", 4),
    ],
)
def test_gmt_files_parse(file, n_sets):
    sets = read_gmt(GENE_SETS / file)
    assert len(sets) == n_sets
    assert all(len(genes) >= 2 for genes in sets.values())
    # the package reader and the raw parser agree (no set has duplicated genes)
    assert {k: v[1] for k, v in raw_gmt(GENE_SETS / file).items()} == sets


def test_tumour_programs_gmt_parses():
    sets = read_gmt(TARGETS / "tumour_programs.gmt")
    assert set(sets) == {
        "HALLMARK_EPITHELIAL_MESENCHYMAL_TRANSITION",
        "HALLMARK_G2M_CHECKPOINT",
        "Tirosh2016_CAF_markers",
    }
    assert len(sets["HALLMARK_G2M_CHECKPOINT"]) == 200


def test_senders_are_the_four_sets_copied_gene_for_gene():
    senders = raw_gmt(GENE_SETS / "senders.gmt")
    assert list(senders) == list(SENDERS)
    for name, (category, source) in SENDERS.items():
        description, genes = senders[name]
        assert genes == raw_gmt(GENE_SETS / source)[name][1], name
        assert description.startswith(f"{category} | "), description
        assert source in description
    # known sizes from the curated tables (NOTES.md)
    assert [len(senders[n][1]) for n in SENDERS] == [50, 10, 5, 47]


def test_gene_set_tsv_tables_match_the_gmts():
    for stem in ("cd8_tcell_signatures", "exosome_biogenesis"):
        table = pd.read_csv(GENE_SETS / f"{stem}.tsv", sep="\t")
        gmt = raw_gmt(GENE_SETS / f"{stem}.gmt")
        assert list(table["set"]) == list(gmt)
        for row in table.itertuples():
            assert row.genes.split(",") == gmt[row.set][1]
            assert row.n_genes == len(gmt[row.set][1])


def test_exosome_sender_set_has_no_ifng():
    exosome = read_gmt(GENE_SETS / "senders.gmt")["Exosome_biogenesis_core_curated"]
    assert "IFNG" not in exosome
    assert {"TSG101", "PDCD6IP", "SDCBP", "CD63", "RAB27A"} <= set(exosome)
    # the GO set it is curated against does contain IFNG, which is why it was left out
    assert (
        "IFNG"
        in read_gmt(GENE_SETS / "exosome_biogenesis.gmt")["GOBP_EXTRACELLULAR_VESICLE_BIOGENESIS"]
    )


def test_exhaustion_shares_no_gene_with_the_other_senders():
    sets = read_gmt(GENE_SETS / "senders.gmt")
    others = set().union(*(g for n, g in sets.items() if n != "Tcell_exhaustion_SignatuR"))
    assert not set(sets["Tcell_exhaustion_SignatuR"]) & others


EXPECTED_TARGETS = pd.DataFrame(
    [
        ("PLP2", "mirna_target", "negative"),
        ("CD274", "cargo_receptor_or_pathway", "unknown"),
        ("FAS", "cargo_receptor_or_pathway", "unknown"),
        ("TNFRSF10A", "cargo_receptor_or_pathway", "unknown"),
        ("TNFRSF10B", "cargo_receptor_or_pathway", "unknown"),
        ("NOTCH1", "cargo_receptor_or_pathway", "unknown"),
        ("HES1", "cargo_receptor_or_pathway", "unknown"),
        ("CXCL9", "positive_control", "positive"),
        ("CXCL10", "positive_control", "positive"),
        ("STAT1", "positive_control", "positive"),
        ("ACTB", "negative_control", "none"),
        ("GAPDH", "negative_control", "none"),
        ("PGK1", "negative_control", "none"),
    ],
    columns=["gene", "role", "expected_direction"],
)


def test_targets_table_rows():
    targets = pd.read_csv(TARGETS / "targets.tsv", sep="\t")
    assert list(targets.columns) == ["gene", "role", "expected_direction", "cargo", "reference"]
    pd.testing.assert_frame_equal(targets[EXPECTED_TARGETS.columns], EXPECTED_TARGETS)
    assert targets[["cargo", "reference"]].notna().all().all()
    plp2 = targets.set_index("gene").loc["PLP2"]
    assert plp2["cargo"] == "miR-765"
    assert "Zhou" in plp2["reference"]
    assert "Theranostics 2021" in plp2["reference"]


def test_cargo_targets_come_from_the_default_target_table():
    defaults = pd.read_csv(TARGETS / "default_target_genes.tsv", sep="\t")
    targets = pd.read_csv(TARGETS / "targets.tsv", sep="\t")
    cargo = targets[targets["role"].isin(["mirna_target", "cargo_receptor_or_pathway"])]
    assert list(cargo["gene"]) == list(defaults["gene"])
    by_gene = targets.set_index("gene")
    assert by_gene.loc["CD274", "cargo"] == "PD-1 (PDCD1)"
    assert "Qiu" in by_gene.loc["CD274", "reference"]
    assert "Martinez-Lorenzo" in by_gene.loc["FAS", "reference"]


def test_positive_controls_are_hallmark_ifng_response_genes():
    hallmark = read_gmt(GENE_SETS / "h.all.v7.0.symbols.gmt")
    targets = pd.read_csv(TARGETS / "targets.tsv", sep="\t")
    positive = targets.loc[targets["role"] == "positive_control", "gene"]
    assert set(positive) == {"CXCL9", "CXCL10", "STAT1"}
    assert set(positive) <= set(hallmark["HALLMARK_INTERFERON_GAMMA_RESPONSE"])
    assert (
        targets.loc[positive.index, "reference"]
        .str.contains("HALLMARK_INTERFERON_GAMMA_RESPONSE")
        .all()
    )
    # PLP2 is not an IFN-gamma response gene, so the planted negative is not a hallmark artefact
    assert "PLP2" not in hallmark["HALLMARK_INTERFERON_GAMMA_RESPONSE"]


# sha256 of the genome tables as listed in resources/genome/README.md and PROVENANCE_genome.md
GENOME_SHA256 = {
    "hg38_gencode_v27_gene_pos.txt": "7b596f4c6420097162ec514ab1f2e85cf3cceaf29ea1ea55033a6f9a33278ff5",
    "gencode_v19_gene_pos.txt": "3d0d0f279c1555189be497afb40ba59f6723d4d2adc7848f9449ac5de0d429f8",
    "hgnc_alias_table.tsv.gz": "91fd5d747d697c3281f2a38b29acf3903483ec7fdf83e3b0d98bdd402cee9bee",
    "gencode_v48_genes_homo_sapiens.csv.gz": "2ef2138de00aa2b6def4f8779195e40d98bcb4d00556400b40b9cc8d51b4e047",
}


@pytest.mark.parametrize(("file", "sha256"), GENOME_SHA256.items())
def test_genome_files_match_their_provenance(file, sha256):
    digest = hashlib.sha256((RESOURCES / "genome" / file).read_bytes()).hexdigest()
    assert digest == sha256
    provenance = (RESOURCES / "genome" / "PROVENANCE_genome.md").read_text()
    assert sha256 in provenance
    assert sha256 in (RESOURCES / "genome" / "README.md").read_text()


def test_genome_gencode_table_has_protein_coding_symbols():
    table = pd.read_csv(RESOURCES / "genome" / "gencode_v48_genes_homo_sapiens.csv.gz", header=None)
    coding = table[table[4] == "protein_coding"]
    assert len(table) == 78_894
    assert 20_000 <= len(coding) <= 20_200
    assert {"PLP2", "CD8A", "PTPRC", "MT-CO1"} <= set(coding[1])


def _data_files():
    return sorted(
        p
        for p in RESOURCES.rglob("*")
        if p.is_file() and p.suffix != ".md" and not p.name.startswith(".")
    )


@pytest.mark.parametrize("path", _data_files(), ids=lambda p: str(p.relative_to(RESOURCES)))
def test_every_resource_file_has_provenance_text(path):
    """Each data file is named in a Markdown file (README/PROVENANCE/NOTES) of its folder."""
    docs = list(path.parent.glob("*.md"))
    assert docs, f"{path.parent} has no README/PROVENANCE Markdown file"
    text = "\n".join(d.read_text() for d in docs)
    assert path.name in text, f"{path.name} is not described in {[d.name for d in docs]}"


def test_provenance_files_are_copied_unchanged():
    """The curator's notes travel with the gene sets (spot checks on their content)."""
    notes = (GENE_SETS / "NOTES.md").read_text()
    sources = (GENE_SETS / "PROVENANCE.md").read_text()
    assert "Known quirk left in on purpose" in notes
    assert "IOBR/IOBR @ dc49d90" in sources
    assert "HALLMARK_INTERFERON_GAMMA_RESPONSE" in (TARGETS / "PROVENANCE.md").read_text()
