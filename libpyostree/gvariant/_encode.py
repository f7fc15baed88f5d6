"""GVariant serialization to normal form.

Serialization is bottom-up: a child's bytes do not depend on where the child
sits, because every container starts at a multiple of its own alignment and
offsets are relative to the container.  So each container pads, appends the
children's bytes and finally its framing offsets, whose width is the smallest
that fits (the only choice that is normal form).
"""

from __future__ import annotations

import math
import struct
from collections.abc import Mapping
from typing import Any

from ..errors import GVariantError
from ._types import GVType, parse_type
from ._validate import is_object_path, is_signature
from ._values import Just, Variant

_INT_FORMATS: dict[str, tuple[str, int, int]] = {
    "y": ("<B", 0, 0xFF),
    "n": ("<h", -(2**15), 2**15 - 1),
    "q": ("<H", 0, 2**16 - 1),
    "i": ("<i", -(2**31), 2**31 - 1),
    "h": ("<i", -(2**31), 2**31 - 1),
    "u": ("<I", 0, 2**32 - 1),
    "x": ("<q", -(2**63), 2**63 - 1),
    "t": ("<Q", 0, 2**64 - 1),
}
_OFFSET_FORMATS = {1: "B", 2: "H", 4: "I", 8: "Q"}


def offset_width(body_size: int, n_offsets: int) -> int:
    """The normal-form framing offset width (gvs_calculate_total_size)."""
    if body_size + n_offsets <= 0xFF:
        return 1
    if body_size + 2 * n_offsets <= 0xFFFF:
        return 2
    if body_size + 4 * n_offsets <= 0xFFFFFFFF:
        return 4
    return 8


def pack_offsets(body_size: int, offsets: list[int]) -> bytes:
    if not offsets:
        return b""
    width = offset_width(body_size, len(offsets))
    return struct.pack(f"<{len(offsets)}{_OFFSET_FORMATS[width]}", *offsets)


def _pad(buf: bytearray, mask: int) -> None:
    if mask:
        buf.extend(bytes(-len(buf) & mask))


def _type_error(t: GVType, value: object) -> GVariantError:
    return GVariantError(f"cannot encode {type(value).__name__} {value!r:.60} as {t.string!r}")


def _encode_str(t: GVType, value: object) -> bytes:
    if not isinstance(value, str):
        raise _type_error(t, value)
    try:
        raw = value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise GVariantError(f"string is not valid UTF-8: {exc.reason}") from None
    if b"\0" in raw:
        raise GVariantError("string contains a NUL character")
    if t.code == "o" and not is_object_path(raw):
        raise GVariantError(f"invalid object path {value!r}")
    if t.code == "g" and not is_signature(raw):
        raise GVariantError(f"invalid signature {value!r}")
    return raw + b"\0"


def encode_node(t: GVType, value: Any) -> bytes:
    code = t.code
    if code in _INT_FORMATS:
        fmt, lo, hi = _INT_FORMATS[code]
        if isinstance(value, bool) or not isinstance(value, int):
            raise _type_error(t, value)
        if not lo <= value <= hi:
            raise GVariantError(f"{value} out of range for {code!r}")
        return struct.pack(fmt, value)
    if code == "b":
        if not isinstance(value, (bool, int)) or value not in (0, 1):
            raise _type_error(t, value)
        return b"\x01" if value else b"\x00"
    if code == "d":
        if not isinstance(value, (float, int)) or isinstance(value, bool):
            raise _type_error(t, value)
        if isinstance(value, int) and not math.isfinite(float(value)):
            raise _type_error(t, value)
        return struct.pack("<d", value)
    if code in "sog":
        return _encode_str(t, value)
    if code == "v":
        if not isinstance(value, Variant):
            raise _type_error(t, value)
        child = parse_type(value.type)
        return encode_node(child, value.value) + b"\0" + child.string.encode("ascii")
    if code == "m":
        if value is None:
            return b""
        element = t.element
        if isinstance(value, Just):
            value = value.value
        # In mmT a bare value stands for Just(Just(value)): encode_node(element) wraps it again.
        data = encode_node(element, value)
        return data if element.fixed_size else data + b"\0"
    if code == "a":
        return _encode_array(t, value)
    if code in "({":
        return _encode_tuple(t, value)
    raise GVariantError(f"cannot encode type {t.string!r}")  # pragma: no cover


def _encode_array(t: GVType, value: Any) -> bytes:
    element = t.element
    if element.code == "y":
        if isinstance(value, (bytes, bytearray, memoryview)):
            return bytes(value)
        raise _type_error(t, value)
    if element.code == "{":
        if not isinstance(value, Mapping):
            raise _type_error(t, value)
        items: list[Any] = list(value.items())
    else:
        if isinstance(value, (str, bytes, Mapping)) or not hasattr(value, "__iter__"):
            raise _type_error(t, value)
        items = list(value)
    if element.code in _INT_FORMATS and items:
        fmt, lo, hi = _INT_FORMATS[element.code]
        for item in items:
            if isinstance(item, bool) or not isinstance(item, int) or not lo <= item <= hi:
                raise _type_error(element, item)
        return struct.pack(f"<{len(items)}{fmt[1]}", *items)
    buf = bytearray()
    mask = element.align_mask
    if element.fixed_size:
        for item in items:
            _pad(buf, mask)  # no-op: fixed sizes are multiples of their alignment
            buf += encode_node(element, item)
        return bytes(buf)
    ends: list[int] = []
    for item in items:
        _pad(buf, mask)
        buf += encode_node(element, item)
        ends.append(len(buf))
    return bytes(buf) + pack_offsets(len(buf), ends)


def _encode_tuple(t: GVType, value: Any) -> bytes:
    if not isinstance(value, (tuple, list)):
        raise _type_error(t, value)
    members = t.children
    if len(value) != len(members):
        raise GVariantError(f"{t.string!r} needs {len(members)} members, got {len(value)}")
    if not members:
        return b"\0"
    buf = bytearray()
    ends: list[int] = []
    last = len(members) - 1
    for k, (member, item) in enumerate(zip(members, value, strict=True)):
        _pad(buf, member.align_mask)
        buf += encode_node(member, item)
        if member.fixed_size == 0 and k != last:
            ends.append(len(buf))
    if t.fixed_size:
        buf.extend(bytes(t.fixed_size - len(buf)))
        return bytes(buf)
    ends.reverse()
    return bytes(buf) + pack_offsets(len(buf), ends)


def encode(type_string: str, value: Any) -> bytes:
    """Serialize ``value`` as ``type_string`` in GVariant normal form (little-endian)."""
    return encode_node(parse_type(type_string), value)
