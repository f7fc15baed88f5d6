"""Issue 6: ``libpyostree.pull`` and ``pyostree pull`` against repositories made by the
real ``ostree`` CLI, served by a plain static server (``tests.fault_server``) that can
misbehave on purpose; and the sans-IO planner fed bytes directly.

The oracle is ostree itself: ``ostree pull`` of the same remote with the same
arguments must write the same objects, refs and ``ostree log``; ``ostree fsck`` of
every result is clean.  Every failure leaves no commit and no ref behind.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from libpyostree.errors import CorruptObjectError, OstreeError
from libpyostree.http import RemoteOptions, TransportError
from libpyostree.names import Checksum
from libpyostree.objects import ObjectType, parse_commit
from libpyostree.objects.summary import parse_summary
from libpyostree.pull import PullProgress, pull
from libpyostree.pullplan import Fetch, FetchKind, Planner, PullError, object_path
from libpyostree.repo import Repo
from libpyostree.walk import iter_commit_closure
from tests.fault_server import (
    FaultServer,
    Source,
    commit_files,
    fault_server,
    make_source,
    object_files,
    ref_files,
    tree,
)
from tests.ostree_cli import log_checksums, pyostree_result, run_ostree

pytestmark = pytest.mark.ostree

FAST = RemoteOptions(timeout=10.0, retries=2)


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Source:
    return make_source(tmp_path_factory.mktemp("pull-source"))


@pytest.fixture
def server(source: Source) -> Iterator[FaultServer]:
    with fault_server(source.path) as state:
        yield state


_DEST = iter(range(1_000_000))


def new_repo(tmp_path: Path, name: str | None = None) -> Path:
    path = tmp_path / (name or f"dest-{next(_DEST)}")
    run_ostree("init", f"--repo={path}", "--mode=archive")
    return path


def ostree_pull(dest: Path, url: str, *args: str) -> None:
    run_ostree("remote", "add", f"--repo={dest}", "--no-gpg-verify", "origin", url)
    run_ostree("pull", f"--repo={dest}", *args)


def fsck(repo: Path) -> None:
    run_ostree("fsck", f"--repo={repo}")


def untouched(repo: Path) -> None:
    """A failed pull: no commit, no ref, and what it did write is sound."""
    assert commit_files(repo) == set()
    assert ref_files(repo) == set()
    assert not (repo / "summary").exists()
    fsck(repo)


def head_file(source: Source, ref: str, path: str) -> str:
    """The ``.filez`` path of ``path`` in ``ref``'s head, as ``ostree ls -C`` names it."""
    line = run_ostree("ls", f"--repo={source.path}", "-C", ref, path).split()
    return object_path(line[4], ObjectType.FILE)


def root_dirtree(source: Source, ref: str) -> str:
    info = Repo.open(source.path).read_commit(source.refs[ref])
    return object_path(info.root_dirtree, ObjectType.DIR_TREE)


# -- the library against ostree ----------------------------------------------------------


def test_mirror_all_refs_equals_ostree(source: Source, server: FaultServer, tmp_path: Path) -> None:
    ours, theirs = new_repo(tmp_path, "ours"), new_repo(tmp_path, "theirs")
    seen: list[PullProgress] = []
    result = pull(Repo.open(ours), server.url, mirror=True, depth=-1, progress=seen.append)
    ostree_pull(theirs, server.url, "--mirror", "--depth=-1", "origin")
    assert result.refs == source.refs
    assert object_files(ours) == object_files(theirs)
    assert ref_files(ours) == {f"heads/{r}" for r in source.refs}
    assert (ours / "summary").read_bytes() == (source.path / "summary").read_bytes()
    # Progress counts every file fetched (config and summary too).
    assert seen and seen[-1].objects_fetched >= result.fetched
    assert seen[-1].bytes_fetched > 0
    # Every dirtree, dirmeta and file is reported once as stored, with its file's size.
    stored = [s for p in seen for s in p.stored]
    assert len(stored) == len(set(stored))
    on_disk = {
        (f.parent.name + f.stem, f.suffix[1:]): f.stat().st_size
        for f in (ours / "objects").glob("*/*")
        if f.suffix in (".dirtree", ".dirmeta", ".filez")
    }
    assert {(c, t.archive_suffix): n for c, t, n in stored} == on_disk
    fsck(ours)
    # Detached metadata kept, as ostree shows it.
    meta = source.refs["meta"]
    assert f"{meta[:2]}/{meta[2:]}.commitmeta" in object_files(ours)
    shown = run_ostree(
        "show", f"--repo={ours}", "--print-detached-metadata-key=note", source.refs["meta"]
    )
    assert "detached, not signed" in shown


