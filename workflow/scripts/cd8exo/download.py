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
import errno
import fcntl
import http.client
import logging
import os
import re
import shutil
import socket
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cd8exo import __version__
from cd8exo._utils import sha256sum
from cd8exo.errors import ChecksumError, DownloadError, NotDataError, OfflineError

__all__ = [
    "DEFAULT_LOCK_FILE",
    "ChecksumError",
    "DownloadError",
    "NotDataError",
    "OfflineError",
    "fetch",
    "fetch_dataset",
    "lookup_checksum",
    "read_lock",
    "read_manifest",
    "record_checksum",
    "sha256sum",
    "write_manifest",
]

logger = logging.getLogger(__name__)

DEFAULT_LOCK_FILE = Path("resources/datasets/checksums.lock.tsv")
LOCK_COLUMNS = ("filename", "sha256", "size_bytes", "url", "recorded_utc")
MANIFEST_COLUMNS = ("role", "path", "size_bytes")
RETRY_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504})
_MAGIC = {
    ".gz": (b"\x1f\x8b", "gzip"),
    ".tgz": (b"\x1f\x8b", "gzip"),
    ".h5": (b"\x89HDF\r\n\x1a\n", "HDF5"),
    ".h5ad": (b"\x89HDF\r\n\x1a\n", "HDF5"),
}
_OFFLINE_ERRNOS = frozenset(
    {errno.ECONNREFUSED, errno.ENETUNREACH, errno.EHOSTUNREACH, errno.ENETDOWN}
)


class _Transient(Exception):
    """A failure worth retrying (server error, time-out, dropped or truncated transfer)."""


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


def _offline_message(url: str, *, reason: object, folder: Path, filename: str) -> str:
    return (
        f"cannot reach the server for {url} ({reason}); is this machine offline? "
        f"Download the file by hand and put it in {folder}/ as '{filename}', or point "
        "the `local_dir` setting (in the workflow config: `download: local_dir:`) at a folder "
        "that holds it; it is verified against the registry or lock-file checksum before use."
    )


def _is_offline(reason: object) -> bool:
    if isinstance(reason, socket.gaierror | ConnectionRefusedError):
        return True
    return isinstance(reason, OSError) and reason.errno in _OFFLINE_ERRNOS


def _looks_like_html(head: bytes) -> bool:
    text = head.lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    return (
        text.startswith((b"<!doctype html", b"<html", b"<head", b"<?xml")) or b"<html" in text[:512]
    )


def _check_is_data(head: bytes, *, content_type: str, name: str, url: str) -> None:
    suffix = Path(name).suffix.lower()
    wants_html = suffix in {".html", ".htm"}
    if not wants_html and (content_type.lower().startswith("text/html") or _looks_like_html(head)):
        snippet = head[:200].decode("utf-8", "replace").replace("\n", " ")
        msg = (
            f"{url} returned an HTML page (Content-Type {content_type or 'unset'}) instead of "
            f"the data file {name}: {snippet!r}. The file may have moved or the server may be "
            "failing; check the URL in the dataset registry (resources/datasets/registry.yaml) "
            "or download the file by hand."
        )
        raise NotDataError(msg)
    magic = _MAGIC.get(suffix)
    if magic is not None and head and not head.startswith(magic[0]):
        msg = (
            f"{url} did not return a {magic[1]} file as {name} should be (it starts with "
            f"{head[:16]!r}); check the URL in the dataset registry or download it by hand."
        )
        raise NotDataError(msg)


def _content_range_start_total(value: str | None) -> tuple[int | None, int | None]:
    match = re.match(r"bytes\s+(\d+|\*)(?:-\d+)?/(\d+|\*)", value or "")
    if not match:
        return None, None
    start = None if match.group(1) == "*" else int(match.group(1))
    total = None if match.group(2) == "*" else int(match.group(2))
    return start, total


