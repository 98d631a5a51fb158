# Stage 2b: cell identity. Author labels of CD8 T cells and malignant cells win where the
# dataset has them; the rest is inferred (cd8exo.identity: marker gating on kNN
# neighbourhoods and clusters for CD8 T cells, infercnvpy copy-number profiles plus lineage
# markers for malignant cells). Where author labels exist, the inference is also run with
# them hidden and compared with them (identity.agreement). Every analysis rule reads the
# annotated cells.

# marker tables and gene positions (provenance: resources/markers/PROVENANCE.md,
# resources/genome/PROVENANCE_genome.md)
IDENTITY_RESOURCES = {
    "cd8_markers": [
        str(Path(workflow.basedir) / "resources/markers/cd8_identity_markers.tsv"),
        str(Path(workflow.basedir) / "resources/markers/cd8_support_markers.tsv"),
    ],
    "lineage_markers": str(
        Path(workflow.basedir) / "resources/markers/malignant_lineage_markers.tsv"
    ),
    "gene_positions": str(
        Path(workflow.basedir) / "resources/genome/hg38_gencode_v27_gene_pos.txt"
    ),
}


rule annotate_cells:
    input:
        **IDENTITY_RESOURCES,
        h5ad="results/filter_cells/{dataset}.h5ad",  # the cells kept by QC
        matrix="results/prepare_dataset/{dataset}.h5ad",  # their values, read in blocks
    output:
        h5ad="results/annotate_cells/{dataset}.h5ad",  # the cells and their labels (no matrix)
        identity=report(
            "results/annotate_cells/{dataset}.identity.tsv",
            caption="../report/identity.rst",
            category="1. Data and QC",
            subcategory="{dataset}",
            labels={"dataset": "{dataset}", "table": "cell identity calls"},
        ),
        agreement=report(
            "results/annotate_cells/{dataset}.agreement.tsv",
            caption="../report/identity_agreement.rst",
            category="1. Data and QC",
            subcategory="{dataset}",
            labels={"dataset": "{dataset}", "table": "inferred vs author labels"},
        ),
        cnv="results/annotate_cells/{dataset}.cnv.h5ad",
    log:
        "logs/annotate_cells/{dataset}.log",
    benchmark:
        "benchmarks/annotate_cells/{dataset}.tsv"
    conda:
        "../../envs/scanpy.yaml"
    threads: 1  # Leiden and infercnvpy (n_jobs=1) are single-threaded
    resources:
        # up to ~200,000 cells (GSE131907), an estimate: the matrix and its counts, the
        # gene subset infercnvpy smooths and the cells x windows copy-number profiles
        # (the demo cohorts peak at 0.5 GB, CID4465 at 1.3 GB)
        mem_mb=mem_mb_of("annotate_cells"),
        runtime=runtime_of("annotate_cells"),
    params:
        cancer_type=dataset_cancer_type,
        force_inference=config["identity"]["force_inference"],
        agreement=config["identity"]["agreement"],
        resolution=config["identity"]["resolution"],
        max_graph_cells=config["identity"]["max_graph_cells"],
        seed=config["seed"],
    script:
        "../scripts/annotate_cells.py"


rule plot_cnv_heatmap:
    input:
        library=GENE_SET_LIBRARY,  # display names of signatures and gene sets
        cnv="results/annotate_cells/{dataset}.cnv.h5ad",
    output:
        png=report(
            "results/plots/{dataset}/cnv_heatmap.png",
            caption="../report/cnv_heatmap.rst",
            category="1. Data and QC",
            subcategory="{dataset}",
            labels={"dataset": "{dataset}", "figure": "inferred copy-number profiles"},
        ),
        pdf="results/plots/{dataset}/cnv_heatmap.pdf",
        svg="results/plots/{dataset}/cnv_heatmap.svg",
    log:
        "logs/plot_cnv_heatmap/{dataset}.log",
    benchmark:
        "benchmarks/plot_cnv_heatmap/{dataset}.tsv"
    conda:
        "../../envs/scanpy.yaml"
    threads: 1  # one matplotlib figure
    resources:
        mem_mb=mem_mb_of("plot_cnv_heatmap"),  # at most 3,000 cells x genomic windows
        runtime=runtime_of("plot_cnv_heatmap"),
    params:
        simulated=SIMULATED,  # their figures say SIMULATED
        seed=config["seed"],
    script:
        "../scripts/plot_cnv_heatmap.py"
