# Stage 2: cell QC, log-normalisation (raw counts only) and the embedding for the figures.


rule filter_cells:
    input:
        h5ad="results/prepare_dataset/{dataset}.h5ad",
    output:
        h5ad="results/filter_cells/{dataset}.h5ad",
        removed=report(
            "results/filter_cells/{dataset}.removed.tsv",
            caption="../report/filter_cells.rst",
            category="1. Data and QC",
            subcategory="{dataset}",
            labels={"dataset": "{dataset}", "table": "cells removed by QC"},
        ),
    log:
        "logs/filter_cells/{dataset}.log",
    benchmark:
        "benchmarks/filter_cells/{dataset}.tsv"
    conda:
        "../../envs/scanpy.yaml"
    threads: 1  # per-cell sums over a sparse matrix
    resources:
        mem_mb=mem_mb_of("filter_cells"),  # the matrix, its counts layer and the log-normalised copy
        runtime=runtime_of("filter_cells"),
    params:
        min_genes=config["qc"]["min_genes"],
        max_mito_fraction=config["qc"]["max_mito_fraction"],
    script:
        "../scripts/filter_cells.py"


rule embed_cells:
    input:
        h5ad="results/annotate_cells/{dataset}.h5ad",  # the cells and their labels
        matrix="results/prepare_dataset/{dataset}.h5ad",  # their values, read in blocks
    output:
        umap="results/embed_cells/{dataset}.umap.tsv.gz",
    log:
        "logs/embed_cells/{dataset}.log",
    benchmark:
        "benchmarks/embed_cells/{dataset}.tsv"
    conda:
        "../../envs/scanpy.yaml"
    threads: 2  # PCA and UMAP use numba/BLAS threads
    resources:
        mem_mb=mem_mb_of("embed_cells"),  # dense PCA input of the highly variable genes
        runtime=runtime_of("embed_cells"),
    params:
        n_top_genes=config["embedding"]["n_top_genes"],
        n_pcs=config["embedding"]["n_pcs"],
        n_neighbors=config["embedding"]["n_neighbors"],
        max_graph_cells=config["identity"]["max_graph_cells"],
        seed=config["seed"],
    script:
        "../scripts/embed_cells.py"
