"""The real ``ostree`` CLI as a test oracle, and builders of ostree-made repositories.

:func:`require_ostree` skips a test when ``/usr/bin/ostree`` (Debian package ``ostree``)
is missing, except under ``CI=true`` where that is a failure: CI must prove
compatibility, not silently skip it.  :func:`run_ostree` runs one command and returns
its stdout, raising :class:`OstreeCommandError` (with stderr) when it fails.

:func:`build_zoo` makes one archive repository holding every kind of object and ref
that ostree can produce (see :class:`Zoo`); :func:`build_small_repo` a small one to
corrupt.  Everything is deterministic: fixed timestamps, seeded random data, and
explicit owners, so the same commit checksums come out on every run.
"""

from __future__ import annotations

import contextlib
import io
import os
import random
import re
import shutil
import socket
import subprocess
import sys
import tarfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from libpyostree.gvariant import Variant

OSTREE_MISSING = "ostree CLI not installed (Debian package ostree)"

#: 2020-01-01T00:00:00Z; commits of the zoo are made at fixed offsets from it.
BASE_TIME = 1577836800


class OstreeCommandError(AssertionError):
    """An ``ostree`` (or ``pyostree``) command that exited non-zero."""

    def __init__(self, argv: list[str], returncode: int, stdout: str, stderr: str) -> None:
        self.argv = argv
        self.returncode = returncode
        self.stdout = stdout
        self.stderr = stderr
        super().__init__(
            f"{' '.join(argv)} exited {returncode}\nstderr: {stderr.strip()}\n"
            f"stdout: {stdout.strip()[:2000]}"
        )


def require_ostree() -> str:
    """The path of the ``ostree`` binary; skip (or fail under ``CI=true``) without it."""
    path = shutil.which("ostree")
    if path is None:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"CI=true but {OSTREE_MISSING}", pytrace=False)
        pytest.skip(OSTREE_MISSING)
    return path


def _env() -> dict[str, str]:
    env = dict(os.environ)
    # Plain local GIO (no gvfs/dbus), UTF-8 file names, no GPG agent lookups.
    env.update({"GIO_USE_VFS": "local", "LC_ALL": "C.UTF-8", "LANG": "C.UTF-8"})
    env.pop("OSTREE_REPO", None)
    return env


def ostree_result(*args: str | os.PathLike[str]) -> subprocess.CompletedProcess[str]:
    """Run ``ostree ARGS`` and return the completed process whatever its exit status."""
    argv = [require_ostree(), *(os.fspath(a) for a in args)]
    return subprocess.run(
        argv, capture_output=True, text=True, env=_env(), check=False, timeout=300
    )


def run_ostree(*args: str | os.PathLike[str]) -> str:
    """Run ``ostree ARGS``; its stdout, or :class:`OstreeCommandError` with its stderr."""
    proc = ostree_result(*args)
    if proc.returncode != 0:
        raise OstreeCommandError(list(proc.args), proc.returncode, proc.stdout, proc.stderr)
    return proc.stdout


def pyostree_result(*args: str | os.PathLike[str]) -> subprocess.CompletedProcess[str]:
    """Run our CLI (``python -m libpyostree.cli``) in a subprocess, whatever its status."""
    argv = [sys.executable, "-m", "libpyostree.cli", *(os.fspath(a) for a in args)]
    return subprocess.run(
        argv, capture_output=True, text=True, env=_env(), check=False, timeout=300
    )


def run_pyostree(*args: str | os.PathLike[str]) -> str:
    proc = pyostree_result(*args)
    if proc.returncode != 0:
        raise OstreeCommandError(list(proc.args), proc.returncode, proc.stdout, proc.stderr)
    return proc.stdout


def iso(ts: int) -> str:
    """A ``--timestamp`` argument both ``ostree commit`` and ``pyostree commit`` accept."""
    return time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime(ts))


def ostree_commit(repo: Path, *args: str | os.PathLike[str]) -> str:
    """``ostree commit --repo=REPO ARGS``; the new commit checksum."""
    out = run_ostree("commit", f"--repo={repo}", *args).strip()
    assert re.fullmatch(r"[0-9a-f]{64}", out), out
    return out