def test_all_refs_as_remote_refs(source: Source, server: FaultServer, tmp_path: Path) -> None:
    ours, theirs = new_repo(tmp_path, "ours"), new_repo(tmp_path, "theirs")
    pull(Repo.open(ours), server.url, remote="upstream")
    ostree_pull(theirs, server.url, "origin", *source.refs)
    assert ref_files(ours) == {f"remotes/upstream/{r}" for r in source.refs}
    assert object_files(ours) == object_files(theirs)
    assert not (ours / "summary").exists()
    for ref, commit in source.refs.items():
        assert run_ostree("rev-parse", f"--repo={ours}", f"upstream:{ref}").strip() == commit
    fsck(ours)


@pytest.mark.parametrize("depth", [0, 2, -1])
def test_depth_like_ostree(source: Source, server: FaultServer, tmp_path: Path, depth: int) -> None:
    ours, theirs = new_repo(tmp_path, "ours"), new_repo(tmp_path, "theirs")
    result = pull(Repo.open(ours), server.url, ["main"], depth=depth)
    ostree_pull(theirs, server.url, f"--depth={depth}", "origin", "main")
    assert object_files(ours) == object_files(theirs)
    ours_log = run_ostree("log", f"--repo={ours}", "origin:main")
    assert ours_log == run_ostree("log", f"--repo={theirs}", "origin:main")
    expected = source.history["main"][: len(source.history["main"]) if depth < 0 else depth + 1]
    assert log_checksums(ours_log) == expected
    assert result.visited == set(expected)
    # The walk's tree objects: exactly the trees of the fetched commits.
    assert set(result.commits) == set(expected)
    closure = {
        key
        for commit in expected
        for key in iter_commit_closure(Repo.open(ours), commit)
        if key[1] not in (ObjectType.COMMIT, ObjectType.COMMIT_META)
    }
    trees = list(result.tree_objects())
    assert len(trees) == len(set(trees)) and set(trees) == closure
    fsck(ours)


def test_named_refs_without_summary(source: Source, server: FaultServer, tmp_path: Path) -> None:
    server.hidden.add("summary")
    ours, theirs = new_repo(tmp_path, "ours"), new_repo(tmp_path, "theirs")
    result = pull(Repo.open(ours), server.url, ["main", "stable"], depth=1, mirror=True)
    assert result.refs == {"main": source.refs["main"], "stable": source.refs["stable"]}
    assert result.summary is None
    assert {"refs/heads/main", "refs/heads/stable"} <= set(server.requests)
    ostree_pull(theirs, server.url, "--mirror", "--depth=1", "origin", "main", "stable")
    assert object_files(ours) == object_files(theirs)
    assert ref_files(ours) == {"heads/main", "heads/stable"}
    fsck(ours)
    # Every ref needs a summary.
    empty = new_repo(tmp_path)
    with pytest.raises(PullError, match="no summary"):
        pull(Repo.open(empty), server.url)
    untouched(empty)


def test_repull_fetches_nothing(source: Source, server: FaultServer, tmp_path: Path) -> None:
    dest = new_repo(tmp_path)
    first = pull(Repo.open(dest), server.url, depth=-1, mirror=True)
    assert first.fetched == len(object_files(dest))
    before = object_files(dest)
    server.clear()
    again = pull(Repo.open(dest), server.url, depth=-1, mirror=True)
    assert server.objects_requested() == []
    assert again.fetched == 0 and again.commits == {} and again.trees == b""
    assert again.refs == first.refs
    assert object_files(dest) == before
    fsck(dest)


