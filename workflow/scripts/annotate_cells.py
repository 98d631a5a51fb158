"""Rule annotate_cells: CD8 T-cell and malignant labels (author where given, else inferred)."""

import anndata as ad

from cd8exo.cells import identity
from cd8exo.io.local import write_h5ad
from cd8exo.io.tables import write_table
from cd8exo.log import log_to

with log_to(snakemake.log[0]):
    adata = ad.read_h5ad(snakemake.input.h5ad)
    seed = snakemake.params.seed
    result = identity.identify_cells(
        adata,
        **identity.read_identity_references(
            snakemake.input.cd8_markers,
            snakemake.input.lineage_markers,
            snakemake.input.gene_positions,
        ),
        cancer_type=snakemake.params.cancer_type or None,
        force_inference=snakemake.params.force_inference,
        agreement=snakemake.params.agreement,
        rng=seed,
        resolution=snakemake.params.resolution,
    )
    write_table(identity.identity_table(result, obs=adata.obs), snakemake.output.identity)
    agreement = result.agreement.copy()
    agreement.insert(0, "dataset", snakemake.wildcards.dataset)
    write_table(agreement, snakemake.output.agreement)
    profiles, groups = None, None
    if result.cnv is not None:
        profiles, groups = identity.cnv_subsample(result.cnv, groups=result.cnv_groups, rng=seed)
    stored = identity.cnv_to_anndata(profiles, groups=groups, note=result.cnv_note)
    write_h5ad(stored, snakemake.output.cnv)
    adata.obs = identity.annotated_obs(adata.obs, result.calls)
    adata.uns["cd8exo"]["identity"] = {
        "author_labels": result.author_labels,
        "force_inference": snakemake.params.force_inference,
    }
    write_h5ad(adata, snakemake.output.h5ad)
