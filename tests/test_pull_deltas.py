"""Issue 7: pulls that use static deltas, and the pure delta planner.

The planner tables follow ostree 2022.x (``reference/ostree-format.md`` §4.2
steps 6-7, ``get_best_static_delta_start_for``).  The pull tests serve a
repository made by the real ``ostree`` (commits A→B on ``main``, deltas from
``ostree static-delta generate``, summary from ``ostree summary -u``) with a
recording ``http.server`` on 127.0.0.1, and check the requests, the result
(``ostree fsck``, the same objects as the source) and the failures (nothing
committed).
"""

from __future__ import annotations

import contextlib
import hashlib
import http.server
import os
import random
import shutil
import threading
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from libpyostree.deltas.errors import CorruptDeltaError, DeltaError
from libpyostree.deltas.names import DeltaName, index_path
from libpyostree.deltas.plan import (
    DeltaSearch,
    best_static_delta_start,
    choose_delta,
    delta_fetches,
    verify_superblock,
)
from libpyostree.deltas.superblock import Fallback, PartHeader, Superblock
from libpyostree.gvariant import Variant
from libpyostree.http import RemoteOptions
from libpyostree.names import Checksum
from libpyostree.objects import ObjectType
from libpyostree.objects.summary import build_summary, parse_summary
from libpyostree.pull import pull
from libpyostree.repo import Repo
from tests.ostree_cli import (
    BASE_TIME,
    iso,
    ostree_commit,
    pyostree_result,
    run_ostree,
    write_file,
)

ostree = pytest.mark.ostree

C = {k: Checksum(hashlib.sha256(k.encode()).hexdigest()) for k in "ABCDEFT"}
"""Fake commit checksums for the planner tables."""
D = b"\x11" * 32


def names(*pairs: str) -> dict[str, bytes | None]:
    """``"A-T"`` → ``{C[A]-C[T]: digest}``, ``"T"`` → scratch."""
    out: dict[str, bytes | None] = {}
    for pair in pairs:
        frm, _, to = pair.rpartition("-")
        out[f"{C[frm]}-{C[to]}" if frm else C[to]] = D
    return out


# -- the planner: get_best_static_delta_start_for ------------------------------------------

SEARCH_CASES = [
    # deltas, complete commits with timestamps, expected result, expected FROM
    ((), {}, DeltaSearch.NO_MATCH, None),
    (("A-B",), {"A": 1}, DeltaSearch.NO_MATCH, None),  # not to our target
    (("A-T",), {}, DeltaSearch.NO_MATCH, None),  # FROM not held (or partial)
    (("A-T",), {"A": 1}, DeltaSearch.FROM, "A"),
    (("A-T", "B-T"), {"A": 5, "B": 9}, DeltaSearch.FROM, "B"),  # newest timestamp wins
    (("B-T", "A-T"), {"A": 9, "B": 5}, DeltaSearch.FROM, "A"),
    (("A-T", "B-T"), {"A": 7, "B": 7}, DeltaSearch.FROM, "A"),  # ties: first seen
    (("A-T", "B-T"), {"B": 1}, DeltaSearch.FROM, "B"),
    (("T",), {}, DeltaSearch.SCRATCH, None),
    (("T", "A-T"), {"A": 1}, DeltaSearch.FROM, "A"),  # FROM beats scratch
    (("T", "A-T"), {"B": 1}, DeltaSearch.SCRATCH, None),
    (("A-T",), {"T": 3, "A": 1}, DeltaSearch.UNCHANGED, None),  # target held, complete
    ((), {"T": 3}, DeltaSearch.UNCHANGED, None),
]


@pytest.mark.parametrize(("deltas", "complete", "result", "start"), SEARCH_CASES)
def test_best_static_delta_start(
    deltas: tuple[str, ...], complete: dict[str, int], result: DeltaSearch, start: str | None
) -> None:
    held: dict[str, int] = {C[k]: ts for k, ts in complete.items()}
    assert best_static_delta_start(names(*deltas), C["T"], held) == (
        result,
        C[start] if start else None,
    )


# -- the planner: the whole decision (initiate_request) --------------------------------------