class _Progress:
    def __init__(self, name: str, *, total: int | None, done: int, step: int) -> None:
        self.name, self.total, self.done, self.step = name, total, done, max(1, step)
        self.next_mark = self._mark_after(done)

    def _mark_after(self, done: int) -> int:
        if self.total:
            percent = 100 * done // self.total
            return (percent // self.step + 1) * self.step
        return (done // (50 << 20) + 1) * (50 << 20)

    def update(self, n_bytes: int) -> None:
        self.done += n_bytes
        if self.total:
            percent = 100 * self.done // self.total
            if percent >= self.next_mark:
                logger.info(
                    "%s: %3d%% (%.1f of %.1f MB)",
                    self.name,
                    min(percent, 100),
                    self.done / 1e6,
                    self.total / 1e6,
                )
                self.next_mark = self._mark_after(self.done)
        elif self.done >= self.next_mark:
            logger.info("%s: %.1f MB (size unknown)", self.name, self.done / 1e6)
            self.next_mark = self._mark_after(self.done)


def _transfer(
    url: str,
    part: Path,
    *,
    name: str,
    timeout: float,
    chunk_size: int,
    progress_step: int,
    folder: Path,
) -> None:
    """Bring ``url`` into ``part`` (resuming it); raise _Transient for retryable failures."""
    offset = part.stat().st_size if part.exists() else 0
    headers = {
        "User-Agent": f"cd8exo/{__version__} (+python urllib)",
        "Accept-Encoding": "identity",
    }
    if offset:
        headers["Range"] = f"bytes={offset}-"
    request = urllib.request.Request(url, headers=headers)
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as error:
        if error.code == 416 and offset:
            _, total = _content_range_start_total(error.headers.get("Content-Range"))
            if total == offset:
                logger.info("%s: the partial file is already whole (%d bytes)", name, offset)
                return
            logger.warning("%s: server refused to resume at byte %d; starting again", name, offset)
            part.write_bytes(b"")
            reason = f"HTTP 416 at byte {offset}"
            raise _Transient(reason) from error
        if error.code in RETRY_STATUSES:
            reason = f"HTTP {error.code} {error.reason}"
            raise _Transient(reason) from error
        msg = (
            f"{url} answered HTTP {error.code} ({error.reason}); not retrying. Check the URL in "
            f"the dataset registry, or download the file by hand into {folder}/ as '{name}'."
        )
        raise DownloadError(msg) from error
    except urllib.error.URLError as error:
        if _is_offline(error.reason):
            raise OfflineError(
                _offline_message(url, reason=error.reason, folder=folder, filename=name)
            ) from error
        reason = f"connection failed: {error.reason}"
        raise _Transient(reason) from error
    except (TimeoutError, ConnectionError, http.client.HTTPException) as error:
        if _is_offline(error):
            raise OfflineError(
                _offline_message(url, reason=error, folder=folder, filename=name)
            ) from error
        reason = f"{type(error).__name__}: {error}"
        raise _Transient(reason) from error

    with response:
        status = getattr(response, "status", None) or 200
        content_type = response.headers.get("Content-Type", "") if response.headers else ""
        length = response.headers.get("Content-Length") if response.headers else None
        if status == 206:
            start, total = _content_range_start_total(response.headers.get("Content-Range"))
            if start != offset:
                logger.warning(
                    "%s: server resumed at byte %s, not %d; starting again", name, start, offset
                )
                part.write_bytes(b"")
                reason = "misaligned resume"
                raise _Transient(reason)
            mode = "ab"
            logger.info("%s: resuming at %.1f MB", name, offset / 1e6)
        else:
            if offset:
                logger.warning(
                    "%s: the server ignored the Range request; downloading again from byte 0", name
                )
            offset = 0
            total = int(length) if length and length.isdigit() else None
            mode = "wb"
        progress = _Progress(name, total=total, done=offset, step=progress_step)
        try:
            first = response.read(chunk_size)
            if offset == 0:
                _check_is_data(first, content_type=content_type, name=name, url=url)
            elif content_type.lower().startswith("text/html"):
                _check_is_data(b"<html", content_type=content_type, name=name, url=url)
            with open(part, mode) as handle:
                chunk = first
                while chunk:
                    handle.write(chunk)
                    progress.update(len(chunk))
                    chunk = response.read(chunk_size)
        except (TimeoutError, ConnectionError, http.client.HTTPException) as error:
            reason = f"transfer interrupted at {progress.done} bytes: {error}"
            raise _Transient(reason) from error
    if total is not None and progress.done != total:
        reason = f"truncated transfer: {progress.done} of {total} bytes"
        raise _Transient(reason)


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
    expected, source = (sha256.lower(), "registry sha256") if sha256 else (None, "")
    if expected is None:
        expected = lookup_checksum(name, lock_file=lock_file)
        source = f"first download, recorded in {lock_file}"

    def wrong_size(path: Path) -> str | None:
        actual = path.stat().st_size
        if size is None or actual == size:
            return None
        return f"{path.name} has {actual} bytes, the registry says {size}. "

    def accept_unverified(path: Path, digest: str, origin: str | None) -> None:
        _record_or_warn(
            lock_file, filename=name, digest=digest, size=path.stat().st_size, origin=origin
        )

    # 1. already there
    if dest.exists():
        digest = sha256sum(dest)
        size_problem = wrong_size(dest)
        if size_problem and not dest.is_symlink():
            aside = _aside_name(dest, digest)
            os.replace(dest, aside)
            msg = f"{size_problem}It was moved aside to {aside}; the next run downloads it again."
            raise ChecksumError(msg)
        if size_problem:
            msg = f"{size_problem}{dest} links to {dest.resolve()}, which was left untouched."
            raise ChecksumError(msg)
        if expected is None:
            accept_unverified(dest, digest, url)
            logger.info("%s: present, checksum recorded", dest)
            return dest
        if digest == expected:
            logger.info("%s: present and verified (sha256 %s)", dest, digest[:12])
            return dest
        if dest.is_symlink():
            msg = _checksum_message(
                dest.resolve(), actual=digest, expected=expected, source=source,
                extra=f"{dest} links to it; it was left untouched. ",
            )  # fmt: skip
            raise ChecksumError(msg)
        aside = _aside_name(dest, digest)
        os.replace(dest, aside)
        msg = _checksum_message(
            dest, actual=digest, expected=expected, source=source,
            extra=f"The file was moved aside to {aside}. ",
        )  # fmt: skip
        raise ChecksumError(msg)

    # 2. a file the user already has
    if local_dir is not None:
        candidate = Path(local_dir) / name
        if candidate.is_file():
            digest = sha256sum(candidate)
            size_problem = wrong_size(candidate)
            if size_problem:
                msg = f"{size_problem}Your file {candidate} was left untouched."
                raise ChecksumError(msg)
            if expected is not None and digest != expected:
                msg = _checksum_message(
                    candidate, actual=digest, expected=expected, source=source,
                    extra="Your file was left untouched. ",
                )  # fmt: skip
                raise ChecksumError(msg)
            if expected is None:
                accept_unverified(candidate, digest, url)
            _link_or_copy(candidate, dest)
            logger.info("%s: using %s (sha256 %s)", name, candidate, digest[:12])
            return dest
        logger.info("%s: not in local_dir %s; downloading", name, local_dir)

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
    for attempt in range(retries + 1):
        try:
            _transfer(
                url, part, name=name, timeout=timeout, chunk_size=chunk_size,
                progress_step=progress_step, folder=folder,
            )  # fmt: skip
            break
        except _Transient as error:
            if attempt == retries:
                msg = (
                    f"giving up on {url} after {retries + 1} attempts (last: {error}). The partial "
                    f"file {part} is kept and will be resumed by the next run; or download the "
                    f"file by hand into {folder}/ as '{name}'."
                )
                raise DownloadError(msg) from error
            delay = backoff * 2**attempt
            logger.warning(
                "%s: %s; retry %d of %d in %.1f s", name, error, attempt + 1, retries, delay
            )
            sleep(delay)

    # 4. verify, record, rename
    digest = sha256sum(part)
    size_problem = wrong_size(part)
    if size_problem:
        aside = _aside_name(dest, digest)
        os.replace(part, aside)
        msg = f"{size_problem}The download was kept aside as {aside}; {dest} was not written."
        raise ChecksumError(msg)
    _commit_part(
        part, dest, digest, expected=expected, source=source, lock_file=lock_file, origin=url
    )
    logger.info("%s: downloaded and verified (sha256 %s)", dest, digest[:12])
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
            from cd8exo.census import query_census  # needs cellxgene-census (TileDB-SOMA)

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
