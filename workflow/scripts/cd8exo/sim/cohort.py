"""Simulated tumour scRNA-seq cohorts with a planted sender-receiver association."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import anndata as ad
import numpy as np
import pandas as pd
from scipy import sparse

logger = logging.getLogger(__name__)

__all__ = [
    "AUTHOR_LABELS",
    "HOUSEKEEPING_GENES",
    "MARKER_GENES",
    "MITOCHONDRIAL_GENES",
    "SimulatedCohort",
    "label_map",
    "simulate_cohort",
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


# Cohort-wide expected cell-type composition of a melanoma biopsy (fractions of cells).
_BASE_PROPORTIONS: dict[str, float] = {
    "CD8_T": 0.125,
    "CD4_T": 0.09,
    "NK": 0.04,
    "B": 0.05,
    "plasma": 0.03,
    "myeloid": 0.10,
    "fibroblast": 0.10,
    "endothelial": 0.065,
    "malignant": 0.40,
}


_TYPES: tuple[str, ...] = tuple(_BASE_PROPORTIONS)


#: Cell-type marker genes: gene -> {cell type: expected UMIs per 10,000 in that type}.
#: Types not listed express the gene at ~0.5% of its lowest listed level.
#: Genes follow scGate (CD8 identity), Tirosh 2016 Table S3 (melanoma, CAF, endothelial)
#: and common knowledge; see ``/work/shared/reference/markers/``.
MARKER_GENES: dict[str, dict[str, float]] = {
    # pan-immune
    "PTPRC": dict.fromkeys(("CD8_T", "CD4_T", "NK", "B", "myeloid"), 25.0) | {"plasma": 5.0},
    # T cells (alpha-beta TCR, CD3 complex, CD2)
    "CD3D": {"CD8_T": 30.0, "CD4_T": 30.0},
    "CD3E": {"CD8_T": 20.0, "CD4_T": 20.0},
    "CD3G": {"CD8_T": 12.0, "CD4_T": 12.0},
    "CD2": {"CD8_T": 15.0, "CD4_T": 12.0, "NK": 8.0},
    "TRAC": {"CD8_T": 25.0, "CD4_T": 25.0},
    "TRBC1": {"CD8_T": 15.0, "CD4_T": 15.0},
    "TRBC2": {"CD8_T": 30.0, "CD4_T": 30.0},
    # CD8 vs CD4
    "CD8A": {"CD8_T": 20.0},
    "CD8B": {"CD8_T": 15.0},
    "CD4": {"CD4_T": 8.0, "myeloid": 3.0},
    "FOXP3": {"CD4_T": 3.0},
    "IL7R": {"CD4_T": 15.0, "CD8_T": 4.0},
    # NK (NKG7 and KLRD1 are also expressed by effector CD8+ T cells)
    "NKG7": {"NK": 60.0, "CD8_T": 20.0},
    "KLRD1": {"NK": 25.0, "CD8_T": 6.0},
    "NCR1": {"NK": 6.0},
    "FCGR3A": {"NK": 20.0, "myeloid": 6.0, "CD8_T": 1.0},
    # B and plasma cells
    "MS4A1": {"B": 30.0},
    "CD19": {"B": 6.0},
    "CD79A": {"B": 30.0, "plasma": 20.0},
    "MZB1": {"plasma": 80.0, "B": 2.0},
    "JCHAIN": {"plasma": 150.0},
    "IGKC": {"plasma": 800.0, "B": 60.0},
    "IGHG1": {"plasma": 400.0},
    # myeloid
    "CD14": {"myeloid": 20.0},
    "LYZ": {"myeloid": 150.0},
    "CD68": {"myeloid": 25.0},
    "C1QA": {"myeloid": 40.0},
    "TYROBP": {"myeloid": 60.0, "NK": 20.0},
    # cancer-associated fibroblasts
    "COL1A1": {"fibroblast": 120.0},
    "COL1A2": {"fibroblast": 100.0},
    "COL3A1": {"fibroblast": 120.0},
    "DCN": {"fibroblast": 60.0},
    "LUM": {"fibroblast": 40.0},
    # endothelial
    "PECAM1": {"endothelial": 25.0},
    "VWF": {"endothelial": 40.0},
    "CLDN5": {"endothelial": 20.0},
    "RAMP2": {"endothelial": 30.0},
    # melanoma malignant cells (Tirosh 2016)
    "MIA": {"malignant": 60.0},
    "PMEL": {"malignant": 40.0},
    "MLANA": {"malignant": 40.0},
    "TYR": {"malignant": 12.0},
    "SOX10": {"malignant": 10.0},
    "MITF": {"malignant": 8.0},
    "S100B": {"malignant": 30.0},
}


#: Mitochondrially encoded genes (the 13 protein-coding genes of chrM).
MITOCHONDRIAL_GENES: tuple[str, ...] = (
    "MT-ND1",
    "MT-ND2",
    "MT-CO1",
    "MT-CO2",
    "MT-ATP8",
    "MT-ATP6",
    "MT-CO3",
    "MT-ND3",
    "MT-ND4L",
    "MT-ND4",
    "MT-ND5",
    "MT-ND6",
    "MT-CYB",
)


# Relative abundance of each MT gene within the mitochondrial fraction.
_MT_WEIGHTS = np.array([6, 4, 14, 10, 2, 9, 12, 3, 1, 10, 3, 1, 8], dtype=float)


#: Housekeeping and ribosomal genes: gene -> UMIs per 10,000 in every cell type.
HOUSEKEEPING_GENES: dict[str, float] = {
    "ACTB": 150.0,
    "GAPDH": 80.0,
    "PGK1": 15.0,
    "B2M": 200.0,
    "TMSB4X": 200.0,
    "EEF1A1": 200.0,
    "TPT1": 120.0,
    "FTL": 120.0,
    "FTH1": 120.0,
    "MALAT1": 250.0,
    "PPIA": 40.0,
    "UBC": 30.0,
    "HSP90AB1": 40.0,
    "RPLP0": 80.0,
    "RPL3": 90.0,
    "RPL4": 70.0,
    "RPL7": 70.0,
    "RPL10": 110.0,
    "RPL13": 120.0,
    "RPL13A": 120.0,
    "RPL32": 80.0,
    "RPL34": 80.0,
    "RPL41": 150.0,
    "RPS2": 90.0,
    "RPS3": 80.0,
    "RPS6": 90.0,
    "RPS12": 110.0,
    "RPS18": 110.0,
    "RPS27": 130.0,
}


# Effector / exhaustion genes whose expression is restricted to cytotoxic lymphocytes;
# other signature genes are modelled as broadly expressed.
_CYTOTOXIC_LYMPHOCYTE_GENES: frozenset[str] = frozenset(
    [
        "GZMA",
        "GZMB",
        "GZMH",
        "GZMK",
        "GZMM",
        "PRF1",
        "GNLY",
        "NKG7",
        "KLRD1",
        "KLRB1",
        "KLRK1",
        "KLRG1",
        "CTSW",
        "FGFBP2",
        "CX3CR1",
        "S1PR5",
        "SPON2",
        "FCRL6",
        "ADGRG1",
        "TBX21",
        "HOPX",
        "LAIR2",
        "SAMD3",
        "MATK",
        "BIN2",
        "MYO1F",
        "MYO1G",
        "TTC38",
        "TTC16",
        "C12orf75",
        "PATL2",
        "CD300A",
        "ASCL2",
        "EOMES",
        "IFNG",
        "FASLG",
        "CD8A",
        "CD8B",
        "HAVCR2",
        "CTLA4",
        "PDCD1",
        "TIGIT",
        "LAG3",
        "TOX",
        "CXCL13",
        "ENTPD1",
        "LAYN",
        "CD244",
        "TNFRSF9",
        "CCL5",
        "CCL4",
        "CCL3",
        "XCL1",
        "XCL2",
    ]
)


# Expression of tumour-side target genes (UMIs per 10,000) in malignant and myeloid cells.
_TARGET_LEVELS: dict[str, dict[str, float]] = {
    "PLP2": {"malignant": 6.0},
    "CXCL9": {"malignant": 1.5, "myeloid": 15.0},
    "CXCL10": {"malignant": 2.0, "myeloid": 20.0},
    "STAT1": {"malignant": 8.0},
    "CD274": {"malignant": 1.0, "myeloid": 3.0},
}


# Patients other than the planted low-CD8 ones get at least this many CD8+ T cells.
_MIN_CD8 = 12


# Per-cell-type library-size multiplier (lymphocytes are small, tumour and stromal cells large).
_DEPTH_FACTOR: dict[str, float] = {
    "CD8_T": 0.7,
    "CD4_T": 0.7,
    "NK": 0.75,
    "B": 0.7,
    "plasma": 1.4,
    "myeloid": 1.2,
    "fibroblast": 1.3,
    "endothelial": 1.1,
    "malignant": 1.35,
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
    rng: int | np.random.Generator,
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
) -> SimulatedCohort:
    """Simulate a tumour scRNA-seq cohort with a planted CD8 activation -> target signal.

    Counts are negative-binomial (gene-wise dispersion) around
    ``library size x cell-type profile x patient effects``. Cell-type proportions vary per
    patient (Dirichlet around ~12% CD8+ T and ~40% malignant cells); gene abundances are
    log-normal, with cell-type markers (:data:`MARKER_GENES`), housekeeping and ribosomal
    genes (:data:`HOUSEKEEPING_GENES`) and ~3.5% mitochondrial reads. A share of cells are
    low quality (few UMIs, 30-70% mitochondrial) for the QC step to remove. Every
    (patient, gene) carries log-normal noise (``patient_noise_sd``), malignant cells an extra
    patient-specific term (``tumour_heterogeneity_sd``, inter-tumour heterogeneity).

    Parameters
    ----------
    n_patients
        Number of patients (one tumour sample each), at least 4.
    n_cells
        Total number of cells (low-quality cells included).
    n_background_genes
        Number of genes drawn from ``background_pool`` in addition to the requested ones.
    signatures
        Sender signatures, name -> gene symbols; all of their genes are simulated.
    activation_signatures
        Names in ``signatures`` whose genes follow the activation latent ``a_p`` in CD8+ T
        cells.
    independent_signatures
        Names in ``signatures`` whose genes follow the latent ``e_p`` (uncorrelated with
        ``a_p``) in CD8+ T cells. They may not share a gene with the activation signatures.
    negative_targets
        Genes lowered by ``exp(-effect_size * a_p)`` in malignant cells.
    positive_targets
        Genes raised by ``exp(effect_size * a_p)`` in malignant cells.
    null_targets
        Further target genes without a planted effect (expected sign 0), e.g. receptors of
        other cargo and housekeeping negative controls.
    extra_genes
        Further genes to include without any planted effect.
    background_pool
        Gene symbols to draw the background genes from (e.g. the protein-coding symbols of
        GENCODE); requested genes and ``MT-`` genes are skipped.
    effect_size
        Log-scale effect of one standard deviation of ``a_p``.
    independent_effect_size
        Log-scale effect of one standard deviation of ``e_p``; ``effect_size`` if ``None``.
    rng
        Seed or generator; the same seed gives identical output.
    low_cd8_patients
        Number of patients given fewer than 10 CD8+ T cells.
    low_quality_fraction
        Share of cells simulated as low quality.
    median_umi
        Median library size of a typical cell before the cell-type depth factors.
    patient_noise_sd
        Standard deviation of the per-(patient, gene) log-scale noise in all cells.
    tumour_heterogeneity_sd
        Standard deviation of the extra per-(patient, gene) noise in malignant cells.
    name
        Dataset id (``SimulatedCohort.name`` and the ``dataset`` column of ``truth``).
    patient_prefix
        Patient ids are ``f"{patient_prefix}{i:02d}"``.
    correlated_targets
        Target genes planted with a chosen correlation to the activation latent rather
        than a fixed effect: in malignant cells they are multiplied by
        ``exp(correlated_effect_size * c_p)``, ``c_p = rho * a_p + sqrt(1 - rho^2) * z_p``
        with ``rho = target_correlation`` and ``z_p`` i.i.d. standard normal, drawn from a
        generator spawned from ``rng`` (so that every other draw, ``a_p`` included, is the
        one the same seed gives without correlated targets). As ``a_p`` has unit variance,
        ``c_p`` has variance 1 and population correlation ``rho`` with ``a_p``. The
        default (none) draws nothing, so existing seeds give identical cohorts.
    target_correlation
        ``rho`` above, in [-1, 1].
    correlated_effect_size
        Log-scale effect of one standard deviation of ``c_p``; ``effect_size`` if ``None``.

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
    gen = np.random.default_rng(rng)
    activation_signatures = list(activation_signatures)
    independent_signatures = list(independent_signatures)
    _check_inputs(
        n_patients=n_patients,
        n_cells=n_cells,
        signatures=signatures,
        activation_signatures=activation_signatures,
        independent_signatures=independent_signatures,
        negative_targets=negative_targets,
        positive_targets=positive_targets,
        low_cd8_patients=low_cd8_patients,
        low_quality_fraction=low_quality_fraction,
    )
    if independent_effect_size is None:
        independent_effect_size = effect_size
    correlated_targets = _union([correlated_targets])
    if correlated_effect_size is None:
        correlated_effect_size = effect_size
    _check_correlated(
        correlated_targets,
        target_correlation=target_correlation,
        other_targets=_union([negative_targets, positive_targets, null_targets]),
    )

    # ---- genes --------------------------------------------------------------------------
    activation_genes = _union(signatures[s] for s in activation_signatures)
    independent_genes = _union(signatures[s] for s in independent_signatures)
    targets = _union([negative_targets, positive_targets, null_targets, correlated_targets])
    requested = _union(
        [
            list(MARKER_GENES),
            MITOCHONDRIAL_GENES,
            list(HOUSEKEEPING_GENES),
            *(signatures[s] for s in signatures),
            targets,
            extra_genes,
        ]
    )
    background = _draw_background(
        background_pool, exclude=set(requested), n=n_background_genes, rng=gen
    )
    genes = np.array(sorted(set(requested) | set(background)))
    n_genes = genes.size
    gene_index = {g: i for i, g in enumerate(genes)}
    is_mt = np.array([g.startswith("MT-") for g in genes])

    # ---- cell-type expression profiles (UMIs per 10k, before normalisation) ---------------
    profiles = _cell_type_profiles(
        genes,
        gene_index=gene_index,
        signature_genes=_union(signatures[s] for s in signatures),
        targets=targets,
        is_mt=is_mt,
        rng=gen,
    )

    # ---- patients: latents, composition, noise ------------------------------------------
    patient_ids = [f"{patient_prefix}{i + 1:02d}" for i in range(n_patients)]
    sample_ids = [f"{p}_tumour" for p in patient_ids]
    activation = _spread_latent(n_patients, rng=gen)
    independent = _residualised_latent(activation, rng=gen)
    counts_by_type = _composition(n_patients, n_cells, low_cd8_patients=low_cd8_patients, rng=gen)
    low_cd8 = counts_by_type[:, _TYPES.index("CD8_T")] < 10
    depth_patient = np.exp(gen.normal(0.0, 0.2, size=n_patients))
    noise_patient = gen.normal(0.0, patient_noise_sd, size=(n_patients, n_genes))
    noise_tumour = gen.normal(0.0, tumour_heterogeneity_sd, size=(n_patients, n_genes))
    dispersion = np.exp(gen.normal(np.log(0.2), 0.5, size=n_genes))
    correlated = None
    if correlated_targets:
        # a spawned child: the main stream, and so everything else, is left as it was
        fresh = gen.spawn(1)[0].standard_normal(n_patients)
        correlated = target_correlation * activation + np.sqrt(1.0 - target_correlation**2) * fresh
    cor_idx = np.array([gene_index[g] for g in correlated_targets], dtype=int)

    act_idx = np.array([gene_index[g] for g in activation_genes], dtype=int)
    ind_idx = np.array([gene_index[g] for g in independent_genes], dtype=int)
    neg_idx = np.array([gene_index[g] for g in _union([negative_targets])], dtype=int)
    pos_idx = np.array([gene_index[g] for g in _union([positive_targets])], dtype=int)
    mt_profile = _MT_WEIGHTS / _MT_WEIGHTS.sum()
    mt_idx = np.array([gene_index[g] for g in MITOCHONDRIAL_GENES], dtype=int)

    # ---- cells ----------------------------------------------------------------------------
    blocks: list[sparse.csr_matrix] = []
    obs_parts: list[pd.DataFrame] = []
    for p in range(n_patients):
        cell_types = np.repeat(np.array(_TYPES), counts_by_type[p])
        cell_types = cell_types[gen.permutation(cell_types.size)]
        n_p = cell_types.size
        # per-type mean fractions for this patient, with the planted effects
        log_patient = noise_patient[p]
        fractions = np.empty((len(_TYPES), n_genes))
        for t, cell_type in enumerate(_TYPES):
            log_mu = np.log(profiles[t]) + log_patient
            if cell_type == "malignant":
                log_mu = log_mu + noise_tumour[p]
            frac = np.exp(log_mu)
            frac[is_mt] = 0.0
            frac /= frac.sum()
            if cell_type == "CD8_T":
                frac[act_idx] *= np.exp(effect_size * activation[p])
                frac[ind_idx] *= np.exp(independent_effect_size * independent[p])
            elif cell_type == "malignant":
                frac[neg_idx] *= np.exp(-effect_size * activation[p])
                frac[pos_idx] *= np.exp(effect_size * activation[p])
                if correlated is not None:
                    frac[cor_idx] *= np.exp(correlated_effect_size * correlated[p])
            fractions[t] = frac
        type_idx = np.array([_TYPES.index(t) for t in cell_types])
        # library sizes and mitochondrial fractions; some cells are low quality
        depth = np.array([_DEPTH_FACTOR[t] for t in cell_types])
        library = median_umi * depth_patient[p] * depth * np.exp(gen.normal(0.0, 0.35, size=n_p))
        mt_fraction = np.clip(np.exp(gen.normal(np.log(0.035), 0.35, size=n_p)), 0.005, 0.15)
        low_quality = gen.random(n_p) < low_quality_fraction
        n_low = int(low_quality.sum())
        library[low_quality] = gen.uniform(250.0, 700.0, size=n_low)
        mt_fraction[low_quality] = gen.uniform(0.3, 0.7, size=n_low)
        mu = fractions[type_idx] * (library * (1.0 - mt_fraction))[:, None]
        mu[:, mt_idx] = (library * mt_fraction)[:, None] * mt_profile[None, :]
        # negative binomial as a gamma-Poisson mixture, gene-wise dispersion
        shape = 1.0 / dispersion
        lam = gen.gamma(shape[None, :], (mu * dispersion[None, :]))
        counts = gen.poisson(lam).astype(np.float32)
        blocks.append(sparse.csr_matrix(counts))
        barcodes = _barcodes(n_p, rng=gen)
        obs_parts.append(
            pd.DataFrame(
                {
                    "donor_id": patient_ids[p],
                    "sample_id": sample_ids[p],
                    "author_cell_type": [_label_of(t) for t in cell_types],
                    "_low_quality": low_quality,
                },
                index=[f"{sample_ids[p]}_{b}" for b in barcodes],
            )
        )

    obs = pd.concat(obs_parts)
    if not obs.index.is_unique:  # pragma: no cover - 4**16 barcodes per sample
        msg = "Simulated cell barcodes are not unique; use another seed."
        raise RuntimeError(msg)
    low_quality_cells = obs.index[obs.pop("_low_quality").to_numpy()].to_numpy(dtype=str)
    obs["donor_id"] = pd.Categorical(obs["donor_id"], categories=patient_ids)
    obs["sample_id"] = pd.Categorical(obs["sample_id"], categories=sample_ids)
    obs["author_cell_type"] = pd.Categorical(
        obs["author_cell_type"], categories=list(AUTHOR_LABELS)
    )
    X = sparse.vstack(blocks, format="csr")
    X.sort_indices()
    adata = ad.AnnData(X=X, obs=obs, var=pd.DataFrame(index=pd.Index(genes, name=None)))
    adata.uns["simulation"] = {
        "simulated": True,
        "description": (
            "SIMULATED data (cd8exo.simulate): raw UMI counts of a melanoma-like cohort with a "
            "planted CD8 activation -> tumour target signal; not real patients."
        ),
        "seed": int(rng) if isinstance(rng, int | np.integer) else -1,
        "effect_size": float(effect_size),
        "independent_effect_size": float(independent_effect_size),
        "activation_signatures": np.array(activation_signatures, dtype=str),
        "independent_signatures": np.array(independent_signatures, dtype=str),
        "negative_targets": np.array(list(negative_targets), dtype=str),
        "positive_targets": np.array(list(positive_targets), dtype=str),
        "low_quality_cells": low_quality_cells,
    }
    if correlated is not None:
        adata.uns["simulation"] |= {
            "correlated_targets": np.array(correlated_targets, dtype=str),
            "target_correlation": float(target_correlation),
            "correlated_effect_size": float(correlated_effect_size),
        }

    patients = pd.DataFrame(
        {
            "patient": patient_ids,
            "sample": sample_ids,
            "activation": activation,
            "independent": independent,
            "n_cells": counts_by_type.sum(axis=1),
            "n_cd8_t": counts_by_type[:, _TYPES.index("CD8_T")],
            "n_malignant": counts_by_type[:, _TYPES.index("malignant")],
            "low_cd8": low_cd8,
        }
    )
    if correlated is not None:
        patients["correlated"] = correlated
    truth = _truth(
        signatures=list(signatures),
        activation_signatures=activation_signatures,
        targets=targets,
        negative_targets=negative_targets,
        positive_targets=positive_targets,
        name=name,
    )
    if correlated_targets:
        sign = int(np.sign(target_correlation) * np.sign(correlated_effect_size))
        planted = truth["signature"].isin(activation_signatures) & truth["target"].isin(
            correlated_targets
        )
        truth.loc[planted, "expected_sign"] = sign
    logger.info(
        "Simulated %s: %d cells x %d genes, %d patients (%d with < 10 CD8+ T cells), "
        "%d low-quality cells",
        name,
        adata.n_obs,
        adata.n_vars,
        n_patients,
        int(low_cd8.sum()),
        low_quality_cells.size,
    )
    return SimulatedCohort(name=name, adata=adata, truth=truth, patients=patients)


