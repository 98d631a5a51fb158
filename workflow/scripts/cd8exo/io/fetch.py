"""Downloads a user can trust: retries, resume, progress, checksums, and a clear offline stop.

:func:`fetch` brings one public file to ``dest`` and guarantees that what is at ``dest``
afterwards is whole and verified. Its behaviour, in order:

1. **Already there.** If ``dest`` exists and its sha256 matches the expected checksum (the
   ``sha256`` argument, normally from the dataset registry, else the lock file), nothing is
   downloaded. An existing ``dest`` with no known checksum is accepted and its checksum
   recorded in the lock file.
2. **Files you already have** (``local_dir``). If ``local_dir/<file name>`` exists it is used
   as it is: verified against the registry/lock checksum (and recorded in the lock file if
   none is known yet), then ``dest`` is made a symbolic link to it (a copy where links are
   impossible). A mismatch stops with an error; your file is never moved or changed.
3. **Download** over HTTP(S) (or FTP) into ``<dest>.part``:

   - **Retries** with exponential back-off (``backoff * 2**attempt`` seconds) on server
     errors (HTTP 408/425/429/500/502/503/504), time-outs, dropped connections and
     truncated transfers; other HTTP errors (404, 403, ...) stop at once.
   - **Resume**: a partial ``.part`` (from a dropped connection or an earlier, interrupted
     run) is continued with an HTTP ``Range`` request. A server that ignores ``Range``
     (answers 200 with the whole file) is detected and the file is fetched again from
     byte 0; a 416 answer for a ``.part`` that is already whole is accepted.
   - **Progress** is logged (``logging``, not print) every ``progress_step`` percent, with
     MB done and total (every 50 MB when the server gives no size).
   - **Not data**: an HTML page served instead of the file (``Content-Type: text/html`` or a
     body starting with ``<!DOCTYPE``/``<html``), or a body that does not start with the
     format's magic bytes (gzip ``.gz``/``.tgz``, HDF5 ``.h5``/``.h5ad``), stops at once with
     an error quoting the start of the page; nothing is written.
   - **No network**: a DNS failure, a refused connection or an unreachable network stops at
     once (no retry loop), with a message naming the URL and the folder where the file can
     be put by hand (``local_dir`` if set, else the folder of ``dest``).

4. **Verify, then rename.** The finished ``.part`` is hashed. If a checksum is expected and
   differs, the file is kept aside as ``<dest>.bad-<first 8 hex of its sha256>`` and a
   :class:`ChecksumError` names both checksums and where the expected one came from. If none
   is expected, the checksum is recorded in the lock file. Only then is ``.part`` renamed to
   ``dest``. A good file is never overwritten and no data file is ever deleted (a stale
   ``.part`` from a server that ignores ``Range`` is the only file truncated).

**The lock file** (``resources/datasets/checksums.lock.tsv`` by default, one for the whole
workflow so it can be committed and shared): a TSV with ``filename``, ``sha256``,
``size_bytes``, ``url``, ``recorded_utc``, keyed by file name (file names are unique across
the registry). Lines are only ever appended, under an exclusive ``flock``, and only for a
file name with no line yet; the first line for a name is the one later runs verify against.
To accept a file that legitimately changed upstream, delete its line by hand.
"""

from __future__ import annotations

import csv
import logging
import os
import shutil
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, NamedTuple

from cd8exo._utils import sha256sum
from cd8exo.errors import ChecksumError, DownloadError
from cd8exo.io.census import query_census
from cd8exo.io.http import _transfer, _Transient
from cd8exo.io.verify import (
    DEFAULT_LOCK_FILE,
    _aside_name,
    _checksum_message,
    _commit_part,
    _record_or_warn,
    lookup_checksum,
)

logger = logging.getLogger(__name__)

__all__ = ["fetch", "fetch_dataset", "read_manifest", "write_manifest"]

MANIFEST_COLUMNS = ("role", "path", "size_bytes")


def _link_or_copy(source: Path, dest: Path) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    if dest.is_symlink():
        dest.unlink()  # a stale link, never a data file (checked by the caller)
    try:
        dest.symlink_to(source.resolve())
    except OSError:
        part = dest.with_name(dest.name + ".part")
        shutil.copyfile(source, part)
        os.replace(part, dest)


