"""Delta part files and their payload (``reference/ostree-format.md`` §5.3).

Part file = ``(yay)``: one compression byte, then the rest::

    0x00  the payload variant as is
    'x'   an xz stream of it (ostree writes preset 8 with CRC64; any xz is read)

Payload ``(a(uuu)aa(ayay)ayay)``: the mode table (uid, gid, mode big-endian), the
xattr table (each entry a full ``a(ayay)`` set), the data blob, the opcode stream.
"""

from __future__ import annotations

import hashlib
import lzma
from dataclasses import dataclass

from ..errors import OstreeError
from ..gvariant import decode, encode
from .errors import CorruptDeltaError

PAYLOAD_TYPE = "(a(uuu)aa(ayay)ayay)"
COMPRESSION_NONE = 0
COMPRESSION_XZ = ord("x")
XZ_PRESET = 8
MAX_PAYLOAD_SIZE = 1 << 31
"""Refuse to inflate a part beyond 2 GiB (ostree's own parts stay near 32 MB)."""


def _swap32(value: int) -> int:
    return int.from_bytes(value.to_bytes(4, "little"), "big")


@dataclass(frozen=True, slots=True)
class PartPayload:
    """A decoded payload; ``modes`` are (uid, gid, mode) in host order."""

    modes: tuple[tuple[int, int, int], ...]
    xattrs: tuple[tuple[tuple[bytes, bytes], ...], ...]
    blob: bytes
    ops: bytes

    def to_bytes(self) -> bytes:
        return encode(
            PAYLOAD_TYPE,
            (
                [(_swap32(u), _swap32(g), _swap32(m)) for u, g, m in self.modes],
                [list(x) for x in self.xattrs],
                self.blob,
                self.ops,
            ),
        )


def parse_payload(data: bytes) -> PartPayload:
    try:
        modes, xattrs, blob, ops = decode(PAYLOAD_TYPE, data, strict=False)
    except OstreeError as exc:  # pragma: no cover - the lenient reader does not raise
        raise CorruptDeltaError(f"Invalid delta part payload: {exc}") from None
    if not data:
        raise CorruptDeltaError("Empty delta part payload")
    return PartPayload(
        tuple((_swap32(u), _swap32(g), _swap32(m)) for u, g, m in modes),
        tuple(tuple((bytes(n), bytes(v)) for n, v in entry) for entry in xattrs),
        bytes(blob),
        bytes(ops),
    )


def decompress_part(data: bytes) -> bytes:
    """The payload bytes of a part file (compression byte + body)."""
    if not data:
        raise CorruptDeltaError("Empty delta part file")
    kind, body = data[0], data[1:]
    if kind == COMPRESSION_NONE:
        return bytes(body)
    if kind == COMPRESSION_XZ:
        decomp = lzma.LZMADecompressor(format=lzma.FORMAT_XZ)
        try:
            out = decomp.decompress(body, MAX_PAYLOAD_SIZE + 1)
        except lzma.LZMAError as exc:
            raise CorruptDeltaError(f"Invalid xz data in delta part: {exc}") from None
        if len(out) > MAX_PAYLOAD_SIZE:
            raise CorruptDeltaError("Delta part payload exceeds the maximum size")
        if not decomp.eof:
            raise CorruptDeltaError("Truncated xz stream in delta part")
        if decomp.unused_data.strip(b"\0"):
            raise CorruptDeltaError("Data after the xz stream in delta part")
        return out
    raise CorruptDeltaError(f"Invalid compression type '{kind}' in delta part")


def open_part(data: bytes, expected_checksum: bytes | None = None) -> PartPayload:
    """Verify (unless ``expected_checksum`` is None, as for inline parts), decompress
    and parse a part file."""
    if expected_checksum is not None:
        actual = hashlib.sha256(data).digest()
        if actual != expected_checksum:
            raise CorruptDeltaError(
                "Checksum mismatch in static delta part; "
                f"expected={expected_checksum.hex()} actual={actual.hex()}"
            )
    return parse_payload(decompress_part(data))


def build_part(payload: PartPayload | bytes, *, compression: str = "xz") -> bytes:
    """A part file: ``'x'`` + xz (preset 8, CRC64), or ``0x00`` + raw payload."""
    raw = payload.to_bytes() if isinstance(payload, PartPayload) else payload
    if compression == "xz":
        # Preset 8 as ostree, with the dictionary no larger than the data: the
        # same stream format at a fraction of the encoder's memory for small parts.
        dict_size = max(1 << 16, min(1 << 25, len(raw)))
        filters = [{"id": lzma.FILTER_LZMA2, "preset": XZ_PRESET, "dict_size": dict_size}]
        return bytes([COMPRESSION_XZ]) + lzma.compress(
            raw, format=lzma.FORMAT_XZ, check=lzma.CHECK_CRC64, filters=filters
        )
    if compression == "none":
        return bytes([COMPRESSION_NONE]) + raw
    raise OstreeError(f"Unknown delta compression {compression!r} (use xz or none)")