DECISION_CASES = [
    # map (None: no summary deltas, not indexed), complete, from_local, kind, delta
    (("A-T",), {"A": 1}, "A", "from", "A-T"),
    (("A-T", "B-T"), {"A": 1, "B": 2}, "A", "from", "B-T"),  # not necessarily the ref
    (("T",), {}, None, "scratch", "T"),  # fresh clone
    (("T",), {"A": 1}, "A", "objects", None),  # ref exists: scratch refused
    (("T",), {}, "A", "objects", None),  # even when the ref's commit is partial
    (("T", "B-T"), {"A": 1}, "A", "objects", None),  # B not held
    (("A-T",), {"T": 2, "A": 1}, "T", "objects", None),  # unchanged
    ((), {"A": 1}, "A", "objects", None),  # indexed, empty index (404)
    # No map: probe the superblock from the local ref (ostree's legacy path).
    (None, {"A": 1}, "A", "from", "A-T"),
    (None, {}, "A", "scratch", "T"),  # partial from_local dropped
    (None, {}, None, "scratch", "T"),
    (None, {"T": 1}, "T", "objects", None),  # from_local == to
]


@pytest.mark.parametrize(("deltas", "complete", "from_local", "kind", "delta"), DECISION_CASES)
def test_choose_delta(
    deltas: tuple[str, ...] | None,
    complete: dict[str, int],
    from_local: str | None,
    kind: str,
    delta: str | None,
) -> None:
    decision = choose_delta(
        C["T"],
        deltas=None if deltas is None else names(*deltas),
        complete={C[k]: ts for k, ts in complete.items()},
        from_local=C[from_local] if from_local else None,
    )
    assert decision.kind == kind, decision.reason
    expected = None
    if delta is not None:
        frm, _, to = delta.rpartition("-")
        expected = DeltaName(C[frm] if frm else None, C[to])
    assert decision.delta == expected
    # A digest is known exactly when the delta came from a map.
    assert decision.digest == (D if delta is not None and deltas is not None else None)


def test_choose_delta_commit_id_probes_scratch() -> None:
    decision = choose_delta(C["T"], deltas=None, complete={}, from_local=None, is_ref=False)
    assert decision.delta == DeltaName(None, C["T"])


def test_invalid_delta_name_fails_like_ostree() -> None:
    with pytest.raises(DeltaError, match="Invalid delta name"):
        choose_delta(C["T"], deltas={"nonsense": D}, complete={}, from_local=None)
    # ... but only when the map is searched: a held target returns first.
    decision = choose_delta(C["T"], deltas={"nonsense": D}, complete={C["T"]: 1}, from_local=None)
    assert decision.search is DeltaSearch.UNCHANGED


def _fake_superblock(inline: bool = False) -> Superblock:
    f = hashlib.sha256(b"f").hexdigest
    objs = [(ObjectType.DIR_TREE, Checksum(f())), (ObjectType.FILE, C["B"])]
    parts = [
        PartHeader(0, b"\1" * 32, 10, 20, ((ObjectType.DIR_META, C["A"]),)),
        PartHeader(0, b"\2" * 32, 11, 21, tuple(objs)),
        PartHeader(0, b"\3" * 32, 12, 22, ()),  # an empty part: nothing to do
        PartHeader(0, b"\4" * 32, 13, 23, ((ObjectType.FILE, C["C"]),)),
    ]
    return Superblock(
        from_commit=C["A"],
        to_commit=C["T"],
        commit_bytes=b"",
        parts=parts,
        fallbacks=[
            Fallback(ObjectType.FILE, C["D"], 100, 200),
            Fallback(ObjectType.FILE, C["E"], 100, 200),
        ],
        inline_parts={3: b"\0"} if inline else {},
    )


@pytest.mark.parametrize("inline", [False, True])
def test_delta_fetches_skip_satisfied_parts(inline: bool) -> None:
    present = {(C["A"], ObjectType.DIR_META), (C["E"], ObjectType.FILE)}
    sb = _fake_superblock(inline)
    todo = delta_fetches(sb, lambda c, t: (c, t) in present)
    name = DeltaName(C["A"], C["T"])
    assert [(p.index, p.inline) for p in todo.parts] == [(1, False), (3, inline)]
    assert todo.skipped_parts == (0, 2)
    assert [p.size for p in todo.parts] == [11, 13]
    assert [f.checksum for f in todo.fallbacks] == [C["D"]]
    expected = [name.part_path(1)] + ([] if inline else [name.part_path(3)])
    assert todo.downloads == [*expected, f"objects/{C['D'][:2]}/{C['D'][2:]}.filez"]


