# Stage 5: across patients, each sender signature against each target gene.


rule associate_patients:
    input:
        patients="results/aggregate_patients/{dataset}.patients.tsv",
        random_sets="results/score_random_sets/{dataset}.tsv.gz",
        # signatures skipped in this dataset get NA rows saying why
        coverage="results/score_signatures/{dataset}.coverage.tsv",
    output:
        table="results/associate_patients/{dataset}.associations.tsv",
    log:
        "logs/associate_patients/{dataset}.log",
    benchmark:
        "benchmarks/associate_patients/{dataset}.tsv"
    conda:
        "../../envs/stats.yaml"
    threads: 1  # vectorised over the targets of each signature
    resources:
        mem_mb=mem_mb_of("associate_patients"),  # bootstrap and permutation index arrays over patients
        runtime=runtime_of("associate_patients"),
    params:
        **association_params(),
        dataset="{dataset}",
    script:
        "../scripts/associate_patients.py"


rule summarise_associations:
    input:
        tables=expand(
            "results/associate_patients/{dataset}.associations.tsv", dataset=DATASETS.index
        ),
    output:
        table=report(
            "results/summary/associations.tsv",
            caption="../report/associations.rst",
            category="4. Associations",
            labels={"table": "associations, all datasets"},
        ),
    log:
        "logs/summarise_associations/all.log",
    benchmark:
        "benchmarks/summarise_associations/all.tsv"
    conda:
        "../../envs/stats.yaml"
    threads: 1  # concatenation of small tables
    resources:
        mem_mb=mem_mb_of("summarise_associations"),  # a few small tables
        runtime=runtime_of("summarise_associations"),
    script:
        "../scripts/concatenate_tables.py"


rule summarise_datasets:
    input:
        associations=association_tables(),
        patients="results/summary/patients.tsv",
    output:
        table=report(
            "results/summary/datasets.tsv",
            caption="../report/datasets.rst",
            category="4. Associations",
            labels={"table": "datasets: analysed, partly or not testable, and why"},
        ),
    log:
        "logs/summarise_datasets/all.log",
    benchmark:
        "benchmarks/summarise_datasets/all.tsv"
    conda:
        "../../envs/stats.yaml"
    threads: 1  # a summary of small tables
    resources:
        mem_mb=mem_mb_of("summarise_datasets"),  # small tables
        runtime=runtime_of("summarise_datasets"),
    params:
        datasets=list(DATASETS.index),
    script:
        "../scripts/summarise_datasets.py"


rule check_truth:
    input:
        associations=association_tables(),
        # the target sets' rows (workflow/rules/receiver.smk), when they are tested
        sets=receiver_set_table(),
        truth=[DATASETS.loc[d, "truth"] for d in truth_datasets()],
    output:
        table=report(
            "results/summary/truth_check.tsv",
            caption="../report/truth_check.rst",
            category="4. Associations",
            labels={"table": "planted truth vs recovered (simulated data)"},
        ),
    log:
        "logs/check_truth/all.log",
    benchmark:
        "benchmarks/check_truth/all.tsv"
    conda:
        "../../envs/stats.yaml"
    threads: 1  # a table join
    resources:
        mem_mb=mem_mb_of("check_truth"),  # small tables
        runtime=runtime_of("check_truth"),
    params:
        datasets=truth_datasets(),
        fdr=config["association"]["fdr"],
    script:
        "../scripts/check_truth.py"


rule meta_analysis:
    input:
        associations=association_tables(),
    output:
        table=report(
            "results/summary/meta_analysis.tsv",
            caption="../report/meta_analysis.rst",
            category="6. Meta-analysis",
            labels={"table": "random-effects meta-analysis across datasets"},
        ),
    log:
        "logs/meta_analysis/all.log",
    benchmark:
        "benchmarks/meta_analysis/all.tsv"
    conda:
        "../../envs/stats.yaml"
    threads: 1  # one small weighted sum per (signature, target)
    resources:
        mem_mb=mem_mb_of("meta_analysis"),  # small tables
        runtime=runtime_of("meta_analysis"),
    params:
        level=config["association"]["ci_level"],
    script:
        "../scripts/meta_analysis.py"
