"""End to end: a real ``pyostree serve`` (uvicorn subprocess) and real ``ostree`` clients.

Source repositories are made by the ``ostree`` CLI, tarred, imported through the REST
API and pulled back from distributions with ``ostree pull --mirror`` + ``ostree fsck``
+ ``ostree log``.  This replays Pulp's functional scenarios (pulp_ostree.md §6:
import-all, import of child commits #279/#288, a second archive with another ref
#277, version removal, filters) plus crash recovery (kill -9 during an import),
serialized imports and HTTP caching of ``/content``.

Most tests share one service (module scope) and use their own repositories;
the crash test runs its own.
"""

from __future__ import annotations

import contextlib
import hashlib
import random
import re
import sqlite3
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.archives import osbuild_tar_with_binary
from tests.ostree_cli import (
    BASE_TIME,
    iso,
    log_checksums,
    ostree_commit,
    ostree_result,
    require_ostree,
    run_ostree,
    write_file,
)
from tests.service_server import ApiClient, ServiceServer, running_service

pytestmark = pytest.mark.ostree

OWNER = ("--owner-uid=0", "--owner-gid=0")


# -- source repositories made by ostree ------------------------------------------------------


@dataclass
class Source:
    """An archive repository made by the ``ostree`` CLI in a temporary directory."""

    path: Path
    workdir: Path
    refs: dict[str, str] = field(default_factory=dict)
    commits: list[str] = field(default_factory=list)
    """Every commit made, oldest first."""

    @classmethod
    def create(cls, workdir: Path) -> Source:
        workdir.mkdir(parents=True)
        path = workdir / "repo"
        run_ostree("init", f"--repo={path}", "--mode=archive")
        return cls(path, workdir)

    def commit(
        self, ref: str, files: dict[str, bytes], *, ts: int, parent: str | None = None
    ) -> str:
        """Commit a tree of ``files`` (path → content) to ``ref`` at timestamp ``ts``."""
        tree = self.workdir / f"tree-{len(self.commits)}"
        tree.mkdir()
        for name, data in files.items():
            write_file(tree / name, data)
        args = ["-b", ref, "-s", f"{ref} {len(self.commits)}", f"--timestamp={iso(ts)}", *OWNER]
        if parent is not None:
            args.append(f"--parent={parent}")
        checksum = ostree_commit(self.path, *args, tree)
        self.refs[ref] = checksum
        self.commits.append(checksum)
        return checksum

    def objects(self) -> set[str]:
        """``XXrest.type`` of every file under ``objects/``."""
        return {p.parent.name + p.name for p in (self.path / "objects").glob("*/*") if p.is_file()}

    def objects_by_size(self, suffix: str) -> list[str]:
        """The objects of one type (``.filez``…), smallest first."""
        paths = (self.path / "objects").glob(f"*/*{suffix}")
        return [p.parent.name + p.name for p in sorted(paths, key=lambda p: p.stat().st_size)]

    def tar(self, name: str = "repo.tar") -> Path:
        """``tar -cf`` of the repository, as Pulp's tests do."""
        dest = self.workdir / name
        subprocess.run(
            ["tar", "-cf", str(dest), "-C", str(self.path), "."], check=True, timeout=300
        )
        return dest

    def log(self, ref: str) -> str:
        return run_ostree("log", f"--repo={self.path}", ref)


def tree(n: int, **extra: bytes) -> dict[str, bytes]:
    """A small tree; ``n`` changes one file, the rest is shared between variants."""
    files = {
        "README": b"a small tree\n",
        "etc/version": f"{n}\n".encode(),
        "usr/bin/tool": b"#!/bin/sh\necho tool\n",
        "usr/share/data": bytes(range(256)) * 8,
    }
    files.update({k.replace("__", "/"): v for k, v in extra.items()})
    return files


def api_objects(api: ApiClient, repository: str, version: int | str = "latest") -> set[str]:
    """A version's objects as ``XXrest.type``, like :meth:`Source.objects`."""
    items = api.results(
        f"/api/v1/repositories/{repository}/versions/{version}/objects", limit="10000"
    )
    suffix = {"file": "filez"}  # the API names types as ostree does; archives say filez
    return {f"{o['checksum']}.{suffix.get(o['type'], o['type'])}" for o in items}


def api_refs(
    api: ApiClient, repository: str, version: int | str = "latest", **params: str
) -> dict[str, str]:
    items = api.results(f"/api/v1/repositories/{repository}/versions/{version}/refs", **params)
    return {r["name"]: r["commit"] for r in items}


