"""Archive import (issue 3): osbuild ``commit.tar`` and tarballs of archive repositories.

1. Bad input: every hostile or broken archive gives its own error class and phrase and
   leaves the target exactly as it was: the same files (and bytes) under ``objects/`` and
   ``refs/``, the same ``config``/``summary``, and nothing left behind in ``tmp/``.
   These build their sources with libpyostree itself, so they run without ``ostree``.
2. Real data (``ostree`` marker): archives of repositories made by the real ``ostree``
   import; ``ostree fsck`` and ``pyostree fsck`` pass and ``ostree log`` shows the same
   history: the osbuild layout (plain, gz, xz, zstd, real GNU tar with pax headers), plain
   ``tar -cf x.tar repo/`` of a multi-ref repository with history, a child commit and a
   chain of 5 made with ``ostree commit --parent`` in a fresh repository, no-op re-imports,
   the regenerated summary, detached metadata, progress, sha256 and the CLI.
"""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import subprocess
import sys
import tarfile
import threading
from collections.abc import Iterable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest

from libpyostree.archive import (
    ArchiveError,
    ImportLimits,
    ImportProgress,
    ImportRefusedError,
    ImportResult,
    import_archive,
)
from libpyostree.commit import commit_directory
from libpyostree.errors import CorruptObjectError, OstreeError
from libpyostree.gvariant import Variant
from libpyostree.names import Checksum
from libpyostree.objects import (
    DirMeta,
    DirTree,
    ObjectType,
    build_commitmeta,
    metadata_checksum,
    parse_summary,
    read_filez,
)
from libpyostree.repo import Repo
from libpyostree.summary import update_summary
from libpyostree.walk import iter_commit_closure
from tests.archives import (
    COMPRESSIONS,
    EDGE_REF,
    Compression,
    Member,
    compose_json,
    compose_member,
    compress_file,
    corrupt_compressed_trailer,
    detached_metadata,
    dir_member,
    file_member,
    member_data,
    member_offsets,
    non_normal_commit_bytes,
    object_members,
    object_name,
    osbuild_members,
    osbuild_tar_with_binary,
    pax_header_blocks,
    read_commit_raw,
    ref_checksum,
    repo_members,
    sha256_file,
    tar_with_binary,
    truncate,
    with_data,
    write_osbuild_tar,
    write_tar,
    zero_member,
)
from tests.ostree_cli import (
    BASE_TIME,
    build_small_repo,
    iso,
    log_checksums,
    make_small_tree,
    ostree_commit,
    pyostree_result,
    run_ostree,
    run_pyostree,
)

REF = EDGE_REF
MIB = 1024 * 1024


# --- the target: snapshots and the "untouched" check ---------------------------------------


def snapshot(repo: Path) -> dict[str, bytes]:
    """Every file and symlink under ``objects/`` and ``refs/`` with its bytes (a symlink
    as ``-> target``), plus ``config`` and ``summary``.  ``refs/.lock`` (the lock file
    ref updates take) is not a ref and is left out."""
    out: dict[str, bytes] = {}
    for top in ("objects", "refs"):
        for dirpath, dirnames, filenames in os.walk(repo / top):
            links = [d for d in dirnames if Path(dirpath, d).is_symlink()]
            for name in [*filenames, *links]:
                path = Path(dirpath, name)
                rel = path.relative_to(repo).as_posix()
                if rel == "refs/.lock":
                    continue
                if path.is_symlink():
                    out[rel] = b"-> " + os.readlink(path).encode()
                else:
                    out[rel] = path.read_bytes()
    for name in ("config", "summary", "summary.sig"):
        if (repo / name).exists():
            out[name] = (repo / name).read_bytes()
    return out


def tmp_listing(repo: Path) -> set[str]:
    out = set()
    for dirpath, dirnames, filenames in os.walk(repo / "tmp"):
        for name in [*dirnames, *filenames]:
            out.add(Path(dirpath, name).relative_to(repo).as_posix())
    return out


def expect_failure(
    target: Path,
    archive: Path,
    error: type[Exception],
    phrase: str | None,
    **kwargs: Any,
) -> Exception:
    """Import must raise ``error`` whose message holds ``phrase`` (case-insensitive) and
    leave ``target`` untouched."""
    before, tmp_before = snapshot(target), tmp_listing(target)
    with pytest.raises(error) as info:
        import_archive(Repo.open(target), archive, **kwargs)
    if phrase is not None:
        assert phrase.lower() in str(info.value).lower(), f"{phrase!r} not in {info.value!r}"
    assert_untouched(target, before, tmp_before)
    return info.value


def assert_untouched(target: Path, before: dict[str, bytes], tmp_before: set[str]) -> None:
    after = snapshot(target)
    added = sorted(set(after) - set(before))
    removed = sorted(set(before) - set(after))
    changed = sorted(k for k in set(before) & set(after) if before[k] != after[k])
    assert (added, removed, changed) == ([], [], []), "target changed"
    assert tmp_listing(target) == tmp_before, "leftovers in tmp/"


def object_files(repo: Path) -> set[str]:
    return {p.relative_to(repo).as_posix() for p in (repo / "objects").glob("*/*")}


def copy_repo(src: Path, dest: Path) -> Path:
    shutil.copytree(src, dest, symlinks=True)
    return dest


# --- sources made by libpyostree (no ostree CLI needed) -------------------------------------


@dataclass(frozen=True)
class PySources:
    """``parent``: REF at ``h1`` (the target template, with a summary).  ``child``: a
    fresh repository holding only ``c1`` (parent ``h1``, another tree) on REF, as an
    osbuild build with ``--parent`` makes it.  ``members``: ``child`` in the osbuild
    layout, read into memory."""

    root: Path
    parent: Path
    child: Path
    h1: Checksum
    c1: Checksum
    members: tuple[Member, ...]

    @property
    def new_objects(self) -> set[str]:
        """Object paths (repo-relative) of ``child`` that ``parent`` lacks."""
        return object_files(self.child) - object_files(self.parent)


def py_commit(
    repo: Repo, tree: Path, *, parent: str | None = None, ts: int = 0, **kw: Any
) -> Checksum:
    return commit_directory(
        repo,
        tree,
        branch=kw.pop("branch", REF),
        subject=kw.pop("subject", "commit"),
        parent=parent,
        timestamp=BASE_TIME + ts,
        owner_uid=0,
        owner_gid=0,
        metadata={"version": Variant("s", f"9.{ts}")},
        **kw,
    )


@pytest.fixture(scope="session")
def py_sources(tmp_path_factory: pytest.TempPathFactory) -> PySources:
    root = tmp_path_factory.mktemp("py-sources")
    for variant in range(3):
        make_small_tree(root / f"tree{variant}", variant)
    parent = Repo.init(root / "parent")
    h1 = py_commit(parent, root / "tree0", subject="base")
    update_summary(parent)
    child = Repo.init(root / "child")
    c1 = py_commit(child, root / "tree1", parent=h1, ts=1, subject="child")
    members = tuple(osbuild_members(child.path, REF, read=True))
    return PySources(root, parent.path, child.path, h1, c1, members)


