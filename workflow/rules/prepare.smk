# Stage 1: read a local dataset and harmonise it onto the standard obs schema.


rule prepare_dataset:
    input:
        unpack(dataset_inputs),
    output:
        h5ad="results/prepare_dataset/{dataset}.h5ad",
    log:
        "logs/prepare_dataset/{dataset}.log",
    benchmark:
        "benchmarks/prepare_dataset/{dataset}.tsv"
    wildcard_constraints:
        # rows with a registry_id are prepared by prepare_public_dataset (download.smk)
        dataset=one_of(local_datasets()),
    conda:
        "../../envs/scanpy.yaml"
    threads: 1  # reading and relabelling is single-threaded
    resources:
        mem_mb=mem_mb_of("prepare_dataset"),  # one dataset's matrix held twice (as read, harmonised)
        runtime=runtime_of("prepare_dataset"),
    params:
        row=dataset_row,
    script:
        "../scripts/prepare_dataset.py"
