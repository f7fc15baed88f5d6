"""The static-delta superblock ``(a{sv}tayay(a{sv}aya(say)sstayay)aya(uayttay)a(yaytt))``
(``reference/ostree-format.md`` §5.2, §5.6).

=== ============== =====================================================================
 #  type           meaning
=== ============== =====================================================================
 0  ``a{sv}``      metadata: user keys, ``ostree.endianness`` (``y`` ``l``/``B``), inline
                   parts (``deltas/…/N`` → ``(yay)`` part file), ``deltas/…/commitmeta``
 1  ``t``          generation time, big-endian
 2  ``ay``         FROM commit (32 bytes) or empty for a delta from scratch
 3  ``ay``         TO commit (32 bytes)
 4  commit         the TO commit, byte-identical to its ``.commit``
 5  ``ay``         "recursive deltas", always empty
 6  ``a(uayttay)`` part headers: version, sha256 of the part file, size, usize, objects
 7  ``a(yaytt)``   fallbacks: objtype (FILE), checksum, ``.filez`` size, content size
=== ============== =====================================================================

The ``u``/``t`` numbers of parts and fallbacks are in the generator's byte order
(``ostree.endianness``, else ostree's heuristic); :class:`Superblock` holds host
values.  We always write little-endian with ``ostree.endianness = 'l'``.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, field

from ..errors import OstreeError
from ..gvariant import Variant, decode, encode
from ..names import Checksum
from ..objects import ObjectType, metadata_checksum, parse_commit
from ..objects.metadata import COMMIT_TYPE, MAX_METADATA_SIZE
from .errors import CorruptDeltaError
from .names import DeltaName

SUPERBLOCK_TYPE = "(a{sv}tayay" + COMMIT_TYPE + "aya(uayttay)a(yaytt))"
PART_HEADER_TYPE = "(uayttay)"
FALLBACK_TYPE = "(yaytt)"
DELTAPART_VERSION = 0
OBJECT_RECORD_LEN = 33
ENDIANNESS_KEY = "ostree.endianness"
MAX_SUPERBLOCK_SIZE = MAX_METADATA_SIZE
"""Clients fetch superblocks with the metadata size limit (128 MiB)."""


def _swap(value: int, width: int) -> int:
    return int.from_bytes(value.to_bytes(width, "little"), "big")


@dataclass(frozen=True, slots=True)
class PartHeader:
    """One ``(uayttay)`` entry, numbers in host order."""

    version: int
    checksum: bytes
    size: int
    usize: int
    objects: tuple[tuple[ObjectType, Checksum], ...]

    @property
    def checksum_hex(self) -> str:
        return self.checksum.hex()

    def objects_bytes(self) -> bytes:
        return b"".join(bytes([t]) + bytes.fromhex(c) for t, c in self.objects)


@dataclass(frozen=True, slots=True)
class Fallback:
    """One ``(yaytt)`` entry: a ``.filez`` the client fetches as a loose object."""

    objtype: ObjectType
    checksum: Checksum
    compressed_size: int
    uncompressed_size: int


@dataclass(slots=True)
class Superblock:
    """A parsed superblock.  ``metadata`` holds only the keys that are not one of
    the structural ones (endianness, inline parts, commitmeta)."""

    from_commit: Checksum | None
    to_commit: Checksum
    commit_bytes: bytes
    parts: list[PartHeader]
    fallbacks: list[Fallback] = field(default_factory=list)
    timestamp: int = 0
    endianness: str = "l"
    endianness_heuristic: bool = False
    inline_parts: dict[int, bytes] = field(default_factory=dict)
    commitmeta: dict[str, Variant] | None = None
    metadata: dict[str, Variant] = field(default_factory=dict)

    @property
    def name(self) -> DeltaName:
        return DeltaName(self.from_commit, self.to_commit)

    def to_bytes(self) -> bytes:
        return build_superblock(self)


def _checksum(raw: bytes, what: str) -> Checksum:
    if len(raw) != 32:
        raise CorruptDeltaError(f"Invalid {what} checksum of length {len(raw)} in delta superblock")
    return Checksum(raw.hex())


def parse_object_list(
    raw: bytes, what: str = "delta part"
) -> tuple[tuple[ObjectType, Checksum], ...]:
    """The ``[objtype u8][csum 32]`` records of a part header."""
    if len(raw) % OBJECT_RECORD_LEN:
        raise CorruptDeltaError(f"Invalid checksum array length {len(raw)} in {what}")
    out = []
    for pos in range(0, len(raw), OBJECT_RECORD_LEN):
        try:
            objtype = ObjectType(raw[pos])
        except ValueError:
            raise CorruptDeltaError(f"Invalid object type {raw[pos]} in {what}") from None
        out.append((objtype, Checksum(raw[pos + 1 : pos + OBJECT_RECORD_LEN].hex())))
    return tuple(out)


def _heuristic_byteswapped(raw_parts: list[tuple[int, bytes, int, int, bytes]]) -> bool:
    """``_ostree_delta_get_endianness`` without ``ostree.endianness`` (read as LE)."""
    total_size = 0
    total_objects = 0
    for _version, _csum, size, usize, objects in raw_parts:
        total_objects += len(objects) // OBJECT_RECORD_LEN
        total_size += size
        if size > usize and (usize == 0 or size / usize > 1.2):
            return True
    return total_objects > 0 and total_size // total_objects > 0xFFFFFFFF


def parse_superblock(data: bytes) -> Superblock:
    """Parse and validate superblock bytes (normal form required).

    Raises :class:`CorruptDeltaError` for truncated or invalid data, an invalid
    endianness, a part of a newer version, a metadata fallback, an embedded commit
    that does not hash to the TO checksum, or inline parts at unknown indexes.
    """
    if len(data) > MAX_SUPERBLOCK_SIZE:
        raise CorruptDeltaError(f"Delta superblock of {len(data)} bytes exceeds the maximum size")
    try:
        meta, ts, from_raw, to_raw, commit, recurse, headers, fallbacks = decode(
            SUPERBLOCK_TYPE, data, strict=True
        )
    except OstreeError as exc:
        raise CorruptDeltaError(f"Invalid delta superblock ({len(data)} bytes): {exc}") from None
    to_commit = _checksum(to_raw, "TO")
    from_commit = _checksum(from_raw, "FROM") if from_raw else None
    if len(recurse) % 64:
        raise CorruptDeltaError(f"Invalid recursive-delta array length {len(recurse)}")
    commit_bytes = encode(COMMIT_TYPE, commit)  # normal form in, identical bytes out
    if metadata_checksum(commit_bytes) != to_commit:
        raise CorruptDeltaError(
            f"Delta superblock embeds a commit that is not {to_commit} "
            f"(it hashes to {metadata_checksum(commit_bytes)})"
        )
    try:
        parse_commit(commit_bytes)
    except OstreeError as exc:
        raise CorruptDeltaError(f"Delta superblock embeds an invalid commit: {exc}") from None

    name = DeltaName(from_commit, to_commit)
    endianness_heuristic = False
    endian_v = meta.get(ENDIANNESS_KEY)
    if endian_v is not None:
        if endian_v.type != "y" or endian_v.value not in (ord("l"), ord("B")):
            raise CorruptDeltaError(f"Invalid {ENDIANNESS_KEY} {endian_v.value!r} in superblock")
        endianness = chr(endian_v.value)
    else:
        endianness_heuristic = True
        endianness = "B" if _heuristic_byteswapped(headers) else "l"
    swap = endianness == "B"

    parts = []
    for i, (version, csum, size, usize, objects) in enumerate(headers):
        if swap:
            version, size, usize = _swap(version, 4), _swap(size, 8), _swap(usize, 8)
        if version > DELTAPART_VERSION:
            raise CorruptDeltaError(f"Delta part {i} has too new version {version}")
        if len(csum) != 32:
            raise CorruptDeltaError(f"Delta part {i} has a checksum of length {len(csum)}")
        parts.append(
            PartHeader(version, csum, size, usize, parse_object_list(objects, f"delta part {i}"))
        )
    fallback_list = []
    for objtype, csum, size, usize in fallbacks:
        if objtype != ObjectType.FILE:
            raise CorruptDeltaError(
                f"Found metadata object as fallback (type {objtype}) in delta superblock"
            )
        if swap:
            size, usize = _swap(size, 8), _swap(usize, 8)
        fallback_list.append(Fallback(ObjectType.FILE, _checksum(csum, "fallback"), size, usize))

    inline: dict[int, bytes] = {}
    commitmeta = None
    user: dict[str, Variant] = {}
    part_prefix = name.dir + "/"
    for key, value in meta.items():
        if key == ENDIANNESS_KEY:
            continue
        if key == name.commitmeta_key:
            if value.type != "a{sv}":
                raise CorruptDeltaError(f"Detached metadata in superblock has type {value.type}")
            commitmeta = value.value
        elif key.startswith(part_prefix) and key[len(part_prefix) :].isdigit():
            index = int(key[len(part_prefix) :])
            if str(index) != key[len(part_prefix) :] or index >= len(parts):
                raise CorruptDeltaError(f"Inline part {key} does not match a part header")
            if value.type != "(yay)":
                raise CorruptDeltaError(f"Inline part {key} has type {value.type}, not (yay)")
            comp, rest = value.value
            inline[index] = bytes([comp]) + rest
        else:
            user[key] = value
    return Superblock(
        from_commit=from_commit,
        to_commit=to_commit,
        commit_bytes=commit_bytes,
        parts=parts,
        fallbacks=fallback_list,
        timestamp=_swap(ts, 8),
        endianness=endianness,
        endianness_heuristic=endianness_heuristic,
        inline_parts=inline,
        commitmeta=commitmeta,
        metadata=user,
    )


def build_superblock(sb: Superblock) -> bytes:
    """Serialize ``sb`` (normal form) in ostree's metadata order: user keys,
    ``ostree.endianness``, inline parts, detached metadata."""
    if sb.endianness not in ("l", "B"):
        raise OstreeError(f"Invalid delta endianness {sb.endianness!r}")
    swap = sb.endianness == "B"
    name = sb.name
    meta: dict[str, Variant] = dict(sb.metadata)
    meta[ENDIANNESS_KEY] = Variant("y", ord(sb.endianness))
    for index, part in sorted(sb.inline_parts.items()):
        meta[name.part_path(index)] = Variant("(yay)", (part[0], part[1:]))
    if sb.commitmeta is not None:
        meta[name.commitmeta_key] = Variant("a{sv}", sb.commitmeta)

    def num(value: int, width: int) -> int:
        return _swap(value, width) if swap else value

    headers = [
        (num(p.version, 4), p.checksum, num(p.size, 8), num(p.usize, 8), p.objects_bytes())
        for p in sb.parts
    ]
    fallbacks = [
        (int(f.objtype), bytes.fromhex(f.checksum), num(f.compressed_size, 8),
         num(f.uncompressed_size, 8))
        for f in sb.fallbacks
    ]  # fmt: skip
    commit = decode(COMMIT_TYPE, sb.commit_bytes, strict=True)
    return encode(
        SUPERBLOCK_TYPE,
        (
            meta,
            _swap(sb.timestamp or int(time.time()), 8),
            bytes.fromhex(sb.from_commit) if sb.from_commit else b"",
            bytes.fromhex(sb.to_commit),
            commit,
            b"",
            headers,
            fallbacks,
        ),
    )


def superblock_digest(data: bytes) -> bytes:
    """What summaries and delta indexes publish: sha256 of the superblock file."""
    return hashlib.sha256(data).digest()


__all__ = [
    "DELTAPART_VERSION",
    "FALLBACK_TYPE",
    "PART_HEADER_TYPE",
    "SUPERBLOCK_TYPE",
    "Fallback",
    "PartHeader",
    "Superblock",
    "build_superblock",
    "parse_object_list",
    "parse_superblock",
    "superblock_digest",
]
