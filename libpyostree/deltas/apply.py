"""Apply a static delta to an archive repository: the opcode interpreter
(``reference/ostree-format.md`` §5.4, §5.5; ``ostree-repo-static-delta-processing.c``).

Opcodes (arguments are unsigned LEB128 varints; offsets index the payload blob)::

    S  open-splice-and-close  metadata: len off | file: mode_idx xattr_idx size off
    o  open                   mode_idx xattr_idx size        (start a file object)
    w  write                  size off   (from the read source if set, else the blob)
    r  set-read-source        off        (blob[off:off+32] = an existing file object)
    R  unset-read-source
    c  close                  (finish objects[i], verify it, i += 1)
    B  bspatch                off len    (bspatch(read source, blob[off:off+len]))

Every produced object is verified against the part's object list before it is
stored: metadata is re-hashed and parsed, files are rebuilt as ``.filez`` from the
mode/xattr tables and content and re-hashed (xattrs kept in the order given, as
ostree 2022.7 hashes them).  Read sources are the content of local file objects.

Ordering guarantees: the FROM commit must be present with its whole tree and not
partial; fallbacks must be present (offline); parts whose objects are all present
are skipped; the TO commit's detached metadata and then the TO commit itself are
written last, only after every part ran and the TO tree is complete.  On any
error nothing is written for the TO commit (objects of earlier parts may stay:
they are valid, content-addressed objects).
"""

from __future__ import annotations

import hashlib
import os
import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import ObjectNotFoundError, OstreeError
from ..gvariant import offset_width
from ..names import Checksum
from ..objects import FileHeader, ObjectType, parse_commit
from ..objects._framing import encode_xattrs
from ..repo import Repo
from .errors import CorruptDeltaError, DeltaApplyError
from .part import PartPayload, open_part
from .superblock import Superblock, parse_superblock

OP_OPEN_SPLICE_AND_CLOSE = ord("S")
OP_OPEN = ord("o")
OP_WRITE = ord("w")
OP_SET_READ_SOURCE = ord("r")
OP_UNSET_READ_SOURCE = ord("R")
OP_CLOSE = ord("c")
OP_BSPATCH = ord("B")

_INT_MAX = (1 << 31) - 1


# -- varints and bspatch ----------------------------------------------------------------


def read_varuint64(data: bytes, pos: int) -> tuple[int, int]:
    """``_ostree_read_varuint64``: (value, new position); at most 10 bytes."""
    result = 0
    for count in range(10):
        if pos >= len(data):
            break
        b = data[pos]
        pos += 1
        result |= (b & 0x7F) << (7 * count)
        if not b & 0x80:
            return result & 0xFFFFFFFFFFFFFFFF, pos
    raise CorruptDeltaError("Unexpected EOF reading varint")


def write_varuint64(value: int) -> bytes:
    """Unsigned LEB128, as ``_ostree_write_varuint64``."""
    if value < 0 or value >= 1 << 64:
        raise OstreeError(f"varint out of range: {value}")
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _offtin(buf: bytes, pos: int) -> int:
    raw = int.from_bytes(buf[pos : pos + 8], "little")
    magnitude = raw & 0x7FFFFFFFFFFFFFFF
    return -magnitude if raw >> 63 else magnitude


def _add_bytes(diff: bytes, old: bytes) -> bytes:
    """Byte-wise (diff + old) mod 256, eight-bit lanes in one big integer (no carries)."""
    n = len(diff)
    if n < 32:
        return bytes((a + b) & 0xFF for a, b in zip(diff, old, strict=True))
    a = int.from_bytes(diff, "little")
    b = int.from_bytes(old, "little")
    low = int.from_bytes(b"\x7f" * n, "little")
    high = int.from_bytes(b"\x80" * n, "little")
    return (((a & low) + (b & low)) ^ ((a ^ b) & high)).to_bytes(n, "little")


