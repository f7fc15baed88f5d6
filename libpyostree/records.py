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


def unpack(data: bytes) -> Iterator[tuple[Checksum, ObjectType]]:
    view = memoryview(data)
    for at in range(0, len(view), SIZE):
        yield Checksum(view[at : at + 32].hex()), ObjectType(view[at + 32])