def test_verify_superblock_digest() -> None:
    with pytest.raises(CorruptDeltaError, match="Invalid checksum for static delta"):
        verify_superblock(b"whatever", DeltaName(None, C["T"]), b"\0" * 32)
    with pytest.raises(CorruptDeltaError):  # right digest, but not a superblock
        verify_superblock(b"junk", DeltaName(None, C["T"]), hashlib.sha256(b"junk").digest())


# -- pulls against ostree-made deltas ----------------------------------------------------------


@dataclass
class Served:
    """A recording static server; ``replace`` answers a path with other bytes,
    ``hidden`` paths answer 404."""

    root: Path
    url: str = ""
    log: list[str] = field(default_factory=list)
    replace: dict[str, bytes] = field(default_factory=dict)
    hidden: set[str] = field(default_factory=set)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def requested(self, prefix: str) -> list[str]:
        with self.lock:
            return [p for p in self.log if p.startswith(prefix)]


@contextlib.contextmanager
def serve(root: Path) -> Iterator[Served]:
    state = Served(root)

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def do_GET(self) -> None:
            path = urllib.parse.unquote(urllib.parse.urlsplit(self.path).path).lstrip("/")
            with state.lock:
                state.log.append(path)
            body = state.replace.get(path)
            if body is None and path not in state.hidden and ".." not in path:
                with contextlib.suppress(OSError):
                    body = (state.root / path).read_bytes()
            status = 200 if body is not None else 404
            body = body if body is not None else b"not found\n"
            self.send_response(status)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    state.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.daemon = True
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


@dataclass
class Source:
    path: Path
    a: str
    b: str
    from_delta: DeltaName
    scratch: DeltaName


def _tree(root: Path, version: int) -> None:
    rng = random.Random(7)
    big = bytearray(rng.randbytes(300_000))
    huge = rng.randbytes(1_200_000)
    write_file(root / "etc/hello.txt", f"hello {version}\n".encode())
    write_file(root / "etc/same.conf", b"unchanged\n" * 50)
    if version:
        big[1000:1010] = b"0123456789"  # a small edit: bsdiff
        big += b"appended" * 100
        write_file(root / "usr/lib/huge.bin", huge)  # new and > 1 MB: a fallback
        write_file(root / "usr/share/new.txt", b"new file\n")
    else:
        write_file(root / "usr/share/old.txt", b"removed in B\n")
    write_file(root / "usr/lib/big.bin", bytes(big))
    for i in range(20):
        write_file(
            root / f"usr/share/doc/f{i}.txt", f"doc {i} v{version if i < 5 else 0}\n".encode()
        )
    os.symlink("hello.txt", root / "etc/link")


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Source:
    work = tmp_path_factory.mktemp("delta-source")
    repo = work / "repo"
    run_ostree("init", f"--repo={repo}", "--mode=archive")
    commits = []
    for version in (0, 1):
        tree = work / f"tree{version}"
        _tree(tree, version)
        commits.append(
            ostree_commit(
                repo,
                "-b",
                "main",
                "-s",
                f"v{version}",
                "--owner-uid=0",
                "--owner-gid=0",
                f"--timestamp={iso(BASE_TIME + 100 * version)}",
                *(["--add-detached-metadata-string=note=B"] if version else []),
                tree,
            )
        )
    a, b = commits
    run_ostree("static-delta", "generate", f"--repo={repo}", f"--from={a}", f"--to={b}",
               "--min-fallback-size=1")  # fmt: skip
    run_ostree("static-delta", "generate", f"--repo={repo}", "--empty", f"--to={b}",
               "--min-fallback-size=1")  # fmt: skip
    run_ostree("summary", "-u", f"--repo={repo}")
    return Source(repo, a, b, DeltaName(Checksum(a), Checksum(b)), DeltaName(None, Checksum(b)))


