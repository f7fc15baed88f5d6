"""uvicorn's httptools protocol with one ``writev`` per response and a fast path
for the object GETs of a pull.

uvicorn writes a response's headers and body with two ``transport.write``
calls, i.e. two ``send`` syscalls; for the small objects a pull fetches by the
ten thousand those syscalls were 40 % of the serving CPU (py-spy under wrk).
:class:`CoalescingTransport` collects what is written during one event-loop
step and sends it with a single ``writelines`` (``writev``) at the end of the
step.  It also skips uvicorn's per-request warning for the ``Upgrade: h2c``
that libcurl (and so ``ostree pull``) offers on every plain-HTTP request.

**The fast path.**  Even then most of the CPU of an object GET was the ASGI
machinery around a few microseconds of work: the scope, a
``RequestResponseCycle`` and an ``asyncio.Event``, one Task per request, the
coroutine chain down to :class:`~service.serving.ContentApp`, two ``send``
messages with their header validation.  :class:`CoalescingHttpToolsProtocol`
answers a ``GET``/``HEAD`` of ``/content/…/objects/XX/REST.{filez,…}`` right in
the parser's callbacks instead, with the response triple
:meth:`ContentApp.fast_object <service.serving.ContentApp.fast_object>` computes
(the ASGI path's own lookup and headers), framed as uvicorn frames it.  Anything
else goes to the ASGI app exactly as before: see :meth:`_fast_response` for
when.  ``tests/test_serving_fastpath.py`` compares both paths byte for byte.

Used by ``pyostree serve`` when httptools is installed (``uvicorn[standard]``);
everything else about the protocol is uvicorn's.
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.config import Config
from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware
from uvicorn.protocols.http.flow_control import HIGH_WATER_LIMIT
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol
from uvicorn.server import ServerState

from .app import App
from .serving import ContentApp

#: Request headers after which the ASGI path answers: a body (``content-length``,
#: ``transfer-encoding``, ``expect``), a conditional or partial request, credentials.
#: The fast path could answer some of them the same way, but they are rare and the
#: ASGI path is the reference.
_SLOW_HEADERS = frozenset(
    (
        b"authorization",
        b"content-length",
        b"transfer-encoding",
        b"expect",
        b"if-none-match",
        b"if-match",
        b"if-modified-since",
        b"if-unmodified-since",
        b"if-range",
        b"range",
    )
)
_PREFIX = b"/content/"


class CoalescingTransport:
    """A transport proxy whose writes within one loop step go out together."""

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._pending: list[bytes] = []
        self.pending_size = 0
        """Bytes written during this loop step, not yet sent."""
        self._scheduled = False

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if not data:
            return
        data = bytes(data)
        self._pending.append(data)
        self.pending_size += len(data)
        if not self._scheduled:
            self._scheduled = True
            self._loop.call_soon(self._flush)

    def writelines(self, chunks: Any) -> None:
        for chunk in chunks:
            self.write(chunk)

    def write_now(self, chunks: list[bytes]) -> None:
        """Send ``chunks`` with one ``writelines`` now, saving the scheduled flush; when
        writes of this step are pending, after them (at the flush), to keep the order."""
        if self._pending:
            self.writelines(chunks)
        elif not self._transport.is_closing():
            self._transport.writelines(chunks)

    def _flush(self) -> None:
        self._scheduled = False
        pending, self._pending = self._pending, []
        self.pending_size = 0
        if pending and not self._transport.is_closing():
            self._transport.writelines(pending)

    def get_write_buffer_size(self) -> int:
        return self._transport.get_write_buffer_size() + self.pending_size

    def is_closing(self) -> bool:  # per request: not through __getattr__ (an AttributeError)
        return self._transport.is_closing()

    def close(self) -> None:
        self._flush()
        self._transport.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


def _content_app(app: Any) -> ContentApp | None:
    """The :class:`ContentApp` ``/content/`` requests reach when nothing but uvicorn's
    proxy-headers middleware (it only rewrites the scope's client and scheme, which
    the content app never reads) wraps our :class:`App`; otherwise None (e.g. the
    message logger of ``--log-level trace``: every request must then go through it)."""
    if isinstance(app, ProxyHeadersMiddleware):
        app = app.app
    return app.content if isinstance(app, App) else None


class CoalescingHttpToolsProtocol(HttpToolsProtocol):
    def __init__(
        self,
        config: Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        # Per connection: the fast path is off when an access log must see every request
        # (it logs from the ASGI cycle), when uvicorn might answer 503 (limit_concurrency)
        # or when a root path changes what the app sees as the path.
        fast = not self.access_log and self.limit_concurrency is None and not self.root_path
        self._content = _content_app(self.app) if fast else None
        self._fast = False
        """Whether the fast path answers the current request."""
        self._answer: tuple[list[bytes], bool] = ([], True)
        """Its answer, until written: (data, keep-alive)."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        self._out = CoalescingTransport(transport, asyncio.get_running_loop())
        super().connection_made(self._out)  # type: ignore[arg-type]

    def _unsupported_upgrade_warning(self) -> None:
        """``Upgrade: h2c`` is declined by answering in HTTP/1.1, as RFC 9113 allows."""

    # The fast path hooks into three parser callbacks.  uvicorn starts the ASGI Task in
    # on_headers_complete; there the fast path decides instead and computes the answer
    # (or leaves everything to uvicorn).  It writes the answer in on_message_complete,
    # once the request is whole, and ends the request as a completed ASGI response
    # would (keep-alive or close, request count, keep-alive timer).  The request's
    # scope and headers are still collected by uvicorn's on_message_begin/on_header.

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._fast = False

    def on_headers_complete(self) -> None:
        if self._content is not None:
            try:
                answer = self._fast_response(self._content)
            except Exception:  # e.g. the database: the ASGI path answers (a 500, logged)
                answer = None
            if answer is not None:
                self._fast, self._answer = True, answer
                return
        super().on_headers_complete()

    def on_body(self, body: bytes) -> None:
        if not self._fast:  # a fast request has no body (see _SLOW_HEADERS)
            super().on_body(body)

    def on_message_complete(self) -> None:
        if not self._fast:
            super().on_message_complete()
            return
        (data, keep_alive), self._answer = self._answer, ([], True)
        self._out.write_now(data)
        # As RequestResponseCycle.send does once the body is sent.
        if not keep_alive:
            self.transport.close()
        self.on_response_complete()

    def _should_upgrade(self) -> bool:
        """uvicorn asks after every request offering ``Upgrade: h2c`` (all of libcurl's):
        a fast request offered no upgrade or h2c, so it never becomes a WebSocket."""
        return not self._fast and super()._should_upgrade()

    def _fast_response(self, content: ContentApp) -> tuple[list[bytes], bool] | None:
        """The bytes answering this request (headers parsed) and whether the connection
        stays open, or None: the ASGI path answers.

        Only when no earlier response is pending (no running or queued ASGI cycle:
        pipelined answers stay in order), the client reads what it is sent (else the
        ASGI path waits for it to drain), the request is a ``GET``/``HEAD`` of
        ``/content/…`` without query, percent-encoding, body or any header of
        :data:`_SLOW_HEADERS`, and :meth:`ContentApp.fast_object` has the answer.
        """
        method = self.parser.get_method()
        if method == b"GET":
            head = False
        elif method == b"HEAD":
            head = True
        else:
            return None
        url = self.url
        # No percent-encoding, query or fragment.  (Not ``b"%" in url``: bytes tries the
        # needle as an int first, a TypeError with a formatted message every time.)
        if not url.startswith(_PREFIX) or len(url.translate(None, b"%?#")) != len(url):
            return None
        cycle = self.cycle
        if (cycle is not None and not cycle.response_complete) or self.pipeline:
            return None
        # uvicorn's FlowControl pauses writing when the transport's own buffer is full.
        out = self._out
        if self.flow.write_paused or out.pending_size > HIGH_WATER_LIMIT or out.is_closing():
            return None
        for name, value in self.headers:
            if name in _SLOW_HEADERS:
                return None
            # A WebSocket (or any other) upgrade is uvicorn's business; h2c is declined.
            if name == b"upgrade" and value.lower() != b"h2c":
                return None
        try:
            path = url[len(_PREFIX) :].decode("ascii")
        except UnicodeDecodeError:
            return None
        response = content.fast_object(path, head)
        if response is None:
            return None
        status, headers, body = response
        # uvicorn's framing (RequestResponseCycle.send): status line, default headers
        # (server, date), the app's headers, "connection: close" unless kept alive.
        keep_alive = self.parser.get_http_version() != "1.0" and self.parser.should_keep_alive()
        lines = [STATUS_LINE[status], _default_headers(self.server_state.default_headers)]
        for name, value in headers:
            lines += (name, b": ", value, b"\r\n")
        if not keep_alive:
            lines.append(b"connection: close\r\n")
        lines.append(b"\r\n")
        data = [b"".join(lines)]
        if body and not head:
            data.append(body)
        return data, keep_alive


_defaults: tuple[list[tuple[bytes, bytes]], bytes] = ([], b"")


def _default_headers(headers: list[tuple[bytes, bytes]]) -> bytes:
    """uvicorn's default headers (``date``, ``server``) as they are framed.  uvicorn
    replaces the list when the date changes (once a second); until then the framed
    block is reused (the list is held, so ``is`` cannot see a recycled id)."""
    global _defaults  # noqa: PLW0603
    if _defaults[0] is not headers:
        _defaults = (headers, b"".join(b"%s: %s\r\n" % pair for pair in headers))
    return _defaults[1]
