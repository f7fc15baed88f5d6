"""HTTP transport for pulls: libcurl's multi interface (pycurl), retries, TLS options.

Why pycurl (the ``pull`` extra): libcurl is what ostree itself pulls with, and
its multi interface keeps every request in flight from one thread with the
HTTP work (keep-alive pooling, HTTP/2 multiplexing over TLS, chunked bodies,
redirects, proxies, TLS client certificates) done in C.  Measured on this
project's 2-core machine fetching the 50,280 objects of the benchmark corpus
from nginx: 2.2-2.8 s with pycurl (8-16 transfers) against 28 s with urllib3
from 16 threads, whose pure-Python ``http.client`` parsing held the GIL for
most of a pull (``benchmarks/README.md``).  The wheels bundle libcurl and
OpenSSL, so ``pip install`` needs no compiler.

The :class:`Transport` is driven by its caller: :meth:`Transport.submit` queues
GETs, :meth:`Transport.wait` runs transfers and returns the finished ones
(after retries).

Statuses follow ostree's curl backend (``reference/ostree-format.md`` §4.5),
more forgiving where that is safe: 403/404/410 are "not found" (the caller
decides whether that is fatal); 408, 429 and 5xx, dropped connections and
timeouts are retried with exponential backoff; other statuses fail at once.
The timeout is an inactivity timeout: a transfer that receives nothing for
``timeout`` seconds is abandoned (and retried).
"""

from __future__ import annotations

import base64
import collections
import heapq
import random
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import IO, Any

from .errors import OstreeError

NOT_FOUND = frozenset({403, 404, 410})
RETRY_STATUS = frozenset({408, 429, 500, 502, 503, 504})
_SPILL_OVER = 16 << 20
_STALL_CHECK = 0.05
"""Seconds between inactivity checks of the transfers in flight."""


class TransportError(OstreeError):
    """A request failed for good (after retries), or its answer was too large."""

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class RemoteOptions:
    """How to talk to a remote (ostree's remote options, named like Pulp's)."""

    tls_validation: bool = True
    ca_cert: str | None = None
    """A PEM bundle (the text itself, or a path to it)."""
    client_cert: str | None = None
    client_key: str | None = None
    """PEM text or paths; both or neither."""
    username: str | None = None
    password: str | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    proxy_url: str | None = None
    timeout: float = 60.0
    retries: int = 5
    concurrency: int = 16


@dataclass(eq=False, slots=True)
class Response:
    """A finished GET: exactly one of ``body``/``file``/``error`` is meaningful."""

    path: str
    tag: Any
    """The caller's object given to :meth:`Transport.submit`."""
    body: bytes | None = None
    """The body; None when not found (``not_found_ok``) or spilled or failed."""
    file: IO[bytes] | None = None
    """A spilled body: an open temporary file (the caller closes it; it is deleted
    then), positioned at its end."""
    size: int = 0
    error: TransportError | None = None


class _Request:
    """One GET and its state across attempts."""

    __slots__ = (
        "attempt",
        "file",
        "last",
        "max_size",
        "not_found_ok",
        "parts",
        "path",
        "size",
        "spill_dir",
        "tag",
        "too_large",
        "url",
    )

    def __init__(
        self,
        path: str,
        tag: Any,
        *,
        url: str,
        max_size: int | None,
        not_found_ok: bool,
        spill_dir: str | None,
    ) -> None:
        self.path = path
        self.tag = tag
        self.url = url
        self.max_size = max_size
        self.not_found_ok = not_found_ok
        self.spill_dir = spill_dir
        self.attempt = 0
        self.parts: list[bytes] = []
        self.size = 0
        self.file: IO[bytes] | None = None
        self.last = 0.0
        self.too_large = False

    def reset(self) -> None:
        """Before an attempt: forget what a failed one received."""
        self.parts = []
        self.size = 0
        self.too_large = False
        self.last = time.monotonic()
        if self.file is not None:
            self.file.seek(0)
            self.file.truncate()

    def write(self, chunk: bytes) -> int | None:
        """libcurl's write callback: keep ``chunk``; a short count aborts the transfer."""
        self.last = time.monotonic()
        self.size += len(chunk)
        if self.max_size is not None and self.size > self.max_size:
            self.too_large = True
            return 0
        if self.file is not None:
            self.file.write(chunk)
        elif self.spill_dir is not None and self.size > _SPILL_OVER:
            self.file = tempfile.NamedTemporaryFile(dir=self.spill_dir, prefix="pull-")  # noqa: SIM115 - the caller closes it
            self.file.writelines(self.parts)
            self.file.write(chunk)
            self.parts = []
        else:
            self.parts.append(chunk)
        return None

    def discard(self) -> None:
        if self.file is not None:
            self.file.close()
            self.file = None


