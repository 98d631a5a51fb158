"""Verified downloads against a local fault-injecting HTTP server (tests/http_server.py)."""

from __future__ import annotations

import gzip
import hashlib
import logging
import socket
from pathlib import Path

import pytest
from http_server import closed_port_url, serve

from cd8exo._utils import sha256sum
from cd8exo.errors import ChecksumError, DownloadError, NotDataError, OfflineError
from cd8exo.io.fetch import fetch, fetch_dataset
from cd8exo.io.verify import read_lock, record_checksum

# a gzip payload of ~300 kB whose bytes are not trivially repetitive
PAYLOAD = gzip.compress(
    b"".join(f"gene{i}\t{i * 7919 % 1000}\n".encode() for i in range(60_000)), mtime=0
)
PAYLOAD_SHA = hashlib.sha256(PAYLOAD).hexdigest()
FAST = {"backoff": 0.0, "timeout": 5.0, "sleep": lambda _: None, "chunk_size": 16_384}


@pytest.fixture
def server():
    with serve(lifetime=60) as srv:
        yield srv


def test_download_verifies_registry_sha_and_logs_progress(server, tmp_path, caplog):
    url = server.add("GSE1_counts.csv.gz", PAYLOAD)
    dest = tmp_path / "GSE1_counts.csv.gz"
    with caplog.at_level(logging.INFO, logger="cd8exo.io"):
        fetch(url, dest, sha256=PAYLOAD_SHA, lock_file=None, **FAST)
    assert dest.read_bytes() == PAYLOAD
    assert not dest.with_name(dest.name + ".part").exists()
    progress = [r.getMessage() for r in caplog.records if "%" in r.getMessage()]
    percents = [int(m.split(":")[1].split("%")[0]) for m in progress]
    assert len(percents) >= 5  # logged at intervals, not once per chunk or only at the end
    assert percents == sorted(set(percents))
    assert percents[-1] == 100
    assert progress[-1].endswith(f"({len(PAYLOAD) / 1e6:.1f} of {len(PAYLOAD) / 1e6:.1f} MB)")


def test_first_download_records_checksum_and_later_runs_verify(server, tmp_path):
    lock = tmp_path / "checksums.lock.tsv"
    url = server.add("a.csv.gz", PAYLOAD)
    fetch(url, tmp_path / "one" / "a.csv.gz", lock_file=lock, **FAST)
    assert read_lock(lock)["a.csv.gz"]["sha256"] == PAYLOAD_SHA
    assert read_lock(lock)["a.csv.gz"]["size_bytes"] == str(len(PAYLOAD))
    # upstream changes: a later run into a fresh folder must refuse the new bytes
    changed = gzip.compress(b"something else entirely", mtime=0)
    server.add("a.csv.gz", changed)
    dest = tmp_path / "two" / "a.csv.gz"
    with pytest.raises(ChecksumError, match="recorded in") as info:
        fetch(url, dest, lock_file=lock, **FAST)
    assert PAYLOAD_SHA in str(info.value)
    assert not dest.exists()
    aside = list(dest.parent.glob("a.csv.gz.bad-*"))
    assert [p.read_bytes() for p in aside] == [changed]
    assert aside[0].name == f"a.csv.gz.bad-{hashlib.sha256(changed).hexdigest()[:8]}"
    # the lock still holds the first checksum only
    assert len((lock.read_text()).splitlines()) == 2


