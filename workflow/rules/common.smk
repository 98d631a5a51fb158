# Helpers shared by every stage of the workflow (configuration validation, target lists).

import sys
from pathlib import Path
from types import SimpleNamespace

sys.path.insert(0, str(Path(workflow.basedir) / "workflow" / "scripts"))

from cd8exo.config import (  # noqa: E402
    load_schema,
    read_datasets,
    validate_config,
    validate_datasets,
    validate_inputs,
)
from cd8exo.errors import InputError  # noqa: E402
from cd8exo.io.registry import load_registry, registry_entry  # noqa: E402
from cd8exo.job_resources import folder_mb, read_resource_table  # noqa: E402

SCHEMAS = Path(workflow.basedir) / "workflow" / "schemas"


def stop(error):
    """A user error in the config or an input it names: one readable message, no traceback."""
    sys.stderr.write(f"cd8exo: {error}\n")
    sys.exit(1)


# A user error in the config stops here with one readable message, not a traceback.
try:
    config = validate_config(
        config, load_schema(SCHEMAS / "config.schema.yaml"), source="the configuration"
    )
    DATASETS = validate_datasets(
        read_datasets(config["datasets"]),
        load_schema(SCHEMAS / "datasets.schema.yaml"),
        source=config["datasets"],
        registry=config["download"]["registry"],
    )
except InputError as error:
    stop(error)


wildcard_constraints:
    dataset="|".join(DATASETS.index),


#: Datasets the sheet marks as simulated: the report and their figures say SIMULATED.
SIMULATED = [d for d, v in DATASETS.get("simulated", {}).items() if str(v).lower() == "true"]
#: The gene-set library: display names of signatures and gene sets in figures and tables.
GENE_SET_LIBRARY = str(Path(workflow.basedir) / "resources/gene_sets/library.tsv")


def association_tables():
    """The exact per-dataset association tables (results/summary/associations.tsv is rounded
    for readers; the rules computing from the associations read these)."""
    return expand("results/associate_patients/{dataset}.associations.tsv", dataset=DATASETS.index)


def dataset_row(wildcards):
    """The validated dataset-sheet row of a job's dataset."""
    return DATASETS.loc[wildcards.dataset].dropna().to_dict()


def dataset_inputs(wildcards):
    """Files a dataset is read from (so Snakemake reruns when they change)."""
    row = dataset_row(wildcards)
    files = {"data": row["path"]}  # an h5ad file or a 10x folder
    if "label_map" in row:  # a dataset without labels has none (its cells are annotated)
        files["label_map"] = row["label_map"]
    if "cell_table" in row:
        files["cell_table"] = row["cell_table"]
    return files


def dataset_cancer_type(wildcards):
    """The dataset's cancer type (selects the lineage markers of annotate_cells; "" = none)."""
    return dataset_row(wildcards).get("cancer_type", "")


def public_datasets():
    """Datasets named by a registry_id (downloaded, verified and read by the registry entry)."""
    if "registry_id" not in DATASETS.columns:
        return []
    return [d for d, rid in DATASETS["registry_id"].items() if isinstance(rid, str)]


def local_datasets():
    """Datasets read from a local path."""
    return [d for d in DATASETS.index if d not in public_datasets()]


def one_of(ids):
    """A wildcard constraint matching exactly these ids (nothing when there are none)."""
    return "|".join(ids) if ids else "(?!)"


_REGISTRY = {}  # the dataset registry, read on first use


def registry_entry_of(wildcards):
    """The resolved registry entry of a public dataset (the registry is read once)."""
    if "registry" not in _REGISTRY:
        _REGISTRY["registry"] = load_registry(config["download"]["registry"])
    return registry_entry(
        DATASETS.loc[wildcards.dataset, "registry_id"], registry=_REGISTRY["registry"]
    )


def association_params():
    """The config's association settings, as params of associate_patients and
    associate_receiver_sets (read by cd8exo.stages.patients.AssociationSettings.from_params).

    The aggregation thresholds are quoted in the reason of a dataset with too few patients
    to test."""
    association = config["association"]
    return {
        "min_patients": association["min_patients"],
        "min_cd8_cells": config["aggregation"]["min_cd8_cells"],
        "min_malignant_cells": config["aggregation"]["min_malignant_cells"],
        "family": association["family"],
        "n_boot": association["n_boot"],
        "ci_level": association["ci_level"],
        "n_perm": association["n_perm"],
        "covariates": association["covariates"],
        "seed": config["seed"],
    }


