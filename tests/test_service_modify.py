"""Issue 5 end to end: modify (copy/remove refs and commits), whole-version copy,
retention, orphan cleanup and version diffs, against a real ``pyostree serve`` and
the real ``ostree`` CLI.

Sources are made by ``ostree commit``, imported through the REST API, copied and
removed with ``POST …/modify``, then pulled back by ``ostree pull`` from
distributions and checked with ``ostree fsck`` / ``ostree log``.  Expected object
sets come from ``ostree`` itself: ``ostree pull-local --depth=0`` of a commit into an
empty repository writes exactly that commit's closure.  Every version made here is
checked to serve a summary listing exactly its refs.

No assertion depends on wall-clock time; the one measurement (copying a ref with a
big closure) is printed.
"""

from __future__ import annotations

import itertools
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from libpyostree.objects import parse_summary
from tests.ostree_cli import (
    BASE_TIME,
    iso,
    log_checksums,
    ostree_commit,
    run_ostree,
    write_file,
)
from tests.service_server import ApiClient, ServiceServer, running_service

pytestmark = pytest.mark.ostree

OWNER = ("--owner-uid=0", "--owner-gid=0")
R = "/api/v1/repositories"
_PATHS = itertools.count()
# Ref names: not hex, or ``ostree rev-parse`` reads them as partial checksums.
A, B, X, Y = "main", "beta", "xray", "yank"


# -- source repositories made by ostree ------------------------------------------------------


@dataclass
class Source:
    """An archive repository made by the ``ostree`` CLI."""

    path: Path
    workdir: Path
    refs: dict[str, str] = field(default_factory=dict)
    commits: list[str] = field(default_factory=list)

    @classmethod
    def create(cls, workdir: Path) -> Source:
        workdir.mkdir(parents=True)
        path = workdir / "repo"
        run_ostree("init", f"--repo={path}", "--mode=archive")
        return cls(path, workdir)

    def commit(
        self,
        ref: str,
        files: dict[str, bytes],
        *,
        parent: str | None = None,
        subject: str | None = None,
    ) -> str:
        tree = self.workdir / f"tree-{len(self.commits)}"
        tree.mkdir()
        for name, data in files.items():
            write_file(tree / name, data)
        ts = BASE_TIME + 60 * len(self.commits)
        subject = subject or f"{ref} {len(self.commits)}"
        args = ["-b", ref, "-s", subject, f"--timestamp={iso(ts)}", *OWNER]
        if parent is not None:
            args.append(f"--parent={parent}")
        checksum = ostree_commit(self.path, *args, tree)
        self.refs[ref] = checksum
        self.commits.append(checksum)
        return checksum

    def tar(self) -> Path:
        dest = self.workdir / f"repo-{next(_PATHS)}.tar"
        subprocess.run(
            ["tar", "-cf", str(dest), "-C", str(self.path), "."], check=True, timeout=300
        )
        return dest


def tree(n: int, **extra: bytes) -> dict[str, bytes]:
    """A small tree: ``n`` changes one file; the rest is shared between trees."""
    files = {
        "README": b"a small tree\n",
        "etc/version": f"{n}\n".encode(),
        "usr/bin/tool": b"#!/bin/sh\necho tool\n",
        "usr/share/data": bytes(range(256)) * 8,
    }
    files.update({k.replace("__", "/"): v for k, v in extra.items()})
    return files


def object_files(repo: Path) -> set[str]:
    """``XXrest.type`` of every file under ``repo/objects``."""
    return {p.parent.name + p.name for p in (repo / "objects").glob("*/*") if p.is_file()}


def closure(src: Path, commits: list[str], workdir: Path) -> set[str]:
    """The objects of ``commits`` (each at depth 0), as ostree itself finds them."""
    repo = workdir / f"closure-{next(_PATHS)}"
    run_ostree("init", f"--repo={repo}", "--mode=archive")
    if commits:
        run_ostree("pull-local", f"--repo={repo}", "--depth=0", src, *commits)
    return object_files(repo)


