"""Issue 7, the service side: static deltas computed by ``pyostree serve``, served under
distributions, copied and removed with their commits, cleaned up with orphans, and
used by the real ``ostree`` client.

The source is an archive repository made by ``ostree commit``: ``main`` = C1 ← C2 ←
C3.  C2 changes a few bytes of a 300 kB random file and of a text file, adds files
and a symlink; C3 changes the big file again and adds a file.  Repository ``dl``
(default settings: ``compute_delta`` on, ``delta_depth`` 1, no scratch deltas)
imports C1 and C2 (version 1), then C3 (version 2).

Clients are ``bare-user-only`` repositories (archive-mode clients never use deltas);
each pull that must use a delta is checked by ``ostree pull``'s own report of the
delta parts it fetched, then ``ostree fsck`` and ``ostree ls -R`` / a checkout
against the source.  No assertion depends on wall-clock time.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import random
import stat
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from libpyostree.deltas import DeltaName, list_deltas, parse_index, parse_superblock
from libpyostree.deltas.index import list_indexes
from libpyostree.deltas.names import index_path
from libpyostree.names import Checksum
from libpyostree.objects.summary import parse_summary
from libpyostree.repo import Repo
from service.cli import main
from tests.ostree_cli import BASE_TIME, iso, ostree_commit, run_ostree, write_file
from tests.service_server import ApiClient, ServiceServer, running_service

pytestmark = pytest.mark.ostree

R = "/api/v1/repositories"
REF = "main"
OWNER = ("--owner-uid=0", "--owner-gid=0")
_PATHS = itertools.count()

Pair = tuple[str | None, str]


# -- the source ------------------------------------------------------------------------------


def _trees(root: Path) -> list[Path]:
    """Three trees: C2 modifies a largish file and adds files, C3 modifies it again."""
    rnd = random.Random(276)
    words = [bytes(rnd.choices(b"abcdefghijklmnopqrstuvwxyz", k=rnd.randint(2, 9))) for _ in range(500)]  # fmt: skip
    text = b" ".join(rnd.choices(words, k=40_000))
    big = bytearray(rnd.randbytes(300_000))
    t1, t2, t3 = root / "t1", root / "t2", root / "t3"
    for n, tree in enumerate((t1, t2, t3), start=1):
        write_file(tree / "README", b"a tree with deltas\n")
        write_file(tree / "etc" / "version", f"{n}\n".encode())
        write_file(tree / "usr" / "bin" / "tool", b"#!/bin/sh\necho tool\n", 0o755)
        write_file(tree / "usr" / "share" / "doc.txt", text)
        if n == 2:
            big[150_000:150_010] = b"0123456789"
            text = text[:1000] + b" changed " + text[1000:]
            write_file(tree / "usr" / "share" / "doc.txt", text)
        if n == 3:
            big[100_000:100_016] = b"fedcba9876543210"
        write_file(tree / "usr" / "lib" / "big.bin", bytes(big))
        if n >= 2:
            write_file(tree / "usr" / "lib" / "new.bin", rnd.randbytes(40_000))
            write_file(tree / "usr" / "share" / "added.txt", b"new in C2\n")
            (tree / "usr" / "bin" / "alias").symlink_to("tool")
        if n == 3:
            write_file(tree / "opt" / "extra.txt", b"new in C3\n" * 100)
    return [t1, t2, t3]


@dataclass(frozen=True)
class World:
    """Source ``repo`` (``main`` = C1 ← C2 ← C3), its trees, and two archives:
    ``tar12`` (C1, C2) and ``tar3`` (C1, C2, C3: imported with ``?ref=main`` it
    adds C3)."""

    repo: Path
    trees: list[Path]
    commits: list[str]
    tar12: Path
    tar3: Path


def _tar(repo: Path, dest: Path) -> Path:
    subprocess.run(["tar", "-cf", str(dest), "-C", str(repo), "."], check=True, timeout=300)
    return dest


# -- helpers ---------------------------------------------------------------------------------


def pair_dir(pool: Path, frm: str | None, to: str) -> Path:
    return pool / DeltaName(Checksum(frm) if frm else None, Checksum(to)).dir


def delta_name(frm: str | None, to: str) -> str:
    return f"{frm}-{to}" if frm else to


def api_deltas(api: ApiClient, repo: str, version: int | str = "latest") -> dict[Pair, str]:
    """(from, to) → superblock sha256 of a version, from the content API."""
    body = api.json("GET", f"{R}/{repo}/versions/{version}/deltas", params={"limit": "1000"})
    assert body["count"] == len(body["results"])
    out: dict[Pair, str] = {}
    for d in body["results"]:
        assert d["size"] > 0, d
        out[(d["from"], d["to"])] = d["superblock_sha256"]
    return out


def pin(api: ApiClient, repo: str, version: int | None = None) -> str:
    """A new distribution of ``repo`` (pinned to ``version``); its base path."""
    n = next(_PATHS)
    base = f"dd{n}/{repo}"
    api.create_distribution(f"{repo}-{n}", base, repo, version)
    return base


def content(api: ApiClient, base: str, rest: str) -> httpx.Response:
    return api.get(f"/content/{base}/{rest}")


def served(api: ApiClient, base: str, rest: str) -> bytes:
    resp = content(api, base, rest)
    assert resp.status_code == 200, (rest, resp.status_code, resp.text[:300])
    return resp.content


def served_deltas(api: ApiClient, base: str) -> dict[str, str]:
    """The summary's ``ostree.static-deltas``: name → digest (hex)."""
    summary = parse_summary(served(api, base, "summary"))
    return {name: bytes(digest).hex() for name, digest in summary.static_deltas.items()}