def _check_inputs(
    *,
    n_patients: int,
    n_cells: int,
    signatures: Mapping[str, Sequence[str]],
    activation_signatures: Sequence[str],
    independent_signatures: Sequence[str],
    negative_targets: Sequence[str],
    positive_targets: Sequence[str],
    low_cd8_patients: int,
    low_quality_fraction: float,
) -> None:
    if n_patients < 4:
        msg = f"n_patients={n_patients}: simulate at least 4 patients."
        raise ValueError(msg)
    if n_cells < 50 * n_patients:
        msg = (
            f"n_cells={n_cells} is too few for {n_patients} patients: "
            f"give at least 50 cells per patient (n_cells >= {50 * n_patients})."
        )
        raise ValueError(msg)
    if not 0 <= low_cd8_patients < n_patients - 2:
        msg = (
            f"low_cd8_patients={low_cd8_patients}: must be between 0 and n_patients - 3 "
            f"({n_patients - 3}) so that enough patients remain."
        )
        raise ValueError(msg)
    if not 0 <= low_quality_fraction < 0.5:
        msg = f"low_quality_fraction={low_quality_fraction}: must be in [0, 0.5)."
        raise ValueError(msg)
    for role, names in (
        ("activation_signatures", activation_signatures),
        ("independent_signatures", independent_signatures),
    ):
        unknown = [s for s in names if s not in signatures]
        if unknown:
            msg = (
                f"{role} names {unknown} that are not in `signatures` "
                f"(known: {sorted(signatures)}); fix the names or add the gene sets."
            )
            raise ValueError(msg)
    both = sorted(set(activation_signatures) & set(independent_signatures))
    if both:
        msg = f"Signatures {both} are listed as both activation and independent; choose one."
        raise ValueError(msg)
    empty = [s for s, g in signatures.items() if len(g) == 0]
    if empty:
        msg = f"Signatures {empty} have no genes; remove them or give their genes."
        raise ValueError(msg)
    act = _union(signatures[s] for s in activation_signatures)
    shared = sorted(set(act) & set(_union(signatures[s] for s in independent_signatures)))
    if shared:
        msg = (
            f"Genes {shared} are in both an activation signature {activation_signatures} and an "
            f"independent signature {list(independent_signatures)}; the independent signature "
            "could then not be uncorrelated with the activation latent. Remove them from one side."
        )
        raise ValueError(msg)
    clash = sorted(set(negative_targets) & set(positive_targets))
    if clash:
        msg = f"Genes {clash} are both negative and positive targets; keep each in one list."
        raise ValueError(msg)