# -- ostree clients -------------------------------------------------------------------------


def client_repo(workdir: Path, url: str) -> Path:
    """A fresh archive repository with remote ``origin`` = ``url`` (no GPG)."""
    workdir.mkdir(parents=True)
    repo = workdir / "repo"
    run_ostree("init", f"--repo={repo}", "--mode=archive")
    run_ostree("remote", "add", f"--repo={repo}", "--no-gpg-verify", "origin", url)
    return repo


def pull_and_check(workdir: Path, url: str, refs: dict[str, str], depth: int = -1) -> Path:
    """Pulp's ``validate_repo_integrity``: ``ostree pull --mirror --depth`` of each ref
    into a fresh repository, then ``ostree fsck``; each ref must land on its commit."""
    repo = client_repo(workdir, url)
    for ref in refs:
        run_ostree("pull", f"--repo={repo}", "--mirror", f"--depth={depth}", f"origin:{ref}")
    out = run_ostree("fsck", f"--repo={repo}")
    assert "no errors found" in out, out
    for ref, commit in refs.items():
        assert run_ostree("rev-parse", f"--repo={repo}", ref).strip() == commit
    return repo


def remote_refs(workdir: Path, url: str) -> list[str]:
    repo = client_repo(workdir, url)
    return sorted(run_ostree("remote", "refs", f"--repo={repo}", "origin").split())


def object_url(name: str) -> str:
    """``objects/XX/rest.type`` for ``XXrest.type``."""
    return f"objects/{name[:2]}/{name[2:]}"


# -- fixtures --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServiceServer]:
    require_ostree()
    with running_service(tmp_path_factory.mktemp("service") / "data") as srv:
        yield srv


@pytest.fixture
def api(server: ServiceServer) -> ApiClient:
    return server.client


@dataclass
class Simple:
    """Repository ``simple``: ``foo`` (2 commits) and ``bar`` (1 commit, the tree of
    ``foo``'s head), imported whole as version 1 and served at ``/content/simple/``."""

    source: Source
    tar: Path
    url: str
    task: dict[str, Any]


@pytest.fixture(scope="module")
def simple(server: ServiceServer, tmp_path_factory: pytest.TempPathFactory) -> Simple:
    api = server.client
    src = Source.create(tmp_path_factory.mktemp("simple") / "src")
    # One file larger than what the server sends in one piece (it streams those).
    large = random.Random(7).randbytes(3 << 20)
    src.commit("foo", tree(1, large=large), ts=BASE_TIME)
    src.commit("foo", tree(2), ts=BASE_TIME + 60, parent=src.refs["foo"])
    src.commit("bar", tree(2), ts=BASE_TIME + 120)
    tar = src.tar()
    api.create_repository("simple")
    task = api.import_archive("simple", tar)
    api.create_distribution("simple", "simple", "simple")
    return Simple(src, tar, api.content_url("simple"), task)


# -- import-all ------------------------------------------------------------------------------


def test_import_all_counts_and_pull(api: ApiClient, simple: Simple, tmp_path: Path) -> None:
    """Pulp ``test_simple_tarball_import``: exact counts, then every ref pulls whole."""
    src = simple.source
    assert simple.task["created_version"] == 1
    assert simple.task["repository"] == "simple"
    version = api.version("simple", 1)
    expected_objects = src.objects()
    # compute_delta is on by default: foo's head gets a delta from its parent.
    counts = {"refs": 2, "commits": 3, "objects": len(expected_objects), "deltas": 1}
    zero = dict.fromkeys(counts, 0)
    assert version["content_summary"] == {"added": counts, "removed": zero, "present": counts}
    assert api.latest_number("simple") == 1
    # The objects are exactly the files ostree wrote (commits, dirtrees, dirmetas, files).
    assert api_objects(api, "simple", 1) == expected_objects
    assert api_refs(api, "simple", 1) == src.refs
    commits = api.results("/api/v1/repositories/simple/versions/1/commits")
    assert sorted(c["checksum"] for c in commits) == sorted(src.commits)

    assert remote_refs(tmp_path / "refs", simple.url) == ["origin:bar", "origin:foo"]
    for ref in ("foo", "bar"):
        pulled = pull_and_check(tmp_path / ref, simple.url, {ref: src.refs[ref]})
        assert run_ostree("log", f"--repo={pulled}", ref) == src.log(ref)
    # A mirror of both refs: the same objects as the source, nothing more.
    both = pull_and_check(tmp_path / "both", simple.url, src.refs)
    assert Source(both, tmp_path).objects() == expected_objects


