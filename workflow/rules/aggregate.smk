# Stage 4: per-patient values (CD8 sender scores, malignant-cell pseudobulk of the targets).


rule aggregate_patients:
    input:
        h5ad="results/annotate_cells/{dataset}.h5ad",  # the cells and their labels
        matrix="results/prepare_dataset/{dataset}.h5ad",  # their values, read in blocks
        scores="results/score_signatures/{dataset}.scores.tsv.gz",
        targets=config["targets"]["table"],
    output:
        patients="results/aggregate_patients/{dataset}.patients.tsv",
        excluded=report(
            "results/aggregate_patients/{dataset}.excluded.tsv",
            caption="../report/excluded.rst",
            category="3. Patients",
            subcategory="{dataset}",
            labels={"dataset": "{dataset}", "table": "excluded patients"},
        ),
    log:
        "logs/aggregate_patients/{dataset}.log",
    benchmark:
        "benchmarks/aggregate_patients/{dataset}.tsv"
    conda:
        "../../envs/scanpy.yaml"
    threads: 1  # group sums over a sparse matrix
    resources:
        mem_mb=mem_mb_of("aggregate_patients"),  # the matrix and its linear-scale copy of the target genes
        runtime=runtime_of("aggregate_patients"),
    params:
        extra_targets=config["targets"]["extra"],
        min_cd8_cells=config["aggregation"]["min_cd8_cells"],
        min_malignant_cells=config["aggregation"]["min_malignant_cells"],
    script:
        "../scripts/aggregate_patients.py"


rule summarise_patients:
    input:
        patients=expand("results/aggregate_patients/{dataset}.patients.tsv", dataset=DATASETS.index),
    output:
        table=report(
            "results/summary/patients.tsv",
            caption="../report/patients.rst",
            category="3. Patients",
            labels={"table": "patient-level values, all datasets"},
        ),
    log:
        "logs/summarise_patients/all.log",
    benchmark:
        "benchmarks/summarise_patients/all.tsv"
    conda:
        "../../envs/scanpy.yaml"
    threads: 1  # concatenation of small tables
    resources:
        mem_mb=mem_mb_of("summarise_patients"),  # a few small tables
        runtime=runtime_of("summarise_patients"),
    script:
        "../scripts/concatenate_tables.py"