# -- the service -----------------------------------------------------------------------------


def all_results(api: ApiClient, path: str, **params: str) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    while True:
        body = api.json("GET", path, params={**params, "limit": "10000", "offset": str(len(out))})
        out.extend(body["results"])
        if len(out) >= body["count"] or not body["results"]:
            return out


def api_objects(api: ApiClient, repo: str, version: int | str = "latest") -> set[str]:
    items = all_results(api, f"{R}/{repo}/versions/{version}/objects")
    suffix = {"file": "filez"}
    return {f"{o['checksum']}.{suffix.get(o['type'], o['type'])}" for o in items}


def api_refs(api: ApiClient, repo: str, version: int | str = "latest") -> dict[str, str]:
    return {r["name"]: r["commit"] for r in all_results(api, f"{R}/{repo}/versions/{version}/refs")}


def api_commits(api: ApiClient, repo: str, version: int | str = "latest") -> set[str]:
    return {c["checksum"] for c in all_results(api, f"{R}/{repo}/versions/{version}/commits")}


def modify_response(api: ApiClient, repo: str, **body: Any) -> Any:
    return api.request("POST", f"{R}/{repo}/modify", json=body)


def modify(api: ApiClient, repo: str, **body: Any) -> dict[str, Any]:
    """Run a modify task, which must complete; the task."""
    href = api.json("POST", f"{R}/{repo}/modify", 202, json=body)["task"]
    return api.run_task(href)


def source_of(repo: str, version: int | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"repository": repo}
    if version is not None:
        out["version"] = version
    return out


def pin(api: ApiClient, repo: str, version: int | None = None) -> str:
    """A new distribution of ``repo`` (pinned to ``version``); its content URL."""
    n = next(_PATHS)
    name = f"{repo}-{'latest' if version is None else version}-{n}"
    api.create_distribution(name, f"d{n}/{repo}", repo, version)
    return api.content_url(f"d{n}/{repo}")


def check_summary(api: ApiClient, repo: str, version: int) -> None:
    """The summary served for ``version`` lists exactly its refs."""
    url = pin(api, repo, version)
    resp = api.get(url.removeprefix(api.base_url) + "summary")
    assert resp.status_code == 200, resp.text
    refs = {r.name: str(r.checksum) for r in parse_summary(resp.content).refs}
    assert refs == api_refs(api, repo, version)


def client_repo(workdir: Path, url: str) -> Path:
    workdir.mkdir(parents=True)
    repo = workdir / "repo"
    run_ostree("init", f"--repo={repo}", "--mode=archive")
    run_ostree("remote", "add", f"--repo={repo}", "--no-gpg-verify", "origin", url)
    return repo


def pull(workdir: Path, url: str, refs: dict[str, str], depth: int) -> Path:
    """``ostree pull --mirror --depth`` of ``refs`` into a fresh repository, ``ostree
    fsck`` clean, each ref on its commit."""
    repo = client_repo(workdir, url)
    run_ostree("pull", f"--repo={repo}", "--mirror", f"--depth={depth}", "origin", *refs)
    out = run_ostree("fsck", f"--repo={repo}")
    assert "no errors found" in out, out
    for ref, commit in refs.items():
        assert run_ostree("rev-parse", f"--repo={repo}", ref).strip() == commit
    return repo


def task_seconds(task: dict[str, Any]) -> float:
    started = datetime.fromisoformat(task["started"])
    finished = datetime.fromisoformat(task["finished"])
    return (finished - started).total_seconds()


# -- fixtures --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServiceServer]:
    with running_service(tmp_path_factory.mktemp("service") / "data") as srv:
        yield srv


@pytest.fixture
def api(server: ServiceServer) -> ApiClient:
    return server.client


