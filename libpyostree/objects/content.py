"""Content (FILE) objects: the canonical content stream and the archive ``.filez``.

Canonical content stream (what the object name is the sha256 of)::

    u32 BE header length L | 4 zero bytes | (uuuusa(ayay)) header, L bytes | raw content

Archive ``.filez`` (what archive repositories store and serve)::

    u32 BE header length L | 4 zero bytes | (tuuuusa(ayay)) header, L bytes | raw deflate

The ``.filez`` bytes are never hashed: the header is re-synthesised in canonical
form from the parsed fields and hashed together with the inflated content, so
any valid deflate encoding of the same file has the same name.  uid, gid, mode,
rdev and the archive size are big-endian inside the (little-endian) GVariant.
"""

from __future__ import annotations

import hashlib
import stat
import struct
import zlib
from collections.abc import Iterator
from dataclasses import dataclass

from ..errors import CorruptObjectError, GVariantError, OstreeError
from ..gvariant import decode, offset_size, offset_width
from ..names import Checksum
from ._framing import c_string, encode_xattrs, parse_xattrs
from .metadata import validate_mode_perms

FILE_HEADER_TYPE = "(uuuusa(ayay))"
ARCHIVE_HEADER_TYPE = "(tuuuusa(ayay))"
_INFLATE_CHUNK = 1 << 20


@dataclass(frozen=True, slots=True)
class FileHeader:
    """Owner, mode, symlink target and xattrs of a content object (host byte order)."""

    uid: int
    gid: int
    mode: int
    symlink_target: str = ""
    xattrs: tuple[tuple[bytes, bytes], ...] = ()
    rdev: int = 0

    @property
    def is_symlink(self) -> bool:
        return stat.S_ISLNK(self.mode)

    def validate(self) -> None:
        """Regular files and symlinks only, no stray mode bits, rdev 0 (file_header_parse)."""
        if not (stat.S_ISREG(self.mode) or stat.S_ISLNK(self.mode)):
            raise CorruptObjectError(f"Corrupted file object; invalid mode {self.mode:o}")
        validate_mode_perms(self.mode)
        if self.rdev != 0:
            raise CorruptObjectError(f"Corrupted file object; invalid rdev {self.rdev}")
        if stat.S_ISREG(self.mode) and self.symlink_target:
            raise CorruptObjectError("Corrupted file object; regular file with a symlink target")
        if stat.S_ISLNK(self.mode) and not self.symlink_target:
            raise CorruptObjectError("Corrupted file object; symlink without a target")

    def header_variant(self, *, sort_xattrs: bool = True) -> bytes:
        """The canonical ``(uuuusa(ayay))`` bytes (used for the checksum).

        Writers sort xattrs by name.  To re-hash an object read from a repository,
        pass ``sort_xattrs=False``: ostree 2022.7 hashes the xattrs in the order they
        are stored, and ``ostree commit --tree=tar=`` stores them unsorted (in the
        tarball's order), so sorting would not reproduce such an object's name.
        """
        target = self.symlink_target.encode("utf-8") + b"\0"
        fixed = struct.pack(">IIII", self.uid, self.gid, self.mode, self.rdev)
        return _fixed_then_pair(fixed, target, encode_xattrs(self.xattrs, sort=sort_xattrs))

    def content_stream_header(self, *, sort_xattrs: bool = True) -> bytes:
        variant = self.header_variant(sort_xattrs=sort_xattrs)
        return struct.pack(">I", len(variant)) + b"\0\0\0\0" + variant

    def archive_header(self, size: int) -> bytes:
        """The ``.filez`` prefix: length, padding and ``(tuuuusa(ayay))`` with ``size``."""
        target = self.symlink_target.encode("utf-8") + b"\0"
        fixed = struct.pack(">QIIII", size, self.uid, self.gid, self.mode, self.rdev)
        variant = _fixed_then_pair(fixed, target, encode_xattrs(self.xattrs))
        return struct.pack(">I", len(variant)) + b"\0\0\0\0" + variant


