"""Rule annotate_cells: CD8 T-cell and malignant labels (author where given, else inferred)."""

from cd8exo.cells import identity
from cd8exo.cells.store import open_cells, write_cells
from cd8exo.io.local import write_h5ad
from cd8exo.io.tables import write_table
from cd8exo.log import log_to
from cd8exo.stages import cells as stages

with log_to(snakemake.log[0]):
    inputs, params = snakemake.input, snakemake.params
    adata = open_cells(inputs.matrix, inputs.h5ad)
    obs_before = adata.obs
    found = stages.identify(
        adata,
        references=identity.read_identity_references(
            inputs.cd8_markers, inputs.lineage_markers, inputs.gene_positions
        ),
        cancer_type=params.cancer_type,
        force_inference=params.force_inference,
        agreement=params.agreement,
        rng=params.seed,
        resolution=params.resolution,
        max_cells=params.max_graph_cells,
    )
    result = found.result
    write_table(identity.identity_table(result, obs=obs_before), snakemake.output.identity)
    agreement = result.agreement.copy()
    agreement.insert(0, "dataset", snakemake.wildcards.dataset)
    write_table(agreement, snakemake.output.agreement)
    profiles, groups = None, None
    if result.cnv is not None:
        profiles, groups = identity.cnv_subsample(
            result.cnv, groups=result.cnv_groups, rng=params.seed
        )
    write_h5ad(
        identity.cnv_to_anndata(profiles, groups=groups, note=result.cnv_note), snakemake.output.cnv
    )
    write_cells(found.adata, snakemake.output.h5ad)
