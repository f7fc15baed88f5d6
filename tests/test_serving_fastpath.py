"""The fast path of ``/content/…/objects/…`` (:mod:`service.protocol`) against the ASGI path.

Every request here goes over the wire twice: through a
:class:`~service.protocol.CoalescingHttpToolsProtocol` as ``pyostree serve`` runs it,
and through the same protocol with the fast path off, i.e. uvicorn's ASGI cycle into
:class:`~service.serving.ContentApp`.  The raw bytes a client would read must be the
same (uvicorn's ``date`` header is pinned), whether or not the fast path answered; the
tests also check which path did.  A last test runs a real uvicorn server on a socket.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import socket
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
import uvicorn
from sqlalchemy import insert
from uvicorn.server import ServerState

from libpyostree.objects import ObjectType
from service import db, operations
from service.app import App
from service.protocol import CoalescingHttpToolsProtocol
from service.serving import FAST_MAX
from tests.ostree_cli import free_port
from tests.test_service_api import API, Api, Source, run_import_in_process, running

DEFAULT_HEADERS = [(b"date", b"Thu, 01 Jan 2026 00:00:00 GMT"), (b"server", b"uvicorn")]
H2C = (
    b"User-Agent: libostree/2022.7\r\nAccept: */*\r\nConnection: Upgrade, HTTP2-Settings\r\n"
    b"Upgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQCAAAAAAIAAAAA\r\n"
)


@dataclass
class Served:
    api: Api
    src: Source
    c1: str  # version 1, signed (a .commitmeta)
    c2: str  # version 2 only
    big: str  # a file object over FAST_MAX bytes, in both versions
    objects: list[str]  # "XX/rest.suffix" of every object of version 2

    @property
    def app(self) -> App:
        return self.api.app


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    root = tmp_path_factory.mktemp("fastpath")
    src = Source(root / "source")
    with pytest.MonkeyPatch.context() as mp, running(root / "data", max_upload=8 << 20) as api:
        mp.setattr(operations, "run_import", run_import_in_process)
        api.create_repository("r")
        big = random.Random(1).randbytes(FAST_MAX + 100_000)  # incompressible
        c1 = src.commit("os/stable", {"a": b"one", "big": big, "d/e": b"e"}, signed=True)
        assert api.imported("r", src.tar()) == 1
        c2 = src.commit("os/stable", {"a": b"two", "big": big, "d/e": b"e"})
        assert api.imported("r", src.tar()) == 2
        for name, base_path, extra in (
            ("latest", "pub/latest", {}),
            ("pinned", "pub/v1", {"version": 1}),
            ("private", "priv", {"private": True}),
        ):
            body = {"name": name, "base_path": base_path, "repository": "r", **extra}
            api.ok(api.post(f"{API}/distributions", json=body), 201)
        results = api.ok(
            api.get(f"{API}/repositories/r/versions/2/objects", params={"limit": 1000})
        )
        suffix = {t.name_str: t.archive_suffix for t in ObjectType}
        objects = [
            f"{o['checksum'][:2]}/{o['checksum'][2:]}.{suffix[o['type']]}"
            for o in results["results"]
        ]
        sizes = {
            path: (api.data_dir / "pool" / "objects" / path).stat().st_size for path in objects
        }
        (big_path,) = [p for p, size in sizes.items() if size > FAST_MAX]
        yield Served(api, src, c1, c2, big_path, objects)


class FakeTransport:
    """What a client reads: everything written, in order, and whether it was closed."""

    def __init__(self) -> None:
        self.data = bytearray()
        self.closed = False
        self.buffered = 0

    def write(self, data: bytes) -> None:
        if not self.closed:
            self.data += data

    def writelines(self, chunks: Sequence[bytes]) -> None:
        for chunk in chunks:
            self.write(chunk)

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True

    def get_write_buffer_size(self) -> int:
        return self.buffered

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"peername": ("127.0.0.1", 40000), "sockname": ("127.0.0.1", 8080)}.get(
            name, default
        )

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


@dataclass
class Exchange:
    output: bytes
    closed: bool
    asgi: int  # requests the ASGI app was started for


class Wire:
    """One connection to the protocol, with or without the fast path."""

    def __init__(self, app: App, *, fast: bool, access_log: bool = False) -> None:
        config = uvicorn.Config(
            app, http=CoalescingHttpToolsProtocol, lifespan="off", log_config=None
        )
        config.load()
        self.state = ServerState()
        self.state.default_headers = DEFAULT_HEADERS
        # uvicorn logs access when "uvicorn.access" has handlers (pytest gives it some):
        # none, as in `pyostree serve` without --access-log, unless asked for.
        access = logging.getLogger("uvicorn.access")
        with mock.patch.object(access, "hasHandlers", return_value=access_log):
            self.protocol = CoalescingHttpToolsProtocol(config, self.state, {})
        assert self.protocol.access_log == access_log
        assert (self.protocol._content is None) == access_log
        if not fast:
            self.protocol._content = None
        self.transport = FakeTransport()
        self.protocol.connection_made(self.transport)  # type: ignore[arg-type]
        self.asgi = 0
        start = self.protocol._start_asgi_task

        def counting(cycle: Any, app: Any) -> None:
            self.asgi += 1
            start(cycle, app)

        self.protocol._start_asgi_task = counting  # type: ignore[method-assign]

    async def send(self, *chunks: bytes) -> Exchange:
        """Feed ``chunks`` (one ``data_received`` each) and wait until all is answered."""
        mark, asgi = len(self.transport.data), self.asgi
        for chunk in chunks:
            self.protocol.data_received(chunk)
            await asyncio.sleep(0)
        await self.settle()
        return Exchange(bytes(self.transport.data[mark:]), self.transport.closed, self.asgi - asgi)

    async def settle(self) -> None:
        for _ in range(1000):
            if self.state.tasks:
                await asyncio.wait(list(self.state.tasks))
            await asyncio.sleep(0)  # coalesced writes go out at the end of a loop step
            if not self.state.tasks and not self.protocol._out._pending:
                return
        raise AssertionError("the protocol did not settle")


def both(app: App, *chunks: bytes, access_log: bool = False) -> tuple[Exchange, Exchange]:
    """(fast-path wire, ASGI-only wire) answers to the same bytes."""

    async def run() -> tuple[Exchange, Exchange]:
        fast = await Wire(app, fast=True, access_log=access_log).send(*chunks)
        return fast, await Wire(app, fast=False, access_log=access_log).send(*chunks)

    return asyncio.run(run())


def get(path: str, method: str = "GET", extra: bytes = b"", version: str = "1.1") -> bytes:
    return f"{method} {path} HTTP/{version}\r\nHost: test\r\n".encode() + extra + b"\r\n"


def status_of(exchange: Exchange) -> int:
    return int(exchange.output.split(b" ", 2)[1])


def assert_same(fast: Exchange, slow: Exchange) -> None:
    assert fast.output == slow.output
    assert fast.closed == slow.closed
    assert slow.asgi >= 1


# --- what the fast path answers -------------------------------------------------------------


def test_objects_answered_like_the_asgi_path(served: Served) -> None:
    c1, c2 = served.c1, served.c2
    paths = [f"pub/latest/objects/{o}" for o in served.objects if o != served.big]
    paths += [
        f"pub/v1/objects/{c1[:2]}/{c1[2:]}.commit",
        f"pub/v1/objects/{c1[:2]}/{c1[2:]}.commitmeta",
        f"pub/v1/objects/{c2[:2]}/{c2[2:]}.commit",  # in the pool, not in version 1: 404
        f"pub/latest/objects/{c2[:2]}/{c2[2:]}.dirtree",  # the wrong type: 404
        f"pub/latest/objects/ab/{'c' * 62}.filez",  # in no version: 404
    ]
    statuses = set()
    for path in paths:
        for method in ("GET", "HEAD"):
            for extra in (b"", H2C):
                fast, slow = both(served.app, get(f"/content/{path}", method, extra))
                assert_same(fast, slow)
                assert fast.asgi == 0, (method, path)
                assert not fast.closed
                statuses.add(status_of(fast))
    assert statuses == {200, 404}


def test_answer_headers(served: Served) -> None:
    c = served.c2
    fast, _slow = both(served.app, get(f"/content/pub/latest/objects/{c[:2]}/{c[2:]}.commit"))
    head, _, body = fast.output.partition(b"\r\n\r\n")
    assert head.split(b"\r\n") == [
        b"HTTP/1.1 200 OK",
        *(b"%s: %s" % h for h in DEFAULT_HEADERS),
        b"content-type: application/octet-stream",
        f'etag: "{c}.commit"'.encode(),
        b"cache-control: public, max-age=31536000, immutable",
        f"content-length: {len(body)}".encode(),
    ]
    assert body == served.src.object_bytes(c, ObjectType.COMMIT)
    assert fast.asgi == 0


def test_large_objects(served: Served) -> None:
    """A GET of a file over FAST_MAX is streamed by the ASGI path; its HEAD is fast."""
    path = f"/content/pub/latest/objects/{served.big}"
    fast, slow = both(served.app, get(path))
    assert_same(fast, slow)
    assert (status_of(fast), fast.asgi) == (200, 1)
    fast, slow = both(served.app, get(path, "HEAD"))
    assert_same(fast, slow)
    assert (status_of(fast), fast.asgi) == (200, 0)


# --- what it leaves to the ASGI path ------------------------------------------------------------


def test_unusual_requests_take_the_asgi_path(served: Served) -> None:
    c = served.c2
    obj = f"/content/pub/latest/objects/{c[:2]}/{c[2:]}.commit"
    etag = f'"{c}.commit"'.encode()
    requests = [
        get(f"/content/priv/objects/{c[:2]}/{c[2:]}.commit"),  # private: 401
        get(
            f"/content/priv/objects/{c[:2]}/{c[2:]}.commit",
            extra=f"Authorization: Bearer {served.api.token}\r\n".encode(),
        ),
        get(obj, extra=b"Authorization: Bearer whatever\r\n"),
        get(obj, extra=b"If-None-Match: " + etag + b"\r\n"),  # 304
        get(obj, extra=b"If-None-Match: " + etag + b"\r\n", method="HEAD"),
        get(obj, extra=b"Range: bytes=0-1\r\n"),
        get(obj, extra=b"Content-Length: 3\r\n") + b"abc",
        get(obj, extra=b"Transfer-Encoding: chunked\r\n") + b"3\r\nabc\r\n0\r\n\r\n",
        get(obj + "?x=1"),
        get(obj.replace("/objects/", "/objects%2F")),
        get(obj, method="POST"),  # 405
        get(obj, method="OPTIONS"),
        get(obj, extra=b"Connection: Upgrade\r\nUpgrade: something\r\n"),
        get(f"/content/pub/latest/objects/{c[:2]}/{c[2:].upper()}.commit"),  # 400
        get(f"/content/pub/latest/objects/{c}.commit"),  # 400
        get(f"/content/pub/latest/../v1/objects/{c[:2]}/{c[2:]}.commit"),  # 400
        get(f"/content/pub//latest/objects/{c[:2]}/{c[2:]}.commit"),  # 400
        get(f"/content/nowhere/objects/{c[:2]}/{c[2:]}.commit"),  # 404, no distribution
        get("/content/pub/latest/config"),
        get("/content/pub/latest/summary"),
        get("/content/pub/latest/refs/heads/os/stable"),
        get("/api/v1/status"),
    ]
    for request in requests:
        fast, slow = both(served.app, request)
        assert_same(fast, slow)
        assert fast.asgi == 1, request


def test_nested_base_paths_take_the_asgi_path(served: Served, tmp_path: Path) -> None:
    """A base path under another (refused by the API, possible in a shared database)
    would change which distribution an object path names: the fast path steps aside."""
    c = served.c2
    obj = get(f"/content/pub/latest/objects/{c[:2]}/{c[2:]}.commit")
    with served.app.service.engine.begin() as conn:
        row = {"name": "nested", "base_path": "pub/latest/objects", "created": time.time()}
        conn.execute(insert(db.distributions).values(**row))
    try:
        served.app.service.changed(None)
        fast, slow = both(served.app, obj)
        assert_same(fast, slow)
        assert (status_of(fast), fast.asgi) == (404, 1)  # "ab/….commit" is not served
    finally:
        with served.app.service.engine.begin() as conn:
            conn.execute(db.distributions.delete().where(db.distributions.c.name == "nested"))
        served.app.service.changed(None)
    fast, _slow = both(served.app, obj)
    assert (status_of(fast), fast.asgi) == (200, 0)


def test_changes_to_the_distribution_are_followed(served: Served) -> None:
    c = served.c2
    obj = get(f"/content/pub/latest/objects/{c[:2]}/{c[2:]}.commit")
    fast, _slow = both(served.app, obj)
    assert (status_of(fast), fast.asgi) == (200, 0)
    api = served.api
    try:
        api.ok(api.patch(f"{API}/distributions/latest", json={"private": True}))
        fast, slow = both(served.app, obj)
        assert_same(fast, slow)
        assert (status_of(fast), fast.asgi) == (401, 1)
        api.ok(api.patch(f"{API}/distributions/latest", json={"private": False, "version": 1}))
        fast, slow = both(served.app, obj)
        assert_same(fast, slow)
        assert (status_of(fast), fast.asgi) == (404, 0)  # c2 is not in version 1
    finally:
        api.ok(api.patch(f"{API}/distributions/latest", json={"private": False, "version": None}))
    fast, _slow = both(served.app, obj)
    assert (status_of(fast), fast.asgi) == (200, 0)


def test_failures_take_the_asgi_path(served: Served, monkeypatch: pytest.MonkeyPatch) -> None:
    """Whatever goes wrong on the fast path (the database, say) is the ASGI path's to
    answer or report."""
    c = served.c2
    request = get(f"/content/pub/latest/objects/{c[:2]}/{c[2:]}.commit")

    def broken(_path: str) -> None:
        raise RuntimeError("database is locked")

    monkeypatch.setattr(served.app.content.cache, "object_version", broken)
    fast, slow = both(served.app, request)
    assert_same(fast, slow)
    assert (status_of(fast), fast.asgi) == (200, 1)


def test_access_log_takes_the_asgi_path(served: Served, caplog: pytest.LogCaptureFixture) -> None:
    c = served.c2
    request = get(f"/content/pub/latest/objects/{c[:2]}/{c[2:]}.commit")
    with caplog.at_level(logging.INFO, logger="uvicorn.access"):
        fast, slow = both(served.app, request, access_log=True)
    assert_same(fast, slow)
    assert fast.asgi == 1
    lines = [r.getMessage() for r in caplog.records if r.name == "uvicorn.access"]
    assert len(lines) == 2 and all(f"{c[2:]}.commit HTTP/1.1" in line for line in lines)


def test_backpressure_takes_the_asgi_path(served: Served) -> None:
    """A client not reading its answers: the ASGI path, which waits for the drain."""
    c = served.c2
    request = get(f"/content/pub/latest/objects/{c[:2]}/{c[2:]}.commit")

    async def run() -> tuple[Exchange, Exchange]:
        paused = Wire(served.app, fast=True)
        paused.protocol.pause_writing()
        task = asyncio.ensure_future(paused.send(request))
        await asyncio.sleep(0.01)
        assert paused.asgi == 1 and paused.transport.data == b""
        paused.protocol.resume_writing()
        first = await task
        backlog = Wire(served.app, fast=True)
        backlog.protocol._out.write(b"x" * (1 << 17))  # unsent writes of this loop step
        second = await backlog.send(request)
        return first, second

    first, second = asyncio.run(run())
    _fast, slow = both(served.app, request)
    assert first.output == slow.output
    assert second.output == b"x" * (1 << 17) + slow.output
    assert second.asgi == 1


# --- the connection -----------------------------------------------------------------------------


def test_pipelined_requests(served: Served) -> None:
    objs = [f"/content/pub/latest/objects/{o}" for o in served.objects[:4]]
    # Fast ones, then one the ASGI path answers; those after it queue behind it.
    burst = b"".join(
        [
            get(objs[0]),
            get(objs[1]),
            get("/content/pub/latest/config"),
            get(objs[2]),
            get(objs[3], "HEAD", extra=H2C),
        ]
    )
    fast, slow = both(served.app, burst)
    assert_same(fast, slow)
    assert fast.output.count(b"HTTP/1.1 200 OK") == 5
    assert (fast.asgi, slow.asgi) == (3, 5)
    # All fast: one data_received answers them all, in order.
    burst = b"".join(get(o) for o in objs) * 3
    fast, slow = both(served.app, burst)
    assert_same(fast, slow)
    assert fast.output.count(b"HTTP/1.1 200 OK") == 12
    assert fast.asgi == 0
    # uvicorn stops reading a data_received at an upgrade offer it declines (h2c): what
    # follows in the same read is never answered, on either path (libcurl, which offers
    # h2c, never pipelines).
    fast, slow = both(served.app, get(objs[0], extra=H2C) + get(objs[1]))
    assert_same(fast, slow)
    assert (fast.output.count(b"HTTP/1.1 200 OK"), fast.asgi) == (1, 0)


def test_keep_alive_split_requests_and_later_requests(served: Served) -> None:
    objs = [f"/content/pub/latest/objects/{o}" for o in served.objects[:3]]

    async def run(fast: bool) -> list[Exchange]:
        wire = Wire(served.app, fast=fast)
        request = get(objs[0], extra=H2C)
        out = [await wire.send(request[:20], request[20:70], request[70:])]
        out.append(await wire.send(get("/content/pub/latest/summary")))
        out.append(await wire.send(get(objs[1])))
        out.append(await wire.send(get(objs[2], "HEAD")))
        assert wire.state.total_requests == 4
        assert wire.protocol.timeout_keep_alive_task is not None  # armed while idle
        return out

    fast, slow = asyncio.run(run(True)), asyncio.run(run(False))
    for f, s in zip(fast, slow, strict=True):
        assert_same(f, s)
    assert [f.asgi for f in fast] == [0, 1, 0, 0]
    assert not fast[-1].closed


def test_http10_and_connection_close(served: Served) -> None:
    obj = f"/content/pub/latest/objects/{served.objects[0]}"
    for request in (
        get(obj, version="1.0"),
        get(obj, "HEAD", version="1.0"),
        get(obj, version="1.0", extra=b"Connection: keep-alive\r\n"),  # uvicorn closes 1.0
        get(obj, extra=b"Connection: close\r\n"),
        # Pipelined after a close: never answered.
        get(obj, extra=b"Connection: close\r\n") + get(obj),
    ):
        fast, slow = both(served.app, request)
        assert_same(fast, slow)
        assert fast.closed
        assert fast.asgi == 0
        assert fast.output.count(b"HTTP/1.1 200 OK") == 1
        assert b"\r\nconnection: close\r\n" in fast.output


# --- a real server ------------------------------------------------------------------------------


@contextlib.contextmanager
def uvicorn_server(app: App) -> Iterator[int]:
    port = free_port()
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=port,
        http=CoalescingHttpToolsProtocol,
        lifespan="off",
        log_config=None,
        access_log=False,
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline
        time.sleep(0.01)
    try:
        yield port
    finally:
        server.should_exit = True
        thread.join(30)


def read_response(sock: socket.socket, buf: bytearray) -> tuple[bytes, bytes]:
    """(head, body) of the next response on ``sock``; ``buf`` holds what was read ahead."""
    while b"\r\n\r\n" not in buf:
        chunk = sock.recv(65536)
        assert chunk, "connection closed"
        buf += chunk
    head, _, rest = bytes(buf).partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b": ")
        if name == b"content-length":
            length = int(value)
    if head.startswith(b"HEAD"):
        length = 0
    while len(rest) < length:
        chunk = sock.recv(65536)
        assert chunk, "connection closed"
        rest += chunk
    buf[:] = rest[length:]
    return head, rest[:length]


def test_real_server(served: Served) -> None:
    pool = served.api.data_dir / "pool" / "objects"
    small = [o for o in served.objects if o != served.big]
    objs = [*small[:4], served.big]
    with uvicorn_server(served.app) as port, socket.create_connection(("127.0.0.1", port)) as s:
        s.settimeout(30)
        buf = bytearray()
        # Keep-alive: one after the other, then all pipelined in one send.
        for o in objs:
            s.sendall(get(f"/content/pub/latest/objects/{o}", extra=H2C))
            head, body = read_response(s, buf)
            assert head.startswith(b"HTTP/1.1 200 OK\r\n") and body == (pool / o).read_bytes()
        s.sendall(b"".join(get(f"/content/pub/latest/objects/{o}") for o in objs * 2))
        for o in objs * 2:
            head, body = read_response(s, buf)
            assert head.startswith(b"HTTP/1.1 200 OK\r\n") and body == (pool / o).read_bytes()
        # HTTP/1.0: answered, then closed.
        s.sendall(get(f"/content/pub/latest/objects/{objs[0]}", version="1.0"))
        head, body = read_response(s, buf)
        assert b"\r\nconnection: close" in head and body == (pool / objs[0]).read_bytes()
        assert s.recv(1) == b""