class _Expected(NamedTuple):
    """What the file called ``name`` must be, and where its checksum is recorded."""

    name: str
    sha256: str | None
    source: str
    size: int | None
    lock_file: str | Path | None


def _expected(
    name: str, *, sha256: str | None, size: int | None, lock_file: str | Path | None
) -> _Expected:
    """The registry checksum if there is one, else the lock file's (``None``: none yet)."""
    expected, source = (sha256.lower(), "registry sha256") if sha256 else (None, "")
    if expected is None:
        expected = lookup_checksum(name, lock_file=lock_file)
        source = f"first download, recorded in {lock_file}"
    return _Expected(name, expected, source, size, lock_file)


def _wrong_size(path: Path, *, expected: _Expected) -> str | None:
    actual = path.stat().st_size
    if expected.size is None or actual == expected.size:
        return None
    return f"{path.name} has {actual} bytes, the registry says {expected.size}. "


def _accept_unverified(path: Path, *, expected: _Expected, digest: str, origin: str | None) -> None:
    _record_or_warn(
        expected.lock_file,
        filename=expected.name,
        digest=digest,
        size=path.stat().st_size,
        origin=origin,
    )


def _use_present(dest: Path, *, expected: _Expected, url: str | None) -> None:
    """Step 1: accept the ``dest`` that is already there, or stop (moving a bad file aside)."""
    digest = sha256sum(dest)
    size_problem = _wrong_size(dest, expected=expected)
    if size_problem and not dest.is_symlink():
        aside = _aside_name(dest, digest)
        os.replace(dest, aside)
        msg = f"{size_problem}It was moved aside to {aside}; the next run downloads it again."
        raise ChecksumError(msg)
    if size_problem:
        msg = f"{size_problem}{dest} links to {dest.resolve()}, which was left untouched."
        raise ChecksumError(msg)
    if expected.sha256 is None:
        _accept_unverified(dest, expected=expected, digest=digest, origin=url)
        logger.info("%s: present, checksum recorded", dest)
        return
    if digest == expected.sha256:
        logger.info("%s: present and verified (sha256 %s)", dest, digest[:12])
        return
    if dest.is_symlink():
        msg = _checksum_message(
            dest.resolve(), actual=digest, expected=expected.sha256, source=expected.source,
            extra=f"{dest} links to it; it was left untouched. ",
        )  # fmt: skip
        raise ChecksumError(msg)
    aside = _aside_name(dest, digest)
    os.replace(dest, aside)
    msg = _checksum_message(
        dest, actual=digest, expected=expected.sha256, source=expected.source,
        extra=f"The file was moved aside to {aside}. ",
    )  # fmt: skip
    raise ChecksumError(msg)


def _use_local(dest: Path, *, local_dir: str | Path, expected: _Expected, url: str | None) -> bool:
    """Step 2: link ``dest`` to the user's verified file; ``False`` when there is none."""
    name = expected.name
    candidate = Path(local_dir) / name
    if not candidate.is_file():
        logger.info("%s: not in local_dir %s; downloading", name, local_dir)
        return False
    digest = sha256sum(candidate)
    size_problem = _wrong_size(candidate, expected=expected)
    if size_problem:
        msg = f"{size_problem}Your file {candidate} was left untouched."
        raise ChecksumError(msg)
    if expected.sha256 is not None and digest != expected.sha256:
        msg = _checksum_message(
            candidate, actual=digest, expected=expected.sha256, source=expected.source,
            extra="Your file was left untouched. ",
        )  # fmt: skip
        raise ChecksumError(msg)
    if expected.sha256 is None:
        _accept_unverified(candidate, expected=expected, digest=digest, origin=url)
    _link_or_copy(candidate, dest)
    logger.info("%s: using %s (sha256 %s)", name, candidate, digest[:12])
    return True


class _Retry(NamedTuple):
    """How often a failed transfer is tried again, and how long to wait in between."""

    retries: int
    backoff: float
    sleep: Callable[[float], None]