def download_delta(api: ApiClient, base: str, frm: str | None, to: str, dest: Path) -> Path:
    """Superblock and parts of a served delta into ``dest/deltas/…`` (ostree's layout);
    the delta directory."""
    name = DeltaName(Checksum(frm) if frm else None, Checksum(to))
    directory = dest / name.dir
    directory.mkdir(parents=True)
    sb_bytes = served(api, base, name.superblock_path)
    (directory / "superblock").write_bytes(sb_bytes)
    sb = parse_superblock(sb_bytes)
    for i in range(len(sb.parts)):
        if i not in sb.inline_parts:
            (directory / str(i)).write_bytes(served(api, base, name.part_path(i)))
    return directory


def bare_user_only(workdir: Path, base: str | None = None, api: ApiClient | None = None) -> Path:
    workdir.mkdir(parents=True)
    repo = workdir / "repo"
    run_ostree("init", f"--repo={repo}", "--mode=bare-user-only")
    if base is not None and api is not None:
        url = api.content_url(base)
        run_ostree("remote", "add", f"--repo={repo}", "--no-gpg-verify", "origin", url)
    return repo


def check_commit(client: Path, world: World, commit: str, tmp: Path) -> None:
    """``ostree fsck`` passes; ``ls -R`` and a checkout of ``commit`` equal the source."""
    out = run_ostree("fsck", f"--repo={client}")
    assert "no errors found" in out, out
    assert run_ostree("ls", f"--repo={client}", "-R", "-C", commit) == run_ostree(
        "ls", f"--repo={world.repo}", "-R", "-C", commit
    )
    dest = tmp / f"checkout-{next(_PATHS)}"
    run_ostree("checkout", f"--repo={client}", "-U", commit, dest)
    assert listing(dest) == listing(world.trees[world.commits.index(commit)])


def listing(root: Path) -> dict[str, tuple[str, int, bytes]]:
    """Relative path → (kind, permission bits, content or link target)."""
    out: dict[str, tuple[str, int, bytes]] = {}
    for dirpath, dirs, files in os.walk(root):
        for name in dirs + files:
            path = Path(dirpath) / name
            rel = str(path.relative_to(root))
            st = path.lstat()
            if stat.S_ISLNK(st.st_mode):
                out[rel] = ("link", 0, os.readlink(path).encode())
            elif stat.S_ISDIR(st.st_mode):
                out[rel] = ("dir", 0, b"")
            else:
                out[rel] = ("file", stat.S_IMODE(st.st_mode), path.read_bytes())
    return out


def pulled_with_delta(output: str) -> bool:
    """``ostree pull`` reports "N delta parts" when it used a static delta."""
    return "delta parts" in output


def task_count(api: ApiClient) -> int:
    count: int = api.json("GET", "/api/v1/tasks")["count"]
    return count


