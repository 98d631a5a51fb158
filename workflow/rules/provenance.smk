# Provenance of a run: what it used, for the report and for anyone repeating it.


rule record_run_info:
    input:
        config_inputs(),
    output:
        yaml="results/summary/run_info.yaml",
        table=report(
            "results/summary/run_info.tsv",
            caption="../report/run_info.rst",
            category="0. Run information",
            labels={"table": "software, config, checksums, seed"},
        ),
    log:
        "logs/record_run_info/all.log",
    benchmark:
        "benchmarks/record_run_info/all.tsv"
    conda:
        "../../envs/stats.yaml"
    threads: 1  # checksums of a few small files
    resources:
        mem_mb=mem_mb_of("record_run_info"),  # small files only
        runtime=runtime_of("record_run_info"),
    params:
        config=config,
    script:
        "../scripts/record_run_info.py"
