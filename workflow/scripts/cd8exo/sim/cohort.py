"""Simulated tumour scRNA-seq cohorts with a planted sender-receiver association.

:func:`simulate_cohort` (keyword arguments) and :func:`simulate_from_specs`
(:class:`~cd8exo.sim.specs.CohortSpec` and :class:`~cd8exo.sim.specs.SignalSpec`) draw a
cohort in steps: the genes, the cell-type expression profiles (:mod:`cd8exo.sim.profiles`),
the patients (latents of :mod:`cd8exo.sim.latent`, composition and noise), the cells of each
patient, then the AnnData, patient and truth tables.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import NamedTuple

import anndata as ad
import numpy as np
import pandas as pd
from scipy import sparse

from cd8exo._utils import RNGLike
from cd8exo.sim.latent import correlated_latent, residualised_latent, spread_latent
from cd8exo.sim.profiles import (
    DEPTH_FACTOR,
    HOUSEKEEPING_GENES,
    MARKER_GENES,
    MITOCHONDRIAL_GENES,
    MT_PROFILE,
    TYPES,
    cell_type_profiles,
    composition,
)
from cd8exo.sim.specs import CohortSpec, SignalSpec, check_specs, union
from cd8exo.sim.target_sets import add_target_set_genes, truth_table

logger = logging.getLogger(__name__)

__all__ = [
    "AUTHOR_LABELS",
    "CohortSpec",
    "SignalSpec",
    "SimulatedCohort",
    "draw_before_cells",
    "label_map",
    "simulate_cohort",
    "simulate_from_specs",
]

#: The authors' cell-type labels written to ``obs["author_cell_type"]`` and the
#: :data:`cd8exo.vocabulary.CELL_TYPES` entry each one maps onto.
AUTHOR_LABELS: dict[str, str] = {
    "T cells CD8+": "CD8_T",
    "T cells CD4+": "CD4_T",
    "NK cells": "NK",
    "B cells": "B",
    "Plasma cells": "plasma",
    "Myeloid": "myeloid",
    "CAFs": "fibroblast",
    "Endothelial": "endothelial",
    "Cancer cells": "malignant",
}


@dataclass(frozen=True)
class SimulatedCohort:
    """A simulated cohort and the truth planted in it.

    Attributes
    ----------
    name
        Dataset id, used as file name by :func:`write_cohort`.
    adata
        Cells x genes; ``X`` raw UMI counts (CSR, float32); ``obs`` columns ``donor_id``,
        ``sample_id``, ``author_cell_type`` (author-like, see :data:`AUTHOR_LABELS`);
        ``uns["simulation"]`` the parameters (``seed`` is -1 when a Generator was passed) and
        ``low_quality_cells``, the names of the cells simulated as low quality.
    truth
        One row per (signature, target): ``dataset``, ``signature``, ``target``,
        ``expected_sign`` (-1, 0 or 1).
    patients
        One row per patient: ``patient``, ``sample``, the latent ``activation`` (``a_p``) and
        ``independent`` (``e_p``) levels, cell counts and ``low_cd8`` (planted too few CD8+
        T cells); with ``correlated_targets``, also the latent ``correlated`` (``c_p``).
    """

    name: str
    adata: ad.AnnData
    truth: pd.DataFrame
    patients: pd.DataFrame


def label_map() -> pd.DataFrame:
    """Return the author label -> vocabulary table (columns ``label``, ``cell_type``)."""
    return pd.DataFrame({"label": list(AUTHOR_LABELS), "cell_type": list(AUTHOR_LABELS.values())})


def simulate_cohort(
    *,
    n_patients: int = 16,
    n_cells: int = 4800,
    n_background_genes: int = 2000,
    signatures: Mapping[str, Sequence[str]],
    activation_signatures: Sequence[str],
    independent_signatures: Sequence[str],
    negative_targets: Sequence[str] = ("PLP2",),
    positive_targets: Sequence[str] = ("CXCL9", "CXCL10", "STAT1"),
    null_targets: Sequence[str] = (),
    extra_genes: Sequence[str] = (),
    background_pool: Sequence[str],
    effect_size: float = 0.5,
    independent_effect_size: float | None = None,
    rng: RNGLike,
    low_cd8_patients: int = 1,
    low_quality_fraction: float = 0.03,
    median_umi: float = 2500.0,
    patient_noise_sd: float = 0.15,
    tumour_heterogeneity_sd: float = 0.2,
    name: str = "demo_cohort",
    patient_prefix: str = "P",
    correlated_targets: Sequence[str] = (),
    target_correlation: float = 0.0,
    correlated_effect_size: float | None = None,
    target_sets: Mapping[str, Sequence[str]] = MappingProxyType({}),
    planted_sets: Sequence[str] = (),
    set_fraction: float = 0.5,
    set_effect_size: float | None = None,
) -> SimulatedCohort:
    """Simulate a tumour scRNA-seq cohort with a planted CD8 activation -> target signal.

    Counts are negative-binomial (gene-wise dispersion) around
    ``library size x cell-type profile x patient effects``. Cell-type proportions vary per
    patient (Dirichlet around ~12% CD8+ T and ~40% malignant cells); gene abundances are
    log-normal, with cell-type markers (:data:`~cd8exo.sim.profiles.MARKER_GENES`),
    housekeeping and ribosomal genes (:data:`~cd8exo.sim.profiles.HOUSEKEEPING_GENES`) and
    ~3.5% mitochondrial reads. A share of cells are low quality (few UMIs, 30-70%
    mitochondrial) for the QC step to remove. Every (patient, gene) carries log-normal noise
    (``patient_noise_sd``), malignant cells an extra patient-specific term
    (``tumour_heterogeneity_sd``, inter-tumour heterogeneity).

    The keyword arguments are the fields of :class:`~cd8exo.sim.specs.CohortSpec`
    (``n_patients``, ``n_cells``, ``n_background_genes``, ``background_pool``,
    ``extra_genes``, ``low_cd8_patients``, ``low_quality_fraction``, ``median_umi``,
    ``patient_noise_sd``, ``tumour_heterogeneity_sd``, ``name``, ``patient_prefix``) and of
    :class:`~cd8exo.sim.specs.SignalSpec` (``signatures``, ``activation_signatures``,
    ``independent_signatures``, ``negative_targets``, ``positive_targets``, ``null_targets``,
    ``effect_size``, ``independent_effect_size``, ``correlated_targets``,
    ``target_correlation``, ``correlated_effect_size``, ``target_sets``, ``planted_sets``,
    ``set_fraction``, ``set_effect_size``), documented there, with the same
    defaults; and ``rng``, a seed or generator (the same seed gives identical output). They
    are passed on to :func:`simulate_from_specs` as the two specs.

    Returns
    -------
    The cohort: ``adata``, ``truth`` and ``patients`` (see :class:`SimulatedCohort`).

    Raises
    ------
    ValueError
        If a signature name is unknown, a gene is in both an activation and an independent
        signature, a gene is both a negative and a positive target, the background pool is
        too small, a size parameter is out of range, ``target_correlation`` is outside
        [-1, 1], or a correlated target is also a negative, positive or null target.
    """
    cohort = CohortSpec(
        background_pool=background_pool,
        n_patients=n_patients,
        n_cells=n_cells,
        n_background_genes=n_background_genes,
        extra_genes=extra_genes,
        low_cd8_patients=low_cd8_patients,
        low_quality_fraction=low_quality_fraction,
        median_umi=median_umi,
        patient_noise_sd=patient_noise_sd,
        tumour_heterogeneity_sd=tumour_heterogeneity_sd,
        name=name,
        patient_prefix=patient_prefix,
    )
    signal = SignalSpec(
        signatures=signatures,
        activation_signatures=activation_signatures,
        independent_signatures=independent_signatures,
        negative_targets=negative_targets,
        positive_targets=positive_targets,
        null_targets=null_targets,
        effect_size=effect_size,
        independent_effect_size=independent_effect_size,
        correlated_targets=correlated_targets,
        target_correlation=target_correlation,
        correlated_effect_size=correlated_effect_size,
        target_sets=target_sets,
        planted_sets=planted_sets,
        set_fraction=set_fraction,
        set_effect_size=set_effect_size,
    )
    return simulate_from_specs(cohort=cohort, signal=signal, rng=rng)


def simulate_from_specs(*, cohort: CohortSpec, signal: SignalSpec, rng: RNGLike) -> SimulatedCohort:
    """Simulate the cohort ``cohort`` (patients, cells, genes) with the planted ``signal``
    (signatures, targets, effects) from ``rng`` (a seed or generator: the same seed gives
    the same cohort); the model is described at :func:`simulate_cohort`.

    Returns ``adata``, ``truth`` and ``patients`` (:class:`SimulatedCohort`); raises
    ``ValueError`` as :func:`simulate_cohort` does.
    """
    gen = np.random.default_rng(rng)
    # 1-3. genes, cell-type profiles, patients
    panel, profiles, draws = draw_before_cells(cohort=cohort, signal=signal, rng=gen)
    # 4. cells, patient by patient
    blocks: list[sparse.csr_matrix] = []
    obs_parts: list[pd.DataFrame] = []
    for patient in range(cohort.n_patients):
        fractions = _mean_fractions(
            patient=patient, profiles=profiles, panel=panel, draws=draws, signal=signal
        )
        block, obs = _patient_cells(
            patient=patient, fractions=fractions, panel=panel, draws=draws, cohort=cohort, rng=gen
        )
        blocks.append(block)
        obs_parts.append(obs)
    # 5. the AnnData, the patient table and the truth
    adata, low_quality_cells = _assemble(
        blocks=blocks, obs_parts=obs_parts, genes=panel.genes, draws=draws
    )
    # 6. target-set genes (a spawned generator: every count above stays as it is)
    cell_types = adata.obs["author_cell_type"].map(AUTHOR_LABELS).to_numpy(dtype=str)
    adata, set_record = add_target_set_genes(
        adata,
        cohort=cohort,
        signal=signal,
        activation=draws.activation,
        cell_types=cell_types,
        rng=gen,
    )
    adata.uns["simulation"] = (
        _simulation_record(signal=signal, panel=panel, low_quality_cells=low_quality_cells, rng=rng)
        | set_record
    )
    truth = truth_table(
        signal, targets=panel.targets, correlated=panel.correlated_targets, name=cohort.name
    )
    logger.info(
        "Simulated %s: %d cells x %d genes, %d patients (%d with < 10 CD8+ T cells), "
        "%d low-quality cells",
        cohort.name,
        adata.n_obs,
        adata.n_vars,
        cohort.n_patients,
        int(draws.low_cd8.sum()),
        low_quality_cells.size,
    )
    return SimulatedCohort(
        name=cohort.name, adata=adata, truth=truth, patients=_patient_table(draws=draws)
    )


def draw_before_cells(
    *, cohort: CohortSpec, signal: SignalSpec, rng: np.random.Generator
) -> tuple[_GenePanel, np.ndarray, _PatientDraws]:
    """Steps 1-3 of :func:`simulate_from_specs` (the specs checked first): the gene panel
    and the columns of the planted genes, the cell-type expression profiles (UMIs per 10k,
    before normalisation) and the patients' latents, composition and noise, drawn from
    ``rng`` in this order. :mod:`cd8exo.sim.scale` draws its cells from them block by
    block."""
    check_specs(cohort=cohort, signal=signal)
    panel = _gene_panel(cohort=cohort, signal=signal, rng=rng)
    profiles = cell_type_profiles(
        panel.genes,
        gene_index=panel.index,
        signature_genes=union(signal.signatures.values()),
        targets=panel.targets,
        is_mt=panel.is_mt,
        rng=rng,
    )
    draws = _draw_patients(cohort=cohort, signal=signal, n_genes=panel.genes.size, rng=rng)
    return panel, profiles, draws


class _Planted(NamedTuple):
    """Column indices of the genes that carry a planted effect or are mitochondrial."""

    activation: np.ndarray
    independent: np.ndarray
    negative: np.ndarray
    positive: np.ndarray
    correlated: np.ndarray
    mitochondrial: np.ndarray


@dataclass(frozen=True)
class _GenePanel:
    """The simulated genes (sorted symbols) and where the planted ones are."""

    genes: np.ndarray
    index: dict[str, int]
    is_mt: np.ndarray
    targets: list[str]
    correlated_targets: list[str]
    planted: _Planted


@dataclass(frozen=True)
class _PatientDraws:
    """The patients' draws (``noise``, ``tumour_noise``: patients x genes), and the gene-wise
    negative-binomial ``dispersion`` drawn with them."""

    ids: list[str]
    sample_ids: list[str]
    activation: np.ndarray
    independent: np.ndarray
    correlated: np.ndarray | None
    counts_by_type: np.ndarray
    low_cd8: np.ndarray
    depth: np.ndarray
    noise: np.ndarray
    tumour_noise: np.ndarray
    dispersion: np.ndarray


class _Cells(NamedTuple):
    """The cells of one patient: types, library sizes, mitochondrial fractions, quality."""

    types: np.ndarray
    library: np.ndarray
    mt_fraction: np.ndarray
    low_quality: np.ndarray


def _gene_panel(*, cohort: CohortSpec, signal: SignalSpec, rng: np.random.Generator) -> _GenePanel:
    """The requested genes plus background genes drawn from the pool."""
    correlated_targets = union([signal.correlated_targets])
    targets = union(
        [signal.negative_targets, signal.positive_targets, signal.null_targets, correlated_targets]
    )
    requested = union(
        [
            list(MARKER_GENES),
            MITOCHONDRIAL_GENES,
            list(HOUSEKEEPING_GENES),
            *signal.signatures.values(),
            targets,
            cohort.extra_genes,
        ]
    )
    background = _draw_background(
        cohort.background_pool, exclude=set(requested), n=cohort.n_background_genes, rng=rng
    )
    genes = np.array(sorted(set(requested) | set(background)))
    index = {g: i for i, g in enumerate(genes)}

    def columns(names: Sequence[str]) -> np.ndarray:
        return np.array([index[g] for g in names], dtype=int)

    planted = _Planted(
        activation=columns(union(signal.signatures[s] for s in signal.activation_signatures)),
        independent=columns(union(signal.signatures[s] for s in signal.independent_signatures)),
        negative=columns(union([signal.negative_targets])),
        positive=columns(union([signal.positive_targets])),
        correlated=columns(correlated_targets),
        mitochondrial=columns(MITOCHONDRIAL_GENES),
    )
    return _GenePanel(
        genes=genes,
        index=index,
        is_mt=np.array([g.startswith("MT-") for g in genes]),
        targets=targets,
        correlated_targets=correlated_targets,
        planted=planted,
    )


def _draw_background(
    pool: Sequence[str], *, exclude: set[str], n: int, rng: np.random.Generator
) -> list[str]:
    candidates = [g for g in union([pool]) if g not in exclude and not g.startswith("MT-") and g]
    if len(candidates) < n:
        msg = (
            f"The background pool has {len(candidates)} usable symbols but n_background_genes={n}; "
            "pass a larger pool (e.g. all protein-coding GENCODE symbols) or ask for fewer genes."
        )
        raise ValueError(msg)
    chosen = rng.choice(len(candidates), size=n, replace=False)
    return [candidates[i] for i in np.sort(chosen)]


def _draw_patients(
    *, cohort: CohortSpec, signal: SignalSpec, n_genes: int, rng: np.random.Generator
) -> _PatientDraws:
    """Latents, cell-type composition, depth and noise of every patient, in this order."""
    n_patients = cohort.n_patients
    ids = [f"{cohort.patient_prefix}{i + 1:02d}" for i in range(n_patients)]
    activation = spread_latent(n_patients, rng=rng)
    independent = residualised_latent(activation, rng=rng)
    counts_by_type = composition(
        n_patients, cohort.n_cells, low_cd8_patients=cohort.low_cd8_patients, rng=rng
    )
    depth = np.exp(rng.normal(0.0, 0.2, size=n_patients))
    noise = rng.normal(0.0, cohort.patient_noise_sd, size=(n_patients, n_genes))
    tumour_noise = rng.normal(0.0, cohort.tumour_heterogeneity_sd, size=(n_patients, n_genes))
    dispersion = np.exp(rng.normal(np.log(0.2), 0.5, size=n_genes))
    correlated = None
    if signal.correlated_targets:
        correlated = correlated_latent(activation, correlation=signal.target_correlation, rng=rng)
    return _PatientDraws(
        ids=ids,
        sample_ids=[f"{p}_tumour" for p in ids],
        activation=activation,
        independent=independent,
        correlated=correlated,
        counts_by_type=counts_by_type,
        low_cd8=counts_by_type[:, TYPES.index("CD8_T")] < 10,
        depth=depth,
        noise=noise,
        tumour_noise=tumour_noise,
        dispersion=dispersion,
    )


def _mean_fractions(
    *,
    patient: int,
    profiles: np.ndarray,
    panel: _GenePanel,
    draws: _PatientDraws,
    signal: SignalSpec,
) -> np.ndarray:
    """Per-type mean expression fractions of ``patient``, with the planted effects."""
    planted = panel.planted
    activation = draws.activation[patient]
    independent = draws.independent[patient]
    fractions = np.empty(profiles.shape)
    for t, cell_type in enumerate(TYPES):
        log_mu = np.log(profiles[t]) + draws.noise[patient]
        if cell_type == "malignant":
            log_mu = log_mu + draws.tumour_noise[patient]
        frac = np.exp(log_mu)
        frac[panel.is_mt] = 0.0
        frac /= frac.sum()
        if cell_type == "CD8_T":
            frac[planted.activation] *= np.exp(signal.effect_size * activation)
            frac[planted.independent] *= np.exp(signal.independent_effect * independent)
        elif cell_type == "malignant":
            frac[planted.negative] *= np.exp(-signal.effect_size * activation)
            frac[planted.positive] *= np.exp(signal.effect_size * activation)
            if draws.correlated is not None:
                correlated = draws.correlated[patient]
                frac[planted.correlated] *= np.exp(signal.correlated_effect * correlated)
        fractions[t] = frac
    return fractions


def _patient_cells(
    *,
    patient: int,
    fractions: np.ndarray,
    panel: _GenePanel,
    draws: _PatientDraws,
    cohort: CohortSpec,
    rng: np.random.Generator,
) -> tuple[sparse.csr_matrix, pd.DataFrame]:
    """Counts (CSR) and ``obs`` of the cells of ``patient``."""
    cells = _draw_cells(patient=patient, draws=draws, cohort=cohort, rng=rng)
    type_idx = np.array([TYPES.index(t) for t in cells.types])
    mu = fractions[type_idx] * (cells.library * (1.0 - cells.mt_fraction))[:, None]
    mt_idx = panel.planted.mitochondrial
    mu[:, mt_idx] = (cells.library * cells.mt_fraction)[:, None] * MT_PROFILE[None, :]
    # negative binomial as a gamma-Poisson mixture, gene-wise dispersion
    shape = 1.0 / draws.dispersion
    lam = rng.gamma(shape[None, :], (mu * draws.dispersion[None, :]))
    counts = rng.poisson(lam).astype(np.float32)
    barcodes = _barcodes(cells.types.size, rng=rng)
    obs = pd.DataFrame(
        {
            "donor_id": draws.ids[patient],
            "sample_id": draws.sample_ids[patient],
            "author_cell_type": [_label_of(t) for t in cells.types],
            "_low_quality": cells.low_quality,
        },
        index=[f"{draws.sample_ids[patient]}_{b}" for b in barcodes],
    )
    return sparse.csr_matrix(counts), obs


def _draw_cells(
    *, patient: int, draws: _PatientDraws, cohort: CohortSpec, rng: np.random.Generator
) -> _Cells:
    """Cell types in random order, library sizes and mitochondrial fractions of ``patient``.

    A share of the cells are low quality: few UMIs, many of them mitochondrial.
    """
    cell_types = np.repeat(np.array(TYPES), draws.counts_by_type[patient])
    cell_types = cell_types[rng.permutation(cell_types.size)]
    n_p = cell_types.size
    depth = np.array([DEPTH_FACTOR[t] for t in cell_types])
    library = (
        cohort.median_umi * draws.depth[patient] * depth * np.exp(rng.normal(0.0, 0.35, size=n_p))
    )
    mt_fraction = np.clip(np.exp(rng.normal(np.log(0.035), 0.35, size=n_p)), 0.005, 0.15)
    low_quality = rng.random(n_p) < cohort.low_quality_fraction
    n_low = int(low_quality.sum())
    library[low_quality] = rng.uniform(250.0, 700.0, size=n_low)
    mt_fraction[low_quality] = rng.uniform(0.3, 0.7, size=n_low)
    return _Cells(
        types=cell_types, library=library, mt_fraction=mt_fraction, low_quality=low_quality
    )


def _assemble(
    *,
    blocks: Sequence[sparse.csr_matrix],
    obs_parts: Sequence[pd.DataFrame],
    genes: np.ndarray,
    draws: _PatientDraws,
) -> tuple[ad.AnnData, np.ndarray]:
    """The AnnData of all patients' cells, and the names of the low-quality cells."""
    obs = pd.concat(obs_parts)
    if not obs.index.is_unique:  # pragma: no cover - 4**16 barcodes per sample
        msg = "Simulated cell barcodes are not unique; use another seed."
        raise RuntimeError(msg)
    low_quality_cells = obs.index[obs.pop("_low_quality").to_numpy()].to_numpy(dtype=str)
    obs["donor_id"] = pd.Categorical(obs["donor_id"], categories=draws.ids)
    obs["sample_id"] = pd.Categorical(obs["sample_id"], categories=draws.sample_ids)
    obs["author_cell_type"] = pd.Categorical(
        obs["author_cell_type"], categories=list(AUTHOR_LABELS)
    )
    X = sparse.vstack(blocks, format="csr")
    X.sort_indices()
    adata = ad.AnnData(X=X, obs=obs, var=pd.DataFrame(index=pd.Index(genes, name=None)))
    return adata, low_quality_cells


