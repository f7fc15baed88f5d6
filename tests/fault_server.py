"""A static HTTP server for OSTree repositories that misbehaves on purpose.

:class:`FaultServer` serves a directory with Python's ``http.server`` (HTTP/1.1,
keep-alive, one thread per connection) on ``127.0.0.1`` from a thread of the test
process.  It records every request and answers some of them wrongly, as told by
:class:`Fault` rules matched on the request path with shell globs: another status,
another body, a connection dropped in the middle of the body, a long stall, or a
stall until the test releases it.

Also :func:`make_source`: an archive repository made by the real ``ostree`` CLI
with a few refs (a 3-commit history, detached metadata, shared content), the
shape the pull and sync tests use.
"""

from __future__ import annotations

import contextlib
import fnmatch
import http.server
import os
import random
import socket
import threading
import urllib.parse
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.ostree_cli import BASE_TIME, iso, ostree_commit, run_ostree, write_file

OWNER = ("--owner-uid=0", "--owner-gid=0")


@dataclass
class Fault:
    """How to answer requests whose path matches ``pattern``.

    ``kind``: ``status`` (answer ``status`` with ``body``), ``body`` (200 with
    ``body`` instead of the file), ``corrupt`` (the file with one byte flipped),
    ``drop`` (promise the whole file, send ``after`` bytes, close), ``slow`` (wait
    ``delay`` seconds, then answer normally), ``hang`` (wait until the server is
    released).  ``times``: how many requests it applies to (None: all).
    """

    pattern: str
    kind: str
    times: int | None = None
    status: int = 500
    body: bytes = b""
    after: int = 64
    delay: float = 0.0
    skip: int = 0
    """Matching requests answered normally before the fault applies."""
    hits: int = 0
    seen: int = 0


@dataclass
class FaultServer:
    root: Path
    faults: list[Fault] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)
    """Paths requested, in order (relative, no leading slash)."""
    completed: list[str] = field(default_factory=list)
    """Paths answered 200 with their whole body."""
    hidden: set[str] = field(default_factory=set)
    """Paths answered 404 (e.g. ``summary``: serve named refs only)."""
    release: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)
    url: str = ""

    def add(self, pattern: str, kind: str, **kwargs: Any) -> Fault:
        fault = Fault(pattern, kind, **kwargs)
        with self.lock:
            self.faults.append(fault)
        return fault

    def clear(self) -> None:
        with self.lock:
            self.faults.clear()
            self.requests.clear()
            self.completed.clear()

    def counts(self) -> Counter[str]:
        with self.lock:
            return Counter(self.requests)

    def objects_requested(self, suffix: str = "") -> list[str]:
        with self.lock:
            return [p for p in self.requests if p.startswith("objects/") and p.endswith(suffix)]

    def _take(self, path: str) -> Fault | None:
        with self.lock:
            self.requests.append(path)
            if path in self.hidden:
                return Fault(path, "status", status=404)
            for fault in self.faults:
                if not fnmatch.fnmatchcase(path, fault.pattern):
                    continue
                fault.seen += 1
                if fault.seen > fault.skip and (fault.times is None or fault.hits < fault.times):
                    fault.hits += 1
                    return fault
        return None


