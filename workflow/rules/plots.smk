# Stage 6: figures for the report (the figure standard: cd8exo.pl, README "Figures").

from cd8exo.io.report_listing import PairListing  # noqa: E402

# the per-pair figures are listed by target role, with rho and q in their labels
LISTING = PairListing(config["targets"]["table"])


rule plot_umap:
    input:
        umap="results/embed_cells/{dataset}.umap.tsv.gz",
        library=GENE_SET_LIBRARY,  # display names of signatures and gene sets
    output:
        png=report(
            "results/plots/{dataset}/umap.png",
            caption="../report/umap.rst",
            category="1. Data and QC",
            subcategory="{dataset}",
            labels={"dataset": "{dataset}", "figure": "UMAP"},
        ),
        pdf="results/plots/{dataset}/umap.pdf",
        svg="results/plots/{dataset}/umap.svg",
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
    params:
        simulated=SIMULATED,  # their figures say SIMULATED
    script:
        "../scripts/plot_umap.py"


rule plot_sender_scores:
    input:
        scores="results/score_signatures/{dataset}.scores.tsv.gz",
        patients="results/aggregate_patients/{dataset}.patients.tsv",
        library=GENE_SET_LIBRARY,  # display names of signatures and gene sets
    output:
        png=report(
            "results/plots/{dataset}/sender_scores.png",
            caption="../report/sender_scores.rst",
            category="2. Signatures",
            subcategory="{dataset}",
            labels={"dataset": "{dataset}", "figure": "CD8 T-cell scores by patient"},
        ),
        pdf="results/plots/{dataset}/sender_scores.pdf",
        svg="results/plots/{dataset}/sender_scores.svg",
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
    params:
        simulated=SIMULATED,  # their figures say SIMULATED
    script:
        "../scripts/plot_sender_scores.py"


rule plot_rho_heatmap:
    input:
        table="results/associate_patients/{dataset}.associations.tsv",
        library=GENE_SET_LIBRARY,  # display names of signatures and gene sets
    output:
        png=report(
            "results/plots/{dataset}/rho_heatmap.png",
            caption="../report/rho_heatmap.rst",
            category="4. Associations",
            subcategory="{dataset}",
            labels={"dataset": "{dataset}", "figure": "Spearman rho heatmap"},
        ),
        pdf="results/plots/{dataset}/rho_heatmap.pdf",
        svg="results/plots/{dataset}/rho_heatmap.svg",
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
        simulated=SIMULATED,  # their figures say SIMULATED
        fdr=config["association"]["fdr"],
    script:
        "../scripts/plot_rho_heatmap.py"


rule plot_scatters:
    input:
        patients="results/aggregate_patients/{dataset}.patients.tsv",
        table="results/associate_patients/{dataset}.associations.tsv",
        library=GENE_SET_LIBRARY,  # display names of signatures and gene sets
    output:
        folder=report(
            directory("results/plots/{dataset}/scatter"),
            patterns=["{signature}__{target}.png"],  # beside each: .pdf and .svg
            caption="../report/scatter.rst",
            category="5. Patient-level scatters",
            subcategory=LISTING.scatter_subcategory,
            labels=LISTING.scatter_labels,
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
    params:
        simulated=SIMULATED,  # their figures say SIMULATED
    script:
        "../scripts/plot_scatters.py"


rule plot_forests:
    input:
        associations=association_tables(),
        meta="results/summary/meta_analysis.tsv",
        library=GENE_SET_LIBRARY,  # display names of signatures and gene sets
    output:
        folder=report(
            directory("results/plots/meta/forest"),
            patterns=["{signature}__{target}.png"],  # beside each: .pdf and .svg
            caption="../report/forest.rst",
            category="6. Meta-analysis",
            subcategory=LISTING.forest_subcategory,
            labels=LISTING.forest_labels,
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
        simulated=SIMULATED,  # their figures say SIMULATED
        level=config["association"]["ci_level"],
    script:
        "../scripts/plot_forests.py"


rule plot_concordance:
    input:
        table="results/compare_scoring_methods/{dataset}.concordance.tsv",
        library=GENE_SET_LIBRARY,  # display names of signatures and gene sets
    output:
        png=report(
            "results/plots/{dataset}/concordance.png",
            caption="../report/concordance_figure.rst",
            category="2. Signatures",
            subcategory="{dataset}",
            labels={"dataset": "{dataset}", "figure": "concordance of scoring methods"},
        ),
        pdf="results/plots/{dataset}/concordance.pdf",
        svg="results/plots/{dataset}/concordance.svg",
    log:
        "logs/plot_concordance/{dataset}.log",
    benchmark:
        "benchmarks/plot_concordance/{dataset}.tsv"
    conda:
        "../../envs/stats.yaml"
    threads: 1  # one matplotlib figure
    resources:
        mem_mb=mem_mb_of("plot_concordance"),  # a small table
        runtime=runtime_of("plot_concordance"),
    params:
        simulated=SIMULATED,  # their figures say SIMULATED
    script:
        "../scripts/plot_concordance.py"