@dataclass
class World:
    """Repository ``src``.

    Version 1: ``main`` = a1←a2←a3←a4 (``a[0..3]``), ``beta`` = b1, ``xray`` = x1 and
    ``yank`` = y1 (x1 and y1 are distinct commits of one identical tree).  Version 2:
    ``main`` moves to a5 (child of a4).
    """

    src: Source
    a: list[str]
    b1: str
    x1: str
    y1: str


@pytest.fixture(scope="module")
def world(server: ServiceServer, tmp_path_factory: pytest.TempPathFactory) -> World:
    api = server.client
    work = tmp_path_factory.mktemp("world")
    src = Source.create(work / "src")
    a: list[str] = []
    for i in range(4):
        a.append(src.commit(A, tree(i, **{f"a{i}": b"a" * (i + 1)}), parent=a[-1] if a else None))
    b1 = src.commit(B, tree(100, **{"usr__lib__b": b"only in b\n"}))
    x1 = src.commit(X, tree(200), subject=X)
    y1 = src.commit(Y, tree(200), subject=Y)
    api.create_repository("src")
    assert api.import_archive("src", src.tar())["created_version"] == 1
    # Version 2: a child of a4 on ``main``, from a fresh repository (only the new commit).
    child = Source.create(work / "child")
    a5 = child.commit(A, tree(5, a5=b"five"), parent=a[-1])
    a.append(a5)
    assert api.import_archive("src", child.tar(), ref=A)["created_version"] == 2
    # The local ``src`` gets a5 too: closures are computed from it.
    run_ostree("pull-local", f"--repo={src.path}", "--depth=0", child.path, a5)
    return World(src, a, b1, x1, y1)


# -- copy ------------------------------------------------------------------------------------


def test_copy_ref_and_commit_counts_and_pull(api: ApiClient, world: World, tmp_path: Path) -> None:
    """Copy ref ``main`` + the commit of ``beta`` and nothing else: exact counts and
    objects; ``ostree pull --depth=0`` of ``main`` works, b1 pulls by checksum."""
    api.create_repository("copy1")
    task = modify(api, "copy1", add_refs=[A], add_commits=[world.b1], source=source_of("src", 1))
    assert task["created_version"] == 1
    head = world.a[3]
    expected = closure(world.src.path, [head, world.b1], tmp_path)
    counts = {"refs": 1, "commits": 2, "objects": len(expected), "deltas": 0}
    zero = dict.fromkeys(counts, 0)
    assert api.version("copy1", 1)["content_summary"] == {
        "added": counts,
        "removed": zero,
        "present": counts,
    }
    assert api_refs(api, "copy1") == {A: head}
    assert api_commits(api, "copy1") == {head, world.b1}
    assert api_objects(api, "copy1") == expected
    check_summary(api, "copy1", 1)

    url = pin(api, "copy1")
    repo = pull(tmp_path / "pull", url, {A: head}, depth=0)
    log = run_ostree("log", f"--repo={repo}", A)
    assert log_checksums(log) == [head]
    assert "History beyond this commit not fetched" in log
    # The commit without a ref: pulled by checksum.
    run_ostree("pull", f"--repo={repo}", "--depth=0", "origin", world.b1)
    run_ostree("fsck", f"--repo={repo}")
    assert object_files(repo) == expected
    # ``beta`` has no ref in the target.
    assert f"origin:{B}" not in run_ostree("remote", "refs", f"--repo={repo}", "origin").split()