def test_resume_after_kill(source: Source, server: FaultServer, tmp_path: Path) -> None:
    """``pyostree pull`` killed (SIGKILL) after some objects; run again: it completes
    and fetches none of the objects the first run stored."""
    dest = new_repo(tmp_path)
    server.add("objects/*.filez", "hang", skip=6)
    argv = [sys.executable, "-m", "libpyostree.cli", "pull", "--repo", str(dest)]
    argv += ["--jobs", "2", "--depth", "-1", "--mirror", "-q", server.url]
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 60
        while server.faults[0].hits < 1 or len(server.completed) < 6:
            assert proc.poll() is None, proc.communicate()[1]
            assert time.monotonic() < deadline, "the pull never reached the hanging objects"
            time.sleep(0.02)
        time.sleep(0.2)  # let the threads store what they received
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=30)
    stored = object_files(dest)
    assert len({p for p in stored if p.endswith(".filez")}) >= 5
    untouched(dest)
    server.clear()
    server.release.clear()
    result = pull(Repo.open(dest), server.url, depth=-1, mirror=True)
    refetched = {p.removeprefix("objects/") for p in server.objects_requested()} & stored
    assert refetched == set()
    assert result.refs == source.refs
    theirs = new_repo(tmp_path, "theirs")
    ostree_pull(theirs, server.url, "--mirror", "--depth=-1", "origin")
    assert object_files(dest) == object_files(theirs)
    fsck(dest)


def test_resume_after_failure(source: Source, server: FaultServer, tmp_path: Path) -> None:
    """A pull that fails for good (a dropped connection on every attempt) keeps the
    verified objects it stored; the next run completes without fetching them again."""
    dest = new_repo(tmp_path)
    victim = head_file(source, "rawhide", "/usr/lib/mod-20.bin")
    server.add(victim, "drop", after=1000)
    with pytest.raises(TransportError, match=victim):
        pull(Repo.open(dest), server.url, depth=-1, options=RemoteOptions(retries=1))
    untouched(dest)
    stored = object_files(dest)
    assert stored
    server.clear()
    pull(Repo.open(dest), server.url, depth=-1)
    assert {p.removeprefix("objects/") for p in server.objects_requested()} & stored == set()
    # The failure stops the pull: fetches still queued then are made now (how many
    # depends on timing), the victim among them; nothing stored is fetched twice.
    assert victim in server.objects_requested(".filez")
    fsck(dest)


# -- refusals ----------------------------------------------------------------------------


def test_ref_binding_mismatch_refused(source: Source, tmp_path: Path) -> None:
    copy = tmp_path / "bound"
    shutil.copytree(source.path, copy, symlinks=True)
    run_ostree("refs", f"--repo={copy}", "--create=other", "main")
    run_ostree("summary", f"--repo={copy}", "-u")
    dest = new_repo(tmp_path)
    with fault_server(copy) as server:
        with pytest.raises(PullError, match="ref binding"):
            pull(Repo.open(dest), server.url, ["other"])
        untouched(dest)
        # ostree refuses it too.
        theirs = new_repo(tmp_path, "theirs")
        with pytest.raises(AssertionError, match="binding"):
            ostree_pull(theirs, server.url, "origin", "other")
        # Refs bound to themselves still pull from the same remote.
        pull(Repo.open(dest), server.url, ["main"])
        fsck(dest)


def test_non_archive_remote_refused(tmp_path: Path) -> None:
    bare = tmp_path / "bare"
    run_ostree("init", f"--repo={bare}", "--mode=bare-user")
    (tmp_path / "t").mkdir()
    (tmp_path / "t" / "f").write_bytes(b"x")
    run_ostree("commit", f"--repo={bare}", "-b", "main", str(tmp_path / "t"))
    dest = new_repo(tmp_path)
    with fault_server(bare) as server, pytest.raises(PullError, match="only archive"):
        pull(Repo.open(dest), server.url, ["main"])
    untouched(dest)


def not_normal(summary: bytes) -> bytes:
    """``summary`` with one bit flipped so that it still decodes, but not in normal form."""
    for i in range(len(summary)):
        mutated = bytearray(summary)
        mutated[i] ^= 1
        try:
            parse_summary(bytes(mutated), strict=False)
        except Exception:
            continue
        try:
            parse_summary(bytes(mutated))
        except Exception:
            return bytes(mutated)
    raise AssertionError("no such mutation")


def test_summary_not_normal_form_refused(
    source: Source, server: FaultServer, tmp_path: Path
) -> None:
    server.add("summary", "body", body=not_normal((source.path / "summary").read_bytes()))
    dest = new_repo(tmp_path)
    with pytest.raises(PullError, match="summary is invalid"):
        pull(Repo.open(dest), server.url)
    with pytest.raises(PullError, match="summary is invalid"):
        pull(Repo.open(dest), server.url, ["main"])
    untouched(dest)


