"""Generate static deltas (``reference/ostree-format.md`` §5.7, the "minimal
compatible generator").

- new = closure(TO) minus closure(FROM), FROM = ∅ for a delta from scratch; the TO
  commit and its ``.commitmeta`` live in the superblock, never in a part.
- Emission order: every new dirtree/dirmeta as ``S``; then the regular files
  taken by a :class:`FileStrategy`, strategy by strategy (by default, for a delta
  from a commit: rollsum, then bsdiff — :mod:`.similar`); then the other regular
  files, each a *fallback* when larger than ``min_fallback_size`` MB (10^6 bytes;
  0 disables fallbacks), else ``S``; then symlinks as ``S``.
- A new part starts when the current one holds objects and its estimated size
  plus the next object's exceeds ``max_chunk_size`` MB; parts are xz (or not)
  compressed; mode and xattr tables are de-duplicated per part.  No change at all
  still gives exactly one part, with zero objects.
- The superblock is little-endian with ``ostree.endianness = 'l'``; ``--inline``
  puts the part files in its metadata.  Parts and superblock are written to a
  temporary directory that is renamed into ``deltas/…`` (readers never see half a
  delta); then the target's delta index is rewritten.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from ..errors import ObjectNotFoundError, OstreeError
from ..gvariant import Variant
from ..names import Checksum
from ..objects import FileHeader, ObjectType, parse_filez
from ..objects.content import iter_inflate
from ..repo import Repo
from ..walk import iter_commit_closure
from .apply import (
    OP_BSPATCH,
    OP_CLOSE,
    OP_OPEN,
    OP_OPEN_SPLICE_AND_CLOSE,
    OP_SET_READ_SOURCE,
    OP_UNSET_READ_SOURCE,
    OP_WRITE,
    write_varuint64,
)
from .index import reindex
from .names import DeltaName
from .part import PartPayload, build_part
from .superblock import DELTAPART_VERSION, Fallback, PartHeader, Superblock, build_superblock

MB = 1000 * 1000


@dataclass(frozen=True)
class DeltaOptions:
    """``ostree static-delta generate`` parameters (sizes in units of 10^6 bytes)."""

    min_fallback_size: int = 4
    max_chunk_size: int = 32
    compression: str = "xz"
    inline: bool = False
    metadata: dict[str, Variant] = field(default_factory=dict)
    rollsum: bool = True
    bsdiff: bool = True
    max_bsdiff_size: int = 128
    """bsdiff only pairs whose two sizes add up to at most this (10^6 bytes)."""


@dataclass
class DeltaResult:
    name: DeltaName
    superblock: Superblock
    superblock_bytes: bytes
    digest: bytes
    part_sizes: list[int]
    objects: int
    fallbacks: int


class PartBuilder:
    """One part being assembled: object list, tables, blob and opcodes.

    Strategies emit through the primitive methods, one object at a time: each
    object is opened (``splice_*`` or :meth:`open_file`) and closed exactly once,
    in the order of :attr:`objects`.
    """

    def __init__(self) -> None:
        self.objects: list[tuple[ObjectType, Checksum]] = []
        self.modes: dict[tuple[int, int, int], int] = {}
        self.xattrs: dict[tuple[tuple[bytes, bytes], ...], int] = {}
        self.tables_size = 0
        self.blob = bytearray()
        self.ops = bytearray()
        self.usize = 0

    @property
    def size_estimate(self) -> int:
        return len(self.blob) + len(self.ops) + self.tables_size

    def _blob_add(self, data: bytes) -> int:
        offset = len(self.blob)
        self.blob += data
        return offset

    def _op(self, code: int, *args: int) -> None:
        self.ops.append(code)
        for arg in args:
            self.ops += write_varuint64(arg)

    def _tables(self, header: FileHeader) -> tuple[int, int]:
        mode_key = (header.uid, header.gid, header.mode)
        if mode_key not in self.modes:
            self.modes[mode_key] = len(self.modes)
            self.tables_size += 12
        if header.xattrs not in self.xattrs:
            self.xattrs[header.xattrs] = len(self.xattrs)
            self.tables_size += sum(len(n) + len(v) + 2 for n, v in header.xattrs)
        return self.modes[mode_key], self.xattrs[header.xattrs]

    # -- primitives ---------------------------------------------------------------

    def splice_metadata(self, objtype: ObjectType, checksum: Checksum, data: bytes) -> None:
        self.objects.append((objtype, checksum))
        self.usize += len(data)
        self._op(OP_OPEN_SPLICE_AND_CLOSE, len(data), self._blob_add(data))

    def splice_file(self, checksum: Checksum, header: FileHeader, content: bytes) -> None:
        """``S`` for a regular file (content) or a symlink (its target bytes)."""
        self.objects.append((ObjectType.FILE, checksum))
        mode_idx, xattr_idx = self._tables(header)
        data = header.symlink_target.encode("utf-8") if header.is_symlink else content
        self.usize += len(data)
        self._op(OP_OPEN_SPLICE_AND_CLOSE, mode_idx, xattr_idx, len(data), self._blob_add(data))

    def open_file(self, checksum: Checksum, header: FileHeader, size: int) -> None:
        self.objects.append((ObjectType.FILE, checksum))
        mode_idx, xattr_idx = self._tables(header)
        self.usize += size
        self._op(OP_OPEN, mode_idx, xattr_idx, size)

    def write_literal(self, data: bytes) -> None:
        self._op(OP_WRITE, len(data), self._blob_add(data))

    def write_from_source(self, size: int, offset: int) -> None:
        self._op(OP_WRITE, size, offset)

    def set_read_source(self, checksum: Checksum) -> None:
        self._op(OP_SET_READ_SOURCE, self._blob_add(bytes.fromhex(checksum)))

    def blob_checksum(self, checksum: Checksum) -> int:
        """Add a binary checksum to the blob (for :meth:`set_read_source_offset`)."""
        return self._blob_add(bytes.fromhex(checksum))

    def set_read_source_offset(self, offset: int) -> None:
        self._op(OP_SET_READ_SOURCE, offset)

    def unset_read_source(self) -> None:
        self._op(OP_UNSET_READ_SOURCE)

    def bspatch(self, patch: bytes) -> None:
        self._op(OP_BSPATCH, self._blob_add(patch), len(patch))

    def close(self) -> None:
        self._op(OP_CLOSE)

    def payload(self) -> PartPayload:
        return PartPayload(tuple(self.modes), tuple(self.xattrs), bytes(self.blob), bytes(self.ops))


@dataclass(frozen=True)
class FileObject:
    """A new regular file of TO and what the generator knows about it."""

    checksum: Checksum
    header: FileHeader
    size: int


class FileStrategy(Protocol):
    """A per-file encoding (rollsum, bsdiff, …) tried before fallback/``S``.

    ``estimate`` returns the payload bytes the encoding needs, or None to decline;
    ``emit`` then writes the object into ``part`` (open … close).
    """

    def estimate(self, obj: FileObject) -> int | None: ...

    def emit(self, part: PartBuilder, obj: FileObject) -> None: ...


StrategyFactory = Callable[[Repo, Checksum | None, Checksum], Sequence[FileStrategy]]


class _Emitter:
    def __init__(self, max_chunk_bytes: int) -> None:
        self.max_chunk_bytes = max_chunk_bytes
        self.parts: list[PartBuilder] = [PartBuilder()]

    def part_for(self, size: int) -> PartBuilder:
        current = self.parts[-1]
        if current.objects and current.size_estimate + size > self.max_chunk_bytes:
            current = PartBuilder()
            self.parts.append(current)
        return current


def _read_content(repo: Repo, checksum: str) -> tuple[FileHeader, bytes, int]:
    data = repo.read_object_raw(checksum, ObjectType.FILE)
    info = parse_filez(data)
    if info.header.is_symlink:
        return info.header, b"", len(data)
    return info.header, b"".join(iter_inflate(data, info.body_offset, info.size)), len(data)


def read_file_header(repo: Repo, checksum: str) -> tuple[FileHeader, int]:
    """Header and content size of a file object, reading only its header."""
    try:
        # A plain string: pathlib's joins cost more than the read (48k files a delta).
        with open(f"{repo.path}/{repo.object_relpath(checksum, ObjectType.FILE)}", "rb") as f:
            head = f.read(8)
            rest = f.read(int.from_bytes(head[:4], "big")) if len(head) == 8 else b""
    except FileNotFoundError:
        raise ObjectNotFoundError(checksum, ObjectType.FILE.name_str) from None
    info = parse_filez(head + rest)
    return info.header, info.size


def _closure(repo: Repo, commit: str) -> dict[tuple[Checksum, ObjectType], None]:
    return dict.fromkeys(iter_commit_closure(repo, commit, 0, verify=False))


def generate_delta(
    repo: Repo,
    to_rev: str,
    from_rev: str | None = None,
    *,
    options: DeltaOptions | None = None,
    strategies: StrategyFactory | None = None,
    timestamp: int | None = None,
) -> DeltaResult:
    """Generate and store the delta FROM→TO (or from scratch when ``from_rev`` is None),
    then rewrite TO's delta index.  Returns what was written."""
    options = options or DeltaOptions()
    if options.max_chunk_size <= 0 or options.min_fallback_size < 0:
        raise OstreeError("max-chunk-size must be positive and min-fallback-size not negative")
    to_commit = repo.resolve_rev(to_rev)
    from_commit = repo.resolve_rev(from_rev) if from_rev is not None else None
    name = DeltaName(from_commit, to_commit)
    commit_bytes = repo.read_metadata(to_commit, ObjectType.COMMIT)

    new = _closure(repo, to_commit)
    if from_commit is not None:
        for key in _closure(repo, from_commit):
            new.pop(key, None)
    new.pop((to_commit, ObjectType.COMMIT), None)
    new.pop((to_commit, ObjectType.COMMIT_META), None)

    emitter = _Emitter(options.max_chunk_size * MB)
    if strategies is not None:
        file_strategies = list(strategies(repo, from_commit, to_commit))
    else:
        from .similar import default_strategies

        file_strategies = list(default_strategies(repo, from_commit, to_commit, options))
    for checksum, objtype in new:
        if objtype in (ObjectType.DIR_TREE, ObjectType.DIR_META):
            data = repo.read_metadata(checksum, objtype)
            emitter.part_for(len(data)).splice_metadata(objtype, checksum, data)

    fallbacks: list[Fallback] = []
    symlinks: list[Checksum] = []
    min_fallback = options.min_fallback_size * MB
    taken: list[list[tuple[FileObject, int]]] = [[] for _ in file_strategies]
    plain: list[FileObject] = []
    for checksum, objtype in new:
        if objtype is not ObjectType.FILE:
            continue
        header, size = read_file_header(repo, checksum)
        if header.is_symlink:
            symlinks.append(checksum)
            continue
        obj = FileObject(checksum, header, size)
        for k, strategy in enumerate(file_strategies):
            cost = strategy.estimate(obj)
            if cost is not None:
                taken[k].append((obj, cost))
                break
        else:
            plain.append(obj)
    for strategy, objs in zip(file_strategies, taken, strict=True):
        for obj, cost in objs:
            strategy.emit(emitter.part_for(cost), obj)
    for obj in plain:
        if min_fallback > 0 and obj.size > min_fallback:
            stored = os.path.getsize(repo.object_path(obj.checksum, ObjectType.FILE))
            fallbacks.append(Fallback(ObjectType.FILE, obj.checksum, stored, obj.size))
            continue
        raw = repo.read_object_raw(obj.checksum, ObjectType.FILE)
        info = parse_filez(raw)
        content = b"".join(iter_inflate(raw, info.body_offset, info.size))
        emitter.part_for(len(content)).splice_file(obj.checksum, info.header, content)
    for checksum in symlinks:
        header, _content, _ = _read_content(repo, checksum)
        target = header.symlink_target.encode("utf-8")
        emitter.part_for(len(target)).splice_file(checksum, header, b"")

    part_files: list[bytes] = []
    headers: list[PartHeader] = []
    for builder in emitter.parts:
        part_file = build_part(builder.payload(), compression=options.compression)
        part_files.append(part_file)
        headers.append(
            PartHeader(
                DELTAPART_VERSION,
                hashlib.sha256(part_file).digest(),
                len(part_file),
                builder.usize,
                tuple(builder.objects),
            )
        )
    sb = Superblock(
        from_commit=from_commit,
        to_commit=to_commit,
        commit_bytes=commit_bytes,
        parts=headers,
        fallbacks=fallbacks,
        timestamp=int(time.time()) if timestamp is None else timestamp,
        endianness="l",
        inline_parts=dict(enumerate(part_files)) if options.inline else {},
        commitmeta=repo.read_commitmeta(to_commit),
        metadata=dict(options.metadata),
    )
    sb_bytes = build_superblock(sb)
    files = {} if options.inline else {str(i): data for i, data in enumerate(part_files)}
    files["superblock"] = sb_bytes
    write_delta_files(repo, name, files)
    reindex(repo, to_commit)
    return DeltaResult(
        name=name,
        superblock=sb,
        superblock_bytes=sb_bytes,
        digest=hashlib.sha256(sb_bytes).digest(),
        part_sizes=[len(p) for p in part_files],
        objects=sum(len(h.objects) for h in headers),
        fallbacks=len(fallbacks),
    )


def write_delta_files(repo: Repo, name: DeltaName, files: dict[str, bytes]) -> Path:
    """Write a delta directory atomically: build it under ``tmp/`` and rename it
    into place (an existing delta of that name is replaced)."""
    final = repo.path / name.dir
    final.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix="delta-", dir=repo.path / "tmp"))
    try:
        for fname, data in files.items():
            with open(staging / fname, "wb") as f:
                f.write(data)
                os.fchmod(f.fileno(), 0o644)
        os.chmod(staging, 0o755)
        old: Path | None = None
        if final.exists():
            old = Path(tempfile.mkdtemp(prefix="delta-old-", dir=repo.path / "tmp"))
            os.rename(final, old / "d")
        os.rename(staging, final)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    finally:
        with contextlib.suppress(FileNotFoundError):
            shutil.rmtree(staging)
    return final


def delete_delta(repo: Repo, name: DeltaName) -> None:
    """Remove a delta directory and refresh its target's index."""
    path = repo.path / name.dir
    if not path.is_dir():
        raise OstreeError(f"No static delta {name}")
    shutil.rmtree(path)
    reindex(repo, name.to_commit)
