"""``pyostree diff`` / :func:`libpyostree.diff.diff_commits` against ``ostree diff`` 2022.7.

The ostree tests build one repository with the real CLI: a branch ``pair`` whose two
commits differ in every way a tree can (content, mode only, symlink target, regular
file to symlink, file to directory and back, nested added and removed directories,
directory metadata with and without content changes, identical subtrees, byte-order
names), an empty tree, and a tarball pair that changes only owners and xattrs.  Our
output must be byte-identical to ``ostree diff`` for every pair, in both directions.
The library tests need no ostree: exact lists, identical subtrees never read, deep
trees without recursion.
"""

from __future__ import annotations

import io
import os
import subprocess
import sys
import tarfile
from pathlib import Path
from types import FrameType

import pytest

from libpyostree.cli import main
from libpyostree.commit import commit_directory
from libpyostree.diff import CommitDiff, TreeDiff, diff_commits, diff_dirtrees
from libpyostree.errors import ObjectNotFoundError, RefNotFoundError
from libpyostree.names import Checksum
from libpyostree.objects import DirMeta, DirTree, FileHeader, ObjectType
from libpyostree.repo import Repo
from tests.ostree_cli import (
    BASE_TIME,
    iso,
    ostree_commit,
    ostree_result,
    require_ostree,
    run_ostree,
    write_file,
)

# --- trees -----------------------------------------------------------------------------


def make_old_tree(root: Path) -> None:
    root.mkdir()
    write_file(root / "README", b"readme\n")
    write_file(root / "B-upper", b"sorts before lower case\n")
    write_file(root / "changed.txt", b"version 1\n")
    write_file(root / "chmod-only", b"same bytes\n", 0o644)
    os.symlink("target-a", root / "link")
    os.symlink("README", root / "link-same")
    write_file(root / "to-symlink", b"regular for now\n")
    write_file(root / "file-to-dir", b"a file for now\n")
    write_file(root / "dir-to-file" / "a", b"a\n")
    write_file(root / "dir-to-file" / "sub" / "b", b"b\n")
    write_file(root / "removed.txt", b"bye\n")
    write_file(root / "removed-dir" / "a", b"a\n")
    write_file(root / "removed-dir" / "nested" / "b", b"b\n")
    write_file(root / "removed-dir" / "nested" / "deeper" / "c", b"c\n")
    for i in range(20):
        write_file(root / "same" / f"f{i:02d}", f"same {i}\n".encode())
        write_file(root / "same" / f"d{i % 3}" / f"g{i:02d}", f"deep {i}\n".encode())
    write_file(root / "meta-only" / "inside", b"unchanged\n")
    write_file(root / "meta-and-content" / "edited", b"before\n")
    write_file(root / "meta-and-content" / "dropped", b"dropped\n")
    write_file(root / "nested" / "level1" / "level2" / "leaf", b"1\n")
    write_file(root / "nested" / "level1" / "removed", b"removed\n")
    write_file(root / "nested" / "z-last", b"unchanged\n")
    write_file(root / "é-file", b"accent 1\n")
    (root / "empty-dir").mkdir()
    for d in ("meta-only", "meta-and-content", "same", "nested", "empty-dir"):
        os.chmod(root / d, 0o755)


