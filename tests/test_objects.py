"""OSTree object formats against the byte-exact vectors of the format reference (ostree 2022.7)."""

from __future__ import annotations

import hashlib
import struct
import zlib

import pytest

from libpyostree.errors import CorruptObjectError, GVariantError, OstreeError
from libpyostree.gvariant import Variant, decode, encode
from libpyostree.names import Checksum
from libpyostree.objects import (
    EMPTY_DIRTREE_CHECKSUM,
    Commit,
    DirMeta,
    DirTree,
    FileHeader,
    SummaryRef,
    build_filez,
    build_summary,
    build_tombstone,
    content_checksum,
    filez_checksum,
    metadata_checksum,
    parse_commit,
    parse_dirmeta,
    parse_dirtree,
    parse_filez,
    parse_summary,
    parse_tombstone,
    read_filez,
)
from libpyostree.objects.summary import be_uint64

REG = 0o100644
XATTRS = ((b"security.selinux\0", b"foo_t\0"), (b"user.blah\0", b"somedata\0"))


@pytest.mark.parametrize(
    ("header", "content", "expected"),
    [
        (FileHeader(0, 0, REG), b"hi", "2301b5923720c3edc1f0467addb5c287fd5559e3e0cd1396e7f1edb6b01be9f0"),
        (FileHeader(0, 0, REG, xattrs=XATTRS), b"hi", "72473a9e8ace75f89f1504137cfb134feb5372bc1d97e04eb5300e24ad836153"),
        (FileHeader(0, 0, REG), b"", "cc700d46f407c6c5ab2d5dde474366a928b7398277e61162e7f8ec06f469f07e"),
        (FileHeader(0, 0, 0o120777, "hello.txt"), b"", "f66efa496a72379413c44593de510dc344beb045294f1a543da87b2b6118db35"),
        (
            FileHeader(0, 0, REG),
            b"default 0.0.0.0\nloopback 127.0.0.0\nlink-local 169.254.0.0\n",
            "8aaa9dc13a0c5839fe4a277756798c609c53fac6fa2290314ecfef9041065873",
        ),
    ],
)  # fmt: skip
def test_content_checksum_matches_libostree_vectors(
    header: FileHeader, content: bytes, expected: str
) -> None:
    assert content_checksum(header, content) == expected
    # and the archived form re-hashes to the same name, whatever the deflate level
    for level in (0, 1, 6, 9):
        assert filez_checksum(build_filez(header, content, level=level))[0] == expected


def test_xattrs_are_sorted_whatever_order_they_are_given_in() -> None:
    backwards = FileHeader(0, 0, REG, xattrs=tuple(reversed(XATTRS)))
    assert content_checksum(backwards, b"hi") == content_checksum(
        FileHeader(0, 0, REG, xattrs=XATTRS), b"hi"
    )


def test_canonical_header_bytes() -> None:
    assert FileHeader(0, 0, REG).content_stream_header().hex() == (
        "00000012" "00000000" "00000000" "00000000" "000081a4" "00000000" "00" "11"
    )  # fmt: skip


def test_filez_header_of_empty_file_and_its_deflate_body() -> None:
    data = build_filez(FileHeader(0, 0, REG))
    assert (
        data.hex()
        == "0000001a00000000" + "00" * 8 + "00" * 8 + "000081a4" + "00" * 4 + "0019" + "0300"
    )


def test_filez_is_not_what_is_hashed() -> None:
    data = build_filez(FileHeader(0, 0, REG), b"hi")
    assert hashlib.sha256(data).hexdigest() != content_checksum(FileHeader(0, 0, REG), b"hi")


def test_symlink_filez_has_no_body() -> None:
    header = FileHeader(0, 0, 0o120777, "target")
    data = build_filez(header)
    info = parse_filez(data)
    assert info.body_offset == len(data) and info.header == header
    assert read_filez(data) == (header, b"")


def test_archive_header_fields_are_big_endian() -> None:
    data = build_filez(FileHeader(1000, 1001, REG), b"x" * 300)
    size, uid, gid, mode, rdev = struct.unpack_from(">QIIII", data, 8)
    assert (size, uid, gid, mode, rdev) == (300, 1000, 1001, REG, 0)


@pytest.mark.parametrize(
    ("mode", "rdev", "message"),
    [(0o020644, 0, "invalid mode"), (0o060644, 0, "invalid mode"), (REG, 5, "invalid rdev"),
     (0o010644, 0, "invalid mode"), (REG | 0o200000, 0, "invalid bits")],
)  # fmt: skip
def test_filez_with_device_fifo_or_rdev_is_refused(mode: int, rdev: int, message: str) -> None:
    bad = FileHeader(0, 0, mode, rdev=rdev)
    data = bad.archive_header(0) + zlib.compressobj(6, zlib.DEFLATED, -15).flush()
    with pytest.raises(CorruptObjectError, match=message):
        filez_checksum(data)


def test_filez_decompression_bomb_is_capped_by_the_header_size() -> None:
    header = FileHeader(0, 0, REG)
    bomb = build_filez(header, b"\0" * 10_000_000)
    lying = header.archive_header(10) + bomb[len(header.archive_header(10_000_000)) :]
    with pytest.raises(CorruptObjectError, match="exceeds size 10"):
        filez_checksum(lying)


@pytest.mark.parametrize("cut", [1, 7, 20, 40])
def test_truncated_filez_is_corrupt(cut: int) -> None:
    data = build_filez(FileHeader(0, 0, REG), b"hello world" * 100)
    with pytest.raises(CorruptObjectError):
        filez_checksum(data[:cut] if cut < 40 else data[:-3])


