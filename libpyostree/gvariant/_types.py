"""GVariant type strings: parsing and the layout facts the codec needs.

A parsed :class:`GVType` carries its alignment (as a mask, ``alignment - 1``), its
fixed size (0 for variable-size types), its nesting depth, and for tuples and
dict entries GLib's per-member framing table (``GVariantMemberInfo``).  The
member table is what makes lenient decoding agree with GLib on hostile data, so
it is computed exactly as ``gvarianttypeinfo.c`` does.

Invariants:
- Only definite types parse; ``*``, ``?``, ``r`` and unterminated strings raise
  :class:`~libpyostree.errors.GVariantError`.
- Nesting deeper than :data:`MAX_DEPTH` (GLib's ``G_VARIANT_MAX_RECURSION_DEPTH``)
  is refused, so no recursion in the codec can exceed it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum
from functools import lru_cache

from ..errors import GVariantError

MAX_DEPTH = 128
"""GLib's G_VARIANT_MAX_RECURSION_DEPTH."""

BASIC_CODES = "bynqiuxthdsog"
_FIXED_BASIC = {"b": 1, "y": 1, "n": 2, "q": 2, "i": 4, "u": 4, "h": 4, "x": 8, "t": 8, "d": 8}


class Ending(IntEnum):
    """How a tuple member's end is found (GLib's G_VARIANT_MEMBER_ENDING_*)."""

    FIXED = 0
    LAST = 1
    OFFSET = 2


@dataclass(frozen=True, slots=True)
class MemberInfo:
    """Where tuple member k starts and ends, in GLib's (i, a, b, c) encoding.

    ``start = ((base + a) & b) | c`` where ``base`` is 0 when ``i == -1`` and
    otherwise the framing offset number ``i`` counted from the end of the tuple.
    """

    type: GVType
    i: int
    a: int
    b: int
    c: int
    ending: Ending


@dataclass(frozen=True, slots=True, eq=False)
class GVType:
    """One parsed, definite GVariant type."""

    string: str
    code: str
    children: tuple[GVType, ...]
    align_mask: int
    fixed_size: int
    depth: int
    members: tuple[MemberInfo, ...] = field(default=(), repr=False)

    @property
    def element(self) -> GVType:
        return self.children[0]

    def __str__(self) -> str:
        return self.string


def _align(offset: int, mask: int) -> int:
    return (offset + mask) & ~mask


def _member_table(children: tuple[GVType, ...]) -> tuple[MemberInfo, ...]:
    # Mirrors tuple_generate_table() + tuple_table_append() in gvarianttypeinfo.c.
    infos: list[MemberInfo] = []
    i, a, b, c = -1, 0, 0, 0
    last = len(children) - 1
    for k, child in enumerate(children):
        d, e = child.align_mask, child.fixed_size
        if d <= b:
            c = _align(c, d)
        else:
            a += _align(c, b)
            b, c = d, 0
        if e:
            ending = Ending.FIXED
        elif k == last:
            ending = Ending.LAST
        else:
            ending = Ending.OFFSET
        aa = a + (c & ~b)
        infos.append(MemberInfo(child, i, aa + b, ~b, c & b, ending))
        if e == 0:
            i += 1
            a = b = c = 0
        else:
            c += e
    return tuple(infos)


def _tuple_layout(children: tuple[GVType, ...]) -> tuple[int, int]:
    """Return (align_mask, fixed_size) of a tuple with these members."""
    mask = 0
    for child in children:
        mask |= child.align_mask
    if not children:
        return 0, 1  # the unit type () is one zero byte
    offset = 0
    for child in children:
        if child.fixed_size == 0:
            return mask, 0
        offset = _align(offset, child.align_mask) + child.fixed_size
    return mask, _align(offset, mask)


class _Parser:
    __slots__ = ("pos", "text")

    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0

    def fail(self, why: str) -> GVariantError:
        return GVariantError(f"invalid type string {self.text!r}: {why}", self.pos)

    def parse(self, depth: int) -> GVType:
        text, start = self.text, self.pos
        if start >= len(text):
            raise self.fail("unexpected end")
        code = text[start]
        self.pos += 1
        if code in "am({" and depth > MAX_DEPTH:
            # GLib's type scanner allows 128 nested containers (depth_limit).
            raise self.fail("nested too deeply")
        if code in _FIXED_BASIC:
            size = _FIXED_BASIC[code]
            return GVType(code, code, (), size - 1, size, 1)
        if code in "sog":
            return GVType(code, code, (), 0, 0, 1)
        if code == "v":
            return GVType("v", "v", (), 7, 0, 1)
        if code in "am":
            child = self.parse(depth + 1)
            # Arrays and maybes are never fixed-size (both can be empty).
            return GVType(code + child.string, code, (child,), child.align_mask, 0, child.depth + 1)
        if code == "(":
            kids: list[GVType] = []
            while True:
                if self.pos >= len(text):
                    raise self.fail("unterminated tuple")
                if text[self.pos] == ")":
                    self.pos += 1
                    break
                kids.append(self.parse(depth + 1))
            return _container("(", text[start : self.pos], tuple(kids))
        if code == "{":
            if self.pos >= len(text) or text[self.pos] not in BASIC_CODES:
                raise self.fail("dict entry key must be a basic type")
            key = self.parse(depth + 1)
            value = self.parse(depth + 1)
            if self.pos >= len(text) or text[self.pos] != "}":
                raise self.fail("dict entry must have exactly two members")
            self.pos += 1
            return _container("{", text[start : self.pos], (key, value))
        self.pos = start
        raise self.fail(f"unknown or indefinite type code {code!r}")


def _container(code: str, string: str, kids: tuple[GVType, ...]) -> GVType:
    mask, fixed = _tuple_layout(kids)
    depth = 1 + max((k.depth for k in kids), default=0)
    return GVType(string, code, kids, mask, fixed, depth, _member_table(kids))


@lru_cache(maxsize=1024)
def parse_type(type_string: str) -> GVType:
    """Parse one complete definite type string, or raise :class:`GVariantError`."""
    if not isinstance(type_string, str):
        raise GVariantError(f"type string must be str, not {type(type_string).__name__}")
    parser = _Parser(type_string)
    node = parser.parse(1)
    if parser.pos != len(type_string):
        raise parser.fail("trailing characters")
    return node


def is_valid_type_string(type_string: str) -> bool:
    """True when ``type_string`` is exactly one definite type GLib would accept."""
    try:
        parse_type(type_string)
    except GVariantError:
        return False
    return True
