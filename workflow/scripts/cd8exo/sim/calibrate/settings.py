"""Settings and inputs of the calibration: cohort sizes, planted effects, the workflow parameters."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from cd8exo.cells.identity.annotate import read_identity_references
from cd8exo.genes import SymbolTables, load_symbol_tables
from cd8exo.io.cargo import cargo_target_sets, read_cargo_table
from cd8exo.io.tables import read_gmt, read_targets
from cd8exo.sim.demo import _protein_coding_symbols
from cd8exo.stages.patients import AssociationSettings

logger = logging.getLogger(__name__)

__all__ = ["CalibrationInputs", "CalibrationSettings", "load_inputs"]

_ACTIVATION = (
    "Chu2023_CD8_c2_Teff",
    "Cytotoxic_cells_Danaher2017",
    "Exosome_biogenesis_core_curated",
)


_INDEPENDENT = ("Tcell_exhaustion_SignatuR",)


# three predicted (miRDB) cargo target sets: miR-765's (planted in set power cohorts), two nulls
_TARGET_SETS = (
    "miR-765__MSIGDB71_MIRDB",
    "miR-150-5p__MSIGDB71_MIRDB",
    "miR-142-3p__MSIGDB71_MIRDB",
)


@dataclass(frozen=True)
class CalibrationSettings:
    """Sizes, effects and workflow parameters of the calibration cohorts.

    The analysis parameters are the demo config's (``config/config.yaml``) except where
    a small cohort needs otherwise; those are marked below.

    Attributes
    ----------
    null_sizes
        Patients per null cohort, cycled over the cohorts.
    power_sizes, power_rhos
        The power grid: patients per cohort and planted latent correlations.
    cells_per_patient
        Cells per patient (before QC). 120 rather than thousands keeps a cohort to about
        a second; with the simulator's composition (~12% CD8+ T, ~35% malignant cells)
        about 1% of patients fall below the default ``min_cd8_cells`` /
        ``min_malignant_cells`` and are excluded, as the workflow would.
    n_background_genes
        Background genes besides the markers, housekeeping, signature and target genes
        (about 1,200 genes in all): enough that every expression bin holding signature
        genes has other genes to draw matched random sets from (the 47- and 50-gene
        signatures crowd the upper bins; with 300 background genes a bin can run out).
    low_cd8_patients
        Patients simulated with too few CD8+ T cells (0: every planned patient can be
        analysed).
    primary_signature, primary_target
        The pair the type I error and power are reported for (the power target is
        planted on ``primary_target``).
    activation_signatures, independent_signatures
        As for :func:`cd8exo.sim.cohort.simulate_cohort`.
    sender_effect_size, target_effect_size
        Power cohorts: log-scale effects of one SD of ``a_p`` on the activation genes in
        CD8+ T cells and of ``c_p`` on the primary target in malignant cells.
    cancer_type
        The dataset sheet's ``cancer_type`` of the cohorts (lineage markers of the
        identity step).
    min_coverage
        Signatures with a smaller share of their genes scored are skipped, as in the
        config.
    min_genes
        QC minimum of detected genes. *Calibration value*: the config's 200 is meant for
        whole transcriptomes; with ~1,200 simulated genes many good cells detect fewer,
        so 50 is used; the low-quality cells are still removed by
        ``max_mito_fraction``.
    max_mito_fraction, min_cd8_cells, min_malignant_cells, min_patients
        As in the config.
    method, n_bins, ctrl_size, ucell_max_rank, aucell_n_up, aucell_ties
        The config's ``scoring:`` (method and its parameters), as in the config.
    covariates
        Per-patient covariates of the partial correlation, as in the config.
    family
        The Benjamini-Hochberg family of the q values (``association.family``).
    n_perm
        Permutations of the permutation p (exact enumeration up to 8 patients).
    n_boot
        Bootstrap resamples of the CI (read as a test: the CI excludes 0).
    target_sets, primary_set
        Set-level cohorts: the cargo target sets simulated and tested (their genes are
        added to the cohort) and the one the type I error is reported for and the power
        cohorts plant.
    set_fraction, set_effect_sizes
        Set power cohorts: ``set_fraction`` of ``primary_set``'s genes are multiplied by
        ``exp(-set_effect_size * a_p)`` in malignant cells, for each size of
        ``set_effect_sizes`` (the activation signatures get ``sender_effect_size`` in CD8+
        T cells, as in the gene power cohorts). A set also varies between tumours as a
        programme (:mod:`cd8exo.sim.target_sets`), which the repression must rise above;
        0.5 is the demo's effect.
    n_random_sets
        Matched random gene sets per signature for the specificity p. *Calibration value*:
        19 instead of 200 (time): the p then takes the values ``k / 20`` and, if the
        signature and its random sets are exchangeable under the null,
        ``P(p <= 0.05) = P(k = 1) = 1 / 20`` exactly; its power is capped accordingly
        (the smallest p is 0.05).
    """

    null_sizes: tuple[int, ...] = (8, 16, 32)
    power_sizes: tuple[int, ...] = (8, 16, 32)
    power_rhos: tuple[float, ...] = (0.3, 0.5, 0.7)
    cells_per_patient: int = 120
    n_background_genes: int = 1000
    low_cd8_patients: int = 0
    primary_signature: str = "Cytotoxic_cells_Danaher2017"
    primary_target: str = "PLP2"
    activation_signatures: tuple[str, ...] = _ACTIVATION
    independent_signatures: tuple[str, ...] = _INDEPENDENT
    sender_effect_size: float = 1.0
    target_effect_size: float = 1.0
    cancer_type: str = "melanoma"
    min_coverage: float = 0.5
    min_genes: int = 50
    max_mito_fraction: float = 0.2
    min_cd8_cells: int = 10
    min_malignant_cells: int = 20
    min_patients: int = 6
    method: str = "tirosh"
    n_bins: int = 25
    ctrl_size: int = 50
    ucell_max_rank: int = 1500
    aucell_n_up: int | None = None
    aucell_ties: str = "mean"
    covariates: tuple[str, ...] = ("n_malignant", "cd8_fraction", "median_counts")
    family: str = "dataset"
    n_perm: int = 10000
    n_boot: int = 2000
    n_random_sets: int = 19
    target_sets: tuple[str, ...] = _TARGET_SETS
    primary_set: str = _TARGET_SETS[0]
    set_fraction: float = 0.5
    set_effect_sizes: tuple[float, ...] = (0.1, 0.25, 0.5)

    def association(self, *, rng: int, ci_level: float) -> AssociationSettings:
        """The settings of ``associate_patients`` / ``associate_receiver_sets``, as the
        rules build them from the config (``association:`` and ``aggregation:``)."""
        return AssociationSettings(
            covariates=self.covariates,
            min_patients=self.min_patients,
            n_boot=self.n_boot,
            n_perm=self.n_perm,
            ci_level=ci_level,
            family=self.family,
            rng=rng,
            min_cd8_cells=self.min_cd8_cells,
            min_malignant_cells=self.min_malignant_cells,
        )

    def scoring_options(self) -> dict[str, object]:
        """Keyword arguments of the scoring stages, as ``scoring_options()`` of
        ``workflow/rules/common.smk`` builds them from the config's ``scoring:``."""
        return {
            "method": self.method,
            "n_bins": self.n_bins,
            "ctrl_size": self.ctrl_size,
            "max_rank": self.ucell_max_rank,
            "n_up": self.aucell_n_up,
            "aucell_ties": self.aucell_ties,
        }