def create_delta(api: ApiClient, repo: str, **body: str) -> dict[str, Any]:
    href = api.json("POST", f"{R}/{repo}/deltas", 202, json=body)["task"]
    return api.run_task(href)


def modify(api: ApiClient, repo: str, **body: Any) -> dict[str, Any]:
    href = api.json("POST", f"{R}/{repo}/modify", 202, json=body)["task"]
    return api.run_task(href)


# -- fixtures --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServiceServer]:
    with running_service(tmp_path_factory.mktemp("service") / "data") as srv:
        yield srv


@pytest.fixture
def api(server: ServiceServer) -> ApiClient:
    return server.client


@pytest.fixture
def pool(server: ServiceServer) -> Path:
    return server.data_dir / "pool"


@pytest.fixture(scope="module")
def world(server: ServiceServer, tmp_path_factory: pytest.TempPathFactory) -> World:
    work = tmp_path_factory.mktemp("source")
    repo = work / "repo"
    run_ostree("init", f"--repo={repo}", "--mode=archive")
    trees = _trees(work)
    commits: list[str] = []
    tar12 = work / "c12.tar"
    for n, tree in enumerate(trees):
        args = ["-b", REF, "-s", f"C{n + 1}", f"--timestamp={iso(BASE_TIME + 60 * n)}", *OWNER]
        commits.append(ostree_commit(repo, *args, tree))
        if n == 1:
            _tar(repo, tar12)
    world = World(repo, trees, commits, tar12, _tar(repo, work / "c3.tar"))
    api = server.client
    api.create_repository("dl")
    assert api.import_archive("dl", tar12)["created_version"] == 1
    assert api.import_archive("dl", world.tar3, ref=REF)["created_version"] == 2
    return world


# -- import computes deltas; served; used by ostree pull -------------------------------------


def test_import_computes_the_delta_and_serves_it(api: ApiClient, world: World) -> None:
    c1, c2, c3 = world.commits
    repo = api.json("GET", f"{R}/dl")
    assert (repo["compute_delta"], repo["delta_depth"], repo["delta_from_scratch"]) == (
        True,
        1,
        False,
    )
    v1 = api_deltas(api, "dl", 1)
    assert set(v1) == {(c1, c2)}
    assert api.version("dl", 1)["content_summary"]["present"]["deltas"] == 1
    # Version 2 keeps C1→C2 (both commits remain) and adds C2→C3 for the new head.
    v2 = api_deltas(api, "dl", 2)
    assert v2 == {**v1, (c2, c3): v2[(c2, c3)]}
    assert api.version("dl", 2)["content_summary"]["added"]["deltas"] == 1

    base = pin(api, "dl", 1)
    digest = v1[(c1, c2)]
    assert served_deltas(api, base) == {f"{c1}-{c2}": digest}
    name = DeltaName(Checksum(c1), Checksum(c2))
    sb_bytes = served(api, base, name.superblock_path)
    assert hashlib.sha256(sb_bytes).hexdigest() == digest
    sb = parse_superblock(sb_bytes)
    assert (sb.from_commit, sb.to_commit) == (c1, c2) and sb.parts
    # Small: the 300 kB random file is patched, not shipped again (the new 40 kB random
    # file is, incompressible).
    assert sum(p.size for p in sb.parts) < 100_000
    for i, part in enumerate(sb.parts):
        assert hashlib.sha256(served(api, base, name.part_path(i))).digest() == part.checksum
    assert content(api, base, name.part_path(len(sb.parts))).status_code == 404
    # Immutable files: HEAD, an ETag, 304 on If-None-Match.
    head = api.request("HEAD", f"/content/{base}/{name.superblock_path}")
    assert head.status_code == 200 and head.content == b""
    assert int(head.headers["content-length"]) == len(sb_bytes)
    assert "immutable" in head.headers["cache-control"]
    etag = head.headers["etag"]
    again = api.get(f"/content/{base}/{name.superblock_path}", headers={"If-None-Match": etag})
    assert again.status_code == 304
    assert content(api, base, name.path("nonsense")).status_code == 404
    index = parse_index(served(api, base, name.index_path))
    assert index == {f"{c1}-{c2}": bytes.fromhex(digest)}
    # No delta ends at C1; version 1 does not hold C2→C3.
    assert content(api, base, DeltaName(None, Checksum(c1)).index_path).status_code == 404
    later = DeltaName(Checksum(c2), Checksum(c3))
    assert content(api, base, later.superblock_path).status_code == 404
    assert content(api, base, later.index_path).status_code == 404
    # The latest version serves both, and the index of C3.
    latest = pin(api, "dl")
    assert served_deltas(api, latest) == {delta_name(f, t): g for (f, t), g in v2.items()}
    index3 = parse_index(served(api, latest, later.index_path))
    assert index3 == {f"{c2}-{c3}": bytes.fromhex(v2[(c2, c3)])}


