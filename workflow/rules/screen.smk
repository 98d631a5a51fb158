# Stage 5b (optional, screen.enabled): the tumour-side screen. Every expressed gene of the
# malignant-cell pseudobulk is ranked by its correlation with each sender signature across
# patients, then preranked GSEA finds the programs at the top and bottom of the ranking.


rule screen_tumour_genes:
    input:
        h5ad="results/annotate_cells/{dataset}.h5ad",  # the cells and their labels
        matrix="results/prepare_dataset/{dataset}.h5ad",  # their values, read in blocks
        patients="results/aggregate_patients/{dataset}.patients.tsv",
        gmt=screen_gene_set_files(),
    output:
        ranked=report(
            "results/screen_tumour_genes/{dataset}.ranked.tsv.gz",
            caption="../report/screen_ranked.rst",
            category="7. Tumour-side screen",
            subcategory="{dataset}",
            labels={"dataset": "{dataset}", "table": "genes ranked by rho"},
        ),
        prerank=report(
            "results/screen_tumour_genes/{dataset}.prerank.tsv",
            caption="../report/screen_prerank.rst",
            category="7. Tumour-side screen",
            subcategory="{dataset}",
            labels={"dataset": "{dataset}", "table": "preranked GSEA"},
        ),
    log:
        "logs/screen_tumour_genes/{dataset}.log",
    benchmark:
        "benchmarks/screen_tumour_genes/{dataset}.tsv"
    conda:
        "../../envs/gseapy.yaml"
    threads: 1  # gseapy permutes in compiled code; the Hallmark sets take seconds on one thread
    resources:
        mem_mb=mem_mb_of("screen_tumour_genes"),  # the cell matrix, its linear-scale copy and a dense patients x genes table
        runtime=runtime_of("screen_tumour_genes"),
    params:
        min_cells_fraction=config["screen"]["min_cells_fraction"],
        min_cpm=config["screen"]["min_cpm"],
        min_patients=config["association"]["min_patients"],
        permutations=config["screen"]["permutations"],
        min_size=config["screen"]["min_size"],
        max_size=config["screen"]["max_size"],
        seed=config["seed"],
    script:
        "../scripts/screen_tumour_genes.py"


rule plot_top_programs:
    input:
        library=GENE_SET_LIBRARY,  # display names of signatures and gene sets
        enrichment="results/screen_tumour_genes/{dataset}.prerank.tsv",
    output:
        png=report(
            "results/plots/{dataset}/top_programs.png",
            caption="../report/top_programs.rst",
            category="7. Tumour-side screen",
            subcategory="{dataset}",
            labels={"dataset": "{dataset}", "figure": "top programs (preranked GSEA)"},
        ),
        pdf="results/plots/{dataset}/top_programs.pdf",
        svg="results/plots/{dataset}/top_programs.svg",
    log:
        "logs/plot_top_programs/{dataset}.log",
    benchmark:
        "benchmarks/plot_top_programs/{dataset}.tsv"
    conda:
        "../../envs/stats.yaml"
    threads: 1  # one matplotlib figure
    resources:
        mem_mb=mem_mb_of("plot_top_programs"),  # a small table
        runtime=runtime_of("plot_top_programs"),
    params:
        simulated=SIMULATED,  # their figures say SIMULATED
        n_top=config["screen"]["n_top"],
    script:
        "../scripts/plot_top_programs.py"