def object_set(repo: Path) -> set[str]:
    root = repo / "objects"
    return {f"{d}/{n}" for d in os.listdir(root) for n in os.listdir(root / d)}


def new_repo(tmp_path: Path, name: str) -> Path:
    path = tmp_path / name
    run_ostree("init", f"--repo={path}", "--mode=archive")
    return path


def holding_a(source: Source, tmp_path: Path, name: str = "dest") -> Path:
    """An archive repo holding commit A (complete) with ``origin:main`` at A."""
    dest = new_repo(tmp_path, name)
    run_ostree("pull-local", f"--repo={dest}", source.path, source.a)
    Repo.open(dest).set_ref("origin:main", Checksum(source.a))
    return dest


def fsck(repo: Path) -> None:
    run_ostree("fsck", f"--repo={repo}")


FAST = RemoteOptions(timeout=20.0, retries=1)


def loose_requests(served: Served) -> list[str]:
    return served.requested("objects/")


def fallback_paths(source: Source, name: DeltaName) -> set[str]:
    from libpyostree.deltas.superblock import parse_superblock

    sb = parse_superblock((source.path / name.superblock_path).read_bytes())
    return {f"objects/{f.checksum[:2]}/{f.checksum[2:]}.filez" for f in sb.fallbacks}


def commitmeta_path(commit: str) -> str:
    return f"objects/{commit[:2]}/{commit[2:]}.commitmeta"


@ostree
def test_from_delta_instead_of_objects(source: Source, tmp_path: Path) -> None:
    dest = holding_a(source, tmp_path)
    with serve(source.path) as served:
        result = pull(Repo.open(dest), served.url, ["main"], options=FAST)
    name = source.from_delta
    assert result.refs == {"main": source.b}
    assert result.deltas_used == [str(name)]
    assert result.trees is None  # a delta was used: no walked-trees shortcut
    assert result.delta_parts_fetched >= 1
    assert name.superblock_path in served.log
    assert name.part_path(0) in served.log
    assert not served.requested(source.scratch.dir + "/")
    # Loose objects: the fallback (the new 1.2 MB file) and the .commitmeta probe only.
    fallbacks = fallback_paths(source, name)
    assert len(fallbacks) == 1
    assert set(loose_requests(served)) == fallbacks | {commitmeta_path(source.b)}
    assert result.delta_fallbacks == 1
    assert object_set(dest) == object_set(source.path)
    assert Repo.open(dest).read_ref("origin:main") == source.b
    fsck(dest)
    shown = run_ostree("ls", f"--repo={dest}", "-R", "-C", source.b)
    assert shown == run_ostree("ls", f"--repo={source.path}", "-R", "-C", source.b)


@ostree
def test_scratch_delta_for_a_fresh_repo(source: Source, tmp_path: Path) -> None:
    dest = new_repo(tmp_path, "fresh")
    with serve(source.path) as served:
        result = pull(Repo.open(dest), served.url, ["main"], options=FAST)
    assert result.deltas_used == [str(source.scratch)]
    assert source.scratch.superblock_path in served.log
    assert not served.requested(source.from_delta.dir)
    fallbacks = fallback_paths(source, source.scratch)
    assert set(loose_requests(served)) == fallbacks | {commitmeta_path(source.b)}
    fsck(dest)
    # Exactly B's closure: A's commit and A-only objects are not there.
    assert not Repo.open(dest).has_object(source.a, ObjectType.COMMIT)
    assert object_set(dest) < object_set(source.path)
    assert run_ostree("ls", f"--repo={dest}", "-R", "-C", source.b) == run_ostree(
        "ls", f"--repo={source.path}", "-R", "-C", source.b
    )


@ostree
def test_scratch_delta_refused_when_the_ref_exists(source: Source, tmp_path: Path) -> None:
    """Only the scratch delta is published: a repo with the ref walks objects."""
    only_scratch = tmp_path / "only-scratch"
    shutil.copytree(source.path, only_scratch, symlinks=True)
    run_ostree("static-delta", "delete", f"--repo={only_scratch}", str(source.from_delta))
    run_ostree("summary", "-u", f"--repo={only_scratch}")
    dest = holding_a(source, tmp_path)
    with serve(only_scratch) as served:
        result = pull(Repo.open(dest), served.url, ["main"], options=FAST)
    assert result.deltas_used == []
    assert not served.requested("deltas/")
    assert f"objects/{source.b[:2]}/{source.b[2:]}.commit" in served.log
    fsck(dest)


