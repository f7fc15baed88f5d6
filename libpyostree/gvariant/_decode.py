"""GVariant deserialization, strict (normal form only) or lenient (GLib's recovery).

Both modes read the same layout; they differ only in what happens when the bytes
are not in normal form:

- ``strict=True`` is a port of ``g_variant_serialised_is_normal()``: the first
  violation raises :class:`GVariantError` with the absolute offset where it was
  found.  Strict decoding of any byte string succeeds exactly when GLib 2.74
  considers it normal form.
- ``strict=False`` is a port of GLib's child accessors (``gvs_*_get_child``):
  framing that does not make sense yields the type's default value (zero, empty,
  ``""``, ``"/"`` for object paths, ``()`` for variants), including GLib's
  ordered-offset rules from the CVE-2023-29499/32665 fixes.  It never raises on
  data; only an invalid type string raises.

Every read is bounds-checked against the enclosing container, so hostile input
can only produce :class:`GVariantError` (or a default value when lenient).
All positions are absolute offsets into one ``bytes`` buffer: each container
starts at a multiple of its alignment, so aligning absolute offsets is the same
as aligning offsets relative to the container.
"""

from __future__ import annotations

import struct
from typing import Any

from ..errors import GVariantError
from ._encode import offset_width
from ._types import MAX_DEPTH, Ending, GVType, parse_type
from ._validate import is_object_path, is_signature
from ._values import Just, Variant

_INF = 1 << 80
_SCALAR = {
    "y": struct.Struct("<B"),
    "n": struct.Struct("<h"),
    "q": struct.Struct("<H"),
    "i": struct.Struct("<i"),
    "h": struct.Struct("<i"),
    "u": struct.Struct("<I"),
    "x": struct.Struct("<q"),
    "t": struct.Struct("<Q"),
    "d": struct.Struct("<d"),
}
_ARRAY_CODES = {"n": "h", "q": "H", "i": "i", "h": "i", "u": "I", "x": "q", "t": "Q", "d": "d"}


def offset_size(size: int) -> int:
    """Framing offset width for a container of ``size`` bytes (gvs_get_offset_size)."""
    if size > 0xFFFFFFFF:
        return 8
    if size > 0xFFFF:
        return 4
    if size > 0xFF:
        return 2
    return 1 if size > 0 else 0


def _calc_total(body: int, n: int) -> int:
    return body + offset_width(body, n) * n


