"""What to simulate: the cohort (:class:`CohortSpec`) and the planted signal (:class:`SignalSpec`).

:func:`cd8exo.sim.cohort.simulate_from_specs` simulates a cohort from the two;
:func:`cd8exo.sim.cohort.simulate_cohort` takes their fields as keyword arguments.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

__all__ = ["CohortSpec", "SignalSpec", "check_specs", "union"]


@dataclass(frozen=True, kw_only=True)
class CohortSpec:
    """The patients, cells and genes of a simulated cohort, without the planted signal.

    Sequences are stored as tuples.

    Attributes
    ----------
    background_pool
        Gene symbols to draw the background genes from (e.g. the protein-coding symbols of
        GENCODE); requested genes and ``MT-`` genes are skipped.
    n_patients
        Number of patients (one tumour sample each), at least 4.
    n_cells
        Total number of cells (low-quality cells included).
    n_background_genes
        Number of genes drawn from ``background_pool`` in addition to the requested ones.
    extra_genes
        Further genes to include without any planted effect.
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
    """

    background_pool: Sequence[str]
    n_patients: int = 16
    n_cells: int = 4800
    n_background_genes: int = 2000
    extra_genes: Sequence[str] = ()
    low_cd8_patients: int = 1
    low_quality_fraction: float = 0.03
    median_umi: float = 2500.0
    patient_noise_sd: float = 0.15
    tumour_heterogeneity_sd: float = 0.2
    name: str = "demo_cohort"
    patient_prefix: str = "P"

    def __post_init__(self) -> None:
        _set_tuples(self, "background_pool", "extra_genes")


@dataclass(frozen=True, kw_only=True)
class SignalSpec:
    """The sender signatures, the targets and the effects planted between them.

    Sequences are stored as tuples, ``signatures`` as a dict of tuples.

    Attributes
    ----------
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
    effect_size
        Log-scale effect of one standard deviation of ``a_p``.
    independent_effect_size
        Log-scale effect of one standard deviation of ``e_p``; ``effect_size`` if ``None``
        (see :attr:`independent_effect`).
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
        Log-scale effect of one standard deviation of ``c_p``; ``effect_size`` if ``None``
        (see :attr:`correlated_effect`).
    target_sets
        Receiver gene sets (e.g. cargo miRNAs' target sets), name -> genes. Their genes not
        otherwise simulated are added after every other draw, from a generator spawned from
        ``rng`` (:func:`cd8exo.sim.target_sets.add_target_set_genes`), so the counts of the
        other genes are those the same seed gives without target sets. Each set is a truth
        row per signature (expected sign 0 unless planted).
    planted_sets
        Names in ``target_sets`` repressed by the activation latent: in malignant cells,
        ``set_fraction`` of each one's genes are multiplied by ``exp(-set_effect * a_p)``.
        The repressed genes are drawn among the set's added genes that are in no other
        target set, so that every other set holds none of them.
    set_fraction
        Share of a planted set's genes that are repressed, in (0, 1].
    set_effect_size
        Log-scale repression of one standard deviation of ``a_p``; ``effect_size`` if
        ``None`` (see :attr:`set_effect`).
    """

    signatures: Mapping[str, Sequence[str]]
    activation_signatures: Sequence[str]
    independent_signatures: Sequence[str]
    negative_targets: Sequence[str] = ("PLP2",)
    positive_targets: Sequence[str] = ("CXCL9", "CXCL10", "STAT1")
    null_targets: Sequence[str] = ()
    effect_size: float = 0.5
    independent_effect_size: float | None = None
    correlated_targets: Sequence[str] = ()
    target_correlation: float = 0.0
    correlated_effect_size: float | None = None
    target_sets: Mapping[str, Sequence[str]] = field(default_factory=dict)
    planted_sets: Sequence[str] = ()
    set_fraction: float = 0.5
    set_effect_size: float | None = None

    def __post_init__(self) -> None:
        signatures = {name: tuple(genes) for name, genes in self.signatures.items()}
        object.__setattr__(self, "signatures", signatures)
        sets = {name: tuple(genes) for name, genes in self.target_sets.items()}
        object.__setattr__(self, "target_sets", sets)
        _set_tuples(
            self,
            "activation_signatures",
            "independent_signatures",
            "negative_targets",
            "positive_targets",
            "null_targets",
            "correlated_targets",
            "planted_sets",
        )

    @property
    def independent_effect(self) -> float:
        """``independent_effect_size``, or ``effect_size`` if that is ``None``."""
        if self.independent_effect_size is None:
            return self.effect_size
        return self.independent_effect_size

    @property
    def correlated_effect(self) -> float:
        """``correlated_effect_size``, or ``effect_size`` if that is ``None``."""
        if self.correlated_effect_size is None:
            return self.effect_size
        return self.correlated_effect_size

    @property
    def set_effect(self) -> float:
        """``set_effect_size``, or ``effect_size`` if that is ``None``."""
        return self.effect_size if self.set_effect_size is None else self.set_effect_size


def check_specs(*, cohort: CohortSpec, signal: SignalSpec) -> None:
    """Raise a ``ValueError`` naming the problem if the two specs cannot be simulated.

    The background pool is checked when the background genes are drawn.
    """
    _check_inputs(
        n_patients=cohort.n_patients,
        n_cells=cohort.n_cells,
        signatures=signal.signatures,
        activation_signatures=list(signal.activation_signatures),
        independent_signatures=list(signal.independent_signatures),
        negative_targets=signal.negative_targets,
        positive_targets=signal.positive_targets,
        low_cd8_patients=cohort.low_cd8_patients,
        low_quality_fraction=cohort.low_quality_fraction,
    )
    _check_correlated(
        union([signal.correlated_targets]),
        target_correlation=signal.target_correlation,
        other_targets=union(
            [signal.negative_targets, signal.positive_targets, signal.null_targets]
        ),
    )
    unknown = [s for s in signal.planted_sets if s not in signal.target_sets]
    if unknown:
        msg = f"planted_sets {unknown} are not in target_sets ({sorted(signal.target_sets)})."
        raise ValueError(msg)
    if not 0.0 < signal.set_fraction <= 1.0:
        msg = f"set_fraction={signal.set_fraction}: a share of the set's genes, in (0, 1]."
        raise ValueError(msg)


def union(groups: Iterable[Iterable[str]]) -> list[str]:
    """Genes of all groups, first occurrence order, without duplicates."""
    seen: dict[str, None] = {}
    for group in groups:
        for g in group:
            seen.setdefault(str(g), None)
    return list(seen)


def _set_tuples(spec: CohortSpec | SignalSpec, *fields: str) -> None:
    # frozen dataclasses: a tuple cannot be changed by the caller after the spec is made
    for name in fields:
        object.__setattr__(spec, name, tuple(getattr(spec, name)))


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
    act = union(signatures[s] for s in activation_signatures)
    shared = sorted(set(act) & set(union(signatures[s] for s in independent_signatures)))
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
