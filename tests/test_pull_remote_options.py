"""``libpyostree.pull`` honours every :class:`RemoteOptions` remote option.

Against servers in this process (``tests.tls_server``): HTTPS with a private CA made
at test time (``ca_cert`` as a path or PEM text, ``tls_validation=False``), a server
that requires a client certificate, basic auth, extra headers and a forward proxy.
Only the public API is used, so the tests hold for any correct transport.

Every successful pull of ``stable`` must give the source's ref and exactly the
objects ``ostree pull-local`` copies, and ``ostree fsck`` must be clean; every
refused pull raises a clear error and leaves no commit and no ref behind.
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Iterator
from email.message import Message
from pathlib import Path

import pytest

from libpyostree.errors import OstreeError
from libpyostree.http import RemoteOptions, TransportError
from libpyostree.pull import pull
from libpyostree.repo import Repo
from tests.fault_server import Source, make_source, object_files, ref_files
from tests.ostree_cli import free_port, run_ostree
from tests.test_pull import fsck, new_repo, untouched
from tests.tls_server import (
    VIA,
    Gate,
    Origin,
    Pki,
    forward_proxy,
    make_pki,
    origin_server,
    server_context,
)

pytestmark = pytest.mark.ostree

REF = "stable"
USER, PASSWORD = "puller", "s3cret:with colon"


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Source:
    return make_source(tmp_path_factory.mktemp("pull-source"))


@pytest.fixture(scope="module")
def expected(source: Source, tmp_path_factory: pytest.TempPathFactory) -> set[str]:
    """The object files ostree copies for ``stable`` (depth 0)."""
    repo = new_repo(tmp_path_factory.mktemp("pull-expected"))
    run_ostree("pull-local", f"--repo={repo}", "--depth=0", source.path, REF)
    return object_files(repo)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture
def https(source: Source, pki: Pki) -> Iterator[Origin]:
    with origin_server(source.path, tls=server_context(pki)) as origin:
        yield origin


@pytest.fixture
def mutual_tls(source: Source, pki: Pki) -> Iterator[Origin]:
    with origin_server(source.path, tls=server_context(pki, require_client_cert=True)) as origin:
        yield origin


def options(**kwargs: object) -> RemoteOptions:
    """``RemoteOptions`` with short timeouts: a refusal fails in well under a second."""
    return RemoteOptions(**{"timeout": 10.0, "retries": 1, **kwargs})  # type: ignore[arg-type]


Check = Callable[[str, RemoteOptions], None]


@pytest.fixture
def pulled(source: Source, expected: set[str], tmp_path: Path) -> Check:
    """Pull ``stable`` from a URL with options into a new repository: it must succeed
    like ostree's."""

    def check(url: str, opts: RemoteOptions) -> None:
        dest = new_repo(tmp_path)
        result = pull(Repo.open(dest), url, [REF], options=opts)
        assert result.refs == {REF: source.refs[REF]}
        assert ref_files(dest) == {f"remotes/origin/{REF}"}
        commit = run_ostree("rev-parse", f"--repo={dest}", f"origin:{REF}").strip()
        assert commit == source.refs[REF]
        assert object_files(dest) == expected
        fsck(dest)

    return check


def refused(dest: Path, url: str, opts: RemoteOptions) -> TransportError:
    """Pull ``stable`` from ``url`` with ``opts``; it must fail with a TransportError
    that names the server, having written nothing."""
    with pytest.raises(TransportError) as info:
        pull(Repo.open(dest), url, [REF], options=opts)
    assert url.split("//", 1)[1] in str(info.value)
    untouched(dest)
    return info.value


def pem(path: Path) -> str:
    return path.read_text()


# -- server certificates -----------------------------------------------------------------


@pytest.mark.parametrize("form", ["path", "pem"])
def test_https_private_ca(pulled: Check, pki: Pki, https: Origin, form: str) -> None:
    ca = str(pki.ca_cert) if form == "path" else pem(pki.ca_cert)
    assert https.url.startswith("https://")
    pulled(https.url, options(ca_cert=ca))
    assert "config" in https.paths()


def test_https_unknown_ca_refused(https: Origin, tmp_path: Path) -> None:
    """Without ``ca_cert`` the system's CAs are used: ours is not one of them."""
    error = refused(new_repo(tmp_path), https.url, options())
    assert "certificate" in str(error).lower()
    assert https.paths() == []  # no request got past the handshake


def test_https_other_ca_refused(https: Origin, tmp_path: Path) -> None:
    """``ca_cert`` is what is trusted: another CA's bundle does not vouch for the server."""
    other = make_pki(tmp_path / "other-pki")
    error = refused(new_repo(tmp_path), https.url, options(ca_cert=pem(other.ca_cert)))
    assert "certificate" in str(error).lower()
    assert https.paths() == []


def test_https_host_name_checked(pki: Pki, https: Origin, tmp_path: Path) -> None:
    """The certificate is for 127.0.0.1 only: ``localhost`` does not match it."""
    url = https.url.replace("127.0.0.1", "localhost")
    refused(new_repo(tmp_path), url, options(ca_cert=str(pki.ca_cert)))
    assert https.paths() == []