def make_new_tree(root: Path) -> None:
    root.mkdir()
    write_file(root / "README", b"readme\n")
    write_file(root / "B-upper", b"sorts before lower case\n")
    write_file(root / "changed.txt", b"version 2\n")
    write_file(root / "chmod-only", b"same bytes\n", 0o755)
    os.symlink("target-b", root / "link")
    os.symlink("README", root / "link-same")
    os.symlink("README", root / "to-symlink")
    write_file(root / "file-to-dir" / "inside", b"now a directory\n")
    write_file(root / "file-to-dir" / "sub" / "deeper", b"deeper\n")
    write_file(root / "dir-to-file", b"now a file\n")
    write_file(root / "added.txt", b"hello\n")
    write_file(root / "added-dir" / "x", b"x\n")
    write_file(root / "added-dir" / "sub" / "y", b"y\n")
    write_file(root / "added-dir" / "sub" / "z" / "w", b"w\n")
    (root / "added-dir" / "empty").mkdir()
    for i in range(20):
        write_file(root / "same" / f"f{i:02d}", f"same {i}\n".encode())
        write_file(root / "same" / f"d{i % 3}" / f"g{i:02d}", f"deep {i}\n".encode())
    write_file(root / "meta-only" / "inside", b"unchanged\n")
    write_file(root / "meta-and-content" / "edited", b"after\n")
    write_file(root / "meta-and-content" / "new", b"new\n")
    write_file(root / "nested" / "level1" / "level2" / "leaf", b"2\n")
    write_file(root / "nested" / "level1" / "added-file", b"added\n")
    write_file(root / "nested" / "z-last", b"unchanged\n")
    write_file(root / "é-file", b"accent 2\n")
    write_file(root / "ü dir" / "ñ", b"unicode\n")
    write_file(root / "zz-last", b"last\n")
    (root / "empty-dir").mkdir()
    for d in ("same", "nested", "empty-dir"):
        os.chmod(root / d, 0o755)
    os.chmod(root / "meta-only", 0o700)
    os.chmod(root / "meta-and-content", 0o750)


#: ``ostree diff pair^ pair``, worked out by hand from the rules in ``libpyostree.diff``:
#: FROM's files then directories (descending into common ones), then TO's additions.
EXPECTED_OLD_TO_NEW = TreeDiff(
    modified=(
        "/changed.txt",
        "/chmod-only",
        "/file-to-dir",
        "/link",
        "/to-symlink",
        "/é-file",
        "/dir-to-file",  # a directory in FROM: visited with the directories
        "/meta-and-content",
        "/meta-and-content/edited",
        "/meta-only",
        "/nested/level1/level2/leaf",
    ),
    removed=(
        "/removed.txt",
        "/meta-and-content/dropped",
        "/nested/level1/removed",
        "/removed-dir",
    ),
    added=(
        "/meta-and-content/new",
        "/nested/level1/added-file",
        "/added.txt",
        "/zz-last",
        "/added-dir",
        "/added-dir/x",
        "/added-dir/empty",
        "/added-dir/sub",
        "/added-dir/sub/y",
        "/added-dir/sub/z",
        "/added-dir/sub/z/w",
        "/ü dir",
        "/ü dir/ñ",
    ),
)


def _tar_add(
    tf: tarfile.TarFile,
    name: str,
    *,
    data: bytes | None = None,
    mode: int = 0o644,
    uid: int = 0,
    gid: int = 0,
    xattrs: dict[str, str] | None = None,
) -> None:
    info = tarfile.TarInfo(name)
    info.type = tarfile.DIRTYPE if data is None else tarfile.REGTYPE
    info.mode, info.uid, info.gid, info.mtime = mode, uid, gid, BASE_TIME
    if xattrs:
        info.pax_headers = {f"SCHILY.xattr.{k}": v for k, v in xattrs.items()}
    if data is None:
        tf.addfile(info)
    else:
        info.size = len(data)
        tf.addfile(info, io.BytesIO(data))


def make_owner_tarball(path: Path, variant: int) -> None:
    """Two variants that differ only in owners and xattrs of some entries."""
    with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as tf:
        _tar_add(tf, ".", mode=0o755)
        _tar_add(tf, "./etc", mode=0o755, xattrs={"user.label": f"v{variant}"})
        _tar_add(tf, "./etc/conf", data=b"key=value\n", xattrs={"user.x": f"{variant}"})
        _tar_add(tf, "./etc/plain", data=b"plain\n")
        _tar_add(tf, "./home", mode=0o755, uid=1000 + variant, gid=1000)
        _tar_add(tf, "./home/notes", data=b"notes\n", uid=1000, gid=1000 + variant)
        _tar_add(tf, "./home/same", data=b"same\n", uid=1000, gid=1000)


# --- the ostree-made repository --------------------------------------------------------


class DiffRepo:
    def __init__(self, path: Path, commits: dict[str, str]) -> None:
        self.path = path
        self.commits = commits