def _without_delta_keys(summary: bytes, *, indexed: bool) -> bytes:
    parsed = parse_summary(summary)
    meta = {k: v for k, v in parsed.metadata.items() if k != "ostree.static-deltas"}
    if indexed:
        meta["ostree.summary.indexed-deltas"] = Variant("b", True)
    else:
        meta.pop("ostree.summary.indexed-deltas", None)
    return build_summary(list(parsed.refs), meta)


@ostree
def test_delta_indexes_only(source: Source, tmp_path: Path) -> None:
    """Summary without ``ostree.static-deltas`` but indexed deltas: the index is used."""
    assert (source.path / index_path(source.b)).is_file()
    dest = holding_a(source, tmp_path)
    with serve(source.path) as served:
        served.replace["summary"] = _without_delta_keys(
            (source.path / "summary").read_bytes(), indexed=True
        )
        result = pull(Repo.open(dest), served.url, ["main"], options=FAST)
        assert result.deltas_used == [str(source.from_delta)]
        log = list(served.log)
    assert log.index(index_path(source.b)) < log.index(source.from_delta.superblock_path)
    fsck(dest)
    assert object_set(dest) == object_set(source.path)


@ostree
def test_missing_index_means_no_deltas(source: Source, tmp_path: Path) -> None:
    dest = holding_a(source, tmp_path)
    with serve(source.path) as served:
        served.replace["summary"] = _without_delta_keys(
            (source.path / "summary").read_bytes(), indexed=True
        )
        served.hidden.add(index_path(source.b))
        result = pull(Repo.open(dest), served.url, ["main"], options=FAST)
        assert result.deltas_used == []
        assert index_path(source.b) in served.log
        assert not served.requested("deltas/")
    fsck(dest)


@ostree
def test_no_delta_keys_probes_the_local_ref_delta(source: Source, tmp_path: Path) -> None:
    """No deltas in the summary, not indexed: the superblock local-ref→target is
    tried (no digest to check); 404 there falls back to the object walk."""
    dest = holding_a(source, tmp_path)
    plain = _without_delta_keys((source.path / "summary").read_bytes(), indexed=False)
    with serve(source.path) as served:
        served.replace["summary"] = plain
        result = pull(Repo.open(dest), served.url, ["main"], options=FAST)
        assert result.deltas_used == [str(source.from_delta)]
        assert not served.requested("delta-indexes/")
    fsck(dest)
    other = holding_a(source, tmp_path, "other")
    with serve(source.path) as served:
        served.replace["summary"] = plain
        served.hidden.add(source.from_delta.superblock_path)
        result = pull(Repo.open(other), served.url, ["main"], options=FAST)
        assert result.deltas_used == []
        assert source.from_delta.superblock_path in served.log
    assert Repo.open(other).read_ref("origin:main") == source.b
    fsck(other)