def test_ostree_pull_uses_the_delta(api: ApiClient, world: World, tmp_path: Path) -> None:
    """A bare-user-only client that holds C1 (pulled by checksum) pulls ``main`` = C2
    through the delta C1→C2."""
    c1, c2, _c3 = world.commits
    base = pin(api, "dl", 1)
    client = bare_user_only(tmp_path / "client", base, api)
    first = run_ostree("pull", f"--repo={client}", "origin", c1)
    assert not pulled_with_delta(first), first  # no delta ends at C1: objects
    out = run_ostree("pull", f"--repo={client}", "origin", REF)
    sb = parse_superblock(served(api, base, DeltaName(Checksum(c1), Checksum(c2)).superblock_path))
    assert f"{len(sb.parts)} delta parts" in out, out
    assert run_ostree("rev-parse", f"--repo={client}", f"origin:{REF}").strip() == c2
    check_commit(client, world, c2, tmp_path)
    # From the latest version, the same client moves on to C3 through C2→C3.
    latest = pin(api, "dl")
    run_ostree(
        "remote", "add", f"--repo={client}", "--no-gpg-verify", "latest", api.content_url(latest)
    )
    out = run_ostree("pull", f"--repo={client}", "latest", REF)
    assert pulled_with_delta(out), out
    check_commit(client, world, world.commits[2], tmp_path)


def test_delta_from_scratch(api: ApiClient, world: World, tmp_path: Path) -> None:
    c1, c2, _c3 = world.commits
    created = api.create_repository("scratch", delta_from_scratch=True)
    assert created["delta_from_scratch"] is True and created["compute_delta"] is True
    assert api.import_archive("scratch", world.tar12)["created_version"] == 1
    deltas = api_deltas(api, "scratch")
    assert set(deltas) == {(c1, c2), (None, c2)}
    base = pin(api, "scratch")
    assert served_deltas(api, base) == {delta_name(f, t): g for (f, t), g in deltas.items()}
    index = parse_index(served(api, base, DeltaName(None, Checksum(c2)).index_path))
    assert index == {delta_name(f, t): bytes.fromhex(g) for (f, t), g in deltas.items()}
    # A fresh client, holding nothing, pulls through the scratch delta.
    client = bare_user_only(tmp_path / "client", base, api)
    out = run_ostree("pull", f"--repo={client}", "origin", REF)
    sb = parse_superblock(served(api, base, DeltaName(None, Checksum(c2)).superblock_path))
    assert sb.from_commit is None
    assert f"{len(sb.parts)} delta parts" in out, out
    check_commit(client, world, c2, tmp_path)


@pytest.mark.parametrize("scratch", [False, True], ids=["from", "scratch"])
def test_apply_offline_of_downloaded_delta(
    api: ApiClient, world: World, tmp_path: Path, scratch: bool
) -> None:
    """``ostree static-delta apply-offline`` of the superblock and parts downloaded
    from a distribution."""
    c1, c2, _c3 = world.commits
    if scratch:
        if api.request("GET", f"{R}/scratch").status_code == 404:
            api.create_repository("scratch", delta_from_scratch=True)
            api.import_archive("scratch", world.tar12)
        base, frm = pin(api, "scratch"), None
    else:
        base, frm = pin(api, "dl", 1), c1
    directory = download_delta(api, base, frm, c2, tmp_path / "download")
    client = bare_user_only(tmp_path / "client")
    if frm is not None:
        run_ostree("pull-local", f"--repo={client}", world.repo, frm)
    run_ostree("static-delta", "apply-offline", f"--repo={client}", directory)
    check_commit(client, world, c2, tmp_path)