@pytest.mark.parametrize("depth", [2, -1])
def test_copy_with_depth_pulls_the_whole_copied_history(
    api: ApiClient, world: World, tmp_path: Path, depth: int
) -> None:
    name = f"depth{abs(depth)}{'m' if depth < 0 else ''}"
    api.create_repository(name)
    task = modify(api, name, add_refs=[A], source=source_of("src", 1), depth=depth)
    assert task["created_version"] == 1
    chain = world.a[:4][::-1]  # a4, a3, a2, a1
    held = chain if depth < 0 else chain[: depth + 1]
    assert api_commits(api, name) == set(held)
    assert api_objects(api, name) == closure(world.src.path, held, tmp_path)
    assert api.version(name, 1)["content_summary"]["present"]["commits"] == len(held)
    check_summary(api, name, 1)

    repo = pull(tmp_path / "pull", pin(api, name), {A: world.a[3]}, depth=-1)
    log = run_ostree("log", f"--repo={repo}", A)
    assert log_checksums(log) == held
    if depth < 0:
        assert log == run_ostree("log", f"--repo={world.src.path}", world.a[3])
    else:
        assert "History beyond this commit not fetched" in log


# -- remove ----------------------------------------------------------------------------------


def test_remove_shared_objects_then_the_last_commit(
    api: ApiClient, world: World, tmp_path: Path
) -> None:
    """``xray`` and ``yank`` are two commits of one tree.  Removing ``xray`` and its
    commit removes no dirtree, dirmeta or file: the content summary's ``objects``
    (which counts commit objects too) removes exactly 1, x1's commit object.  Removing
    y1 then removes exactly y1's closure, and ``yank`` with it (said in the result)."""
    api.create_repository("rm")
    modify(api, "rm", add_refs=[X, Y], source=source_of("src"))
    x_objects = closure(world.src.path, [world.x1], tmp_path)
    y_objects = closure(world.src.path, [world.y1], tmp_path)
    assert x_objects - y_objects == {f"{world.x1}.commit"}
    assert api_objects(api, "rm") == x_objects | y_objects

    task = modify(api, "rm", remove_refs=[X], remove_commits=[world.x1])
    assert task["created_version"] == 2
    summary = api.version("rm", 2)["content_summary"]
    assert summary["removed"] == {"refs": 1, "commits": 1, "objects": 1, "deltas": 0}
    # The one object removed is x1's commit object: no content object left.
    assert api_objects(api, "rm", 1) - api_objects(api, "rm", 2) == {f"{world.x1}.commit"}
    assert api_objects(api, "rm", 2) == y_objects
    assert api_refs(api, "rm") == {Y: world.y1}
    check_summary(api, "rm", 2)
    pull(tmp_path / "pull2", pin(api, "rm", 2), {Y: world.y1}, depth=0)

    task = modify(api, "rm", remove_commits=[world.y1])
    assert task["created_version"] == 3
    assert task["result"]["refs_removed_with_their_commit"] == [Y]
    assert task["result"]["commits_removed"] == [world.y1]
    summary = api.version("rm", 3)["content_summary"]
    assert summary["removed"] == {"refs": 1, "commits": 1, "objects": len(y_objects), "deltas": 0}
    assert summary["present"] == {"refs": 0, "commits": 0, "objects": 0, "deltas": 0}
    assert api_objects(api, "rm") == set()
    check_summary(api, "rm", 3)


def test_remove_a_ref_keeps_history_another_ref_needs(
    api: ApiClient, world: World, tmp_path: Path
) -> None:
    """Removing a ref removes the commits of its history no other ref reaches, and
    exactly the objects only those commits held."""
    api.create_repository("rmref")
    modify(api, "rmref", source=source_of("src", 1))
    task = modify(api, "rmref", remove_refs=[A, B])
    remaining = [world.x1, world.y1]
    assert api_commits(api, "rmref") == set(remaining)
    assert api_objects(api, "rmref") == closure(world.src.path, remaining, tmp_path)
    assert sorted(task["result"]["commits_removed"]) == sorted([*world.a[:4], world.b1])
    check_summary(api, "rmref", task["created_version"])


# -- whole-version copy ----------------------------------------------------------------------