@pytest.fixture(scope="module")
def diff_repo(tmp_path_factory: pytest.TempPathFactory) -> DiffRepo:
    require_ostree()
    work = tmp_path_factory.mktemp("ostree-diff")
    repo = work / "repo"
    run_ostree("init", f"--repo={repo}", "--mode=archive")
    owner = ("--owner-uid=0", "--owner-gid=0")

    def commit(branch: str, ts: int, *args: str | os.PathLike[str]) -> str:
        return ostree_commit(repo, "-b", branch, "-s", branch, f"--timestamp={iso(ts)}", *args)

    make_old_tree(work / "old")
    make_new_tree(work / "new")
    (work / "empty").mkdir()
    commits = {"old": commit("pair", BASE_TIME, *owner, work / "old")}
    commits["new"] = commit("pair", BASE_TIME + 60, *owner, work / "new")
    commits["empty"] = commit("empty", BASE_TIME, *owner, work / "empty")
    os.chmod(work / "old", 0o700)  # only the root's dirmeta differs from pair^
    commits["rootmode"] = commit("rootmode", BASE_TIME, *owner, work / "old")
    for variant in (0, 1):
        make_owner_tarball(work / f"owners{variant}.tar", variant)
        commits[f"owners{variant}"] = commit(
            "owners", BASE_TIME + variant, f"--tree=tar={work / f'owners{variant}.tar'}"
        )
    return DiffRepo(repo, commits)


def ostree_diff_bytes(repo: Path, *revs: str) -> subprocess.CompletedProcess[bytes]:
    env = dict(os.environ, GIO_USE_VFS="local", LC_ALL="C.UTF-8", LANG="C.UTF-8")
    env.pop("OSTREE_REPO", None)
    return subprocess.run(
        [require_ostree(), "diff", f"--repo={repo}", *revs],
        capture_output=True,
        env=env,
        check=False,
        timeout=60,
    )


def pyostree_diff_bytes(
    capsysbinary: pytest.CaptureFixture[bytes], repo: Path, *revs: str
) -> tuple[int, bytes, bytes]:
    code = main(["diff", "--repo", str(repo), *revs])
    out, err = capsysbinary.readouterr()
    return code, out, err


# --- against ostree diff ---------------------------------------------------------------

PAIRS = [
    ("pair^", "pair"),
    ("pair", "pair^"),
    ("pair", "pair"),
    ("empty", "pair"),
    ("pair", "empty"),
    ("pair^", "empty"),
    ("owners^", "owners"),
    ("owners", "owners^"),
    ("owners", "pair"),
    ("pair^", "rootmode"),  # the root itself is never compared: no output
    ("pair",),  # one revision: REV^ against REV
]


@pytest.mark.ostree
@pytest.mark.parametrize("revs", PAIRS, ids=["-".join(r) for r in PAIRS])
def test_output_is_byte_identical_to_ostree_diff(
    diff_repo: DiffRepo, capsysbinary: pytest.CaptureFixture[bytes], revs: tuple[str, ...]
) -> None:
    theirs = ostree_diff_bytes(diff_repo.path, *revs)
    assert theirs.returncode == 0, theirs.stderr
    code, ours, err = pyostree_diff_bytes(capsysbinary, diff_repo.path, *revs)
    assert (code, err) == (0, b"")
    assert ours == theirs.stdout
    same = len(revs) == 2 and (revs[0] == revs[1] or "rootmode" in revs)
    assert bool(ours) != same


@pytest.mark.ostree
def test_expected_lines_and_library_result(diff_repo: DiffRepo) -> None:
    """The hand-derived expectation is what ostree prints, and what the library returns."""
    theirs = ostree_diff_bytes(diff_repo.path, "pair^", "pair").stdout.decode()
    assert theirs.splitlines() == EXPECTED_OLD_TO_NEW.lines()
    result = diff_commits(Repo.open(diff_repo.path), "pair^", "pair")
    assert isinstance(result, CommitDiff)
    assert (result.from_commit, result.to_commit) == (
        diff_repo.commits["old"],
        diff_repo.commits["new"],
    )
    assert (result.modified, result.removed, result.added) == (
        EXPECTED_OLD_TO_NEW.modified,
        EXPECTED_OLD_TO_NEW.removed,
        EXPECTED_OLD_TO_NEW.added,
    )