def test_corrupted_download_is_kept_aside_and_good_file_untouched(server, tmp_path):
    corrupted = PAYLOAD[:1000] + b"\x00" * 10 + PAYLOAD[1010:]
    url = server.add("b.csv.gz", PAYLOAD, faults=[("body", corrupted)])
    dest = tmp_path / "b.csv.gz"
    with pytest.raises(ChecksumError, match="kept aside") as info:
        fetch(url, dest, sha256=PAYLOAD_SHA, lock_file=None, **FAST)
    assert "registry sha256" in str(info.value)
    assert not dest.exists()
    (aside,) = tmp_path.glob("b.csv.gz.bad-*")
    assert aside.read_bytes() == corrupted
    # the next run downloads the good copy; the bad one stays where it was
    fetch(url, dest, sha256=PAYLOAD_SHA, lock_file=None, **FAST)
    assert dest.read_bytes() == PAYLOAD
    assert aside.read_bytes() == corrupted
    # a verified file is never downloaded again, even if the server now serves garbage
    server.add("b.csv.gz", b"garbage")
    n_requests = len(server.requests_for("b.csv.gz"))
    fetch(url, dest, sha256=PAYLOAD_SHA, lock_file=None, **FAST)
    assert len(server.requests_for("b.csv.gz")) == n_requests
    assert dest.read_bytes() == PAYLOAD


def test_existing_file_with_wrong_checksum_is_moved_aside_not_deleted(tmp_path):
    dest = tmp_path / "c.csv.gz"
    dest.write_bytes(b"old damaged copy")
    with pytest.raises(ChecksumError, match="moved aside"):
        fetch(closed_port_url(), dest, sha256=PAYLOAD_SHA, lock_file=None, **FAST)
    assert not dest.exists()
    (aside,) = tmp_path.glob("c.csv.gz.bad-*")
    assert aside.read_bytes() == b"old damaged copy"


def test_truncated_transfer_is_resumed_with_range(server, tmp_path):
    url = server.add("d.csv.gz", PAYLOAD, faults=[("truncate", 100_000)])
    dest = tmp_path / "d.csv.gz"
    fetch(url, dest, sha256=PAYLOAD_SHA, lock_file=None, **FAST)
    assert dest.read_bytes() == PAYLOAD
    assert server.requests_for("d.csv.gz") == [None, "bytes=100000-"]


def test_interrupted_run_leaves_part_that_next_run_resumes(server, tmp_path):
    dest = tmp_path / "e.csv.gz"
    dest.with_name("e.csv.gz.part").write_bytes(PAYLOAD[:12_345])
    url = server.add("e.csv.gz", PAYLOAD)
    fetch(url, dest, sha256=PAYLOAD_SHA, lock_file=None, **FAST)
    assert dest.read_bytes() == PAYLOAD
    assert server.requests_for("e.csv.gz") == ["bytes=12345-"]


def test_server_ignoring_range_restarts_from_zero(server, tmp_path):
    url = server.add("f.csv.gz", PAYLOAD, faults=[("truncate", 50_000), "ignore_range"])
    dest = tmp_path / "f.csv.gz"
    fetch(url, dest, sha256=PAYLOAD_SHA, lock_file=None, **FAST)
    assert dest.read_bytes() == PAYLOAD  # not the first 50 kB twice
    assert server.requests_for("f.csv.gz") == [None, "bytes=50000-"]


def test_whole_part_file_answered_416_is_accepted(server, tmp_path):
    dest = tmp_path / "g.csv.gz"
    dest.with_name("g.csv.gz.part").write_bytes(PAYLOAD)
    url = server.add("g.csv.gz", PAYLOAD)
    fetch(url, dest, sha256=PAYLOAD_SHA, lock_file=None, **FAST)
    assert dest.read_bytes() == PAYLOAD


def test_server_errors_then_success_on_retry(server, tmp_path, caplog):
    url = server.add("h.csv.gz", PAYLOAD, faults=[("status", 500), ("status", 503)])
    dest = tmp_path / "h.csv.gz"
    delays: list[float] = []
    with caplog.at_level(logging.WARNING, logger="cd8exo.io"):
        fetch(
            url,
            dest,
            sha256=PAYLOAD_SHA,
            lock_file=None,
            backoff=0.5,
            sleep=delays.append,
            timeout=5,
        )
    assert dest.read_bytes() == PAYLOAD
    assert len(server.requests_for("h.csv.gz")) == 3
    assert delays == [0.5, 1.0]  # exponential back-off
    assert any("HTTP 500" in r.getMessage() for r in caplog.records)