def test_bad_arguments(source: Source, server: FaultServer, tmp_path: Path) -> None:
    dest = Repo.open(new_repo(tmp_path))
    with pytest.raises(OstreeError):
        pull(dest, server.url, ["main"], depth=-2)
    with pytest.raises(OstreeError):
        pull(dest, server.url, ["../main"])
    with pytest.raises(OstreeError, match="http"):
        pull(dest, "ftp://example.com/repo", ["main"])
    with pytest.raises(PullError, match="not in the remote's summary"):
        pull(dest, server.url, ["nope"])
    untouched(dest.path)


# -- faults ------------------------------------------------------------------------------


def failing_pull(dest: Path, url: str, refs: list[str] | None, **options: float) -> None:
    pull(Repo.open(dest), url, refs, depth=-1, options=RemoteOptions(**options))  # type: ignore[arg-type]


def test_corrupt_filez(source: Source, server: FaultServer, tmp_path: Path) -> None:
    victim = head_file(source, "main", "/usr/lib/mod-2.bin")
    server.add(victim, "corrupt")
    dest = new_repo(tmp_path)
    with pytest.raises(CorruptObjectError, match="Corrupted file object") as info:
        failing_pull(dest, server.url, ["main"], retries=1)
    assert info.value.checksum == victim.removeprefix("objects/").replace("/", "")[:64]
    untouched(dest)
    assert victim.removeprefix("objects/") not in object_files(dest)


def test_commit_bytes_do_not_match_name(
    source: Source, server: FaultServer, tmp_path: Path
) -> None:
    victim = object_path(source.refs["stable"], ObjectType.COMMIT)
    server.add(victim, "corrupt")
    dest = new_repo(tmp_path)
    with pytest.raises(CorruptObjectError, match=f"checksum expected={source.refs['stable']}"):
        failing_pull(dest, server.url, None)
    untouched(dest)


def test_commit_larger_than_summary_says(
    source: Source, server: FaultServer, tmp_path: Path
) -> None:
    victim = object_path(source.refs["stable"], ObjectType.COMMIT)
    server.add(victim, "body", body=(source.path / victim).read_bytes() + b"\0" * 4096)
    dest = new_repo(tmp_path)
    with pytest.raises(TransportError, match="allowed"):
        failing_pull(dest, server.url, ["stable"])
    untouched(dest)


def test_html_instead_of_a_ref(source: Source, server: FaultServer, tmp_path: Path) -> None:
    server.hidden.add("summary")
    server.add("refs/heads/main", "body", body=b"<html><body>Welcome!</body></html>\n")
    dest = new_repo(tmp_path)
    with pytest.raises(PullError, match="Invalid rev '<html>"):
        failing_pull(dest, server.url, ["main", "stable"])
    untouched(dest)


def test_html_instead_of_summary(source: Source, server: FaultServer, tmp_path: Path) -> None:
    server.add("summary", "body", body=b"<!doctype html><html>Not here</html>\n")
    dest = new_repo(tmp_path)
    with pytest.raises(PullError, match="summary is invalid"):
        failing_pull(dest, server.url, None)
    untouched(dest)


def test_500s_that_recover(source: Source, server: FaultServer, tmp_path: Path) -> None:
    meta = server.add("objects/*", "status", status=503, times=3)
    files = server.add("objects/*.filez", "status", status=500, times=2)
    summary = server.add("summary", "status", status=502, times=1)
    dest = new_repo(tmp_path)
    result = pull(Repo.open(dest), server.url, depth=-1, mirror=True, options=FAST)
    assert (meta.hits, files.hits, summary.hits) == (3, 2, 1)
    assert result.refs == source.refs
    theirs = new_repo(tmp_path, "theirs")
    ostree_pull(theirs, server.url, "--mirror", "--depth=-1", "origin")
    assert object_files(dest) == object_files(theirs)
    fsck(dest)


@pytest.mark.parametrize("what", ["dirtree", "filez", "config"])
def test_500s_that_do_not_recover(
    source: Source, server: FaultServer, tmp_path: Path, what: str
) -> None:
    victim = {
        "dirtree": root_dirtree(source, "main"),
        "filez": head_file(source, "main", "/usr/lib/mod-2.bin"),
        "summary": "summary",
        "config": "config",
    }[what]
    server.add(victim, "status", status=500, body=b"Internal Server Error\n")
    dest = new_repo(tmp_path)
    with pytest.raises(TransportError, match=r"HTTP 500 for .*/" + victim + r" \(after 3 attempts"):
        failing_pull(dest, server.url, ["main"], retries=2)
    assert server.counts()[victim] == 3
    untouched(dest)


