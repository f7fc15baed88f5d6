"""Object keys packed as 33-byte records: the binary checksum and the type's value.

For sets of 100k+ objects held or passed around whole (an import's written
objects, the tree objects a walk visited): a tenth of the memory of
``(hex, ObjectType)`` tuples, and one ``bytes`` to send to another process.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from .names import Checksum
from .objects import ObjectType

SIZE = 33


def record(checksum: str, objtype: ObjectType) -> bytes:
    return bytes.fromhex(checksum) + bytes((objtype,))


def pack(keys: Iterable[tuple[str, ObjectType]]) -> bytes:
    return b"".join(record(checksum, objtype) for checksum, objtype in keys)


def pack_binary(checksums: Iterable[bytes], objtype: ObjectType) -> bytes:
    """Records of binary (32-byte) checksums, all of one type."""
    tag = bytes((objtype,))
    return b"".join(checksum + tag for checksum in checksums)


_TYPES = {t.value: t for t in ObjectType}


def unpack(data: bytes) -> Iterator[tuple[Checksum, ObjectType]]:
    # One hex() of the whole buffer, the type bytes by slicing, a dict for the
    # types: a sync unpacks 100k+ records, and a hex() and an Enum call per record
    # cost three times as much.
    if len(data) % SIZE:
        raise ValueError(f"Packed object records: {len(data)} bytes is not a multiple of {SIZE}")
    types = data[32::SIZE]
    if not set(types) <= _TYPES.keys():
        raise ValueError(f"Packed object records: unknown object type in {sorted(set(types))}")
    text = data.hex()
    checksums = (Checksum(text[at : at + 64]) for at in range(0, len(text), 2 * SIZE))
    return zip(checksums, map(_TYPES.__getitem__, types), strict=True)
