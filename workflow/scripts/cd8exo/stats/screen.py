"""Tumour-side screen: which malignant-cell programs follow the CD8 sender state across patients?

The targeted association (:mod:`cd8exo.stats`) tests a few chosen genes. The screen asks
the open question: for each sender signature, correlate the patients' CD8 T-cell score
with *every* expressed gene of their malignant-cell pseudobulk, rank the genes by that
correlation and run preranked gene-set enrichment (GSEA, Subramanian et al., *PNAS*
2005; implemented by GSEApy, Fang et al., *Bioinformatics* 2023) on the MSigDB Hallmark
sets (Liberzon et al., *Cell Syst* 2015) and any user GMT.

As everywhere in cd8exo, the patient is the unit of inference: one sender score and one
pseudobulk profile per patient, never cells as replicates.

The ranking statistic
---------------------
Each gene's statistic is its **Spearman rho** across patients with the signature
(Pearson's r of the average ranks, as :func:`scipy.stats.spearmanr`); genes are ranked
from the most positive to the most negative rho. A correlation is bounded and does not
grow with the number of patients, so rankings of cohorts of different sizes are on one
scale (the GSEA "Pearson" metric for a continuous phenotype, on ranks). With few
patients rho takes few distinct values and many genes tie; tied genes are ordered by
their Pearson r on the log2 CPM values, then by name, so the ranked list and the
enrichment are deterministic. GSEA's running sum weights each gene by ``|rho|``
(``weight=1``, the GSEA default).

Reading the enrichment
----------------------
The p and FDR values come from gene-set permutations (the only null a preranked list
allows). They ignore that the genes of one program co-vary across patients, so they are
optimistic when a program moves as a block; and with tens of patients every rho is
noisy. The screen ranks programs for a closer look; the confirmatory test of a chosen
target stays the patient-level association with its permutation p value.
"""

from __future__ import annotations

import contextlib
import io
import logging
import math
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from scipy import stats as sps

from cd8exo._utils import RNGLike, as_rng, seed_from

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

logger = logging.getLogger(__name__)

__all__ = ["ENRICHMENT_COLUMNS", "RANKED_COLUMNS", "prerank", "rank_genes"]

#: Columns of :func:`rank_genes`, in order.
RANKED_COLUMNS: tuple[str, ...] = (
    "signature",
    "rank",
    "gene",
    "n_patients",
    "rho",
    "p_value",
    "pearson_r",
    "statistic",
)


#: Columns of :func:`prerank`, in order.
ENRICHMENT_COLUMNS: tuple[str, ...] = (
    "signature",
    "term",
    "n_genes",
    "es",
    "nes",
    "nom_p_value",
    "fdr_q_value",
    "fwer_p_value",
    "leading_edge_size",
    "peak_rank_fraction",
    "leading_edge_genes",
    "n_ranked_genes",
    "permutations",
)


# correlations are rounded to this many decimals (far below any meaningful difference)
_DECIMALS = 12


# gseapy's result columns (Prerank.res2d, gseapy >= 1.0) and the names used here.
_GSEAPY_COLUMNS = {
    "Term": "term",
    "ES": "es",
    "NES": "nes",
    "NOM p-val": "nom_p_value",
    "FDR q-val": "fdr_q_value",
    "FWER p-val": "fwer_p_value",
    "Tag %": "tag",
    "Gene %": "peak_rank_fraction",
    "Lead_genes": "leading_edge_genes",
}


def _unit_columns(a: np.ndarray) -> np.ndarray:
    """Centre each column and scale it to unit norm; constant columns become NaN."""
    centred = a - a.mean(axis=0)
    norm = np.sqrt((centred**2).sum(axis=0))
    scale = np.abs(a).max(axis=0)
    constant = norm <= 1e-12 * np.maximum(scale, 1e-300) * math.sqrt(a.shape[0])
    with np.errstate(invalid="ignore", divide="ignore"):
        return centred / np.where(constant, np.nan, norm)