def log_checksums(text: str) -> list[str]:
    """The ``commit CHECKSUM`` lines of ``ostree log`` / ``pyostree log`` output."""
    return re.findall(r"^commit ([0-9a-f]{64})$", text, re.MULTILINE)


# --- trees ---------------------------------------------------------------------------

LONG_NAME_LEN = 70
"""Names in the ``wide-long`` directory: long enough that ~1000 entries exceed 64 KiB."""


def dirtree_size(names: list[str]) -> int:
    """Serialized size of a dirtree that holds only files with these names.

    Each ``(say)`` element is name + NUL + 32-byte checksum + a 1-byte offset (elements
    stay under 256 bytes); the array adds one framing offset per element whose width
    depends on the array size; the outer pair adds one offset and an empty ``dirs``.
    """
    body = sum(len(n.encode()) + 1 + 32 + 1 for n in names)
    for width in (1, 2, 4, 8):
        total = body + width * len(names)
        if total < 1 << (8 * width):
            break
    for outer in (1, 2, 4, 8):
        if total + outer < 1 << (8 * outer):
            return total + outer
    raise AssertionError("unreachable")


def long_names(count: int) -> list[str]:
    return [f"{i:04d}-" + "n" * (LONG_NAME_LEN - 5) for i in range(count)]


def wide_w2_names() -> list[str]:
    """As many short names as fit a dirtree with 2-byte framing offsets (size <= 65535)."""
    names = [f"e{i:04d}" for i in range(1000)]
    assert 255 < dirtree_size(names) <= 0xFFFF
    return names


def wide_w4_names() -> list[str]:
    """~1000 long names whose dirtree is just over 64 KiB, so framing offsets are 4 bytes."""
    count = 1
    while dirtree_size(long_names(count)) <= 0xFFFF:
        count += 1
    return long_names(count + 50)


def write_file(path: Path, data: bytes, mode: int = 0o644) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    os.chmod(path, mode)


def make_main_tree(root: Path) -> None:
    """The directory committed as the zoo's ``main``: every file type, mode and shape."""
    rnd = random.Random(20220700)
    root.mkdir()
    os.chmod(root, 0o755)
    files = root / "files"
    write_file(files / "empty", b"")
    write_file(files / "empty-private", b"", 0o600)
    write_file(files / "hello.txt", b"hello, world\n")
    write_file(files / "no-newline", b"x")
    # ~5 MB: 2.5 MB random (incompressible), 2.5 MB repetitive text (very compressible).
    big = rnd.randbytes(2_500_000) + b"ostree archive deflate body\n" * 90_000
    write_file(files / "large.bin", big)
    write_file(files / "setuid", b"#!/bin/sh\necho setuid\n", 0o4755)
    write_file(files / "setgid", b"#!/bin/sh\necho setgid\n", 0o2755)
    write_file(files / "setuid-setgid", b"both\n", 0o6755)
    write_file(files / "sticky-file", b"sticky\n", 0o1644)
    write_file(files / "private", b"secret\n", 0o700)
    write_file(files / "readonly", b"read only\n", 0o444)
    write_file(files / "exec", b"#!/bin/sh\n", 0o755)
    write_file(files / "no-perms", b"none\n", 0o000)
    write_file(files / ("a" * 250), b"name of 250 bytes: element offsets of width 2\n")
    # Same content, different modes: distinct objects; same content and mode: one object.
    write_file(files / "dup1", b"duplicate\n")
    write_file(files / "dup2", b"duplicate\n")
    write_file(files / "dup-exec", b"duplicate\n", 0o755)

    links = root / "links"
    links.mkdir()
    os.symlink("../files/hello.txt", links / "relative")
    os.symlink("/etc/hostname", links / "absolute")
    os.symlink("does/not/exist", links / "dangling")
    os.symlink("../deep", links / "to-dir")
    os.symlink(".", links / "self")
    os.symlink("ünïcødé ☃ " + "t" * 200, links / "long-unicode-target")

    for name, mode in (
        ("sticky", 0o1777),
        ("private", 0o700),
        ("setgid-dir", 0o2775),
        ("group-writable", 0o775),
    ):
        d = root / "dirs" / name
        d.mkdir(parents=True)
        write_file(d / "inside", f"inside {name}\n".encode())
        os.chmod(d, mode)
    ro = root / "dirs" / "read-only"
    ro.mkdir()
    write_file(ro / "inside", b"inside a read-only dir\n", 0o444)
    (ro / "sub").mkdir()
    os.chmod(ro, 0o555)
    (root / "dirs" / "empty-dir").mkdir()

    uni = root / "unicode"
    for name in ("ünïcødé", "😀🚀", "漢字テスト.txt", "Ελληνικά", "with space", "tab\tname"):
        write_file(uni / name, name.encode() + b"\n")
    write_file(uni / "dir-ñ" / "ß", b"eszett\n")
    write_file(uni / ("🙂" * 60), b"a 240-byte name of emoji\n")

    deep = root / "deep"
    for level in range(1, 21):
        deep = deep / f"level{level:02d}"
    write_file(deep / "leaf", b"20 levels down\n")

    for i in range(3000):
        write_file(root / "wide3000" / f"f{i:04d}", f"file {i}\n".encode())
    for name in wide_w2_names():
        write_file(root / "wide-w2" / name, b"")
    for name in wide_w4_names():
        write_file(root / "wide-w4" / name, b"")
    # A directory entry element longer than 255 bytes (name 250 + two checksums).
    write_file(root / "subdirs" / ("d" * 250) / "x", b"x\n")
    os.chmod(ro, 0o555)