def test_connection_dropped_mid_object(source: Source, server: FaultServer, tmp_path: Path) -> None:
    big = head_file(source, "rawhide", "/usr/lib/mod-20.bin")
    tree_path = root_dirtree(source, "rawhide")
    server.add(big, "drop", after=50_000, times=2)
    server.add(tree_path, "drop", after=10, times=1)
    dest = new_repo(tmp_path)
    pull(Repo.open(dest), server.url, ["rawhide"], options=FAST)
    assert server.counts()[big] == 3
    assert server.counts()[tree_path] == 2
    assert commit_files(dest) == {
        f"{source.refs['rawhide'][:2]}/{source.refs['rawhide'][2:]}.commit"
    }
    fsck(dest)


def test_slow_object_retried(source: Source, server: FaultServer, tmp_path: Path) -> None:
    victim = head_file(source, "stable", "/usr/lib/mod-10.bin")
    slow = server.add(victim, "slow", delay=30.0, times=1)
    dest = new_repo(tmp_path)
    pull(Repo.open(dest), server.url, ["stable"], options=RemoteOptions(timeout=0.5, retries=2))
    assert slow.hits == 1 and server.counts()[victim] == 2
    fsck(dest)


def test_slow_object_fails_clearly(source: Source, server: FaultServer, tmp_path: Path) -> None:
    victim = head_file(source, "stable", "/usr/lib/mod-10.bin")
    server.add(victim, "slow", delay=30.0)
    dest = new_repo(tmp_path)
    with pytest.raises(TransportError, match=r"timed out"):
        failing_pull(dest, server.url, ["stable"], timeout=0.3, retries=1)
    assert server.counts()[victim] == 2
    untouched(dest)


@pytest.mark.parametrize("objtype", [ObjectType.DIR_TREE, ObjectType.DIR_META, ObjectType.FILE])
def test_404_on_a_required_object(
    source: Source, server: FaultServer, tmp_path: Path, objtype: ObjectType
) -> None:
    info = Repo.open(source.path).read_commit(source.refs["main"])
    victim = {
        ObjectType.DIR_TREE: object_path(info.root_dirtree, ObjectType.DIR_TREE),
        ObjectType.DIR_META: object_path(info.root_dirmeta, ObjectType.DIR_META),
        ObjectType.FILE: head_file(source, "main", "/usr/lib/mod-2.bin"),
    }[objtype]
    server.hidden.add(victim)
    dest = new_repo(tmp_path)
    with pytest.raises(OstreeError, match="404 for .*" + victim) as err:
        failing_pull(dest, server.url, ["main"])
    assert isinstance(err.value, (PullError, TransportError))
    assert server.counts()[victim] == 1  # not found is an answer: never retried
    untouched(dest)


def test_missing_head_commit_and_missing_parent(
    source: Source, server: FaultServer, tmp_path: Path
) -> None:
    """The head commit is required; a missing parent only ends the history."""
    oldest = source.history["main"][-1]
    server.hidden.add(object_path(oldest, ObjectType.COMMIT))
    dest = new_repo(tmp_path)
    result = pull(Repo.open(dest), server.url, ["main"], depth=-1)
    assert result.visited == set(source.history["main"][:2])
    log = run_ostree("log", f"--repo={dest}", "origin:main")
    assert log_checksums(log) == source.history["main"][:2]
    fsck(dest)
    server.hidden.add(object_path(source.refs["stable"], ObjectType.COMMIT))
    other = new_repo(tmp_path)
    with pytest.raises(PullError, match=r"404 for objects/.*commit"):
        failing_pull(other, server.url, ["stable"])
    untouched(other)


# -- the CLI -----------------------------------------------------------------------------


def test_cli_pull(source: Source, server: FaultServer, tmp_path: Path) -> None:
    dest = new_repo(tmp_path)
    proc = pyostree_result("pull", "--repo", dest, server.url, "main", "--depth", "2")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == f"main {source.refs['main']}\n"
    assert ref_files(dest) == {"remotes/origin/main"}
    assert (
        log_checksums(run_ostree("log", f"--repo={dest}", "origin:main")) == source.history["main"]
    )
    mirror = new_repo(tmp_path)
    proc = pyostree_result("pull", "--repo", mirror, "--mirror", "-q", server.url)
    assert proc.returncode == 0, proc.stderr
    assert sorted(proc.stdout.splitlines()) == sorted(f"{r} {c}" for r, c in source.refs.items())
    assert ref_files(mirror) == {f"heads/{r}" for r in source.refs}
    assert (mirror / "summary").read_bytes() == (source.path / "summary").read_bytes()
    fsck(dest)
    fsck(mirror)