def test_reimport_changes_nothing(api: ApiClient, simple: Simple) -> None:
    """An import that changes nothing completes without a new version."""
    for ref in (None, "foo"):
        task = api.import_archive("simple", simple.tar, ref=ref)
        assert task["state"] == "completed"
        assert task["created_version"] is None
        assert api.latest_number("simple") == 1
    assert [v["number"] for v in api.versions("simple")] == [1, 0]


def test_import_checks_and_refusals(api: ApiClient, simple: Simple) -> None:
    """``?sha256=`` is checked; a damaged archive fails its task; neither makes a version."""
    digest = hashlib.sha256(simple.tar.read_bytes()).hexdigest()
    task = api.run_task(api.submit_import("simple", simple.tar, sha256=digest))
    assert task["created_version"] is None
    bad = api.wait_task(api.submit_import("simple", simple.tar, sha256="0" * 64))
    assert bad["state"] == "failed", bad
    assert "sha256" in bad["error"]["message"], bad
    damaged = api.wait_task(api.submit_import("simple", simple.tar.read_bytes()[:-20000]))
    assert damaged["state"] == "failed", damaged
    garbage = api.wait_task(api.submit_import("simple", b"not an archive\n" * 1000))
    assert garbage["state"] == "failed", garbage
    assert api.latest_number("simple") == 1
    assert api.request("POST", "/api/v1/repositories/nope/import", content=b"x").status_code == 404
    empty = api.request("POST", "/api/v1/repositories/simple/import", content=b"")
    assert empty.status_code == 400, empty.text


def test_osbuild_commit_tar(api: ApiClient, tmp_path: Path) -> None:
    """osbuild's ``commit.tar`` (``compose.json`` + ``repo/``) imports and pulls."""
    src = Source.create(tmp_path / "src")
    src.commit("fedora/x86_64/iot", tree(7), ts=BASE_TIME)
    tar = osbuild_tar_with_binary(src.path, tmp_path / "commit.tar", "fedora/x86_64/iot", tmp_path)
    api.create_repository("osbuild")
    assert api.import_archive("osbuild", tar)["created_version"] == 1
    assert api_refs(api, "osbuild") == src.refs
    api.create_distribution("osbuild", "osbuild/iot", "osbuild")
    pulled = pull_and_check(tmp_path / "pull", api.content_url("osbuild/iot"), src.refs)
    assert run_ostree("log", f"--repo={pulled}", "fedora/x86_64/iot") == src.log(
        "fedora/x86_64/iot"
    )


def test_second_archive_keeps_other_refs(api: ApiClient, tmp_path: Path) -> None:
    """pulp_ostree #277 and #279: import-all of ref ``first``, then of an archive holding
    only ref ``second``: the summary lists both and both pull; then import-all of an
    archive holding only a child commit of ``first`` moves ``first``."""
    first = Source.create(tmp_path / "first")
    first.commit("first", tree(1), ts=BASE_TIME)
    second = Source.create(tmp_path / "second")
    second.commit("second", tree(2, extra=b"second\n"), ts=BASE_TIME + 60)
    api.create_repository("two")
    api.create_distribution("two", "two", "two")
    url = api.content_url("two")
    assert api.import_archive("two", first.tar())["created_version"] == 1
    assert api.import_archive("two", second.tar())["created_version"] == 2
    refs = {**first.refs, **second.refs}
    assert api_refs(api, "two") == refs
    content = api.version("two", 2)["content_summary"]
    assert content["added"]["refs"] == 1 and content["removed"]["refs"] == 0
    assert content["present"]["refs"] == 2 and content["present"]["commits"] == 2

    assert remote_refs(tmp_path / "refs", url) == ["origin:first", "origin:second"]
    pull_and_check(tmp_path / "pull", url, refs)
    remote = client_repo(tmp_path / "remote-summary", url)
    view = run_ostree("remote", "summary", f"--repo={remote}", "origin")
    assert all(f"* {ref}" in view for ref in refs), view
    # A mirror of everything the summary lists (no refs named) gets both, and the summary.
    run_ostree("pull", f"--repo={remote}", "--mirror", "--depth=-1", "origin")
    assert run_ostree("refs", f"--repo={remote}").split() == sorted(refs)
    view = run_ostree("summary", f"--repo={remote}", "--view")
    assert all(f"* {ref}" in view for ref in refs), view

    # #279: the child commit alone, imported with import-all (no ?ref=).
    child = Source.create(tmp_path / "child")
    head = child.commit("first", tree(3), ts=BASE_TIME + 120, parent=first.refs["first"])
    task = api.import_archive("two", child.tar())
    assert task["created_version"] == 3
    assert api_refs(api, "two") == {"first": head, "second": second.refs["second"]}
    pulled = pull_and_check(tmp_path / "pull-child", url, {"first": head})
    assert log_checksums(run_ostree("log", f"--repo={pulled}", "first")) == [
        head,
        first.refs["first"],
    ]