@pytest.fixture
def target(py_sources: PySources, tmp_path: Path) -> Path:
    """A copy of ``py_sources.parent``: REF at h1."""
    return copy_repo(py_sources.parent, tmp_path / "target")


@pytest.fixture
def empty_target(tmp_path: Path) -> Path:
    return Repo.init(tmp_path / "empty-target").path


def members_tar(
    tmp_path: Path,
    members: Iterable[Member],
    name: str = "archive.tar",
    **kw: Any,
) -> Path:
    return write_tar(tmp_path / name, list(members), **kw)


def find_member(members: tuple[Member, ...] | list[Member], endswith: str) -> Member:
    found = [m for m in members if m.name.endswith(endswith)]
    assert len(found) == 1, (endswith, [m.name for m in found])
    return found[0]


def new_object_members(src: PySources, suffix: str) -> list[Member]:
    wanted = {"./repo/" + rel for rel in src.new_objects}
    return [m for m in object_members(src.members, suffix) if m.name in wanted]


# --- 0. the base of every hostile archive is valid ------------------------------------------


def test_child_archive_imports_into_parent(
    py_sources: PySources, target: Path, tmp_path: Path
) -> None:
    """The unmodified child archive the hostile tests start from imports cleanly."""
    archive = members_tar(tmp_path, py_sources.members)
    result = import_archive(Repo.open(target), archive, ref=REF)
    assert isinstance(result, ImportResult)
    assert result.commits == (py_sources.c1,)
    assert result.refs == {REF: py_sources.c1}
    assert result.changed
    assert result.objects_added == len(py_sources.new_objects)
    shared = object_files(py_sources.child) & object_files(py_sources.parent)
    assert result.objects_present == len(shared)
    assert Repo.open(target).read_ref(REF) == py_sources.c1
    assert object_files(target) == object_files(py_sources.parent) | object_files(py_sources.child)
    assert not [p for p in tmp_listing(target) if "import" in p]
    # The tree objects the closure check walked: the commit's whole tree, including
    # the objects the target already held, each once.
    trees = list(result.tree_objects())
    assert len(trees) == len(set(trees)) == len(result.trees) // 33
    closure = set(iter_commit_closure(Repo.open(target), py_sources.c1))
    assert set(trees) == {
        (c, t) for c, t in closure if t not in (ObjectType.COMMIT, ObjectType.COMMIT_META)
    }


def test_same_member_twice_with_same_content_is_accepted(
    py_sources: PySources, target: Path, tmp_path: Path
) -> None:
    """``tar -r`` appends a file again: identical duplicates are harmless."""
    again = [
        find_member(py_sources.members, "/refs/heads/" + REF),
        object_members(py_sources.members, ".filez")[0],
    ]
    archive = members_tar(tmp_path, [*py_sources.members, *again])
    assert import_archive(Repo.open(target), archive).refs == {REF: py_sources.c1}


@pytest.mark.parametrize("damage", [None, "swapped-inflated-in-chunks", "swapped-staged"])
def test_content_over_one_mib(damage: str | None, tmp_path: Path) -> None:
    """Content over 1 MiB is inflated in chunks, members over 1 MiB are staged in files
    and verified from there: both import, and both are verified."""
    tree = tmp_path / "tree"
    tree.mkdir()
    (tree / "zeros").write_bytes(bytes(3 * MIB))  # a small member, large content
    (tree / "ones").write_bytes(b"\x01" * (3 * MIB))
    (tree / "random-a").write_bytes(hashlib.shake_256(b"a").digest(2 * MIB))  # large members
    (tree / "random-b").write_bytes(hashlib.shake_256(b"b").digest(2 * MIB))
    (tree / "small").write_bytes(b"small\n")
    src = Repo.init(tmp_path / "src")
    head = py_commit(src, tree)
    members = osbuild_members(src.path, REF, read=True)
    by_content: dict[bytes, Member] = {}
    for member in object_members(members, ".filez"):
        content = read_filez(member_data(member))[1]
        by_content[content[:1] + bytes([len(content) >> 20])] = member
    pairs = {
        "swapped-inflated-in-chunks": (b"\x00\x03", b"\x01\x03"),
        "swapped-staged": (
            hashlib.shake_256(b"a").digest(1) + b"\x02",
            hashlib.shake_256(b"b").digest(1) + b"\x02",
        ),
    }
    if damage is not None:
        a, b = (by_content[k] for k in pairs[damage])
        assert len(member_data(a)) > MIB or damage != "swapped-staged"
        swapped = {a.name: with_data(a, member_data(b)), b.name: with_data(b, member_data(a))}
        members = [swapped.get(m.name, m) for m in members]
    archive = members_tar(tmp_path, members)
    target = Repo.init(tmp_path / "target").path
    if damage is not None:
        expect_failure(target, archive, CorruptObjectError, "checksum expected=")
        return
    result = import_archive(Repo.open(target), archive)
    assert result.refs == {REF: head}
    assert result.objects_added == len(object_files(src.path))
    for rel in object_files(src.path):
        assert (target / rel).read_bytes() == (src.path / rel).read_bytes()
    assert not [p for p in tmp_listing(target) if "import" in p]


# --- 1. bad input ------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["text", "random", "gzip-of-text", "zeros-then-text"])
def test_not_a_tar_archive(kind: str, target: Path, tmp_path: Path) -> None:
    data = {
        "text": b"this is a README, not a tar archive\n" * 200,
        "random": hashlib.sha256(b"seed").digest() * 2048,
        "gzip-of-text": b"",
        "zeros-then-text": b"x" * 100 + bytes(1000) + b"hello" * 100,
    }[kind]
    path = tmp_path / "commit.tar"
    path.write_bytes(data)
    if kind == "gzip-of-text":
        (tmp_path / "text").write_bytes(b"plain words, no tar headers\n" * 500)
        compress_file(tmp_path / "text", path, "gz")
    expect_failure(target, path, ArchiveError, "not a tar archive")


@pytest.mark.parametrize("where", ["in-object-data", "in-ref-header", "in-last-header"])
def test_truncated_tar(where: str, py_sources: PySources, target: Path, tmp_path: Path) -> None:
    full = members_tar(tmp_path, py_sources.members, "full.tar")
    offsets = member_offsets(full)
    if where == "in-object-data":
        biggest = max(object_members(py_sources.members, ".filez"), key=lambda m: m.size)
        _header, data, size = offsets[biggest.name]
        cut = data + size // 2
    elif where == "in-ref-header":
        cut = offsets[f"./repo/refs/heads/{REF}"][0] + 100
    else:  # everything the import needs is before the cut; the archive is still cut short
        cut = max(header for header, _data, _size in offsets.values()) + 100
    archive = truncate(full, tmp_path / "commit.tar", cut)
    expect_failure(target, archive, ArchiveError, "truncated")