def test_trailing_garbage_after_deflate_is_corrupt() -> None:
    data = build_filez(FileHeader(0, 0, REG), b"abc") + b"junk"
    with pytest.raises(CorruptObjectError, match="after the deflate stream"):
        filez_checksum(data)


def test_empty_dirtree_and_root_dirmeta_vectors() -> None:
    assert DirTree().to_bytes() == b"\0"
    assert metadata_checksum(b"\0") == EMPTY_DIRTREE_CHECKSUM
    meta = DirMeta(0, 0, 0o40755).to_bytes()
    assert meta.hex() == "00000000" "00000000" "000041ed"  # fmt: skip
    assert metadata_checksum(meta).startswith("446a0ef1") and metadata_checksum(meta).endswith(
        "5488"
    )
    assert parse_dirmeta(meta) == DirMeta(0, 0, 0o40755)


def test_dirtree_builder_sorts_by_utf8_bytes_and_round_trips() -> None:
    a, b = Checksum("a" * 64), Checksum("b" * 64)
    tree = DirTree(files=(("z", a), ("Ä", b), ("a", a)), dirs=(("sub", a, b), ("Sub", b, a)))
    data = tree.to_bytes()
    parsed = parse_dirtree(data)
    assert [n for n, _ in parsed.files] == ["a", "z", "Ä"]
    assert [n for n, _, _ in parsed.dirs] == ["Sub", "sub"]
    generic = decode("(a(say)a(sayay))", data)
    assert encode("(a(say)a(sayay))", generic) == data


def _commit_vector() -> tuple[Commit, bytes]:
    tree = "b85e" + "00" * 28 + "76cb"  # placeholder checksums with the spec's ends
    meta = "446a" + "00" * 28 + "5488"
    commit = Commit(
        root_dirtree=tree,  # type: ignore[arg-type]
        root_dirmeta=meta,  # type: ignore[arg-type]
        subject="first",
        body="the body",
        timestamp=1640995200,
        metadata={"version": Variant("s", "1.0"), "ostree.ref-binding": Variant("as", ["main"])},
    )
    return commit, commit.to_bytes()


def test_commit_layout_matches_the_worked_example() -> None:
    commit, data = _commit_vector()
    assert len(data) == 150
    assert data[:0x10].hex() == "76657273696f6e00312e300000730800"
    assert data[0x4C:0x50].hex() == "61cf9980"  # BE timestamp 2022-01-01
    assert data[0x90:].hex() == "70433a343434"
    assert parse_commit(data) == commit


def test_commit_accessors() -> None:
    commit, _ = _commit_vector()
    assert commit.version == "1.0"
    assert commit.ref_bindings == ["main"]
    assert commit.parent is None


def test_commit_with_bad_parent_length_is_refused() -> None:
    _, data = _commit_vector()
    value = list(decode("(a{sv}aya(say)sstayay)", data))
    value[1] = b"\x01" * 5
    with pytest.raises(CorruptObjectError, match="parent"):
        parse_commit(encode("(a{sv}aya(say)sstayay)", tuple(value)))


def test_non_normal_commit_is_refused() -> None:
    _, data = _commit_vector()
    padded = bytearray(data)
    padded[0x0D] = 1  # padding byte after "1.0\0" inside the first dict entry
    with pytest.raises(GVariantError):
        parse_commit(bytes(padded))


def test_summary_round_trip_and_byte_order() -> None:
    csum = "ab" * 32
    data = build_summary(
        [SummaryRef("main", csum, 158, {"ostree.commit.timestamp": be_uint64(1640995200)})],  # type: ignore[arg-type]
        {"ostree.summary.mode": Variant("s", "archive-z2")},
    )
    # commit size is host-endian (LE) in the summary, as ostree 2022.7 writes it
    assert bytes.fromhex("9e00000000000000") in data
    summary = parse_summary(data)
    assert summary.refs[0].commit_size == 158 and summary.refs[0].timestamp == 1640995200
    assert summary.ref("main") is not None and summary.ref("other") is None


def test_summary_refs_are_sorted_by_bytes() -> None:
    refs = [SummaryRef(n, "cd" * 32, 1) for n in ("b", "a/x", "B", "a")]  # type: ignore[arg-type]
    summary = parse_summary(build_summary(refs, {}))
    assert [r.name for r in summary.refs] == ["B", "a", "a/x", "b"]


def test_tombstone_round_trip() -> None:
    csum = "12" * 32
    assert parse_tombstone(build_tombstone(csum)) == csum  # type: ignore[arg-type]
    assert b"\0" in decode("a{sv}", build_tombstone(csum))["commit"].value  # type: ignore[arg-type]


@pytest.mark.parametrize("name", ["..", ".", "a/b", "../x", ""])
def test_dirtree_with_bad_file_names_is_refused(name: str) -> None:
    data = encode("(a(say)a(sayay))", ([(name, b"\1" * 32)], []))
    with pytest.raises(OstreeError):
        parse_dirtree(data)


def test_dirtree_with_short_checksum_is_refused() -> None:
    data = encode("(a(say)a(sayay))", ([("f", b"\1" * 31)], []))
    with pytest.raises(CorruptObjectError, match="length 31"):
        parse_dirtree(data)


@pytest.mark.parametrize("mode", [0o100755, 0o40755 | 0o200000])
def test_dirmeta_must_be_a_directory_with_valid_bits(mode: int) -> None:
    with pytest.raises(CorruptObjectError):
        parse_dirmeta(struct.pack(">III", 0, 0, mode))
