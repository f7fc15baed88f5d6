"""Import commit archives: osbuild ``commit.tar`` and any tarball of an archive repository.

The archive is streamed member by member (plain tar, gzip, xz or zstd, detected
from its first bytes); nothing is extracted wholesale and names are never
trusted.  Each object is written to a staging directory inside the target's
``tmp/`` and verified as ostree's ``--untrusted`` pull does: metadata is
re-hashed, must be normal form and structurally valid; content objects are
inflated and re-hashed in worker processes while the stream goes on.

Nothing becomes visible until everything has been checked: the archive's
sha256 (when given), every object, every commit's closure (in the archive or
already in the target), the parent chain rules of the import mode, and the
agreement of ``compose.json`` with the refs.  Then objects are linked into
``objects/`` (content and trees before commits) and refs move last, each by
compare-and-swap.  Any failure removes what this import added, so the target
is exactly as it was.

Invariants:
- A member is read at most once and never written outside the staging dir.
- Memory holds, per object, little more than its binary checksum (dirtrees: their
  children's binary checksums; no names, no paths), the in-flight window of content
  members, and one member at a time (larger ones are copied in chunks), never the
  archive.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import io
import json
import lzma
import os
import re
import shutil
import stat
import tempfile
import zlib
from collections import deque
from collections.abc import Callable, Container, Iterator, Mapping
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import IO, Any, BinaryIO

from . import records
from ._workers import default_workers, executor, filez_bytes_checksum, filez_file_checksum
from .errors import CorruptObjectError, OstreeError, RefConflictError
from .gvariant import is_normal_form
from .keyfile import KeyFile
from .names import Checksum, is_checksum, validate_rev
from .objects import (
    Commit,
    DirTree,
    ObjectType,
    build_commitmeta,
    metadata_checksum,
    parse_commit,
    parse_commitmeta,
    parse_dirmeta,
    parse_dirtree,
)
from .repo import ARCHIVE_MODES, KNOWN_MODES, Repo, link_new_file
from .summary import update_summary as regenerate_summary
from .tarstream import TarError, TarMember, TarReader


class ArchiveError(OstreeError):
    """The archive itself is unusable: not a tar, unsafe, truncated, too large, bad mode."""


class ImportRefusedError(OstreeError):
    """The archive is valid, but importing it would be wrong (closure, history, refs)."""


@dataclass(frozen=True, slots=True)
class ImportLimits:
    max_metadata_size: int = 128 * 1024 * 1024
    """OSTREE_MAX_METADATA_SIZE: larger commit/dirtree/dirmeta/commitmeta members are refused."""
    max_total_size: int = 1 << 40
    """Cap on decompressed tar bytes, so a decompression bomb stops early."""
    max_small_file: int = 1024 * 1024
    """Cap on config, refs and compose.json members."""


@dataclass(frozen=True, slots=True)
class ImportProgress:
    objects: int
    bytes_read: int
    bytes_total: int | None


@dataclass(frozen=True, slots=True)
class ImportResult:
    commits: tuple[Checksum, ...]
    refs: dict[str, Checksum] = field(default_factory=dict)
    objects_added: int = 0
    objects_present: int = 0
    trees: bytes = b""
    """The dirtrees, dirmetas and files of the imported commits' trees (each once,
    from the archive or already in the target), as 33-byte records (binary
    checksum, type value): the closure check walked them anyway, and a caller
    indexing the commits' objects (the service) need not walk them again.  See
    :meth:`tree_objects`."""

    @property
    def changed(self) -> bool:
        return bool(self.refs) or self.objects_added > 0

    def tree_objects(self) -> Iterator[tuple[Checksum, ObjectType]]:
        """:attr:`trees` decoded."""
        return records.unpack(self.trees)


_OBJECT_PATH = re.compile(
    r"(?P<prefix>(?:.*/)?)objects/(?P<xx>[0-9a-f]{2})/(?P<rest>[0-9a-f]{62})\.(?P<suffix>[a-z-]+)\Z"
)
_SUFFIXES = {
    "commit": ObjectType.COMMIT,
    "dirtree": ObjectType.DIR_TREE,
    "dirmeta": ObjectType.DIR_META,
    "filez": ObjectType.FILE,
    "commitmeta": ObjectType.COMMIT_META,
    "tombstone-commit": ObjectType.TOMBSTONE_COMMIT,
}
_BATCH = 256
_BATCH_BYTES = 4 * 1024 * 1024
"""A batch goes to a worker at _BATCH members or this many bytes: a worker holds
about twice its batch (the pickled message and the unpickled members)."""
_INFLIGHT_BYTES = 32 * 1024 * 1024
_IN_MEMORY = 1024 * 1024
"""Larger ``.filez`` members are staged in a file (in chunks) and verified from it,
so neither process holds them whole."""
_PROGRESS_EVERY = 256
_CHUNK = 1 << 20


def _fingerprint(data: bytes) -> int:
    """Tells duplicate members with different bytes apart (64 bits of their sha256)."""
    return int.from_bytes(hashlib.sha256(data).digest()[:8], "little")


def _children(tree: DirTree) -> tuple[bytes, bytes]:
    """What the closure check needs of a dirtree: its children's binary checksums."""
    fromhex = bytes.fromhex
    files = b"".join([fromhex(c) for _n, c in tree.files])
    dirs = b"".join([fromhex(t + m) for _n, t, m in tree.dirs])
    return files, dirs