@pytest.mark.parametrize("damage", ["truncated", "bad-trailer-check"])
@pytest.mark.parametrize("compression", ["gz", "xz", "zst"])
def test_corrupt_compressed_stream(
    compression: Compression, damage: str, py_sources: PySources, target: Path, tmp_path: Path
) -> None:
    """A truncated stream, or one whose final integrity check (gzip CRC32, xz footer, zstd
    content checksum) is wrong: the tar inside may look complete, the import must not."""
    good = members_tar(tmp_path, py_sources.members, "good.tar.x", compression=compression)
    archive = tmp_path / "commit.tar"
    if damage == "truncated":
        truncate(good, archive, good.stat().st_size // 2)
    else:
        corrupt_compressed_trailer(good, archive, compression)
    expect_failure(target, archive, ArchiveError, "compressed stream")


UNSAFE = {
    "dotdot-top": "../evil",
    "dotdot-inside": "./repo/../../evil",
    "dotdot-objects": "./repo/objects/../../../evil",
    "absolute": "/tmp/pyostree-import-evil",
    "dotdot-dir": "./repo/refs/../../../evil-dir/",
}


@pytest.mark.parametrize("name", UNSAFE.values(), ids=UNSAFE.keys())
def test_unsafe_path(name: str, py_sources: PySources, target: Path, tmp_path: Path) -> None:
    member = dir_member(name) if name.endswith("/") else file_member(name, b"evil\n")
    archive = members_tar(tmp_path, [*py_sources.members, member])
    expect_failure(target, archive, ArchiveError, "unsafe path")
    assert not Path("/tmp/pyostree-import-evil").exists()


def test_unsafe_path_first_member(py_sources: PySources, target: Path, tmp_path: Path) -> None:
    archive = members_tar(tmp_path, [file_member("../../evil", b"x"), *py_sources.members])
    expect_failure(target, archive, ArchiveError, "unsafe path")


def _links(src: PySources) -> dict[str, Member]:
    some_filez = object_members(src.members, ".filez")[0].name
    new_name = object_name("./repo", "ab" * 32, "filez")
    return {
        "symlink-object": Member(new_name, tarfile.SYMTYPE, linkname="/etc/passwd"),
        "symlink-object-to-member": Member(
            new_name, tarfile.SYMTYPE, linkname="../../" + some_filez.split("/objects/")[1]
        ),
        "symlink-outside": Member("./repo/evil", tarfile.SYMTYPE, linkname="../../../etc"),
        "symlink-objects-dir": Member("./repo/objects/zz", tarfile.SYMTYPE, linkname="/tmp"),
        "ref-symlink-outside-heads": Member(
            "./repo/refs/heads/evil", tarfile.SYMTYPE, linkname="../../config"
        ),
        "ref-symlink-absolute": Member(
            "./repo/refs/heads/evil", tarfile.SYMTYPE, linkname="/etc/passwd"
        ),
        "hardlink-between-members": Member(new_name, tarfile.LNKTYPE, linkname=some_filez),
        "hardlink-outside": Member(
            "./repo/objects/ab/hard.filez", tarfile.LNKTYPE, linkname="/etc/passwd"
        ),
        "hardlink-ref": Member(
            "./repo/refs/heads/hard", tarfile.LNKTYPE, linkname=f"./repo/refs/heads/{REF}"
        ),
    }


LINK_CASES = [
    "symlink-object",
    "symlink-object-to-member",
    "symlink-outside",
    "symlink-objects-dir",
    "ref-symlink-outside-heads",
    "ref-symlink-absolute",
    "hardlink-between-members",
    "hardlink-outside",
    "hardlink-ref",
]


@pytest.mark.parametrize("case", LINK_CASES)
def test_link_member(case: str, py_sources: PySources, target: Path, tmp_path: Path) -> None:
    archive = members_tar(tmp_path, [*py_sources.members, _links(py_sources)[case]])
    expect_failure(target, archive, ArchiveError, "link member")


@pytest.mark.parametrize(
    "kind", [tarfile.FIFOTYPE, tarfile.CHRTYPE, tarfile.BLKTYPE], ids=["fifo", "char", "block"]
)
def test_unsupported_member_type(
    kind: bytes, py_sources: PySources, target: Path, tmp_path: Path
) -> None:
    device = Member("./repo/objects/dev", kind, devmajor=1, devminor=3)
    archive = members_tar(tmp_path, [*py_sources.members, device])
    expect_failure(target, archive, ArchiveError, "unsupported member type")


@pytest.mark.parametrize(
    "which", ["ref", "compose.json", "config", "filez", "dirtree", "ref-then-alias"]
)
def test_duplicate_member_with_different_content(
    which: str, py_sources: PySources, target: Path, tmp_path: Path
) -> None:
    members = py_sources.members
    if which == "ref":
        first = find_member(members, f"/refs/heads/{REF}")
        second = with_data(first, f"{py_sources.h1}\n".encode())
    elif which == "compose.json":
        first = find_member(members, "/compose.json")
        second = compose_member({**compose_json(py_sources.child, REF), "ostree-version": "other"})
    elif which == "config":
        first = find_member(members, "/repo/config")
        second = with_data(first, member_data(first) + b"\n# changed\n")
    elif which == "ref-then-alias":
        # The ref file, then a symlink (an alias, otherwise allowed) at the same path.
        first = find_member(members, f"/refs/heads/{REF}")
        second = Member(first.name, tarfile.SYMTYPE, linkname="x86_64-other")
    else:
        suffix = "." + which
        first, other = object_members(members, suffix)[:2]
        second = with_data(first, member_data(other))
    assert member_data(first) != member_data(second)
    archive = members_tar(tmp_path, [*members, second])
    expect_failure(target, archive, ArchiveError, "duplicate member")


@pytest.mark.parametrize(
    "which", ["filez-swapped", "dirtree-swapped", "unreferenced-filez", "commit"]
)
def test_object_name_does_not_match_content(
    which: str, py_sources: PySources, target: Path, tmp_path: Path
) -> None:
    members = list(py_sources.members)
    if which == "unreferenced-filez":
        donor = object_members(members, ".filez")[0]
        members.append(replace(donor, name=object_name("./repo", "cd" * 32, "filez")))
    elif which == "commit":
        # A commit named after another checksum than its own bytes.
        commit = object_members(members, ".commit")[0]
        members.append(replace(commit, name=object_name("./repo", "ef" * 32, "commit")))
    else:
        suffix = ".filez" if which == "filez-swapped" else ".dirtree"
        a, b = new_object_members(py_sources, suffix)[:2]
        swapped = {a.name: with_data(a, member_data(b)), b.name: with_data(b, member_data(a))}
        members = [swapped.get(m.name, m) for m in members]
    archive = members_tar(tmp_path, members)
    expect_failure(target, archive, CorruptObjectError, "checksum expected=")


def _craft_commit(src: Path, dest: Path, **changes: Any) -> tuple[Path, Checksum]:
    """A copy of ``src`` whose REF points at a new commit: REF's commit with ``changes``
    (``data`` = raw bytes to store instead of the re-serialised commit)."""
    repo = Repo.open(copy_repo(src, dest))
    base = read_commit_raw(dest, ref_checksum(dest, REF))
    raw = changes.pop("data", None)
    commit = replace(base, **changes)
    data = raw(commit) if raw is not None else commit.to_bytes()
    checksum = metadata_checksum(data)
    repo.write_object_raw(checksum, ObjectType.COMMIT, data)
    (dest / "refs" / "heads" / REF).write_text(checksum + "\n")
    return dest, checksum


def _write_meta(repo: Path, objtype: ObjectType, data: bytes) -> Checksum:
    checksum = metadata_checksum(data)
    Repo.open(repo).write_object_raw(checksum, objtype, data)
    return checksum


@pytest.mark.parametrize(
    "which",
    ["non-normal-commit", "dirmeta-not-a-directory", "dirtree-unsafe-name", "filez-not-zlib"],
)
def test_invalid_metadata_or_content(
    which: str, py_sources: PySources, target: Path, tmp_path: Path
) -> None:
    """Objects named after their own bytes (so the name checks out) that are still bad."""
    src = tmp_path / "src"
    if which == "non-normal-commit":
        _craft_commit(py_sources.child, src, data=non_normal_commit_bytes)
    elif which == "dirmeta-not-a-directory":
        copy_repo(py_sources.child, tmp_path / "scratch")
        bad = _write_meta(
            tmp_path / "scratch", ObjectType.DIR_META, DirMeta(0, 0, 0o100644).to_bytes()
        )
        _craft_commit(tmp_path / "scratch", src, root_dirmeta=bad)
    elif which == "dirtree-unsafe-name":
        copy_repo(py_sources.child, tmp_path / "scratch")
        some_file = next(iter(Repo.open(tmp_path / "scratch").iter_objects(ObjectType.FILE)))[0]
        tree = DirTree(files=(("..", some_file),)).to_bytes()
        bad = _write_meta(tmp_path / "scratch", ObjectType.DIR_TREE, tree)
        _craft_commit(tmp_path / "scratch", src, root_dirtree=bad)
    else:
        copy_repo(py_sources.child, src)
        garbage = b"\x00\x00\x00\x10" + b"not a zlib stream at all" * 10
        name = hashlib.sha256(garbage).hexdigest()
        Repo.open(src).write_object_raw(Checksum(name), ObjectType.FILE, garbage)
    compose = {**compose_json(py_sources.child, REF), "ostree-commit": ref_checksum(src, REF)}
    archive = write_tar(tmp_path / "commit.tar", osbuild_members(src, REF, compose=compose))
    expect_failure(target, archive, CorruptObjectError, None)


def test_sparse_member_counts_against_the_size_limit(
    py_sources: PySources, target: Path, tmp_path: Path
) -> None:
    """GNU tar ``--sparse``: a 10 KiB archive whose member expands to 64 MiB of zeros
    (1 TiB would be as cheap).  What the tar expands to must count against the cap on
    decompressed output, or a tiny archive fills the disk under ``tmp/``."""
    stage = tmp_path / "stage"
    copy_repo(py_sources.child, stage / "repo")
    (stage / "compose.json").write_bytes(
        member_data(find_member(py_sources.members, "/compose.json"))
    )
    hole = stage / "repo" / "objects" / "78" / ("78" * 31 + ".filez")
    hole.parent.mkdir(exist_ok=True)
    with open(hole, "wb") as f:
        f.truncate(64 * MIB)
        f.seek(64 * MIB - 1)
        f.write(b"x")
    archive = tar_with_binary(
        tmp_path / "sparse.tar", stage, ".", options=["--format=gnu", "--sparse"]
    )
    assert archive.stat().st_size < 1 * MIB
    limits = ImportLimits(max_total_size=4 * MIB)
    expect_failure(target, archive, ArchiveError, None, limits=limits)


def test_giant_pax_header_is_refused(py_sources: PySources, target: Path, tmp_path: Path) -> None:
    """A 32 MiB pax extended header (a ``comment`` record) compresses to a few KiB; no tar
    header is legitimately that large, and tarfile holds it in memory whole (600 MiB of
    it took 1.8 GB RSS), so it must be refused like an oversized metadata member."""
    huge = [pax_header_blocks("comment", 32 * MIB), file_member("./repo/state/note", b"")]
    archive = members_tar(tmp_path, [*py_sources.members, *huge], compression="zst")
    assert archive.stat().st_size < 1 * MIB
    expect_failure(target, archive, ArchiveError, None)


def test_ref_mode_moves_only_that_ref(py_sources: PySources, target: Path, tmp_path: Path) -> None:
    src = copy_repo(py_sources.child, tmp_path / "src")
    other = py_commit(Repo.open(src), py_sources.root / "tree2", ts=3, branch="other/ref")
    archive = members_tar(tmp_path, repo_members(src, "repo"))
    result = import_archive(Repo.open(target), archive, ref=REF)
    assert result.refs == {REF: py_sources.c1}
    assert Repo.open(target).list_refs() == {REF: py_sources.c1}
    assert other in result.commits


def test_metadata_size_limit(py_sources: PySources, target: Path, tmp_path: Path) -> None:
    big = zero_member(object_name("./repo", "12" * 32, "dirtree"), 1 * MIB)
    archive = members_tar(tmp_path, [*py_sources.members, big])
    limits = ImportLimits(max_metadata_size=64 * 1024)
    expect_failure(target, archive, ArchiveError, "metadata size limit", limits=limits)


def test_metadata_over_128_mib_with_default_limits(
    py_sources: PySources, target: Path, tmp_path: Path
) -> None:
    """ostree's own OSTREE_MAX_METADATA_SIZE: a 129 MiB commit compresses to a few KiB."""
    big = zero_member(object_name("./repo", "34" * 32, "commit"), 129 * MIB)
    archive = members_tar(tmp_path, [*py_sources.members, big], compression="zst")
    expect_failure(target, archive, ArchiveError, "metadata size limit")


@pytest.mark.parametrize("compression", ["gz", "zst"])
def test_decompression_bomb(
    compression: Compression, py_sources: PySources, target: Path, tmp_path: Path
) -> None:
    """200 MB of zeros (a few hundred KiB compressed) against a 4 MiB cap."""
    bomb = zero_member(object_name("./repo", "56" * 32, "filez"), 200 * 1000 * 1000)
    archive = members_tar(tmp_path, [*py_sources.members, bomb], compression=compression)
    assert archive.stat().st_size < 1 * MIB
    limits = ImportLimits(max_total_size=4 * MIB)
    expect_failure(target, archive, ArchiveError, "decompressed size limit", limits=limits)


#: Run in a fresh interpreter, whose peak RSS is the import's alone.  ``VmHWM``, not
#: ``ru_maxrss``: Linux carries the forking parent's (pytest's) peak across ``exec`` into
#: the child's ``ru_maxrss``.
_BOMB_CHILD = """
import sys
from libpyostree.archive import ArchiveError, ImportLimits, import_archive
from libpyostree.repo import Repo
try:
    import_archive(Repo.init(sys.argv[2]), sys.argv[1], limits=ImportLimits(max_total_size=4 << 20))
except ArchiveError as exc:
    print("refused:", exc)
with open("/proc/self/status") as f:
    print(next(int(line.split()[1]) for line in f if line.startswith("VmHWM:")) // 1024)
"""


@pytest.mark.parametrize("compression", ["gz", "zst"])
def test_decompression_bomb_is_not_inflated_in_memory(
    compression: Compression, tmp_path: Path
) -> None:
    """The cap must bite while decompressing, not after: 1 GiB of zeros is 33 KiB of zstd,
    and a decompressor asked for "everything this input chunk gives" returns all of it at
    once (found: 2 GB peak RSS and 12 s for a 4 MiB cap)."""
    size = 1024 * MIB if compression == "zst" else 128 * MIB  # gzip is slower to write
    bomb = zero_member(object_name("./repo", "9a" * 32, "filez"), size)
    archive = members_tar(tmp_path, [dir_member("./"), bomb], compression=compression)
    proc = subprocess.run(
        [sys.executable, "-c", _BOMB_CHILD, archive, tmp_path / "target"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    refused, maxrss_mib = proc.stdout.strip().splitlines()
    assert refused.startswith("refused:") and "decompressed size limit" in refused.lower()
    assert int(maxrss_mib) < 100, f"peak RSS {maxrss_mib} MiB to refuse a bomb at 4 MiB"


@pytest.mark.parametrize("missing", ["filez", "dirtree", "dirmeta"])
def test_incomplete_closure(
    missing: str, py_sources: PySources, target: Path, empty_target: Path, tmp_path: Path
) -> None:
    """One object of the commit's tree is neither in the archive nor in the target (the
    only dirmeta is shared with the parent, so that case imports into an empty repo)."""
    if missing == "dirmeta":
        gone = object_members(py_sources.members, ".dirmeta")[0]
        into = empty_target
    else:
        gone = new_object_members(py_sources, "." + missing)[0]
        into = target
    archive = members_tar(tmp_path, [m for m in py_sources.members if m is not gone])
    expect_failure(into, archive, ImportRefusedError, "incomplete")


def test_missing_parent_refused_with_full_history(
    py_sources: PySources, empty_target: Path, tmp_path: Path
) -> None:
    archive = members_tar(tmp_path, py_sources.members)
    error = expect_failure(
        empty_target, archive, ImportRefusedError, "parent", require_full_history=True
    )
    assert py_sources.h1 in str(error)


def test_full_history_satisfied_by_target(
    py_sources: PySources, target: Path, tmp_path: Path
) -> None:
    archive = members_tar(tmp_path, py_sources.members)
    result = import_archive(Repo.open(target), archive, require_full_history=True)
    assert result.refs == {REF: py_sources.c1}


def test_missing_parent_allowed_without_full_history(
    py_sources: PySources, empty_target: Path, tmp_path: Path
) -> None:
    """Mode "all": history may start at the archive's commit."""
    archive = members_tar(tmp_path, py_sources.members)
    result = import_archive(Repo.open(empty_target), archive)
    assert result.refs == {REF: py_sources.c1}
    assert Repo.open(empty_target).read_commit(py_sources.c1).parent == py_sources.h1


def test_ref_mode_refuses_chain_that_misses_the_head(
    py_sources: PySources, target: Path, tmp_path: Path
) -> None:
    """The target moved on (h1 → h2) since the child was built on h1."""
    h2 = py_commit(Repo.open(target), py_sources.root / "tree2", ts=2, subject="diverged")
    archive = members_tar(tmp_path, py_sources.members)
    error = expect_failure(target, archive, ImportRefusedError, "does not extend", ref=REF)
    assert h2 in str(error) and py_sources.h1 in str(error)


def test_ref_mode_refuses_root_commit_over_existing_head(
    py_sources: PySources, target: Path, tmp_path: Path
) -> None:
    """A commit built without ``--parent`` cannot extend a ref that has a head."""
    fresh = Repo.init(tmp_path / "fresh")
    py_commit(fresh, py_sources.root / "tree2", ts=5, subject="no parent")
    archive = write_tar(tmp_path / "commit.tar", osbuild_members(fresh.path, REF))
    error = expect_failure(target, archive, ImportRefusedError, "does not extend", ref=REF)
    assert py_sources.h1 in str(error)


def test_ref_mode_new_ref_with_missing_parent_is_refused(
    py_sources: PySources, empty_target: Path, tmp_path: Path
) -> None:
    archive = members_tar(tmp_path, py_sources.members)
    error = expect_failure(empty_target, archive, ImportRefusedError, None, ref=REF)
    assert py_sources.h1 in str(error)


def test_ref_mode_new_ref_without_parent_is_accepted(
    py_sources: PySources, target: Path, tmp_path: Path
) -> None:
    fresh = Repo.init(tmp_path / "fresh")
    root = py_commit(fresh, py_sources.root / "tree2", ts=5, subject="root", branch="other/ref")
    archive = members_tar(tmp_path, repo_members(fresh.path, "repo"))
    result = import_archive(Repo.open(target), archive, ref="other/ref")
    assert result.refs == {"other/ref": root}
    assert Repo.open(target).read_ref(REF) == py_sources.h1


def test_ref_not_in_archive(py_sources: PySources, target: Path, tmp_path: Path) -> None:
    archive = members_tar(tmp_path, py_sources.members)
    expect_failure(
        target, archive, ImportRefusedError, "not in the archive", ref="fedora/41/x86_64/iot"
    )


@pytest.mark.parametrize("field", ["ostree-commit", "ref"])
def test_compose_json_disagrees_with_refs(
    field: str, py_sources: PySources, target: Path, tmp_path: Path
) -> None:
    compose = compose_json(py_sources.child, REF)
    compose[field] = py_sources.h1 if field == "ostree-commit" else "rhel/9/aarch64/edge"
    members = [
        compose_member(compose) if m.name == "./compose.json" else m for m in py_sources.members
    ]
    archive = members_tar(tmp_path, members)
    expect_failure(target, archive, ImportRefusedError, "compose.json")


@pytest.mark.parametrize("mode", ["bare", "bare-user", "bare-user-only", "bare-split-xattrs"])
def test_non_archive_repository_config(
    mode: str, py_sources: PySources, target: Path, tmp_path: Path
) -> None:
    config = f"[core]\nrepo_version=1\nmode={mode}\n".encode()
    members = [with_data(m, config) if m.name == "./repo/config" else m for m in py_sources.members]
    archive = members_tar(tmp_path, members)
    expect_failure(target, archive, ArchiveError, "only archive")


@pytest.mark.ostree
def test_bare_user_repository_made_by_ostree(target: Path, tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    run_ostree("init", f"--repo={repo}", "--mode=bare-user")
    make_small_tree(tmp_path / "tree", 0)
    ostree_commit(repo, "-b", REF, f"--timestamp={iso(BASE_TIME)}", tmp_path / "tree")
    archive = tar_with_binary(tmp_path / "bare.tar", tmp_path, "repo/")
    expect_failure(target, archive, ArchiveError, "only archive")


def test_sha256_mismatch(py_sources: PySources, target: Path, tmp_path: Path) -> None:
    archive = members_tar(tmp_path, py_sources.members)
    wrong = hashlib.sha256(b"another archive").hexdigest()
    expect_failure(target, archive, ArchiveError, "sha256", sha256=wrong)


def test_sha256_match(py_sources: PySources, target: Path, tmp_path: Path) -> None:
    archive = members_tar(tmp_path, py_sources.members, compression="xz")
    result = import_archive(Repo.open(target), archive, sha256=sha256_file(archive))
    assert result.refs == {REF: py_sources.c1}


def test_failed_ref_update_rolls_back_earlier_refs(
    py_sources: PySources, target: Path, tmp_path: Path
) -> None:
    """The target's ``stable`` is an alias of REF; the archive has a plain ``stable`` ref
    and, before it in the tar, a new ref ``aaa-new``.  Whatever the verdict on ``stable``,
    a failure must not leave ``aaa-new`` pointing at a commit whose objects were removed."""
    Repo.open(target).set_alias("stable", REF)
    src = Repo.init(tmp_path / "src")
    new = py_commit(src, py_sources.root / "tree2", ts=7, branch="aaa-new", subject="new")
    src.set_ref("stable", new)
    archive = members_tar(tmp_path, repo_members(src.path, "repo"))
    before, tmp_before = snapshot(target), tmp_listing(target)
    try:
        result = import_archive(Repo.open(target), archive)
    except OstreeError:
        assert_untouched(target, before, tmp_before)
    else:  # accepted: then the target must be consistent
        repo = Repo.open(target)
        for ref, commit in result.refs.items():
            assert repo.read_ref(ref) == commit
            repo.read_commit(commit)


def test_older_archive_in_all_mode_does_not_move_ref_back(
    py_sources: PySources, target: Path, tmp_path: Path
) -> None:
    """After the child extended REF, importing the parent's archive again (mode "all") is a
    commit that is already there: a no-op, not a rollback of REF to h1."""
    import_archive(Repo.open(target), members_tar(tmp_path, py_sources.members, "child.tar"))
    assert Repo.open(target).read_ref(REF) == py_sources.c1
    old = write_tar(tmp_path / "parent.tar", osbuild_members(py_sources.parent, REF))
    result = import_archive(Repo.open(target), old)
    assert Repo.open(target).read_ref(REF) == py_sources.c1
    assert not result.changed


def test_older_archive_in_ref_mode_is_a_noop(
    py_sources: PySources, target: Path, tmp_path: Path
) -> None:
    import_archive(
        Repo.open(target), members_tar(tmp_path, py_sources.members, "child.tar"), ref=REF
    )
    old = write_tar(tmp_path / "parent.tar", osbuild_members(py_sources.parent, REF))
    before = snapshot(target)
    result = import_archive(Repo.open(target), old, ref=REF)
    assert not result.changed and result.refs == {}
    assert snapshot(target) == before


def test_progress_from_a_pipe(py_sources: PySources, target: Path, tmp_path: Path) -> None:
    """A non-seekable stream: the size is unknown, so ``bytes_total`` must not claim one
    smaller than what was read."""
    archive = members_tar(tmp_path, py_sources.members, compression="gz")
    events: list[ImportProgress] = []
    read_fd, write_fd = os.pipe()

    def feed() -> None:
        with open(write_fd, "wb") as w:
            w.write(archive.read_bytes())

    feeder = threading.Thread(target=feed)
    feeder.start()
    try:
        with open(read_fd, "rb") as stream:
            result = import_archive(Repo.open(target), stream, progress=events.append)
    finally:
        feeder.join()
    assert result.refs == {REF: py_sources.c1}
    assert events and events[-1].bytes_read == archive.stat().st_size
    for event in events:
        assert event.bytes_total is None or event.bytes_read <= event.bytes_total, event


def test_import_from_an_in_memory_stream(
    py_sources: PySources, target: Path, tmp_path: Path
) -> None:
    archive = members_tar(tmp_path, py_sources.members, compression="zst")
    result = import_archive(Repo.open(target), io.BytesIO(archive.read_bytes()), ref=REF)
    assert result.refs == {REF: py_sources.c1}


# --- 2. real data: archives of repositories made by ostree ---------------------------------------


@dataclass(frozen=True)
class EdgeSources:
    """Made by the real ostree: ``base`` holds ``h1`` on REF (osbuild's first build);
    ``child`` is a fresh repository with ``c1 = commit --parent=h1``; ``chain`` a fresh
    repository with 5 commits on REF, the first with ``--parent=h1``.  ``target_h1``:
    an archive repository with h1 pulled in by ``ostree pull-local``."""

    base: Path
    child: Path
    chain: Path
    target_h1: Path
    h1: str
    c1: str
    chain_commits: list[str]


def _edge_commit(repo: Path, tree: Path, ts: int, *args: str) -> str:
    return ostree_commit(
        repo, "-b", REF, "-s", f"build {ts}", f"--timestamp={iso(BASE_TIME + ts * 3600)}",
        "--owner-uid=0", "--owner-gid=0", f"--add-metadata-string=version=9.{ts}",
        f"--add-metadata-string=rpmostree.inputhash={ts:064x}", *args, tree,
    )  # fmt: skip


@pytest.fixture(scope="session")
def edge(tmp_path_factory: pytest.TempPathFactory) -> EdgeSources:
    root = tmp_path_factory.mktemp("edge")
    for i in range(7):
        make_small_tree(root / f"tree{i}", i)
    base, child, chain, target_h1 = (root / n for n in ("base", "child", "chain", "target-h1"))
    for repo in (base, child, chain, target_h1):
        run_ostree("init", f"--repo={repo}", "--mode=archive")
    h1 = _edge_commit(base, root / "tree0", 0)
    c1 = _edge_commit(child, root / "tree1", 1, f"--parent={h1}")
    chain_commits = [_edge_commit(chain, root / "tree2", 2, f"--parent={h1}")]
    for i in range(3, 7):
        chain_commits.append(_edge_commit(chain, root / f"tree{i}", i))
    run_ostree("pull-local", f"--repo={target_h1}", base, REF)
    run_ostree("summary", f"--repo={target_h1}", "-u")
    return EdgeSources(base, child, chain, target_h1, h1, c1, chain_commits)


def ostree_log(repo: Path, ref: str = REF) -> str:
    return run_ostree("log", f"--repo={repo}", ref)


def assert_fsck_clean(repo: Path) -> None:
    run_ostree("fsck", f"--repo={repo}")
    run_pyostree("fsck", "--repo", repo)


def init_target(path: Path) -> Path:
    run_ostree("init", f"--repo={path}", "--mode=archive")
    return path


OSBUILD_VARIANTS = [*COMPRESSIONS, "tar-binary-pax"]


@pytest.mark.ostree
@pytest.mark.parametrize("variant", OSBUILD_VARIANTS)
def test_osbuild_commit_tar_imports(variant: str, edge: EdgeSources, tmp_path: Path) -> None:
    """``commit.tar`` whatever its compression (detected by content: it is always named
    ``commit.tar``), or written by GNU tar with osbuild's ``--xattrs`` (pax headers)."""
    archive = tmp_path / "commit.tar"
    if variant == "tar-binary-pax":
        osbuild_tar_with_binary(edge.base, archive, REF, tmp_path)
        with tarfile.open(archive) as tf:
            assert tf.getmembers()[0].pax_headers, "expected pax headers from GNU tar --xattrs"
    else:
        write_osbuild_tar(edge.base, archive, REF, compression=variant)  # type: ignore[arg-type]
    target = init_target(tmp_path / "target")
    result = import_archive(Repo.open(target), archive)
    assert result.commits == (edge.h1,)
    assert result.refs == {REF: edge.h1}
    assert result.objects_added == len(object_files(edge.base)) and result.objects_present == 0
    assert object_files(target) == object_files(edge.base)
    assert_fsck_clean(target)
    assert ostree_log(target) == ostree_log(edge.base)
    assert run_ostree("refs", f"--repo={target}").split() == [REF]
    assert not [p for p in tmp_listing(target) if "import" in p]


@pytest.mark.ostree
def test_child_commit_extends_ref(edge: EdgeSources, tmp_path: Path) -> None:
    """``ostree commit --parent=<head>`` in a fresh repository: the tar holds only the new
    commit; it extends REF in a target holding the head."""
    target = copy_repo(edge.target_h1, tmp_path / "target")
    archive = write_osbuild_tar(edge.child, tmp_path / "commit.tar", REF)
    result = import_archive(Repo.open(target), archive, ref=REF)
    assert result.refs == {REF: edge.c1} and result.commits == (edge.c1,)
    assert log_checksums(ostree_log(target)) == [edge.c1, edge.h1]
    assert "History beyond this commit not fetched" not in ostree_log(target)
    assert_fsck_clean(target)
    assert run_ostree("rev-parse", f"--repo={target}", f"{REF}^").strip() == edge.h1


@pytest.mark.ostree
def test_chain_of_five_commits_extends_ref(edge: EdgeSources, tmp_path: Path) -> None:
    target = copy_repo(edge.target_h1, tmp_path / "target")
    archive = write_osbuild_tar(edge.chain, tmp_path / "commit.tar.zst", REF, compression="zst")
    result = import_archive(Repo.open(target), archive, ref=REF)
    assert result.refs == {REF: edge.chain_commits[-1]}
    assert sorted(result.commits) == sorted(edge.chain_commits)
    assert log_checksums(ostree_log(target)) == [*reversed(edge.chain_commits), edge.h1]
    assert_fsck_clean(target)


@pytest.mark.ostree
def test_chain_of_five_needs_the_head_in_ref_mode(edge: EdgeSources, tmp_path: Path) -> None:
    """The same chain against a target whose head moved to the child: refused, naming
    the head and the parent the chain ends at; the target is untouched."""
    target = copy_repo(edge.target_h1, tmp_path / "target")
    import_archive(
        Repo.open(target), write_osbuild_tar(edge.child, tmp_path / "child.tar", REF), ref=REF
    )
    archive = write_osbuild_tar(edge.chain, tmp_path / "commit.tar", REF)
    error = expect_failure(target, archive, ImportRefusedError, "does not extend", ref=REF)
    assert edge.c1 in str(error) and edge.h1 in str(error)
    assert_fsck_clean(target)


@pytest.mark.ostree
def test_importing_twice_is_a_noop(edge: EdgeSources, tmp_path: Path) -> None:
    target = copy_repo(edge.target_h1, tmp_path / "target")
    archive = write_osbuild_tar(edge.child, tmp_path / "commit.tar", REF, compression="gz")
    first = import_archive(Repo.open(target), archive, ref=REF)
    assert first.changed
    after_first = snapshot(target)
    for ref in (REF, None):
        again = import_archive(Repo.open(target), archive, ref=ref)
        assert not again.changed
        assert again.refs == {} and again.objects_added == 0
        assert again.objects_present == first.objects_added + first.objects_present
        assert again.commits == (edge.c1,)
    assert snapshot(target) == after_first


@pytest.mark.ostree
def test_plain_tar_of_multi_ref_repository_with_history(tmp_path: Path) -> None:
    """``tar -cf x.tar repo/`` (real GNU tar) of an ostree repository with several refs,
    history, a ref name longer than a tar header holds, an alias and a summary."""
    src = tmp_path / "repo"
    refs = build_small_repo(src, tmp_path)
    long_ref = "long/" + "/".join(f"component-{i:02d}" for i in range(12))
    for i in range(3):
        make_small_tree(tmp_path / f"iot-{i}", i + 3)
        refs["fedora/41/x86_64/iot"] = ostree_commit(
            src,
            "-b",
            "fedora/41/x86_64/iot",
            "-s",
            f"iot {i}",
            f"--timestamp={iso(BASE_TIME + 99 + i)}",
            tmp_path / f"iot-{i}",
        )
    refs[long_ref] = ostree_commit(
        src, "-b", long_ref, "--tree=ref=small", f"--timestamp={iso(BASE_TIME)}"
    )
    run_ostree("refs", f"--repo={src}", "--alias", "--create=stable", "small")
    run_ostree("summary", f"--repo={src}", "-u")
    archive = tar_with_binary(tmp_path / "repo.tar", tmp_path, "repo/")
    with tarfile.open(archive) as tf:
        assert any(len(n) > 100 for n in tf.getnames())

    target = init_target(tmp_path / "target")
    result = import_archive(Repo.open(target), archive)
    assert result.refs == refs
    assert len(result.commits) == len(list((src / "objects").glob("*/*.commit")))
    assert object_files(target) == object_files(src)
    assert run_ostree("refs", f"--repo={target}") == run_ostree("refs", f"--repo={src}")
    for ref in [*refs, "stable"]:
        assert ostree_log(target, ref) == ostree_log(src, ref), ref
    assert Repo.open(target).ref_alias_target("stable") == "small"
    assert_fsck_clean(target)


@pytest.mark.ostree
def test_closure_completed_by_the_target(edge: EdgeSources, tmp_path: Path) -> None:
    """A tarball of a repository holding h1 → c1 (pulled by ostree), minus every object the
    target already holds: the closure is complete only together with the target."""
    src = init_target(tmp_path / "src")
    run_ostree("pull-local", f"--repo={src}", edge.base, REF)
    run_ostree("pull-local", f"--repo={src}", edge.child, REF)
    target = copy_repo(edge.target_h1, tmp_path / "target")
    have = object_files(target)
    members = repo_members(src, "repo", include=lambda rel: rel not in have)
    archive = write_tar(tmp_path / "partial.tar", members, compression="xz")
    result = import_archive(Repo.open(target), archive)
    assert result.refs == {REF: edge.c1}
    assert object_files(target) == object_files(src)
    assert_fsck_clean(target)
    assert ostree_log(target) == ostree_log(src)


@pytest.mark.ostree
def test_summary_regenerated_and_archive_summary_ignored(edge: EdgeSources, tmp_path: Path) -> None:
    target = copy_repo(edge.target_h1, tmp_path / "target")
    old_summary = (target / "summary").read_bytes()
    # The archive carries a bogus summary (and signature) of its own: never copied.
    members = [
        *osbuild_members(edge.child, REF),
        file_member("./repo/summary", b"not a summary"),
        file_member("./repo/summary.sig", b"not a signature"),
    ]
    archive = write_tar(tmp_path / "commit.tar", members)
    import_archive(Repo.open(target), archive, ref=REF)
    data = (target / "summary").read_bytes()
    assert data != old_summary
    summary = parse_summary(data)
    entry = summary.ref(REF)
    assert entry is not None and entry.checksum == edge.c1 and entry.version == "9.1"
    assert not (target / "summary.sig").exists()
    view = run_ostree("summary", f"--repo={target}", "-v")
    assert f"* {REF}" in view and edge.c1 in view


def test_update_summary_false_leaves_summary(
    py_sources: PySources, target: Path, tmp_path: Path
) -> None:
    before = (target / "summary").read_bytes()
    import_archive(
        Repo.open(target), members_tar(tmp_path, py_sources.members), update_summary=False
    )
    assert (target / "summary").read_bytes() == before


@pytest.mark.ostree
def test_detached_metadata_is_kept(edge: EdgeSources, tmp_path: Path) -> None:
    src = copy_repo(edge.child, tmp_path / "src")
    Repo.open(src).write_commitmeta(edge.c1, detached_metadata("kept"))
    meta_rel = f"objects/{edge.c1[:2]}/{edge.c1[2:]}.commitmeta"
    assert (src / meta_rel).read_bytes() == build_commitmeta(detached_metadata("kept"))
    target = copy_repo(edge.target_h1, tmp_path / "target")
    import_archive(Repo.open(target), write_osbuild_tar(src, tmp_path / "commit.tar", REF), ref=REF)
    assert (target / meta_rel).read_bytes() == (src / meta_rel).read_bytes()
    shown = run_ostree(
        "show", f"--repo={target}", "--print-detached-metadata-key=test.note", edge.c1
    )
    assert shown.strip() == "'kept'"
    assert_fsck_clean(target)


@pytest.mark.ostree
def test_progress_reports(edge: EdgeSources, tmp_path: Path) -> None:
    archive = write_osbuild_tar(edge.chain, tmp_path / "commit.tar", REF, compression="gz")
    target = copy_repo(edge.target_h1, tmp_path / "target")
    events: list[ImportProgress] = []
    result = import_archive(Repo.open(target), archive, ref=REF, progress=events.append)
    assert events, "no progress reported"
    size = archive.stat().st_size
    reads = [e.bytes_read for e in events]
    assert reads == sorted(reads) and reads[-1] == size
    assert [e.objects for e in events] == sorted(e.objects for e in events)
    assert all(e.bytes_total == size for e in events)
    objects_in_archive = len(object_files(edge.chain))
    assert events[-1].objects == objects_in_archive
    assert result.objects_added + result.objects_present == objects_in_archive


@pytest.mark.ostree
def test_cli_import(edge: EdgeSources, tmp_path: Path) -> None:
    target = copy_repo(edge.target_h1, tmp_path / "target")
    archive = write_osbuild_tar(edge.child, tmp_path / "commit.tar", REF, compression="xz")
    proc = pyostree_result(
        "import", "--repo", target, archive, "--ref", REF, "--sha256", sha256_file(archive)
    )
    assert proc.returncode == 0, proc.stderr
    assert f"{REF} {edge.c1}" in proc.stdout
    assert "objects" in proc.stderr  # progress and the tally go to stderr
    assert log_checksums(ostree_log(target)) == [edge.c1, edge.h1]
    assert_fsck_clean(target)


@pytest.mark.ostree
@pytest.mark.parametrize("case", ["not-a-tar", "wrong-sha256", "does-not-extend", "full-history"])
def test_cli_import_failure(case: str, edge: EdgeSources, tmp_path: Path) -> None:
    target = (
        init_target(tmp_path / "target")
        if case == "full-history"
        else copy_repo(edge.target_h1, tmp_path / "target")
    )
    archive = write_osbuild_tar(edge.child, tmp_path / "commit.tar", REF)
    args: list[str | os.PathLike[str]] = ["import", "--repo", target]
    if case == "not-a-tar":
        archive.write_bytes(b"garbage " * 1000)
        phrase = "not a tar archive"
    elif case == "wrong-sha256":
        args += ["--sha256", "0" * 64]
        phrase = "sha256"
    elif case == "does-not-extend":
        _edge_commit(target, edge.base.parent / "tree5", 5)  # the target's REF moves on
        args += ["--ref", REF]
        phrase = "does not extend"
    else:
        args += ["--require-full-history"]
        phrase = "parent"
    before, tmp_before = snapshot(target), tmp_listing(target)
    proc = pyostree_result(*args, archive)
    assert proc.returncode == 1, (proc.returncode, proc.stderr)
    lines = proc.stderr.strip().splitlines()
    assert lines and lines[-1].startswith("pyostree: error: "), proc.stderr
    assert sum("error" in line for line in lines) == 1, proc.stderr
    assert phrase in lines[-1].lower()
    assert "Traceback" not in proc.stderr
    assert_untouched(target, before, tmp_before)
