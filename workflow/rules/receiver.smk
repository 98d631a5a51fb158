# Receiver side beyond single genes: each cargo miRNA's target set (targets.mirna_gmt, the sets
# of the miRNAs in targets.cargo_table) scored per patient in the malignant cells, then tested
# against every sender signature like the target genes, plus a set-specificity null.


rule score_receiver_sets:
    input:
        h5ad="results/annotate_cells/{dataset}.h5ad",  # the cells and their labels
        matrix="results/prepare_dataset/{dataset}.h5ad",  # their values, read in blocks
        gmt=config["targets"]["mirna_gmt"] or [],
        cargo=config["targets"]["cargo_table"],
        # the sender signatures as scored: their genes are removed from every target set
        senders="results/score_signatures/{dataset}.prepared.gmt",
        hgnc_aliases=HGNC_TABLES["hgnc_aliases"],
        ensembl_symbols=HGNC_TABLES["ensembl_symbols"],
    output:
        scores="results/score_receiver_sets/{dataset}.scores.tsv",
        random_sets="results/score_receiver_sets/{dataset}.random_sets.tsv.gz",
        coverage=report(
            "results/score_receiver_sets/{dataset}.coverage.tsv",
            caption="../report/receiver_coverage.rst",
            category="7. Target sets",
            subcategory="{dataset}",
            labels={"dataset": "{dataset}", "table": "target-set gene coverage"},
        ),
        overlap="results/score_receiver_sets/{dataset}.overlap.tsv",
        prepared="results/score_receiver_sets/{dataset}.prepared.gmt",
    log:
        "logs/score_receiver_sets/{dataset}.log",
    benchmark:
        "benchmarks/score_receiver_sets/{dataset}.tsv"
    conda:
        "../../envs/scanpy.yaml"
    threads: 1  # one pass over chunks of the malignant cells per batch of sets
    resources:
        mem_mb=mem_mb_of("score_receiver_sets"),  # the malignant cells' rows only, plus cells x random-sets scores of one set
        runtime=runtime_of("score_receiver_sets"),
    params:
        min_coverage=config["signatures"]["min_coverage"],
        n_random_sets=config["association"]["n_random_sets"],
        scoring=scoring_options(),
        seed=config["seed"],
    script:
        "../scripts/score_receiver_sets.py"


rule associate_receiver_sets:
    input:
        patients="results/aggregate_patients/{dataset}.patients.tsv",
        scores="results/score_receiver_sets/{dataset}.scores.tsv",
        random_sets="results/score_receiver_sets/{dataset}.random_sets.tsv.gz",
        set_coverage="results/score_receiver_sets/{dataset}.coverage.tsv",
        # signatures skipped in this dataset get NA rows saying why
        coverage="results/score_signatures/{dataset}.coverage.tsv",
        gmt=config["targets"]["mirna_gmt"] or [],
        cargo=config["targets"]["cargo_table"],
    output:
        table="results/associate_receiver_sets/{dataset}.associations.tsv",
    log:
        "logs/associate_receiver_sets/{dataset}.log",
    benchmark:
        "benchmarks/associate_receiver_sets/{dataset}.tsv"
    conda:
        "../../envs/stats.yaml"
    threads: 1  # vectorised over the target sets of each signature
    resources:
        mem_mb=mem_mb_of("associate_receiver_sets"),  # bootstrap and permutation index arrays over patients
        runtime=runtime_of("associate_receiver_sets"),
    params:
        **association_params(),
        dataset="{dataset}",
    script:
        "../scripts/associate_receiver_sets.py"


rule summarise_receiver_sets:
    input:
        tables=expand(
            "results/associate_receiver_sets/{dataset}.associations.tsv",
            dataset=DATASETS.index,
        ),
    output:
        table=report(
            "results/summary/receiver_set_associations.tsv",
            caption="../report/receiver_set_associations.rst",
            category="7. Target sets",
            labels={"table": "target-set associations, all datasets"},
        ),
    log:
        "logs/summarise_receiver_sets/all.log",
    benchmark:
        "benchmarks/summarise_receiver_sets/all.tsv"
    conda:
        "../../envs/stats.yaml"
    threads: 1  # concatenation of small tables
    resources:
        mem_mb=mem_mb_of("summarise_receiver_sets"),  # a few small tables
        runtime=runtime_of("summarise_receiver_sets"),
    script:
        "../scripts/concatenate_tables.py"


rule plot_target_sets:
    input:
        patients="results/aggregate_patients/{dataset}.patients.tsv",
        scores="results/score_receiver_sets/{dataset}.scores.tsv",
        sets="results/associate_receiver_sets/{dataset}.associations.tsv",
        # the single validated target of each miRNA (the target table's `cargo` column)
        genes="results/associate_patients/{dataset}.associations.tsv",
        targets=config["targets"]["table"],
        library=GENE_SET_LIBRARY,  # display names of signatures and gene sets
    output:
        folder=report(
            directory("results/plots/{dataset}/target_sets"),
            patterns=["{mirna}.png"],  # beside each: .pdf and .svg
            caption="../report/target_set_scatter.rst",
            category="7. Target sets",
            subcategory="{dataset}",
            labels={"dataset": "{dataset}", "figure": "{mirna}: scatters"},
        ),
        png=report(
            "results/plots/{dataset}/target_set_heatmap.png",
            caption="../report/target_set_heatmap.rst",
            category="7. Target sets",
            subcategory="{dataset}",
            labels={"dataset": "{dataset}", "figure": "signatures x cargo miRNAs"},
        ),
        pdf="results/plots/{dataset}/target_set_heatmap.pdf",
        svg="results/plots/{dataset}/target_set_heatmap.svg",
    log:
        "logs/plot_target_sets/{dataset}.log",
    benchmark:
        "benchmarks/plot_target_sets/{dataset}.tsv"
    conda:
        "../../envs/stats.yaml"
    threads: 1  # one small figure per cargo miRNA, drawn in sequence
    resources:
        mem_mb=mem_mb_of("plot_target_sets"),  # patient-level tables only
        runtime=runtime_of("plot_target_sets"),
    params:
        simulated=SIMULATED,  # their figures say SIMULATED
        fdr=config["association"]["fdr"],
    script:
        "../scripts/plot_target_sets.py"
