"""Build commit archives for the import tests (and the import benchmark).

- :func:`osbuild_members` / :func:`write_osbuild_tar`: the layout osbuild's
  ``commit-archive`` pipeline writes (``reference/peers.md`` §4): ``./``, ``./compose.json``
  (rpm-ostree's keys, see :func:`compose_json`) and the whole ``./repo/`` tree, every
  entry prefixed ``./``, GNU format by default.
- :func:`tar_with_binary`: the real GNU ``tar`` (``tar -cf x.tar repo/``, or osbuild's
  ``--xattrs`` invocation, which switches to pax headers).
- :func:`compressing` / :func:`compress_file`: gzip, xz and zstd (the ``zstandard``
  module, writing a content checksum as the ``zstd`` CLI does).
- :class:`Member` and :func:`write_tar`: hand-made (hostile) tars with :mod:`tarfile`:
  traversal, links, device nodes, duplicates, zero-filled giants that compress to
  almost nothing (:func:`zero_member`), and so on; :func:`repo_members` lists a real
  repository so that a hostile member can ride along with otherwise valid content.
- :func:`truncate`, :func:`flip_byte`, :func:`corrupt_compressed_trailer`: damaged copies.

Everything written here is deterministic (fixed mtimes, owners and member order).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import gzip
import hashlib
import io
import json
import lzma
import os
import shutil
import stat
import subprocess
import tarfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import BinaryIO, Literal

import zstandard

from libpyostree.gvariant import Variant
from libpyostree.names import Checksum
from libpyostree.objects import Commit, parse_commit
from libpyostree.repo import Repo

Compression = Literal["none", "gz", "xz", "zst"]
COMPRESSIONS: tuple[Compression, ...] = ("none", "gz", "xz", "zst")

#: mtime of every member written by :func:`write_tar` (2024-01-01T00:00:00Z).
MTIME = 1704067200

#: What osbuild's default Image Builder ref looks like.
EDGE_REF = "rhel/9/x86_64/edge"


# --- members and tar writing ------------------------------------------------------------


@dataclass(frozen=True)
class Member:
    """One tar entry.  Regular files take their bytes from ``data``, from ``source`` (a
    file streamed at write time) or are ``zeros`` NUL bytes generated on the fly."""

    name: str
    kind: bytes = tarfile.REGTYPE
    data: bytes = b""
    source: Path | None = None
    zeros: int = 0
    linkname: str = ""
    mode: int | None = None
    devmajor: int = 0
    devminor: int = 0
    pax: dict[str, str] | None = None

    @property
    def size(self) -> int:
        if self.source is not None:
            return self.source.stat().st_size
        return self.zeros or len(self.data)


#: :attr:`Member.kind` of raw tar blocks written as they are (see :func:`pax_header_blocks`).
RAW = b"raw"


def pax_header_blocks(key: str, value_size: int) -> Member:
    """A raw pax extended header (``x``) holding one ``KEY=VALUE`` record whose value is
    ``value_size`` bytes of ``a``; it applies to the member after it.  Written by hand
    because :mod:`tarfile` takes seconds to build a header of a few MiB."""
    body = f" {key}=".encode()
    length = len(body) + value_size + 1
    while len(str(length)) + len(body) + value_size + 1 != length:
        length = len(str(length)) + len(body) + value_size + 1
    record = str(length).encode() + body + b"a" * value_size + b"\n"
    assert len(record) == length
    info = tarfile.TarInfo("././@PaxHeader")
    info.type = tarfile.XHDTYPE
    info.size = len(record)
    info.mtime = MTIME
    padding = bytes(-len(record) % tarfile.BLOCKSIZE)
    return Member("././@PaxHeader", RAW, data=info.tobuf(tarfile.USTAR_FORMAT) + record + padding)


def file_member(name: str, data: bytes, mode: int = 0o644) -> Member:
    return Member(name, data=data, mode=mode)


def dir_member(name: str) -> Member:
    return Member(name, kind=tarfile.DIRTYPE, mode=0o755)


def zero_member(name: str, size: int) -> Member:
    """A regular file of ``size`` NUL bytes, never held in memory."""
    return Member(name, zeros=size)


class _Zeros(io.RawIOBase):
    """A readable stream of ``size`` NUL bytes."""

    def __init__(self, size: int) -> None:
        self._left = size

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        n = min(len(buffer), self._left)
        buffer[:n] = bytes(n)
        self._left -= n
        return n


def _tarinfo(member: Member) -> tarfile.TarInfo:
    info = tarfile.TarInfo(member.name)
    info.type = member.kind
    default_mode = 0o755 if member.kind == tarfile.DIRTYPE else 0o644
    if member.kind == tarfile.SYMTYPE:
        default_mode = 0o777
    info.mode = default_mode if member.mode is None else member.mode
    info.uid = info.gid = 0
    info.uname = info.gname = "root"
    info.mtime = MTIME
    info.linkname = member.linkname
    info.devmajor, info.devminor = member.devmajor, member.devminor
    if member.pax:
        info.pax_headers = dict(member.pax)
    info.size = member.size if member.kind in (tarfile.REGTYPE, tarfile.AREGTYPE) else 0
    return info


@contextlib.contextmanager
def compressing(out: BinaryIO, compression: Compression) -> Iterator[BinaryIO]:
    """A writable stream that compresses into ``out`` (closed streams are flushed)."""
    if compression == "none":
        yield out
    elif compression == "gz":
        with gzip.GzipFile(fileobj=out, mode="wb", mtime=0, compresslevel=6) as gz:
            yield gz  # type: ignore[misc]
    elif compression == "xz":
        with lzma.LZMAFile(out, "wb", preset=1) as xz:
            yield xz  # type: ignore[misc]
    elif compression == "zst":
        cctx = zstandard.ZstdCompressor(level=3, write_checksum=True)
        with cctx.stream_writer(out, closefd=False) as zst:
            yield zst
    else:  # pragma: no cover
        raise ValueError(f"unknown compression {compression!r}")


def write_tar(
    path: Path,
    members: Iterable[Member],
    *,
    fmt: int = tarfile.GNU_FORMAT,
    compression: Compression = "none",
) -> Path:
    """Write ``members`` in order, exactly as given (no name normalisation)."""
    with (
        open(path, "wb") as raw,
        compressing(raw, compression) as out,
        tarfile.open(fileobj=out, mode="w|", format=fmt) as tf,
    ):
        for member in members:
            if member.kind == RAW:
                assert len(member.data) % tarfile.BLOCKSIZE == 0
                # In small pieces: tarfile's stream buffer re-slices what it holds per
                # record, so one 32 MiB write would take seconds.
                for at in range(0, len(member.data), tarfile.RECORDSIZE):
                    tf.fileobj.write(member.data[at : at + tarfile.RECORDSIZE])
                tf.offset += len(member.data)
                continue
            info = _tarinfo(member)
            if info.type not in (tarfile.REGTYPE, tarfile.AREGTYPE):
                tf.addfile(info)
            elif member.source is not None:
                with open(member.source, "rb") as f:
                    tf.addfile(info, f)
            elif member.zeros:
                tf.addfile(info, io.BufferedReader(_Zeros(member.zeros), 1 << 20))
            else:
                tf.addfile(info, io.BytesIO(member.data))
    return path


def tar_bytes(members: Iterable[Member], *, fmt: int = tarfile.GNU_FORMAT) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=fmt) as tf:
        for member in members:
            info = _tarinfo(member)
            tf.addfile(info, io.BytesIO(member.data) if info.size else None)
    return buf.getvalue()


# --- a repository as members ---------------------------------------------------------------


def repo_members(
    repo: Path,
    prefix: str = "./repo",
    *,
    include: Callable[[str], bool] | None = None,
    read: bool = False,
) -> list[Member]:
    """Every directory, file and symlink of ``repo`` as members named ``PREFIX/rel``
    (sorted, parents first).  ``include(rel)`` filters by repo-relative path (``rel`` of
    a directory ends with ``/``).  Files are streamed from disk unless ``read``."""
    out = [dir_member(prefix + "/")]
    for dirpath, dirnames, filenames in os.walk(repo):
        dirnames.sort()
        reldir = os.path.relpath(dirpath, repo)
        reldir = "" if reldir == "." else reldir + "/"
        entries = sorted([*dirnames, *filenames])
        for name in entries:
            full = Path(dirpath, name)
            rel = reldir + name
            st = os.lstat(full)
            if stat.S_ISDIR(st.st_mode):
                rel += "/"
            if include is not None and not include(rel):
                continue
            arcname = f"{prefix}/{rel}"
            mode = stat.S_IMODE(st.st_mode)
            if stat.S_ISLNK(st.st_mode):
                out.append(Member(arcname, tarfile.SYMTYPE, linkname=os.readlink(full)))
            elif stat.S_ISDIR(st.st_mode):
                out.append(Member(arcname, tarfile.DIRTYPE, mode=mode))
            elif read:
                out.append(Member(arcname, data=full.read_bytes(), mode=mode))
            else:
                out.append(Member(arcname, source=full, mode=mode))
    return out


def object_members(members: Iterable[Member], suffix: str = "") -> list[Member]:
    """The regular-file members under ``objects/`` (optionally of one suffix)."""
    return [
        m
        for m in members
        if "/objects/" in m.name
        and m.kind == tarfile.REGTYPE
        and m.name.endswith(suffix)
        and not m.name.endswith("/")
    ]


def member_data(member: Member) -> bytes:
    if member.source is not None:
        return member.source.read_bytes()
    return bytes(member.zeros) if member.zeros else member.data


def with_data(member: Member, data: bytes) -> Member:
    return replace(member, data=data, source=None, zeros=0)


def object_name(prefix: str, checksum: str, suffix: str) -> str:
    return f"{prefix}/objects/{checksum[:2]}/{checksum[2:]}.{suffix}"


# --- the osbuild layout ----------------------------------------------------------------------


def _rfc3339(ts: int) -> str:
    return dt.datetime.fromtimestamp(ts, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def compose_json(repo: Path, ref: str) -> dict[str, object]:
    """What ``rpm-ostree compose commit --write-composejson-to`` writes for ``ref``."""
    checksum = Repo.open(repo).read_ref(ref)
    assert checksum is not None, f"{repo} has no ref {ref}"
    commit = read_commit_raw(repo, checksum)
    counts = {"commit": 0, "dirtree": 0, "dirmeta": 0, "filez": 0}
    content_bytes = 0
    for path in (repo / "objects").glob("*/*"):
        suffix = path.suffix.lstrip(".")
        if suffix in counts:
            counts[suffix] += 1
            if suffix == "filez":
                content_bytes += path.stat().st_size
    metadata = counts["commit"] + counts["dirtree"] + counts["dirmeta"]
    compose: dict[str, object] = {
        "ref": ref,
        "ostree-commit": checksum,
        "ostree-content-checksum": commit.content_checksum,
        "ostree-timestamp": _rfc3339(commit.timestamp),
        "rpm-ostree-inputhash": hashlib.sha256(checksum.encode()).hexdigest(),
        "ostree-n-metadata-total": metadata,
        "ostree-n-metadata-written": metadata,
        "ostree-n-content-total": counts["filez"],
        "ostree-n-content-written": counts["filez"],
        "ostree-n-cache-hits": 0,
        "ostree-content-bytes-written": content_bytes,
    }
    if commit.version is not None:
        compose["ostree-version"] = commit.version
    return compose


def compose_member(compose: dict[str, object], name: str = "./compose.json") -> Member:
    return file_member(name, (json.dumps(compose, indent=2, sort_keys=True) + "\n").encode())


def osbuild_members(
    repo: Path,
    ref: str,
    *,
    compose: dict[str, object] | None = None,
    include: Callable[[str], bool] | None = None,
    read: bool = False,
) -> list[Member]:
    """``./``, ``./compose.json``, ``./repo/…``: osbuild's ``commit.tar`` of ``repo``.

    The repository is taken whole (osbuild's holds one ref and one commit); a
    ``summary`` is left out, as rpm-ostree writes none."""

    def keep(rel: str) -> bool:
        if rel in ("summary", "summary.sig"):
            return False
        return include is None or include(rel)

    return [
        dir_member("./"),
        compose_member(compose if compose is not None else compose_json(repo, ref)),
        *repo_members(repo, "./repo", include=keep, read=read),
    ]


def write_osbuild_tar(
    repo: Path,
    dest: Path,
    ref: str,
    *,
    compression: Compression = "none",
    fmt: int = tarfile.GNU_FORMAT,
    compose: dict[str, object] | None = None,
) -> Path:
    """Write :func:`osbuild_members` to ``dest`` (compressed as asked, whatever the name)."""
    return write_tar(
        dest, osbuild_members(repo, ref, compose=compose), fmt=fmt, compression=compression
    )


def tar_with_binary(dest: Path, cwd: Path, *paths: str, options: Iterable[str] = ()) -> Path:
    """``tar OPTIONS -cf DEST PATHS`` run in ``cwd`` with the real GNU tar."""
    tar = shutil.which("tar")
    assert tar is not None, "GNU tar is not installed"
    subprocess.run(
        [tar, *options, "-cf", os.fspath(dest), *paths],
        cwd=cwd,
        check=True,
        capture_output=True,
        timeout=300,
    )
    return dest


def osbuild_tar_with_binary(repo: Path, dest: Path, ref: str, workdir: Path) -> Path:
    """osbuild's real invocation over a staged ``compose.json`` + ``repo/`` copy:
    ``tar --format=gnu --acls --selinux --xattrs --xattrs-include=* -cf DEST .``
    (GNU tar then writes pax headers for the extended attributes and times)."""
    stage = workdir / "osbuild-stage"
    shutil.rmtree(stage, ignore_errors=True)
    stage.mkdir(parents=True)
    shutil.copytree(repo, stage / "repo", symlinks=True)
    with contextlib.suppress(FileNotFoundError):
        (stage / "repo" / "summary").unlink()
    member = compose_member(compose_json(repo, ref))
    (stage / "compose.json").write_bytes(member.data)
    options = ("--format=gnu", "--acls", "--selinux", "--xattrs", "--xattrs-include=*")
    return tar_with_binary(dest, stage, ".", options=options)


# --- compression and damage ---------------------------------------------------------------------


def compress_file(src: Path, dest: Path, compression: Compression) -> Path:
    with open(src, "rb") as f, open(dest, "wb") as raw, compressing(raw, compression) as out:
        shutil.copyfileobj(f, out, 1 << 20)
    return dest


def truncate(src: Path, dest: Path, keep: int) -> Path:
    with open(src, "rb") as f:
        dest.write_bytes(f.read(keep))
    return dest


def flip_byte(src: Path, dest: Path, offset: int) -> Path:
    data = bytearray(src.read_bytes())
    data[offset] ^= 0xFF
    dest.write_bytes(bytes(data))
    return dest


def corrupt_compressed_trailer(src: Path, dest: Path, compression: Compression) -> Path:
    """Damage the integrity check at the *end* of the stream, so that every byte of the
    tar comes out intact and only the last read can notice: gzip's CRC32, the xz stream
    footer's CRC32, zstd's content checksum."""
    offset = {"gz": -8, "xz": -12, "zst": -1}[compression]
    data = src.read_bytes()
    return flip_byte(src, dest, len(data) + offset)


def member_offsets(tar_path: Path) -> dict[str, tuple[int, int, int]]:
    """Member name → (header offset, data offset, size) in an uncompressed tar."""
    with tarfile.open(tar_path, "r:") as tf:
        return {m.name: (m.offset, m.offset_data, m.size) for m in tf.getmembers()}


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


# --- crafted objects ------------------------------------------------------------------------------


def read_commit_raw(repo: Path, checksum: str) -> Commit:
    return parse_commit((repo / "objects" / checksum[:2] / f"{checksum[2:]}.commit").read_bytes())


def non_normal_commit_bytes(commit: Commit) -> bytes:
    """A serialisation of ``commit`` (with a body chosen so that the 8-byte-aligned
    timestamp follows padding) whose first padding byte is non-zero: decodable
    leniently, but not GVariant normal form."""
    marker = "non-normal padding follows"
    for extra in range(8):
        body = marker + "." * extra
        data = replace(commit, body=body).to_bytes()
        end = data.index(body.encode() + b"\0") + len(body) + 1
        if end % 8:
            out = bytearray(data)
            assert out[end] == 0
            out[end] = 1
            return bytes(out)
    raise AssertionError("unreachable: some body length leaves padding")


def detached_metadata(note: str) -> dict[str, Variant]:
    """Detached metadata to attach with :meth:`Repo.write_commitmeta` (no GPG needed)."""
    return {"test.note": Variant("s", note), "test.bytes": Variant("ay", b"\x00sig\xff")}


def ref_checksum(repo: Path, ref: str) -> Checksum:
    checksum = Repo.open(repo).read_ref(ref)
    assert checksum is not None, f"{repo} has no ref {ref}"
    return checksum
