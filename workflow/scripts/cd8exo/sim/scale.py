"""Real-size simulated cohorts for ``make bench-scale``: written to disk block by block.

The cohorts of :mod:`cd8exo.sim.cohort` (the demo's model: cell types with markers,
negative-binomial counts, per-patient noise, the planted CD8 activation -> PLP2 / CXCL9 /
CXCL10 / STAT1 signal of ``resources/demo``), at 10,000 to 1,000,000 cells x 20,000 genes.
:func:`simulate_cohort` holds the whole cohort in memory (patients x genes x cells), which at
a million cells would take hundreds of GB; here the cells are drawn in blocks of
:data:`BLOCK_CELLS` cells of one patient, each from its own generator keyed by
``(seed, patient, block)``, and each block is appended to the h5ad as soon as it is drawn.
So the output does not depend on how many blocks are written at once
(:func:`write_scale_cohort` with any ``chunk_cells`` gives the file
:func:`simulate_scale_cohort` gives in memory), and the generator holds one block
(``BLOCK_CELLS x n_genes`` doubles, about 160 MB at 20,000 genes) plus the ``obs`` strings.
"""

from __future__ import annotations

import argparse
import gzip
import json
import logging
import shutil
import sys
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import anndata as ad
import h5py
import numpy as np
import pandas as pd
from scipy import sparse

from cd8exo._utils import atomic_write
from cd8exo.io.h5csr import CsrWriter, write_anndata_parts
from cd8exo.io.tables import read_gmt, read_targets

# the steps of cohort.simulate_from_specs, reused here patient block by patient block
from cd8exo.sim.cohort import (
    AUTHOR_LABELS,
    CohortSpec,
    SignalSpec,
    SimulatedCohort,
    _barcodes,
    _draw_cells,
    _gene_panel,
    _GenePanel,
    _mean_fractions,
    _patient_table,
    _PatientDraws,
    draw_before_cells,
    label_map,
)
from cd8exo.sim.profiles import MT_PROFILE, TYPES
from cd8exo.sim.sparse_nb import sparse_nb
from cd8exo.sim.target_sets import truth_table

logger = logging.getLogger(__name__)

__all__ = [
    "BLOCK_CELLS",
    "ScaleSpec",
    "cohort_files",
    "make_10x_copy",
    "make_scale_cohort",
    "simulate_scale_cohort",
    "write_scale_cohort",
]

#: Cells drawn at once (one patient's): the unit of the random streams, so a fixed number.
BLOCK_CELLS: int = 1000

# the repository's resources/ (this file is workflow/scripts/cd8exo/sim/scale.py)
_RESOURCES = Path(__file__).resolve().parents[4] / "resources"

# Signatures and targets as in the demo (resources/demo/README.md)
_ACTIVATION = (
    "Chu2023_CD8_c2_Teff",
    "Cytotoxic_cells_Danaher2017",
    "Exosome_biogenesis_core_curated",
)
_INDEPENDENT = ("Tcell_exhaustion_SignatuR",)

_H5_DATA = {"compression": "gzip", "compression_opts": 4, "shuffle": True}


@dataclass(frozen=True, kw_only=True)
class ScaleSpec:
    """Size, signal and seed of a scale cohort.

    Attributes
    ----------
    n_cells
        Cells, low-quality ones included (3%, for QC to remove).
    n_genes
        Genes: the demo's markers, housekeeping, mitochondrial, signature and target genes,
        the rest drawn from the GENCODE v48 protein-coding, then lncRNA, symbols.
    n_patients
        Patients (one tumour sample each); ``None``: ``n_cells / 5000`` within [40, 200].
    median_umi
        Median library size before the cell-type depth factors; the default gives about
        1,500 detected genes per good-quality cell at 20,000 genes.
    effect_size
        Log-scale effect of one standard deviation of the activation latent (demo: 0.5).
    seed
        Seed of every draw.
    """

    n_cells: int = 10_000
    n_genes: int = 20_000
    n_patients: int | None = None
    median_umi: float = 2200.0
    effect_size: float = 0.5
    seed: int = 20261126
    patients: int = field(init=False)

    def __post_init__(self) -> None:
        default = int(np.clip(round(self.n_cells / 5000), 40, 200))
        object.__setattr__(self, "patients", self.n_patients or default)

    @property
    def dataset(self) -> str:
        """Dataset id (sheet row, truth table, file name)."""
        return f"scale_{self.n_cells}"

    @property
    def name(self) -> str:
        """Folder name of this cohort in the cache: every parameter that changes the data."""
        return (
            f"cells{self.n_cells}_genes{self.n_genes}_pat{self.patients}_"
            f"umi{self.median_umi:g}_effect{self.effect_size:g}_seed{self.seed}"
        )


