"""Merging gene-set collections (GMT files) and choosing the sender signatures to score.

The functions live in :mod:`cd8exo.io.tables`, beside the GMT reader, so that the
start-up check of the configuration (:func:`cd8exo.config.validate_inputs`) applies the
very same rules before any job runs; they are re-exported here for the scoring code.
"""

from __future__ import annotations

from cd8exo.io.tables import merge_gene_sets, select_signatures

__all__ = ["merge_gene_sets", "select_signatures"]