def test_https_without_validation(pulled: Check, https: Origin) -> None:
    pulled(https.url, options(tls_validation=False))
    # Not checking the host name either.
    url = https.url.replace("127.0.0.1", "localhost")
    pulled(url, options(tls_validation=False))


# -- client certificates -----------------------------------------------------------------


@pytest.mark.parametrize("form", ["path", "pem"])
def test_client_certificate(pulled: Check, pki: Pki, mutual_tls: Origin, form: str) -> None:
    def value(path: Path) -> str:
        return str(path) if form == "path" else pem(path)

    opts = options(
        ca_cert=value(pki.ca_cert),
        client_cert=value(pki.client_cert),
        client_key=value(pki.client_key),
    )
    pulled(mutual_tls.url, opts)
    assert "config" in mutual_tls.paths()


def test_client_certificate_missing_refused(pki: Pki, mutual_tls: Origin, tmp_path: Path) -> None:
    refused(new_repo(tmp_path), mutual_tls.url, options(ca_cert=str(pki.ca_cert)))
    assert mutual_tls.paths() == []


# -- basic auth --------------------------------------------------------------------------


def basic_auth(user: str, password: str) -> Gate:
    token = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()

    def gate(headers: Message) -> int | None:
        return None if headers.get("Authorization") == token else 401

    return gate


def test_basic_auth(pulled: Check, source: Source) -> None:
    with origin_server(source.path, gate=basic_auth(USER, PASSWORD)) as origin:
        pulled(origin.url, options(username=USER, password=PASSWORD))
        served = set(origin.paths()) - set(origin.refused)
        assert {"config", "summary"} <= served


@pytest.mark.parametrize(
    "credentials",
    [{"username": USER, "password": "wrong"}, {"username": "nobody"}, {}],
    ids=["wrong-password", "no-password", "none"],
)
def test_basic_auth_refused(source: Source, tmp_path: Path, credentials: dict[str, str]) -> None:
    with origin_server(source.path, gate=basic_auth(USER, PASSWORD)) as origin:
        error = refused(new_repo(tmp_path), origin.url, options(**credentials))
        assert "HTTP 401" in str(error)
        assert origin.paths() and set(origin.refused) == set(origin.paths())


# -- extra headers -----------------------------------------------------------------------


def token_gate(headers: Message) -> int | None:
    return None if headers.get_all("X-Token") == ["abc"] else 403


def test_extra_headers_on_every_request(pulled: Check, source: Source, expected: set[str]) -> None:
    with origin_server(source.path, gate=token_gate) as origin:
        pulled(origin.url, options(headers={"X-Token": "abc"}))
        assert len(origin.paths()) > len(expected)  # config, summary, ... and every object
        assert origin.header_values("X-Token") == ["abc"] * len(origin.paths())
        assert origin.refused == []


def test_extra_headers_missing_refused(source: Source, tmp_path: Path) -> None:
    dest = new_repo(tmp_path)
    with origin_server(source.path, gate=token_gate) as origin:
        # 403 is "not found" to ostree: the required config is missing.
        with pytest.raises(OstreeError, match="config"):
            pull(Repo.open(dest), origin.url, [REF], options=options(headers={"X-Token": "abd"}))
        assert origin.refused and set(origin.refused) == set(origin.paths())
    untouched(dest)


# -- proxy -------------------------------------------------------------------------------


def via_proxy(headers: Message) -> int | None:
    return None if headers.get("Via") == VIA else 403


def test_proxy(pulled: Check, source: Source, expected: set[str]) -> None:
    with origin_server(source.path, gate=via_proxy) as origin, forward_proxy() as proxy:
        pulled(origin.url, options(proxy_url=proxy.url))
        # Every request went through the proxy, as an absolute URI, and nothing else
        # reached the origin.
        assert proxy.rejected == []
        assert origin.refused == []
        assert sorted(proxy.requests) == sorted(f"{origin.url}/{path}" for path in origin.paths())
        assert len(proxy.requests) > len(expected)


def test_proxy_down_refused(source: Source, tmp_path: Path) -> None:
    """The proxy is not bypassed: when it does not answer, the pull fails."""
    with origin_server(source.path) as origin:
        dest = new_repo(tmp_path)
        with pytest.raises(TransportError):
            pull(
                Repo.open(dest),
                origin.url,
                [REF],
                options=options(proxy_url=f"http://127.0.0.1:{free_port()}"),
            )
        assert origin.paths() == []
    untouched(dest)


# -- all at once -------------------------------------------------------------------------


def test_every_option_at_once(pulled: Check, pki: Pki, mutual_tls: Origin) -> None:
    """HTTPS with a client certificate, basic auth and a header on the same pull."""
    auth = basic_auth(USER, PASSWORD)

    def gate(headers: Message) -> int | None:
        return auth(headers) or token_gate(headers)

    mutual_tls.gate = gate
    opts = options(
        ca_cert=pem(pki.ca_cert),
        client_cert=str(pki.client_cert),
        client_key=pem(pki.client_key),
        username=USER,
        password=PASSWORD,
        headers={"X-Token": "abc"},
    )
    pulled(mutual_tls.url, opts)
    assert mutual_tls.header_values("X-Token") == ["abc"] * len(mutual_tls.paths())
