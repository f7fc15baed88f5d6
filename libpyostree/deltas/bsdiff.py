"""bsdiff patches in the raw stream format of ostree's ``B`` opcode
(``reference/ostree-format.md`` §5.4).

ostree embeds mendsley bsdiff's stream as is: no ``ENDSLEY/BSDIFF43`` header, no
bzip2, and the three blocks interleaved::

    repeat: x y z (8-byte sign-magnitude little-endian each), x diff bytes, y extra bytes

``bsdiff4`` (PyPI, optional extra ``deltas``) computes the diff; its
``core.diff`` returns the BSDIFF40 blocks uncompressed (control triples, all
diff bytes, all extra bytes), which are re-interleaved here.  Without
``bsdiff4`` a pure-Python positional diff is used when the two files mostly
agree byte for byte at the same offsets (in-place edits), else no patch.
"""

from __future__ import annotations

import struct
from typing import Any

try:  # pragma: no branch - depends on the environment
    import bsdiff4.core as _bsdiff_core

    _core: Any = _bsdiff_core
except ImportError:  # pragma: no cover - exercised when bsdiff4 is missing
    _core = None

_CTRL = struct.Struct("<QQQ")
_SIGN = 1 << 63


def have_bsdiff4() -> bool:
    return _core is not None


def _offtout(value: int) -> int:
    return (-value) | _SIGN if value < 0 else value


def _offtin(raw: int) -> int:
    return -(raw & ~_SIGN) if raw & _SIGN else raw


def encode_control(x: int, y: int, z: int) -> bytes:
    """One control word: three sign-magnitude little-endian 64-bit integers."""
    return _CTRL.pack(_offtout(x), _offtout(y), _offtout(z))


def interleave(control: bytes, diff: bytes, extra: bytes) -> bytes:
    """The raw stream from BSDIFF40's three (uncompressed) blocks."""
    if len(control) % 24:
        raise ValueError("bsdiff control block is not a multiple of 24 bytes")
    out: list[bytes] = []
    dpos = epos = 0
    dview, eview = memoryview(diff), memoryview(extra)
    for offset in range(0, len(control), 24):
        rx, ry, _rz = _CTRL.unpack_from(control, offset)
        x, y = _offtin(rx), _offtin(ry)
        if x < 0 or y < 0 or dpos + x > len(diff) or epos + y > len(extra):
            raise ValueError("bsdiff control word out of range")
        out.append(control[offset : offset + 24])
        out.append(dview[dpos : dpos + x].tobytes())
        out.append(eview[epos : epos + y].tobytes())
        dpos += x
        epos += y
    if dpos != len(diff) or epos != len(extra):
        raise ValueError("bsdiff blocks have unused bytes")
    return b"".join(out)


def _sub_bytes(new: bytes, old: bytes) -> bytes:
    """Byte-wise (new - old) mod 256 (the inverse of bspatch's addition)."""
    n = len(new)
    if n == 0:
        return b""
    a = int.from_bytes(new, "little")
    b = int.from_bytes(old, "little")
    high = int.from_bytes(b"\x80" * n, "little")
    # Per-lane subtraction without borrows: set each lane's top bit of the minuend,
    # subtract the low seven bits, then fix the top bit with an xor.
    return (((a | high) - (b & ~high)) ^ ((a ^ ~b) & high)).to_bytes(n, "little")


def positional_diff(old: bytes, new: bytes, *, min_equal: float = 0.5) -> bytes | None:
    """A one-control-word patch ``new = old + diff`` at the same offsets (the tail of
    ``new`` as extra bytes), or None when fewer than ``min_equal`` of the
    overlapping bytes are equal (the diff would not compress)."""
    x = min(len(old), len(new))
    if x == 0:
        return None
    equal = (int.from_bytes(old[:x], "little") ^ int.from_bytes(new[:x], "little")).to_bytes(
        x, "little"
    )
    if equal.count(0) < min_equal * x:
        return None
    return encode_control(x, len(new) - x, 0) + _sub_bytes(new[:x], old[:x]) + new[x:]


def diff(old: bytes, new: bytes) -> bytes | None:
    """A raw bsdiff stream turning ``old`` into ``new``: bsdiff4's when installed, else
    :func:`positional_diff` (None when that does not pay off)."""
    if _core is not None:
        control, diff_block, extra = _core.diff(old, new)
        return interleave(bytes(control), bytes(diff_block), bytes(extra))
    return positional_diff(old, new)