@dataclass(frozen=True)
class CalibrationInputs:
    """The gene sets, targets and background pool the cohorts are simulated from.

    Attributes
    ----------
    signatures
        Sender signature name -> genes (scored and simulated).
    targets
        Receiver target genes (simulated in malignant cells and tested).
    background_pool
        Gene symbols the background genes are drawn from.
    identity
        The marker and gene-position tables of the identity step
        (:func:`cd8exo.identity.identify_cells` keywords ``cd8_markers``,
        ``lineage_markers``, ``gene_positions``), as the ``annotate_cells`` rule reads them.
    symbol_tables
        HGNC alias tables for :func:`cd8exo.scoring.prepare_signatures` (``None``: exact
        names, which is all a simulated cohort needs).
    target_sets, set_annotation
        The cargo miRNAs' target sets (``targets/cargo_mirna_targets.gmt``, the miRNAs of
        ``targets/cargo_mirnas.tsv``) and their annotation
        (:func:`cd8exo.io.cargo.cargo_target_sets`); empty: no set-level cohorts.
    """

    signatures: Mapping[str, Sequence[str]]
    targets: tuple[str, ...]
    background_pool: tuple[str, ...] = field(repr=False)
    identity: Mapping[str, pd.DataFrame] = field(repr=False, default_factory=dict)
    symbol_tables: SymbolTables | None = field(repr=False, default=None)
    target_sets: Mapping[str, Sequence[str]] = field(repr=False, default_factory=dict)
    set_annotation: pd.DataFrame | None = field(repr=False, default=None)