def bspatch(old: bytes, patch: bytes | memoryview, new_size: int) -> bytes:
    """mendsley bspatch over a raw stream (no header, no bzip2), as ostree embeds it.

    Control words are three sign-magnitude little-endian 64-bit integers; old bytes
    outside ``old`` count as 0.  Raises :class:`CorruptDeltaError` when the patch
    ends early or a control word overruns the new size.
    """
    patch = bytes(patch)
    new = bytearray()
    pp = 0
    oldpos = 0
    n_old = len(old)
    while len(new) < new_size:
        if pp + 24 > len(patch):
            raise CorruptDeltaError("bspatch reads past the end of its patch data")
        x, y, z = _offtin(patch, pp), _offtin(patch, pp + 8), _offtin(patch, pp + 16)
        pp += 24
        if x < 0 or x > _INT_MAX or y < 0 or y > _INT_MAX or len(new) + x > new_size:
            raise CorruptDeltaError("bspatch control block overruns the new file")
        if pp + x > len(patch):
            raise CorruptDeltaError("bspatch reads past the end of its patch data")
        diff = patch[pp : pp + x]
        pp += x
        lo, hi = max(oldpos, 0), min(oldpos + x, n_old)
        if hi > lo:
            segment = bytes(lo - oldpos) + old[lo:hi] + bytes(oldpos + x - hi)
            new += segment if diff.count(0) == x else _add_bytes(diff, segment)
        else:
            new += diff
        oldpos += x
        if len(new) + y > new_size:
            raise CorruptDeltaError("bspatch extra block overruns the new file")
        if pp + y > len(patch):
            raise CorruptDeltaError("bspatch reads past the end of its patch data")
        new += patch[pp : pp + y]
        pp += y
        oldpos += z
    return bytes(new)


# -- writing file objects -----------------------------------------------------------------


def file_object_checksum(header: FileHeader, content: bytes) -> Checksum:
    """The content checksum with the xattrs in the given order (ostree 2022.7)."""
    digest = hashlib.sha256(header.content_stream_header(sort_xattrs=False))
    digest.update(content)
    return Checksum(digest.hexdigest())


def filez_bytes(header: FileHeader, content: bytes) -> bytes:
    """A ``.filez`` keeping the xattr order, so it re-hashes to the same name."""
    import zlib

    target = header.symlink_target.encode("utf-8") + b"\0"
    size = 0 if header.is_symlink else len(content)
    fixed = struct.pack(">QIIII", size, header.uid, header.gid, header.mode, header.rdev)
    body = fixed + target + encode_xattrs(header.xattrs, sort=False)
    variant = body + (len(fixed) + len(target)).to_bytes(offset_width(len(body), 1), "little")
    out = struct.pack(">I", len(variant)) + b"\0\0\0\0" + variant
    if header.is_symlink:
        return out
    deflater = zlib.compressobj(6, zlib.DEFLATED, -15)
    return out + deflater.compress(content) + deflater.flush()


# -- the interpreter -------------------------------------------------------------------------


@dataclass
class ApplyStats:
    parts_applied: int = 0
    parts_skipped: int = 0
    objects_written: int = 0
    objects_present: int = 0
    ops: dict[str, int] = field(default_factory=dict)


