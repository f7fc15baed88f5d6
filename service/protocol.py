"""uvicorn's httptools protocol with one ``writev`` per response.

uvicorn writes a response's headers and body with two ``transport.write``
calls, i.e. two ``send`` syscalls; for the small objects a pull fetches by the
ten thousand those syscalls were 40 % of the serving CPU (py-spy under wrk).
:class:`CoalescingTransport` collects what is written during one event-loop
step and sends it with a single ``writelines`` (``writev``) at the end of the
step.  It also skips uvicorn's per-request warning for the ``Upgrade: h2c``
that libcurl (and so ``ostree pull``) offers on every plain-HTTP request.

Used by ``pyostree serve`` when httptools is installed (``uvicorn[standard]``);
everything else about the protocol is uvicorn's.
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol


class CoalescingTransport:
    """A transport proxy whose writes within one loop step go out together."""

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._pending: list[bytes] = []
        self._scheduled = False

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if not data:
            return
        self._pending.append(bytes(data))
        if not self._scheduled:
            self._scheduled = True
            self._loop.call_soon(self._flush)

    def writelines(self, chunks: Any) -> None:
        for chunk in chunks:
            self.write(chunk)

    def _flush(self) -> None:
        self._scheduled = False
        pending, self._pending = self._pending, []
        if pending and not self._transport.is_closing():
            self._transport.writelines(pending)

    def get_write_buffer_size(self) -> int:
        return self._transport.get_write_buffer_size() + sum(map(len, self._pending))

    def close(self) -> None:
        self._flush()
        self._transport.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


class CoalescingHttpToolsProtocol(HttpToolsProtocol):
    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        wrapped = CoalescingTransport(transport, asyncio.get_running_loop())
        super().connection_made(wrapped)  # type: ignore[arg-type]

    def _unsupported_upgrade_warning(self) -> None:
        """``Upgrade: h2c`` is declined by answering in HTTP/1.1, as RFC 9113 allows."""
