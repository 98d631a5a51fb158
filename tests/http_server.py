"""A small fault-injecting HTTP server on 127.0.0.1 for download and reader tests.

Serves in-memory files and, per path, a list of faults consumed one request at a time
(afterwards requests are served normally):

``("status", code)``   answer with that HTTP status and a short text body
``("truncate", n)``    announce the full Content-Length, send ``n`` bytes, then close
``"html"``             answer 200 ``text/html`` with an error page
``"html_as_data"``     an HTML page sent as ``application/octet-stream``
``"ignore_range"``     answer 200 with the whole file even when a Range was asked for
``("body", bytes)``    serve these bytes instead of the file (a corrupted copy)

Range requests (``bytes=N-``) are honoured with 206 unless a fault says otherwise. Every
request is recorded (path and Range header) in ``server.requests``. The server runs in a
daemon thread, stops when its context manager exits, and in any case shuts itself down
after ``lifetime`` seconds so a broken test can never leave it running.
"""

from __future__ import annotations

import re
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

HTML_PAGE = (
    b"<!DOCTYPE html>\n<html><head><title>503 Service Unavailable</title></head>"
    b"<body><h1>Sorry, the file is temporarily unavailable</h1></body></html>\n"
)


class _Handler(BaseHTTPRequestHandler):
    server: FaultServer

    def log_message(self, format: str, *args: object) -> None:
        pass  # keep test output quiet

    def do_GET(self) -> None:
        srv = self.server
        range_header = self.headers.get("Range")
        with srv.lock:
            srv.requests.append((self.path, range_header))
            faults = srv.faults.get(self.path, [])
            fault = faults.pop(0) if faults else None
        body = srv.files.get(self.path)
        if body is None:
            self._simple(404, b"not found")
            return
        if isinstance(fault, tuple) and fault[0] == "status":
            self._simple(int(fault[1]), b"server error")
            return
        if fault == "html":
            self._simple(200, HTML_PAGE, content_type="text/html; charset=utf-8")
            return
        if fault == "html_as_data":
            self._simple(200, HTML_PAGE, content_type="application/octet-stream")
            return
        if isinstance(fault, tuple) and fault[0] == "body":
            body = fault[1]
        start = 0
        match = re.match(r"bytes=(\d+)-$", range_header or "")
        if match and fault != "ignore_range":
            start = int(match.group(1))
            if start >= len(body):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(body)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
        payload = body[start:]
        if start:
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
        else:
            self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        if isinstance(fault, tuple) and fault[0] == "truncate":
            self.wfile.write(payload[: int(fault[1])])
            self.wfile.flush()
            self.close_connection = True
            return
        self.wfile.write(payload)

    def _simple(self, code: int, body: bytes, *, content_type: str = "text/plain") -> None:
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


class FaultServer(ThreadingHTTPServer):
    """The server; use :func:`serve` rather than constructing it."""

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.files: dict[str, bytes] = {}
        self.faults: dict[str, list[object]] = {}
        self.requests: list[tuple[str, str | None]] = []
        self.lock = threading.Lock()

    def add(self, path: str, body: bytes, *, faults: list[object] | None = None) -> str:
        """Serve ``body`` at ``path`` (with optional faults); return its URL."""
        path = "/" + path.lstrip("/")
        with self.lock:
            self.files[path] = body
            self.faults[path] = list(faults or [])
        return self.url(path)

    def url(self, path: str) -> str:
        """Full URL of ``path`` on this server."""
        host, port = self.server_address[:2]
        return f"http://{host}:{port}/{path.lstrip('/')}"

    def requests_for(self, path: str) -> list[str | None]:
        """The Range headers (``None`` when absent) of the requests made for ``path``."""
        path = "/" + path.lstrip("/")
        with self.lock:
            return [rng for seen, rng in self.requests if seen == path]


@contextmanager
def serve(*, lifetime: float = 120.0) -> Iterator[FaultServer]:
    """Run a :class:`FaultServer` for the duration of a ``with`` block (at most ``lifetime`` s)."""
    server = FaultServer()
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
    )
    thread.start()
    timer = threading.Timer(lifetime, server.shutdown)
    timer.daemon = True
    timer.start()
    try:
        yield server
    finally:
        timer.cancel()
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def free_port() -> int:
    """A port on 127.0.0.1 that nothing listens on (bound by the OS, then released)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def closed_port_url(path: str = "file.gz") -> str:
    """A URL on 127.0.0.1 where nothing listens (connection refused)."""
    return f"http://127.0.0.1:{free_port()}/{path.lstrip('/')}"
