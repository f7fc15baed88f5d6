"""HTTP transport for pulls: urllib3 with keep-alive pooling, retries and TLS options.

Why urllib3 (the ``pull`` extra): it is the lowest-overhead maintained client
for blocking I/O from a thread pool (a GET of a small object costs a fraction
of httpx's Python time), pools keep-alive connections per host, and it takes
every TLS option ostree remotes have (CA bundle, client certificate, verify
off) plus proxies and basic auth.  ``http.client`` underneath releases the GIL
while waiting on sockets, so a few dozen threads keep many requests in flight.

Statuses follow ostree's curl backend (``reference/ostree-format.md`` §4.5),
more forgiving where that is safe: 403/404/410 are "not found" (the caller
decides whether that is fatal); 408, 429 and 5xx, dropped connections and
timeouts are retried with exponential backoff; other statuses fail at once.
"""

from __future__ import annotations

import base64
import os
import random
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import IO, Any

from .errors import OstreeError

NOT_FOUND = frozenset({403, 404, 410})
RETRY_STATUS = frozenset({408, 429, 500, 502, 503, 504})
_CHUNK = 1 << 16


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


class Transport:
    """GETs relative to one base URL; thread-safe."""

    def __init__(self, base_url: str, options: RemoteOptions | None = None) -> None:
        try:
            import urllib3
        except ImportError:  # pragma: no cover - an install problem
            raise OstreeError("Pulling needs urllib3: pip install 'libpyostree[pull]'") from None
        self._urllib3 = urllib3
        self.options = options = options or RemoteOptions()
        if not base_url.startswith(("http://", "https://")):
            raise OstreeError(f"Remote URL must be http:// or https://, not {base_url!r:.80}")
        self.base = base_url.rstrip("/") + "/"
        self._temp: list[str] = []
        headers = {"User-Agent": "libpyostree", **options.headers}
        if options.username is not None:
            token = f"{options.username}:{options.password or ''}".encode()
            headers["Authorization"] = "Basic " + base64.b64encode(token).decode()
        kwargs: dict[str, Any] = {
            "num_pools": 4,
            "maxsize": max(options.concurrency, 1),
            "block": True,
            "headers": headers,
            # Our own retry loop below; urllib3 only follows redirects.
            "retries": urllib3.Retry(total=None, connect=0, read=0, other=0, status=0, redirect=5),
            "timeout": urllib3.Timeout(connect=min(options.timeout, 30.0), read=options.timeout),
        }
        if base_url.startswith("https://"):
            kwargs["cert_reqs"] = "CERT_REQUIRED" if options.tls_validation else "CERT_NONE"
            if options.ca_cert:
                if _is_pem(options.ca_cert):
                    kwargs["ca_cert_data"] = options.ca_cert
                else:
                    kwargs["ca_certs"] = options.ca_cert
            if options.client_cert:
                kwargs["cert_file"] = self._as_file(options.client_cert)
                if options.client_key:
                    kwargs["key_file"] = self._as_file(options.client_key)
            if not options.tls_validation:
                kwargs["assert_hostname"] = False
        if options.proxy_url:
            self._pool: Any = urllib3.ProxyManager(options.proxy_url, **kwargs)
        else:
            self._pool = urllib3.PoolManager(**kwargs)

    def _as_file(self, value: str) -> str:
        if not _is_pem(value):
            return value
        fd, path = tempfile.mkstemp(prefix="pyostree-tls-", suffix=".pem")
        with os.fdopen(fd, "w") as f:
            f.write(value)
        self._temp.append(path)
        return path

    def close(self) -> None:
        self._pool.clear()
        for path in self._temp:
            os.unlink(path)
        self._temp.clear()

    def get(
        self,
        path: str,
        *,
        max_size: int | None = None,
        spill: Callable[[], IO[bytes]] | None = None,
        spill_over: int = 16 << 20,
        not_found_ok: bool = True,
    ) -> bytes | None:
        """The body of ``path`` (None when not found and ``not_found_ok``).

        With ``spill``, a body longer than ``spill_over`` bytes (or of unknown
        length) is written to the file ``spill()`` returns instead (it must
        return the same file when called again), and ``b""`` is returned; that
        file is truncated before every attempt.
        """
        urllib3 = self._urllib3
        url = self.base + path
        attempt = 0
        while True:
            try:
                response = self._pool.request(
                    "GET", url, preload_content=False, redirect=True, decode_content=False
                )
            except (urllib3.exceptions.HTTPError, OSError) as exc:
                if attempt >= self.options.retries:
                    raise TransportError(f"GET {url} failed: {_reason(exc)}") from None
                attempt = self._backoff(attempt)
                continue
            try:
                status = response.status
                if not 200 <= status < 300:
                    # Read the (error page) body, or the next request on this
                    # keep-alive connection fails with ResponseNotReady.
                    response.drain_conn()
                if status in NOT_FOUND:
                    if not_found_ok:
                        return None
                    raise TransportError(f"Server returned HTTP {status} for {url}", status=status)
                if status in RETRY_STATUS:
                    if attempt >= self.options.retries:
                        raise TransportError(
                            f"Server returned HTTP {status} for {url} "
                            f"(after {attempt + 1} attempts)",
                            status=status,
                        )
                    attempt = self._backoff(attempt)
                    continue
                if not 200 <= status < 300:
                    raise TransportError(f"Server returned HTTP {status} for {url}", status=status)
                try:
                    return self._body(response, url, max_size, spill, spill_over)
                except (urllib3.exceptions.HTTPError, OSError) as exc:
                    if attempt >= self.options.retries:
                        raise TransportError(f"GET {url} failed: {_reason(exc)}") from None
                    attempt = self._backoff(attempt)
                    continue
            finally:
                response.release_conn()

    def _body(
        self,
        response: Any,
        url: str,
        max_size: int | None,
        spill: Callable[[], IO[bytes]] | None,
        spill_over: int,
    ) -> bytes:
        declared = response.headers.get("content-length")
        sink: IO[bytes] | None = None
        if spill is not None and (
            declared is None or not declared.isdigit() or int(declared) > spill_over
        ):
            sink = spill()  # the same file on every attempt (truncated below)
        if (
            max_size is not None
            and declared is not None
            and declared.isdigit()
            and (int(declared) > max_size)
        ):
            raise TransportError(f"{url} is {declared} bytes, more than the {max_size} allowed")
        if sink is None and max_size is None and declared is not None and declared.isdigit():
            data = response.read()
            if len(data) != int(declared):
                raise self._urllib3.exceptions.ProtocolError("short body")
            return bytes(data)
        parts: list[bytes] = []
        total = 0
        if sink is not None:
            sink.seek(0)
            sink.truncate()
        for chunk in response.stream(_CHUNK):
            total += len(chunk)
            if max_size is not None and total > max_size:
                raise TransportError(f"{url} is more than the {max_size} bytes allowed")
            if sink is not None:
                sink.write(chunk)
            else:
                parts.append(chunk)
        if declared is not None and declared.isdigit() and total != int(declared):
            raise self._urllib3.exceptions.ProtocolError("short body")
        return b"".join(parts)

    @staticmethod
    def _backoff(attempt: int) -> int:
        time.sleep(min(5.0, 0.1 * 2**attempt) * (0.5 + random.random()))
        return attempt + 1


def _is_pem(value: str) -> bool:
    return "-----BEGIN " in value


def _reason(exc: BaseException) -> str:
    reason = getattr(exc, "reason", None)
    return str(reason or exc) or type(exc).__name__
