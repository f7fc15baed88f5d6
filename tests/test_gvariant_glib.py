"""Property tests: the GVariant codec against GLib itself (through the ``glib`` fixture).

(a) For random definite types and values, ``encode`` writes GLib's bytes and ``decode``
    reads them back.
(b) For random types and random or mutated bytes, ``decode(strict=True)`` accepts exactly
    what GLib calls normal form, raising only GVariantError otherwise, and
    ``decode(strict=False)`` never raises and reads the value GLib reads.
"""

from __future__ import annotations

import functools
import os
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, event, given, settings
from hypothesis import strategies as st

from libpyostree.errors import GVariantError
from libpyostree.gvariant import Just, Variant, decode, encode
from tests.glib import (
    INT_RANGES,
    GLibOracle,
    canonical,
    from_tagged,
    has_duplicate_keys,
    members,
    value_diff,
)

pytestmark = pytest.mark.glib

#: GVARIANT_GLIB_EXAMPLES=5000 for a longer local hunt; CI runs the default.
MAX_EXAMPLES = int(os.environ.get("GVARIANT_GLIB_EXAMPLES", "300"))

SETTINGS = settings(
    max_examples=MAX_EXAMPLES,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)

BASIC = "bynqiuxthdsog"
MAX_TYPE_LENGTH = 40


# --- strategies ---------------------------------------------------------------------


@functools.cache
def type_strings(depth: int = 5, *, maybe: bool = True) -> st.SearchStrategy[str]:
    """Definite type strings nested at most ``depth`` deep (``maybe=False``: no ``m``,
    as in a ``g`` signature)."""
    leaf = st.sampled_from([*BASIC, "v"])
    if depth <= 1:
        return leaf
    sub = type_strings(depth - 1, maybe=maybe)
    key = st.sampled_from(list(BASIC))
    containers = [
        sub.map(lambda t: "a" + t),
        st.lists(sub, max_size=3).map(lambda ts: "(" + "".join(ts) + ")"),
        st.tuples(key, sub).map(lambda kv: "a{" + kv[0] + kv[1] + "}"),
        st.tuples(key, sub).map(lambda kv: "{" + kv[0] + kv[1] + "}"),
    ]
    if maybe:
        containers.append(sub.map(lambda t: "m" + t))
    return st.one_of(leaf, leaf, leaf, *containers).filter(lambda t: len(t) <= MAX_TYPE_LENGTH)


PATH_ELEMENT = st.text(
    alphabet="abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_",
    min_size=1,
    max_size=6,
)
OBJECT_PATHS = st.lists(PATH_ELEMENT, max_size=3).map(lambda parts: "/" + "/".join(parts))
SIGNATURES = st.lists(type_strings(3, maybe=False), max_size=3).map("".join)
STRINGS = st.text(alphabet=st.characters(codec="utf-8", exclude_characters="\x00"), max_size=8)
FLOATS = st.floats(allow_nan=False, allow_infinity=False)


@functools.cache
def values(type_string: str) -> st.SearchStrategy[Any]:
    """Python values of ``type_string``, in the form ``encode`` accepts."""
    t = type_string
    c = t[0]
    if c == "b":
        return st.booleans()
    if c in INT_RANGES:
        lo, hi = INT_RANGES[c]
        return st.one_of(st.sampled_from([lo, hi, 0]), st.integers(lo, hi))
    if c == "d":
        return FLOATS
    if c == "s":
        return STRINGS
    if c == "o":
        return OBJECT_PATHS
    if c == "g":
        return SIGNATURES
    if c == "v":
        return type_strings(3).flatmap(lambda vt: values(vt).map(lambda x: Variant(vt, x)))
    if c == "m":
        elem = t[1:]
        just = values(elem)
        if elem[0] == "m":
            return st.none() | just.map(Just)
        # encode also accepts an explicit Just for any maybe
        return st.none() | just | just.map(Just)
    if c == "a":
        elem = t[1:]
        if elem == "y":
            return st.binary(max_size=8)
        if elem[0] == "{":
            ktype, vtype = members(elem)
            return st.lists(
                st.tuples(values(ktype), values(vtype)), max_size=3, unique_by=lambda kv: kv[0]
            ).map(dict)
        return st.lists(values(elem), max_size=3)
    if c in "({":
        return st.tuples(*[values(m) for m in members(t)])
    raise ValueError(f"unsupported type string {t!r}")


TYPED_VALUES = type_strings().flatmap(lambda t: st.tuples(st.just(t), values(t)))


def positions(size: int) -> st.SearchStrategy[int]:
    """Byte positions in ``range(size)``, often near the end where framing offsets live."""
    return st.integers(0, size - 1) | st.integers(max(0, size - 4), size - 1)


@st.composite
def mutated(draw: st.DrawFn, data: bytes) -> bytes:
    """``data`` with one to three bytes flipped, inserted or deleted."""
    buf = bytearray(data)
    for op in draw(st.lists(st.sampled_from(["flip", "insert", "delete"]), min_size=1, max_size=3)):
        if op == "insert" or not buf:
            buf.insert(draw(st.integers(0, len(buf))), draw(st.integers(0, 255)))
        elif op == "flip":
            buf[draw(positions(len(buf)))] ^= draw(st.integers(1, 255))
        else:
            del buf[draw(positions(len(buf)))]
    return bytes(buf)