def _download(
    url: str,
    part: Path,
    *,
    name: str,
    folder: Path,
    retry: _Retry,
    timeout: float,
    chunk_size: int,
    progress_step: int,
) -> None:
    """Step 3: bring ``url`` into ``part``, resuming it, retrying transient failures."""
    for attempt in range(retry.retries + 1):
        try:
            _transfer(
                url, part, name=name, timeout=timeout, chunk_size=chunk_size,
                progress_step=progress_step, folder=folder,
            )  # fmt: skip
            return
        except _Transient as error:
            if attempt == retry.retries:
                msg = (
                    f"giving up on {url} after {retry.retries + 1} attempts (last: {error}). "
                    f"The partial file {part} is kept and will be resumed by the next run; or "
                    f"download the file by hand into {folder}/ as '{name}'."
                )
                raise DownloadError(msg) from error
            delay = retry.backoff * 2**attempt
            logger.warning(
                "%s: %s; retry %d of %d in %.1f s", name, error, attempt + 1, retry.retries, delay
            )
            retry.sleep(delay)


def _verify_and_rename(part: Path, dest: Path, *, expected: _Expected, url: str) -> None:
    """Step 4: hash ``part``, keep it aside if it is wrong, else record it and rename it."""
    digest = sha256sum(part)
    size_problem = _wrong_size(part, expected=expected)
    if size_problem:
        aside = _aside_name(dest, digest)
        os.replace(part, aside)
        msg = f"{size_problem}The download was kept aside as {aside}; {dest} was not written."
        raise ChecksumError(msg)
    _commit_part(
        part,
        dest,
        digest,
        expected=expected.sha256,
        source=expected.source,
        lock_file=expected.lock_file,
        origin=url,
    )
    logger.info("%s: downloaded and verified (sha256 %s)", dest, digest[:12])


def fetch(
    url: str | None,
    dest: str | Path,
    *,
    sha256: str | None = None,
    size: int | None = None,
    lock_file: str | Path | None = DEFAULT_LOCK_FILE,
    retries: int = 5,
    backoff: float = 2.0,
    timeout: float = 60.0,
    local_dir: str | Path | None = None,
    chunk_size: int = 1 << 20,
    progress_step: int = 10,
    sleep: Callable[[float], None] = time.sleep,
) -> Path:
    """Bring one file to ``dest``, whole and verified (behaviour in the module docstring).

    Parameters
    ----------
    url
        HTTP(S) or FTP address; ``None`` for a file that can only come from ``local_dir``.
    dest
        Where the verified file ends up (its name is the lock-file key).
    sha256
        Expected hex sha256 (from the registry); ``None`` to use or fill the lock file.
    size
        Expected size in bytes (from the registry), checked like the checksum.
    lock_file
        The checksum lock file; ``None`` to neither read nor record checksums.
    retries
        Retries after the first attempt for retryable failures.
    backoff
        First back-off in seconds; doubled at each retry.
    timeout
        Socket time-out in seconds for connecting and for each read.
    local_dir
        Folder of already-downloaded files, used instead of the network when it holds a
        file of the same name.
    chunk_size
        Bytes read at a time.
    progress_step
        Log progress every this many percent.
    sleep
        Called with the back-off delay (tests pass a no-op).

    Returns
    -------
    ``dest``.

    Raises
    ------
    OfflineError
        The server cannot be reached (no retry).
    ChecksumError
        The file's sha256 differs from the expected one (the bad file is kept aside).
    NotDataError
        The server sent an HTML page or a file of the wrong kind.
    DownloadError
        Any other failure, after the retries.
    """
    dest = Path(dest)
    name = dest.name
    folder = Path(local_dir) if local_dir is not None else dest.parent
    expected = _expected(name, sha256=sha256, size=size, lock_file=lock_file)

    # 1. already there
    if dest.exists():
        _use_present(dest, expected=expected, url=url)
        return dest

    # 2. a file the user already has
    if local_dir is not None and _use_local(dest, local_dir=local_dir, expected=expected, url=url):
        return dest

    if not url:
        msg = (
            f"{name} has no download URL and is not in local_dir ({local_dir}); put the file "
            f"in {folder}/ as '{name}' and set `local_dir` to that folder."
        )
        raise DownloadError(msg)

    # 3. download into <dest>.part, resuming what is there
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(name + ".part")
    logger.info("downloading %s -> %s", url, dest)
    _download(
        url, part, name=name, folder=folder, retry=_Retry(retries, backoff, sleep),
        timeout=timeout, chunk_size=chunk_size, progress_step=progress_step,
    )  # fmt: skip

    # 4. verify, record, rename
    _verify_and_rename(part, dest, expected=expected, url=url)
    return dest