@dataclass(frozen=True)
class _Plan:
    """Everything drawn before the cells: genes, profiles, patients."""

    cohort: CohortSpec
    signal: SignalSpec
    panel: _GenePanel
    profiles: np.ndarray
    draws: _PatientDraws


def _plan(spec: ScaleSpec, *, resources: Path = _RESOURCES) -> _Plan:
    signatures = read_gmt(resources / "gene_sets" / "senders.gmt")
    targets = read_targets(resources / "targets" / "targets.tsv")
    direction = targets.set_index("gene")["expected_direction"]
    signal = SignalSpec(
        signatures=signatures,
        activation_signatures=_ACTIVATION,
        independent_signatures=_INDEPENDENT,
        negative_targets=direction.index[direction == "negative"].tolist(),
        positive_targets=direction.index[direction == "positive"].tolist(),
        null_targets=direction.index[~direction.isin(["negative", "positive"])].tolist(),
        effect_size=spec.effect_size,
    )
    pool = _symbol_pool(resources / "genome" / "gencode_v48_genes_homo_sapiens.csv.gz")
    n_requested = _n_requested(signal)
    cohort = CohortSpec(
        background_pool=pool,
        n_patients=spec.patients,
        n_cells=spec.n_cells,
        n_background_genes=spec.n_genes - n_requested,
        median_umi=spec.median_umi,
        name=spec.dataset,
        patient_prefix="Pt",
        low_cd8_patients=max(1, spec.patients // 20),
    )
    panel, profiles, draws = draw_before_cells(
        cohort=cohort, signal=signal, rng=np.random.default_rng(spec.seed)
    )
    return _Plan(cohort=cohort, signal=signal, panel=panel, profiles=profiles, draws=draws)


def _n_requested(signal: SignalSpec) -> int:
    """Genes :func:`cohort._gene_panel` always includes (markers, targets, signatures...)."""
    probe = CohortSpec(background_pool=(), n_background_genes=0)
    return len(_gene_panel(cohort=probe, signal=signal, rng=np.random.default_rng(0)).genes)


def _symbol_pool(path: Path) -> list[str]:
    """GENCODE symbols: protein-coding first, then lncRNA (20,000 genes need both)."""
    table = pd.read_csv(
        path, header=None, names=["gene_id", "gene_name", "version", "length", "gene_type"]
    )
    named = table[table["gene_name"] != table["gene_id"]]
    coding = named.loc[named["gene_type"] == "protein_coding", "gene_name"]
    lncrna = named.loc[named["gene_type"] == "lncRNA", "gene_name"]
    return pd.concat([coding, lncrna]).drop_duplicates().tolist()


def _patient_rng(spec: ScaleSpec, patient: int, *block: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence(spec.seed, spawn_key=(1, patient, *block)))


def _blocks(spec: ScaleSpec, plan: _Plan) -> Iterator[tuple[sparse.csr_matrix, pd.DataFrame]]:
    """Counts (CSR, float32) and ``obs`` (with ``_low_quality``) of each block of cells."""
    panel, draws = plan.panel, plan.draws
    for patient in range(plan.cohort.n_patients):
        rng = _patient_rng(spec, patient)
        fractions = _mean_fractions(
            patient=patient, profiles=plan.profiles, panel=panel, draws=draws, signal=plan.signal
        )
        cells = _draw_cells(patient=patient, draws=draws, cohort=plan.cohort, rng=rng)
        barcodes = _barcodes(cells.types.size, rng=rng)
        type_idx = np.array([TYPES.index(t) for t in cells.types], dtype=np.int64)
        labels = np.array([_author_label(t) for t in TYPES])[type_idx]
        for block, start in enumerate(range(0, cells.types.size, BLOCK_CELLS)):
            rows = slice(start, start + BLOCK_CELLS)
            counts = _block_counts(
                fractions,
                cell_types=type_idx[rows],
                library=cells.library[rows],
                mt_fraction=cells.mt_fraction[rows],
                plan=plan,
                rng=_patient_rng(spec, patient, block),
            )
            obs = pd.DataFrame(
                {
                    "donor_id": draws.ids[patient],
                    "sample_id": draws.sample_ids[patient],
                    "author_cell_type": labels[rows],
                    "_low_quality": cells.low_quality[rows],
                },
                index=[f"{draws.sample_ids[patient]}_{b}" for b in barcodes[rows]],
            )
            yield counts, obs


def _block_counts(
    fractions: np.ndarray,
    *,
    cell_types: np.ndarray,
    library: np.ndarray,
    mt_fraction: np.ndarray,
    plan: _Plan,
    rng: np.random.Generator,
) -> sparse.csr_matrix:
    """Negative-binomial counts of one block (the model of cohort._patient_cells, drawn
    sparse): nuclear genes from the type's fractions, mitochondrial reads from MT_PROFILE."""
    dispersion = plan.draws.dispersion
    nuclear = sparse_nb(
        fractions,
        cell_types=cell_types,
        scale=library * (1.0 - mt_fraction),
        dispersion=dispersion,
        rng=rng,
    )
    mt_cols = plan.panel.planted.mitochondrial
    mito = sparse_nb(
        MT_PROFILE[None, :],
        cell_types=np.zeros(cell_types.size, dtype=np.int64),
        scale=library * mt_fraction,
        dispersion=dispersion[mt_cols],
        rng=rng,
    ).tocoo()
    mito = sparse.csr_matrix(
        (mito.data, (mito.row, mt_cols[mito.col])), shape=nuclear.shape, dtype=np.float32
    )
    counts = (nuclear + mito).tocsr()
    counts.sort_indices()
    return counts


def _author_label(cell_type: str) -> str:
    return next(label for label, t in AUTHOR_LABELS.items() if t == cell_type)


def _finish_obs(
    parts: Sequence[pd.DataFrame], draws: _PatientDraws
) -> tuple[pd.DataFrame, np.ndarray]:
    obs = pd.concat(parts)
    if not obs.index.is_unique:  # pragma: no cover - 4**16 barcodes per sample
        msg = "Simulated cell barcodes are not unique; use another seed."
        raise RuntimeError(msg)
    low_quality = obs.index[obs.pop("_low_quality").to_numpy()].to_numpy(dtype=str)
    obs["donor_id"] = pd.Categorical(obs["donor_id"], categories=draws.ids)
    obs["sample_id"] = pd.Categorical(obs["sample_id"], categories=draws.sample_ids)
    obs["author_cell_type"] = pd.Categorical(
        obs["author_cell_type"], categories=list(AUTHOR_LABELS)
    )
    return obs, low_quality


def _uns(spec: ScaleSpec, plan: _Plan, low_quality: np.ndarray) -> dict[str, object]:
    signal = plan.signal
    return {
        "simulated": True,
        "description": (
            "SIMULATED data (cd8exo.sim.scale): raw UMI counts of a melanoma-like cohort with "
            "a planted CD8 activation -> tumour target signal; not real patients."
        ),
        "spec": {k: v for k, v in asdict(spec).items() if v is not None},
        "effect_size": float(signal.effect_size),
        "activation_signatures": np.array(list(signal.activation_signatures), dtype=str),
        "independent_signatures": np.array(list(signal.independent_signatures), dtype=str),
        "negative_targets": np.array(list(signal.negative_targets), dtype=str),
        "positive_targets": np.array(list(signal.positive_targets), dtype=str),
        "low_quality_cells": low_quality,
    }


def simulate_scale_cohort(spec: ScaleSpec, *, resources: Path = _RESOURCES) -> SimulatedCohort:
    """The cohort in memory (for sizes that fit): what :func:`write_scale_cohort` writes.

    Parameters
    ----------
    spec
        Size, signal and seed.
    resources
        The repository's ``resources/`` (signatures, targets, GENCODE symbols).
    """
    plan = _plan(spec, resources=resources)
    matrices, parts = zip(*_blocks(spec, plan), strict=True)
    obs, low_quality = _finish_obs(parts, plan.draws)
    adata = ad.AnnData(
        X=sparse.vstack(matrices, format="csr"),
        obs=obs,
        var=pd.DataFrame(index=pd.Index(plan.panel.genes)),
    )
    adata.uns["simulation"] = _uns(spec, plan, low_quality)
    return SimulatedCohort(
        name=spec.dataset,
        adata=adata,
        truth=truth_table(
            plan.signal,
            targets=plan.panel.targets,
            correlated=plan.panel.correlated_targets,
            name=spec.dataset,
        ),
        patients=_patient_table(draws=plan.draws),
    )


def write_scale_cohort(
    spec: ScaleSpec, path: str | Path, *, chunk_cells: int = 20_000, resources: Path = _RESOURCES
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Write the cohort's h5ad to ``path`` (atomically), appending ``chunk_cells`` at a time.

    ``X`` holds raw counts (CSR float32, gzip); ``obs`` ``donor_id``, ``sample_id``,
    ``author_cell_type``; ``uns["simulation"]`` the spec. Returns the truth and patient
    tables.
    """
    plan = _plan(spec, resources=resources)

    def write(tmp: str) -> None:
        with h5py.File(tmp, "w") as f:
            appender = CsrWriter(f.create_group("X"), plan.panel.genes.size, **_H5_DATA)
            pending: list[sparse.csr_matrix] = []
            parts: list[pd.DataFrame] = []
            for counts, obs in _blocks(spec, plan):
                pending.append(counts)
                parts.append(obs)
                if sum(m.shape[0] for m in pending) >= chunk_cells:
                    appender.append(sparse.vstack(pending, format="csr"))
                    pending = []
                    logger.info("%s: %d of %d cells", spec.dataset, appender.n_rows, spec.n_cells)
            if pending:
                appender.append(sparse.vstack(pending, format="csr"))
            appender.close()
            obs, low_quality = _finish_obs(parts, plan.draws)
            write_anndata_parts(
                f,
                obs=obs,
                var=pd.DataFrame(index=pd.Index(plan.panel.genes)),
                uns={"simulation": _uns(spec, plan, low_quality)},
            )

    atomic_write(Path(path), write)
    truth = truth_table(
        plan.signal,
        targets=plan.panel.targets,
        correlated=plan.panel.correlated_targets,
        name=spec.dataset,
    )
    return truth, _patient_table(draws=plan.draws)


def cohort_files(folder: str | Path, spec: ScaleSpec) -> dict[str, Path]:
    """Where :func:`make_scale_cohort` keeps the cohort ``spec`` under the cache ``folder``."""
    target = Path(folder) / spec.name
    return {
        "h5ad": target / f"{spec.dataset}.h5ad",
        "truth": target / "truth.tsv",
        "patients": target / "patients.tsv",
        "label_map": target / "label_map.tsv",
        "meta": target / "meta.json",
    }


def make_10x_copy(files: dict[str, Path], *, chunk_cells: int = 20_000) -> tuple[Path, Path]:
    """The cohort's h5ad as a 10x Matrix Market folder (cached beside it): ``10x/`` with
    ``matrix.mtx.gz`` (genes x cells, entries cell by cell, as Cell Ranger writes them),
    ``features.tsv.gz`` and ``barcodes.tsv.gz``, and ``10x_cells.tsv`` (the cell table:
    ``barcode`` and the h5ad's ``obs`` columns). Written a block of cells at a time.

    Returns the folder and the cell table.
    """
    h5ad = files["h5ad"]
    folder, cells = h5ad.parent / "10x", h5ad.parent / "10x_cells.tsv"
    done = folder / ".complete"
    if done.is_file() and cells.is_file():
        return folder, cells
    partial = h5ad.parent / "10x.partial"
    partial.mkdir(parents=True, exist_ok=True)
    with h5py.File(h5ad, "r") as f:
        obs, var = ad.io.read_elem(f["obs"]), ad.io.read_elem(f["var"])
        group = f["X"]
        indptr = group["indptr"][:].astype(np.int64)
        n_cells, n_genes = len(obs), len(var)
        logger.info("writing %s as a 10x folder (%d entries)", h5ad, indptr[-1])
        with gzip.open(partial / "matrix.mtx.gz", "wt", compresslevel=1) as out:
            out.write("%%MatrixMarket matrix coordinate integer general\n%\n")
            out.write(f"{n_genes} {n_cells} {indptr[-1]}\n")
            for start in range(0, n_cells, chunk_cells):
                stop = min(start + chunk_cells, n_cells)
                first, last = indptr[start], indptr[stop]
                entries = pd.DataFrame(
                    {
                        "gene": group["indices"][first:last].astype(np.int64) + 1,
                        "cell": np.repeat(
                            np.arange(start, stop) + 1, np.diff(indptr[start : stop + 1])
                        ),
                        "count": group["data"][first:last].astype(np.int64),
                    }
                )
                entries.to_csv(out, sep=" ", header=False, index=False)
    features = pd.DataFrame(
        {
            "id": [f"SIM{i:011d}" for i in range(n_genes)],
            "symbol": var.index,
            "type": "Gene Expression",
        }
    )
    features.to_csv(partial / "features.tsv.gz", sep="\t", header=False, index=False)
    pd.Series(obs.index).to_csv(partial / "barcodes.tsv.gz", header=False, index=False)
    table = obs.rename_axis("barcode").reset_index()
    atomic_write(cells, lambda tmp: table.to_csv(tmp, sep="\t", index=False))
    if folder.exists():
        shutil.rmtree(folder)
    partial.rename(folder)
    done.touch()
    return folder, cells


def make_scale_cohort(
    folder: str | Path, spec: ScaleSpec, *, chunk_cells: int = 20_000, resources: Path = _RESOURCES
) -> dict[str, Path]:
    """Generate the cohort into the cache ``folder`` unless it is already there.

    ``meta.json`` is written last, so a cohort interrupted half-way is generated again.

    Returns
    -------
    The files (:func:`cohort_files`): ``h5ad``, ``truth``, ``patients``, ``label_map``,
    ``meta``.
    """
    files = cohort_files(folder, spec)
    if files["meta"].is_file():
        logger.info("scale cohort cached in %s", files["meta"].parent)
        return files
    files["meta"].parent.mkdir(parents=True, exist_ok=True)
    logger.info("generating %s (%s)", spec.dataset, spec.name)
    truth, patients = write_scale_cohort(
        spec, files["h5ad"], chunk_cells=chunk_cells, resources=resources
    )
    atomic_write(files["truth"], lambda tmp: truth.to_csv(tmp, sep="\t", index=False))
    atomic_write(
        files["patients"],
        lambda tmp: patients.to_csv(tmp, sep="\t", index=False, float_format="%.6f"),
    )
    atomic_write(files["label_map"], lambda tmp: label_map().to_csv(tmp, sep="\t", index=False))
    meta = {"spec": asdict(spec), "dataset": spec.dataset}
    atomic_write(files["meta"], lambda tmp: Path(tmp).write_text(json.dumps(meta, indent=1)))
    return files


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: ``python -m cd8exo.sim.scale --cache .cache/scale --n-cells 100000``."""
    parser = argparse.ArgumentParser(
        prog="python -m cd8exo.sim.scale",
        description="Generate (once) a SIMULATED scale cohort into the cache folder.",
    )
    parser.add_argument("--cache", type=Path, default=Path(".cache/scale"))
    parser.add_argument("--n-cells", type=int, nargs="+", default=[10_000])
    parser.add_argument("--n-genes", type=int, default=ScaleSpec.n_genes)
    parser.add_argument("--seed", type=int, default=ScaleSpec.seed)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    for n_cells in args.n_cells:
        spec = ScaleSpec(n_cells=n_cells, n_genes=args.n_genes, seed=args.seed)
        files = make_scale_cohort(args.cache, spec)
        logger.info("%s: %s", spec.dataset, files["h5ad"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