def test_copy_whole_version(api: ApiClient, world: World, tmp_path: Path) -> None:
    """A ``source`` without adds: the target's refs, commits and objects become exactly
    the source version's (here over a target that held something else)."""
    api.create_repository("whole")
    modify(api, "whole", add_refs=[X], source=source_of("src"))
    for version in (1, 2):
        task = modify(api, "whole", source=source_of("src", version))
        number = task["created_version"]
        assert api_refs(api, "whole", number) == api_refs(api, "src", version)
        assert api_commits(api, "whole", number) == api_commits(api, "src", version)
        assert api_objects(api, "whole", number) == api_objects(api, "src", version)
        present = api.version("whole", number)["content_summary"]["present"]
        assert present == api.version("src", version)["content_summary"]["present"]
        check_summary(api, "whole", number)
    refs = api_refs(api, "whole")
    pull(tmp_path / "pull", pin(api, "whole"), refs, depth=-1)
    # The same copy again changes nothing: no version.
    task = modify(api, "whole", source=source_of("src", 2))
    assert task["created_version"] is None


# -- diff ------------------------------------------------------------------------------------


def test_version_diff(api: ApiClient, world: World) -> None:
    api.create_repository("diff")
    # Version 1: src's version 1 without ``xray``.
    modify(api, "diff", source=source_of("src", 1), remove_refs=[X])
    task = modify(api, "diff", add_refs=[A, X], remove_refs=[B], source=source_of("src", 2))
    assert task["created_version"] == 2
    check_summary(api, "diff", 2)
    a4, a5 = world.a[3], world.a[4]
    diff = api.json("GET", f"{R}/diff/versions/2/diff", params={"base": "1"})
    assert diff == {
        "version": 2,
        "base": 1,
        "refs": {
            "added": [{"name": X, "commit": world.x1}],
            "removed": [{"name": B, "commit": world.b1}],
            "moved": [{"name": A, "from": a4, "to": a5}],
        },
        "commits": {"added": sorted([a5, world.x1]), "removed": [world.b1]},
    }
    # Without ?base: against the version before; and the other way round.
    assert api.json("GET", f"{R}/diff/versions/2/diff") == diff
    back = api.json("GET", f"{R}/diff/versions/1/diff", params={"base": "2"})
    assert back["refs"] == {
        "added": [{"name": B, "commit": world.b1}],
        "removed": [{"name": X, "commit": world.x1}],
        "moved": [{"name": A, "from": a5, "to": a4}],
    }
    assert back["commits"] == {"added": [world.b1], "removed": sorted([a5, world.x1])}
    assert api.get(f"{R}/diff/versions/2/diff", params={"base": "9"}).status_code == 404


# -- retention -------------------------------------------------------------------------------


def test_retention_keeps_the_latest_two(api: ApiClient, tmp_path: Path) -> None:
    api.create_repository("ret")
    api.json("PATCH", f"{R}/ret", json={"retain_versions": 2})
    heads: dict[str, str] = {}
    src = Source.create(tmp_path / "src")
    for i in range(1, 6):
        heads[f"r{i}"] = src.commit(f"r{i}", tree(1000 + i))
        assert api.import_archive("ret", src.tar())["created_version"] == i
    assert [v["number"] for v in api.versions("ret")] == [5, 4]
    for number in (1, 2, 3):
        assert api.get(f"{R}/ret/versions/{number}").status_code == 404
    for number in (4, 5):
        refs = {f"r{i}": heads[f"r{i}"] for i in range(1, number + 1)}
        assert api_refs(api, "ret", number) == refs
        check_summary(api, "ret", number)
        pull(tmp_path / f"pull{number}", pin(api, "ret", number), refs, depth=0)
    assert api.json("GET", f"{R}/ret")["retain_versions"] == 2