def test_persistent_server_error_gives_up_after_retries(server, tmp_path):
    url = server.add("i.csv.gz", PAYLOAD, faults=[("status", 503)] * 10)
    with pytest.raises(DownloadError, match=r"after 3 attempts \(last: HTTP 503"):
        fetch(url, tmp_path / "i.csv.gz", lock_file=None, retries=2, **FAST)
    assert len(server.requests_for("i.csv.gz")) == 3
    assert not (tmp_path / "i.csv.gz").exists()


def test_not_found_is_not_retried(server, tmp_path):
    with pytest.raises(DownloadError, match="HTTP 404"):
        fetch(server.url("missing.csv.gz"), tmp_path / "missing.csv.gz", lock_file=None, **FAST)
    assert len(server.requests_for("missing.csv.gz")) == 1


@pytest.mark.parametrize("fault", ["html", "html_as_data"])
def test_html_error_page_is_detected(server, tmp_path, fault):
    url = server.add("j.csv.gz", PAYLOAD, faults=[fault])
    dest = tmp_path / "j.csv.gz"
    with pytest.raises(NotDataError, match="HTML page") as info:
        fetch(url, dest, lock_file=tmp_path / "lock.tsv", **FAST)
    assert "temporarily unavailable" in str(info.value)
    assert not dest.exists()
    assert not (tmp_path / "lock.tsv").exists()  # nothing recorded for a page
    assert len(server.requests_for("j.csv.gz")) == 1


def test_wrong_magic_bytes_are_detected(server, tmp_path):
    url = server.add("k.h5", b"plain text, not HDF5")
    with pytest.raises(NotDataError, match="HDF5"):
        fetch(url, tmp_path / "k.h5", lock_file=None, **FAST)


def test_server_down_stops_at_once_naming_url_and_folder(tmp_path):
    url = closed_port_url("GSE9_counts.csv.gz")
    delays: list[float] = []
    with pytest.raises(OfflineError) as info:
        fetch(url, tmp_path / "raw" / "GSE9_counts.csv.gz", lock_file=None, sleep=delays.append)
    message = str(info.value)
    assert url in message
    assert str(tmp_path / "raw") in message
    assert "local_dir" in message
    assert delays == []  # no retry loop


def test_dns_failure_stops_at_once(tmp_path, monkeypatch):
    calls: list[str] = []

    def no_dns(host, *args, **kwargs):
        calls.append(host)
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(socket, "getaddrinfo", no_dns)
    url = (
        "https://ftp.ncbi.nlm.nih.gov/geo/series/GSE115nnn/GSE115978/suppl/GSE115978_counts.csv.gz"
    )
    with pytest.raises(OfflineError, match="Name or service not known") as info:
        fetch(url, tmp_path / "x.csv.gz", lock_file=None, local_dir=tmp_path / "by_hand", retries=5)
    assert url in str(info.value)
    assert str(tmp_path / "by_hand") in str(info.value)
    assert calls == ["ftp.ncbi.nlm.nih.gov"]


def test_local_dir_file_is_used_verified_and_never_moved(tmp_path):
    local = tmp_path / "mine"
    local.mkdir()
    (local / "l.csv.gz").write_bytes(PAYLOAD)
    dest = tmp_path / "resources" / "l.csv.gz"
    fetch(closed_port_url(), dest, sha256=PAYLOAD_SHA, lock_file=None, local_dir=local)
    assert dest.read_bytes() == PAYLOAD
    assert dest.resolve() == (local / "l.csv.gz").resolve()
    # a wrong local file: error, and the user's file stays exactly where and as it was
    (local / "m.csv.gz").write_bytes(b"not it")
    with pytest.raises(ChecksumError, match="left untouched"):
        fetch(None, tmp_path / "m.csv.gz", sha256=PAYLOAD_SHA, lock_file=None, local_dir=local)
    assert (local / "m.csv.gz").read_bytes() == b"not it"
    assert not (tmp_path / "m.csv.gz").exists()


