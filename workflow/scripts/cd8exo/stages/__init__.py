"""One in-memory function per rule of the per-dataset path.

A rule script reads its inputs, calls its stage and writes what the stage returns; the
calibration (:mod:`cd8exo.sim.calibrate`) chains the same calls in memory. So "calibrated
exactly as run" holds by construction, and ``tests/integration/test_stages_equivalence.py``
checks it: one simulated cohort through the rule scripts (Snakemake) and through the
chained stages gives the same association table.

Each stage takes the data first and everything else by keyword, under the names of the
rule's ``params`` (``workflow/rules/*.smk``). The stages are split by the conda env of
their rules: :mod:`cd8exo.stages.cells` (``envs/scanpy.yaml``) and
:mod:`cd8exo.stages.patients` (``envs/stats.yaml``, which has no scanpy).
"""