class _PartRun:
    def __init__(
        self,
        repo: Repo,
        *,
        index: int,
        objects: tuple[tuple[ObjectType, Checksum], ...],
        payload: PartPayload,
        to_commit: str,
        stats: ApplyStats,
    ) -> None:
        self.repo = repo
        self.index = index
        self.objects = objects
        self.payload = payload
        self.blob = payload.blob
        self.ops = payload.ops
        self.pos = 0
        self.to_commit = to_commit
        self.stats = stats
        self.current = 0
        self.read_source: bytes | None = None
        self.source_cache: tuple[Checksum, bytes] | None = None
        # The open file object ('o'): header, declared size, buffer; None when closed.
        self.open_header: FileHeader | None = None
        self.open_size = 0
        self.open_buf = bytearray()
        self.have_obj = False

    def fail(self, message: str) -> CorruptDeltaError:
        return CorruptDeltaError(f"Delta part {self.index}: {message}")

    def varint(self) -> int:
        try:
            value, self.pos = read_varuint64(self.ops, self.pos)
        except CorruptDeltaError as exc:
            raise self.fail(str(exc)) from None
        return value

    def blob_range(self, offset: int, length: int) -> bytes:
        if offset + length > len(self.blob):
            raise self.fail(f"Invalid offset/length {offset}/{length} (blob is {len(self.blob)})")
        return self.blob[offset : offset + length]

    def target(self) -> tuple[ObjectType, Checksum]:
        if self.current >= len(self.objects):
            raise self.fail(f"opcodes produce more than the {len(self.objects)} listed objects")
        return self.objects[self.current]

    def header_from_tables(self) -> FileHeader:
        mode_idx = self.varint()
        xattr_idx = self.varint()
        if mode_idx >= len(self.payload.modes):
            raise self.fail(f"mode index {mode_idx} out of range ({len(self.payload.modes)})")
        if xattr_idx >= len(self.payload.xattrs):
            raise self.fail(f"xattr index {xattr_idx} out of range ({len(self.payload.xattrs)})")
        uid, gid, mode = self.payload.modes[mode_idx]
        return FileHeader(uid, gid, mode, "", self.payload.xattrs[xattr_idx])

    def run(self) -> None:
        ops = self.ops
        while self.pos < len(ops):
            op = ops[self.pos]
            at = self.pos
            self.pos += 1
            if op == OP_OPEN_SPLICE_AND_CLOSE:
                self.op_splice()
            elif op == OP_OPEN:
                self.op_open()
            elif op == OP_WRITE:
                self.op_write()
            elif op == OP_SET_READ_SOURCE:
                self.op_set_read_source()
            elif op == OP_UNSET_READ_SOURCE:
                self.read_source = None
            elif op == OP_CLOSE:
                self.op_close()
            elif op == OP_BSPATCH:
                self.op_bspatch()
            else:
                raise self.fail(f"Unknown opcode {op} at offset {at}")
            key = chr(op)
            self.stats.ops[key] = self.stats.ops.get(key, 0) + 1
        if self.open_header is not None:
            raise self.fail("opcode stream ends with an open object")
        if self.current != len(self.objects):
            raise self.fail(f"produced {self.current} of {len(self.objects)} listed objects")

    def op_splice(self) -> None:
        objtype, checksum = self.target()
        if self.open_header is not None:
            raise self.fail("open-splice-and-close while an object is open")
        if objtype.is_meta:
            length = self.varint()
            data = self.blob_range(self.varint(), length)
            self.store_metadata(objtype, checksum, data)
        else:
            header = self.header_from_tables()
            size = self.varint()
            data = self.blob_range(self.varint(), size)
            if header.mode & 0o170000 == 0o120000:
                try:
                    target = data.decode("utf-8")
                except UnicodeDecodeError:
                    raise self.fail(f"symlink target of {checksum} is not UTF-8") from None
                header = FileHeader(header.uid, header.gid, header.mode, target, header.xattrs)
                self.store_file(checksum, header, b"")
            else:
                self.store_file(checksum, header, data)
        self.finish_close()

    def op_open(self) -> None:
        objtype, checksum = self.target()
        if self.open_header is not None:
            raise self.fail("open while an object is open")
        if objtype is not ObjectType.FILE:
            raise self.fail(f"open of a {objtype.name_str} object {checksum}")
        self.open_header = self.header_from_tables()
        self.open_size = self.varint()
        self.open_buf = bytearray()
        self.have_obj = self.repo.has_object(checksum, ObjectType.FILE)

    def op_write(self) -> None:
        size = self.varint()
        offset = self.varint()
        if self.open_header is None:
            raise self.fail("write without an open object")
        if self.read_source is not None:
            if offset + size > len(self.read_source):
                raise self.fail(f"write reads past the end of the read source ({offset}+{size})")
            data = self.read_source[offset : offset + size]
        else:
            data = self.blob_range(offset, size)
        if len(self.open_buf) + size > self.open_size:
            raise self.fail(f"writes exceed the object size {self.open_size}")
        if not self.have_obj:
            self.open_buf += data

    def op_set_read_source(self) -> None:
        raw = self.blob_range(self.varint(), 32)
        checksum = Checksum(raw.hex())
        # rollsum ops set the same source again after every literal gap: keep the last one.
        if self.source_cache is None or self.source_cache[0] != checksum:
            try:
                _header, content = self.repo.read_file(checksum)
            except ObjectNotFoundError:
                raise DeltaApplyError(
                    f"Delta part {self.index}: read source {checksum} is not in the repository"
                ) from None
            self.source_cache = (checksum, content)
        self.read_source = self.source_cache[1]

    def op_bspatch(self) -> None:
        offset = self.varint()
        length = self.varint()
        patch = self.blob_range(offset, length)
        if self.open_header is None:
            raise self.fail("bspatch without an open object")
        if self.read_source is None:
            raise self.fail("bspatch without a read source")
        if self.have_obj:
            return
        if self.open_buf:
            raise self.fail("bspatch after writes")
        try:
            self.open_buf = bytearray(bspatch(self.read_source, patch, self.open_size))
        except CorruptDeltaError as exc:
            raise self.fail(str(exc)) from None

    def op_close(self) -> None:
        if self.open_header is not None:
            _objtype, checksum = self.target()
            if not self.have_obj:
                if len(self.open_buf) != self.open_size:
                    raise self.fail(
                        f"object {checksum} has {len(self.open_buf)} bytes, "
                        f"declared {self.open_size}"
                    )
                self.store_file(checksum, self.open_header, bytes(self.open_buf))
            else:
                self.stats.objects_present += 1
            self.open_header = None
            self.open_buf = bytearray()
        self.finish_close()

    def finish_close(self) -> None:
        self.read_source = None
        self.current += 1

    def store_metadata(self, objtype: ObjectType, checksum: Checksum, data: bytes) -> None:
        if objtype is ObjectType.COMMIT and checksum == self.to_commit:
            # Written last by apply_delta, from the superblock; only check it here.
            if hashlib.sha256(data).hexdigest() != checksum:
                raise self.fail(f"commit {checksum} does not match its checksum")
            return
        if objtype not in (ObjectType.COMMIT, ObjectType.DIR_TREE, ObjectType.DIR_META):
            raise self.fail(f"cannot write {objtype.name_str} object {checksum} from a delta")
        if self.repo.has_object(checksum, objtype):
            self.stats.objects_present += 1
            return
        try:
            self.repo.write_metadata(objtype, data, expected=checksum)
        except OstreeError as exc:
            raise self.fail(str(exc)) from None
        self.stats.objects_written += 1

    def store_file(self, checksum: Checksum, header: FileHeader, content: bytes) -> None:
        if self.repo.has_object(checksum, ObjectType.FILE):
            self.stats.objects_present += 1
            return
        try:
            header.validate()
        except OstreeError as exc:
            raise self.fail(f"file object {checksum}: {exc}") from None
        actual = file_object_checksum(header, content)
        if actual != checksum:
            raise self.fail(f"Corrupted file object; checksum expected={checksum} actual={actual}")
        self.repo.write_object_raw(checksum, ObjectType.FILE, filez_bytes(header, content))
        self.stats.objects_written += 1


