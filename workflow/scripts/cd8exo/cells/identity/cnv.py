"""Copy-number profiles (inferCNV) of every cell against an immune/stromal reference."""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass

import anndata as ad
import numpy as np
import pandas as pd
import scipy.sparse as sp

from cd8exo._utils import RNGLike, as_rng
from cd8exo.cells.identity.graph import _light

logger = logging.getLogger(__name__)

__all__ = ["CNVResult", "cnv_from_anndata", "cnv_subsample", "cnv_to_anndata"]

#: Genes left out of the copy-number inference (regular expression on symbols):
#: immunoglobulin and T-cell receptor segments and the HLA genes.
CNV_EXCLUDED_GENES: str = r"^(IG[HKL][VDJC]|TR[ABDG][VDJC]|HLA-)"


# --------------------------------------------------------------------------- #
# Malignant cells
# --------------------------------------------------------------------------- #
@dataclass
class CNVResult:
    """Inferred copy-number profiles (infercnvpy) of every cell.

    Attributes
    ----------
    matrix
        Cells x genomic windows (CSR, float32): smoothed, reference-centred log
        expression, ~log2 copy-number ratio (0 = like the reference).
    obs_names
        The cells, in the order of ``matrix``.
    chr_pos
        Chromosome -> index of its first window (chromosomes in natural order).
    """

    matrix: sp.csr_matrix
    obs_names: pd.Index
    chr_pos: dict[str, int]


def _gene_positions_frame(gene_positions: pd.DataFrame) -> pd.DataFrame:
    table = gene_positions.copy()
    if list(table.columns) == [0, 1, 2, 3]:
        table.columns = ["gene", "chromosome", "start", "end"]
    missing = [c for c in ("gene", "chromosome", "start", "end") if c not in table.columns]
    if missing:
        msg = (
            f"The gene-position table lacks the column(s) {missing} (it has {list(table.columns)}). "
            "Read resources/genome/hg38_gencode_v27_gene_pos.txt with header=None and "
            "names=['gene', 'chromosome', 'start', 'end']."
        )
        raise ValueError(msg)
    bad = (
        pd.to_numeric(table["start"], errors="coerce").isna()
        | pd.to_numeric(table["end"], errors="coerce").isna()
    )
    if bad.any():
        first = table.loc[bad].iloc[0].to_dict()
        msg = (
            f"{int(bad.sum())} row(s) of the gene-position table have non-numeric start/end "
            f"(first: {first}); fix or remove them."
        )
        raise ValueError(msg)
    table["chromosome"] = table["chromosome"].astype(str)
    no_prefix = ~table["chromosome"].str.startswith("chr")
    table.loc[no_prefix, "chromosome"] = "chr" + table.loc[no_prefix, "chromosome"]
    duplicated = table["gene"].duplicated()
    if duplicated.any():
        logger.info(
            "Gene positions: %d duplicated symbol(s) kept at their first position",
            int(duplicated.sum()),
        )
    table = table.loc[~duplicated].set_index("gene")
    return table[["chromosome", "start", "end"]].astype({"start": int, "end": int})


def _run_infercnv(
    x,
    obs_names: pd.Index,
    positions: pd.DataFrame,
    *,
    reference: np.ndarray,
    window_size: int,
    step: int,
    n_jobs: int,
) -> tuple[sp.csr_matrix, dict[str, int]]:
    import infercnvpy as cnv

    light = _light(x, obs_names, positions.index)
    light.var = positions.copy()
    with warnings.catch_warnings():
        # infercnvpy's bounded difference indexes a sparse chunk element-wise (harmless)
        warnings.simplefilter("ignore", sp.SparseEfficiencyWarning)
        chr_pos, matrix, _ = cnv.tl.infercnv(
            light,
            reference=reference,
            window_size=window_size,
            step=step,
            n_jobs=n_jobs,
            inplace=False,
        )
    return sp.csr_matrix(matrix, dtype=np.float32), dict(chr_pos)


def cnv_subsample(
    cnv: CNVResult, *, groups: pd.Series, max_cells: int = 3000, rng: RNGLike = 0
) -> tuple[CNVResult, pd.Series]:
    """A seeded subsample of copy-number profiles (proportional per group), for the figure.

    Parameters
    ----------
    cnv
        Profiles (:func:`call_malignant`).
    groups
        A group per cell of ``cnv``.
    max_cells
        At most this many cells are kept (every group keeps at least one).
    rng
        Generator or seed.

    Returns
    -------
    The kept profiles and their groups, in the original cell order.
    """
    gen = as_rng(rng)
    labels = groups.reindex(cnv.obs_names).astype(str).fillna("NA").to_numpy()
    n = len(labels)
    fraction = min(1.0, max_cells / n) if n else 1.0
    keep = []
    for group in sorted(set(labels)):
        idx = np.nonzero(labels == group)[0]
        size = min(len(idx), max(1, round(len(idx) * fraction)))
        keep.append(gen.choice(idx, size=size, replace=False))
    index = np.sort(np.concatenate(keep)) if keep else np.array([], dtype=int)
    kept = CNVResult(
        matrix=sp.csr_matrix(cnv.matrix[index]),
        obs_names=cnv.obs_names[index],
        chr_pos=dict(cnv.chr_pos),
    )
    return kept, pd.Series(labels[index], index=kept.obs_names, name="group")


def cnv_to_anndata(
    cnv: CNVResult | None, *, groups: pd.Series | None = None, note: str = ""
) -> ad.AnnData:
    """Copy-number profiles as an AnnData (cells x windows) to store between rules.

    Parameters
    ----------
    cnv
        Profiles, or None (an empty AnnData that keeps only the ``note``).
    groups
        A group per cell (``obs["group"]``); default "all cells".
    note
        Where the profiles come from, or why there are none (``uns["note"]``).

    Returns
    -------
    AnnData with ``X`` the profiles, ``obs["group"]``, ``uns["chr_pos"]`` and ``uns["note"]``.
    """
    if cnv is None:
        return ad.AnnData(
            X=sp.csr_matrix((0, 0), dtype=np.float32),
            uns={"note": note, "chr_pos": {}},
        )
    labels = (
        pd.Series("all cells", index=cnv.obs_names)
        if groups is None
        else groups.reindex(cnv.obs_names).astype(str).fillna("NA")
    )
    return ad.AnnData(
        X=sp.csr_matrix(cnv.matrix, dtype=np.float32),
        obs=pd.DataFrame({"group": labels.to_numpy()}, index=cnv.obs_names.astype(str)),
        uns={"note": note, "chr_pos": {str(k): int(v) for k, v in cnv.chr_pos.items()}},
    )


def cnv_from_anndata(stored: ad.AnnData) -> tuple[CNVResult | None, pd.Series | None, str]:
    """The profiles, groups and note of :func:`cnv_to_anndata` (None, None, note when empty)."""
    note = str(stored.uns.get("note", ""))
    if stored.n_obs == 0:
        return None, None, note
    chr_pos = {str(k): int(v) for k, v in dict(stored.uns.get("chr_pos", {})).items()}
    cnv = CNVResult(
        matrix=sp.csr_matrix(stored.X, dtype=np.float32),
        obs_names=stored.obs_names.copy(),
        chr_pos=chr_pos,
    )
    groups = stored.obs["group"].astype(str) if "group" in stored.obs else None
    return cnv, groups, note