# -- child imports, version removal ----------------------------------------------------------


@dataclass
class Chain:
    """Repository ``chain``: ``foo`` with 1 commit (v1), +1 child (v2), +5 children (v3)."""

    commits: list[str]
    objects: list[set[str]]
    """The objects of versions 1, 2, 3."""
    log: str
    url: str


@pytest.fixture(scope="module")
def chain(server: ServiceServer, tmp_path_factory: pytest.TempPathFactory) -> Chain:
    api = server.client
    work = tmp_path_factory.mktemp("chain")
    api.create_repository("chain")
    api.create_distribution("chain", "chain/latest", "chain")
    base = Source.create(work / "base")
    base.commit("foo", tree(0), ts=BASE_TIME)
    assert api.import_archive("chain", base.tar())["created_version"] == 1
    commits = list(base.commits)
    objects = [base.objects()]
    # Each child archive is made in a FRESH repository: it holds only the new commits
    # (and the objects of their trees), whose oldest parent is the service's head.
    for step, count in enumerate((1, 5), start=2):
        src = Source.create(work / f"children-{count}")
        for i in range(count):
            src.commit(
                "foo",
                tree(len(commits), **{f"step{step}__file{i}": f"{step}.{i}\n".encode()}),
                ts=BASE_TIME + 60 * len(commits),
                parent=commits[-1],
            )
            commits.append(src.commits[-1])
        assert api.import_archive("chain", src.tar(), ref="foo")["created_version"] == step
        objects.append(objects[-1] | src.objects())
        log = src.log("foo")
    return Chain(commits, objects, log, api.content_url("chain/latest"))


def test_child_imports(api: ApiClient, chain: Chain, tmp_path: Path) -> None:
    """pulp_ostree ``test_single_import_commit[1]``/``[5]`` (#288): each child import makes
    one version that moves ``foo``; the whole chain pulls with ``--depth=-1``."""
    versions = {v["number"]: v["content_summary"] for v in api.versions("chain")}
    assert versions[1]["present"] == {
        "refs": 1,
        "commits": 1,
        "objects": len(chain.objects[0]),
        "deltas": 0,
    }
    for number, new in ((2, 1), (3, 5)):
        added, removed = versions[number]["added"], versions[number]["removed"]
        assert added["commits"] == new and removed["commits"] == 0
        assert added["refs"] == 1 and removed["refs"] == 1
        assert added["objects"] == len(chain.objects[number - 1] - chain.objects[number - 2])
        assert removed["objects"] == 0
    assert [versions[n]["present"]["commits"] for n in (1, 2, 3)] == [1, 2, 7]
    for number in (1, 2, 3):
        assert api_objects(api, "chain", number) == chain.objects[number - 1]
    assert api_refs(api, "chain", 2) == {"foo": chain.commits[1]}
    assert api_refs(api, "chain") == {"foo": chain.commits[-1]}

    # The parent chain, newest first, through the API.
    history = api.results("/api/v1/repositories/chain/versions/latest/commits", ref="foo")
    assert [c["checksum"] for c in history] == chain.commits[::-1]
    assert [c["parent"] for c in history] == [*chain.commits[-2::-1], None]

    pulled = pull_and_check(tmp_path / "pull", chain.url, {"foo": chain.commits[-1]})
    log = run_ostree("log", f"--repo={pulled}", "foo")
    assert log_checksums(log) == chain.commits[::-1]
    # The newest 6 commits print exactly as in the repository that made them.
    assert log.startswith(chain.log.split("<< History beyond this commit not fetched >>")[0])


def test_child_import_must_extend_head(api: ApiClient, chain: Chain, tmp_path: Path) -> None:
    """A ``?ref=`` import whose chain does not start at the head is refused."""
    src = Source.create(tmp_path / "stale")
    src.commit("foo", tree(99), ts=BASE_TIME + 9999, parent=chain.commits[0])
    latest = api.latest_number("chain")
    task = api.wait_task(api.submit_import("chain", src.tar(), ref="foo"))
    assert task["state"] == "failed"
    assert task["created_version"] is None
    assert chain.commits[-1] in task["error"]["message"]
    assert api.latest_number("chain") == latest
    assert api_refs(api, "chain") == {"foo": chain.commits[-1]}