def _tar_add(
    tf: tarfile.TarFile,
    name: str,
    *,
    kind: bytes = tarfile.REGTYPE,
    data: bytes = b"",
    mode: int = 0o644,
    uid: int = 0,
    gid: int = 0,
    link: str = "",
    xattrs: dict[str, str] | None = None,
) -> None:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.mode = mode
    info.uid, info.gid = uid, gid
    info.mtime = BASE_TIME
    info.linkname = link
    if xattrs:
        info.pax_headers = {f"SCHILY.xattr.{k}": v for k, v in xattrs.items()}
    if kind == tarfile.REGTYPE:
        info.size = len(data)
        tf.addfile(info, io.BytesIO(data))
    else:
        tf.addfile(info)


def make_tarball(path: Path) -> None:
    """A pax tarball with owners ostree cannot take from a directory and xattrs in
    ``SCHILY.xattr.*`` headers (``user.*``, ``security.*``, ``trusted.*``)."""
    with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as tf:
        _tar_add(tf, ".", kind=tarfile.DIRTYPE, mode=0o755)
        # libarchive hands ostree the xattrs of an entry in reverse header order, and
        # ostree 2022.7 stores them as given: these end up unsorted in the objects.
        _tar_add(
            tf, "./etc", kind=tarfile.DIRTYPE, mode=0o755, xattrs={"user.a": "a", "user.z": "z"}
        )
        _tar_add(tf, "./etc/conf", data=b"key=value\n", xattrs={"user.foo": "bar"})
        _tar_add(
            tf,
            "./etc/labelled",
            data=b"labelled\n",
            xattrs={
                "security.ima": "\x01\x02ima",
                "user.b": "second",
                "user.a": "first",
                "trusted.t": "t",
            },
        )
        _tar_add(tf, "./etc/empty-xattr", data=b"", xattrs={"user.empty": ""})
        _tar_add(tf, "./home", kind=tarfile.DIRTYPE, mode=0o755)
        _tar_add(tf, "./home/alice", kind=tarfile.DIRTYPE, mode=0o750, uid=1000, gid=1000)
        _tar_add(tf, "./home/alice/notes", data=b"alice\n", mode=0o600, uid=1000, gid=1000)
        _tar_add(
            tf,
            "./home/alice/link",
            kind=tarfile.SYMTYPE,
            link="notes",
            mode=0o777,
            uid=1000,
            gid=100,
        )
        _tar_add(tf, "./home/nobody", data=b"nobody\n", uid=65534, gid=65534)
        _tar_add(tf, "./home/big-ids", data=b"big ids\n", uid=123456, gid=4000000)
        _tar_add(tf, "./srv", kind=tarfile.DIRTYPE, mode=0o2770, uid=33, gid=33)
        _tar_add(tf, "./srv/www", data=b"<html/>\n", mode=0o640, uid=33, gid=33)


