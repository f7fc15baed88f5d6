"""Issue 6 through the service: remotes CRUD and ``POST …/sync`` (the pull runs in the
service's child process) from repositories made by the real ``ostree`` CLI, served by
a static server that misbehaves on demand (``tests.fault_server``), and from another
service instance.

Each service instance runs in this process (uvicorn in a thread, ``workers=1``) so
that its distributions are real HTTP for the child's pull and for ``ostree pull``.
What a version holds is checked from the outside: its served summary, and
``ostree pull`` + ``ostree fsck`` + ``ostree log`` of its distribution, compared with
ostree's own pull of the upstream.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn

from libpyostree.objects import ObjectType
from libpyostree.objects.summary import parse_summary
from libpyostree.pullplan import object_path
from service.app import create_app
from service.state import Settings
from tests.fault_server import (
    FaultServer,
    Source,
    fault_server,
    make_source,
    object_files,
    ref_files,
    tree,
)
from tests.ostree_cli import free_port, log_checksums, run_ostree
from tests.service_server import ApiClient

pytestmark = pytest.mark.ostree

_NAMES = itertools.count()


class Instance:
    """A service on 127.0.0.1 served by uvicorn from a thread of this process."""

    def __init__(self, data_dir: Path) -> None:
        app = create_app(Settings(data_dir, workers=1))
        port = free_port()
        config = uvicorn.Config(
            app, host="127.0.0.1", port=port, log_level="warning", lifespan="on"
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 60
        while not self.server.started:
            assert self.thread.is_alive(), "uvicorn exited"
            assert time.monotonic() < deadline, "uvicorn never started"
            time.sleep(0.02)
        token = (data_dir / "admin-token").read_text().strip()
        self.api = ApiClient(f"http://127.0.0.1:{port}", token)

    def close(self) -> None:
        self.api.close()
        self.server.should_exit = True
        self.thread.join(timeout=30)

    # -- helpers

    def repository(self, remote: dict[str, Any] | None = None) -> tuple[str, str]:
        """A new repository, its distribution's URL and (when given) a remote."""
        n = next(_NAMES)
        name = f"repo{n}"
        self.api.create_repository(name)
        self.api.create_distribution(f"dist{n}", f"dist{n}", name)
        if remote is not None:
            self.api.json("POST", "/api/v1/remotes", 201, json={"name": name, **remote})
        return name, self.api.content_url(f"dist{n}")

    def sync(self, repo: str, *, remote: str | None = None, mirror: bool = False) -> Any:
        body = {"remote": remote or repo, "mirror": mirror}
        href = self.api.json("POST", f"/api/v1/repositories/{repo}/sync", 202, json=body)["task"]
        return self.api.wait_task(href)

    def refs(self, repo: str) -> dict[str, str]:
        path = f"/api/v1/repositories/{repo}/versions/latest/refs"
        return {r["name"]: r["commit"] for r in self.api.results(path)}


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Instance]:
    instance = Instance(tmp_path_factory.mktemp("sync-service") / "data")
    try:
        yield instance
    finally:
        instance.close()


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Source:
    return make_source(tmp_path_factory.mktemp("sync-source"))


@pytest.fixture(scope="module")
def _upstream(source: Source) -> Iterator[FaultServer]:
    with fault_server(source.path) as state:
        yield state


@pytest.fixture
def upstream(_upstream: FaultServer) -> Iterator[FaultServer]:
    _upstream.clear()
    _upstream.hidden.clear()
    try:
        yield _upstream
    finally:
        _upstream.clear()
        _upstream.hidden.clear()


def completed(task: dict[str, Any]) -> dict[str, Any]:
    assert task["state"] == "completed", task
    return task


def ostree_mirror(url: str, dest: Path, *refs: str, depth: int = 0) -> Path:
    """``ostree pull --mirror`` of ``url`` into a new archive repository ``dest``."""
    run_ostree("init", f"--repo={dest}", "--mode=archive")
    run_ostree("remote", "add", f"--repo={dest}", "--no-gpg-verify", "origin", url)
    run_ostree("pull", f"--repo={dest}", "--mirror", f"--depth={depth}", "origin", *refs)
    return dest


def served_refs(url: str) -> dict[str, str]:
    summary = httpx.get(url + "summary", timeout=30)
    assert summary.status_code == 200
    return {r.name: str(r.checksum) for r in parse_summary(summary.content).refs}