def _check_correlated(
    correlated_targets: Sequence[str], *, target_correlation: float, other_targets: Sequence[str]
) -> None:
    if not -1.0 <= target_correlation <= 1.0:
        msg = f"target_correlation={target_correlation}: a correlation must lie in [-1, 1]."
        raise ValueError(msg)
    clash = sorted(set(correlated_targets) & set(other_targets))
    if clash:
        msg = (
            f"Genes {clash} are correlated targets and also negative, positive or null targets; "
            "keep each target in one list."
        )
        raise ValueError(msg)


def _union(groups) -> list[str]:
    """Genes of all groups, first occurrence order, without duplicates."""
    seen: dict[str, None] = {}
    for group in groups:
        for g in group:
            seen.setdefault(str(g), None)
    return list(seen)


def _draw_background(
    pool: Sequence[str], *, exclude: set[str], n: int, rng: np.random.Generator
) -> list[str]:
    candidates = [g for g in _union([pool]) if g not in exclude and not g.startswith("MT-") and g]
    if len(candidates) < n:
        msg = (
            f"The background pool has {len(candidates)} usable symbols but n_background_genes={n}; "
            "pass a larger pool (e.g. all protein-coding GENCODE symbols) or ask for fewer genes."
        )
        raise ValueError(msg)
    chosen = rng.choice(len(candidates), size=n, replace=False)
    return [candidates[i] for i in np.sort(chosen)]