# -- the byte streams ------------------------------------------------------------------


class _CountingReader(io.RawIOBase):
    """The raw archive: counts bytes and hashes them for the optional sha256 check."""

    def __init__(self, raw: IO[bytes], hashing: bool) -> None:
        self.raw = raw
        self.count = 0
        self.digest = hashlib.sha256() if hashing else None

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        data = self.raw.read(len(buffer))
        n = len(data)
        buffer[:n] = data
        self.count += n
        if self.digest is not None:
            self.digest.update(data)
        return n

    def drain(self) -> None:
        while self.read(_CHUNK):
            pass


class _LimitedReader(io.RawIOBase):
    """Decompressed tar bytes, refusing more than the limit (decompression bombs)."""

    def __init__(self, inner: IO[bytes], limit: int) -> None:
        self.inner = inner
        self.limit = limit
        self.count = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        try:
            data = self.inner.read(len(buffer))
        except (OSError, EOFError, lzma.LZMAError, zlib.error) as exc:
            raise ArchiveError(f"Corrupt or truncated compressed stream: {exc}") from None
        except Exception as exc:  # zstandard.ZstdError has no common base to name here
            if type(exc).__module__.startswith("zstandard"):
                raise ArchiveError(f"Corrupt or truncated compressed stream: {exc}") from None
            raise
        n = len(data)
        self.count += n
        if self.count > self.limit:
            raise ArchiveError(f"Archive exceeds the decompressed size limit of {self.limit} bytes")
        buffer[:n] = data
        return n


class _ZstdReader(io.RawIOBase):
    """zstd frames one after another, with two guarantees ``stream_reader`` lacks: a
    frame that ends early is an error, and memory stays bounded on a bomb.  Input is
    fed in 256-byte pieces: a zstd block yields at most 128 KiB, so one call can
    produce at most ~8 MiB, and the caller's size limit is checked between calls."""

    _PIECE = 256

    def __init__(self, raw: BinaryIO, zstandard: Any) -> None:
        self.raw = raw
        self.zstandard = zstandard
        self.dobj = zstandard.ZstdDecompressor().decompressobj()
        self.input = b""
        self.input_pos = 0
        self.output = b""
        self.output_pos = 0
        self.started = False

    def readable(self) -> bool:
        return True

    def _feed(self) -> bool:
        """Decompress one piece; False at the end of the input."""
        if self.input_pos >= len(self.input):
            self.input = self.raw.read(1 << 16)
            self.input_pos = 0
            if not self.input:
                if self.started and not self.dobj.eof:
                    raise ArchiveError("Corrupt or truncated compressed stream (zstd ends early)")
                return False
        piece = self.input[self.input_pos : self.input_pos + self._PIECE]
        self.input_pos += len(piece)
        try:
            if self.dobj.eof:  # the next frame begins
                self.dobj = self.zstandard.ZstdDecompressor().decompressobj()
            self.started = True
            out = self.dobj.decompress(piece)
            while self.dobj.eof and self.dobj.unused_data:
                rest = self.dobj.unused_data
                self.dobj = self.zstandard.ZstdDecompressor().decompressobj()
                out += self.dobj.decompress(rest)
        except self.zstandard.ZstdError as exc:
            raise ArchiveError(f"Corrupt or truncated compressed stream: {exc}") from None
        self.output, self.output_pos = out, 0
        return True

    def readinto(self, buffer: Any) -> int:
        while self.output_pos >= len(self.output):
            if not self._feed():
                return 0
        n = min(len(buffer), len(self.output) - self.output_pos)
        buffer[:n] = self.output[self.output_pos : self.output_pos + n]
        self.output_pos += n
        return n


def _decompressor(stream: _CountingReader) -> tuple[BinaryIO, str]:
    """Wrap ``stream`` by its magic bytes: gzip, xz, zstd, or plain tar."""
    buffered = io.BufferedReader(stream, 1 << 16)
    magic = buffered.peek(6)[:6]
    if magic.startswith(b"\x1f\x8b"):
        return gzip.GzipFile(fileobj=buffered, mode="rb"), "gzip"  # type: ignore[return-value]
    if magic.startswith(b"\xfd7zXZ\x00"):
        return lzma.LZMAFile(buffered, "rb"), "xz"  # type: ignore[return-value]
    if magic.startswith(b"\x28\xb5\x2f\xfd"):
        try:
            import zstandard
        except ImportError:
            raise ArchiveError(
                "zstd-compressed archive: install the zstandard package (libpyostree[zstd])"
            ) from None
        return io.BufferedReader(_ZstdReader(buffered, zstandard)), "zstd"
    return buffered, "tar"


# -- member paths ----------------------------------------------------------------------


def _safe_name(name: str) -> str:
    """Member path without ``./``; absolute paths and ``..`` are refused."""
    if name.startswith("/") or "\\" in name:
        raise ArchiveError(f"Unsafe path in archive: {name!r:.200}")
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if any(p == ".." for p in parts):
        raise ArchiveError(f"Unsafe path in archive: {name!r:.200}")
    return "/".join(parts)


def _object_key(match: re.Match[str]) -> bytes:
    """A short, unique key for an object member: its binary name, suffix and directory."""
    return (
        bytes.fromhex(match["xx"] + match["rest"])
        + match["suffix"].encode()
        + match["prefix"].encode()
    )


