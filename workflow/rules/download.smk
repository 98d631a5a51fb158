# Stage 0 of public datasets (dataset-sheet rows with a registry_id): download and verify
# the files the registry names, then read and harmonise them into the same
# results/prepare_dataset/{dataset}.h5ad a local dataset gives, so every later stage is shared.
#
# The data files live in <download.folder>/{dataset}/ (resources/datasets/downloads/ by
# default) and are deliberately NOT Snakemake outputs: Snakemake deletes the outputs of a
# failed or rerun job, and a good multi-gigabyte download must never be lost. The rule's
# output is a small manifest of the verified files; cd8exo.download.fetch writes each file
# under a temporary name, renames it only when whole and verified, resumes partial files and
# keeps bad ones aside.


rule download_dataset:
    output:
        manifest="results/download_dataset/{dataset}.files.tsv",
    log:
        "logs/download_dataset/{dataset}.log",
    benchmark:
        "benchmarks/download_dataset/{dataset}.tsv"
    wildcard_constraints:
        dataset=one_of(public_datasets()),
    # on a cluster, compute nodes often have no internet: download on the submitting host
    localrule: True
    conda:
        "../../envs/download.yaml"
    threads: 1  # network-bound
    resources:
        mem_mb=download_mem_mb,  # a streamed file, or a Census query held in memory
        runtime=runtime_of("download_dataset"),  # large GEO files over a slow link
    params:
        entry=registry_entry_of,
        folder=download_folder,
        lock_file=config["download"]["lock_file"],
        local_dir=config["download"]["local_dir"],
        retries=config["download"]["retries"],
        backoff=config["download"]["backoff"],
        timeout=config["download"]["timeout"],
        census=config["download"]["census"],
    script:
        "../scripts/download_dataset.py"


rule prepare_public_dataset:
    input:
        unpack(public_dataset_inputs),
    output:
        h5ad="results/prepare_dataset/{dataset}.h5ad",
    log:
        "logs/prepare_public_dataset/{dataset}.log",
    benchmark:
        "benchmarks/prepare_public_dataset/{dataset}.tsv"
    wildcard_constraints:
        dataset=one_of(public_datasets()),
    conda:
        "../../envs/scanpy.yaml"
    threads: 1  # text and Matrix Market parsing is single-threaded
    resources:
        mem_mb=mem_mb_of("prepare_public_dataset"),  # up to ~200,000 cells (GSE131907): sparse values, read in chunks, held twice
        runtime=runtime_of("prepare_public_dataset"),
    params:
        dataset="{dataset}",
        entry=registry_entry_of,
    script:
        "../scripts/prepare_public_dataset.py"
