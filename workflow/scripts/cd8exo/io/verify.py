"""Checksums of downloaded files: the lock file, verification, and the commit of a finished `.part` file."""

from __future__ import annotations

import csv
import fcntl
import logging
import os
from datetime import UTC, datetime
from pathlib import Path

from cd8exo.errors import ChecksumError

logger = logging.getLogger(__name__)

__all__ = ["DEFAULT_LOCK_FILE", "lookup_checksum", "read_lock", "record_checksum"]

DEFAULT_LOCK_FILE = Path("resources/datasets/checksums.lock.tsv")


LOCK_COLUMNS = ("filename", "sha256", "size_bytes", "url", "recorded_utc")


def read_lock(lock_file: str | Path) -> dict[str, dict[str, str]]:
    """Read the checksum lock file.

    Returns
    -------
    File name -> its first recorded line (``sha256``, ``size_bytes``, ``url``,
    ``recorded_utc``); empty if the file does not exist.
    """
    lock_file = Path(lock_file)
    if not lock_file.is_file():
        return {}
    entries: dict[str, dict[str, str]] = {}
    with open(lock_file, newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle, delimiter="\t")
        missing = set(LOCK_COLUMNS[:2]) - set(reader.fieldnames or [])
        if missing:
            header = " ".join(LOCK_COLUMNS)
            msg = (
                f"checksum lock file {lock_file} lacks the columns {sorted(missing)}; "
                f"expected a tab-separated file with the header: {header}"
            )
            raise ValueError(msg)
        for row in reader:
            if row.get("filename"):
                entries.setdefault(row["filename"], row)
    return entries


def lookup_checksum(filename: str, *, lock_file: str | Path | None) -> str | None:
    """Return the sha256 recorded for ``filename`` in ``lock_file`` (``None`` if none)."""
    if lock_file is None:
        return None
    entry = read_lock(lock_file).get(filename)
    return None if entry is None else entry["sha256"].lower()


def record_checksum(
    lock_file: str | Path, *, filename: str, sha256: str, size: int, url: str | None
) -> bool:
    """Append a line for ``filename`` to the lock file unless it already has one.

    Returns
    -------
    ``True`` if a line was written; ``False`` if the file name was already recorded (the
    existing line is never changed).
    """
    lock_file = Path(lock_file)
    lock_file.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_file, "a+", newline="", encoding="utf-8") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            handle.seek(0)
            text = handle.read()
            if text:
                existing = {line.split("\t", 1)[0] for line in text.splitlines()[1:]}
                if filename in existing:
                    return False
            writer = csv.writer(handle, delimiter="\t", lineterminator="\n")
            if not text:
                writer.writerow(LOCK_COLUMNS)
            elif not text.endswith("\n"):
                handle.write("\n")
            stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
            writer.writerow([filename, sha256, size, url or "", stamp])
            handle.flush()
            os.fsync(handle.fileno())
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
    logger.info("recorded sha256 %s of %s in %s", sha256, filename, lock_file)
    return True


def _aside_name(path: Path, digest: str) -> Path:
    base = path.with_name(f"{path.name.removesuffix('.part')}.bad-{digest[:8]}")
    candidate, number = base, 1
    while candidate.exists():
        candidate = base.with_name(f"{base.name}.{number}")
        number += 1
    return candidate


def _checksum_message(
    path: Path, *, actual: str, expected: str, source: str, extra: str = ""
) -> str:
    return (
        f"checksum mismatch for {path.name}: sha256 {actual}, expected {expected} ({source}). "
        f"{extra}If the upstream file legitimately changed, update the registry's sha256 or "
        "delete its line in the checksum lock file; otherwise download it again."
    )


def _record_or_warn(
    lock_file: str | Path | None, *, filename: str, digest: str, size: int, origin: str | None
) -> None:
    """Record the sha256 of a file with no known checksum (or warn when there is no lock)."""
    if lock_file is not None:
        record_checksum(lock_file, filename=filename, sha256=digest, size=size, url=origin)
    else:
        logger.warning("%s: no checksum known and no lock file; not verified", filename)


def _commit_part(
    part: Path,
    dest: Path,
    digest: str,
    *,
    expected: str | None,
    source: str,
    lock_file: str | Path | None,
    origin: str | None,
    what: str = "The downloaded file",
    hint: str = "",
) -> None:
    """Rename a finished ``<dest>.part`` (sha256 ``digest``) to ``dest``.

    Only if ``digest`` is the ``expected`` one (from ``source``), or, none being known, after
    recording it in the lock file. Otherwise the file is kept aside as ``<dest>.bad-<sha8>``,
    ``dest`` is not written, and :class:`ChecksumError` says so (``what`` names the file,
    ``hint`` is added to the message).
    """
    if expected is not None and digest != expected:
        aside = _aside_name(dest, digest)
        os.replace(part, aside)
        msg = _checksum_message(
            dest, actual=digest, expected=expected, source=source,
            extra=f"{what} was kept aside as {aside}; {dest} was not written. {hint}",
        )  # fmt: skip
        raise ChecksumError(msg)
    if expected is None:
        _record_or_warn(
            lock_file, filename=dest.name, digest=digest, size=part.stat().st_size, origin=origin
        )
    os.replace(part, dest)
