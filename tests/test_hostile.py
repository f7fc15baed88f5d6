"""Hostile bytes: every parser fails with an OstreeError (or reads leniently), never
with IndexError, struct.error, UnicodeDecodeError, RecursionError or a crash."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from libpyostree.errors import OstreeError
from libpyostree.gvariant import decode
from libpyostree.objects import (
    DirTree,
    FileHeader,
    build_filez,
    filez_checksum,
    parse_commit,
    parse_commitmeta,
    parse_dirmeta,
    parse_dirtree,
    parse_summary,
    parse_tombstone,
)

SETTINGS = settings(
    max_examples=300,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)

PARSERS: list[Callable[[bytes], Any]] = [
    parse_commit,
    parse_dirtree,
    parse_dirmeta,
    parse_summary,
    parse_commitmeta,
    parse_tombstone,
    filez_checksum,
]
SEEDS = [
    DirTree((("a", "ab" * 32),), (("d", "cd" * 32, "ef" * 32),)).to_bytes(),  # type: ignore[arg-type]
    build_filez(FileHeader(0, 0, 0o100644, xattrs=((b"user.x\0", b"1"),)), b"content" * 20),
    build_filez(FileHeader(0, 0, 0o120777, "target")),
]


def _survives(parser: Callable[[bytes], Any], data: bytes) -> None:
    with contextlib.suppress(OstreeError):
        parser(data)


@pytest.mark.parametrize("parser", PARSERS, ids=lambda p: p.__name__)
@SETTINGS
@given(data=st.binary(max_size=300))
def test_random_bytes_never_escape_the_error_tree(
    parser: Callable[[bytes], Any], data: bytes
) -> None:
    _survives(parser, data)


@pytest.mark.parametrize("parser", PARSERS, ids=lambda p: p.__name__)
@SETTINGS
@given(seed=st.sampled_from(SEEDS), pos=st.integers(0, 10_000), byte=st.integers(0, 255))
def test_mutated_objects_never_escape_the_error_tree(
    parser: Callable[[bytes], Any], seed: bytes, pos: int, byte: int
) -> None:
    pos %= len(seed)
    _survives(parser, seed[:pos] + bytes([byte]) + seed[pos + 1 :])
    _survives(parser, seed[:pos])


@pytest.mark.parametrize(
    "type_string", ["v", "av", "a{sv}", "(a{sv}aya(say)sstayay)", "mmv", "a(va{sv})"]
)
@SETTINGS
@given(data=st.binary(max_size=200))
def test_lenient_decode_never_raises(type_string: str, data: bytes) -> None:
    decode(type_string, data, strict=False)
    _survives(lambda d: decode(type_string, d, strict=True), data)


def test_deeply_nested_variants_are_bounded() -> None:
    data = b""
    for _ in range(300):
        data = data + b"\0v" if data else b"\0\0y"  # v containing v containing ... a byte
    assert decode("v", data, strict=False) is not None
    with pytest.raises(OstreeError):
        decode("v", data, strict=True)


def test_non_bytes_input_is_refused() -> None:
    with pytest.raises(OstreeError):
        decode("s", 5)  # type: ignore[arg-type]
    with pytest.raises(OstreeError):
        decode("((", b"")