def _read_member(tar: TarReader, member: TarMember, limit: int, what: str) -> bytes:
    if member.size > limit:
        raise ArchiveError(
            f"{what} {member.name!r:.200} is {member.size} bytes, over the {what.lower()} "
            f"size limit of {limit}"
        )
    return tar.read(member.size)


@dataclass(slots=True)
class _Candidate:
    """What the archive holds for one repository directory (``prefix``)."""

    prefix: str
    config: bytes | None = None
    refs: dict[str, Checksum] = field(default_factory=dict)
    aliases: dict[str, str] = field(default_factory=dict)
    commits: dict[Checksum, Commit] = field(default_factory=dict)
    commit_bytes: dict[Checksum, bytes] = field(default_factory=dict)
    commitmeta: dict[Checksum, bytes] = field(default_factory=dict)
    # 100k+ objects: binary checksums (32 bytes) as keys, nothing per object that
    # the closure check and duplicate detection do not need.
    dirtrees: dict[bytes, tuple[bytes, bytes]] = field(default_factory=dict)
    """Binary dirtree checksum -> its files' checksums and its dirs' (tree, meta)
    checksums, each a concatenation of 32-byte binary checksums."""
    dirmetas: set[bytes] = field(default_factory=set)
    files: dict[bytes, int] = field(default_factory=dict)
    """Binary checksum -> fingerprint of the member's bytes (duplicate members)."""
    written: bytearray = field(default_factory=bytearray)
    """Objects this import created in the target (removed again if it fails): records
    of the binary checksum and the type's value, see :mod:`libpyostree.records`."""
    present: int = 0

    @property
    def added(self) -> int:
        return len(self.written) // records.SIZE