class Transport:
    """GETs relative to one base URL, many in flight; not thread-safe (one driver)."""

    def __init__(self, base_url: str, options: RemoteOptions | None = None) -> None:
        try:
            import pycurl
        except ImportError:  # pragma: no cover - an install problem
            raise OstreeError("Pulling needs pycurl: pip install 'libpyostree[pull]'") from None
        self._pycurl = pycurl
        self.options = options = options or RemoteOptions()
        if not base_url.startswith(("http://", "https://")):
            raise OstreeError(f"Remote URL must be http:// or https://, not {base_url!r:.80}")
        if (options.client_cert is None) != (options.client_key is None):
            raise OstreeError("A client certificate needs its key, and a key its certificate")
        self.base = base_url.rstrip("/") + "/"
        self._size = max(1, options.concurrency)
        self._multi = pycurl.CurlMulti()
        self._multi.setopt(pycurl.M_MAX_HOST_CONNECTIONS, self._size)
        self._template = self._easy_options(options)
        self._free: list[Any] = []
        self._active: dict[Any, _Request] = {}
        self._ready: collections.deque[_Request] = collections.deque()
        self._later: list[tuple[float, int, _Request]] = []  # (due, serial, request) heap
        self._serial = 0
        self._finished: list[Response] = []
        self._next_stall_check = 0.0

    def _easy_options(self, options: RemoteOptions) -> list[tuple[int, Any]]:
        """The options every transfer gets (set once per reused curl handle)."""
        pycurl = self._pycurl
        headers = {"User-Agent": "libpyostree", **options.headers}
        if options.username is not None:
            # Sent with the first request, as ostree does (no 401 round trip).
            token = f"{options.username}:{options.password or ''}".encode()
            headers["Authorization"] = "Basic " + base64.b64encode(token).decode()
        opts: list[tuple[int, Any]] = [
            (pycurl.NOSIGNAL, 1),
            (pycurl.FOLLOWLOCATION, 1),
            (pycurl.MAXREDIRS, 5),
            (pycurl.PROTOCOLS, pycurl.PROTO_HTTP | pycurl.PROTO_HTTPS),
            (pycurl.REDIR_PROTOCOLS, pycurl.PROTO_HTTP | pycurl.PROTO_HTTPS),
            (pycurl.CONNECTTIMEOUT_MS, int(min(options.timeout, 30.0) * 1000)),
            (pycurl.BUFFERSIZE, 128 << 10),
            (pycurl.HTTPHEADER, [f"{name}: {value}" for name, value in headers.items()]),
        ]
        if not options.tls_validation:
            opts += [(pycurl.SSL_VERIFYPEER, 0), (pycurl.SSL_VERIFYHOST, 0)]
        if options.ca_cert:
            if _is_pem(options.ca_cert):
                opts.append((pycurl.CAINFO_BLOB, options.ca_cert.encode()))
            else:
                opts.append((pycurl.CAINFO, options.ca_cert))
        if options.client_cert and options.client_key:
            for value, blob, path in (
                (options.client_cert, pycurl.SSLCERT_BLOB, pycurl.SSLCERT),
                (options.client_key, pycurl.SSLKEY_BLOB, pycurl.SSLKEY),
            ):
                opts.append((blob, value.encode()) if _is_pem(value) else (path, value))
        if options.proxy_url:
            opts.append((pycurl.PROXY, options.proxy_url))
        else:
            opts.append((pycurl.PROXY, ""))  # not from the environment: the remote says
        return opts

    # -- driving ---------------------------------------------------------------------

    @property
    def pending(self) -> int:
        """Requests submitted whose :class:`Response` was not returned yet."""
        return len(self._active) + len(self._ready) + len(self._later) + len(self._finished)

    def submit(
        self,
        path: str,
        tag: Any = None,
        *,
        max_size: int | None = None,
        not_found_ok: bool = True,
        spill_dir: str | None = None,
    ) -> None:
        """Queue a GET of ``path``.  A body over ``max_size`` bytes fails the request;
        with ``spill_dir``, a body over 16 MiB is written to a temporary file there."""
        self._ready.append(
            _Request(
                path,
                tag,
                url=self.base + path,
                max_size=max_size,
                not_found_ok=not_found_ok,
                spill_dir=spill_dir,
            )
        )

    def wait(self, timeout: float) -> list[Response]:
        """Run transfers until at least one request is finished (or ``timeout``
        seconds passed); returns the finished ones."""
        multi = self._multi
        pycurl = self._pycurl
        deadline = time.monotonic() + timeout
        while True:
            self._start()
            while True:
                status, _ = multi.perform()
                if status != pycurl.E_CALL_MULTI_PERFORM:
                    break
            self._collect()
            now = time.monotonic()
            if now >= self._next_stall_check:
                self._next_stall_check = now + _STALL_CHECK
                self._abandon_stalled(now)
            if self._finished:
                done, self._finished = self._finished, []
                return done
            if now >= deadline:
                return []
            pause = deadline - now
            if self._later:
                pause = min(pause, max(0.0, self._later[0][0] - now))
            if self._active:
                pause = min(pause, _STALL_CHECK)
                multi.select(pause)
            elif not self._ready:
                time.sleep(pause)

    def close(self) -> None:
        """Abandon every request (spilled files are deleted) and close connections."""
        for handle, request in self._active.items():
            self._multi.remove_handle(handle)
            request.discard()
            handle.close()
        for request in [*self._ready, *(r for _, _, r in self._later)]:
            request.discard()
        for response in self._finished:
            if response.file is not None:
                response.file.close()
        for handle in self._free:
            handle.close()
        self._active.clear()
        self._ready.clear()
        self._later.clear()
        self._finished.clear()
        self._free.clear()
        self._multi.close()

    # -- internals -------------------------------------------------------------------

    def _start(self) -> None:
        now = time.monotonic()
        while self._later and self._later[0][0] <= now:
            self._ready.append(heapq.heappop(self._later)[2])
        while self._ready and len(self._active) < self._size:
            request = self._ready.popleft()
            handle = self._free.pop() if self._free else self._new_handle()
            request.reset()
            handle.setopt(self._pycurl.URL, request.url)
            handle.setopt(self._pycurl.WRITEFUNCTION, request.write)
            self._active[handle] = request
            self._multi.add_handle(handle)

    def _new_handle(self) -> Any:
        handle = self._pycurl.Curl()
        for option, value in self._template:
            handle.setopt(option, value)
        return handle

    def _release(self, handle: Any) -> _Request:
        self._multi.remove_handle(handle)
        request = self._active.pop(handle)
        self._free.append(handle)
        return request

    def _collect(self) -> None:
        pycurl = self._pycurl
        while True:
            queued, ok, failed = self._multi.info_read()
            for handle in ok:
                status = handle.getinfo(pycurl.RESPONSE_CODE)
                self._answered(self._release(handle), status)
            for handle, code, message in failed:
                request = self._release(handle)
                if request.too_large:
                    self._fail(
                        request, f"{request.url} is more than the {request.max_size} bytes allowed"
                    )
                elif code == pycurl.E_FILESIZE_EXCEEDED:
                    self._fail(
                        request,
                        f"{request.url} is larger than the {request.max_size} bytes allowed",
                    )
                elif code in _RETRY_CODES:
                    self._retry(request, f"GET {request.url} failed: {message}")
                else:
                    self._fail(request, f"GET {request.url} failed: {message}")
            if not queued:
                return

    def _answered(self, request: _Request, status: int) -> None:
        if 200 <= status < 300:
            response = Response(request.path, request.tag, size=request.size)
            if request.file is not None:
                response.file, request.file = request.file, None
            else:
                response.body = b"".join(request.parts)
            request.parts = []
            self._finished.append(response)
        elif status in NOT_FOUND and request.not_found_ok:
            request.discard()
            self._finished.append(Response(request.path, request.tag))
        elif status in RETRY_STATUS:
            self._retry(
                request,
                f"Server returned HTTP {status} for {request.url} "
                f"(after {request.attempt + 1} attempts)",
                status,
            )
        else:
            self._fail(request, f"Server returned HTTP {status} for {request.url}", status)

    def _retry(self, request: _Request, message: str, status: int | None = None) -> None:
        if request.attempt >= self.options.retries:
            self._fail(request, message, status)
            return
        delay = min(5.0, 0.1 * 2**request.attempt) * (0.5 + random.random())
        request.attempt += 1
        self._serial += 1
        heapq.heappush(self._later, (time.monotonic() + delay, self._serial, request))

    def _fail(self, request: _Request, message: str, status: int | None = None) -> None:
        request.discard()
        request.parts = []
        error = TransportError(message, status=status)
        self._finished.append(Response(request.path, request.tag, error=error))

    def _abandon_stalled(self, now: float) -> None:
        limit = self.options.timeout
        for handle, request in list(self._active.items()):
            if now - request.last > limit:
                # Closed, not reused: its connection may still carry the old answer.
                self._multi.remove_handle(handle)
                del self._active[handle]
                handle.close()
                self._retry(
                    request, f"GET {request.url} failed: timed out (nothing received in {limit} s)"
                )


def _retry_codes() -> frozenset[int]:
    try:
        import pycurl
    except ImportError:  # pragma: no cover
        return frozenset()
    names = (
        "E_COULDNT_RESOLVE_HOST",
        "E_COULDNT_CONNECT",
        "E_WEIRD_SERVER_REPLY",
        "E_HTTP2",
        "E_PARTIAL_FILE",
        "E_OPERATION_TIMEDOUT",
        "E_SSL_CONNECT_ERROR",
        "E_GOT_NOTHING",
        "E_SEND_ERROR",
        "E_RECV_ERROR",
        "E_HTTP2_STREAM",
    )
    return frozenset(getattr(pycurl, name) for name in names if hasattr(pycurl, name))


_RETRY_CODES = _retry_codes()
"""libcurl errors worth another attempt: the network or the server, not us."""


def _is_pem(value: str) -> bool:
    return "-----BEGIN " in value


__all__ = ["RemoteOptions", "Response", "Transport", "TransportError"]
