"""Name validation as ostree does it on pull."""

from __future__ import annotations

import pytest

from libpyostree.errors import InvalidNameError
from libpyostree.names import validate_checksum, validate_filename, validate_rev


@pytest.mark.parametrize(
    "ref", ["main", "fedora/x86_64/iot", "a-b.c_d", "ünï/cödé", "1", "x/y.z-1"]
)
def test_valid_refs(ref: str) -> None:
    assert validate_rev(ref) == ref


@pytest.mark.parametrize(
    "ref",
    ["", "/main", "main/", "a//b", "-x", ".hidden", "a/.b", "a b", "a:b", "a\nb", "a/../b", "x*"],
)
def test_invalid_refs(ref: str) -> None:
    with pytest.raises(InvalidNameError):
        validate_rev(ref)


def test_checksums_must_be_64_lowercase_hex() -> None:
    good = "0123456789abcdef" * 4
    assert validate_checksum(good) == good
    for bad in (good.upper(), good[:-1], good + "0", "g" * 64, ""):
        with pytest.raises(InvalidNameError):
            validate_checksum(bad)


@pytest.mark.parametrize("name", [".", "..", "a/b", "", "a\0b", b"\xff\xfe"])
def test_invalid_file_names(name: str | bytes) -> None:
    with pytest.raises(InvalidNameError):
        validate_filename(name)


def test_valid_file_names() -> None:
    assert validate_filename("...") == "..."
    assert validate_filename(".bashrc") == ".bashrc"
    assert validate_filename("ünï".encode()) == "ünï"