# -- remotes ---------------------------------------------------------------------------


def test_remotes_crud(service: Instance) -> None:
    api = service.api
    base = {"name": "crud", "url": "https://example.com/repo/"}
    out = api.json("POST", "/api/v1/remotes", 201, json={**base, "password": "s3cret"})
    assert out["include_refs"] is None and out["exclude_refs"] is None
    assert out["depth"] == 0 and out["tls_validation"] is True
    assert out["password"] == "***"
    api.json("POST", "/api/v1/remotes", 409, json=base)
    for bad in (
        {"url": "ftp://example.com/"},
        {"depth": -2},
        {"depth": True},
        {"include_refs": "main"},
        {"include_refs": [1]},
        {"timeout_secs": 3},
    ):
        api.json("POST", "/api/v1/remotes", 400, json={**base, "name": "bad", **bad})
    patched = api.json(
        "PATCH",
        "/api/v1/remotes/crud",
        json={"include_refs": ["fedora/*"], "exclude_refs": ["*/testing"], "depth": -1},
    )
    assert patched["include_refs"] == ["fedora/*"] and patched["depth"] == -1
    assert patched["password"] == "***"
    assert api.json("GET", "/api/v1/remotes/crud") == patched
    assert "crud" in [r["name"] for r in api.results("/api/v1/remotes")]
    renamed = api.json("PATCH", "/api/v1/remotes/crud", json={"name": "crud2"})
    assert renamed["name"] == "crud2"
    api.json("GET", "/api/v1/remotes/crud", 404)
    api.json("DELETE", "/api/v1/remotes/crud2", 204)
    api.json("DELETE", "/api/v1/remotes/crud2", 404)
    repo, _url = service.repository()
    api.json("POST", f"/api/v1/repositories/{repo}/sync", 404, json={"remote": "crud2"})
    api.json("POST", f"/api/v1/repositories/{repo}/sync", 400, json={"remote": 3})


# -- syncing from a static server ------------------------------------------------------


@pytest.mark.parametrize(
    "case",
    [
        ({}, ["main", "meta", "rawhide", "stable"]),
        ({"include_refs": ["rawhide"]}, ["rawhide"]),
        ({"include_refs": ["*a*"], "exclude_refs": ["m*"]}, ["rawhide", "stable"]),
        ({"exclude_refs": ["stable"]}, ["main", "meta", "rawhide"]),
        ({"exclude_refs": ["*"]}, []),
    ],
    ids=["all", "include", "include-exclude", "exclude", "exclude-all"],
)
def test_sync_selection(
    service: Instance,
    source: Source,
    upstream: FaultServer,
    tmp_path: Path,
    case: tuple[dict[str, Any], list[str]],
) -> None:
    selection, expected = case
    repo, url = service.repository({"url": upstream.url, **selection})
    task = completed(service.sync(repo))
    # Selecting nothing into an empty repository changes nothing: no version.
    assert task["created_version"] == (1 if expected else None)
    assert task["result"]["refs"] == {r: source.refs[r] for r in expected}
    assert service.refs(repo) == {r: source.refs[r] for r in expected}
    # The summary is regenerated from what the version holds, even when that is nothing.
    assert served_refs(url) == {r: source.refs[r] for r in expected}
    # Only the selected refs were fetched (the pool may hold some from earlier tests).
    commits = set(upstream.objects_requested(".commit"))
    assert commits <= {object_path(source.refs[r], ObjectType.COMMIT) for r in expected}
    if expected:
        ours = ostree_mirror(url, tmp_path / "ours")
        theirs = ostree_mirror(upstream.url, tmp_path / "theirs", *expected)
        assert object_files(ours) == object_files(theirs)
        assert ref_files(ours) == {f"heads/{r}" for r in expected}
        run_ostree("fsck", f"--repo={ours}")
        # The version holds exactly those objects, no more.
        listed = service.api.results(
            f"/api/v1/repositories/{repo}/versions/1/objects", limit="10000"
        )
        suffixes = {t.name_str: t.archive_suffix for t in ObjectType}
        held = {
            f"{o['checksum'][:2]}/{o['checksum'][2:]}.{suffixes[o['type']]}": o["size"]
            for o in listed
        }
        assert held.keys() == object_files(theirs)
        # Rows made while the pull ran (sizes from the child) match the files.
        assert held == {p: (theirs / "objects" / p).stat().st_size for p in held}
    # Nothing changed upstream: no new version.
    again = completed(service.sync(repo))
    assert again["created_version"] is None
    assert service.api.latest_number(repo) == (1 if expected else 0)


