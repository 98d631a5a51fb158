"""Small helpers shared by every layer: randomness, atomic writes, text files, checksums."""

from __future__ import annotations

import gzip
import hashlib
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO

import numpy as np

from cd8exo.errors import InputError

__all__ = [
    "RNGLike",
    "as_rng",
    "atomic_write",
    "file_name_problem",
    "is_gzip",
    "open_text",
    "seed_from",
    "sha256sum",
]

#: What every ``rng=`` argument of the package accepts: a Generator (used as is) or
#: anything :func:`numpy.random.default_rng` takes (a seed, a SeedSequence, None).
RNGLike = np.random.Generator | np.random.SeedSequence | int | None


def as_rng(rng: RNGLike) -> np.random.Generator:
    """The Generator behind ``rng`` (a Generator is returned as is, not copied)."""
    return np.random.default_rng(rng)


def seed_from(rng: np.random.Generator) -> int:
    """An integer seed for a library call, drawn from ``rng`` (so the whole run is fixed)."""
    return int(rng.integers(0, 2**31 - 1))


def atomic_write(path: str | Path, write: Callable[[str], object]) -> None:
    """Call ``write(tmp)`` on a hidden file beside ``path``, then rename it to ``path``.

    The output appears whole or not at all: on any error the temporary file is removed
    and ``path`` is left as it was.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def is_gzip(path: str | Path) -> bool:
    """Whether the file starts with the gzip magic bytes (whatever its name says)."""
    with open(path, "rb") as handle:
        return handle.read(2) == b"\x1f\x8b"


def open_text(path: str | Path, *, newline: str | None = None) -> IO[str]:
    """Open a text file, gzip-compressed or not (told by its first bytes), as UTF-8.

    A byte-order mark is dropped. ``newline=""`` is what the :mod:`csv` module wants.
    """
    path = Path(path)
    if not path.is_file():
        msg = f"The file {path} does not exist."
        raise InputError(msg)
    if is_gzip(path):
        return gzip.open(path, "rt", encoding="utf-8-sig", newline=newline)
    return open(path, encoding="utf-8-sig", newline=newline)


def sha256sum(path: str | Path, *, chunk_size: int = 1 << 20) -> str:
    """The hex sha256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(chunk_size):
            digest.update(chunk)
    return digest.hexdigest()


def file_name_problem(name: str) -> str | None:
    """Why ``name`` cannot be part of a file name (None when it can).

    Figures are named after signatures and target genes (``<signature>__<target>.png``):
    a name with a path separator or NUL, or one that is ``.`` or ``..``, would write
    elsewhere or fail. (Patient ids never reach a path.)
    """
    if not name:
        return "it is empty"
    bad = [repr(c) for c in ("/", "\\", "\0") if c in name]
    if bad:
        return f"it contains {', '.join(bad)}"
    if name in {".", ".."}:
        return f"it is {name!r}"
    return None