def _cell_type_profiles(
    genes: np.ndarray,
    *,
    gene_index: Mapping[str, int],
    signature_genes: Sequence[str],
    targets: Sequence[str],
    is_mt: np.ndarray,
    rng: np.random.Generator,
) -> np.ndarray:
    """Expected UMIs per 10k of every gene in every cell type (types x genes)."""
    n_types, n_genes = len(_TYPES), genes.size
    # Background: log-normal abundances, scaled so that most genes are rarely detected,
    # and a cell-type deviation on every gene.
    base = np.exp(rng.normal(np.log(0.4), 1.5, size=n_genes))
    profiles = base[None, :] * np.exp(rng.normal(0.0, 0.6, size=(n_types, n_genes)))

    def set_levels(gene: str, levels: Mapping[str, float], *, jitter_sd: float = 0.15) -> None:
        i = gene_index[gene]
        floor = 0.005 * min(levels.values())
        jitter = np.exp(rng.normal(0.0, jitter_sd, size=n_types))
        profiles[:, i] = [levels.get(t, floor) for t in _TYPES] * jitter

    for gene in sorted(set(signature_genes)):
        level = float(np.exp(rng.normal(np.log(3.0), 0.6)))
        if gene in _CYTOTOXIC_LYMPHOCYTE_GENES:
            set_levels(gene, {"CD8_T": level, "NK": 1.5 * level, "CD4_T": 0.3 * level})
        else:
            # broadly expressed (e.g. ESCRT machinery), varying between cell types
            set_levels(gene, dict.fromkeys(_TYPES, level), jitter_sd=0.5)
    for gene in targets:
        if gene in HOUSEKEEPING_GENES:
            continue
        levels = _TARGET_LEVELS.get(gene, {"malignant": 4.0})
        floor = dict.fromkeys(_TYPES, 0.5)
        set_levels(gene, floor | levels)
    for gene, levels in MARKER_GENES.items():
        set_levels(gene, levels)
    for gene, level in HOUSEKEEPING_GENES.items():
        set_levels(gene, dict.fromkeys(_TYPES, level))
    profiles[:, is_mt] = 1.0  # placeholder: mitochondrial reads are added per cell
    return profiles