def test_sync_mirror_of_nothing(service: Instance, source: Source, upstream: FaultServer) -> None:
    """Mirroring a selection of nothing over a version with content: a new version that
    holds nothing, with a valid (empty) summary."""
    repo, url = service.repository({"url": upstream.url, "include_refs": ["stable"]})
    completed(service.sync(repo))
    assert served_refs(url) == {"stable": source.refs["stable"]}
    service.api.json("PATCH", f"/api/v1/remotes/{repo}", json={"exclude_refs": ["*"]})
    assert completed(service.sync(repo))["created_version"] is None  # additive: keeps stable
    task = completed(service.sync(repo, mirror=True))
    assert task["created_version"] == 2
    assert service.refs(repo) == {}
    assert served_refs(url) == {}
    version = service.api.version(repo, 2)
    assert version["content_summary"]["present"]["commits"] == 0


@pytest.mark.parametrize("depth", [0, 2, -1])
def test_sync_depth(
    service: Instance, source: Source, upstream: FaultServer, tmp_path: Path, depth: int
) -> None:
    repo, url = service.repository({"url": upstream.url, "include_refs": ["main"], "depth": depth})
    completed(service.sync(repo))
    ours = ostree_mirror(url, tmp_path / "ours", depth=-1)
    theirs = ostree_mirror(upstream.url, tmp_path / "theirs", "main", depth=depth)
    history = source.history["main"]
    expected = history if depth < 0 else history[: depth + 1]
    assert log_checksums(run_ostree("log", f"--repo={ours}", "main")) == expected
    assert object_files(ours) == object_files(theirs)
    run_ostree("fsck", f"--repo={ours}")


def test_sync_without_summary(service: Instance, source: Source, upstream: FaultServer) -> None:
    upstream.hidden.add("summary")
    repo, url = service.repository({"url": upstream.url, "include_refs": ["main", "stable"]})
    completed(service.sync(repo))
    assert served_refs(url) == {r: source.refs[r] for r in ("main", "stable")}
    assert {"refs/heads/main", "refs/heads/stable"} <= set(upstream.requests)
    # Every ref (or a glob) needs the summary: a clear error, no version.
    everything, _ = service.repository({"url": upstream.url, "include_refs": ["m*"]})
    task = service.sync(everything)
    assert task["state"] == "failed"
    assert "no summary" in task["error"]["message"]
    assert service.api.latest_number(everything) == 0


# -- instance to instance ------------------------------------------------------------------


def test_instance_to_instance(
    service: Instance, source: Source, upstream: FaultServer, tmp_path: Path
) -> None:
    first, first_url = service.repository({"url": upstream.url, "depth": -1})
    completed(service.sync(first))
    second = Instance(tmp_path / "second")
    try:
        repo, url = second.repository({"url": first_url, "depth": -1})
        task = completed(second.sync(repo))
        assert task["created_version"] == 1
        assert second.refs(repo) == source.refs
        ours = ostree_mirror(url, tmp_path / "ours", depth=-1)
        theirs = ostree_mirror(upstream.url, tmp_path / "theirs", *source.refs, depth=-1)
        assert object_files(ours) == object_files(theirs)
        run_ostree("fsck", f"--repo={ours}")
        note = run_ostree(
            "show", f"--repo={ours}", "--print-detached-metadata-key=note", source.refs["meta"]
        )
        assert "detached, not signed" in note
        # Re-sync: nothing new, no version, nothing but discovery fetched.
        again = completed(second.sync(repo))
        assert again["created_version"] is None
        assert again["result"]["objects_fetched"] == 0
        assert second.api.latest_number(repo) == 1
    finally:
        second.close()


# -- an upstream that changes ----------------------------------------------------------------


