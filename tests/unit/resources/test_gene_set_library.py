"""resources/gene_sets/library.tsv is the one provenance table of every shipped gene set."""

from pathlib import Path

import pandas as pd
import pytest

from cd8exo.io.tables import read_gmt

GENE_SETS = Path(__file__).resolve().parents[3] / "resources" / "gene_sets"
LIBRARY = pd.read_csv(GENE_SETS / "library.tsv", sep="\t", dtype=str, keep_default_na=False)


@pytest.mark.parametrize(
    "gmt", ["cd8_tcell_signatures.gmt", "exosome_biogenesis.gmt", "h.all.v7.0.symbols.gmt"]
)
def test_every_set_of_every_gmt_is_in_the_table_with_its_genes(gmt):
    sets = read_gmt(GENE_SETS / gmt)
    rows = LIBRARY[LIBRARY["file"] == gmt].set_index("set")
    assert set(rows.index) == set(sets)
    for name, genes in sets.items():
        assert rows.loc[name, "genes"].split(",") == genes
        assert int(rows.loc[name, "n_genes"]) == len(genes)
        assert rows.loc[name, "source"]
        assert rows.loc[name, "read_from"]


def test_default_senders_are_library_sets_gene_for_gene():
    library = LIBRARY.set_index("set")
    for name, genes in read_gmt(GENE_SETS / "senders.gmt").items():
        assert library.loc[name, "genes"].split(",") == genes


def test_library_covers_the_categories_the_workflow_needs():
    categories = set(LIBRARY["category"])
    assert {
        "activation_effector",
        "cytotoxicity",
        "exhaustion",
        "stemness_progenitor",
        "proliferation",
        "hallmark",
    } <= categories
    exosome = LIBRARY[LIBRARY["file"] == "exosome_biogenesis.gmt"]
    ifng_free = exosome[~exosome["genes"].str.split(",").apply(lambda g: "IFNG" in g)]
    assert "Exosome_biogenesis_core_curated" in set(ifng_free["set"])
