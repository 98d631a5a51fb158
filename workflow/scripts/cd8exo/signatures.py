"""Choosing the sender signatures to score from one or more GMT files."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

__all__ = ["select_signatures"]


def select_signatures(
    collections: Sequence[Mapping[str, list[str]]], *, include: Sequence[str] = ()
) -> dict[str, list[str]]:
    """Merge gene-set collections and keep the sets named in ``include`` (all when empty).

    Raises
    ------
    ValueError
        When a set name occurs in two collections, or ``include`` names a set that none has.
    """
    merged: dict[str, list[str]] = {}
    for collection in collections:
        for name, genes in collection.items():
            if name in merged:
                msg = (
                    f"gene set {name!r} is defined in two GMT files; rename one of them "
                    "(set names must be unique across signatures.gmt files)"
                )
                raise ValueError(msg)
            merged[name] = list(genes)
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