def _spread_latent(n: int, *, rng: np.random.Generator) -> np.ndarray:
    """Evenly spaced values with jitter, in random patient order, standardised."""
    values = np.linspace(-1.0, 1.0, n)
    values = values + rng.normal(0.0, 0.25 * (values[1] - values[0]), size=n)
    values = values[rng.permutation(n)]
    return (values - values.mean()) / values.std()


def _residualised_latent(reference: np.ndarray, *, rng: np.random.Generator) -> np.ndarray:
    """A standard normal latent made exactly uncorrelated (Pearson) with ``reference``."""
    raw = rng.normal(size=reference.size)
    design = np.column_stack([np.ones_like(reference), reference])
    coef, *_ = np.linalg.lstsq(design, raw, rcond=None)
    resid = raw - design @ coef
    return (resid - resid.mean()) / resid.std()


def _composition(
    n_patients: int, n_cells: int, *, low_cd8_patients: int, rng: np.random.Generator
) -> np.ndarray:
    """Cells per patient and cell type (patients x types)."""
    per_patient = rng.multinomial(n_cells, rng.dirichlet(np.full(n_patients, 30.0)))
    base = np.array([_BASE_PROPORTIONS[t] for t in _TYPES])
    counts = np.vstack([rng.multinomial(n, rng.dirichlet(base * 80.0)) for n in per_patient])
    cd8, malignant = _TYPES.index("CD8_T"), _TYPES.index("malignant")
    low = np.sort(rng.choice(n_patients, size=low_cd8_patients, replace=False))
    for p in range(n_patients):
        if p in low:
            kept = int(rng.integers(2, 8))
            counts[p, malignant] += max(counts[p, cd8] - kept, 0)
            counts[p, cd8] = min(kept, counts[p, cd8])
        elif counts[p, cd8] < _MIN_CD8:
            # only the planted low-CD8 patients may fall below the workflow's threshold
            moved = min(_MIN_CD8 - counts[p, cd8], counts[p, malignant] - 1)
            counts[p, cd8] += moved
            counts[p, malignant] -= moved
    return counts


def _barcodes(n: int, *, rng: np.random.Generator) -> list[str]:
    letters = np.array(list("ACGT"))
    codes = letters[rng.integers(0, 4, size=(n, 16))]
    return ["".join(row) + "-1" for row in codes]


def _label_of(cell_type: str) -> str:
    return next(label for label, t in AUTHOR_LABELS.items() if t == cell_type)


def _truth(
    *,
    signatures: Sequence[str],
    activation_signatures: Sequence[str],
    targets: Sequence[str],
    negative_targets: Sequence[str],
    positive_targets: Sequence[str],
    name: str,
) -> pd.DataFrame:
    rows = []
    for signature in signatures:
        for target in targets:
            sign = 0
            if signature in activation_signatures:
                if target in negative_targets:
                    sign = -1
                elif target in positive_targets:
                    sign = 1
            rows.append((name, signature, target, sign))
    return pd.DataFrame(rows, columns=["dataset", "signature", "target", "expected_sign"])
