"""Rule prepare_dataset: read a local dataset and harmonise it onto the cd8exo obs schema."""

from cd8exo.cells.harmonise import read_label_map
from cd8exo.log import log_to
from cd8exo.stages import cells as stages

with log_to(snakemake.log[0]) as logger:
    row = snakemake.params.row
    adata = stages.prepare_file(
        path=row["path"],
        data_format=row["format"],
        out=snakemake.output.h5ad,
        cell_table=row.get("cell_table"),
        cell_id_column=row.get("cell_id_column"),
        dataset=row["dataset"],
        patient_column=row["patient_column"],
        sample_column=row.get("sample_column"),
        cell_type_column=row.get("cell_type_column"),  # none: CD8/malignant inferred later
        malignant_column=row.get("malignant_column"),
        label_map=read_label_map(row["label_map"]) if "label_map" in row else None,
        value_scale=row["value_scale"],
    )
    logger.info("harmonised %s: %d cells x %d genes", row["dataset"], adata.n_obs, adata.n_vars)