def test_local_dir_without_checksum_records_it(tmp_path):
    local = tmp_path / "mine"
    local.mkdir()
    (local / "n.tsv").write_bytes(b"cell\tlabel\n")
    lock = tmp_path / "lock.tsv"
    fetch(None, tmp_path / "out" / "n.tsv", lock_file=lock, local_dir=local)
    assert read_lock(lock)["n.tsv"]["sha256"] == hashlib.sha256(b"cell\tlabel\n").hexdigest()


def test_no_url_and_no_local_file_says_where_to_put_it(tmp_path):
    with pytest.raises(DownloadError, match="has no download URL"):
        fetch(None, tmp_path / "o.tsv", lock_file=None, local_dir=tmp_path)


def test_lock_file_keeps_the_first_record(tmp_path):
    lock = tmp_path / "lock.tsv"
    assert record_checksum(lock, filename="p", sha256="a" * 64, size=1, url="u")
    assert not record_checksum(lock, filename="p", sha256="b" * 64, size=2, url="u")
    assert read_lock(lock)["p"]["sha256"] == "a" * 64
    assert sha256sum(lock) == hashlib.sha256(lock.read_bytes()).hexdigest()


def test_bad_lock_file_header_is_a_clear_error(tmp_path):
    lock = tmp_path / "lock.tsv"
    lock.write_text("name\tchecksum\nx\ty\n")
    with pytest.raises(ValueError, match="lacks the columns"):
        read_lock(lock)


def test_relative_dest_folder_is_created(server, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    url = server.add("q.csv.gz", PAYLOAD)
    fetch(url, Path("deep/er/q.csv.gz"), lock_file=None, **FAST)
    assert (tmp_path / "deep/er/q.csv.gz").read_bytes() == PAYLOAD


def test_registry_size_mismatch_is_kept_aside(server, tmp_path):
    url = server.add("r.csv.gz", PAYLOAD)
    dest = tmp_path / "r.csv.gz"
    with pytest.raises(ChecksumError, match=f"has {len(PAYLOAD)} bytes, the registry says 10"):
        fetch(url, dest, size=10, lock_file=tmp_path / "lock.tsv", **FAST)
    assert not dest.exists()
    assert [p.read_bytes() for p in tmp_path.glob("r.csv.gz.bad-*")] == [PAYLOAD]
    assert not (tmp_path / "lock.tsv").exists()  # a wrong file is never recorded


def test_fetch_dataset_brings_every_file_and_stops_offline(server, tmp_path):
    entry = {
        "files": {
            "matrix": {
                "url": server.add("m.csv.gz", PAYLOAD),
                "filename": "m.csv.gz",
                "sha256": PAYLOAD_SHA,
            },
            "annotation": {
                "url": server.add("a.tsv", b"cell\tlabel\n"),
                "filename": "a.tsv",
                "sha256": None,
            },
        }
    }
    paths = fetch_dataset(entry, tmp_path / "GSEX", lock_file=tmp_path / "lock.tsv", **FAST)
    assert paths == {
        "matrix": tmp_path / "GSEX" / "m.csv.gz",
        "annotation": tmp_path / "GSEX" / "a.tsv",
    }
    assert paths["matrix"].read_bytes() == PAYLOAD
    assert set(read_lock(tmp_path / "lock.tsv")) == {
        "a.tsv"
    }  # the registry sha256 needs no lock line
    offline = {"files": {"matrix": {"url": closed_port_url("n.csv.gz"), "filename": "n.csv.gz"}}}
    with pytest.raises(OfflineError, match=str(tmp_path / "by_hand")):
        fetch_dataset(offline, tmp_path / "GSEY", lock_file=None, local_dir=tmp_path / "by_hand")