def test_delete_versions(api: ApiClient, chain: Chain, tmp_path: Path) -> None:
    """pulp_ostree ``test_version_removal``: deleted versions are 404; the others keep
    exactly their content; a distribution pinned to a deleted version serves nothing."""
    api.create_distribution("chain-v1", "chain/v1", "chain", version=1)
    pinned = api.content_url("chain/v1")
    assert api.get("/content/chain/v1/summary").status_code == 200
    pull_and_check(tmp_path / "v1", pinned, {"foo": chain.commits[0]})

    latest = api.latest_number("chain")
    before = api.version("chain", latest)
    before_objects = api_objects(api, "chain", latest)
    for number in (1, 2):
        task = api.run_task(
            api.json("DELETE", f"/api/v1/repositories/chain/versions/{number}", 202)["task"]
        )
        assert task["created_version"] is None
        assert api.get(f"/api/v1/repositories/chain/versions/{number}").status_code == 404
    assert [v["number"] for v in api.versions("chain")] == [latest, 0]
    assert api.version("chain", latest) == before
    assert api_objects(api, "chain", latest) == before_objects
    assert api.get("/api/v1/repositories/chain/versions/1/refs").status_code == 404

    resp = api.get("/content/chain/v1/summary")
    assert resp.status_code == 404
    assert api.get("/content/chain/v1/refs/heads/foo").status_code == 404
    repo = client_repo(tmp_path / "v1-gone", pinned)
    proc = ostree_result("pull", f"--repo={repo}", "--mirror", "origin:foo")
    assert proc.returncode != 0
    assert ostree_result("rev-parse", f"--repo={repo}", "foo").returncode != 0

    pulled = pull_and_check(tmp_path / "latest", chain.url, {"foo": chain.commits[-1]})
    assert log_checksums(run_ostree("log", f"--repo={pulled}", "foo")) == chain.commits[::-1]
    # Deleting a version that is gone is a 404.
    assert api.request("DELETE", "/api/v1/repositories/chain/versions/1").status_code == 404


def test_delete_latest_version(api: ApiClient, tmp_path: Path) -> None:
    """Deleting the latest version makes the one before it the latest again, exactly as
    it was (the ref moves back, served and pulled); numbers are never reused; the
    only version left cannot be deleted."""
    base = Source.create(tmp_path / "base")
    c1 = base.commit("foo", tree(31), ts=BASE_TIME)
    child = Source.create(tmp_path / "child")
    c2 = child.commit("foo", tree(32), ts=BASE_TIME + 60, parent=c1)
    api.create_repository("rollback")
    api.create_distribution("rollback", "rollback", "rollback")
    url = api.content_url("rollback")
    api.import_archive("rollback", base.tar())
    assert api.import_archive("rollback", child.tar(), ref="foo")["created_version"] == 2
    pull_and_check(tmp_path / "pull-2", url, {"foo": c2})
    v1 = api.version("rollback", 1)

    api.run_task(api.json("DELETE", "/api/v1/repositories/rollback/versions/2", 202)["task"])
    assert [v["number"] for v in api.versions("rollback")] == [1, 0]
    assert api.version("rollback") == v1
    assert api_refs(api, "rollback") == {"foo": c1}
    assert api_objects(api, "rollback") == base.objects()
    assert api.get("/content/rollback/refs/heads/foo").text == c1 + "\n"
    assert api.get(f"/content/rollback/{object_url(c2 + '.commit')}").status_code == 404
    pulled = pull_and_check(tmp_path / "pull-1", url, {"foo": c1})
    assert run_ostree("log", f"--repo={pulled}", "foo") == base.log("foo")

    assert api.import_archive("rollback", child.tar(), ref="foo")["created_version"] == 3
    assert api.version("rollback")["content_summary"]["added"]["commits"] == 1
    pulled = pull_and_check(tmp_path / "pull-3", url, {"foo": c2})
    assert log_checksums(run_ostree("log", f"--repo={pulled}", "foo")) == [c2, c1]

    for number in (0, 1):
        api.run_task(
            api.json("DELETE", f"/api/v1/repositories/rollback/versions/{number}", 202)["task"]
        )
    resp = api.request("DELETE", "/api/v1/repositories/rollback/versions/3")
    assert resp.status_code == 409, resp.text
    assert resp.json()["error"]["code"] == "conflict"
    assert api_refs(api, "rollback") == {"foo": c2}
    assert api_objects(api, "rollback") == base.objects() | child.objects()
    pull_and_check(tmp_path / "pull-last", url, {"foo": c2})


