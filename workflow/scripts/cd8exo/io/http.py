"""One HTTP(S)/file transfer with retries, resume, progress and checks that the answer is data."""

from __future__ import annotations

import errno
import http.client
import logging
import re
import socket
import urllib.error
import urllib.request
from pathlib import Path
from typing import NamedTuple

from cd8exo import __version__
from cd8exo.errors import DownloadError, NotDataError, OfflineError

logger = logging.getLogger(__name__)

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


def _request(url: str, *, offset: int) -> urllib.request.Request:
    """The GET of ``url``, from byte ``offset`` on when there is a partial file."""
    headers = {
        "User-Agent": f"cd8exo/{__version__} (+python urllib)",
        "Accept-Encoding": "identity",
    }
    if offset:
        headers["Range"] = f"bytes={offset}-"
    return urllib.request.Request(url, headers=headers)


def _refused(
    error: urllib.error.HTTPError, *, url: str, part: Path, offset: int, name: str, folder: Path
) -> None:
    """An HTTP error answer: return when ``part`` is already whole, else raise what it means."""
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


def _open(
    url: str, *, part: Path, offset: int, name: str, timeout: float, folder: Path
) -> http.client.HTTPResponse | None:
    """The server's answer to the (ranged) request; ``None`` when ``part`` is already whole."""
    try:
        return urllib.request.urlopen(_request(url, offset=offset), timeout=timeout)
    except urllib.error.HTTPError as error:
        _refused(error, url=url, part=part, offset=offset, name=name, folder=folder)
        return None
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


class _Body(NamedTuple):
    """Where the answer's body goes in ``part``, and how long the whole file is.

    ``mode`` opens ``part`` (``"ab"`` to resume, ``"wb"`` to start again), ``offset`` is the
    byte the body starts at, ``total`` the size of the whole file (``None``: unknown).
    """

    mode: str
    offset: int
    total: int | None


def _body(response: http.client.HTTPResponse, *, part: Path, offset: int, name: str) -> _Body:
    """A resumed (206) answer appends to ``part``; any other one rewrites it from byte 0."""
    status = getattr(response, "status", None) or 200
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
        logger.info("%s: resuming at %.1f MB", name, offset / 1e6)
        return _Body("ab", offset, total)
    if offset:
        logger.warning(
            "%s: the server ignored the Range request; downloading again from byte 0", name
        )
    return _Body("wb", 0, int(length) if length and length.isdigit() else None)


def _write_body(
    response: http.client.HTTPResponse,
    part: Path,
    *,
    body: _Body,
    url: str,
    name: str,
    chunk_size: int,
    progress_step: int,
) -> int:
    """Check that the answer is data, write it into ``part``; return the bytes ``part`` holds."""
    content_type = response.headers.get("Content-Type", "") if response.headers else ""
    progress = _Progress(name, total=body.total, done=body.offset, step=progress_step)
    try:
        first = response.read(chunk_size)
        if body.offset == 0:
            _check_is_data(first, content_type=content_type, name=name, url=url)
        elif content_type.lower().startswith("text/html"):
            _check_is_data(b"<html", content_type=content_type, name=name, url=url)
        with open(part, body.mode) as handle:
            chunk = first
            while chunk:
                handle.write(chunk)
                progress.update(len(chunk))
                chunk = response.read(chunk_size)
    except (TimeoutError, ConnectionError, http.client.HTTPException) as error:
        reason = f"transfer interrupted at {progress.done} bytes: {error}"
        raise _Transient(reason) from error
    return progress.done


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
    response = _open(url, part=part, offset=offset, name=name, timeout=timeout, folder=folder)
    if response is None:
        return
    with response:
        body = _body(response, part=part, offset=offset, name=name)
        done = _write_body(
            response, part, body=body, url=url, name=name, chunk_size=chunk_size,
            progress_step=progress_step,
        )  # fmt: skip
    if body.total is not None and done != body.total:
        reason = f"truncated transfer: {done} of {body.total} bytes"
        raise _Transient(reason)
