"""The hand-tuned readers for OSTree layouts agree with the generic GVariant codec.

For valid values both produce the same bytes and values; for mutated bytes the
fast strict readers fail exactly when the generic strict decoder (a port of
GLib's normal-form check) fails or the structure is invalid, and the lenient
file-header reader returns what GLib's recovery rules give.
"""

from __future__ import annotations

import struct
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from libpyostree.errors import GVariantError, OstreeError
from libpyostree.gvariant import Variant, _decode, decode, encode
from libpyostree.names import Checksum, validate_filename
from libpyostree.objects import (
    DirMeta,
    DirTree,
    FileHeader,
    build_filez,
    filez_checksum,
    filez_object_checksum,
    parse_dirmeta,
    parse_dirtree,
)
from libpyostree.objects.content import ARCHIVE_HEADER_TYPE, FILE_HEADER_TYPE, parse_file_header

SETTINGS = settings(
    max_examples=400, deadline=None, derandomize=True, database=None,
    suppress_health_check=[HealthCheck.too_slow],
)  # fmt: skip

names = st.text(
    st.characters(exclude_categories=["Cs"], exclude_characters="/\0"), min_size=1, max_size=40
).filter(lambda n: n not in (".", ".."))
csums = st.binary(min_size=32, max_size=32).map(bytes.hex)
xattr_lists = st.lists(
    st.tuples(st.binary(max_size=20).map(lambda b: b + b"\0"), st.binary(max_size=300)),
    max_size=4,
    unique_by=lambda x: x[0],
)
dirtrees = st.builds(
    DirTree,
    st.lists(st.tuples(names, csums), max_size=12, unique_by=lambda e: e[0]).map(tuple),
    st.lists(st.tuples(names, csums, csums), max_size=12, unique_by=lambda e: e[0]).map(tuple),
)


def _generic_dirtree(data: bytes) -> DirTree:
    files, dirs = decode("(a(say)a(sayay))", data)
    for name, csum in files:
        validate_filename(name)
        if len(csum) != 32:
            raise OstreeError("csum")
    for name, tree, meta in dirs:
        validate_filename(name)
        if len(tree) != 32 or len(meta) != 32:
            raise OstreeError("csum")
    return DirTree(
        tuple((n, Checksum(c.hex())) for n, c in files),
        tuple((n, Checksum(t.hex()), Checksum(m.hex())) for n, t, m in dirs),
    )


def _outcome(func: object, data: bytes) -> object:
    try:
        return func(data)  # type: ignore[operator]
    except OstreeError:
        return "error"


def _mutations(data: bytes, draw: Any) -> bytes:
    kind = draw(st.sampled_from(["flip", "insert", "delete", "truncate", "set"]))
    if not data:
        fresh: bytes = draw(st.binary(max_size=8))
        return fresh
    pos = draw(st.integers(0, len(data) - 1))
    if kind == "flip":
        return data[:pos] + bytes([data[pos] ^ draw(st.integers(1, 255))]) + data[pos + 1 :]
    if kind == "insert":
        extra: bytes = draw(st.binary(min_size=1, max_size=3))
        return data[:pos] + extra + data[pos:]
    if kind == "delete":
        return data[:pos] + data[pos + 1 :]
    if kind == "truncate":
        return data[:pos]
    return (
        data[:pos]
        + bytes([draw(st.sampled_from([0, 1, 0xFF, len(data) & 0xFF]))])
        + data[pos + 1 :]
    )


@SETTINGS
@given(dirtrees)
def test_dirtree_fast_path_agrees_with_generic_codec(tree: DirTree) -> None:
    data = tree.to_bytes()
    files = [(n.encode(), bytes.fromhex(c)) for n, c in tree.files]
    dirs = [(n.encode(), bytes.fromhex(t), bytes.fromhex(m)) for n, t, m in tree.dirs]
    generic = encode(
        "(a(say)a(sayay))",
        (
            [(n.decode(), c) for n, c in sorted(files)],
            [(n.decode(), t, m) for n, t, m in sorted(dirs)],
        ),
    )
    assert data == generic
    assert parse_dirtree(data) == _generic_dirtree(data)


@SETTINGS
@given(st.data())
def test_dirtree_fast_path_rejects_exactly_what_generic_rejects(data: st.DataObject) -> None:
    tree = data.draw(dirtrees)
    mutated = _mutations(tree.to_bytes(), data.draw)
    assert _outcome(parse_dirtree, mutated) == _outcome(_generic_dirtree, mutated)


def _generic_dirmeta(data: bytes) -> DirMeta:
    uid, gid, mode, xattrs = decode("(uuua(ayay))", data)

    def swap(v: int) -> int:
        return int.from_bytes(v.to_bytes(4, "little"), "big")

    meta = DirMeta(swap(uid), swap(gid), swap(mode), tuple(xattrs))
    meta.validate()
    return meta