# -- explicit deltas -------------------------------------------------------------------------


def test_explicit_delta_for_an_arbitrary_pair(api: ApiClient, world: World, tmp_path: Path) -> None:
    """``POST …/deltas {from: C1, to: C3}`` (Pulp #276): a new version holding it;
    a client holding only C1 pulls C3 through it."""
    c1, _c2, c3 = world.commits
    before = api_deltas(api, "dl")
    number = api.latest_number("dl")
    task = create_delta(api, "dl", **{"from": c1, "to": c3})
    assert task["created_version"] == number + 1
    after = api_deltas(api, "dl")
    assert set(after) == set(before) | {(c1, c3)}
    assert {k: after[k] for k in before} == before
    version = api.version("dl", number + 1)
    assert version["content_summary"]["added"]["deltas"] == 1
    assert version["content_summary"]["removed"]["deltas"] == 0
    base = pin(api, "dl")
    assert served_deltas(api, base)[f"{c1}-{c3}"] == after[(c1, c3)]
    index = parse_index(served(api, base, DeltaName(None, Checksum(c3)).index_path))
    assert set(index) == {delta_name(f, t) for f, t in after if t == c3}
    # The same request again makes no new version (nothing changes).
    again = create_delta(api, "dl", **{"from": c1, "to": c3})
    assert again["created_version"] is None
    assert api.latest_number("dl") == number + 1

    client = bare_user_only(tmp_path / "client", base, api)
    run_ostree("pull-local", f"--repo={client}", world.repo, c1)
    out = run_ostree("pull", f"--repo={client}", "origin", REF)
    sb = parse_superblock(served(api, base, DeltaName(Checksum(c1), Checksum(c3)).superblock_path))
    assert f"{len(sb.parts)} delta parts" in out, out
    check_commit(client, world, c3, tmp_path)


def test_explicit_delta_bad_input(api: ApiClient, world: World) -> None:
    c1, c2, c3 = world.commits
    # A repository holding only C2 (C1 and C3 are in the pool, not in its version).
    api.create_repository("onlyc2")
    modify(api, "onlyc2", add_commits=[c2], source={"repository": "dl", "version": 1}, depth=0)
    tasks = task_count(api)
    cases: list[tuple[str, dict[str, Any], str]] = [
        ("dl", {"to": "0" * 64}, "not in the latest version"),
        ("dl", {"from": "1" * 64, "to": c3}, "not in the latest version"),
        ("onlyc2", {"from": c1, "to": c2}, "not in the latest version"),
        ("onlyc2", {"to": c3}, "not in the latest version"),
        ("dl", {"from": c2, "to": c2}, "same commit"),
        ("dl", {"to": c3[:20]}, "to must be"),
        ("dl", {"to": c3.upper()}, "to must be"),
        ("dl", {"to": 7}, "to must be"),
        ("dl", {}, "to must be"),
        ("dl", {"from": "xyz", "to": c3}, "from must be"),
        ("dl", {"to": c3, "force": True}, "Unknown fields"),
    ]
    for repo, body, message in cases:
        resp = api.request("POST", f"{R}/{repo}/deltas", json=body)
        assert resp.status_code == 400, (body, resp.status_code, resp.text)
        assert message in resp.json()["error"]["message"], (body, resp.text)
    resp = api.request("POST", f"{R}/dl/deltas", content=b"[not json")
    assert resp.status_code == 400, resp.text
    resp = api.request("POST", f"{R}/nosuchrepo/deltas", json={"to": c3})
    assert resp.status_code == 404, resp.text
    assert task_count(api) == tasks


# -- settings --------------------------------------------------------------------------------


