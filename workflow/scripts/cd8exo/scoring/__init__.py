"""Signature scoring: gene sets, their preparation for a dataset, and the four scoring methods.

:data:`cd8exo.scoring.score.METHODS` maps a method name to its function and
:func:`cd8exo.scoring.score.score_signatures` scores a dataset by name. Nothing is imported
here, so that a module of this package (e.g. ``gene_sets``) can be used without loading the
compiled rank kernels (numba) or gseapy.
"""
