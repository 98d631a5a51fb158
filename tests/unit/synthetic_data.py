"""Small seeded synthetic datasets with planted, known answers.

Everything is built here in code (no downloads, no cd8exo.simulate): a few patients
with CD8+ T cells, malignant cells and myeloid cells, raw Poisson counts, and a
patient-level signal. Each patient has an ``activation`` level; its CD8+ T cells
express the signature genes ``SIG1..SIG6`` in proportion to it, and its malignant cells
express the target ``TGT_DOWN`` in inverse proportion (a planted negative patient-level
correlation) while ``TGT_FLAT`` does not depend on it.
"""

from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd
import scipy.sparse as sp

SIGNATURE_GENES = [f"SIG{i}" for i in range(1, 7)]
TARGET_GENES = ["TGT_DOWN", "TGT_FLAT"]
MITO_GENES = ["MT-CO1", "MT-ND1", "MT-ATP6"]

#: The authors' labels of the synthetic data and their cell types.
LABEL_MAP = {
    "T cells CD8+": "CD8_T",
    "Cancer Epithelial": "malignant",
    "Myeloid": "myeloid",
}


def make_raw(
    *,
    seed: int = 0,
    n_patients: int = 6,
    n_cd8: int = 30,
    n_malignant: int = 40,
    n_myeloid: int = 15,
    n_background: int = 240,
) -> ad.AnnData:
    """Raw synthetic counts, as a reader would return them (not harmonised).

    ``obs``: ``donor``, ``label`` (authors' labels), ``sample_id``, ``n_counts_author``.
    ``uns["truth"]["activation"]``: patient -> planted activation level.
    """
    rng = np.random.default_rng(seed)
    genes = (
        [f"GENE{i:04d}" for i in range(n_background)] + SIGNATURE_GENES + TARGET_GENES + MITO_GENES
    )
    n_genes = len(genes)
    # Baseline rates spread over three orders of magnitude, so expression bins differ.
    base = rng.lognormal(mean=-1.0, sigma=1.2, size=n_genes)
    base[[genes.index(g) for g in MITO_GENES]] = 3.0
    patients = [f"P{i + 1}" for i in range(n_patients)]
    activation = dict(
        zip(patients, rng.permutation(np.linspace(0.5, 4.0, n_patients)), strict=True)
    )

    blocks, obs_rows = [], []
    for patient in patients:
        a = activation[patient]
        for label, n, kind in (
            ("T cells CD8+", n_cd8, "cd8"),
            ("Cancer Epithelial", n_malignant, "malignant"),
            ("Myeloid", n_myeloid, "myeloid"),
        ):
            rates = np.tile(base, (n, 1)) * rng.gamma(5.0, 0.2, size=(n, 1))
            if kind == "cd8":
                for g in SIGNATURE_GENES:
                    rates[:, genes.index(g)] = 2.0 * a
            if kind == "malignant":
                rates[:, genes.index("TGT_DOWN")] = 8.0 / a
                rates[:, genes.index("TGT_FLAT")] = 4.0
            blocks.append(rng.poisson(rates))
            for k in range(n):
                obs_rows.append(
                    {
                        "cell": f"{patient}_{kind}_{k}",
                        "donor": patient,
                        "label": label,
                        "sample_id": f"{patient}_s{k % 2}",
                    }
                )
    counts = np.vstack(blocks).astype(np.float32)
    obs = pd.DataFrame(obs_rows).set_index("cell")
    obs.index.name = None
    obs["n_counts_author"] = counts.sum(axis=1)
    return ad.AnnData(
        X=sp.csr_matrix(counts),
        obs=obs,
        var=pd.DataFrame(index=pd.Index(genes)),
        uns={"truth": {"activation": activation}},
    )


def make_contract(raw: ad.AnnData, *, dataset: str = "synthetic") -> ad.AnnData:
    """The harmonised form of :func:`make_raw`, built by hand (independent of harmonise)."""
    from cd8exo.vocabulary import CELL_TYPES

    obs = pd.DataFrame(index=raw.obs_names.copy())
    obs["patient"] = raw.obs["donor"].astype("category")
    obs["sample"] = raw.obs["sample_id"].astype("category")
    obs["cell_type"] = pd.Categorical(raw.obs["label"].map(LABEL_MAP), categories=CELL_TYPES)
    obs["cell_type_original"] = raw.obs["label"].astype("category")
    obs["malignant"] = (obs["cell_type"] == "malignant").to_numpy()
    x = sp.csr_matrix(raw.X, dtype=np.float32)
    return ad.AnnData(
        X=x.copy(),
        obs=obs,
        var=pd.DataFrame(index=raw.var_names.copy()),
        layers={"counts": x.copy()},
        uns={"cd8exo": {"dataset": dataset, "value_scale": "counts", "log_normalised": False}},
    )