def make_small_tree(root: Path, variant: int = 0) -> None:
    root.mkdir()
    write_file(root / "README", f"small tree {variant}\n".encode())
    write_file(root / "bin" / "tool", b"#!/bin/sh\necho tool\n" * (variant + 1), 0o755)
    write_file(root / "data" / "blob", bytes(range(256)) * 64)
    os.symlink("../README", root / "bin" / "readme-link")
    write_file(root / "data" / "nested" / "deeper" / "file", b"deeper\n")


# --- repositories ----------------------------------------------------------------------

#: Subject and body of the zoo's ``main`` commit (``ostree commit -s … -m …``).
MAIN_SUBJECT = "The zoo"
MAIN_BODY = "every shape\n\nof file"

#: Typed metadata given to ``ostree commit --add-metadata=KEY=VALUE`` (GVariant text
#: format) and the value libpyostree must decode from the commit.
ZOO_METADATA: dict[str, tuple[str, Variant]] = {
    "test.uint32": ("uint32 42", Variant("u", 42)),
    "test.uint32-big": ("uint32 4000000000", Variant("u", 4_000_000_000)),
    "test.int64": ("int64 -5", Variant("x", -5)),
    "test.uint64": ("uint64 1234567890123", Variant("t", 1_234_567_890_123)),
    "test.true": ("true", Variant("b", True)),
    "test.false": ("false", Variant("b", False)),
    "test.strv": ("['a', 'b', 'ünï']", Variant("as", ["a", "b", "ünï"])),
    "test.dict": (
        "{'k': <uint32 1>, 's': <'v'>}",
        Variant("a{sv}", {"k": Variant("u", 1), "s": Variant("s", "v")}),
    ),
    "test.bytes": ("[byte 0x00, 0x01, 0xff]", Variant("ay", b"\x00\x01\xff")),
    "test.bytestring": ("b'ostree'", Variant("ay", b"ostree\x00")),
    "test.double": ("1.5", Variant("d", 1.5)),
    "test.tuple": ("('x', uint16 7)", Variant("(sq)", ("x", 7))),
    "test.objpath": ("objectpath '/org/example'", Variant("o", "/org/example")),
    "test.maybe": ("@ms 'just'", Variant("ms", "just")),
}
#: ``--add-metadata-string=KEY=VALUE`` pairs (type ``s``).
ZOO_METADATA_STRINGS = {"version": "42.1", "test.string": "hello ostree ✓ 'quoted'"}
#: Detached metadata of the ``meta`` commit (``--add-detached-metadata-string``).
ZOO_DETACHED = {"detached.note": "not signed"}

#: Every ref of the zoo as ``ostree refs`` lists it (heads, the alias, remote refs).
ZOO_REFS = (
    "chain",
    "fedora/x86_64/iot",
    "main",
    "meta",
    "nobind",
    "origin:foo",
    "origin:nested/bar",
    "stable",
    "tarball",
)


@dataclass(frozen=True)
class Zoo:
    """An archive repository made by the real ostree CLI (see :func:`build_zoo`).

    ``refs`` maps every ref of :data:`ZOO_REFS` to the commit ostree made or set.
    ``chain`` has a parent chain of 4 commits, ``chain_commits`` oldest first.
    """

    path: Path
    main_tree: Path
    refs: dict[str, str]
    chain_commits: list[str]

    @property
    def heads(self) -> dict[str, str]:
        return {name: csum for name, csum in self.refs.items() if ":" not in name}


