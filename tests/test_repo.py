"""The archive repository: init/open, objects, refs, revisions, closures, summary."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

from libpyostree.commit import commit_directory
from libpyostree.errors import (
    CorruptObjectError,
    InvalidNameError,
    ObjectNotFoundError,
    RefConflictError,
    RefNotFoundError,
    RepoError,
)
from libpyostree.fsck import fsck
from libpyostree.gvariant import Variant
from libpyostree.names import Checksum
from libpyostree.objects import DirMeta, DirTree, FileHeader, ObjectType, metadata_checksum
from libpyostree.objects.summary import parse_summary
from libpyostree.repo import Repo
from libpyostree.summary import update_summary
from libpyostree.walk import iter_commit_closure, iter_history


def make_tree(root: Path, variant: int = 0) -> Path:
    (root / "usr" / "bin").mkdir(parents=True)
    (root / "usr" / "bin" / "tool").write_bytes(b"#!/bin/sh\necho %d\n" % variant)
    (root / "usr" / "bin" / "tool").chmod(0o755)
    (root / "etc").mkdir()
    (root / "etc" / "os-release").write_text(f"VERSION={variant}\n")
    (root / "etc" / "empty").write_bytes(b"")
    os.symlink("../usr/bin/tool", root / "etc" / "link")
    return root


@pytest.fixture
def repo(tmp_path: Path) -> Repo:
    return Repo.init(tmp_path / "repo")


def commit_n(repo: Repo, tmp_path: Path, n: int, branch: str = "main") -> list[Checksum]:
    out: list[Checksum] = []
    for i in range(n):
        src = make_tree(tmp_path / f"src-{branch.replace('/', '_')}-{i}", i)
        out.append(
            commit_directory(
                repo,
                src,
                branch=branch,
                subject=f"commit {i}",
                timestamp=1_700_000_000 + i,
                owner_uid=0,
                owner_gid=0,
            )
        )
    return out


def test_init_writes_ostree_config_and_layout(tmp_path: Path) -> None:
    Repo.init(tmp_path / "r")
    assert (tmp_path / "r" / "config").read_text() == "[core]\nrepo_version=1\nmode=archive-z2\n"
    for sub in ("objects", "refs/heads", "refs/remotes", "refs/mirrors", "state", "tmp"):
        assert (tmp_path / "r" / sub).is_dir()
    assert Repo.open(tmp_path / "r").mode == "archive-z2"


def test_init_refuses_existing_repository_and_bare_mode(tmp_path: Path) -> None:
    Repo.init(tmp_path / "r")
    with pytest.raises(RepoError, match="already"):
        Repo.init(tmp_path / "r")
    with pytest.raises(RepoError, match="only archive"):
        Repo.init(tmp_path / "b", mode="bare")


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ("[core]\nrepo_version=1\nmode=bare\n", "'bare' is not supported"),
        ("[core]\nrepo_version=1\nmode=bare-user\n", "'bare-user' is not supported"),
        ("[core]\nrepo_version=1\n", "'bare' is not supported"),
        ("[core]\nrepo_version=2\nmode=archive-z2\n", "repo_version"),
        ("[core]\nrepo_version=1\nmode=weird\n", "invalid repository mode"),
        ("\x00\x01garbage\n", "not a group or key=value"),
        ("mode=archive\n", "not a group"),
    ],
)
def test_open_refuses_bad_configs(tmp_path: Path, config: str, message: str) -> None:
    Repo.init(tmp_path / "r")
    (tmp_path / "r" / "config").write_text(config)
    with pytest.raises(RepoError, match=message):
        Repo.open(tmp_path / "r")


def test_open_archive_alias_and_missing_repo(tmp_path: Path) -> None:
    Repo.init(tmp_path / "r")
    (tmp_path / "r" / "config").write_text("[core]\nrepo_version=1\nmode=archive\n")
    assert Repo.open(tmp_path / "r").mode == "archive"
    with pytest.raises(RepoError, match="no config"):
        Repo.open(tmp_path / "nothing")


def test_objects_are_written_once_and_typed_reads_verify(repo: Repo) -> None:
    data = DirMeta(0, 0, 0o40755).to_bytes()
    csum = repo.write_metadata(ObjectType.DIR_META, data)
    path = repo.object_path(csum, ObjectType.DIR_META)
    inode = path.stat().st_ino
    assert repo.write_object_raw(csum, ObjectType.DIR_META, data) is False
    assert path.stat().st_ino == inode  # never rewritten
    assert oct(path.stat().st_mode & 0o777) == "0o644"
    path.chmod(0o644)
    path.write_bytes(DirMeta(0, 0, 0o40700).to_bytes())
    with pytest.raises(CorruptObjectError, match="checksum expected"):
        repo.read_dirmeta(csum)
    assert repo.read_dirmeta(csum, verify=False).mode == 0o40700
    assert repo.read_object_raw(csum, ObjectType.DIR_META) == path.read_bytes()
    assert not list((repo.path / "tmp").glob(".tmp-*"))


def test_write_metadata_refuses_wrong_expected_checksum_and_bad_structure(repo: Repo) -> None:
    data = DirTree().to_bytes()
    with pytest.raises(CorruptObjectError, match="expected="):
        repo.write_metadata(ObjectType.DIR_TREE, data, expected="00" * 32)
    with pytest.raises(CorruptObjectError):
        repo.write_metadata(ObjectType.DIR_META, b"\0" * 12)  # mode 0 is not a directory
    assert repo.write_metadata(ObjectType.DIR_TREE, data) == metadata_checksum(data)


def test_content_round_trip(repo: Repo) -> None:
    header = FileHeader(0, 0, 0o100644)
    csum = repo.write_content(header, b"hello")
    assert repo.read_file(csum) == (header, b"hello")
    with pytest.raises(ObjectNotFoundError, match="No such file object"):
        repo.read_file("ab" * 32)


def test_refs_nested_remote_and_alias(repo: Repo, tmp_path: Path) -> None:
    c1, c2 = commit_n(repo, tmp_path, 2)
    repo.set_ref("fedora/x86_64/iot", c1)
    repo.set_ref("origin:main", c2)
    repo.set_alias("latest", "main")
    assert repo.list_refs() == {
        "fedora/x86_64/iot": c1, "latest": c2, "main": c2, "origin:main": c2,
    }  # fmt: skip
    assert repo.ref_alias_target("latest") == "main"
    assert (repo.path / "refs" / "remotes" / "origin" / "main").read_text() == c2 + "\n"
    with pytest.raises(InvalidNameError):
        repo.set_ref("../escape", c1)
    repo.set_ref("fedora/x86_64/iot", None)
    assert "fedora/x86_64/iot" not in repo.list_refs()


def test_set_ref_compare_and_swap(repo: Repo, tmp_path: Path) -> None:
    c1, c2 = commit_n(repo, tmp_path, 2)
    with pytest.raises(RefConflictError, match="expected"):
        repo.set_ref("main", c1, expected=c1)
    repo.set_ref("main", c1, expected=c2)
    with pytest.raises(RefConflictError):
        repo.set_ref("new", c1, expected=c2)
    repo.set_ref("new", c1, expected=None)
    assert repo.read_ref("new") == c1


def test_concurrent_cas_updates_lose_cleanly(repo: Repo, tmp_path: Path) -> None:
    (c1,) = commit_n(repo, tmp_path, 1, "base")
    wins: list[int] = []

    def attempt(i: int) -> None:
        try:
            repo.set_ref("race", c1, expected=None)
            wins.append(i)
        except RefConflictError:
            pass

    threads = [threading.Thread(target=attempt, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(wins) == 1


def test_rev_parse(repo: Repo, tmp_path: Path) -> None:
    c = commit_n(repo, tmp_path, 3)
    assert repo.resolve_rev("main") == c[2]
    assert repo.resolve_rev("main^") == c[1]
    assert repo.resolve_rev("main^^") == c[0]
    assert repo.resolve_rev(c[0]) == c[0]
    assert repo.resolve_rev(c[1][:10]) == c[1]
    with pytest.raises(RefNotFoundError, match="no parent"):
        repo.resolve_rev("main^^^")
    with pytest.raises(RefNotFoundError, match="not found"):
        repo.resolve_rev("nope")


def test_closure_depths_and_missing_parent(repo: Repo, tmp_path: Path) -> None:
    c = commit_n(repo, tmp_path, 3)

    def commits(depth: int) -> list[str]:
        return [o for o, t in iter_commit_closure(repo, c[2], depth) if t is ObjectType.COMMIT]

    assert commits(0) == [c[2]]
    assert commits(1) == [c[2], c[1]]
    assert commits(-1) == [c[2], c[1], c[0]]
    objects = list(iter_commit_closure(repo, c[2], -1))
    assert len(objects) == len(set(objects))
    repo.object_path(c[0], ObjectType.COMMIT).unlink()  # shallow history is fine
    assert commits(-1) == [c[2], c[1]]
    assert [x for x, _ in iter_history(repo, c[2])] == [c[2], c[1]]


def test_closure_reports_missing_tree_objects(repo: Repo, tmp_path: Path) -> None:
    (c,) = commit_n(repo, tmp_path, 1)
    tree = repo.read_commit(c).root_dirtree
    repo.object_path(tree, ObjectType.DIR_TREE).unlink()
    with pytest.raises(ObjectNotFoundError, match=tree):
        list(iter_commit_closure(repo, c))


def test_summary_lists_heads_sorted_with_timestamps(repo: Repo, tmp_path: Path) -> None:
    commit_n(repo, tmp_path, 1, "b/x")
    c = commit_n(repo, tmp_path, 1, "a")
    repo.set_ref("origin:remote-only", c[0])
    summary = parse_summary(update_summary(repo, timestamp=1))
    assert [r.name for r in summary.refs] == ["a", "b/x"]
    assert summary.refs[0].timestamp == 1_700_000_000
    assert summary.refs[0].commit_size == len(repo.read_object_raw(c[0], ObjectType.COMMIT))
    assert summary.metadata["ostree.summary.mode"] == Variant("s", "archive-z2")


@pytest.mark.parametrize("processes", [False, True], ids=["threads", "processes"])
def test_fsck_reports_every_problem(repo: Repo, tmp_path: Path, processes: bool) -> None:
    c = commit_n(repo, tmp_path, 2)
    assert fsck(repo, processes=processes, threads=2).ok
    victims = [csum for csum, t in iter_commit_closure(repo, c[1]) if t is ObjectType.FILE][:3]
    for v in victims:
        path = repo.object_path(v, ObjectType.FILE)
        data = bytearray(path.read_bytes())
        data[-1] ^= 0xFF
        path.write_bytes(bytes(data))
    result = fsck(repo, processes=processes, threads=2)
    assert {p.checksum for p in result.problems} == set(victims)
    assert all(p.objtype == "file" for p in result.problems)


def test_commit_directory_extends_branch_and_records_binding(repo: Repo, tmp_path: Path) -> None:
    c = commit_n(repo, tmp_path, 2)
    second = repo.read_commit(c[1])
    assert second.parent == c[0]
    assert second.ref_bindings == ["main"]
    assert second.subject == "commit 1"


def test_mirror_refs_by_collection(repo: Repo, tmp_path: Path) -> None:
    (c,) = commit_n(repo, tmp_path, 1)
    repo.set_mirror_ref("org.example.Os", "os/x86_64/stable", c, expected=None)
    assert (repo.path / "refs/mirrors/org.example.Os/os/x86_64/stable").read_text() == c + "\n"
    assert repo.list_mirror_refs() == {("org.example.Os", "os/x86_64/stable"): c}
    assert repo.read_mirror_ref("org.example.Os", "os/x86_64/stable") == c
    with pytest.raises(RefConflictError):
        repo.set_mirror_ref("org.example.Os", "os/x86_64/stable", c, expected=None)
    for bad in ("nodots", "org..x", "1org.example", "org.ex-ample"):
        with pytest.raises(InvalidNameError):
            repo.set_mirror_ref(bad, "ref", c)
    assert "os/x86_64/stable" not in repo.list_refs()  # heads and remotes only, as `ostree refs`