def test_upstream_changes(service: Instance, tmp_path: Path) -> None:
    src = Source.create(tmp_path / "moving")
    src.commit("main", tree(1))
    src.commit("extra", tree(2))
    src.summary()
    with fault_server(src.path) as upstream:
        additive, add_url = service.repository({"url": upstream.url, "depth": 1})
        mirrored, mirror_url = service.repository({"url": upstream.url, "depth": 1})
        completed(service.sync(additive))
        completed(service.sync(mirrored, mirror=True))
        src.commit("main", tree(3))
        src.commit("main", tree(4))
        run_ostree("refs", f"--repo={src.path}", "--delete", "extra")
        src.summary()
        task = completed(service.sync(additive))
        assert task["created_version"] == 2
        # Additive: refs replaced by name, the old content kept.
        assert service.refs(additive) == {"main": src.refs["main"], "extra": src.refs["extra"]}
        task = completed(service.sync(mirrored, mirror=True))
        assert task["created_version"] == 2
        assert service.refs(mirrored) == {"main": src.refs["main"]}
        assert served_refs(mirror_url) == {"main": src.refs["main"]}
        for url, name in ((add_url, "add"), (mirror_url, "mirror")):
            ours = ostree_mirror(url, tmp_path / name, depth=-1)
            log = log_checksums(run_ostree("log", f"--repo={ours}", "main"))
            # depth 1: the new head and its parent; the additive version also keeps
            # the first head, so its history chains all the way.
            assert log == (src.history["main"] if name == "add" else src.history["main"][:2])
            run_ostree("fsck", f"--repo={ours}")
        for repo in (additive, mirrored):
            assert completed(service.sync(repo, mirror=repo == mirrored))["created_version"] is None


# -- faults ------------------------------------------------------------------------------------


_FRESH = itertools.count(100)


@pytest.fixture
def fresh(tmp_path: Path) -> Iterator[tuple[Source, FaultServer]]:
    """An upstream whose content the service's pool does not hold yet."""
    src = Source.create(tmp_path / "fresh")
    src.commit("main", tree(next(_FRESH), size=100_000))
    src.summary()
    with fault_server(src.path) as upstream:
        yield src, upstream


def main_file(source: Source) -> str:
    """The ``.filez`` of the file only the head of ``main`` has."""
    name = run_ostree("ls", f"--repo={source.path}", "main", "/usr/lib").split()[-1]
    line = run_ostree("ls", f"--repo={source.path}", "-C", "main", name).split()
    return object_path(line[4], ObjectType.FILE)


@pytest.mark.parametrize(
    "fault",
    ["corrupt-filez", "corrupt-commit", "html-ref", "500-forever", "404-filez"],
)
def test_sync_faults_fail_clearly(
    service: Instance, fresh: tuple[Source, FaultServer], fault: str
) -> None:
    source, upstream = fresh
    commit = object_path(source.refs["main"], ObjectType.COMMIT)
    expected = {
        "corrupt-filez": "Corrupted file object",
        "corrupt-commit": f"checksum expected={source.refs['main']}",
        "html-ref": "Invalid rev '<html>",
        "500-forever": "HTTP 500",
        "404-filez": "HTTP 404",
    }[fault]
    if fault == "corrupt-filez":
        upstream.add(main_file(source), "corrupt")
    elif fault == "corrupt-commit":
        upstream.add(commit, "corrupt")
    elif fault == "html-ref":
        upstream.hidden.add("summary")
        upstream.add("refs/heads/main", "body", body=b"<html><body>Hello</body></html>")
    elif fault == "500-forever":
        upstream.add(main_file(source), "status", status=500, body=b"oops")
    else:
        upstream.hidden.add(main_file(source))
    repo, url = service.repository({"url": upstream.url, "include_refs": ["main"]})
    task = service.sync(repo)
    assert task["state"] == "failed", task
    assert expected in task["error"]["message"]
    assert task["created_version"] is None
    assert service.api.latest_number(repo) == 0
    assert served_refs(url) == {}


@pytest.mark.parametrize("fault", ["500-then-ok", "dropped"])
def test_sync_faults_recovered(
    service: Instance, fresh: tuple[Source, FaultServer], tmp_path: Path, fault: str
) -> None:
    source, upstream = fresh
    victim = main_file(source)
    if fault == "500-then-ok":
        upstream.add("objects/*", "status", status=503, times=2)
        upstream.add(victim, "status", status=500, times=1)
    else:
        upstream.add(victim, "drop", after=5000, times=2)
    repo, url = service.repository({"url": upstream.url, "include_refs": ["main"]})
    completed(service.sync(repo))
    assert upstream.counts()[victim] >= 2
    ours = ostree_mirror(url, tmp_path / "ours")
    run_ostree("fsck", f"--repo={ours}")
    assert ref_files(ours) == {"heads/main"}
