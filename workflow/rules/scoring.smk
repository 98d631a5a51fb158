# Stage 3: sender signatures scored in every cell (Tirosh 2016 method, seeded).


rule score_signatures:
    input:
        h5ad="results/filter_cells/{dataset}.h5ad",
        gmt=config["signatures"]["gmt"],
    output:
        scores="results/score_signatures/{dataset}.scores.tsv.gz",
        coverage=report(
            "results/score_signatures/{dataset}.coverage.tsv",
            caption="../report/coverage.rst",
            category="2. Signatures",
            subcategory="{dataset}",
            labels={"dataset": "{dataset}", "table": "signature gene coverage"},
        ),
    params:
        include=config["signatures"]["include"],
        n_bins=config["scoring"]["n_bins"],
        ctrl_size=config["scoring"]["ctrl_size"],
        seed=config["seed"],
    log:
        "logs/score_signatures/{dataset}.log",
    benchmark:
        "benchmarks/score_signatures/{dataset}.tsv"
    threads: 1  # one sparse matrix product over cell chunks
    resources:
        mem_mb=4000,  # the log-normalised matrix plus one dense chunk of scores
        runtime=30,
    conda:
        "../../envs/scanpy.yaml"
    script:
        "../scripts/score_signatures.py"


rule score_random_sets:
    input:
        h5ad="results/filter_cells/{dataset}.h5ad",
        gmt=config["signatures"]["gmt"],
    output:
        scores="results/score_random_sets/{dataset}.tsv.gz",
    params:
        include=config["signatures"]["include"],
        n_sets=config["association"]["n_random_sets"],
        n_bins=config["scoring"]["n_bins"],
        ctrl_size=config["scoring"]["ctrl_size"],
        seed=config["seed"],
    log:
        "logs/score_random_sets/{dataset}.log",
    benchmark:
        "benchmarks/score_random_sets/{dataset}.tsv"
    threads: 1  # one sparse matrix product per signature's random sets
    resources:
        mem_mb=6000,  # the matrix plus cells x random-sets scores of one signature
        runtime=60,
    conda:
        "../../envs/scanpy.yaml"
    script:
        "../scripts/score_random_sets.py"
