"""libpyostree.records: the packed (checksum, type) object records."""

from __future__ import annotations

import hashlib

import pytest

from libpyostree import records
from libpyostree.objects import ObjectType


def keys(n: int) -> list[tuple[str, ObjectType]]:
    types = list(ObjectType)
    return [(hashlib.sha256(str(i).encode()).hexdigest(), types[i % len(types)]) for i in range(n)]


@pytest.mark.parametrize("n", [0, 1, 7, 1000])
def test_round_trip(n: int) -> None:
    packed = records.pack(keys(n))
    assert len(packed) == n * records.SIZE
    out = list(records.unpack(packed))
    assert out == keys(n)
    assert all(type(t) is ObjectType for _c, t in out)


def test_record_layout() -> None:
    checksum = "ab" * 32
    assert records.record(checksum, ObjectType.DIR_TREE) == bytes.fromhex(checksum) + bytes(
        [ObjectType.DIR_TREE.value]
    )


def test_truncated_refused() -> None:
    with pytest.raises(ValueError, match="not a multiple of 33"):
        records.unpack(records.pack(keys(2))[:-1])


def test_unknown_type_refused() -> None:
    bad = bytearray(records.pack(keys(3)))
    bad[records.SIZE + 32] = 99
    with pytest.raises(ValueError, match="unknown object type"):
        records.unpack(bytes(bad))