def execute_part(
    repo: Repo,
    objects: tuple[tuple[ObjectType, Checksum], ...],
    payload: PartPayload,
    *,
    index: int = 0,
    to_commit: str = "",
    stats: ApplyStats | None = None,
) -> ApplyStats:
    """Run one part's opcodes into ``repo`` (objects verified, existing ones skipped)."""
    stats = stats if stats is not None else ApplyStats()
    if not objects:
        return stats  # ostree skips the payload of an empty part entirely
    _PartRun(
        repo, index=index, objects=objects, payload=payload, to_commit=to_commit, stats=stats
    ).run()
    return stats


def scan_ops(
    objects: tuple[tuple[ObjectType, Checksum], ...], payload: PartPayload
) -> dict[str, int]:
    """Count a part's opcodes without executing them (``ostree static-delta show``)."""
    counts = dict.fromkeys("SowrRcB", 0)
    ops = payload.ops
    pos = 0
    current = 0
    nargs = {OP_OPEN: 3, OP_WRITE: 2, OP_SET_READ_SOURCE: 1, OP_UNSET_READ_SOURCE: 0,
             OP_CLOSE: 0, OP_BSPATCH: 2}  # fmt: skip
    while pos < len(ops):
        op = ops[pos]
        pos += 1
        if op == OP_OPEN_SPLICE_AND_CLOSE:
            if current >= len(objects):
                raise CorruptDeltaError("opcodes produce more objects than listed")
            n = 2 if objects[current][0].is_meta else 4
        elif op in nargs:
            n = nargs[op]
        else:
            raise CorruptDeltaError(f"Unknown opcode {op} at offset {pos - 1}")
        for _ in range(n):
            _value, pos = read_varuint64(ops, pos)
        if op in (OP_OPEN_SPLICE_AND_CLOSE, OP_CLOSE):
            current += 1
        counts[chr(op)] += 1
    return counts


# -- whole deltas ---------------------------------------------------------------------------


def is_commit_partial(repo: Repo, checksum: str) -> bool:
    return (repo.path / "state" / f"{checksum}.commitpartial").exists()


def missing_tree_objects(
    repo: Repo, root_dirtree: str, root_dirmeta: str, *, limit: int = 1
) -> list[tuple[Checksum, ObjectType]]:
    """Objects under a root tree that the repository lacks (at most ``limit``)."""
    missing: list[tuple[Checksum, ObjectType]] = []
    seen: set[str] = set()
    stack = [(Checksum(root_dirtree), Checksum(root_dirmeta))]
    while stack and len(missing) < limit:
        tree, meta = stack.pop()
        if not repo.has_object(meta, ObjectType.DIR_META):
            missing.append((meta, ObjectType.DIR_META))
        if tree in seen:
            continue
        seen.add(tree)
        if not repo.has_object(tree, ObjectType.DIR_TREE):
            missing.append((tree, ObjectType.DIR_TREE))
            continue
        dirtree = repo.read_dirtree(tree)
        for _name, csum in dirtree.files:
            if csum not in seen:
                seen.add(csum)
                if not repo.has_object(csum, ObjectType.FILE):
                    missing.append((csum, ObjectType.FILE))
        stack.extend((t, m) for _name, t, m in dirtree.dirs)
    return missing[:limit]