def _simulation_record(
    *,
    signal: SignalSpec,
    panel: _GenePanel,
    low_quality_cells: np.ndarray,
    rng: RNGLike,
) -> dict[str, object]:
    """``uns["simulation"]``: what was simulated, with which parameters."""
    record = {
        "simulated": True,
        "description": (
            "SIMULATED data (cd8exo.simulate): raw UMI counts of a melanoma-like cohort with a "
            "planted CD8 activation -> tumour target signal; not real patients."
        ),
        "seed": int(rng) if isinstance(rng, int | np.integer) else -1,
        "effect_size": float(signal.effect_size),
        "independent_effect_size": float(signal.independent_effect),
        "activation_signatures": np.array(list(signal.activation_signatures), dtype=str),
        "independent_signatures": np.array(list(signal.independent_signatures), dtype=str),
        "negative_targets": np.array(list(signal.negative_targets), dtype=str),
        "positive_targets": np.array(list(signal.positive_targets), dtype=str),
        "low_quality_cells": low_quality_cells,
    }
    if panel.correlated_targets:
        record |= {
            "correlated_targets": np.array(panel.correlated_targets, dtype=str),
            "target_correlation": float(signal.target_correlation),
            "correlated_effect_size": float(signal.correlated_effect),
        }
    return record


def _patient_table(*, draws: _PatientDraws) -> pd.DataFrame:
    patients = pd.DataFrame(
        {
            "patient": draws.ids,
            "sample": draws.sample_ids,
            "activation": draws.activation,
            "independent": draws.independent,
            "n_cells": draws.counts_by_type.sum(axis=1),
            "n_cd8_t": draws.counts_by_type[:, TYPES.index("CD8_T")],
            "n_malignant": draws.counts_by_type[:, TYPES.index("malignant")],
            "low_cd8": draws.low_cd8,
        }
    )
    if draws.correlated is not None:
        patients["correlated"] = draws.correlated
    return patients


def _barcodes(n: int, *, rng: np.random.Generator) -> list[str]:
    letters = np.array(list("ACGT"))
    codes = letters[rng.integers(0, 4, size=(n, 16))]
    return ["".join(row) + "-1" for row in codes]


def _label_of(cell_type: str) -> str:
    return next(label for label, t in AUTHOR_LABELS.items() if t == cell_type)