# -- filters, distribution scoping -----------------------------------------------------------


def test_ref_and_commit_filters(api: ApiClient, simple: Simple) -> None:
    """pulp_ostree ``test_filter_refs`` / ``test_filter_commits``, and more."""
    refs = simple.source.refs
    path = "/api/v1/repositories/simple/versions/latest"
    assert api_refs(api, "simple", name="foo") == {"foo": refs["foo"]}
    assert api_refs(api, "simple", name="nope") == {}
    assert api_refs(api, "simple", name_startswith="ba") == {"bar": refs["bar"]}
    assert api_refs(api, "simple", name_startswith="") == refs
    assert api_refs(api, "simple", name_startswith="x") == {}
    assert api_refs(api, "simple", commit=refs["bar"]) == {"bar": refs["bar"]}
    assert api_refs(api, "simple", commit=refs["foo"].upper()) == {"foo": refs["foo"]}
    assert api_refs(api, "simple", commit="0" * 64) == {}

    foo1, foo2, bar = simple.source.commits
    one = api.results(f"{path}/commits", checksum=bar)
    assert [c["checksum"] for c in one] == [bar]
    assert one[0]["subject"] == "bar 2" and one[0]["parent"] is None
    assert one[0]["timestamp"] == BASE_TIME + 120
    assert api.results(f"{path}/commits", checksum="0" * 64) == []
    assert [c["checksum"] for c in api.results(f"{path}/commits", ref="foo")] == [foo2, foo1]
    assert [c["checksum"] for c in api.results(f"{path}/commits", ref="bar")] == [bar]
    assert api.results(f"{path}/commits", ref="nope") == []
    # Both filters: the commits of the ref's history with that checksum.
    for checksum in (foo2, foo1):
        both = api.results(f"{path}/commits", ref="foo", checksum=checksum)
        assert [c["checksum"] for c in both] == [checksum]
    assert api.results(f"{path}/commits", ref="bar", checksum=foo1) == []
    # Filters on another version see that version.
    assert api_refs(api, "simple", 0) == {}


def test_distribution_serves_only_its_version(
    api: ApiClient, simple: Simple, tmp_path: Path
) -> None:
    """A ref not in the served version does not pull; another repository's object is a
    404 through this distribution (but a 200 through its own)."""
    other = Source.create(tmp_path / "other")
    commit = other.commit("other", tree(5, only=b"other\n"), ts=BASE_TIME + 300)
    api.create_repository("other")
    api.import_archive("other", other.tar())
    api.create_distribution("other", "other", "other")

    repo = client_repo(tmp_path / "client", simple.url)
    for ref in ("other", "nope"):
        proc = ostree_result("pull", f"--repo={repo}", "--mirror", f"origin:{ref}")
        assert proc.returncode != 0, proc.stdout
    assert api.get("/content/simple/refs/heads/other").status_code == 404
    assert api.get("/content/other/refs/heads/other").text == commit + "\n"

    only_other = other.objects() - simple.source.objects()
    assert f"{commit}.commit" in only_other
    for name in sorted(only_other):
        assert api.get(f"/content/simple/{object_url(name)}").status_code == 404, name
        assert api.get(f"/content/other/{object_url(name)}").status_code == 200, name
    # Objects both repositories hold are served by both.
    shared = other.objects() & simple.source.objects()
    assert shared
    for name in sorted(shared):
        assert api.get(f"/content/simple/{object_url(name)}").status_code == 200, name
    assert api.get("/content/nowhere/summary").status_code == 404


