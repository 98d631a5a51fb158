"""The bundled demo cohorts: written to resources/demo/ by `python -m cd8exo.sim.demo`."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

import anndata as ad
import h5py
import pandas as pd

from cd8exo._utils import atomic_write
from cd8exo.io.cargo import cargo_target_sets, read_cargo_table
from cd8exo.io.tables import read_gmt, read_targets
from cd8exo.sim.cohort import SimulatedCohort, label_map, simulate_cohort

logger = logging.getLogger(__name__)

__all__ = ["DEMO_SEED", "DEMO_SEED_B", "build_demo", "main", "write_cohort"]

#: Seeds of the bundled demo cohorts (``resources/demo/``).
DEMO_SEED: int = 2024


DEMO_SEED_B: int = 2025

#: The target sets simulated in the demo cohorts (their genes added to the 2,201 others) and
#: the one repressed by the activation latent in malignant cells.
DEMO_SET_SOURCE: str = "__MSIGDB71_MIRDB"


DEMO_PLANTED_SET: str = "miR-765__MSIGDB71_MIRDB"


#: Share of the planted set's genes repressed, and the log-scale repression per SD of the
#: activation latent (both cohorts; a set also varies between tumours as a programme).
DEMO_SET_FRACTION: float = 0.5


DEMO_SET_EFFECT: float = 0.5


# the repository's resources/ (this file is workflow/scripts/cd8exo/sim/demo.py)
_RESOURCES = Path(__file__).resolve().parents[4] / "resources"


def write_cohort(
    cohort: SimulatedCohort,
    outdir: str | Path,
    *,
    tables_prefix: str = "",
    overwrite: bool = False,
) -> dict[str, Path]:
    """Write a simulated cohort: ``<name>.h5ad`` (gzip), ``truth.tsv`` and ``patients.tsv``.

    Each file is written under a temporary name in ``outdir`` and renamed when complete.

    Parameters
    ----------
    cohort
        The output of :func:`simulate_cohort`.
    outdir
        Directory to write into (created if missing).
    tables_prefix
        Prepended to the table names, e.g. ``"demo_cohort_b."`` gives
        ``demo_cohort_b.truth.tsv``, so that several cohorts can share a directory.
    overwrite
        Replace existing files; otherwise an existing file is an error.

    Returns
    -------
    The written paths, keyed ``h5ad``, ``truth`` and ``patients``.
    """
    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    paths = {
        "h5ad": outdir / f"{cohort.name}.h5ad",
        "truth": outdir / f"{tables_prefix}truth.tsv",
        "patients": outdir / f"{tables_prefix}patients.tsv",
    }
    existing = [str(p) for p in paths.values() if p.exists()]
    if existing and not overwrite:
        msg = (
            f"{existing} already exist; pass overwrite=True (CLI: --overwrite) to replace them "
            "or choose another output directory."
        )
        raise FileExistsError(msg)
    atomic_write(paths["h5ad"], lambda tmp: _write_h5ad_compact(cohort.adata, tmp))
    atomic_write(paths["truth"], lambda tmp: cohort.truth.to_csv(tmp, sep="\t", index=False))
    atomic_write(
        paths["patients"],
        lambda tmp: cohort.patients.to_csv(tmp, sep="\t", index=False, float_format="%.6f"),
    )
    return paths


def _write_h5ad_compact(adata: ad.AnnData, path: str | Path) -> None:
    """Write an h5ad with gzip + byte shuffle (about half the size of plain gzip for CSR)."""
    without_uns = ad.AnnData(X=adata.X, obs=adata.obs, var=adata.var)
    ad.io.write_h5ad(
        path,
        without_uns,
        dataset_kwargs={"compression": "gzip", "compression_opts": 9, "shuffle": True},
    )
    # uns holds scalars, which HDF5 cannot chunk or filter: write it without filters
    with h5py.File(path, "a") as f:
        del f["uns"]
        ad.io.write_elem(f, "uns", dict(adata.uns))


def _protein_coding_symbols(path: Path) -> list[str]:
    table = pd.read_csv(
        path, header=None, names=["gene_id", "gene_name", "version", "length", "gene_type"]
    )
    coding = table[
        (table["gene_type"] == "protein_coding") & (table["gene_name"] != table["gene_id"])
    ]
    return coding["gene_name"].drop_duplicates().tolist()


def build_demo(
    resources: str | Path, *, seed: int = DEMO_SEED, seed_b: int = DEMO_SEED_B
) -> list[SimulatedCohort]:
    """Simulate the two bundled demo cohorts from the curated resources.

    ``demo_cohort`` (16 patients, 4,800 cells, effect 0.5, seed ``seed``) and
    ``demo_cohort_b`` (24 patients, 4,000 cells, effect 0.3, seed ``seed_b``), both with the
    sender sets of ``gene_sets/senders.gmt`` (activation = Chu2023_CD8_c2_Teff,
    Cytotoxic_cells_Danaher2017, Exosome_biogenesis_core_curated; independent =
    Tcell_exhaustion_SignatuR), the targets of ``targets/targets.tsv``, 2,000 background
    genes drawn from the protein-coding symbols of GENCODE v48, and the genes of the cargo
    miRNAs' miRDB target sets (``targets/cargo_mirna_targets.gmt``, the miRNAs of
    ``targets/cargo_mirnas.tsv``): half of ``miR-765__MSIGDB71_MIRDB``'s genes are repressed
    by ``exp(-0.5 * a_p)`` in malignant cells (:mod:`cd8exo.sim.target_sets`).

    Parameters
    ----------
    resources
        The ``resources/`` directory of the repository.
    seed, seed_b
        Seeds of the two cohorts.
    """

    resources = Path(resources)
    signatures = read_gmt(resources / "gene_sets" / "senders.gmt")
    target_sets, _ = cargo_target_sets(
        read_gmt(resources / "targets" / "cargo_mirna_targets.gmt"),
        read_cargo_table(resources / "targets" / "cargo_mirnas.tsv"),
    )
    targets = read_targets(resources / "targets" / "targets.tsv")
    direction = targets.set_index("gene")["expected_direction"]
    pool = _protein_coding_symbols(resources / "genome" / "gencode_v48_genes_homo_sapiens.csv.gz")
    common = {
        "signatures": signatures,
        "activation_signatures": [
            "Chu2023_CD8_c2_Teff",
            "Cytotoxic_cells_Danaher2017",
            "Exosome_biogenesis_core_curated",
        ],
        "independent_signatures": ["Tcell_exhaustion_SignatuR"],
        "negative_targets": direction.index[direction == "negative"].tolist(),
        "positive_targets": direction.index[direction == "positive"].tolist(),
        "null_targets": direction.index[~direction.isin(["negative", "positive"])].tolist(),
        "background_pool": pool,
        "n_background_genes": 2000,
        "low_cd8_patients": 1,
        # the predicted (miRDB) target sets of the cargo miRNAs; miR-765's is repressed
        "target_sets": {k: v for k, v in target_sets.items() if k.endswith(DEMO_SET_SOURCE)},
        "planted_sets": [DEMO_PLANTED_SET],
        "set_fraction": DEMO_SET_FRACTION,
        "set_effect_size": DEMO_SET_EFFECT,
    }
    cohort_a = simulate_cohort(
        **common,
        n_patients=16,
        n_cells=4800,
        effect_size=0.5,
        rng=seed,
        name="demo_cohort",
        patient_prefix="MelA",
    )
    cohort_b = simulate_cohort(
        **common,
        n_patients=24,
        n_cells=4000,
        effect_size=0.3,
        rng=seed_b,
        name="demo_cohort_b",
        patient_prefix="MelB",
    )
    return [cohort_a, cohort_b]


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: ``python -m cd8exo.sim.demo --out resources/demo [--seed N]``."""
    parser = argparse.ArgumentParser(
        prog="python -m cd8exo.sim.demo",
        description="Regenerate the bundled, SIMULATED demo cohorts (deterministic).",
    )
    parser.add_argument("--out", required=True, type=Path, help="output directory")
    parser.add_argument(
        "--resources",
        type=Path,
        default=_RESOURCES,
        help="the repository's resources/ directory (default: %(default)s)",
    )
    parser.add_argument("--seed", type=int, default=DEMO_SEED, help="seed of demo_cohort")
    parser.add_argument("--seed-b", type=int, default=DEMO_SEED_B, help="seed of demo_cohort_b")
    parser.add_argument("--overwrite", action="store_true", help="replace existing files")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    cohort_a, cohort_b = build_demo(args.resources, seed=args.seed, seed_b=args.seed_b)
    write_cohort(cohort_a, args.out, overwrite=args.overwrite)
    write_cohort(cohort_b, args.out, tables_prefix="demo_cohort_b.", overwrite=args.overwrite)
    label_path = args.out / "label_map.tsv"
    if label_path.exists() and not args.overwrite:
        msg = f"{label_path} already exists; pass --overwrite to replace it."
        raise FileExistsError(msg)
    atomic_write(label_path, lambda tmp: label_map().to_csv(tmp, sep="\t", index=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