def _flip(data: bytes) -> bytes:
    out = bytearray(data)
    out[len(out) // 2] ^= 0x55
    return bytes(out)


def _assert_not_committed(dest: Path, source: Source) -> None:
    repo = Repo.open(dest)
    assert not repo.has_object(source.b, ObjectType.COMMIT)
    assert repo.read_ref("origin:main") == source.a
    fsck(dest)


@ostree
def test_inline_delta_needs_no_part_download(source: Source, tmp_path: Path) -> None:
    inline = tmp_path / "inline"
    shutil.copytree(source.path, inline, symlinks=True)
    name = source.from_delta
    run_ostree("static-delta", "delete", f"--repo={inline}", str(name))
    run_ostree("static-delta", "generate", f"--repo={inline}", f"--from={source.a}",
               f"--to={source.b}", "--inline", "--min-fallback-size=1")  # fmt: skip
    run_ostree("summary", "-u", f"--repo={inline}")
    assert not (inline / name.part_path(0)).exists()
    dest = holding_a(source, tmp_path)
    with serve(inline) as served:
        result = pull(Repo.open(dest), served.url, ["main"], options=FAST)
        assert result.deltas_used == [str(name)]
        assert result.delta_parts_fetched == 0 and result.delta_objects > 0
        assert served.requested("deltas/") == [name.superblock_path]
    assert object_set(dest) == object_set(source.path)
    fsck(dest)


@ostree
def test_depth_walks_ancestors_after_a_scratch_delta(source: Source, tmp_path: Path) -> None:
    """Deltas only target the requested commit; its parent comes loose."""
    dest = new_repo(tmp_path, "fresh")
    with serve(source.path) as served:
        result = pull(Repo.open(dest), served.url, ["main"], depth=1, options=FAST)
        assert result.deltas_used == [str(source.scratch)]
        assert f"objects/{source.a[:2]}/{source.a[2:]}.commit" in served.log
        assert f"objects/{source.b[:2]}/{source.b[2:]}.commit" not in served.log
    assert result.visited == {source.a, source.b}
    assert object_set(dest) == object_set(source.path)
    fsck(dest)


@ostree
def test_detached_metadata_from_the_superblock(source: Source, tmp_path: Path) -> None:
    """The remote's .commitmeta is gone: the copy embedded in the superblock stays."""
    dest = holding_a(source, tmp_path)
    with serve(source.path) as served:
        served.hidden.add(commitmeta_path(source.b))
        pull(Repo.open(dest), served.url, ["main"], options=FAST)
        assert commitmeta_path(source.b) in served.log
    meta = Repo.open(dest).read_commitmeta(source.b)
    assert meta is not None and meta["note"].value == "B"
    fsck(dest)


@ostree
def test_corrupt_part_is_an_error(source: Source, tmp_path: Path) -> None:
    dest = holding_a(source, tmp_path)
    part = source.from_delta.part_path(0)
    with serve(source.path) as served:
        served.replace[part] = _flip((source.path / part).read_bytes())
        with pytest.raises(CorruptDeltaError, match="Checksum mismatch in static delta part"):
            pull(Repo.open(dest), served.url, ["main"], options=FAST)
        # Never retried through the object walk.
        assert f"objects/{source.b[:2]}/{source.b[2:]}.commit" not in served.log
    _assert_not_committed(dest, source)


@ostree
def test_superblock_digest_mismatch_is_an_error(source: Source, tmp_path: Path) -> None:
    dest = holding_a(source, tmp_path)
    path = source.from_delta.superblock_path
    with serve(source.path) as served:
        served.replace[path] = _flip((source.path / path).read_bytes())
        with pytest.raises(CorruptDeltaError, match="Invalid checksum for static delta"):
            pull(Repo.open(dest), served.url, ["main"], options=FAST)
        assert not served.requested(source.from_delta.part_path(0))
    _assert_not_committed(dest, source)


@ostree
def test_missing_superblock_falls_back_to_objects(source: Source, tmp_path: Path) -> None:
    dest = holding_a(source, tmp_path)
    with serve(source.path) as served:
        served.hidden.add(source.from_delta.superblock_path)
        result = pull(Repo.open(dest), served.url, ["main"], options=FAST)
    assert result.deltas_used == []
    assert object_set(dest) == object_set(source.path)
    fsck(dest)


@ostree
def test_part_already_satisfied_is_not_fetched(source: Source, tmp_path: Path) -> None:
    """A repo that already has every object of B but not the commit (an interrupted
    pull): the superblock is fetched, the parts are not."""
    dest = holding_a(source, tmp_path)
    ours = Repo.open(dest)
    src = Repo.open(source.path)
    for checksum, objtype in src.iter_objects():
        if objtype is not ObjectType.COMMIT and objtype is not ObjectType.COMMIT_META:
            ours.write_object_raw(checksum, objtype, src.read_object_raw(checksum, objtype))
    with serve(source.path) as served:
        result = pull(ours, served.url, ["main"], options=FAST)
        assert result.deltas_used == [str(source.from_delta)]
        assert result.delta_parts_fetched == 0 and result.delta_parts_skipped >= 1
        assert not served.requested(source.from_delta.part_path(0))
    fsck(dest)


@ostree
def test_cli_disable_static_deltas(source: Source, tmp_path: Path) -> None:
    dest = holding_a(source, tmp_path)
    with serve(source.path) as served:
        proc = pyostree_result(
            "pull", f"--repo={dest}", "--disable-static-deltas", served.url, "main"
        )
        assert proc.returncode == 0, proc.stderr
        assert not served.requested("deltas/") and not served.requested("delta-indexes/")
        assert f"objects/{source.b[:2]}/{source.b[2:]}.commit" in served.log
    assert f"main {source.b}" in proc.stdout
    fsck(dest)
    assert object_set(dest) == object_set(source.path)


@ostree
def test_cli_reports_deltas(source: Source, tmp_path: Path) -> None:
    dest = holding_a(source, tmp_path)
    with serve(source.path) as served:
        proc = pyostree_result("pull", f"--repo={dest}", served.url, "main")
    assert proc.returncode == 0, proc.stderr
    assert f"static delta {source.from_delta}" in proc.stderr
    fsck(dest)


@ostree
def test_planner_sans_io_delta_flow(source: Source, tmp_path: Path) -> None:
    """The planner alone, fed files from disk: discovery, superblock, then parts and
    fallbacks; after part_applied/stored, the commit comes from the superblock and
    only its .commitmeta is asked for."""
    from libpyostree.deltas.apply import execute_part
    from libpyostree.deltas.part import open_part
    from libpyostree.pullplan import Fetch, FetchKind, Planner

    dest = holding_a(source, tmp_path)
    repo = Repo.open(dest)
    planner = Planner(
        refs=["main"],
        depth=0,
        have=repo.has_object,
        read_local=repo.read_object_raw,
        deltas=True,
        local_ref=lambda name: repo.read_ref(f"origin:{name}"),
    )

    def body(fetch: Fetch) -> bytes | None:
        path = source.path / fetch.path
        return path.read_bytes() if path.exists() else None

    asked: list[Fetch] = []
    todo = planner.start()
    while todo:
        for fetch in todo:
            asked.append(fetch)
            if fetch.kind is FetchKind.DELTA_PART:
                assert fetch.part is not None and fetch.checksum is not None
                sb = planner.superblock(fetch.checksum)
                data = body(fetch)
                assert data is not None and len(data) <= (fetch.max_size or 0)
                payload = open_part(data, fetch.digest)
                execute_part(repo, sb.parts[fetch.part].objects, payload, to_commit=sb.to_commit)
                planner.part_applied(fetch)
            elif fetch.kind is FetchKind.OBJECT and fetch.objtype is ObjectType.FILE:
                assert fetch.checksum is not None
                data = body(fetch)
                assert data is not None
                repo.write_object_raw(fetch.checksum, ObjectType.FILE, data)
                planner.stored(fetch)
            else:
                for checksum, objtype, raw in planner.feed(fetch, body(fetch)):
                    repo.write_object_raw(checksum, objtype, raw)
        todo = planner.pop(100)
    result = planner.result()
    kinds = [f.kind for f in asked]
    assert kinds.count(FetchKind.DELTA_SUPERBLOCK) == 1
    assert kinds.count(FetchKind.DELTA_PART) == 1
    assert [f.path for f in asked if f.kind is FetchKind.OBJECT] == [
        *sorted(fallback_paths(source, source.from_delta)),
        commitmeta_path(source.b),
    ]
    sb_fetch = next(f for f in asked if f.kind is FetchKind.DELTA_SUPERBLOCK)
    assert sb_fetch.digest is not None and sb_fetch.max_size == 128 * 1024 * 1024
    assert set(result.commits) == {source.b}
    assert set(result.commitmeta) == {source.b}
    assert result.deltas_used == [str(source.from_delta)]


@ostree
def test_held_target_asks_for_no_delta(source: Source, tmp_path: Path) -> None:
    dest = holding_a(source, tmp_path)
    with serve(source.path) as served:
        pull(Repo.open(dest), served.url, ["main"], options=FAST)
        served.log.clear()
        again = pull(Repo.open(dest), served.url, ["main"], options=FAST)
        assert again.deltas_used == [] and again.commits == {}
        assert not served.requested("deltas/") and not served.requested("delta-indexes/")
        assert not served.requested("objects/")