class _Reader:
    __slots__ = ("buf", "strict")

    def __init__(self, buf: bytes, strict: bool) -> None:
        self.buf = buf
        self.strict = strict

    # -- helpers -----------------------------------------------------------------

    def _le(self, pos: int, width: int) -> int:
        return int.from_bytes(self.buf[pos : pos + width], "little")

    def default(self, t: GVType) -> Any:
        """The value GLib reads from a child whose framing is invalid."""
        if t.fixed_size:
            return _Reader(bytes(t.fixed_size), False).read(t, 0, t.fixed_size, 0)
        code = t.code
        if code in {"s", "g"}:
            return ""
        if code == "o":
            return "/"
        if code == "v":
            return Variant("()", ())
        if code == "m":
            return None
        if code == "a":
            element = t.element.code
            return b"" if element == "y" else {} if element == "{" else []
        return tuple(self.default(child) for child in t.children)

    def _bad(self, message: str, offset: int) -> GVariantError:
        return GVariantError(message, offset)

    # -- dispatch ------------------------------------------------------------------

    def read(self, t: GVType, start: int, end: int, depth: int) -> Any:
        strict = self.strict
        if strict and depth >= MAX_DEPTH:
            raise self._bad("value nested too deeply", start)
        size = end - start
        code = t.code
        if t.fixed_size and size != t.fixed_size:
            if strict:
                raise self._bad(f"{t.string!r} needs {t.fixed_size} bytes, got {size}", start)
            return self.default(t)
        scalar = _SCALAR.get(code)
        if scalar is not None:
            return scalar.unpack_from(self.buf, start)[0]
        if code == "b":
            byte = self.buf[start]
            if strict and byte > 1:
                raise self._bad(f"boolean byte {byte} is not 0 or 1", start)
            return byte != 0
        if code in "sog":
            return self._string(t, start, end)
        if code == "a":
            return self._array(t, start, end, depth)
        if code in "({":
            if strict:
                return self._tuple_strict(t, start, end, depth)
            return self._tuple_lenient(t, start, end, depth)
        if code == "m":
            return self._maybe(t, start, end, depth)
        if code == "v":
            return self._variant(start, end, depth)
        raise self._bad(f"cannot decode type {t.string!r}", start)  # pragma: no cover

    # -- leaves --------------------------------------------------------------------

    def _string(self, t: GVType, start: int, end: int) -> str:
        buf = self.buf
        problem: tuple[str, int] | None = None
        text = ""
        if end == start:
            problem = ("string has no terminating NUL", start)
        elif buf[end - 1] != 0:
            problem = ("string has no terminating NUL", end - 1)
        else:
            nul = buf.find(b"\0", start, end - 1)
            if nul != -1:
                problem = ("string contains an interior NUL", nul)
            else:
                raw = buf[start : end - 1]
                try:
                    text = raw.decode("utf-8")
                except UnicodeDecodeError as exc:
                    problem = ("string is not valid UTF-8", start + exc.start)
                else:
                    if t.code == "o" and not is_object_path(raw):
                        problem = (f"invalid object path {text!r:.60}", start)
                    elif t.code == "g" and not is_signature(raw):
                        problem = (f"invalid signature {text!r:.60}", start)
        if problem is None:
            return text
        if self.strict:
            raise self._bad(*problem)
        return "/" if t.code == "o" else ""

    def _variant(self, start: int, end: int, depth: int) -> Variant:
        buf = self.buf
        nul = buf.rfind(b"\0", start, end)
        child: GVType | None = None
        if nul != -1:
            try:
                child = parse_type(buf[nul + 1 : end].decode("ascii"))
            except (GVariantError, UnicodeDecodeError):
                child = None
            if child is not None and (
                (child.fixed_size and child.fixed_size != nul - start)
                or depth >= MAX_DEPTH - child.depth
            ):
                child = None
        if child is None:
            if self.strict:
                raise self._bad("variant has no valid type string", start if nul == -1 else nul)
            return Variant("()", ())
        return Variant(child.string, self.read(child, start, nul, depth + 1))

    def _maybe(self, t: GVType, start: int, end: int, depth: int) -> Any:
        if end == start:
            return None
        element = t.element
        if element.fixed_size:
            if end - start != element.fixed_size:
                if self.strict:
                    raise self._bad(f"maybe of {element.string!r} has wrong size", start)
                return None
            value = self.read(element, start, end, depth + 1)
        else:
            if self.strict and self.buf[end - 1] != 0:
                raise self._bad("maybe does not end in a zero byte", end - 1)
            value = self.read(element, start, end - 1, depth + 1)
        return Just(value) if element.code == "m" else value

    # -- arrays --------------------------------------------------------------------

    def _empty(self, t: GVType) -> Any:
        element = t.element.code
        return b"" if element == "y" else {} if element == "{" else []

    def _array(self, t: GVType, start: int, end: int, depth: int) -> Any:
        size = end - start
        element = t.element
        if size == 0:
            return self._empty(t)
        if element.fixed_size:
            return self._fixed_array(t, start, end, depth)
        strict = self.strict
        width = offset_size(size)
        last_end = self._le(end - width, width)
        problem = None
        if last_end > size:
            problem = "array framing offset beyond the array"
        elif (size - last_end) % width:
            problem = "array offset table has a partial entry"
        elif size == last_end:
            problem = "array has data but no offsets"
        elif strict and _calc_total(last_end, (size - last_end) // width) != size:
            # Only normal form needs minimal offsets; GLib's reader accepts wider ones.
            problem = "array framing offsets are wider than needed"
        if problem is not None:
            if strict:
                raise self._bad(problem, end - width)
            return self._empty(t)
        n = (size - last_end) // width
        table = start + last_end
        fmt = {1: "B", 2: "H", 4: "I", 8: "Q"}[width]
        ends = struct.unpack_from(f"<{n}{fmt}", self.buf, table)
        mask = element.align_mask
        items: list[Any] = []
        buf = self.buf
        if strict:
            read = self._entry_sv if element.string == "{sv}" else self.read
            prev = 0
            for k, rel_end in enumerate(ends):
                if rel_end < prev or rel_end > last_end:
                    raise self._bad("array framing offset out of order or range", table + k * width)
                pos = prev
                while pos & mask:
                    if pos >= rel_end or buf[start + pos] != 0:
                        raise self._bad("non-zero or missing padding", start + pos)
                    pos += 1
                items.append(read(element, start + pos, start + rel_end, depth + 1))
                prev = rel_end
        else:
            unordered = n
            for k in range(1, n):
                if ends[k] < ends[k - 1]:
                    unordered = k
                    break
            for k in range(n):
                rel_start = 0 if k == 0 else (ends[k - 1] + mask) & ~mask
                rel_end = ends[k]
                if k < unordered and rel_start < rel_end <= last_end:
                    items.append(self.read(element, start + rel_start, start + rel_end, depth + 1))
                else:
                    items.append(self.default(element))
        if element.code == "{":
            return dict(items)
        return items

    def _fixed_array(self, t: GVType, start: int, end: int, depth: int) -> Any:
        element = t.element
        elem_size = element.fixed_size
        size = end - start
        if size % elem_size:
            if self.strict:
                raise self._bad(f"array size {size} is not a multiple of {elem_size}", start)
            return self._empty(t)
        n = size // elem_size
        code = element.code
        if code == "y":
            return self.buf[start:end]
        fmt = _ARRAY_CODES.get(code)
        if fmt is not None:
            return list(struct.unpack_from(f"<{n}{fmt}", self.buf, start))
        if code == "b":
            raw = self.buf[start:end]
            if self.strict:
                for k, byte in enumerate(raw):
                    if byte > 1:
                        raise self._bad(f"boolean byte {byte} is not 0 or 1", start + k)
            return [byte != 0 for byte in raw]
        items = [
            self.read(element, start + k * elem_size, start + (k + 1) * elem_size, depth + 1)
            for k in range(n)
        ]
        if code == "{":
            return dict(items)
        return items

    # -- tuples and dict entries ---------------------------------------------------

    def _entry_sv(self, t: GVType, start: int, end: int, depth: int) -> tuple[Any, ...]:
        """Strict ``{sv}`` (OSTree metadata): the common normal case read directly;
        anything unusual goes through the generic reader, which reports it."""
        size = end - start
        buf = self.buf
        if 0 < size <= 0xFF and depth < MAX_DEPTH:
            key_end = start + buf[end - 1]
            value_start = (key_end + 7) & ~7
            if (
                start < key_end <= value_start < end - 1
                and buf[key_end - 1] == 0
                and not any(buf[key_end:value_start])
            ):
                raw = buf[start : key_end - 1]
                if 0 not in raw:
                    try:
                        key = raw.decode("utf-8")
                    except UnicodeDecodeError:
                        pass
                    else:
                        return key, self._variant(value_start, end - 1, depth + 1)
        return self._tuple_strict(t, start, end, depth)

    def _tuple_strict(self, t: GVType, start: int, end: int, depth: int) -> tuple[Any, ...]:
        # Port of gvs_tuple_is_normal(): walk forwards through the members and
        # backwards through the offset table; they must meet exactly.
        buf = self.buf
        size = end - start
        width = offset_size(size)
        offset_ptr = size
        offset = 0
        values: list[Any] = []
        for member in t.members:
            mt = member.type
            while offset & mt.align_mask:
                if offset >= size or buf[start + offset] != 0:
                    raise self._bad("non-zero or missing padding", start + min(offset, size))
                offset += 1
            if member.ending is Ending.FIXED:
                rel_end = offset + mt.fixed_size
            elif member.ending is Ending.LAST:
                rel_end = offset_ptr
            else:
                if offset_ptr < width:
                    raise self._bad("tuple offset table overlaps its members", start)
                offset_ptr -= width
                if offset_ptr < offset:
                    raise self._bad("tuple offset table overlaps its members", start + offset_ptr)
                rel_end = self._le(start + offset_ptr, width)
            if rel_end < offset or rel_end > offset_ptr:
                raise self._bad("tuple framing offset out of order or range", start + offset_ptr)
            values.append(self.read(mt, start + offset, start + rel_end, depth + 1))
            offset = rel_end
        if t.fixed_size:
            if not t.members:
                if buf[start] != 0:
                    raise self._bad("unit value is not a zero byte", start)
                offset = 1
            while offset & t.align_mask:
                if buf[start + offset] != 0:
                    raise self._bad("non-zero padding", start + offset)
                offset += 1
        if offset != offset_ptr:
            raise self._bad("tuple has bytes between its members and its offsets", start + offset)
        if width and _calc_total(offset, (size - offset_ptr) // width) != size:
            raise self._bad("tuple framing offsets are wider than needed", start + offset_ptr)
        return tuple(values)

    def _bounds(self, t: GVType, k: int, start: int, size: int, width: int) -> tuple[int, int]:
        # gvs_tuple_get_member_bounds(), relative to the tuple start.
        member = t.members[k]
        i = member.i
        if i + 1 and width * (i + 1) <= size:
            base = self._le(start + size - width * (i + 1), width)
        else:
            base = 0
        rel_start = ((base + member.a) & member.b) | member.c
        if member.ending is Ending.LAST and width * (i + 1) <= size:
            rel_end = size - width * (i + 1)
        elif member.ending is Ending.FIXED:
            rel_end = rel_start + member.type.fixed_size
        elif member.ending is Ending.OFFSET and width * (i + 2) <= size:
            rel_end = self._le(start + size - width * (i + 2), width)
        else:
            rel_end = _INF
        return rel_start, rel_end

    def _tuple_lenient(self, t: GVType, start: int, end: int, depth: int) -> tuple[Any, ...]:
        # Port of gvs_tuple_get_child(), including its ordered-offsets bookkeeping.
        members = t.members
        n = len(members)
        if n == 0:
            return ()
        size = end - start
        width = offset_size(size)
        bounds = [self._bounds(t, k, start, size, width) for k in range(n)]
        ordered_up_to = n - 1
        prev_end = 0
        for k, (rel_start, rel_end) in enumerate(bounds):
            if rel_start > rel_end or rel_start < prev_end or rel_end > size:
                # GLib stores k - 1 in a gsize: failing at member 0 wraps to "all ordered".
                ordered_up_to = k - 1 if k else _INF
                break
            prev_end = rel_end
        last_end = bounds[-1][1]
        values: list[Any] = []
        for k, member in enumerate(members):
            rel_start, rel_end = bounds[k]
            need = member.i + (2 if member.ending is Ending.OFFSET else 1)
            if (
                k <= ordered_up_to
                and width * need <= size
                and rel_start < rel_end <= size
                and rel_end <= last_end
            ):
                values.append(self.read(member.type, start + rel_start, start + rel_end, depth + 1))
            else:
                values.append(self.default(member.type))
        return tuple(values)


def decode(type_string: str, data: bytes | bytearray | memoryview, *, strict: bool = True) -> Any:
    """Deserialize ``data`` as ``type_string``.

    With ``strict=True`` (the default) data that is not in normal form raises
    :class:`GVariantError` carrying the offset of the first problem; with
    ``strict=False`` GLib's recovery rules give a value for any bytes.
    """
    t = parse_type(type_string)
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise GVariantError(f"data must be bytes-like, not {type(data).__name__}")
    buf = bytes(data)
    return _Reader(buf, strict).read(t, 0, len(buf), 0)


def is_normal_form(type_string: str, data: bytes | bytearray | memoryview) -> bool:
    """True when ``data`` is the normal form of some value of ``type_string``."""
    try:
        decode(type_string, data, strict=True)
    except GVariantError:
        return False
    return True