def load_inputs(
    resources: str | Path,
    *,
    signatures: Sequence[str] | None = None,
    targets: Sequence[str] | None = None,
) -> CalibrationInputs:
    """Read the bundled sender signatures, targets and GENCODE protein-coding symbols.

    Parameters
    ----------
    resources
        The repository's ``resources/`` directory (``gene_sets/senders.gmt``,
        ``targets/targets.tsv``, ``genome/gencode_v48_genes_homo_sapiens.csv.gz``, and the
        identity step's ``markers/`` and ``genome/hg38_gencode_v27_gene_pos.txt``).
    signatures, targets
        Keep only these signatures / targets (default: all), e.g. to make a quick run.

    Returns
    -------
    The inputs of :func:`simulate_calibration_cohort`.
    """

    resources = Path(resources)
    all_signatures = read_gmt(resources / "gene_sets" / "senders.gmt")
    all_targets = read_targets(resources / "targets" / "targets.tsv")["gene"].tolist()
    if signatures is not None:
        unknown = [s for s in signatures if s not in all_signatures]
        if unknown:
            msg = (
                f"load_inputs: signatures {unknown} are not in {resources}/gene_sets/"
                f"senders.gmt (known: {sorted(all_signatures)})."
            )
            raise ValueError(msg)
        all_signatures = {s: all_signatures[s] for s in signatures}
    if targets is not None:
        unknown = [t for t in targets if t not in all_targets]
        if unknown:
            msg = (
                f"load_inputs: targets {unknown} are not in {resources}/targets/targets.tsv "
                f"(known: {all_targets})."
            )
            raise ValueError(msg)
        all_targets = list(targets)
    pool = _protein_coding_symbols(resources / "genome" / "gencode_v48_genes_homo_sapiens.csv.gz")
    markers = resources / "markers"
    identity = read_identity_references(
        [markers / "cd8_identity_markers.tsv", markers / "cd8_support_markers.tsv"],
        markers / "malignant_lineage_markers.tsv",
        resources / "genome" / "hg38_gencode_v27_gene_pos.txt",
    )
    target_sets, set_annotation = cargo_target_sets(
        read_gmt(resources / "targets" / "cargo_mirna_targets.gmt"),
        read_cargo_table(resources / "targets" / "cargo_mirnas.tsv"),
    )
    return CalibrationInputs(
        target_sets=target_sets,
        set_annotation=set_annotation,
        signatures=dict(all_signatures),
        targets=tuple(all_targets),
        background_pool=tuple(pool),
        identity=identity,
        symbol_tables=load_symbol_tables(
            resources / "genome" / "hgnc_alias_table.tsv.gz",
            resources / "genome" / "gencode_v48_genes_homo_sapiens.csv.gz",
        ),
    )


def _check_settings(settings: CalibrationSettings, inputs: CalibrationInputs) -> None:
    if settings.primary_signature not in inputs.signatures:
        msg = (
            f"primary_signature {settings.primary_signature!r} is not among the signatures "
            f"{sorted(inputs.signatures)}; choose one of them."
        )
        raise ValueError(msg)
    if settings.primary_target not in inputs.targets:
        msg = (
            f"primary_target {settings.primary_target!r} is not among the targets "
            f"{list(inputs.targets)}; choose one of them."
        )
        raise ValueError(msg)
    if settings.primary_signature not in settings.activation_signatures:
        msg = (
            f"primary_signature {settings.primary_signature!r} is not an activation signature "
            f"{list(settings.activation_signatures)}: power cohorts would plant nothing on it."
        )
        raise ValueError(msg)
    sizes = [*settings.null_sizes, *settings.power_sizes]
    if not settings.null_sizes or min(sizes) < settings.min_patients:
        msg = (
            f"cohort sizes {sizes} must be non-empty and at least min_patients="
            f"{settings.min_patients}."
        )
        raise ValueError(msg)
    unknown = [s for s in settings.target_sets if s not in inputs.target_sets]
    if inputs.target_sets and (unknown or settings.primary_set not in settings.target_sets):
        msg = (
            f"target_sets {unknown} are not cargo target sets, or primary_set "
            f"{settings.primary_set!r} is not among target_sets {list(settings.target_sets)}."
        )
        raise ValueError(msg)
    bad = [r for r in settings.power_rhos if not -1.0 <= r <= 1.0]
    if bad:
        msg = f"power_rhos {bad} are not correlations in [-1, 1]."
        raise ValueError(msg)