def _shared_complete_patients(sender: pd.DataFrame, pseudobulk: pd.DataFrame) -> pd.DataFrame:
    """The pseudobulk of the patients with a sender score and a complete pseudobulk."""
    common = sender.index.intersection(pseudobulk.index)
    for what, frame in (("sender scores", sender), ("malignant pseudobulk", pseudobulk)):
        left_out = frame.index.difference(common)
        if len(left_out):
            logger.warning(
                "Patient(s) only in the %s, left out: %s", what, ", ".join(map(str, left_out))
            )
    if not len(common):
        msg = (
            "The sender scores and the malignant pseudobulk share no patient "
            f"(e.g. {list(sender.index[:3])} vs {list(pseudobulk.index[:3])}); give both "
            "tables the same patient ids."
        )
        raise ValueError(msg)
    pseudobulk = pseudobulk.loc[common]
    incomplete = ~np.isfinite(pseudobulk.to_numpy(float)).all(axis=1)
    if incomplete.any():
        logger.warning(
            "Patient(s) without a complete pseudobulk, left out: %s",
            ", ".join(map(str, common[incomplete])),
        )
        pseudobulk = pseudobulk.loc[~incomplete]
    return pseudobulk


def _spearman_p(rho: np.ndarray, *, n: int) -> np.ndarray:
    """Two-sided p of rho over ``n`` patients (Student's t, n - 2 degrees of freedom)."""
    df = n - 2
    with np.errstate(divide="ignore", invalid="ignore"):
        t = rho * np.sqrt(df / ((1.0 - rho) * (1.0 + rho)))
    return np.where(np.abs(rho) >= 1.0, 0.0, 2.0 * sps.t.sf(np.abs(t), df))


def _rank_signature(
    signature: str, score: pd.Series, pseudobulk: pd.DataFrame, *, min_patients: int
) -> pd.DataFrame | None:
    """The genes ranked by their rho with one signature; ``None`` when it cannot be ranked."""
    ok = np.isfinite(score.to_numpy())
    n = int(ok.sum())
    if n < max(min_patients, 3):
        logger.warning(
            "Signature %s: %d patients with a score < min_patients=%d; not ranked",
            signature,
            n,
            min_patients,
        )
        return None
    values = pseudobulk.to_numpy(float)[ok]
    x = score.to_numpy()[ok]
    rho = _unit_columns(sps.rankdata(x)[:, None])[:, 0] @ _unit_columns(
        sps.rankdata(values, axis=0)
    )
    if np.isnan(rho).all():
        logger.warning("Signature %s is constant over the patients; not ranked", signature)
        return None
    pearson = _unit_columns(x[:, None])[:, 0] @ _unit_columns(values)
    # rounded so that mathematically equal correlations tie exactly (ties are common)
    rho = np.round(np.clip(rho, -1.0, 1.0), _DECIMALS)
    pearson = np.round(np.clip(pearson, -1.0, 1.0), _DECIMALS)
    constant = np.isnan(rho)
    if constant.any():
        logger.info(
            "Signature %s: %d gene(s) constant over the patients, not ranked: %s",
            signature,
            constant.sum(),
            ", ".join(pseudobulk.columns[constant]),
        )
    frame = pd.DataFrame(
        {
            "signature": signature,
            "gene": pseudobulk.columns.astype(str),
            "n_patients": n,
            "rho": rho,
            "p_value": _spearman_p(rho, n=n),
            "pearson_r": pearson,
            "statistic": rho,
        }
    )[~constant]
    frame = frame.sort_values(
        ["statistic", "pearson_r", "gene"],
        ascending=[False, False, True],
        kind="stable",
        na_position="last",
    )
    frame.insert(1, "rank", np.arange(1, len(frame) + 1))
    return frame


