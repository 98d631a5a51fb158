# Stage 3: sender signatures scored in every cell (method from the config, seeded), after
# matching their genes to the data (HGNC aliases) and removing receiver-side genes.

# the offline HGNC alias and Ensembl tables of cd8exo.genes (resources/genome/PROVENANCE_genome.md)
HGNC_TABLES = {
    "hgnc_aliases": str(Path(workflow.basedir) / "resources/genome/hgnc_alias_table.tsv.gz"),
    "ensembl_symbols": str(
        Path(workflow.basedir) / "resources/genome/gencode_v48_genes_homo_sapiens.csv.gz"
    ),
}


rule score_signatures:
    input:
        h5ad="results/annotate_cells/{dataset}.h5ad",  # the cells and their labels
        matrix="results/prepare_dataset/{dataset}.h5ad",  # their values, read in blocks
        gmt=config["signatures"]["gmt"],
        targets=config["targets"]["table"],
        programs=config["signatures"]["overlap_gmt"],
        hgnc_aliases=HGNC_TABLES["hgnc_aliases"],
        ensembl_symbols=HGNC_TABLES["ensembl_symbols"],
    output:
        scores="results/score_signatures/{dataset}.scores.tsv.gz",
        coverage=report(
            "results/score_signatures/{dataset}.coverage.tsv",
            caption="../report/coverage.rst",
            category="2. Signatures",
            subcategory="{dataset}",
            labels={"dataset": "{dataset}", "table": "signature gene coverage"},
        ),
        overlap=report(
            "results/score_signatures/{dataset}.overlap.tsv",
            caption="../report/overlap.rst",
            category="2. Signatures",
            subcategory="{dataset}",
            labels={"dataset": "{dataset}", "table": "sender genes removed (overlap guard)"},
        ),
        prepared="results/score_signatures/{dataset}.prepared.gmt",
    log:
        "logs/score_signatures/{dataset}.log",
    benchmark:
        "benchmarks/score_signatures/{dataset}.tsv"
    conda:
        "../../envs/scanpy.yaml"
    threads: 1  # one pass over chunks of cells
    resources:
        mem_mb=mem_mb_of("score_signatures"),  # the log-normalised matrix plus one chunk of about 4e6 stored values
        runtime=runtime_of("score_signatures"),
    params:
        include=config["signatures"]["include"],
        extra_targets=config["targets"]["extra"],
        min_coverage=config["signatures"]["min_coverage"],
        scoring=scoring_options(),
        seed=config["seed"],
    script:
        "../scripts/score_signatures.py"


rule compare_scoring_methods:
    input:
        h5ad="results/annotate_cells/{dataset}.h5ad",  # the cells and their labels
        matrix="results/prepare_dataset/{dataset}.h5ad",  # their values, read in blocks
        # the signatures exactly as scored (alias rescue, overlap guard, skips applied)
        gmt="results/score_signatures/{dataset}.prepared.gmt",
    output:
        table=report(
            "results/compare_scoring_methods/{dataset}.concordance.tsv",
            caption="../report/concordance.rst",
            category="2. Signatures",
            subcategory="{dataset}",
            labels={"dataset": "{dataset}", "table": "concordance of scoring methods"},
        ),
    log:
        "logs/compare_scoring_methods/{dataset}.log",
    benchmark:
        "benchmarks/compare_scoring_methods/{dataset}.tsv"
    conda:
        "../../envs/scanpy.yaml"
    threads: 1  # the four methods one after the other
    resources:
        mem_mb=mem_mb_of("compare_scoring_methods"),  # the matrix, one chunk, and four cells x signatures score tables
        runtime=runtime_of("compare_scoring_methods"),
    params:
        min_cd8_cells=config["aggregation"]["min_cd8_cells"],
        scoring=scoring_options(with_method=False),  # every method is run
        seed=config["seed"],
    script:
        "../scripts/compare_scoring_methods.py"


rule score_random_sets:
    input:
        h5ad="results/annotate_cells/{dataset}.h5ad",  # the cells and their labels
        matrix="results/prepare_dataset/{dataset}.h5ad",  # their values, read in blocks
        # the signatures exactly as scored (alias rescue, overlap guard, skips applied)
        gmt="results/score_signatures/{dataset}.prepared.gmt",
    output:
        scores="results/score_random_sets/{dataset}.tsv.gz",
    log:
        "logs/score_random_sets/{dataset}.log",
    benchmark:
        "benchmarks/score_random_sets/{dataset}.tsv"
    conda:
        "../../envs/scanpy.yaml"
    threads: 1  # one sparse matrix product per signature's random sets
    resources:
        mem_mb=mem_mb_of("score_random_sets"),  # the matrix plus cells x random-sets scores of one signature
        runtime=runtime_of("score_random_sets"),
    params:
        n_sets=config["association"]["n_random_sets"],
        scoring=scoring_options(),
        seed=config["seed"],
    script:
        "../scripts/score_random_sets.py"