def test_compute_delta_false_then_depth_2(api: ApiClient, world: World) -> None:
    c1, c2, c3 = world.commits
    created = api.create_repository("nodelta", compute_delta=False)
    assert created["compute_delta"] is False
    assert api.import_archive("nodelta", world.tar12)["created_version"] == 1
    assert api_deltas(api, "nodelta") == {}
    assert api.version("nodelta", 1)["content_summary"]["present"]["deltas"] == 0
    base = pin(api, "nodelta")
    assert served_deltas(api, base) == {}
    name = DeltaName(Checksum(c1), Checksum(c2))
    assert content(api, base, name.superblock_path).status_code == 404  # in the pool, not here
    assert content(api, base, name.index_path).status_code == 404
    # Settings change: deltas to the head from its two previous commits.
    patched = api.json("PATCH", f"{R}/nodelta", json={"compute_delta": True, "delta_depth": 2})
    assert (patched["compute_delta"], patched["delta_depth"]) == (True, 2)
    assert api.import_archive("nodelta", world.tar3, ref=REF)["created_version"] == 2
    assert set(api_deltas(api, "nodelta")) == {(c2, c3), (c1, c3)}
    for bad in ({"delta_depth": -1}, {"delta_depth": "2"}, {"compute_delta": "yes"}):
        resp = api.request("PATCH", f"{R}/nodelta", json=bad)
        assert resp.status_code == 400, (bad, resp.text)


# -- copy and remove -------------------------------------------------------------------------


def test_copy_brings_deltas_and_removal_drops_them(
    api: ApiClient, world: World, tmp_path: Path
) -> None:
    c1, c2, c3 = world.commits
    source = api_deltas(api, "dl")
    assert {(c1, c2), (c2, c3)} <= set(source)
    src = {"repository": "dl"}
    # The whole history: every delta of the source comes along.
    api.create_repository("copy")
    assert modify(api, "copy", add_refs=[REF], source=src, depth=-1)["created_version"] == 1
    assert api_deltas(api, "copy") == source
    # Depth 1 (C3, C2): only deltas between those two.
    api.create_repository("copy1")
    assert modify(api, "copy1", add_refs=[REF], source=src, depth=1)["created_version"] == 1
    assert api_deltas(api, "copy1") == {
        k: g for k, g in source.items() if k[1] in (c2, c3) and k[0] in (None, c2, c3)
    }
    # Removing C1 removes every delta from it.
    task = modify(api, "copy", remove_commits=[c1])
    assert task["created_version"] == 2
    left = api_deltas(api, "copy", 2)
    assert left == {k: g for k, g in source.items() if c1 not in k}
    assert (c2, c3) in left
    removed = sum(1 for k in source if c1 in k)
    assert api.version("copy", 2)["content_summary"]["removed"]["deltas"] == removed
    # Served: version 2 has neither C1→C2 nor an index for C2; version 1 still does.
    old, new = pin(api, "copy", 1), pin(api, "copy", 2)
    gone = DeltaName(Checksum(c1), Checksum(c2))
    for rest in (gone.superblock_path, gone.part_path(0), gone.index_path):
        assert content(api, old, rest).status_code == 200, rest
        assert content(api, new, rest).status_code == 404, rest
    assert f"{c1}-{c2}" not in served_deltas(api, new)
    assert served_deltas(api, new) == {delta_name(f, t): g for (f, t), g in left.items()}
    # What remains still works for a client holding C2.
    client = bare_user_only(tmp_path / "client", new, api)
    run_ostree("pull-local", f"--repo={client}", world.repo, c2)
    out = run_ostree("pull", f"--repo={client}", "origin", REF)
    assert pulled_with_delta(out), out
    check_commit(client, world, c3, tmp_path)


# -- reuse and orphans -----------------------------------------------------------------------


def test_two_repositories_share_one_pool_delta(api: ApiClient, world: World, pool: Path) -> None:
    c1, c2, _c3 = world.commits
    sb = pair_dir(pool, c1, c2) / "superblock"
    before = sb.stat()
    digest = api_deltas(api, "dl", 1)[(c1, c2)]
    api.create_repository("reuse")
    assert api.import_archive("reuse", world.tar12)["created_version"] == 1
    assert api_deltas(api, "reuse") == {(c1, c2): digest}
    after = sb.stat()
    # Not regenerated: the very same file, never rewritten.
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)
    assert hashlib.sha256(sb.read_bytes()).hexdigest() == digest
    sizes = {
        d["size"]
        for repo in ("dl", "reuse")
        for d in api.json("GET", f"{R}/{repo}/versions/1/deltas")["results"]
    }
    assert len(sizes) == 1


