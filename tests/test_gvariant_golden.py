"""The GVariant codec against golden vectors that GLib wrote (fixtures/gvariant-golden.json).

Regenerate the vectors with ``/usr/bin/python3 fixtures/glib_oracle.py --golden
fixtures/gvariant-golden.json``.  These tests need no GLib at run time.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from libpyostree.errors import GVariantError
from libpyostree.gvariant import decode, encode
from tests.glib import assert_same_value, from_tagged

GOLDEN_PATH = Path(__file__).resolve().parent.parent / "fixtures" / "gvariant-golden.json"
CASES: list[dict[str, Any]] = json.loads(GOLDEN_PATH.read_text(encoding="ascii"))


def case_id(index: int, case: dict[str, Any]) -> str:
    t = case["type"]
    h = case["hex"]
    return f"{index}-{t[:40]}:{h[:24]}" + ("..." if len(h) > 24 else "")


NORMAL = [pytest.param(c, id=case_id(i, c)) for i, c in enumerate(CASES) if c.get("normal", True)]
NON_NORMAL = [
    pytest.param(c, id=case_id(i, c)) for i, c in enumerate(CASES) if not c.get("normal", True)
]


def hexdiff(actual: bytes, expected: bytes) -> str:
    at = next(
        (i for i, (a, e) in enumerate(zip(actual, expected, strict=False)) if a != e),
        min(len(actual), len(expected)),
    )
    return (
        f"first difference at byte {at} (lengths {len(actual)} vs {len(expected)}):\n"
        f"  got      {actual[max(0, at - 8) : at + 24].hex()}\n"
        f"  expected {expected[max(0, at - 8) : at + 24].hex()}"
    )


def test_golden_file_covers_the_contract() -> None:
    types = {c["type"] for c in CASES}
    for t in [*"bynqiuxthdsog", "v", "()", "a{sv}", "mms", "(a{sv}aya(say)sstayay)"]:
        assert t in types
    non_normal = [c for c in CASES if not c.get("normal", True)]
    assert len(non_normal) >= 50
    assert all(c["hex"] != c["normal_form_hex"] for c in non_normal)


@pytest.mark.parametrize("case", NORMAL)
def test_encode_matches_glib(case: dict[str, Any]) -> None:
    t = case["type"]
    expected = bytes.fromhex(case["hex"])
    actual = encode(t, from_tagged(t, case["value"]))
    assert actual == expected, f"encode({t!r}): {hexdiff(actual, expected)}"


@pytest.mark.parametrize("case", NORMAL)
def test_decode_strict(case: dict[str, Any]) -> None:
    t = case["type"]
    assert_same_value(t, decode(t, bytes.fromhex(case["hex"])), from_tagged(t, case["value"]))


@pytest.mark.parametrize("case", NORMAL)
def test_decode_lenient_of_normal_data(case: dict[str, Any]) -> None:
    t = case["type"]
    value = decode(t, bytes.fromhex(case["hex"]), strict=False)
    assert_same_value(t, value, from_tagged(t, case["value"]))


@pytest.mark.parametrize("case", NON_NORMAL)
def test_strict_rejects_non_normal(case: dict[str, Any]) -> None:
    t = case["type"]
    data = bytes.fromhex(case["hex"])
    with pytest.raises(GVariantError) as excinfo:
        decode(t, data)
    offset = excinfo.value.offset
    assert type(offset) is int, f"offset {offset!r} is not an int"
    assert 0 <= offset <= len(data), f"offset {offset} outside [0, {len(data)}]"


@pytest.mark.parametrize("case", NON_NORMAL)
def test_lenient_reads_like_glib(case: dict[str, Any]) -> None:
    t = case["type"]
    value = decode(t, bytes.fromhex(case["hex"]), strict=False)
    assert_same_value(t, value, from_tagged(t, case["value"]))


@pytest.mark.parametrize("case", NON_NORMAL)
def test_lenient_value_encodes_to_glib_normal_form(case: dict[str, Any]) -> None:
    t = case["type"]
    value = decode(t, bytes.fromhex(case["hex"]), strict=False)
    expected = bytes.fromhex(case["normal_form_hex"])
    actual = encode(t, value)
    assert actual == expected, f"encode({t!r}, lenient value): {hexdiff(actual, expected)}"