class _Importer:
    """Reads the tar stream; verified trees and content go straight into the
    target's ``objects/`` (atomically, never replacing anything), while commits
    and detached metadata wait in memory until every check has passed."""

    def __init__(
        self,
        repo: Repo,
        limits: ImportLimits,
        progress: Callable[[ImportProgress], None] | None,
        pool: Executor,
    ) -> None:
        self.repo = repo
        self.objects_dir = str(repo.path / "objects")
        self.tmpdir = str(repo.path / "tmp")
        self.limits = limits
        self.progress = progress
        self.pool = pool
        self.staging = tempfile.mkdtemp(prefix="import-", dir=self.tmpdir)
        self.candidates: dict[str, _Candidate] = {}
        self.compose: dict[str, Any] | None = None
        # Members other than dirtrees, dirmetas, commits and files (few) -> their
        # content, or its digest for detached metadata; those four are told apart
        # by their candidate's tables (see object_member).
        self.seen: dict[str | bytes, bytes] = {}
        self.made_dirs: set[str] = set()
        self.pending: list[tuple[str, bytes | str]] = []
        self.pending_bytes = 0
        self.pending_for: _Candidate | None = None
        self.inflight: deque[tuple[_Candidate, Future[_BatchResult], list[Any], int]] = deque()
        self.inflight_bytes = 0
        self.writer = ThreadPoolExecutor(1)
        self.writes: deque[tuple[_Candidate, Future[tuple[bytes, int]]]] = deque()
        self.failures: list[tuple[str, str]] = []
        self.objects = 0
        self.counter: _CountingReader | None = None
        self.total: int | None = None

    # -- reading -----------------------------------------------------------------------

    def object_dir(self, checksum: str) -> str:
        directory = f"{self.objects_dir}/{checksum[:2]}"
        if directory not in self.made_dirs:
            os.makedirs(directory, exist_ok=True)
            self.made_dirs.add(directory)
        return directory

    def candidate(self, prefix: str) -> _Candidate:
        cand = self.candidates.get(prefix)
        if cand is None:
            cand = self.candidates[prefix] = _Candidate(prefix)
        return cand

    def check_duplicate(self, path: str | bytes, data: bytes, *, digest: bool = False) -> bool:
        """True if member ``path`` was seen before with the same bytes (skip it); an error
        if with different bytes.  Objects are remembered by their sha256."""
        key = hashlib.sha256(data).digest()[:16] if digest else data
        previous = self.seen.get(path)
        if previous is None:
            self.seen[path] = key
            return False
        if previous != key:
            raise ArchiveError(f"Duplicate member with different content: {path!r:.200}")
        return True

    def read(self, source: BinaryIO) -> None:
        tar = TarReader(source)
        try:
            for member in tar:
                self.member(tar, member)
        except TarError as exc:
            raise ArchiveError(str(exc)) from None
        self.flush()
        self.report()

    def member(self, tar: TarReader, member: TarMember) -> None:
        name = _safe_name(member.name)
        if member.isdir:
            return
        if member.issym or member.islnk:
            self.link_member(name, member)
            return
        if not member.isreg:
            raise ArchiveError(f"Unsupported member type for {member.name!r:.200} (devices, fifos)")
        if name == "compose.json":
            data = _read_member(tar, member, self.limits.max_small_file, "compose.json")
            if self.check_duplicate(name, data):
                return
            try:
                compose = json.loads(data)
            except ValueError as exc:
                raise ArchiveError(f"compose.json is not valid JSON: {exc}") from None
            if not isinstance(compose, dict):
                raise ArchiveError("compose.json is not a JSON object")
            self.compose = compose
            return
        match = _OBJECT_PATH.match(name)
        if match is not None:
            self.object_member(tar, member, name, match)
            return
        ref_at = name.find("refs/heads/")
        if ref_at != -1 and (ref_at == 0 or name[ref_at - 1] == "/"):
            self.ref_member(tar, member, name, name[:ref_at], name[ref_at + len("refs/heads/") :])
            return
        if name == "config" or name.endswith("/config"):
            data = _read_member(tar, member, self.limits.max_small_file, "config")
            if not self.check_duplicate(name, data):
                self.candidate(name[: -len("config")]).config = data
            return
        # Anything else (summary, deltas/, state/, other files) is not imported.

    def link_member(self, name: str, member: TarMember) -> None:
        ref_at = name.find("refs/heads/")
        if member.issym and ref_at != -1 and (ref_at == 0 or name[ref_at - 1] == "/"):
            # A ref alias (`ostree refs --alias`): a relative symlink within refs/heads.
            alias = name[ref_at + len("refs/heads/") :]
            target = os.path.normpath(os.path.join(os.path.dirname(alias), member.linkname))
            if not member.linkname.startswith("/") and not target.startswith(".."):
                validate_rev(alias)
                validate_rev(target)
                if not self.check_duplicate(name, b"\0symlink:" + target.encode()):
                    self.candidate(name[:ref_at]).aliases[alias] = target
                return
        kind = "symlink" if member.issym else "hardlink"
        raise ArchiveError(
            f"Refusing link member {member.name!r:.200} ({kind} to {member.linkname!r:.200})"
        )

    def ref_member(
        self, tar: TarReader, member: TarMember, name: str, prefix: str, ref: str
    ) -> None:
        data = _read_member(tar, member, self.limits.max_small_file, "ref")
        if self.check_duplicate(name, data):
            return
        try:
            validate_rev(ref)
        except OstreeError as exc:
            raise ArchiveError(f"Invalid ref in archive: {exc}") from None
        text = data.decode("ascii", "replace").strip()
        if not is_checksum(text):
            raise ArchiveError(f"Ref {ref} in the archive holds {text[:80]!r}, not a checksum")
        self.candidate(prefix).refs[ref] = Checksum(text)

    def object_member(
        self, tar: TarReader, member: TarMember, name: str, match: re.Match[str]
    ) -> None:
        prefix, suffix = match["prefix"], match["suffix"]
        checksum = Checksum(match["xx"] + match["rest"])
        if suffix == "file":
            raise ArchiveError(
                f"Found bare-mode object {name!r:.200}: only archive repositories can be imported"
            )
        objtype = _SUFFIXES.get(suffix)
        if objtype is None or objtype is ObjectType.TOMBSTONE_COMMIT:
            return  # tombstones and unknown files are not imported
        cand = self.candidate(prefix)
        if objtype is ObjectType.FILE:
            self.file_member(tar, member, name, cand, checksum)
            return
        data = _read_member(tar, member, self.limits.max_metadata_size, "Metadata")
        if objtype is ObjectType.COMMIT_META:
            if self.check_duplicate(_object_key(match), data, digest=True):
                return
            try:
                value = parse_commitmeta(data)
            except OstreeError as exc:
                raise CorruptObjectError(f"Invalid detached metadata {name}: {exc}") from None
            # ostree stores detached metadata normalised; keep normal bytes verbatim.
            if data and not is_normal_form("a{sv}", data):
                data = build_commitmeta(value)
            cand.commitmeta[checksum] = data
            self.counted()
            return
        binary = bytes.fromhex(checksum)
        if (
            binary in cand.dirtrees
            if objtype is ObjectType.DIR_TREE
            else binary in cand.dirmetas
            if objtype is ObjectType.DIR_META
            else checksum in cand.commits
        ):
            # Seen before, so verified: its name is the sha256 of the first copy's bytes.
            if hashlib.sha256(data).digest() != binary:
                raise ArchiveError(f"Duplicate member with different content: {name!r:.200}")
            return
        actual = metadata_checksum(data)
        if actual != checksum:
            raise CorruptObjectError(
                f"Corrupted {objtype.name_str} object {name}: checksum expected={checksum} "
                f"actual={actual}",
                checksum=checksum,
                objtype=objtype.name_str,
                expected=checksum,
                actual=actual,
            )
        try:
            if objtype is ObjectType.COMMIT:
                cand.commits[checksum] = parse_commit(data)
                cand.commit_bytes[checksum] = data  # written only once all checks pass
                self.counted()
                return
            if objtype is ObjectType.DIR_TREE:
                cand.dirtrees[binary] = _children(parse_dirtree(data))
            else:
                parse_dirmeta(data)
                cand.dirmetas.add(binary)
        except OstreeError as exc:
            raise CorruptObjectError(
                f"Corrupted {objtype.name_str} object {checksum}: {exc}",
                checksum=checksum,
                objtype=objtype.name_str,
            ) from None
        final = f"{self.object_dir(checksum)}/{checksum[2:]}.{objtype.archive_suffix}"
        if link_new_file(final, data, self.tmpdir):
            cand.written += binary + bytes((objtype,))
        else:
            cand.present += 1
        self.counted()

    def file_member(
        self, tar: TarReader, member: TarMember, name: str, cand: _Candidate, checksum: Checksum
    ) -> None:
        f = tar
        self.object_dir(checksum)
        item: bytes | str
        if member.size <= _IN_MEMORY:
            # Handed to a worker in memory: it verifies, then links the object in.
            item = f.read(member.size)
            if len(item) != member.size:
                raise ArchiveError(f"Archive is truncated inside {name!r:.200}")
            fingerprint = _fingerprint(item)
        else:
            # Large: copied to the staging dir in chunks, verified from there.
            item = f"{self.staging}/{checksum}.filez"
            digest = hashlib.sha256()
            written = 0
            with open(item, "wb") as out:
                while written < member.size:
                    chunk = f.read(min(_CHUNK, member.size - written))
                    if not chunk:
                        break
                    digest.update(chunk)
                    out.write(chunk)
                    written += len(chunk)
            if written != member.size:
                raise ArchiveError(f"Archive is truncated inside {name!r:.200}")
            fingerprint = int.from_bytes(digest.digest()[:8], "little")
        binary = bytes.fromhex(checksum)
        previous = cand.files.get(binary)
        if previous is not None:  # the same member again
            if isinstance(item, str):
                os.unlink(item)
            if previous != fingerprint:
                raise ArchiveError(f"Duplicate member with different content: {name!r:.200}")
            return
        cand.files[binary] = fingerprint
        if self.pending_for is not cand:
            self.flush()
            self.pending_for = cand
        self.pending.append((checksum, item))
        if isinstance(item, bytes):
            self.pending_bytes += len(item)
        if len(self.pending) >= _BATCH or self.pending_bytes >= _BATCH_BYTES:
            self.flush()
        self.counted()

    def flush(self) -> None:
        """Send the pending batch to a worker for verification.  The main process
        keeps the bytes and writes them itself once verified: one writing process
        avoids the filesystem contention of several (measured: parallel creators
        made each file creation several times slower here)."""
        if self.pending and self.pending_for is not None:
            future = self.pool.submit(_verify_batch, self.objects_dir, self.pending)
            size = self.pending_bytes
            self.inflight.append((self.pending_for, future, self.pending, size))
            self.inflight_bytes += size
            self.pending = []
            self.pending_bytes = 0
        self.write_verified(block=False)

    def write_verified(self, *, block: bool) -> None:
        """Write the batches whose verification finished, oldest first; wait when the
        bytes held in memory exceed the window (or when ``block``)."""
        while self.inflight:
            cand, future, batch, size = self.inflight[0]
            window_full = self.inflight_bytes > _INFLIGHT_BYTES or len(self.inflight) > 8
            if not (block or window_full or future.done()):
                return
            self.inflight.popleft()
            self.inflight_bytes -= size
            try:
                result = future.result()
            except Exception as exc:  # a worker died: fail the import
                self.failures.append(("(worker)", f"verification failed: {exc}"))
                continue
            for checksum in result.written:
                cand.written += records.record(checksum, ObjectType.FILE)
            cand.present += result.present
            self.failures.extend(result.failures)
            if self.failures:
                continue  # the import will fail: write nothing more
            items = [
                (c, item)
                for c, item in batch
                if isinstance(item, bytes)  # large files were linked by the worker
            ]
            # One writer thread: the syscalls release the GIL, so writing overlaps
            # with reading the tar, and a single writer avoids filesystem contention.
            self.writes.append(
                (cand, self.writer.submit(_write_batch, self.objects_dir, items, self.tmpdir))
            )
            while len(self.writes) > 4 or (block and self.writes):
                self.finish_write()

    def finish_write(self) -> None:
        cand, future = self.writes.popleft()
        written, present = future.result()  # a write error fails the import
        cand.written += written
        cand.present += present

    def collect(self) -> list[tuple[str, str]]:
        """Wait for all verification; write what passed; return the failures."""
        self.flush()
        self.write_verified(block=True)
        while self.writes:
            self.finish_write()
        return self.failures

    def verify_content(self) -> None:
        failures = self.collect()
        if failures:
            checksum, message = failures[0]
            extra = len(failures) - 1
            more = f" (and {extra} more corrupt file objects)" if extra else ""
            raise CorruptObjectError(
                f"Corrupted file object {checksum}: {message}{more}",
                checksum=checksum,
                objtype="file",
            )

    def rollback(self, *, keep_written: bool = False) -> None:
        """Remove every object this import created (after the workers have stopped)."""
        self.failures.append(("", "import failed"))  # makes collect() write nothing more
        with contextlib.suppress(Exception):
            self.write_verified(block=True)
        while self.writes:
            with contextlib.suppress(Exception):
                self.finish_write()
        for cand in self.candidates.values():
            if not keep_written:
                _unlink_all(self.objects_dir, cand.written)
            cand.written.clear()

    def counted(self) -> None:
        self.objects += 1
        if self.objects % _PROGRESS_EVERY == 0:
            self.report()

    def report(self) -> None:
        if self.progress is not None and self.counter is not None:
            self.progress(ImportProgress(self.objects, self.counter.count, self.total))