def test_http_caching(api: ApiClient, simple: Simple) -> None:
    """HEAD, strong ETags with If-None-Match → 304, and Cache-Control: objects are
    immutable, the summary, config and refs are short-lived."""
    http = api.http
    head_commit = simple.source.refs["foo"]
    paths = {
        "summary": False,
        "config": False,
        "refs/heads/foo": False,
        object_url(f"{head_commit}.commit"): True,
    }
    files = simple.source.objects_by_size(".filez")
    paths[object_url(files[0])] = True  # the smallest
    paths[object_url(files[-1])] = True  # the large one: streamed
    for rel, immutable in paths.items():
        url = f"/content/simple/{rel}"
        got = http.get(url, headers={"Authorization": ""})
        assert got.status_code == 200, rel
        etag = got.headers["etag"]
        assert re.fullmatch(r'"[^"]+"', etag), etag
        cache = got.headers["cache-control"]
        if immutable:
            assert "immutable" in cache and "max-age=31536000" in cache, cache
            assert got.content == (simple.source.path / rel).read_bytes()
        else:
            assert "immutable" not in cache, cache
            age = re.search(r"max-age=(\d+)", cache)
            assert age is not None and int(age.group(1)) <= 300, cache
        assert int(got.headers["content-length"]) == len(got.content)

        head = http.head(url)
        assert head.status_code == 200 and head.content == b""
        assert head.headers["etag"] == etag
        assert head.headers["content-length"] == got.headers["content-length"]
        assert head.headers["cache-control"] == cache

        again = http.get(url, headers={"If-None-Match": etag})
        assert again.status_code == 304 and again.content == b"", rel
        assert again.headers["etag"] == etag
        assert http.head(url, headers={"If-None-Match": etag}).status_code == 304
        assert http.get(url, headers={"If-None-Match": '"other"'}).status_code == 200
        assert http.get(url, headers={"If-None-Match": f'"x", {etag}'}).status_code == 304
    assert http.get("/content/simple/refs/heads/foo").text == head_commit + "\n"
    assert b"mode=archive" in http.get("/content/simple/config").content
    assert http.head("/content/simple/refs/heads/nope").status_code == 404
    assert http.head(f"/content/simple/objects/00/{'0' * 62}.commit").status_code == 404
    assert http.post("/content/simple/summary").status_code == 405


def test_api_needs_token(server: ServiceServer, api: ApiClient) -> None:
    assert httpx.get(f"{server.url}/api/v1/status").status_code == 200
    assert httpx.get(f"{server.url}/api/v1/repositories").status_code == 401
    bad = {"Authorization": "Bearer not-a-token"}
    assert httpx.get(f"{server.url}/api/v1/repositories", headers=bad).status_code == 401
    assert api.get("/api/v1/repositories").status_code == 200


# -- reliability -----------------------------------------------------------------------------


def test_concurrent_imports_are_serialized(api: ApiClient, tmp_path: Path) -> None:
    """Two imports into one repository submitted at once both complete, as consecutive
    versions; the second builds on the first (neither loses the other's ref)."""
    sources = []
    for name in ("alpha", "beta"):
        src = Source.create(tmp_path / name)
        src.commit(name, tree(11, **{name: name.encode() * 1000}), ts=BASE_TIME)
        sources.append(src)
    tars = [src.tar() for src in sources]
    api.create_repository("concurrent")
    hrefs: list[str] = []
    errors: list[BaseException] = []
    barrier = threading.Barrier(len(tars))

    def submit(tar: Path) -> None:
        try:
            barrier.wait(timeout=30)
            hrefs.append(api.submit_import("concurrent", tar))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=submit, args=(tar,)) for tar in tars]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors, errors
    tasks = [api.run_task(href) for href in hrefs]
    assert sorted(t["created_version"] for t in tasks) == [1, 2]
    first, second = sorted(tasks, key=lambda t: t["created_version"])
    refs = {**sources[0].refs, **sources[1].refs}
    assert api_refs(api, "concurrent") == refs
    one = api_refs(api, "concurrent", 1)
    assert len(one) == 1 and one.items() <= refs.items()
    content = api.version("concurrent", 2)["content_summary"]
    assert content["added"]["refs"] == 1 and content["present"]["refs"] == 2
    assert second["state"] == first["state"] == "completed"


def big_tree(root: Path, files: int) -> None:
    """``files`` small random (incompressible) files in 50 directories; seeded."""
    rnd = random.Random(20240601)
    for i in range(files):
        d = root / f"d{i % 50:02d}"
        if i < 50:
            d.mkdir(parents=True)
        (d / f"f{i:05d}").write_bytes(rnd.randbytes(512 + rnd.randrange(1024)))


#: Enough files that an import runs for a while (it is frozen before it can finish).
BIG_FILES = 2000


@contextlib.contextmanager
def writers_frozen(database: Path) -> Iterator[sqlite3.Connection]:
    """Hold SQLite's write lock on the service's database: its tasks can still read and
    write pool files, but block at their next database write (progress, or the
    transaction that would create a version) until the lock is released."""
    conn = sqlite3.connect(database, timeout=60, isolation_level=None)
    try:
        conn.execute("BEGIN IMMEDIATE")
        yield conn
        conn.execute("ROLLBACK")
    finally:
        conn.close()