@SETTINGS
@given(st.data())
def test_dirmeta_fast_path_agrees_with_generic_codec(data: st.DataObject) -> None:
    meta = DirMeta(
        data.draw(st.integers(0, 2**32 - 1)),
        data.draw(st.integers(0, 2**32 - 1)),
        0o40000 | data.draw(st.integers(0, 0o7777)),
        tuple(sorted(data.draw(xattr_lists))),
    )
    raw = meta.to_bytes()
    swapped = (
        struct.unpack("<I", struct.pack(">I", meta.uid))[0],
        struct.unpack("<I", struct.pack(">I", meta.gid))[0],
        struct.unpack("<I", struct.pack(">I", meta.mode))[0],
        list(meta.xattrs),
    )
    assert raw == encode("(uuua(ayay))", swapped)
    assert parse_dirmeta(raw) == meta
    mutated = _mutations(raw, data.draw)
    assert _outcome(parse_dirmeta, mutated) == _outcome(_generic_dirmeta, mutated)


def _generic_header(data: bytes, archive: bool) -> tuple[int, FileHeader]:
    def be32(v: int) -> int:
        return int.from_bytes(v.to_bytes(4, "little"), "big")

    if archive:
        size, uid, gid, mode, rdev, target, xattrs = decode(ARCHIVE_HEADER_TYPE, data, strict=False)
        size = int.from_bytes(size.to_bytes(8, "little"), "big")
    else:
        size = 0
        uid, gid, mode, rdev, target, xattrs = decode(FILE_HEADER_TYPE, data, strict=False)
    return size, FileHeader(
        be32(uid), be32(gid), be32(mode), target, tuple(map(tuple, xattrs)), be32(rdev)
    )


@SETTINGS
@given(st.data())
def test_file_header_fast_path_reads_like_glib_recovery(data: st.DataObject) -> None:
    header = FileHeader(
        data.draw(st.integers(0, 2**32 - 1)),
        data.draw(st.integers(0, 2**32 - 1)),
        data.draw(st.sampled_from([0o100644, 0o100755, 0o120777])),
        data.draw(names),
        tuple(sorted(data.draw(xattr_lists))),
    )
    archive = data.draw(st.booleans())
    raw = header.archive_header(77)[8:] if archive else header.content_stream_header()[8:]
    assert parse_file_header(raw, 0, len(raw), archive=archive) == (77 if archive else 0, header)
    mutated = _mutations(raw, data.draw)
    try:
        expected: object = _generic_header(mutated, archive)
    except GVariantError:
        expected = "error"
    try:
        actual: object = parse_file_header(mutated, 0, len(mutated), archive=archive)
    except GVariantError:
        actual = "error"
    assert actual == expected


def _object_checksum_outcome(func: Any, data: bytes) -> object:
    try:
        result = func(data)
    except OstreeError:
        return "error"
    return result[0] if isinstance(result, tuple) else result


@SETTINGS
@given(st.data())
def test_filez_object_checksum_agrees_with_the_general_path(data: st.DataObject) -> None:
    header = FileHeader(
        data.draw(st.integers(0, 2**32 - 1)),
        data.draw(st.integers(0, 2**32 - 1)),
        data.draw(st.sampled_from([0o100644, 0o104755, 0o100000, 0o120777])),
        "",
        tuple(sorted(data.draw(xattr_lists))) if data.draw(st.booleans()) else (),
    )
    if header.is_symlink:
        header = FileHeader(header.uid, header.gid, header.mode, "t", header.xattrs)
    raw = build_filez(header, data.draw(st.binary(max_size=2000)))
    assert filez_object_checksum(raw) == filez_checksum(raw)[0]
    mutated = _mutations(raw, data.draw)
    assert _object_checksum_outcome(filez_object_checksum, mutated) == _object_checksum_outcome(
        filez_checksum, mutated
    )


gv_text = st.text(st.characters(exclude_categories=["Cs"], exclude_characters="\0"), max_size=20)
metadata_values = st.dictionaries(
    gv_text,
    st.one_of(
        gv_text.map(lambda v: Variant("s", v)),
        st.integers(0, 2**64 - 1).map(lambda v: Variant("t", v)),
        st.booleans().map(lambda v: Variant("b", v)),
        st.lists(gv_text, max_size=3).map(lambda v: Variant("as", v)),
        st.binary(max_size=300).map(lambda v: Variant("ay", v)),
    ),
    max_size=6,
)


@SETTINGS
@given(st.data())
def test_sv_entry_fast_path_agrees_with_the_generic_tuple_reader(data: st.DataObject) -> None:
    raw = encode("a{sv}", data.draw(metadata_values))
    mutated = _mutations(raw, data.draw)

    def generic(buf: bytes) -> object:
        fast = _decode._Reader._entry_sv
        try:
            _decode._Reader._entry_sv = _decode._Reader._tuple_strict  # type: ignore[method-assign]
            return decode("a{sv}", buf)
        finally:
            _decode._Reader._entry_sv = fast  # type: ignore[method-assign]

    assert decode("a{sv}", raw) == generic(raw)
    assert _outcome(lambda b: decode("a{sv}", b), mutated) == _outcome(generic, mutated)
