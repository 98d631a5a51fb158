# Stage 7: the report's front matter. The key results (primary targets and controls, per
# dataset and pooled), figure 1, the landing page workflow/report/workflow.rst includes, the
# main tables as sortable, searchable HTML, and the methods text with versions and citations.


rule summarise_key_results:
    input:
        associations=association_tables(),  # exact, per dataset
        meta="results/summary/meta_analysis.tsv",
        datasets="results/summary/datasets.tsv",
        patients=expand("results/aggregate_patients/{dataset}.patients.tsv", dataset=DATASETS.index),
        targets=config["targets"]["table"],
        library=GENE_SET_LIBRARY,
        # the primary miRNA's target sets (exact, per dataset), when sets are tested
        sets=receiver_set_tables(),
    output:
        table="results/summary/key_results.tsv",
        html=report(
            "results/report/key_results.html",
            caption="../report/key_results.rst",
            category="0. Key results",
            labels={"table": "key results, every signature"},
        ),
        png=report(
            "results/figures/figure1.png",
            caption="../report/figure1.rst",
            category="0. Key results",
            labels={"table": "figure 1"},
        ),
        pdf="results/figures/figure1.pdf",
        svg="results/figures/figure1.svg",
        # registered so that workflow.rst includes it only when it exists (a report of a
        # partial run has none)
        landing=report(
            "results/report/landing.html",
            caption="../report/landing.rst",
            category="0. Key results",
            labels={"table": "landing page"},
        ),
    log:
        "logs/summarise_key_results/all.log",
    benchmark:
        "benchmarks/summarise_key_results/all.tsv"
    conda:
        "../../envs/stats.yaml"
    threads: 1  # small tables and one figure
    resources:
        mem_mb=mem_mb_of("summarise_key_results"),  # patient-level tables only
        runtime=runtime_of("summarise_key_results"),
    params:
        simulated=SIMULATED,
        primary_signature=config["report"]["primary_signature"],
        datasets=list(DATASETS.index),
        sheet=DATASETS.fillna("").astype(str).to_dict("index"),
    script:
        "../scripts/summarise_key_results.py"


rule render_tables:
    input:
        associations="results/summary/associations.tsv",
        meta="results/summary/meta_analysis.tsv",
        datasets="results/summary/datasets.tsv",
        patients="results/summary/patients.tsv",
        run_info="results/summary/run_info.tsv",
        truth=["results/summary/truth_check.tsv"] if truth_datasets() else [],
        receiver_sets=receiver_set_table(),
    output:
        associations=report(
            "results/report/tables/associations.html",
            caption="../report/associations.rst",
            category="4. Associations",
            labels={"table": "associations, all datasets (view)"},
        ),
        meta=report(
            "results/report/tables/meta_analysis.html",
            caption="../report/meta_analysis.rst",
            category="6. Meta-analysis",
            labels={"table": "random-effects meta-analysis (view)"},
        ),
        datasets=report(
            "results/report/tables/datasets.html",
            caption="../report/datasets.rst",
            category="4. Associations",
            labels={"table": "datasets (view)"},
        ),
        patients=report(
            "results/report/tables/patients.html",
            caption="../report/patients.rst",
            category="3. Patients",
            labels={"table": "patients, all datasets (view)"},
        ),
        run_info=report(
            "results/report/tables/run_info.html",
            caption="../report/run_info.rst",
            category="0. Run information",
            labels={"table": "software, config, checksums, seed (view)"},
        ),
        truth=report(
            "results/report/tables/truth_check.html",
            caption="../report/truth_check.rst",
            category="4. Associations",
            labels={"table": "planted truth vs recovered (view)"},
        ),
        receiver_sets=report(
            "results/report/tables/receiver_set_associations.html",
            caption="../report/receiver_set_associations.rst",
            category="7. Target sets",
            labels={"table": "target-set associations, all datasets (view)"},
        ),
    log:
        "logs/render_tables/all.log",
    benchmark:
        "benchmarks/render_tables/all.tsv"
    conda:
        "../../envs/stats.yaml"
    threads: 1  # a few small tables
    resources:
        mem_mb=mem_mb_of("render_tables"),  # small tables
        runtime=runtime_of("render_tables"),
    params:
        simulated=SIMULATED,
    script:
        "../scripts/render_tables.py"


rule write_methods:
    input:
        run_info="results/summary/run_info.yaml",
        sheet=config["datasets"],
        references=str(Path(workflow.basedir) / "resources/references/references.tsv"),
    output:
        markdown="results/summary/methods.md",
        html=report(
            "results/report/methods.html",
            caption="../report/methods.rst",
            category="0. Methods",
            labels={"text": "methods, software versions, references"},
        ),
    log:
        "logs/write_methods/all.log",
    benchmark:
        "benchmarks/write_methods/all.tsv"
    conda:
        "../../envs/stats.yaml"
    threads: 1  # a text file
    resources:
        mem_mb=mem_mb_of("write_methods"),  # small files
        runtime=runtime_of("write_methods"),
    params:
        simulated=SIMULATED,
        citations=dataset_citations(),
    script:
        "../scripts/write_methods.py"