def _write_batch(
    objects_dir: str, items: list[tuple[str, bytes]], tmpdir: str
) -> tuple[bytes, int]:
    """Writer thread: link verified ``.filez`` in; returns the ``written`` records."""
    written = bytearray()
    present = 0
    for checksum, data in items:
        if link_new_file(f"{objects_dir}/{checksum[:2]}/{checksum[2:]}.filez", data, tmpdir):
            written += records.record(checksum, ObjectType.FILE)
        else:
            present += 1
    return bytes(written), present


@dataclass(frozen=True, slots=True)
class _BatchResult:
    written: list[str]
    """Checksums of the (large) files linked in by the worker."""
    present: int
    failures: list[tuple[str, str]]


def _verify_batch(objects_dir: str, batch: list[tuple[str, bytes | str]]) -> _BatchResult:
    """Worker: re-hash each ``.filez``, given as bytes (the caller writes those once
    verified) or as a staged path (large files, linked in here)."""
    written: list[str] = []
    present = 0
    failures: list[tuple[str, str]] = []
    for checksum, item in batch:
        try:
            if isinstance(item, bytes):
                actual: str = filez_bytes_checksum(item)
            else:
                actual = filez_file_checksum(item, whole_limit=_IN_MEMORY)
        except OstreeError as exc:
            failures.append((checksum, str(exc)))
            continue
        if actual != checksum:
            failures.append((checksum, f"checksum expected={checksum} actual={actual}"))
            continue
        if isinstance(item, str) and not failures:
            final = f"{objects_dir}/{checksum[:2]}/{checksum[2:]}.filez"
            try:
                os.link(item, final)
                written.append(checksum)
            except FileExistsError:
                present += 1
            os.unlink(item)
    return _BatchResult(written, present, failures)


