"""Servers for the remote-option tests: HTTPS with a private CA, gates, a forward proxy.

:func:`make_pki` makes a throwaway CA and, signed by it, a server certificate for
``127.0.0.1`` (an IP subjectAltName) and a client certificate, with the ``openssl``
CLI (unencrypted EC keys: fast to make).

:func:`origin_server` serves a directory on a free ``127.0.0.1`` port over plain
HTTP, or over HTTPS with the :class:`ssl.SSLContext` given (the handshake happens in
the connection's thread, so a client that fails it does not stall the others).  It
records every request's path and headers, and can refuse requests: ``gate`` sees
the headers and returns the status to answer instead of the file (401 comes with a
``WWW-Authenticate: Basic`` challenge).

:func:`forward_proxy` is a plain HTTP forward proxy: it takes absolute-URI requests
(``GET http://host:port/path HTTP/1.1``, on keep-alive connections), forwards them
to the origin with :mod:`http.client` with a ``Via`` header, relays status, headers
and body, and records each request.
"""

from __future__ import annotations

import contextlib
import http.client
import http.server
import ssl
import subprocess
import threading
import urllib.parse
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from email.message import Message
from pathlib import Path
from typing import Any

VIA = "1.1 pyostree-test-proxy"

# -- certificates ------------------------------------------------------------------------

_CA_CONFIG = """\
[req]
distinguished_name = dn
x509_extensions = v3_ca
prompt = no
[dn]
CN = pyostree test CA
[v3_ca]
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
"""

_LEAF_EXT = """\
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = {usage}
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
{san}"""


@dataclass(frozen=True)
class Pki:
    """PEM files: a CA, a server certificate for 127.0.0.1, a client certificate."""

    ca_cert: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path


def _openssl(*args: str | Path) -> None:
    proc = subprocess.run(["openssl", *map(str, args)], check=False, capture_output=True, text=True)
    if proc.returncode != 0:
        raise AssertionError(f"openssl {' '.join(map(str, args))} failed:\n{proc.stderr}")


def _leaf(workdir: Path, name: str, *, usage: str, san: str, ca: Path, ca_key: Path) -> None:
    key, csr, ext = (workdir / f"{name}{suffix}" for suffix in ("-key.pem", ".csr", ".ext"))
    ext.write_text(_LEAF_EXT.format(usage=usage, san=san))
    _openssl("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", key)
    _openssl("req", "-new", "-key", key, "-subj", f"/CN=pyostree test {name}", "-out", csr)
    _openssl(
        "x509", "-req", "-in", csr, "-CA", ca, "-CAkey", ca_key, "-CAcreateserial",
        "-days", "2", "-sha256", "-extfile", ext, "-out", workdir / f"{name}.pem",
    )  # fmt: skip


def make_pki(workdir: Path) -> Pki:
    workdir.mkdir(parents=True, exist_ok=True)
    ca, ca_key, config = workdir / "ca.pem", workdir / "ca-key.pem", workdir / "ca.cnf"
    config.write_text(_CA_CONFIG)
    _openssl("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", ca_key)
    _openssl("req", "-x509", "-new", "-key", ca_key, "-config", config, "-days", "2", "-out", ca)
    san = "subjectAltName = IP:127.0.0.1\n"
    _leaf(workdir, "server", usage="serverAuth", san=san, ca=ca, ca_key=ca_key)
    _leaf(workdir, "client", usage="clientAuth", san="", ca=ca, ca_key=ca_key)
    return Pki(
        ca_cert=ca,
        server_cert=workdir / "server.pem",
        server_key=workdir / "server-key.pem",
        client_cert=workdir / "client.pem",
        client_key=workdir / "client-key.pem",
    )


def server_context(pki: Pki, *, require_client_cert: bool = False) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(pki.server_cert, pki.server_key)
    if require_client_cert:
        context.verify_mode = ssl.CERT_REQUIRED
        context.load_verify_locations(cafile=pki.ca_cert)
    return context


# -- the origin --------------------------------------------------------------------------

Gate = Callable[[Message], int | None]