def scoring_options(*, with_method=True):
    """The config's scoring settings as keyword arguments of cd8exo.scoring.score_signatures.

    One definition for score_signatures, score_random_sets (the specificity null must be
    scored exactly as the signatures) and compare_scoring_methods (every method, so no
    ``method``)."""
    scoring = config["scoring"]
    options = {
        "n_bins": scoring["n_bins"],
        "ctrl_size": scoring["ctrl_size"],
        "max_rank": scoring["ucell_max_rank"],
        "n_up": scoring["aucell_n_up"],
        "aucell_ties": scoring["aucell_ties"],
    }
    return {"method": scoring["method"], **options} if with_method else options


# Memory and runtime of every rule: a straight line in the MB of the job's input files,
# with the coefficients of workflow/resources.tsv (where each number came from is in its
# source column). Snakemake calls these with the job's input when it schedules the job,
# so a cluster job asks for what its dataset needs; --set-resources still overrides.
try:
    RESOURCE_TABLE = read_resource_table(Path(workflow.basedir) / "workflow" / "resources.tsv")
except InputError as error:
    stop(error)


def resource_model(rule_name):
    """The row of ``rule_name`` in workflow/resources.tsv."""
    if rule_name not in RESOURCE_TABLE:
        stop(f"workflow/resources.tsv has no row for rule {rule_name!r}; add one.")
    return RESOURCE_TABLE[rule_name]


def input_mb(input):
    """MB of a job's input: Snakemake's sum of the file sizes, plus the files inside input
    folders (a 10x folder), which input.size_mb counts as directory entries. A file not
    made yet raises FileNotFoundError: Snakemake then shows the value as <TBD> and
    computes it when the job is scheduled."""
    return input.size_mb + folder_mb(input)


def mem_mb_of(rule_name):
    """``mem_mb`` of ``rule_name``: a callable of the job's input size."""
    model = resource_model(rule_name)

    def mem_mb(wildcards, input):
        return model.mem_mb(input_mb(input))

    return mem_mb


def runtime_of(rule_name):
    """``runtime`` (minutes) of ``rule_name``: a callable of the job's input size."""
    model = resource_model(rule_name)

    def runtime(wildcards, input):
        return model.runtime_min(input_mb(input))

    return runtime


def download_mem_mb(wildcards, input):
    """Memory of download_dataset: a file is streamed to disk in 1 MB chunks, but a
    CELLxGENE Census query holds the cells' counts in memory before writing them (the
    ``download_dataset_census`` row of workflow/resources.tsv)."""
    census = registry_entry_of(wildcards).get("census")
    return resource_model("download_dataset_census" if census else "download_dataset").mem_mb(0)


def download_folder(wildcards):
    """Where a public dataset's files are kept (never a Snakemake output: never deleted)."""
    return str(Path(config["download"]["folder"]) / wildcards.dataset)


def public_dataset_inputs(wildcards):
    """The download manifest of a public dataset and the gene-symbol tables."""
    genome = Path(workflow.basedir) / "resources" / "genome"
    return {
        # ancient: re-verifying the files (e.g. after a change of download settings)
        # rewrites the manifest but changes no data, so it must not re-read the dataset;
        # a changed registry entry reruns prepare_public_dataset through its params, and
        # a file accepted anew needs --forcerun prepare_public_dataset (README)
        "manifest": ancient(f"results/download_dataset/{wildcards.dataset}.files.tsv"),
        "hgnc_aliases": str(genome / "hgnc_alias_table.tsv.gz"),
        "ensembl_symbols": str(genome / "gencode_v48_genes_homo_sapiens.csv.gz"),
    }


def dataset_citations():
    """The registry citation of each public dataset (for the methods text)."""
    citations = {}
    for dataset in public_datasets():
        entry = registry_entry_of(SimpleNamespace(dataset=dataset))
        citations[dataset] = " ".join(str(entry.get("citation", "")).split())
    return citations


def truth_datasets():
    """Datasets with a planted truth (simulated cohorts)."""
    return [d for d, row in DATASETS.iterrows() if isinstance(row.get("truth"), str)]


def bundled_file(path):
    """``path``, or the workflow's own copy when it is relative, missing from the working
    directory and shipped with cd8exo (the default resource files)."""
    bundled = Path(workflow.basedir) / path
    use_bundled = not Path(path).is_absolute() and not Path(path).exists() and bundled.exists()
    return str(bundled) if use_bundled else path