def _handler(state: FaultServer) -> type[http.server.SimpleHTTPRequestHandler]:
    class Handler(http.server.SimpleHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, directory=str(state.root), **kwargs)

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def _send(self, status: int, body: bytes, length: int | None = None) -> None:
            self.send_response(status)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Length", str(len(body) if length is None else length))
            self.end_headers()
            self.wfile.write(body)

        def _file(self, path: str) -> bytes | None:
            try:
                return (state.root / path).read_bytes()
            except OSError:
                return None

        def do_GET(self) -> None:
            path = urllib.parse.unquote(urllib.parse.urlsplit(self.path).path).lstrip("/")
            fault = state._take(path)
            if fault is not None and fault.kind in ("slow", "hang"):
                state.release.wait(None if fault.kind == "hang" else fault.delay)
                fault = None
            if fault is None:
                data = self._file(path)
                if data is None:
                    self._send(404, b"not found\n")
                    return
                self._send(200, data)
                with state.lock:
                    state.completed.append(path)
                return
            if fault.kind == "status":
                self._send(fault.status, fault.body)
            elif fault.kind == "body":
                self._send(200, fault.body)
            elif fault.kind == "corrupt":
                flipped = bytearray(self._file(path) or b"")
                flipped[len(flipped) // 2] ^= 0x55
                self._send(200, bytes(flipped))
            elif fault.kind == "drop":
                data = self._file(path) or b""
                self._send(200, data[: fault.after], length=len(data))
                self.wfile.flush()
                self.close_connection = True
                with contextlib.suppress(OSError):
                    self.connection.shutdown(socket.SHUT_RDWR)
            else:  # pragma: no cover - a typo in a test
                raise AssertionError(f"unknown fault {fault.kind}")

    return Handler


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # clients that hang up (timeouts, a killed pull) are part of the tests


@contextlib.contextmanager
def fault_server(root: Path) -> Iterator[FaultServer]:
    """Serve ``root`` on a free 127.0.0.1 port until the block ends."""
    state = FaultServer(root)
    server = _Server(("127.0.0.1", 0), _handler(state))
    state.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.daemon = True
    thread.start()
    try:
        yield state
    finally:
        state.release.set()
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


# -- source repositories ------------------------------------------------------------------


@dataclass
class Source:
    """An archive repository made by the ``ostree`` CLI; ``refs`` and ``history``
    (per ref, newest first) as ostree made them."""

    path: Path
    workdir: Path
    refs: dict[str, str] = field(default_factory=dict)
    history: dict[str, list[str]] = field(default_factory=dict)
    serial: int = 0

    @classmethod
    def create(cls, workdir: Path) -> Source:
        workdir.mkdir(parents=True, exist_ok=True)
        path = workdir / "repo"
        run_ostree("init", f"--repo={path}", "--mode=archive")
        return cls(path, workdir)

    def commit(self, ref: str, files: dict[str, bytes], *args: str) -> str:
        self.serial += 1
        tree = self.workdir / f"tree-{self.serial}"
        for name, data in files.items():
            write_file(tree / name, data)
        ts = BASE_TIME + 3600 * self.serial
        checksum = ostree_commit(
            self.path,
            "-b",
            ref,
            "-s",
            f"{ref} {self.serial}",
            f"--timestamp={iso(ts)}",
            *OWNER,
            *args,
            tree,
        )
        self.refs[ref] = checksum
        self.history.setdefault(ref, []).insert(0, checksum)
        return checksum

    def summary(self) -> None:
        run_ostree("summary", f"--repo={self.path}", "-u")


def tree(n: int, size: int = 20_000) -> dict[str, bytes]:
    """A small tree; ``n`` changes a few files, the rest is shared between trees."""
    rnd = random.Random(n)
    return {
        "README": b"a tree to pull\n",
        "etc/version": f"{n}\n".encode(),
        "usr/bin/tool": b"#!/bin/sh\necho tool\n",
        "usr/share/data": bytes(range(256)) * 16,
        f"usr/lib/mod-{n}.bin": rnd.randbytes(size),
        "var/empty": b"",
    }


def make_source(workdir: Path) -> Source:
    """``main`` (3 commits), ``stable``, ``rawhide`` and ``meta`` (with detached
    metadata), then ``ostree summary -u``."""
    src = Source.create(workdir)
    for n in range(3):
        src.commit("main", tree(n))
    src.commit("stable", tree(10))
    src.commit("rawhide", tree(20, size=200_000))
    src.commit("meta", tree(30), "--add-detached-metadata-string=note=detached, not signed")
    src.summary()
    return src


def object_files(repo: Path) -> set[str]:
    """``XX/rest.type`` of every object file of ``repo``."""
    return {f"{p.parent.name}/{p.name}" for p in (repo / "objects").glob("*/*") if p.is_file()}


def commit_files(repo: Path) -> set[str]:
    return {p for p in object_files(repo) if p.endswith(".commit")}


def ref_files(repo: Path) -> set[str]:
    """Every ref file under ``refs/`` (heads, remotes, mirrors), relative; not the
    ``refs/.lock`` libpyostree keeps."""
    refs = repo / "refs"
    return {
        os.path.relpath(p, refs)
        for p in refs.rglob("*")
        if p.is_file() and not p.name.startswith(".")
    }