def rank_genes(
    sender: pd.DataFrame, pseudobulk: pd.DataFrame, *, min_patients: int = 6
) -> pd.DataFrame:
    """Rank every gene of the malignant pseudobulk by its correlation with each signature.

    For each signature, over the patients with a score and a pseudobulk, every gene's
    Spearman rho (Pearson's r of average ranks, computed for all genes at once on the
    rank matrix) and its two-sided p value (Student's t with n - 2 degrees of freedom,
    as :func:`scipy.stats.spearmanr`). The ranking statistic is rho itself (see the
    module docstring); ties are broken by Pearson r, then by gene name.

    Parameters
    ----------
    sender
        Patients x signatures, the mean CD8 T-cell scores.
    pseudobulk
        Patients x genes, from :func:`malignant_pseudobulk`.
    min_patients
        Signatures with fewer patients are skipped with a warning.

    Returns
    -------
    Long table, one row per (signature, gene), columns :data:`RANKED_COLUMNS`: ``rank``
    1 is the most positively correlated gene; ``statistic`` is what the enrichment
    ranks on (= ``rho``). Genes constant over the patients (no rho) are left out and
    named in the log.
    """
    if sender.empty or pseudobulk.empty:
        logger.warning("No patients or no genes to rank (the screen's tables stay empty)")
        return pd.DataFrame(columns=list(RANKED_COLUMNS))
    pseudobulk = _shared_complete_patients(sender, pseudobulk)
    frames = []
    for signature in sender.columns:
        score = sender.loc[pseudobulk.index, signature].astype(float)
        frame = _rank_signature(signature, score, pseudobulk, min_patients=min_patients)
        if frame is not None:
            frames.append(frame)
    if not frames:
        return pd.DataFrame(columns=list(RANKED_COLUMNS))
    return pd.concat(frames, ignore_index=True)[list(RANKED_COLUMNS)]


def prerank(
    ranked: pd.DataFrame,
    gene_sets: Mapping[str, Sequence[str]],
    *,
    permutations: int = 1000,
    rng: RNGLike = None,
    min_size: int = 15,
    max_size: int = 500,
    threads: int = 1,
) -> pd.DataFrame:
    """Preranked GSEA of every signature's ranked gene list (:func:`gseapy.prerank`).

    One :func:`gseapy.prerank` run per signature on its ``statistic`` column, in the order
    of ``rank``, with gene-set permutations (the preranked null of GSEA). Every run uses
    the same seed, drawn once from ``rng``, so a signature's result depends only on its
    ranked list and the seed, not on the other signatures. The nominal p value, the
    FDR q value (over the gene sets of one signature, from GSEA's normalised enrichment
    scores) and the FWER p value are GSEA's; a p value of 0 means less than
    ``1 / permutations``.

    Parameters
    ----------
    ranked
        From :func:`rank_genes`.
    gene_sets
        Gene-set name -> genes (e.g. :func:`cd8exo.io.read_gmt` of the Hallmark GMT;
        several files via :func:`cd8exo.signatures.merge_gene_sets`).
    permutations
        Gene-set permutations per signature (>= 1).
    rng
        Seed or generator of the permutations.
    min_size, max_size
        Gene sets with fewer or more of their genes in a ranked list are not tested (they
        are named in the log).
    threads
        Threads of gseapy's permutations.

    Returns
    -------
    One row per (signature, tested gene set), columns :data:`ENRICHMENT_COLUMNS`, sorted
    by signature, FDR and decreasing ``|nes|``: ``n_genes`` genes of the set in the
    ranked list, ``es``/``nes`` the (normalised) enrichment score (> 0: the set's genes
    are higher in patients with a higher signature score), ``leading_edge_size`` and
    ``leading_edge_genes`` the genes before the running-sum peak, ``peak_rank_fraction``
    the position of the peak in the list (0-1). A signature none of whose gene sets has
    ``min_size``-``max_size`` genes in its list has no row (a warning says so).
    """
    import gseapy

    if permutations < 1:
        msg = f"permutations must be >= 1 (GSEA's p values need them), got {permutations}."
        raise ValueError(msg)
    if not 1 <= min_size <= max_size:
        msg = f"Need 1 <= min_size <= max_size, got min_size={min_size}, max_size={max_size}."
        raise ValueError(msg)
    missing = [c for c in ("signature", "rank", "gene", "statistic") if c not in ranked.columns]
    if missing:
        msg = f"The ranked gene table lacks column(s) {missing}; give the output of rank_genes."
        raise ValueError(msg)
    seed = seed_from(as_rng(rng))
    frames = []
    for signature, rows in ranked.groupby("signature", sort=False):
        rows = rows.sort_values("rank")
        genes = rows["gene"].astype(str).tolist()
        tested = _sets_in_range(gene_sets, genes, min_size=min_size, max_size=max_size)
        if not tested:
            continue
        statistic = pd.Series(rows["statistic"].to_numpy(float), index=genes, name=signature)
        # gseapy logs to its own stderr handler: keep its messages in our log instead.
        captured = io.StringIO()
        with contextlib.redirect_stderr(captured):
            result = gseapy.prerank(
                rnk=statistic,
                gene_sets=tested,
                permutation_num=permutations,
                min_size=min_size,
                max_size=max_size,
                seed=seed,
                threads=threads,
                ascending=None,  # keep our order: ties broken by Pearson r, then name
                outdir=None,
                no_plot=True,
                verbose=False,
            )
        for line in captured.getvalue().splitlines():
            if line.strip():
                logger.info("gseapy (%s): %s", signature, line.strip())
        if "Duplicated values" in captured.getvalue():
            logger.info("(tied genes were ordered by Pearson r, then name, before gseapy)")
        frames.append(
            _tidy_result(
                result.res2d,
                signature=signature,
                tested=tested,
                n_ranked=len(genes),
                permutations=permutations,
            )
        )
    if not frames:
        return pd.DataFrame(columns=list(ENRICHMENT_COLUMNS))
    table = pd.concat(frames, ignore_index=True)
    order = {s: i for i, s in enumerate(ranked["signature"].drop_duplicates())}
    table = table.assign(
        _signature=table["signature"].map(order), _abs_nes=-table["nes"].abs()
    ).sort_values(["_signature", "fdr_q_value", "_abs_nes", "term"], kind="stable")
    return table[list(ENRICHMENT_COLUMNS)].reset_index(drop=True)