def _fixed_then_pair(fixed: bytes, target: bytes, xattrs: bytes) -> bytes:
    # Fixed members, then ``s`` (not last, so its end is the tuple's single
    # framing offset), then ``a(ayay)`` (last).  All alignment 1 after the fixed part.
    body = fixed + target + xattrs
    return body + (len(fixed) + len(target)).to_bytes(offset_width(len(body), 1), "little")


def content_checksum(header: FileHeader, content: bytes = b"") -> Checksum:
    """The object name of a file: sha256(canonical header stream ‖ content)."""
    digest = hashlib.sha256(header.content_stream_header())
    if content:
        digest.update(content)
    return Checksum(digest.hexdigest())


def _parse_header_fast(data: bytes, start: int, end: int, archive: bool) -> tuple[int, FileHeader]:
    fixed = 24 if archive else 16
    size = end - start
    if size < fixed + 1:
        raise GVariantError("file header too short", start)
    if archive:
        file_size, uid, gid, mode, rdev = struct.unpack_from(">QIIII", data, start)
    else:
        file_size = 0
        uid, gid, mode, rdev = struct.unpack_from(">IIII", data, start)
    w = offset_size(size)
    target_end = start + int.from_bytes(data[end - w : end], "little")
    if not start + fixed < target_end <= end - w:
        raise GVariantError("file header framing offset out of range", end - w)
    target = c_string(data, start + fixed, target_end)
    xattrs = parse_xattrs(data, target_end, end - w)
    return file_size, FileHeader(uid, gid, mode, target, xattrs, rdev)


def parse_file_header(
    data: bytes, start: int, end: int, *, archive: bool
) -> tuple[int, FileHeader]:
    """Parse a ``(uuuusa(ayay))`` or ``(tuuuusa(ayay))`` header (lenient, as ostree reads it).

    Returns ``(size, header)``; size is 0 for canonical headers.  The tuned path
    handles normal-form headers; anything else goes through GLib's recovery rules.
    """
    try:
        return _parse_header_fast(data, start, end, archive)
    except GVariantError:
        pass
    if archive:
        size, uid, gid, mode, rdev, target, xattrs = decode(
            ARCHIVE_HEADER_TYPE, data[start:end], strict=False
        )
    else:
        size = 0
        uid, gid, mode, rdev, target, xattrs = decode(
            FILE_HEADER_TYPE, data[start:end], strict=False
        )

    def be32(v: int) -> int:
        return int.from_bytes(v.to_bytes(4, "little"), "big")

    size = int.from_bytes(size.to_bytes(8, "little"), "big")
    return size, FileHeader(
        be32(uid), be32(gid), be32(mode), target, tuple(map(tuple, xattrs)), be32(rdev)
    )


def split_stream(data: bytes, *, what: str) -> tuple[int, int]:
    """Bounds of the header variant in a content stream or ``.filez``: (start, end)."""
    if len(data) < 8:
        raise CorruptObjectError(f"Corrupted {what}; truncated header")
    (length,) = struct.unpack_from(">I", data, 0)
    if length == 0 or 8 + length > len(data):
        raise CorruptObjectError(f"Corrupted {what}; header length {length} exceeds the file")
    return 8, 8 + length


@dataclass(frozen=True, slots=True)
class FilezInfo:
    header: FileHeader
    size: int
    body_offset: int


def parse_filez(data: bytes) -> FilezInfo:
    """Parse the header of a ``.filez`` and validate the mode; the body is not inflated."""
    start, end = split_stream(data, what="archive file")
    try:
        size, header = parse_file_header(data, start, end, archive=True)
    except OstreeError as exc:
        raise CorruptObjectError(f"Corrupted archive file header: {exc}") from None
    header.validate()
    return FilezInfo(header, size, end)