@pytest.mark.ostree
def test_owner_and_xattr_changes_are_modifications(diff_repo: DiffRepo) -> None:
    result = diff_commits(Repo.open(diff_repo.path), "owners^", "owners")
    # /etc: dirmeta xattr; /etc/conf: file xattr; /home: dir uid; /home/notes: file gid.
    assert result.modified == ("/etc", "/etc/conf", "/home", "/home/notes")
    assert result.removed == result.added == ()


@pytest.mark.ostree
def test_checksums_and_prefixes_as_revisions(
    diff_repo: DiffRepo, capsysbinary: pytest.CaptureFixture[bytes]
) -> None:
    old, new = diff_repo.commits["old"], diff_repo.commits["new"]
    theirs = ostree_diff_bytes(diff_repo.path, old, new[:12])
    assert theirs.returncode == 0
    assert pyostree_diff_bytes(capsysbinary, diff_repo.path, old, new[:12]) == (
        0,
        theirs.stdout,
        b"",
    )


@pytest.mark.ostree
@pytest.mark.parametrize(
    "revs", [("pair", "nope"), ("nope", "pair"), ("pair^^",), ("empty^", "pair")]
)
def test_unknown_revision_fails_like_ostree(
    diff_repo: DiffRepo, capsysbinary: pytest.CaptureFixture[bytes], revs: tuple[str, ...]
) -> None:
    theirs = ostree_diff_bytes(diff_repo.path, *revs)
    assert theirs.returncode != 0 and theirs.stdout == b""
    code, out, err = pyostree_diff_bytes(capsysbinary, diff_repo.path, *revs)
    assert code == 1 and out == b""
    assert err.startswith(b"pyostree: error: ") and err.count(b"\n") == 1
    if "nope" in revs:
        assert b"Refspec 'nope' not found" in err and b"Refspec 'nope' not found" in theirs.stderr
    else:
        assert b"has no parent" in err and b"has no parent" in theirs.stderr


@pytest.mark.ostree
def test_console_exit_status_and_one_line_error(diff_repo: DiffRepo) -> None:
    ok = ostree_result("diff", f"--repo={diff_repo.path}", "pair^", "pair")
    argv = [sys.executable, "-m", "libpyostree.cli", "diff", "--repo", str(diff_repo.path)]
    env = dict(os.environ, LC_ALL="C.UTF-8", LANG="C.UTF-8")
    proc = subprocess.run([*argv, "pair^", "pair"], capture_output=True, env=env, check=False)
    assert proc.returncode == 0 and proc.stdout == ok.stdout.encode()
    proc = subprocess.run([*argv, "pair", "missing"], capture_output=True, env=env, check=False)
    assert proc.returncode == 1 and proc.stdout == b""
    assert proc.stderr == b"pyostree: error: Refspec 'missing' not found\n"


# --- library, without ostree -----------------------------------------------------------


@pytest.fixture
def own_repo(tmp_path: Path) -> tuple[Repo, Path]:
    return Repo.init(tmp_path / "repo"), tmp_path


def _commit(repo: Repo, tree: Path, parent: str | None = None) -> str:
    return commit_directory(
        repo, tree, branch="main", subject="s", parent=parent, timestamp=BASE_TIME,
        owner_uid=0, owner_gid=0,
    )  # fmt: skip


def test_library_on_our_own_commits(own_repo: tuple[Repo, Path]) -> None:
    repo, tmp = own_repo
    make_old_tree(tmp / "old")
    make_new_tree(tmp / "new")
    old = _commit(repo, tmp / "old")
    new = _commit(repo, tmp / "new", parent=old)
    result = diff_commits(repo, "main^", "main")
    assert (result.from_commit, result.to_commit) == (old, new)
    assert result.lines() == EXPECTED_OLD_TO_NEW.lines()
    assert not diff_commits(repo, "main", new[:8])
    assert bool(result)
    reverse = diff_commits(repo, new, old)
    assert "/removed-dir" in reverse.added and "/added-dir" in reverse.removed
    assert "/added-dir/x" not in reverse.removed  # a removed directory is reported alone