def test_cli_pull_error(source: Source, server: FaultServer, tmp_path: Path) -> None:
    server.hidden.add(head_file(source, "main", "/usr/lib/mod-2.bin"))
    dest = new_repo(tmp_path)
    proc = pyostree_result("pull", "--repo", dest, server.url, "main")
    assert proc.returncode != 0
    assert "pyostree: error:" in proc.stderr and "404" in proc.stderr
    assert "Traceback" not in proc.stderr
    untouched(dest)


def test_upstream_moves_on(source: Source, tmp_path: Path) -> None:
    """A second pull after the remote gained a commit fetches only the new objects."""
    src = Source.create(tmp_path / "moving")
    src.commit("main", tree(1))
    src.summary()
    dest = new_repo(tmp_path)
    with fault_server(src.path) as server:
        pull(Repo.open(dest), server.url, depth=-1, mirror=True)
        before = object_files(dest)
        src.commit("main", tree(2))
        src.summary()
        server.clear()
        result = pull(Repo.open(dest), server.url, depth=-1, mirror=True)
    assert set(result.commits) == {src.refs["main"]}
    asked = {p.removeprefix("objects/") for p in server.objects_requested()}
    assert asked - object_files(src.path) == {
        f"{src.refs['main'][:2]}/{src.refs['main'][2:]}.commitmeta"
    }
    assert asked & before == set()
    assert len(server.objects_requested(".filez")) == 2  # etc/version and mod-2.bin
    assert log_checksums(run_ostree("log", f"--repo={dest}", "main")) == src.history["main"]
    fsck(dest)


# -- the planner, sans I/O ---------------------------------------------------------------


class Fed:
    """Drives a :class:`Planner` from files on disk, like the driver but without I/O."""

    def __init__(self, root: Path, missing: set[str] | None = None) -> None:
        self.root = root
        self.missing = missing or set()
        self.held: dict[tuple[str, ObjectType], bytes] = {}
        self.asked: list[Fetch] = []

    def planner(self, refs: list[str] | None, depth: int = 0, **kwargs: object) -> Planner:
        return Planner(
            refs=refs,
            depth=depth,
            have=lambda c, t: (c, t) in self.held,
            read_local=lambda c, t: self.held[(c, t)],
            **kwargs,  # type: ignore[arg-type]
        )

    def data(self, fetch: Fetch) -> bytes | None:
        if fetch.path in self.missing:
            return None
        try:
            return (self.root / fetch.path).read_bytes()
        except FileNotFoundError:
            return None

    def run(self, planner: Planner, *, batch: int = 3) -> list[Fetch]:
        pending = planner.start()
        while pending:
            fetch = pending.pop(0)
            self.asked.append(fetch)
            if fetch.kind is FetchKind.OBJECT and fetch.objtype is ObjectType.FILE:
                assert fetch.checksum is not None
                self.held[(fetch.checksum, ObjectType.FILE)] = b""
                planner.stored(fetch)
            else:
                for checksum, objtype, raw in planner.feed(fetch, self.data(fetch)):
                    self.held[(checksum, objtype)] = raw
            pending += planner.pop(batch)
        assert planner.done
        for checksum in planner.result().commits:  # stored last, as the driver does
            self.held[(checksum, ObjectType.COMMIT)] = planner.result().commits[checksum]
        return self.asked

    def objects(self) -> set[str]:
        return {f.path.removeprefix("objects/") for f in self.asked if f.kind is FetchKind.OBJECT}


def closure(source: Source, tmp_path: Path, ref: str, depth: int) -> set[str]:
    repo = new_repo(tmp_path)
    run_ostree("pull-local", f"--repo={repo}", f"--depth={depth}", source.path, ref)
    return object_files(repo)


@pytest.mark.parametrize("depth", [0, 1, -1])
def test_plan_walks_what_ostree_walks(source: Source, tmp_path: Path, depth: int) -> None:
    fed = Fed(source.path)
    planner = fed.planner(["main"], depth)
    fed.run(planner)
    expected = closure(source, tmp_path, "main", depth)
    present = {p for p in fed.objects() if (source.path / "objects" / p).exists()}
    assert present == expected
    result = planner.result()
    assert result.refs == {"main": source.refs["main"]}
    assert set(result.commits) == {
        Checksum(c) for c in source.history["main"][: None if depth < 0 else depth + 1]
    }
    assert result.summary == (source.path / "summary").read_bytes()
    assert [f.kind for f in fed.asked[:3]] == [
        FetchKind.CONFIG,
        FetchKind.SUMMARY,
        FetchKind.SUMMARY_SIG,
    ]