def test_orphan_cleanup_removes_unreferenced_delta_directories(
    api: ApiClient, world: World, pool: Path
) -> None:
    c1, c2, c3 = world.commits
    api.create_repository("orph")
    assert (
        modify(api, "orph", add_refs=[REF], source={"repository": "dl"}, depth=-1)[
            "created_version"
        ]
        == 1
    )
    # Deltas only this repository holds: C1 from scratch and C3 → C1.
    create_delta(api, "orph", to=c1)
    create_delta(api, "orph", **{"from": c3, "to": c1})
    mine = {(None, c1), (c3, c1)}
    assert mine <= set(api_deltas(api, "orph"))
    for frm, to in mine:
        assert (pair_dir(pool, frm, to) / "superblock").is_file()
    href = api.json("DELETE", f"{R}/orph", 202)["task"]
    api.run_task(href)
    # Every delta some version of a remaining repository holds.
    referenced: set[Pair] = set()
    for repo in api.results(R, limit="1000"):
        for v in api.versions(repo["name"]):
            referenced |= set(api_deltas(api, repo["name"], v["number"]))
    assert not mine & referenced
    assert (c1, c2) in referenced
    href = api.json("POST", "/api/v1/orphans/cleanup", 202, json={})["task"]
    result = api.run_task(href)["result"]
    assert result["rows_deleted"]["deltas"] >= len(mine)
    for frm, to in mine:
        assert not pair_dir(pool, frm, to).exists(), (frm, to)
    for frm, to in referenced:
        assert (pair_dir(pool, frm, to) / "superblock").is_file(), (frm, to)
    # The pool's delta indexes (by-products of generation) name only remaining deltas.
    remaining = {str(n) for n in list_deltas(Repo.open(pool))}
    for target in list_indexes(Repo.open(pool)):
        index = parse_index((pool / index_path(target)).read_bytes())
        assert index and set(index) <= remaining, target
    assert not (pool / index_path(c1)).exists()
    # Still served and still usable.
    base = pin(api, "dl")
    name = DeltaName(Checksum(c2), Checksum(c3))
    digest = api_deltas(api, "dl")[(c2, c3)]
    assert hashlib.sha256(served(api, base, name.superblock_path)).hexdigest() == digest


# -- the client ------------------------------------------------------------------------------


def test_client_delta_settings_create_and_list(
    api: ApiClient,
    world: World,
    server: ServiceServer,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """``pyostree repository create/update --…delta…``, ``repository delta create/list``."""
    monkeypatch.setenv("PYOSTREE_SERVER", server.url)
    monkeypatch.setenv("PYOSTREE_TOKEN", api.token)

    def run(*argv: str) -> tuple[int, str, str]:
        capsys.readouterr()
        code = main(list(argv))
        out, err = capsys.readouterr()
        return code, out, err

    c1, c2, c3 = world.commits
    code, _out, err = run("repository", "create", "cli", "--no-compute-delta", "--delta-depth", "3")
    assert code == 0, err
    shown = api.json("GET", f"{R}/cli")
    assert (shown["compute_delta"], shown["delta_depth"], shown["delta_from_scratch"]) == (
        False,
        3,
        False,
    )
    code, _out, err = run("repository", "update", "cli", "--compute-delta", "--delta-from-scratch")
    assert code == 0, err
    shown = api.json("GET", f"{R}/cli")
    assert (shown["compute_delta"], shown["delta_from_scratch"]) == (True, True)
    modify(api, "cli", add_refs=[REF], source={"repository": "dl", "version": 1}, depth=-1)
    # Depth 3 from C2 reaches C1 only; plus C2 from scratch.
    assert set(api_deltas(api, "cli")) == {(c1, c2), (None, c2)}
    code, _out, err = run("repository", "delta", "create", "cli", "--from", c2, "--to", c1)
    assert code == 0, err
    code, out, err = run("repository", "delta", "list", "cli", "--json")
    assert code == 0, err
    listed = {(d["from"], d["to"]) for d in json.loads(out)["results"]}
    assert listed == {(c1, c2), (None, c2), (c2, c1)}
    code, out, err = run("repository", "delta", "list", "cli", "--version", "1")
    assert code == 0, err
    assert "(scratch)" in out and c1 in out
    code, _out, err = run("repository", "delta", "create", "cli", "--to", c3)
    assert code != 0
    assert "not in the latest version" in err