class Origin(http.server.ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False

    def __init__(self, root: Path, tls: ssl.SSLContext | None, gate: Gate | None) -> None:
        self.root = root
        self.tls = tls
        self.gate = gate
        self.lock = threading.Lock()
        self.requests: list[tuple[str, Message]] = []
        """(path, headers) of every request, in order; path relative, no leading slash."""
        self.refused: list[str] = []
        super().__init__(("127.0.0.1", 0), _OriginHandler)
        scheme = "https" if tls is not None else "http"
        self.url = f"{scheme}://127.0.0.1:{self.server_address[1]}"

    def paths(self) -> list[str]:
        with self.lock:
            return [path for path, _ in self.requests]

    def header_values(self, name: str) -> list[str | None]:
        """``name``'s value in every request, in order (None where it was missing)."""
        with self.lock:
            return [headers.get(name) for _, headers in self.requests]

    def finish_request(self, request: Any, client_address: Any) -> None:
        if self.tls is None:
            super().finish_request(request, client_address)
            return
        with self.tls.wrap_socket(request, server_side=True) as conn:
            super().finish_request(conn, client_address)

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # failed handshakes and clients hanging up are part of the tests


class _OriginHandler(http.server.SimpleHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: Origin

    def __init__(self, request: Any, client_address: Any, server: Origin) -> None:
        super().__init__(request, client_address, server, directory=str(server.root))

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        state = self.server
        path = urllib.parse.unquote(urllib.parse.urlsplit(self.path).path).lstrip("/")
        with state.lock:
            state.requests.append((path, self.headers))
        status = state.gate(self.headers) if state.gate is not None else None
        if status is None:
            super().do_GET()
            return
        with state.lock:
            state.refused.append(path)
        body = f"{status} refused\n".encode()
        self.send_response(status)
        if status == 401:
            self.send_header("WWW-Authenticate", 'Basic realm="ostree"')
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@contextlib.contextmanager
def _running(server: http.server.ThreadingHTTPServer) -> Iterator[None]:
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.daemon = True
    thread.start()
    try:
        yield
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


@contextlib.contextmanager
def origin_server(
    root: Path, *, tls: ssl.SSLContext | None = None, gate: Gate | None = None
) -> Iterator[Origin]:
    """Serve ``root`` (over HTTPS with ``tls``) until the block ends."""
    server = Origin(root, tls, gate)
    with _running(server):
        yield server


# -- the proxy ---------------------------------------------------------------------------

_HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "content-length",  # set again for the relayed body
    }
)


class Proxy(http.server.ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.requests: list[str] = []
        """The request targets (absolute URIs) forwarded, in order."""
        self.rejected: list[str] = []
        """Request targets that were not absolute http:// URIs."""
        super().__init__(("127.0.0.1", 0), _ProxyHandler)
        self.url = f"http://127.0.0.1:{self.server_address[1]}"

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass


class _ProxyHandler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: Proxy

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _answer(self, status: int, headers: list[tuple[str, str]], body: bytes) -> None:
        self.send_response(status)
        for name, value in headers:
            if name.lower() not in _HOP_BY_HOP:
                self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        state = self.server
        target = urllib.parse.urlsplit(self.path)
        if target.scheme != "http" or not target.hostname:
            with state.lock:
                state.rejected.append(self.path)
            self._answer(400, [], b"a forward proxy: absolute http:// URIs only\n")
            return
        with state.lock:
            state.requests.append(self.path)
        headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP_BY_HOP}
        headers["Via"] = VIA
        path = target.path or "/"
        if target.query:
            path += "?" + target.query
        conn = http.client.HTTPConnection(target.hostname, target.port or 80, timeout=30)
        try:
            conn.request("GET", path, headers=headers)
            response = conn.getresponse()
            status, relayed, body = response.status, response.getheaders(), response.read()
        except (OSError, http.client.HTTPException) as exc:
            self._answer(502, [], f"proxy: {exc}\n".encode())
            return
        finally:
            conn.close()
        self._answer(status, relayed, body)


@contextlib.contextmanager
def forward_proxy() -> Iterator[Proxy]:
    """A forward HTTP proxy on a free 127.0.0.1 port until the block ends."""
    server = Proxy()
    with _running(server):
        yield server
