"""Hand-tuned GVariant framing for OSTree's alignment-1 arrays of tuples.

OSTree's hot layouts (``a(say)``, ``a(sayay)``, ``a(ayay)``) are arrays of
variable-size, alignment-1 elements, so there is never padding: an element is
its members back to back followed by its own framing offsets.  These helpers
read them with ``struct``/slicing and check every normal-form rule inline
(minimal offset widths, ordered offsets, NUL-terminated UTF-8 strings), so that
a strict fast read succeeds exactly when the generic strict decoder would.
Every helper raises :class:`GVariantError` on bad framing and never reads
outside ``[start, end)``.
"""

from __future__ import annotations

import struct

from ..errors import GVariantError
from ..gvariant import offset_size, offset_width

_FMT = {1: "B", 2: "H", 4: "I", 8: "Q"}


def array_ends(buf: bytes, start: int, end: int) -> tuple[int, ...]:
    """The framing offsets (relative element ends) of a normal-form array of
    variable-size, alignment-1 elements; the caller checks they do not decrease."""
    size = end - start
    if size == 0:
        return ()
    w = offset_size(size)
    last = int.from_bytes(buf[end - w : end], "little")
    if last > size or (size - last) % w:
        raise GVariantError("array framing offset out of range", end - w)
    n = (size - last) // w
    if n == 0 or offset_width(last, n) != w:
        raise GVariantError("array framing offsets are not minimal", end - w)
    ends: tuple[int, ...] = struct.unpack_from(f"<{n}{_FMT[w]}", buf, start + last)
    return ends


def array_bounds(buf: bytes, start: int, end: int) -> list[tuple[int, int]]:
    """Element bounds of a normal-form array of variable-size, alignment-1 elements."""
    bounds: list[tuple[int, int]] = []
    prev = start
    for rel in array_ends(buf, start, end):
        e = start + rel
        if e < prev:
            raise GVariantError("array framing offsets out of order", prev)
        bounds.append((prev, e))
        prev = e
    return bounds


def split_pair(buf: bytes, s: int, e: int) -> int:
    """For a 2-member tuple element (first member variable-size, second last), the end
    of the first member; checks the element's single offset is minimal and in range."""
    size = e - s
    if size == 0:
        return s  # GLib: zero bytes are the normal form of two empty members
    w = offset_size(size)
    mid = buf[e - 1] if w == 1 else int.from_bytes(buf[e - w : e], "little")
    if mid > size - w or offset_width(size - w, 1) != w:
        raise GVariantError("tuple element offset out of range or not minimal", e - w)
    return s + mid


def split_triple(buf: bytes, s: int, e: int) -> tuple[int, int, int]:
    """For a 3-member tuple element of alignment-1 variable-size members (``(sayay)``):
    the ends of members 0 and 1 and the start of the offset table."""
    size = e - s
    w = offset_size(size)
    if size < 2 * w or w == 0:
        raise GVariantError("tuple element too short for its offsets", s)
    body = size - 2 * w
    end0 = int.from_bytes(buf[e - w : e], "little")
    end1 = int.from_bytes(buf[e - 2 * w : e - w], "little")
    if not end0 <= end1 <= body or offset_width(body, 2) != w:
        raise GVariantError("tuple element offsets out of order, range, or not minimal", e - w)
    return s + end0, s + end1, s + body


def c_string(buf: bytes, s: int, e: int) -> str:
    """A normal-form ``s`` occupying ``[s, e)``."""
    if e <= s or buf[e - 1] != 0:
        raise GVariantError("string has no terminating NUL", max(s, e - 1))
    raw = buf[s : e - 1]
    if b"\0" in raw:
        raise GVariantError("string contains an interior NUL", s + raw.index(b"\0"))
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise GVariantError("string is not valid UTF-8", s + exc.start) from None


def frame_array(elements: list[bytes]) -> bytes:
    """Serialize an array of variable-size, alignment-1 elements."""
    if not elements:
        return b""
    body = b"".join(elements)
    ends = []
    pos = 0
    for element in elements:
        pos += len(element)
        ends.append(pos)
    w = offset_width(len(body), len(ends))
    return body + struct.pack(f"<{len(ends)}{_FMT[w]}", *ends)


def frame_pair(first: bytes, second: bytes) -> bytes:
    """Serialize a tuple ``(AB)`` whose members are alignment-1, A variable-size, B last."""
    body_len = len(first) + len(second)
    w = offset_width(body_len, 1)
    return first + second + len(first).to_bytes(w, "little")


def encode_xattrs(
    xattrs: tuple[tuple[bytes, bytes], ...] | list[tuple[bytes, bytes]], *, sort: bool = True
) -> bytes:
    """``a(ayay)`` (names include their trailing NUL), sorted by name unless ``sort=False``
    (re-hashing a stored file header keeps its order, as ostree 2022.7 does)."""
    pairs = sorted(xattrs) if sort else xattrs
    return frame_array([frame_pair(name, value) for name, value in pairs])


def parse_xattrs(buf: bytes, start: int, end: int) -> tuple[tuple[bytes, bytes], ...]:
    out = []
    for s, e in array_bounds(buf, start, end):
        mid = split_pair(buf, s, e)
        out.append((buf[s:mid], buf[mid : e - offset_size(e - s)]))
    return tuple(out)
