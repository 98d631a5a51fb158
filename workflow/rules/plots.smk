# Stage 6: figures for the report.


rule plot_umap:
    input:
        umap="results/embed_cells/{dataset}.umap.tsv.gz",
    output:
        png=report(
            "results/plots/{dataset}/umap.png",
            caption="../report/umap.rst",
            category="1. Data and QC",
            subcategory="{dataset}",
            labels={"dataset": "{dataset}", "figure": "UMAP"},
        ),
    log:
        "logs/plot_umap/{dataset}.log",
    benchmark:
        "benchmarks/plot_umap/{dataset}.tsv"
    conda:
        "../../envs/scanpy.yaml"
    threads: 1  # one matplotlib figure
    resources:
        mem_mb=mem_mb_of("plot_umap"),  # coordinates of every cell
        runtime=runtime_of("plot_umap"),
    script:
        "../scripts/plot_umap.py"


rule plot_sender_scores:
    input:
        scores="results/score_signatures/{dataset}.scores.tsv.gz",
        patients="results/aggregate_patients/{dataset}.patients.tsv",
    output:
        png=report(
            "results/plots/{dataset}/sender_scores.png",
            caption="../report/sender_scores.rst",
            category="2. Signatures",
            subcategory="{dataset}",
            labels={"dataset": "{dataset}", "figure": "CD8 T-cell scores by patient"},
        ),
    log:
        "logs/plot_sender_scores/{dataset}.log",
    benchmark:
        "benchmarks/plot_sender_scores/{dataset}.tsv"
    conda:
        "../../envs/scanpy.yaml"
    threads: 1  # one matplotlib figure
    resources:
        mem_mb=mem_mb_of("plot_sender_scores"),  # per-cell scores
        runtime=runtime_of("plot_sender_scores"),
    script:
        "../scripts/plot_sender_scores.py"


rule plot_rho_heatmap:
    input:
        table="results/associate_patients/{dataset}.associations.tsv",
    output:
        png=report(
            "results/plots/{dataset}/rho_heatmap.png",
            caption="../report/rho_heatmap.rst",
            category="4. Associations",
            subcategory="{dataset}",
            labels={"dataset": "{dataset}", "figure": "Spearman rho heatmap"},
        ),
    log:
        "logs/plot_rho_heatmap/{dataset}.log",
    benchmark:
        "benchmarks/plot_rho_heatmap/{dataset}.tsv"
    conda:
        "../../envs/stats.yaml"
    threads: 1  # one matplotlib figure
    resources:
        mem_mb=mem_mb_of("plot_rho_heatmap"),  # a small table
        runtime=runtime_of("plot_rho_heatmap"),
    params:
        fdr=config["association"]["fdr"],
    script:
        "../scripts/plot_rho_heatmap.py"


rule plot_scatters:
    input:
        patients="results/aggregate_patients/{dataset}.patients.tsv",
        table="results/associate_patients/{dataset}.associations.tsv",
    output:
        folder=report(
            directory("results/plots/{dataset}/scatter"),
            patterns=["{signature}__{target}.png"],
            caption="../report/scatter.rst",
            category="5. Patient-level scatters",
            subcategory="{dataset}",
            labels={"dataset": "{dataset}", "signature": "{signature}", "target": "{target}"},
        ),
    log:
        "logs/plot_scatters/{dataset}.log",
    benchmark:
        "benchmarks/plot_scatters/{dataset}.tsv"
    conda:
        "../../envs/stats.yaml"
    threads: 1  # one small figure per pair, drawn in sequence
    resources:
        mem_mb=mem_mb_of("plot_scatters"),  # patient-level tables only
        runtime=runtime_of("plot_scatters"),
    script:
        "../scripts/plot_scatters.py"


rule plot_forests:
    input:
        associations="results/summary/associations.tsv",
        meta="results/summary/meta_analysis.tsv",
    output:
        folder=report(
            directory("results/plots/meta/forest"),
            patterns=["{signature}__{target}.png"],
            caption="../report/forest.rst",
            category="6. Meta-analysis",
            subcategory="forest plots",
            labels={"signature": "{signature}", "target": "{target}"},
        ),
    log:
        "logs/plot_forests/all.log",
    benchmark:
        "benchmarks/plot_forests/all.tsv"
    conda:
        "../../envs/stats.yaml"
    threads: 1  # one small figure per pair, drawn in sequence
    resources:
        mem_mb=mem_mb_of("plot_forests"),  # small tables
        runtime=runtime_of("plot_forests"),
    params:
        level=config["association"]["ci_level"],
    script:
        "../scripts/plot_forests.py"