def _sets_in_range(
    gene_sets: Mapping[str, Sequence[str]], genes: Sequence[str], *, min_size: int, max_size: int
) -> dict[str, list[str]]:
    """The gene sets with ``min_size``-``max_size`` genes in ``genes`` (restricted to them)."""
    present = set(genes)
    overlap = {name: [g for g in dict.fromkeys(s) if g in present] for name, s in gene_sets.items()}
    # gseapy also needs a set smaller than the whole list
    tested = {
        name: members
        for name, members in overlap.items()
        if min_size <= len(members) <= max_size and len(members) < len(present)
    }
    skipped = {name: len(members) for name, members in overlap.items() if name not in tested}
    if skipped:
        logger.info(
            "%d gene set(s) not tested (genes in the ranked list outside %d-%d): %s",
            len(skipped),
            min_size,
            max_size,
            ", ".join(f"{name} ({size})" for name, size in skipped.items()),
        )
    if not tested:
        largest = max(overlap.items(), key=lambda item: len(item[1]), default=("none", []))
        logger.warning(
            "No gene set has %d-%d genes among the %d ranked genes (largest: %s with %d); "
            "no enrichment. Lower screen.min_size, or check that the GMT uses HGNC symbols.",
            min_size,
            max_size,
            len(present),
            largest[0],
            len(largest[1]),
        )
    return tested


def _tidy_result(
    res2d: pd.DataFrame,
    *,
    signature: str,
    tested: Mapping[str, Sequence[str]],
    n_ranked: int,
    permutations: int,
) -> pd.DataFrame:
    """gseapy's ``res2d`` with our column names and types."""
    missing = [c for c in _GSEAPY_COLUMNS if c not in res2d.columns]
    if missing:
        msg = (
            f"gseapy.prerank returned no column(s) {missing} (it returned "
            f"{list(res2d.columns)}); cd8exo expects the columns of gseapy 1.3.1 "
            "(requirements/lock.txt)."
        )
        raise RuntimeError(msg)
    table = res2d[list(_GSEAPY_COLUMNS)].rename(columns=_GSEAPY_COLUMNS)
    table["term"] = table["term"].astype(str)
    for column in ("es", "nes", "nom_p_value", "fdr_q_value", "fwer_p_value"):
        table[column] = pd.to_numeric(table[column], errors="coerce")
    # "Tag %" is "<leading-edge genes>/<set size>", "Gene %" a percentage string
    table["leading_edge_size"] = (
        table.pop("tag").astype(str).str.split("/").str[0].pipe(pd.to_numeric, errors="coerce")
    )
    table["peak_rank_fraction"] = (
        pd.to_numeric(table["peak_rank_fraction"].astype(str).str.rstrip("%"), errors="coerce")
        / 100.0
    )
    table["leading_edge_genes"] = table["leading_edge_genes"].fillna("").astype(str)
    table["n_genes"] = table["term"].map({k: len(v) for k, v in tested.items()})
    table["signature"] = signature
    table["n_ranked_genes"] = n_ranked
    table["permutations"] = permutations
    return table