# --- helpers ------------------------------------------------------------------------


def describe(type_string: str, data: bytes) -> str:
    return f"type {type_string!r}, data {data.hex() or '(empty)'}"


def check_against_glib(glib: GLibOracle, type_string: str, data: bytes) -> None:
    t = type_string
    glib_read = glib.read_full(t, data)
    normal, tagged = glib_read.normal, glib_read.tagged
    what = describe(t, data)
    glib_says = f"GLib: normal={normal}, normal form {glib_read.normal_form.hex() or '(empty)'}"

    strict_value: Any = None
    rejection = ""
    try:
        strict_value = decode(t, data)
        accepted = True
    except GVariantError as e:
        accepted = False
        assert type(e.offset) is int and 0 <= e.offset <= len(data), (
            f"{what}: GVariantError offset {e.offset!r} outside [0, {len(data)}]"
        )
        rejection = f"we raise GVariantError: {e}"
    except Exception as e:
        pytest.fail(f"{what}: strict decode raised {type(e).__name__}: {e}")
    if accepted != normal:
        ours = "we accept it" if accepted else rejection
        pytest.fail(f"{what}: {glib_says}; strict decode disagrees: {ours}")

    try:
        lenient_value = decode(t, data, strict=False)
    except Exception as e:
        pytest.fail(f"{what}: lenient decode raised {type(e).__name__}: {e}")

    event(f"GLib: {'normal' if normal else 'not normal'}")
    duplicates = has_duplicate_keys(t, tagged)
    if duplicates:
        event("GLib's value has duplicate dict keys")
    assume(not duplicates)  # a Python dict cannot hold them
    expected = from_tagged(t, tagged)
    diff = value_diff(t, lenient_value, expected)
    assert diff is None, f"{what}: lenient value differs from GLib's: {diff}"
    if accepted:
        diff = value_diff(t, strict_value, expected)
        assert diff is None, f"{what}: strict value differs from GLib's: {diff}"
    try:
        ours_normal = encode(t, lenient_value)
    except Exception as e:
        pytest.fail(f"{what}: encode of the lenient value raised {type(e).__name__}: {e}")
    # GLib's serializer, not get_normal_form(): GLib calls some bytes normal that it would
    # never write, e.g. b"" as (ayay) (a zero-size container has zero-width offsets).
    assert ours_normal == glib_read.canonical, (
        f"{what}: encode(lenient value) = {ours_normal.hex()}, GLib writes "
        f"{glib_read.canonical.hex()} (its get_normal_form: {glib_read.normal_form.hex()})"
    )


# --- (a) encoding -------------------------------------------------------------------


@SETTINGS
@given(typed_value=TYPED_VALUES)
def test_encode_matches_glib(glib: GLibOracle, typed_value: tuple[str, Any]) -> None:
    t, value = typed_value
    theirs = glib.encode(t, value)
    ours = encode(t, value)
    assert ours == theirs, f"encode({t!r}, {value!r}) = {ours.hex()}, GLib: {theirs.hex()}"
    back = decode(t, ours)
    diff = value_diff(t, back, canonical(t, value))
    assert diff is None, f"decode({t!r}, {ours.hex()}) does not round-trip: {diff}"


# --- (b) decoding arbitrary bytes ---------------------------------------------------


@SETTINGS
@given(type_string=type_strings(), data=st.binary(max_size=64))
def test_decode_random_bytes_like_glib(glib: GLibOracle, type_string: str, data: bytes) -> None:
    check_against_glib(glib, type_string, data)


@SETTINGS
@given(typed_value=TYPED_VALUES, data=st.data())
def test_decode_mutated_bytes_like_glib(
    glib: GLibOracle, typed_value: tuple[str, Any], data: st.DataObject
) -> None:
    t, value = typed_value
    valid = glib.encode(t, value)
    check_against_glib(glib, t, data.draw(mutated(valid), label="mutated"))


@SETTINGS
@given(
    type_string=type_strings(3),
    data=st.data(),
)
def test_decode_mutated_long_arrays_like_glib(
    glib: GLibOracle, type_string: str, data: st.DataObject
) -> None:
    # Long enough (often > 255 bytes) for 2-byte framing offsets.
    t = "a" + type_string
    items = data.draw(st.lists(values(type_string), min_size=20, max_size=80), label="items")
    value: Any = items
    if type_string == "y":
        value = bytes(items)
    elif type_string[0] == "{":
        value = dict(items)
        assume(len(value) == len(items))
    valid = glib.encode(t, value)
    event(f"encoded size > 255: {len(valid) > 255}")
    check_against_glib(glib, t, data.draw(mutated(valid), label="mutated"))


# --- the oracle itself --------------------------------------------------------------


def test_oracle_sanity(glib: GLibOracle) -> None:
    assert glib.encode("s", "a") == b"a\x00"
    assert glib.encode("mms", Just(None)) == b"\x00"
    assert glib.encode("v", Variant("d", -0.0)) == bytes(7) + b"\x80\x00d"
    assert glib.read("b", b"\x02") == (False, b"\x01", True)
    assert glib.read("ay", b"\x00\x01") == (True, b"\x00\x01", b"\x00\x01")