# -- deciding --------------------------------------------------------------------------


def _choose(importer: _Importer, repo_dir: str | None) -> _Candidate:
    cands = importer.candidates
    if repo_dir is not None:
        prefix = _safe_name(repo_dir)
        prefix = prefix + "/" if prefix else ""
        if prefix not in cands:
            raise ArchiveError(f"No repository at {repo_dir!r} in the archive")
        return cands[prefix]
    with_config = [c for c in cands.values() if c.config is not None]
    if importer.compose is not None and len(with_config) > 1:
        wanted = importer.compose.get("ostree-commit")
        with_config = [c for c in with_config if wanted in c.commits]
    if len(with_config) == 1:
        return with_config[0]
    if not with_config:
        if cands:
            raise ArchiveError(
                "The archive has objects but no repository config: "
                + ", ".join(repr(p or "./") for p in cands)
            )
        raise ArchiveError("No OSTree repository (config + objects/) in the archive")
    raise ArchiveError(
        "Several repositories in the archive ("
        + ", ".join(repr(c.prefix or "./") for c in with_config)
        + "); choose one with repo_dir"
    )


def _check_config(cand: _Candidate) -> None:
    assert cand.config is not None
    try:
        config = KeyFile.parse(cand.config.decode("utf-8"), source=f"{cand.prefix}config")
    except (UnicodeDecodeError, OstreeError) as exc:
        raise ArchiveError(f"Invalid repository config in the archive: {exc}") from None
    mode = config.get("core", "mode", "bare") or "bare"
    if mode not in KNOWN_MODES:
        raise ArchiveError(f"Invalid repository mode {mode!r} in the archive")
    if mode not in ARCHIVE_MODES:
        raise ArchiveError(
            f"The archive holds a repository in mode {mode!r}: only archive repositories "
            "can be imported"
        )


def _apply_compose(importer: _Importer, cand: _Candidate) -> None:
    compose = importer.compose
    if compose is None:
        return
    ref, commit = compose.get("ref"), compose.get("ostree-commit")
    if not isinstance(ref, str) or not isinstance(commit, str) or not is_checksum(commit):
        raise ImportRefusedError("compose.json lacks a valid 'ref' and 'ostree-commit'")
    try:
        validate_rev(ref)
    except OstreeError as exc:
        raise ImportRefusedError(f"compose.json names an invalid ref: {exc}") from None
    in_refs = cand.refs.get(ref)
    if in_refs is None and cand.refs:
        raise ImportRefusedError(
            f"compose.json names ref {ref}, but the archive's repository has "
            f"{', '.join(sorted(cand.refs))}"
        )
    if in_refs is not None and in_refs != commit:
        raise ImportRefusedError(
            f"compose.json says {ref} is {commit}, but the archive's refs/heads/{ref} holds "
            f"{in_refs}"
        )
    if commit not in cand.commits:
        raise ImportRefusedError(f"compose.json names commit {commit}, which is not in the archive")
    cand.refs[ref] = Checksum(commit)


class _View:
    """Objects of the archive candidate layered over the target repository."""

    def __init__(self, cand: _Candidate, repo: Repo) -> None:
        self.cand = cand
        self.repo = repo

    def has(self, checksum: bytes, objtype: ObjectType) -> bool:
        """Whether the file, dirtree or dirmeta with this binary checksum is there."""
        # Called once per object of every closure: no per-call lookup tables.
        if objtype is ObjectType.FILE:
            held: Container[bytes] = self.cand.files
        elif objtype is ObjectType.DIR_TREE:
            held = self.cand.dirtrees
        else:
            held = self.cand.dirmetas
        return checksum in held or self.repo.has_object(checksum.hex(), objtype)

    def commit(self, checksum: Checksum) -> Commit | None:
        if checksum in self.cand.commits:
            return self.cand.commits[checksum]
        if self.repo.has_object(checksum, ObjectType.COMMIT):
            return self.repo.read_commit(checksum)
        return None

    def children(self, checksum: bytes) -> tuple[bytes, bytes]:
        """A dirtree's children (see :attr:`_Candidate.dirtrees`)."""
        children = self.cand.dirtrees.get(checksum)
        if children is None:
            children = _children(self.repo.read_dirtree(checksum.hex()))
        return children