def test_identical_subtrees_are_never_read(
    own_repo: tuple[Repo, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    repo, tmp = own_repo
    make_old_tree(tmp / "old")
    make_new_tree(tmp / "new")
    old = repo.read_commit(_commit(repo, tmp / "old"))
    new = repo.read_commit(_commit(repo, tmp / "new"))
    same = {n: t for n, t, _ in repo.read_dirtree(old.root_dirtree).dirs}["same"]
    # Remove the shared subtree: the diff must not need it.
    repo.object_path(same, ObjectType.DIR_TREE).unlink()
    reads: list[str] = []
    real = repo.read_dirtree

    def counting(checksum: str, *, verify: bool = True) -> DirTree:
        reads.append(checksum)
        return real(checksum, verify=verify)

    monkeypatch.setattr(repo, "read_dirtree", counting)
    result = diff_dirtrees(repo, old.root_dirtree, new.root_dirtree)
    assert same not in reads
    assert result.lines() == EXPECTED_OLD_TO_NEW.lines()
    reads.clear()
    assert not diff_dirtrees(repo, old.root_dirtree, old.root_dirtree)
    assert reads == []


def _write_dir(
    repo: Repo, files: dict[str, Checksum], dirs: dict[str, tuple[Checksum, Checksum]]
) -> Checksum:
    tree = DirTree(
        files=tuple(sorted(files.items())),
        dirs=tuple((n, t, m) for n, (t, m) in sorted(dirs.items())),
    )
    return repo.write_metadata(ObjectType.DIR_TREE, tree.to_bytes())


def test_deep_trees_need_no_recursion(own_repo: tuple[Repo, Path]) -> None:
    repo, _ = own_repo
    meta = repo.write_metadata(ObjectType.DIR_META, DirMeta(0, 0, 0o40755).to_bytes())
    leaf_a = repo.write_content(FileHeader(uid=0, gid=0, mode=0o100644), b"a\n")
    leaf_b = repo.write_content(FileHeader(uid=0, gid=0, mode=0o100644), b"b\n")
    depth = 150
    a = _write_dir(repo, {"leaf": leaf_a}, {})
    b = _write_dir(repo, {"leaf": leaf_b}, {})
    for _ in range(depth):
        a = _write_dir(repo, {}, {"d": (a, meta)})
        b = _write_dir(repo, {}, {"d": (b, meta)})
    deep_path = "/d" * depth + "/leaf"
    empty = _write_dir(repo, {}, {})
    # A recursion limit well below the depth: a recursive walk would fail here.
    frames = 0
    frame: FrameType | None = sys._getframe()  # count the current stack depth
    while frame is not None:
        frames, frame = frames + 1, frame.f_back
    saved = sys.getrecursionlimit()
    sys.setrecursionlimit(frames + 50)

    def recurse(n: int) -> int:
        return 0 if n == 0 else 1 + recurse(n - 1)

    try:
        with pytest.raises(RecursionError):
            recurse(depth)
        modified = diff_dirtrees(repo, a, b)
        added = diff_dirtrees(repo, empty, b, prefix="/sub").added
    finally:
        sys.setrecursionlimit(saved)
    assert modified == TreeDiff(modified=(deep_path,))
    assert len(added) == depth + 1 and added[-1] == "/sub" + deep_path


def test_unknown_revisions_and_missing_objects(
    own_repo: tuple[Repo, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    repo, tmp = own_repo
    make_old_tree(tmp / "old")
    make_new_tree(tmp / "new")
    old = _commit(repo, tmp / "old")
    new = _commit(repo, tmp / "new", parent=old)
    with pytest.raises(RefNotFoundError, match="Refspec 'nope' not found"):
        diff_commits(repo, "main", "nope")
    with pytest.raises(RefNotFoundError, match="has no parent"):
        diff_commits(repo, "main^^", "main")
    for argv in (["main", "nope"], ["main^"], ["./some/dir", "main"], ["/abs", "main"]):
        code = main(["diff", "--repo", str(repo.path), *argv])
        out, err = capsys.readouterr()
        assert code == 1 and out == ""
        assert err.startswith("pyostree: error: ") and err.count("\n") == 1
    repo.object_path(repo.read_commit(new).root_dirtree, ObjectType.DIR_TREE).unlink()
    with pytest.raises(ObjectNotFoundError):
        diff_commits(repo, old, new)
    code = main(["diff", "--repo", str(repo.path), old, new])
    assert code == 1 and capsys.readouterr().err.count("\n") == 1