def test_plan_metadata_before_content(source: Source) -> None:
    fed = Fed(source.path)
    planner = fed.planner(None, -1)
    for fetch in planner.start():
        planner.feed(fetch, fed.data(fetch))
    batch = planner.pop(1000)
    kinds = [f.objtype for f in batch]
    assert ObjectType.FILE not in kinds  # nothing but commits yet
    assert {f.objtype for f in batch} == {ObjectType.COMMIT, ObjectType.COMMIT_META}
    sizes = {r.checksum: r.commit_size for r in parse_summary(fed.data(Fetch("summary", FetchKind.SUMMARY)) or b"").refs}  # fmt: skip
    for fetch in batch:
        if fetch.objtype is ObjectType.COMMIT:
            assert fetch.max_size == sizes[Checksum(fetch.checksum or "")]
            assert not fetch.optional
        else:
            assert fetch.optional


def test_plan_skips_what_is_held(source: Source) -> None:
    fed = Fed(source.path)
    fed.run(fed.planner(["main", "stable"], -1))
    first = fed.objects()
    fed.asked.clear()
    # Everything held: only discovery.
    fed.run(fed.planner(["main", "stable"], -1))
    assert fed.objects() == set()
    # Trees held but their files lost (an interrupted pull): the files are found again,
    # the trees are read locally, not fetched.
    for key in [k for k in fed.held if k[1] in (ObjectType.FILE, ObjectType.COMMIT)]:
        del fed.held[key]
    fed.asked.clear()
    fed.run(fed.planner(["main", "stable"], -1))
    asked = fed.objects()
    assert asked <= first
    assert {p.rsplit(".", 1)[1] for p in asked} == {"commit", "commitmeta", "filez"}
    assert {p for p in first if p.endswith(".filez")} <= asked


def test_plan_missing_parent_ends_history(source: Source) -> None:
    oldest = source.history["main"][-1]
    fed = Fed(source.path, missing={object_path(oldest, ObjectType.COMMIT)})
    planner = fed.planner(["main"], -1)
    fed.run(planner)
    result = planner.result()
    assert result.visited == set(source.history["main"][:2])
    assert oldest not in result.commits and oldest not in result.commitmeta


def test_plan_without_summary_uses_refs_heads(source: Source) -> None:
    fed = Fed(source.path, missing={"summary"})
    planner = fed.planner(["stable", "main"])
    fed.run(planner)
    refs = [f for f in fed.asked if f.kind is FetchKind.REF]
    assert [(f.path, f.ref) for f in refs] == [
        ("refs/heads/stable", "stable"),
        ("refs/heads/main", "main"),
    ]
    assert planner.result().refs == {r: source.refs[r] for r in ("stable", "main")}
    assert planner.result().summary is None
    with pytest.raises(PullError, match="no summary"):
        Fed(source.path, missing={"summary"}).run(Fed(source.path).planner(None))


def test_plan_ref_filter(source: Source) -> None:
    fed = Fed(source.path)
    planner = fed.planner(None, 0, ref_filter=lambda name: name != "stable")
    fed.run(planner)
    assert set(planner.result().refs) == set(source.refs) - {"stable"}
    nothing = Fed(source.path)
    planner = nothing.planner(None, 0, ref_filter=lambda name: False)
    nothing.run(planner)
    assert planner.result().refs == {} and nothing.objects() == set()


def discovered(
    planner: Planner, config: bytes, summary: bytes | None, sig: bytes | None = None
) -> None:
    answers = {FetchKind.CONFIG: config, FetchKind.SUMMARY: summary, FetchKind.SUMMARY_SIG: sig}
    for fetch in planner.start():
        planner.feed(fetch, answers[fetch.kind])


ARCHIVE_CONFIG = b"[core]\nrepo_version=1\nmode=archive-z2\n"


@pytest.mark.parametrize(
    "config",
    [b"[core]\nrepo_version=1\nmode=bare\n", b"[core]\nrepo_version=1\n", b"\xff\xfe", b"[core"],
)
def test_plan_refuses_bad_config(source: Source, config: bytes) -> None:
    planner = Fed(source.path).planner(["main"])
    with pytest.raises(PullError, match=r"config|archive"):
        discovered(planner, config, None)