def screen_gene_set_files():
    """The GMT files of the tumour-side screen (the default Hallmark file ships with cd8exo)."""
    return [bundled_file(path) for path in config["screen"]["gmt"]]


# the default target-set GMT and cargo table ship with cd8exo: a run in another working
# directory uses them
for key in ("mirna_gmt", "cargo_table"):
    if config["targets"][key]:
        config["targets"][key] = bundled_file(config["targets"][key])


# The GMT files and the target table are read now, with the rules' own readers, so that a
# broken one stops the run before any job runs (not after QC and cell identity).
try:
    validate_inputs(config, screen_gmt=screen_gene_set_files())
except InputError as error:
    stop(error)


def config_inputs():
    """The small input files a run's results depend on (checksummed in run_info)."""
    files = [config["datasets"], *config["signatures"]["gmt"], config["targets"]["table"]]
    if config["targets"]["mirna_gmt"]:
        files += [config["targets"]["mirna_gmt"], config["targets"]["cargo_table"]]
    for column in ("label_map", "truth"):
        if column in DATASETS:
            files += [f for f in DATASETS[column].dropna() if isinstance(f, str) and f]
    return list(dict.fromkeys(files))


def receiver_set_table():
    """The set-level summary table (workflow/rules/receiver.smk); none when
    targets.mirna_gmt is null."""
    if not config["targets"]["mirna_gmt"]:
        return []
    return ["results/summary/receiver_set_associations.tsv"]


def receiver_set_tables():
    """The exact per-dataset set-level tables; none when targets.mirna_gmt is null."""
    if not config["targets"]["mirna_gmt"]:
        return []
    return expand(
        "results/associate_receiver_sets/{dataset}.associations.tsv", dataset=DATASETS.index
    )


def receiver_set_outputs():
    """Every set-level output: the summary table and the figures."""
    if not config["targets"]["mirna_gmt"]:
        return []
    return receiver_set_table() + expand(
        [
            "results/plots/{dataset}/target_sets",
            "results/plots/{dataset}/target_set_heatmap.png",
        ],
        dataset=DATASETS.index,
    )


def final_outputs():
    """Everything `rule all` asks for."""
    per_dataset = [
        "results/filter_cells/{dataset}.removed.tsv",
        "results/annotate_cells/{dataset}.identity.tsv",
        "results/annotate_cells/{dataset}.agreement.tsv",
        "results/plots/{dataset}/cnv_heatmap.png",
        "results/score_signatures/{dataset}.coverage.tsv",
        "results/score_signatures/{dataset}.overlap.tsv",
        "results/aggregate_patients/{dataset}.excluded.tsv",
        "results/plots/{dataset}/umap.png",
        "results/plots/{dataset}/sender_scores.png",
        "results/plots/{dataset}/rho_heatmap.png",
        "results/plots/{dataset}/scatter",
    ]
    outputs = expand(per_dataset, dataset=DATASETS.index)
    outputs.append("results/summary/associations.tsv")
    outputs.append("results/summary/datasets.tsv")
    outputs.append("results/summary/patients.tsv")
    outputs.append("results/summary/meta_analysis.tsv")
    outputs.append("results/plots/meta/forest")
    outputs.append("results/summary/run_info.yaml")
    # the report's front matter (workflow/rules/report.smk)
    outputs += [
        "results/summary/key_results.tsv",
        "results/figures/figure1.png",
        "results/report/landing.html",
        "results/report/tables/associations.html",
        "results/summary/methods.md",
    ]
    if truth_datasets():
        outputs.append("results/summary/truth_check.tsv")
    outputs += receiver_set_outputs()
    if config["scoring"]["compare_methods"]:
        outputs += expand(
            [
                "results/compare_scoring_methods/{dataset}.concordance.tsv",
                "results/plots/{dataset}/concordance.png",
            ],
            dataset=DATASETS.index,
        )
    if config["screen"]["enabled"]:
        outputs += expand(
            [
                "results/screen_tumour_genes/{dataset}.ranked.tsv.gz",
                "results/screen_tumour_genes/{dataset}.prerank.tsv",
                "results/plots/{dataset}/top_programs.png",
            ],
            dataset=DATASETS.index,
        )
    return outputs