def fetch_dataset(
    entry: Mapping[str, Any],
    folder: str | Path,
    *,
    lock_file: str | Path | None = DEFAULT_LOCK_FILE,
    local_dir: str | Path | None = None,
    census_uri: str | None = None,
    census_tiledb_config: Mapping[str, Any] | None = None,
    **options: Any,
) -> dict[str, Path]:
    """Fetch every file of a registry entry into ``folder`` (see :func:`fetch`).

    An entry with a ``census`` block and no URL is queried from CELLxGENE Census
    (:func:`cd8exo.census.query_census`) unless its h5ad is already in ``folder`` or
    ``local_dir``, in which case that file is verified like any download.

    Parameters
    ----------
    entry
        From :func:`cd8exo.readers.registry_entry`.
    folder
        Download folder of the dataset (e.g. ``resources/datasets/downloads/<id>``).
    lock_file, local_dir
        As in :func:`fetch`.
    census_uri, census_tiledb_config
        Where the Census release is read from and extra TileDB settings
        (``download.census`` in the config; see :func:`cd8exo.census.query_census`).
    **options
        Passed to :func:`fetch` (``retries``, ``backoff``, ``timeout``, ...).

    Returns
    -------
    Role -> path of the verified file, ready for :func:`cd8exo.readers.read_public`.
    """
    folder = Path(folder)
    paths: dict[str, Path] = {}
    for role, spec in entry["files"].items():
        dest = folder / spec["filename"]
        census = entry.get("census")
        local = None if local_dir is None else Path(local_dir) / spec["filename"]
        if not spec.get("url") and census and not dest.exists() and not (local and local.is_file()):
            paths[role] = query_census(
                census, dest, uri=census_uri, tiledb_config=census_tiledb_config,
                lock_file=lock_file, local_dir=local_dir, retries=options.get("retries", 5),
                timeout=options.get("timeout", 60),
            )  # fmt: skip
            continue
        paths[role] = fetch(
            spec.get("url"), dest, sha256=spec.get("sha256"), size=spec.get("size_bytes"),
            lock_file=lock_file, local_dir=local_dir, **options,
        )  # fmt: skip
    return paths


def write_manifest(paths: Mapping[str, str | Path], dest: str | Path) -> Path:
    """Write the files of a fetched dataset (role, path, size) as a TSV, atomically.

    The workflow's download rule declares this small table as its output instead of the
    data files themselves, so Snakemake never deletes or overwrites a download.

    Parameters
    ----------
    paths
        Role -> verified file, as :func:`fetch_dataset` returns it.
    dest
        The manifest to write (``<dest>.part`` first, renamed when whole).

    Returns
    -------
    ``dest``.
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    with open(part, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, delimiter="\t", lineterminator="\n")
        writer.writerow(MANIFEST_COLUMNS)
        for role, path in paths.items():
            writer.writerow([role, str(path), Path(path).stat().st_size])
    os.replace(part, dest)
    return dest


def read_manifest(path: str | Path) -> dict[str, Path]:
    """Read a manifest written by :func:`write_manifest` and check its files are unchanged.

    Parameters
    ----------
    path
        The manifest TSV.

    Returns
    -------
    Role -> file, ready for :func:`cd8exo.readers.read_public`.

    Raises
    ------
    DownloadError
        When a listed file is gone or its size changed since it was verified (the message
        says to delete the manifest so the workflow fetches and verifies the file again).
    """
    path = Path(path)
    with open(path, newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle, delimiter="\t"))
    files: dict[str, Path] = {}
    for row in rows:
        file = Path(row["path"])
        if not file.is_file():
            problem = "is gone"
        elif file.stat().st_size != int(row["size_bytes"]):
            problem = f"has {file.stat().st_size} bytes, not the {row['size_bytes']} verified"
        else:
            files[row["role"]] = file
            continue
        msg = (
            f"the {row['role']} file {file} listed in {path} {problem}; delete {path} and "
            "run the workflow again to fetch and verify the file again."
        )
        raise DownloadError(msg)
    return files