def check_commit_complete(repo: Repo, checksum: str, role: str) -> None:
    """:class:`DeltaApplyError` unless ``checksum`` is stored, not partial, with its tree."""
    if not repo.has_object(checksum, ObjectType.COMMIT):
        raise DeltaApplyError(
            f"Commit {checksum}, which is the delta {role}, is not in the repository"
        )
    if is_commit_partial(repo, checksum):
        raise DeltaApplyError(f"Commit {checksum}, which is the delta {role}, is partial")
    commit = repo.read_commit(checksum)
    missing = missing_tree_objects(repo, commit.root_dirtree, commit.root_dirmeta)
    if missing:
        csum, objtype = missing[0]
        raise DeltaApplyError(
            f"Commit {checksum}, which is the delta {role}, is incomplete: "
            f"{objtype.name_str} {csum} is missing"
        )


PartLoader = Callable[[int], bytes]


def apply_delta(
    repo: Repo,
    superblock: bytes | Superblock,
    load_part: PartLoader,
    *,
    stats: ApplyStats | None = None,
) -> ApplyStats:
    """Apply a delta: ``load_part(i)`` returns the bytes of non-inline part ``i``.

    Raises :class:`DeltaApplyError` when the FROM commit is missing, partial or
    incomplete, or a fallback object is not present (offline: nothing fetches it),
    and :class:`CorruptDeltaError` for bad delta data.
    """
    sb = superblock if isinstance(superblock, Superblock) else parse_superblock(superblock)
    stats = stats if stats is not None else ApplyStats()
    if sb.from_commit is not None:
        check_commit_complete(repo, sb.from_commit, "source")
    for fallback in sb.fallbacks:
        if not repo.has_object(fallback.checksum, ObjectType.FILE):
            raise DeltaApplyError(
                f"Cannot apply delta offline: fallback object {fallback.checksum} "
                "is not in the repository"
            )
    for i, header in enumerate(sb.parts):
        if all(repo.has_object(c, t) or c == sb.to_commit for t, c in header.objects):
            stats.parts_skipped += 1
            continue
        if i in sb.inline_parts:
            payload = open_part(sb.inline_parts[i], None)
        else:
            data = load_part(i)
            if len(data) != header.size:
                raise CorruptDeltaError(
                    f"Delta part {i} is {len(data)} bytes, its header says {header.size}"
                )
            payload = open_part(data, header.checksum)
        execute_part(repo, header.objects, payload, index=i, to_commit=sb.to_commit, stats=stats)
        stats.parts_applied += 1
    if not repo.has_object(sb.to_commit, ObjectType.COMMIT):
        commit = parse_commit(sb.commit_bytes)
        missing = missing_tree_objects(repo, commit.root_dirtree, commit.root_dirmeta)
        if missing:
            csum, objtype = missing[0]
            raise CorruptDeltaError(
                f"Delta to {sb.to_commit} is incomplete: {objtype.name_str} {csum} "
                "is in neither the delta nor the repository"
            )
        if sb.commitmeta is not None:
            repo.write_commitmeta(sb.to_commit, sb.commitmeta)
        repo.write_metadata(ObjectType.COMMIT, sb.commit_bytes, expected=sb.to_commit)
        stats.objects_written += 1
    return stats


def apply_offline(repo: Repo, path: str | os.PathLike[str]) -> ApplyStats:
    """``ostree static-delta apply-offline``: ``path`` is a delta directory (holding
    ``superblock``) or a superblock file whose parts sit next to it."""
    p = Path(path)
    if p.is_dir():
        directory, sb_path = p, p / "superblock"
    else:
        directory, sb_path = p.parent, p
    try:
        data = sb_path.read_bytes()
    except FileNotFoundError:
        raise DeltaApplyError(f"No delta superblock at {sb_path}") from None

    def load(i: int) -> bytes:
        try:
            return (directory / str(i)).read_bytes()
        except FileNotFoundError:
            raise CorruptDeltaError(f"Delta part {i} is missing ({directory / str(i)})") from None

    return apply_delta(repo, data, load)