def build_zoo(workdir: Path) -> Zoo:
    """Build the zoo in ``workdir/repo`` with the real ostree CLI.

    - ``main``: :func:`make_main_tree` committed as root:root (``--owner-uid/gid=0``);
      ``stable`` is an alias of it and ``origin:nested/bar`` a remote ref to it.
    - ``fedora/x86_64/iot``: the same tree, another commit (a nested ref name).
    - ``tarball``: :func:`make_tarball` through ``--tree=tar=`` (owners, xattrs).
    - ``meta``: the main tree with typed, string and detached metadata.
    - ``nobind``: the tarball tree, committed ``--no-bindings``.
    - ``chain``: 4 commits of :func:`make_small_tree`; ``origin:foo`` is ``chain^^``.
    Then ``ostree summary -u``.  Every commit has a fixed ``--timestamp``.
    """
    repo = workdir / "repo"
    run_ostree("init", f"--repo={repo}", "--mode=archive")
    main_tree = workdir / "main-tree"
    make_main_tree(main_tree)
    owner = ("--owner-uid=0", "--owner-gid=0")

    def commit(branch: str, subject: str, ts: int, *args: str | os.PathLike[str]) -> str:
        return ostree_commit(repo, "-b", branch, "-s", subject, f"--timestamp={iso(ts)}", *args)

    refs = {"main": commit("main", MAIN_SUBJECT, BASE_TIME, "-m", MAIN_BODY, *owner, main_tree)}
    refs["fedora/x86_64/iot"] = commit(
        "fedora/x86_64/iot", "nested ref", BASE_TIME, "--tree=ref=main"
    )
    tarball = workdir / "zoo.tar"
    make_tarball(tarball)
    refs["tarball"] = commit("tarball", "from a tarball", BASE_TIME + 60, f"--tree=tar={tarball}")
    meta_args = [f"--add-metadata-string={k}={v}" for k, v in ZOO_METADATA_STRINGS.items()]
    meta_args += [f"--add-metadata={k}={text}" for k, (text, _) in ZOO_METADATA.items()]
    meta_args += [f"--add-detached-metadata-string={k}={v}" for k, v in ZOO_DETACHED.items()]
    refs["meta"] = commit("meta", "typed metadata", BASE_TIME + 120, "--tree=ref=main", *meta_args)
    refs["nobind"] = commit(
        "nobind", "no bindings", BASE_TIME + 180, "--no-bindings", "--tree=ref=tarball"
    )
    chain_commits = []
    for i in range(4):
        tree = workdir / f"chain-{i}"
        make_small_tree(tree, i)
        chain_commits.append(
            commit("chain", f"chain {i}", BASE_TIME + 86400 * (i + 1), *owner, tree)
        )
    refs["chain"] = chain_commits[-1]

    run_ostree("refs", f"--repo={repo}", "--create=origin:foo", "chain^^")
    run_ostree("refs", f"--repo={repo}", "--create=origin:nested/bar", "main")
    run_ostree("refs", f"--repo={repo}", "--alias", "--create=stable", "main")
    refs |= {"origin:foo": chain_commits[1], "origin:nested/bar": refs["main"]}
    refs["stable"] = refs["main"]
    run_ostree("summary", f"--repo={repo}", "-u")
    assert sorted(refs) == sorted(ZOO_REFS)
    return Zoo(repo, main_tree, dict(sorted(refs.items())), chain_commits)


def build_small_repo(repo: Path, workdir: Path) -> dict[str, str]:
    """A small archive repository made by ostree: ``small`` (2 commits of
    :func:`make_small_tree`, root-owned) and ``other`` (1 commit, owned by 1000).
    Returns ref → checksum."""
    run_ostree("init", f"--repo={repo}", "--mode=archive")
    refs = {}
    for i, (ref, uid) in enumerate((("small", 0), ("small", 0), ("other", 1000))):
        tree = workdir / f"small-{i}"
        make_small_tree(tree, i)
        refs[ref] = ostree_commit(
            repo,
            "-b",
            ref,
            "-s",
            f"{ref} {i}",
            f"--owner-uid={uid}",
            f"--owner-gid={uid}",
            f"--timestamp={iso(BASE_TIME + i)}",
            tree,
        )
    return refs


# --- serving a repository over HTTP ----------------------------------------------------


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@contextlib.contextmanager
def serve_http(directory: Path) -> Iterator[str]:
    """Serve ``directory`` with ``python3 -m http.server`` on a free local port; yields
    the base URL once it answers, and kills the server afterwards."""
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "http.server", "--bind", "127.0.0.1", str(port), "-d", directory],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 15
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"http.server exited with {proc.returncode}")
            try:
                with urllib.request.urlopen(f"{url}/config", timeout=1) as resp:
                    resp.read()
                break
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                if time.monotonic() > deadline:
                    raise RuntimeError(f"http.server on port {port} never answered") from None
                time.sleep(0.05)
        yield url
    finally:
        proc.kill()
        proc.wait(timeout=10)
