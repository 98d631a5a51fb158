"""Merging gene-set collections (GMT files) and choosing the sender signatures to score."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

__all__ = ["merge_gene_sets", "select_signatures"]


def merge_gene_sets(
    collections: Mapping[str, Mapping[str, Sequence[str]]], *, config_key: str
) -> dict[str, list[str]]:
    """Merge gene-set collections (e.g. several GMT files) into one mapping.

    Parameters
    ----------
    collections
        Source (the GMT path, named in an error) -> gene-set name -> genes.
    config_key
        The config key that listed the collections (e.g. ``"screen.gmt"``), named in the
        error so the user knows where to fix it.

    Returns
    -------
    Gene-set name -> genes, in source order.

    Raises
    ------
    ValueError
        When a set name occurs in two sources (the results are keyed by set name).
    """
    merged: dict[str, list[str]] = {}
    origin: dict[str, str] = {}
    for source, sets in collections.items():
        for name, genes in sets.items():
            if name in merged:
                msg = (
                    f"Gene set {name!r} is in both {origin[name]} and {source}; set names must "
                    f"be unique across the {config_key} files: rename the set in one of them, "
                    f"or drop one file from {config_key} in the config."
                )
                raise ValueError(msg)
            merged[name] = list(genes)
            origin[name] = str(source)
    return merged


def select_signatures(
    collections: Mapping[str, Mapping[str, Sequence[str]]],
    *,
    include: Sequence[str] = (),
    config_key: str = "signatures.gmt",
) -> dict[str, list[str]]:
    """Merge gene-set collections and keep the sets named in ``include`` (all when empty).

    Parameters
    ----------
    collections
        As for :func:`merge_gene_sets` (GMT path -> set name -> genes).
    include
        Set names to keep, in this order (empty: all, in source order).
    config_key
        The config key that listed the GMT files, named in the errors.

    Raises
    ------
    ValueError
        When a set name occurs in two collections, or ``include`` names a set that none has.
    """
    merged = merge_gene_sets(collections, config_key=config_key)
    if not include:
        return merged
    missing = [name for name in include if name not in merged]
    if missing:
        msg = (
            f"signatures.include names set(s) not found in the GMT files: {', '.join(missing)}; "
            f"available: {', '.join(sorted(merged))}"
        )
        raise ValueError(msg)
    return {name: merged[name] for name in include}