def test_plan_refuses_bad_summary(source: Source) -> None:
    summary = (source.path / "summary").read_bytes()
    for bad in (not_normal(summary), b"<html></html>", summary[:-3]):
        planner = Fed(source.path).planner(["main"])
        with pytest.raises(PullError, match="summary is invalid"):
            discovered(planner, ARCHIVE_CONFIG, bad)
    planner = Fed(source.path).planner(["nope"])
    with pytest.raises(PullError, match="not in the remote's summary"):
        discovered(planner, ARCHIVE_CONFIG, summary, b"sig")


@pytest.mark.parametrize(
    ("body", "ok"),
    [
        (b"%s\n", True),
        (b"%s", True),
        (b"<html>%s</html>", False),
        (b"", False),
        (b"\xff\xfe", False),
        (b"%s%s", False),
    ],
)
def test_plan_ref_files(source: Source, body: bytes, ok: bool) -> None:
    commit = source.refs["stable"].encode()
    data = body.replace(b"%s", commit)
    planner = Fed(source.path).planner(["stable"])
    discovered(planner, ARCHIVE_CONFIG, None)
    (ref,) = planner.pop(10)
    assert ref.kind is FetchKind.REF and ref.max_size is not None
    if ok:
        planner.feed(ref, data)
        assert [f.objtype for f in planner.pop(10)] == [ObjectType.COMMIT_META, ObjectType.COMMIT]
    else:
        with pytest.raises(PullError, match="Invalid rev"):
            planner.feed(ref, data)


def test_plan_verifies_metadata(source: Source) -> None:
    head = source.refs["main"]
    info = parse_commit((source.path / object_path(head, ObjectType.COMMIT)).read_bytes())

    def at_commit(refs: list[str]) -> tuple[Planner, dict[ObjectType, Fetch]]:
        planner = Fed(source.path).planner(refs)
        discovered(planner, ARCHIVE_CONFIG, None)
        (ref,) = planner.pop(10)
        planner.feed(ref, head.encode())
        return planner, {f.objtype: f for f in planner.pop(10) if f.objtype is not None}

    # A commit whose bytes do not hash to its name.
    planner, fetches = at_commit(["main"])
    commit = (source.path / fetches[ObjectType.COMMIT].path).read_bytes()
    with pytest.raises(CorruptObjectError, match=f"expected={head}"):
        planner.feed(fetches[ObjectType.COMMIT], commit + b"\0")
    # Detached metadata that is not a{sv} in normal form.
    planner, fetches = at_commit(["main"])
    with pytest.raises(CorruptObjectError, match="Detached metadata"):
        planner.feed(fetches[ObjectType.COMMIT_META], b"\x01\x02\x03")
    # Bound to "main", asked for as "other".
    planner, fetches = at_commit(["other"])
    planner.feed(fetches[ObjectType.COMMIT_META], None)
    with pytest.raises(PullError, match="ref binding"):
        planner.feed(fetches[ObjectType.COMMIT], commit)
    # Unless bindings are not checked.
    planner = Fed(source.path).planner(["other"], check_bindings=False)
    discovered(planner, ARCHIVE_CONFIG, None)
    (ref,) = planner.pop(10)
    planner.feed(ref, head.encode())
    fetches = {f.objtype: f for f in planner.pop(10) if f.objtype is not None}
    planner.feed(fetches[ObjectType.COMMIT_META], None)
    planner.feed(fetches[ObjectType.COMMIT], commit)
    # A dirtree with the wrong bytes, then one that is not a dirtree at all.
    then = {f.objtype: f for f in planner.pop(10) if f.objtype is not None}
    tree_fetch = then[ObjectType.DIR_TREE]
    assert tree_fetch.checksum == info.root_dirtree
    with pytest.raises(CorruptObjectError):
        planner.feed(tree_fetch, b"\0" * 40)
    # The required head commit missing: a clear error.
    planner, fetches = at_commit(["main"])
    planner.feed(fetches[ObjectType.COMMIT_META], None)
    with pytest.raises(PullError, match="404 for objects/"):
        planner.feed(fetches[ObjectType.COMMIT], None)


def test_plan_bad_depth() -> None:
    with pytest.raises(OstreeError, match="depth"):
        Planner(refs=["main"], depth=-3, have=lambda c, t: False, read_local=lambda c, t: b"")
    with pytest.raises(OstreeError):
        Planner(refs=["a b"], depth=0, have=lambda c, t: False, read_local=lambda c, t: b"")