# -- bad input -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        ({"add_refs": ["nope"], "source": {"repository": "src"}}, 400, "Ref nope is not in"),
        ({"add_commits": ["0" * 64], "source": {"repository": "src"}}, 400, "is not in"),
        ({"add_refs": [A], "source": {"repository": "missing"}}, 404, "does not exist"),
        ({"add_refs": [A], "source": {"repository": "src", "version": 99}}, 404, "no version"),
        ({"add_refs": [A], "source": {"repository": "src"}, "depth": -2}, 400, "depth"),
        (
            {"add_refs": [A], "remove_refs": [A], "source": {"repository": "src"}},
            400,
            "both added and removed",
        ),
        ({"remove_refs": ["zzz"]}, 400, "Ref zzz is not in"),
        ({"remove_commits": ["1" * 64]}, 400, "is not in"),
        ({"add_refs": [A], "source": {"repository": "src"}, "bogus": 1}, 400, "bogus"),
        ({"add_refs": [A], "source": {"repository": "src", "ref": A}}, 400, "ref"),
        ({"add_refs": [A], "depth": "1", "source": {"repository": "src"}}, 400, "depth"),
        ({"add_commits": ["not a checksum"], "source": {"repository": "src"}}, 400, "checksum"),
        ({}, 400, "Nothing to do"),
    ],
)
def test_bad_input_is_4xx_and_makes_no_version(
    api: ApiClient, world: World, body: dict[str, Any], status: int, message: str
) -> None:
    name = "bad"
    if api.get(f"{R}/{name}").status_code == 404:
        api.create_repository(name)
        modify(api, name, add_refs=[B], source=source_of("src"))
    latest = api.latest_number(name)
    tasks_before = api.json("GET", "/api/v1/tasks", params={"limit": "1"})["count"]
    resp = modify_response(api, name, **body)
    assert resp.status_code == status, resp.text
    error = resp.json()["error"]
    assert message in error["message"], error
    assert error["code"] == ("not_found" if status == 404 else "invalid")
    assert api.latest_number(name) == latest
    assert api.json("GET", "/api/v1/tasks", params={"limit": "1"})["count"] == tasks_before


def test_modify_of_a_missing_repository_is_404(api: ApiClient, world: World) -> None:
    resp = modify_response(api, "no-such-repo", add_refs=[A], source=source_of("src"))
    assert resp.status_code == 404, resp.text


# -- orphan cleanup --------------------------------------------------------------------------


def pool_files(data_dir: Path) -> set[str]:
    return object_files(data_dir / "pool")


def every_version_objects(api: ApiClient) -> set[str]:
    """The union of the objects of every version of every repository."""
    out: set[str] = set()
    for repo in all_results(api, R):
        for v in api.versions(repo["name"]):
            out |= api_objects(api, repo["name"], v["number"])
    return out