def _check_closures(view: _View, require_full_history: bool) -> bytes:
    """Check every commit's tree (and history, when required) is complete; returns
    the tree objects as ``written``-style records (:attr:`ImportResult.trees`)."""
    cand = view.cand
    done_trees: set[bytes] = set()
    metas: set[bytes] = set()
    files_seen: set[bytes] = set()
    for csum, commit in cand.commits.items():
        stack = [(bytes.fromhex(commit.root_dirtree), bytes.fromhex(commit.root_dirmeta))]
        while stack:
            tree, meta = stack.pop()
            if meta not in metas:
                if not view.has(meta, ObjectType.DIR_META):
                    raise _incomplete(csum, "dirmeta", meta.hex())
                metas.add(meta)
            if tree in done_trees:
                continue
            if not view.has(tree, ObjectType.DIR_TREE):
                raise _incomplete(csum, "dirtree", tree.hex())
            done_trees.add(tree)
            files, dirs = view.children(tree)
            for at in range(0, len(files), 32):
                file_csum = files[at : at + 32]
                if file_csum in files_seen:
                    continue
                if not view.has(file_csum, ObjectType.FILE):
                    raise _incomplete(csum, "file", file_csum.hex())
                files_seen.add(file_csum)
            stack.extend(
                (dirs[at : at + 32], dirs[at + 32 : at + 64]) for at in range(0, len(dirs), 64)
            )
        if require_full_history:
            current: Commit | None = commit
            while current is not None and current.parent is not None:
                parent = current.parent
                current = view.commit(parent)
                if current is None:
                    raise ImportRefusedError(
                        f"History of commit {csum} is incomplete: parent {parent} is neither in "
                        "the archive nor in the target"
                    )
    return (
        records.pack_binary(done_trees, ObjectType.DIR_TREE)
        + records.pack_binary(metas, ObjectType.DIR_META)
        + records.pack_binary(files_seen, ObjectType.FILE)
    )


def _incomplete(commit: str, kind: str, checksum: str) -> ImportRefusedError:
    return ImportRefusedError(
        f"Closure of commit {commit} is incomplete: {kind} {checksum} is neither in the "
        "archive nor in the target"
    )


def _plan_refs(
    view: _View, ref: str | None, current: dict[str, Checksum]
) -> tuple[dict[str, Checksum], dict[str, Checksum | None]]:
    """The refs to set and the values they must still have (compare-and-swap)."""
    cand = view.cand
    for name, commit in cand.refs.items():
        if view.commit(commit) is None:
            raise ImportRefusedError(
                f"Ref {name} in the archive points to {commit}, which is neither in the archive "
                "nor in the target"
            )
    if ref is None:
        wanted: dict[str, Checksum] = {}
        for name, commit in cand.refs.items():
            now = current.get(name)
            if now == commit or (now is not None and _is_ancestor(view, commit, now)):
                continue  # already there, or older than the target's head: never move back
            wanted[name] = commit
        return wanted, {n: current.get(n) for n in wanted}
    validate_rev(ref)
    head = cand.refs.get(ref)
    if head is None:
        raise ImportRefusedError(
            f"Ref {ref} is not in the archive (it has: {', '.join(sorted(cand.refs)) or 'none'})"
        )
    target_head = current.get(ref)
    if target_head == head:
        return {}, {}
    if target_head is not None and _is_ancestor(view, head, target_head):
        return {}, {}  # already part of the ref's history: nothing to do
    # Follow the chain through the archive's commits to its oldest parent.
    chain = [head]
    info = view.cand.commits.get(head) or view.commit(head)
    parent = info.parent if info is not None else None
    while parent is not None and parent in cand.commits and parent != target_head:
        chain.append(parent)
        parent = cand.commits[parent].parent
    if target_head is None:
        if parent is not None and view.commit(parent) is None:
            raise ImportRefusedError(
                f"Ref {ref} is new, but its commit {head} has a missing parent {parent}"
            )
    elif parent != target_head:
        raise ImportRefusedError(
            f"Commit {head} does not extend {ref}: the target's head is {target_head}, "
            f"the archive's chain ends at parent {parent or '(none)'}"
        )
    return {ref: head}, {ref: target_head}


def _is_ancestor(view: _View, ancestor: str, descendant: str) -> bool:
    current: Checksum | None = Checksum(descendant)
    while current is not None:
        if current == ancestor:
            return True
        info = view.commit(current)
        current = info.parent if info is not None else None
    return False


# -- publishing ------------------------------------------------------------------------


def _move_refs(
    repo: Repo, to_set: dict[str, Checksum], expected: dict[str, Checksum | None]
) -> None:
    """Move every ref by compare-and-swap; if one fails, put back those already moved."""
    moved: list[str] = []
    try:
        for name, commit in to_set.items():
            repo.set_ref(name, commit, expected=expected[name])
            moved.append(name)
    except BaseException as exc:
        for name in reversed(moved):
            with contextlib.suppress(OstreeError, OSError):
                repo.set_ref(name, expected[name], expected=to_set[name])
        if isinstance(exc, RefConflictError):
            raise ImportRefusedError(f"Ref changed during the import: {exc}") from None
        raise


