"""The plain scanpy core a user would script instead of cd8exo (the ``scanpy_baseline`` rows
of ``make bench-scale``).

Read the h5ad, filter cells (>= 200 genes, < 20% mitochondrial counts), ``normalize_total``
+ ``log1p``, ``score_genes`` for each sender signature, the mean score of each patient's
CD8 T cells (author labels) and the malignant-cell pseudobulk (CPM) of the target genes.
No cell identity inference, no statistics, no figures. Run in its own process
(``python -m cd8exo.sim.scale_baseline``) so that its wall time and peak RSS are its own.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import scanpy as sc

from cd8exo.io.tables import read_gmt, read_targets

__all__ = ["main", "run_baseline"]


def run_baseline(
    h5ad: Path,
    *,
    gmt: Path,
    targets: Path,
    patient_column: str = "donor_id",
    cell_type_column: str = "author_cell_type",
    cd8_label: str = "T cells CD8+",
    malignant_label: str = "Cancer cells",
    seed: int = 0,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per-patient mean sender scores of CD8 T cells, and the malignant pseudobulk (CPM).

    Returns
    -------
    ``(scores, pseudobulk)``: patients x signatures, patients x target genes.
    """
    adata = sc.read_h5ad(h5ad)
    adata.var["mt"] = adata.var_names.str.startswith("MT-")
    sc.pp.calculate_qc_metrics(adata, qc_vars=["mt"], percent_top=None, inplace=True)
    keep = (adata.obs["n_genes_by_counts"] >= 200) & (adata.obs["pct_counts_mt"] < 20)
    adata = adata[keep.to_numpy()].copy()
    patients = adata.obs[patient_column].astype(str).to_numpy()
    labels = adata.obs[cell_type_column].astype(str).to_numpy()
    # malignant pseudobulk of the targets from the raw counts, before normalising in place
    malignant = labels == malignant_label
    genes = [g for g in read_targets(targets)["gene"] if g in adata.var_names]
    counts = adata.X[malignant]
    frame = pd.DataFrame(
        np.asarray(counts[:, adata.var_names.get_indexer(genes)].todense()), columns=genes
    )
    frame["_total"] = np.asarray(counts.sum(axis=1)).ravel()
    sums = frame.groupby(patients[malignant]).sum()
    pseudobulk = sums[genes].div(sums.pop("_total"), axis=0) * 1e6
    del counts, frame
    sc.pp.normalize_total(adata, target_sum=1e4)
    sc.pp.log1p(adata)
    columns = []
    for name, signature in read_gmt(gmt).items():
        present = [g for g in signature if g in adata.var_names]
        sc.tl.score_genes(adata, present, score_name=name, random_state=seed)
        columns.append(name)
    cd8 = labels == cd8_label
    scores = adata.obs.loc[cd8, columns].groupby(patients[cd8]).mean()
    return scores, pseudobulk


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m cd8exo.sim.scale_baseline --h5ad F --gmt G --targets T --out DIR``."""
    parser = argparse.ArgumentParser(prog="python -m cd8exo.sim.scale_baseline")
    parser.add_argument("--h5ad", type=Path, required=True)
    parser.add_argument("--gmt", type=Path, required=True)
    parser.add_argument("--targets", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    scores, pseudobulk = run_baseline(args.h5ad, gmt=args.gmt, targets=args.targets)
    args.out.mkdir(parents=True, exist_ok=True)
    scores.to_csv(args.out / "scores.tsv", sep="\t")
    pseudobulk.to_csv(args.out / "pseudobulk.tsv", sep="\t")
    return 0


if __name__ == "__main__":
    sys.exit(main())