def test_orphan_cleanup_after_deleting_a_repository(
    server: ServiceServer, api: ApiClient, tmp_path: Path
) -> None:
    """After deleting a repository (and a failed import that left object files),
    cleanup shrinks the pool to exactly the union of the objects of every version of
    every remaining repository; every remaining version of ``keep`` pulls and fscks
    clean.  (Runs on the module's service: the union covers the other tests' too.)"""
    data = server.data_dir
    src = Source.create(tmp_path / "src")
    k1 = src.commit("keep", tree(1))
    src.commit("gone", tree(2, gone=b"only in gone\n" * 50))
    api.create_repository("keep")
    api.create_repository("gone")
    assert api.import_archive("gone", src.tar())["created_version"] == 1
    modify(api, "keep", add_refs=["keep"], source=source_of("gone"))
    # A second version of ``keep`` with a child: both versions stay.
    child = Source.create(tmp_path / "child")
    k2 = child.commit("keep", tree(3, k2=b"k2"), parent=k1)
    assert api.import_archive("keep", child.tar(), ref="keep")["created_version"] == 2
    # A failed import: its objects are written, then the ref check refuses it.
    stale = Source.create(tmp_path / "stale")
    stale.commit("keep", tree(4, stale=b"stale objects\n" * 30), parent=k1)
    task = api.wait_task(api.submit_import("keep", stale.tar(), ref="keep"))
    assert task["state"] == "failed", task
    assert "does not extend" in task["error"]["message"]
    assert task["created_version"] is None
    gone_objects = object_files(src.path)
    assert gone_objects <= pool_files(data)

    api.run_task(api.json("DELETE", f"{R}/gone", 202)["task"])
    before = pool_files(data)
    wanted = every_version_objects(api)
    assert wanted < before
    # What only ``gone`` and the failed import had (other tests share small trees).
    gone_only = gone_objects - wanted
    stale_only = object_files(stale.path) - wanted
    assert {f"{src.refs['gone']}.commit", f"{stale.refs['keep']}.commit"}.isdisjoint(wanted)
    assert f"{src.refs['gone']}.commit" in gone_only
    assert stale_only & before, "the failed import wrote no object files"

    task = api.run_task(api.json("POST", "/api/v1/orphans/cleanup", 202, json={})["task"])
    after = pool_files(data)
    assert after == wanted
    assert not (stale_only | gone_only) & after
    result = task["result"]
    assert result["files_deleted"] >= len(before - after)
    assert result["rows_deleted"]["refs"] >= 1  # ``gone``'s ref row
    assert result["rows_deleted"]["objects"] >= len(gone_only)
    assert not any((data / "pool" / "tmp").iterdir())

    # Every remaining version of ``keep``: pinned distribution, pull, fsck, log.
    expected = {1: {"keep": k1}, 2: {"keep": k2}}
    assert [v["number"] for v in api.versions("keep")] == [2, 1, 0]
    for number, refs in expected.items():
        assert api_refs(api, "keep", number) == refs
        check_summary(api, "keep", number)
        repo = pull(tmp_path / f"pull{number}", pin(api, "keep", number), refs, -1)
        assert object_files(repo) == api_objects(api, "keep", number)
        log = run_ostree("log", f"--repo={repo}", "keep")
        assert log_checksums(log) == [k2, k1][2 - number :]
    # A second cleanup finds nothing.
    task = api.run_task(api.json("POST", "/api/v1/orphans/cleanup", 202, json={})["task"])
    assert task["result"]["files_deleted"] == 0
    assert pool_files(data) == wanted
    resp = api.request("POST", "/api/v1/orphans/cleanup", json={"older_than": -1})
    assert resp.status_code == 400


# -- performance (reported, not asserted) ----------------------------------------------------


def synthetic_tree(root: Path, files: int) -> None:
    for i in range(files):
        write_file(root / f"d{i % 61:02d}" / f"s{i % 7}" / f"f{i}", f"file {i}\n".encode() * 3)


def test_copy_of_a_big_closure_is_timed(api: ApiClient, tmp_path: Path) -> None:
    """Copy a ref with a big closure (a few thousand files: the 50k-object corpus is
    ``benchmarks/bench_modify.py``'s) and print the task's time."""
    src = Source.create(tmp_path / "big")
    root = tmp_path / "big" / "tree-big"
    synthetic_tree(root, 2000)
    head = ostree_commit(
        src.path, "-b", "big", "-s", "big", f"--timestamp={iso(BASE_TIME)}", *OWNER, root
    )
    objects = len(object_files(src.path))
    api.create_repository("big-src")
    api.create_repository("big-dst")
    assert api.import_archive("big-src", src.tar())["created_version"] == 1
    task = modify(api, "big-dst", add_refs=["big"], source=source_of("big-src"))
    assert api.version("big-dst", 1)["content_summary"]["present"]["objects"] == objects
    assert api_refs(api, "big-dst") == {"big": head}
    took = task_seconds(task)
    removal = modify(api, "big-dst", remove_commits=[head])
    print(
        f"\nmodify: copy of a ref with {objects} objects took {took:.3f} s (task started→"
        f"finished); removal of its commit {task_seconds(removal):.3f} s"
    )