def test_kill_during_import(tmp_path: Path) -> None:
    """kill -9 while an import runs; after a restart the task is failed, no partial
    version exists, every version still pulls and fsck-verifies, a re-import works."""
    require_ostree()
    small = Source.create(tmp_path / "small")
    small.commit("small", tree(1), ts=BASE_TIME)
    big = Source.create(tmp_path / "big")
    big_root = tmp_path / "big-tree"
    big_tree(big_root, BIG_FILES)
    big_commit = ostree_commit(
        big.path, "-b", "big", "-s", "big", f"--timestamp={iso(BASE_TIME)}", *OWNER, big_root
    )
    big_tar = big.tar()
    with running_service(tmp_path / "data") as srv:
        api = srv.client
        api.create_repository("crash")
        api.create_distribution("crash", "crash", "crash")
        assert api.import_archive("crash", small.tar())["created_version"] == 1
        href = api.submit_import("crash", big_tar)
        task_id = href.rsplit("/", 1)[1]
        while (state := api.task(href)["state"]) == "waiting":
            time.sleep(0.005)
        assert state == "running", api.task(href)
        # Freeze the service's database writes, then make sure the import has not
        # finished: from here on it cannot, so the kill lands while it runs.
        with writers_frozen(srv.data_dir / "pyostree.db") as db:
            row = db.execute("SELECT state FROM tasks WHERE id = ?", (task_id,)).fetchone()
            if row[0] != "running":
                pytest.fail(f"the import finished before the kill ({row[0]}): raise BIG_FILES")
            srv.kill()

        api = srv.start()
        task = api.task(href)
        assert task["state"] == "failed", task
        assert task["error"]["code"] == "interrupted", task
        assert task["created_version"] is None
        assert api.latest_number("crash") == 1
        assert [v["number"] for v in api.versions("crash")] == [1, 0]
        assert api_refs(api, "crash") == small.refs
        assert api_objects(api, "crash") == small.objects()
        assert list((srv.data_dir / "uploads").iterdir()) == []
        url = api.content_url("crash")
        pulled = pull_and_check(tmp_path / "pull-1", url, small.refs)
        assert run_ostree("log", f"--repo={pulled}", "small") == small.log("small")
        assert api.get(f"/content/crash/{object_url(big_commit + '.commit')}").status_code == 404

        # The same import again, into a service holding whatever the kill left behind.
        task = api.import_archive("crash", big_tar)
        assert task["created_version"] == 2
        assert api_refs(api, "crash") == {**small.refs, "big": big_commit}
        assert api_objects(api, "crash") == small.objects() | big.objects()
        content = api.version("crash", 2)["content_summary"]
        assert content["present"]["objects"] == len(small.objects() | big.objects())
        pulled = pull_and_check(tmp_path / "pull-2", url, {"big": big_commit})
        assert sum(1 for _ in (pulled / "objects").glob("*/*.filez")) == BIG_FILES


def test_repository_recreated_serves_new_content(api: ApiClient, tmp_path: Path) -> None:
    """Delete a served repository and create one of the same name: the distribution,
    pointed at it again, serves the new content (nothing cached from the old one)."""
    old = Source.create(tmp_path / "old")
    old.commit("old", tree(21), ts=BASE_TIME)
    new = Source.create(tmp_path / "new")
    new.commit("new", tree(22), ts=BASE_TIME + 60)
    api.create_repository("reborn")
    api.import_archive("reborn", old.tar())
    api.create_distribution("reborn", "reborn", "reborn")
    url = api.content_url("reborn")
    pull_and_check(tmp_path / "pull-old", url, old.refs)

    api.run_task(api.json("DELETE", "/api/v1/repositories/reborn", 202)["task"])
    assert api.json("GET", "/api/v1/distributions/reborn")["repository"] is None
    assert api.get("/content/reborn/summary").status_code == 404
    api.create_repository("reborn")
    assert api.import_archive("reborn", new.tar())["created_version"] == 1
    api.json("PATCH", "/api/v1/distributions/reborn", json={"repository": "reborn"})

    assert api.get("/content/reborn/refs/heads/old").status_code == 404
    assert api.get("/content/reborn/refs/heads/new").text == new.refs["new"] + "\n"
    summary = api.get("/content/reborn/summary")
    assert summary.headers["etag"] == f'"{api.version("reborn")["summary_sha256"]}"'
    assert remote_refs(tmp_path / "refs", url) == ["origin:new"]
    pull_and_check(tmp_path / "pull-new", url, new.refs)
