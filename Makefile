# cd8exo: the two commands of the README, and the developer targets.
#   make run    create .venv from requirements/lock.txt, run the workflow on the bundled demo,
#               write results/ and the HTML report (results/report.html)
#   make test   same set-up, then the test suite (what .ci/run calls); the SLURM tests install
#               slurm-wlm/munge and write /etc/slurm only with CD8EXO_SYSTEM_TESTS=1 as root
#               (.ci/run sets it), else they are skipped and the machine is left untouched
#   make test-fast  the unit tests (tests/unit) without those marked heavy, for everyday work
#               (measured time in README "Development"); needs no opt-in, changes nothing

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
CORES  ?= 2
PIP_FLAGS := --quiet --disable-pip-version-check --no-input

.PHONY: run test test-fast test-slow lint report venv clean-results bench-scoring bench-scale calibrate

venv: $(VENV)/.installed

# The stamp depends on the lock file, so a changed pin reinstalls.
$(VENV)/.installed: requirements/lock.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install $(PIP_FLAGS) -r requirements/lock.txt
	touch $@

run: venv
	$(BIN)/snakemake --cores $(CORES) --profile profiles/local
	$(BIN)/snakemake --cores 1 --profile profiles/local --report results/report.html
	@echo "cd8exo: results in results/summary/, report in results/report.html"

report: venv
	$(BIN)/snakemake --cores 1 --profile profiles/local --report results/report.html

# one pytest worker per core, each test file on one worker (its module fixtures run once)
test: venv
	$(BIN)/python -m pytest -m "not slow" -n $(CORES) --dist loadfile

# tests/unit only, minus the tests marked heavy (README "Development")
test-fast: venv
	$(BIN)/python -m pytest tests/unit -m "not slow and not heavy" -n $(CORES) --dist loadfile

test-slow: venv
	$(BIN)/python -m pytest -m slow

lint: venv
	$(BIN)/ruff check workflow tests
	$(BIN)/ruff format --check workflow tests
	$(BIN)/snakefmt --check Snakefile workflow/rules
	$(BIN)/snakemake --lint --cores 1

# Type I error (500 null cohorts) and power (8/16/32 patients x rho 0.3/0.5/0.7, 200 cohorts
# each) of every p value, on simulated cohorts through the workflow's own per-dataset path;
# writes results/calibration/{type1,power}.tsv, and for the target-set tests
# {type1_sets,power_sets}.tsv. One worker per core, one BLAS thread each.
calibrate: venv
	OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 MKL_NUM_THREADS=1 PYTHONPATH=workflow/scripts \
	$(BIN)/python -m cd8exo.sim.calibrate --n-cohorts 500 --n-power-cohorts 200 \
	--out results/calibration --jobs $(CORES)

# Scoring benchmark (README "Signature scoring"): a synthetic 200,000 x 20,000 dataset,
# generated once into .cache/bench/ (about 2.4 GB), each method and baseline in its own
# single-threaded process, 3 interleaved repeats (method, baseline, method, baseline, ...);
# the table goes to results/bench/scoring.tsv (and .md). Needs ~10 GB RAM for the
# decoupler baseline; takes about 30 minutes on 2 cores. A quick run:
#   make bench-scoring BENCH_ARGS="--n-cells 20000 --out results/bench/scoring_20000.tsv"
bench-scoring: venv
	PYTHONPATH=workflow/scripts $(BIN)/python -m cd8exo.sim.bench --cache .cache/bench --out results/bench/scoring.tsv --repeats 3 $(BENCH_ARGS)

# Scale benchmark (README "Real-size data"): simulated cohorts of SIZES cells x 20,000 genes,
# generated once into .cache/scale/, each run through the whole workflow with Snakemake
# (run directories in .cache/scale_runs/cells<N>/, --cores $(CORES), profiles/local), plus
# the plain scanpy core in its own process; writes results/bench/scale.tsv (one row per
# size and rule; rows of sizes not rerun are kept), scale_truth.tsv and scale.png.
# A quick run:  make bench-scale SIZES=10000
# The cohort as a 10x folder (written once from the h5ad) instead of an h5ad:
#   make bench-scale SIZES=100000 SCALE_ARGS="--format 10x_mtx --out results/bench/scale_10x.tsv"
SIZES ?= 10000 100000 1000000
SCALE_ARGS ?=
bench-scale: venv
	PYTHONPATH=workflow/scripts $(BIN)/python -m cd8exo.sim.scale_bench --sizes $(SIZES) \
	--cache .cache/scale --runs .cache/scale_runs --out results/bench/scale.tsv --cores $(CORES) \
	$(SCALE_ARGS)