def iter_inflate(data: bytes, offset: int, size: int) -> Iterator[bytes]:
    """Inflate the raw deflate body of a ``.filez``, refusing more or less than ``size``
    bytes and anything after the end of the deflate stream (no decompression bombs)."""
    inflater = zlib.decompressobj(-15)
    produced = 0
    view = memoryview(data)[offset:]
    try:
        chunk = inflater.decompress(view, _INFLATE_CHUNK)
        while True:
            produced += len(chunk)
            if produced > size:
                raise CorruptObjectError(f"Corrupted archive file; content exceeds size {size}")
            if chunk:
                yield chunk
            if inflater.eof or not inflater.unconsumed_tail:
                break
            chunk = inflater.decompress(inflater.unconsumed_tail, _INFLATE_CHUNK)
        if not inflater.eof:
            rest = inflater.flush()
            produced += len(rest)
            if produced > size:
                raise CorruptObjectError(f"Corrupted archive file; content exceeds size {size}")
            if rest:
                yield rest
    except zlib.error as exc:
        raise CorruptObjectError(f"Corrupted archive file; invalid deflate data: {exc}") from None
    if not inflater.eof:
        raise CorruptObjectError("Corrupted archive file; truncated deflate stream")
    if inflater.unused_data:
        raise CorruptObjectError("Corrupted archive file; data after the deflate stream")
    if produced != size:
        raise CorruptObjectError(
            f"Corrupted archive file; content is {produced} bytes, header says {size}"
        )


def filez_checksum(data: bytes) -> tuple[Checksum, FilezInfo]:
    """Re-hash a ``.filez`` as ostree's untrusted pull does: canonical header + inflated body."""
    info = parse_filez(data)
    digest = hashlib.sha256(info.header.content_stream_header(sort_xattrs=False))
    if not info.header.is_symlink:
        for chunk in iter_inflate(data, info.body_offset, info.size):
            digest.update(chunk)
    return Checksum(digest.hexdigest()), info


_PLAIN_ARCHIVE_PREFIX = b"\x00\x00\x00\x1a\x00\x00\x00\x00"
_PLAIN_CANONICAL_PREFIX = b"\x00\x00\x00\x12\x00\x00\x00\x00"
_ARCHIVE_FIXED = struct.Struct(">QIIII")
_SINGLE_SHOT_LIMIT = 64 * 1024 * 1024


def filez_object_checksum(data: bytes) -> Checksum:
    """The object name a ``.filez`` deserves; same result as :func:`filez_checksum`.

    The common case, a regular file without xattrs, has a 26-byte archive header
    (24 fixed bytes, the empty target, one offset byte 25) whose canonical form is
    the same fields without the size; it is re-hashed without building any
    records.  Everything else takes the general path, which reports problems.
    """
    if len(data) >= 34 and data[:8] == _PLAIN_ARCHIVE_PREFIX and data[32] == 0 and data[33] == 25:
        size, _uid, _gid, mode, rdev = _ARCHIVE_FIXED.unpack_from(data, 8)
        plain = mode & 0o170000 == 0o100000 and not mode & ~0o177777 and not rdev
        if plain and size < _SINGLE_SHOT_LIMIT:
            inflater = zlib.decompressobj(-15)
            try:
                out = inflater.decompress(memoryview(data)[34:], size + 1)
            except zlib.error:
                out = None
            if out is not None and len(out) == size and inflater.eof and not inflater.unused_data:
                digest = hashlib.sha256(_PLAIN_CANONICAL_PREFIX + data[16:32] + b"\x00\x11")
                digest.update(out)
                return Checksum(digest.hexdigest())
    return filez_checksum(data)[0]


def read_filez(data: bytes) -> tuple[FileHeader, bytes]:
    """Header and inflated content of a ``.filez`` (content is empty for symlinks)."""
    info = parse_filez(data)
    if info.header.is_symlink:
        return info.header, b""
    return info.header, b"".join(iter_inflate(data, info.body_offset, info.size))


def build_filez(header: FileHeader, content: bytes = b"", *, level: int = 6) -> bytes:
    """An archive ``.filez`` for this file (symlinks have no deflate body)."""
    header.validate()
    if header.is_symlink:
        return header.archive_header(0)
    deflater = zlib.compressobj(level, zlib.DEFLATED, -15)
    body = deflater.compress(content) + deflater.flush()
    return header.archive_header(len(content)) + body