def _publish_commits(importer: _Importer, cand: _Candidate) -> None:
    """Write detached metadata, then the commits: the last objects to appear."""
    for checksum, data in sorted(cand.commitmeta.items()):
        final = f"{importer.object_dir(checksum)}/{checksum[2:]}.commitmeta"
        if os.path.exists(final):
            continue  # keep the target's detached metadata (it may hold more signatures)
        if link_new_file(final, data, importer.tmpdir):
            cand.written += records.record(checksum, ObjectType.COMMIT_META)
    for checksum, data in sorted(cand.commit_bytes.items()):
        final = f"{importer.object_dir(checksum)}/{checksum[2:]}.commit"
        if link_new_file(final, data, importer.tmpdir):
            cand.written += records.record(checksum, ObjectType.COMMIT)
        else:
            cand.present += 1


def _unlink_all(objects_dir: str, written: bytearray) -> None:
    """Remove the objects of ``written`` records, newest first (commits go first)."""
    for end in range(len(written), 0, -records.SIZE):
        checksum = written[end - records.SIZE : end - 1].hex()
        suffix = ObjectType(written[end - 1]).archive_suffix
        with contextlib.suppress(FileNotFoundError):
            os.unlink(f"{objects_dir}/{checksum[:2]}/{checksum[2:]}.{suffix}")


def import_archive(
    repo: Repo,
    archive: str | os.PathLike[str] | BinaryIO,
    *,
    ref: str | None = None,
    sha256: str | None = None,
    repo_dir: str | None = None,
    require_full_history: bool = False,
    progress: Callable[[ImportProgress], None] | None = None,
    limits: ImportLimits | None = None,
    update_summary: bool = True,
    workers: int | None = None,
    target_refs: Mapping[str, Checksum] | None = None,
) -> ImportResult:
    """Import an archive into ``repo``; see the module docstring for the guarantees.

    ``ref=None`` imports every ref and commit ("all"); ``ref=REF`` requires the
    archive's commits for REF to extend the target's current head of REF.

    ``target_refs`` makes ``repo`` a shared object store (the service's pool):
    the target's refs are these instead of ``repo``'s, no ref, alias or summary
    is written (the result's ``refs`` say what the caller should move), and
    objects written are left in place on failure, because a concurrent import
    may already count them as present; unreferenced ones are orphans.
    """
    shared = target_refs is not None
    limits = limits or ImportLimits()
    if sha256 is not None and not is_checksum(sha256.lower()):
        raise ArchiveError(f"Invalid sha256 {sha256!r:.80}: need 64 hex digits")
    if ref is not None:
        validate_rev(ref)
    own: IO[bytes] | None = None
    if isinstance(archive, (str, os.PathLike)):
        try:
            own = open(archive, "rb")  # noqa: SIM115 - closed in the finally below
        except OSError as exc:
            raise ArchiveError(f"Cannot open archive: {exc}") from None
        raw: IO[bytes] = own
    else:
        raw = archive
    total: int | None
    try:
        st = os.fstat(raw.fileno())
        total = st.st_size if stat.S_ISREG(st.st_mode) else None
    except (OSError, AttributeError, io.UnsupportedOperation):
        total = None
    with executor(workers or default_workers(), None) as pool:
        importer = _Importer(repo, limits, progress, pool)
        done = False
        try:
            counter = _CountingReader(raw, sha256 is not None)
            importer.counter, importer.total = counter, total
            stream, _kind = _decompressor(counter)
            limited = _LimitedReader(stream, limits.max_total_size)
            importer.read(limited)  # type: ignore[arg-type]
            while limited.read(_CHUNK):  # to the end: checks the compressor's own trailer
                pass
            counter.drain()
            if sha256 is not None and counter.digest is not None:
                actual = counter.digest.hexdigest()
                if actual != sha256.lower():
                    raise ArchiveError(f"Archive sha256 mismatch: expected {sha256}, got {actual}")
            importer.verify_content()
            cand = _choose(importer, repo_dir)
            for other in importer.candidates.values():
                if other is not cand and not shared:  # objects of repositories not imported
                    _unlink_all(importer.objects_dir, other.written)
                    other.written.clear()
            if cand.config is not None:
                _check_config(cand)
            _apply_compose(importer, cand)
            view = _View(cand, repo)
            trees = _check_closures(view, require_full_history)
            current = (
                dict(target_refs) if target_refs is not None else repo.list_refs(remotes=False)
            )
            to_set, expected = _plan_refs(view, ref, current)
            for name in to_set:
                alias_of = repo.ref_alias_target(name) if name in current and not shared else None
                if alias_of is not None:
                    raise ImportRefusedError(
                        f"Ref {name} is an alias of {alias_of} in the target; import into "
                        f"{alias_of} instead"
                    )
            _publish_commits(importer, cand)
            if not shared:
                _move_refs(repo, to_set, expected)
            if ref is None and not shared:
                for alias, target in cand.aliases.items():
                    if alias not in current and target in cand.refs:
                        repo.set_alias(alias, target)
            result = ImportResult(
                commits=tuple(sorted(cand.commits)),
                refs=to_set,
                objects_added=cand.added,
                objects_present=cand.present,
                trees=trees,
            )
            done = True
        finally:
            if not done:
                importer.rollback(keep_written=shared)
            importer.writer.shutdown(wait=True)
            shutil.rmtree(importer.staging, ignore_errors=True)
            if own is not None:
                own.close()
    if update_summary and result.changed and not shared:
        regenerate_summary(repo)
    importer.report()
    return result
