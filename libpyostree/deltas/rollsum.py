"""bup rolling-checksum chunking and chunk matching, as ``ostree-rollsum.c``
(``reference/ostree-format.md`` §5.7, step 3).

Chunking (``rollsum_chunks_crc32`` + ``bupsplit_find_ofs``): from a chunk start,
roll bup's checksum (window 64, ``ROLLSUM_CHAR_OFFSET`` 31, state reset at every
chunk start) until ``(s2 & 0x1fff) == 0x1fff``; the chunk ends after that byte,
cut at 32 KiB.  When no boundary is left in the rest of the file, the rest is cut
into 32 KiB chunks.  Chunks are indexed by zlib crc32; a TO chunk matches the
first FROM chunk with the same crc, length and bytes.

Speed: ``s2`` is ``124992 + Σ (a+1)·b[i-a]`` over the last 64 bytes (a = 0 for the
newest), a convolution.  It is computed for a whole block at once with Python
integers: the bytes become 24-bit lanes of one big integer ``A`` and, with
``B = 2**24``, ``W(B) = (1 - 65·B**64 + 64·B**65) / (B - 1)**2`` gives
``A·W(B) = (A + A·(64·B - 65)·B**64) // (B - 1) // (B - 1)`` — a few linear-time
big-integer operations instead of a Python loop over every byte.  The 63 bytes
after a chunk start (shorter windows) are rolled in Python.
"""

from __future__ import annotations

import zlib
from bisect import bisect_left
from dataclasses import dataclass, field

WINDOW = 64
BLOB_BITS = 13
BLOB_MASK = (1 << BLOB_BITS) - 1
CHUNK_MAX = 8192 * 4
"""``ROLLSUM_BLOB_MAX``: the largest chunk."""

_S2_INIT = WINDOW * (WINDOW - 1) * 31
_ADD = (_S2_INIT + 1) % (1 << BLOB_BITS)
"""A window sum ``w`` is a boundary when ``(w + _S2_INIT) & 0x1fff == 0x1fff``,
i.e. ``(w + _ADD) & 0x1fff == 0``."""

_LANE = 24
_LANE_BYTES = _LANE // 8
_BASE = 1 << _LANE
_NUM_FACTOR = WINDOW * _BASE - (WINDOW + 1)
_NUM_SHIFT = WINDOW * _LANE
_BLOCK = 1 << 16

_lane_constants: dict[int, tuple[int, int]] = {}


def _constants(lanes: int) -> tuple[int, int]:
    """(``_ADD`` in every lane, ``0x1fff`` in every lane) for ``lanes`` lanes."""
    found = _lane_constants.get(lanes)
    if found is None:
        add = int.from_bytes(_ADD.to_bytes(_LANE_BYTES, "little") * lanes, "little")
        mask = int.from_bytes(BLOB_MASK.to_bytes(_LANE_BYTES, "little") * lanes, "little")
        found = (add, mask)
        if len(_lane_constants) < 8:
            _lane_constants[lanes] = found
    return found


def _block_candidates(seg: bytes | memoryview, skip: int, base: int, out: list[int]) -> None:
    """Append ``base + j`` for each lane ``j >= skip`` of ``seg`` whose full window
    (zero-padded before ``seg``) is a boundary."""
    n = len(seg)
    expanded = bytearray(n * _LANE_BYTES)
    expanded[0::_LANE_BYTES] = seg
    a = int.from_bytes(expanded, "little")
    conv = (a + ((a * _NUM_FACTOR) << _NUM_SHIFT)) // (_BASE - 1) // (_BASE - 1)
    add, mask = _constants(n)
    lanes = ((conv + add) & mask).to_bytes(n * _LANE_BYTES, "little")
    zero = b"\0" * _LANE_BYTES
    pos = lanes.find(zero, skip * _LANE_BYTES)
    while pos != -1:
        if pos % _LANE_BYTES == 0:
            out.append(base + pos // _LANE_BYTES)
        pos = lanes.find(zero, pos + 1)


def boundary_candidates(data: bytes | memoryview) -> list[int]:
    """Sorted indices ``i`` whose 64-byte window ending at ``i`` (zero-padded before the
    start of ``data``) satisfies the bup boundary test."""
    view = memoryview(data)
    out: list[int] = []
    history = WINDOW - 1
    for start in range(0, len(view), _BLOCK):
        lo = max(0, start - history)
        _block_candidates(view[lo : start + _BLOCK], start - lo, lo, out)
    return out


def _short_window_boundary(view: memoryview, start: int, end: int) -> int:
    """First ``i`` in ``[start, end)`` that is a boundary for a checksum reset at
    ``start`` (fewer than 64 bytes rolled, no byte dropped yet), or -1."""
    s1 = 0
    w = 0
    for i in range(start, end):
        s1 += view[i]
        w += s1
        if (w + _ADD) & BLOB_MASK == 0:
            return i
    return -1


def split(data: bytes | memoryview) -> list[tuple[int, int]]:
    """The chunks of ``data`` as (start, length), exactly as ostree cuts them."""
    view = memoryview(data)
    n = len(view)
    candidates = boundary_candidates(view)
    chunks: list[tuple[int, int]] = []
    start = 0
    while start < n:
        # A window that started before `start` is only valid WINDOW-1 bytes in
        # (or from the file start, where the zero padding equals a reset).
        full_from = start if start == 0 else min(n, start + WINDOW - 1)
        hit = _short_window_boundary(view, start, full_from) if full_from > start else -1
        if hit == -1:
            k = bisect_left(candidates, full_from)
            hit = candidates[k] if k < len(candidates) else -1
        if hit == -1:
            # No boundary in the rest of the file: fixed-size chunks from here.
            while start < n:
                length = min(CHUNK_MAX, n - start)
                chunks.append((start, length))
                start += length
            break
        length = min(hit - start + 1, CHUNK_MAX)
        chunks.append((start, length))
        start += length
    return chunks


@dataclass(frozen=True, slots=True)
class Chunk:
    crc: int
    start: int
    length: int


def chunk_crcs(data: bytes | memoryview) -> list[Chunk]:
    """Chunks with their zlib crc32, in file order."""
    view = memoryview(data)
    crc32 = zlib.crc32
    return [Chunk(crc32(view[s : s + n]), s, n) for s, n in split(view)]


@dataclass
class RollsumMatches:
    """``OstreeRollsumMatches``: ``matches`` are (length, to_start, from_start),
    sorted by ``to_start``."""

    matches: list[tuple[int, int, int]] = field(default_factory=list)
    crcmatches: int = 0
    bufmatches: int = 0
    total: int = 0
    match_size: int = 0

    @property
    def match_ratio(self) -> int:
        """Percentage of TO chunks found in FROM (integer, as ostree computes it)."""
        return self.bufmatches * 100 // self.total if self.total else 0


def compute_matches(
    from_data: bytes | memoryview,
    to_data: bytes | memoryview,
    *,
    from_chunks: list[Chunk] | None = None,
) -> RollsumMatches:
    """``_ostree_compute_rollsum_matches``: each TO chunk is matched with the first
    FROM chunk of the same crc32, the same length and the same bytes."""
    fview = memoryview(from_data)
    tview = memoryview(to_data)
    index: dict[int, list[Chunk]] = {}
    for chunk in chunk_crcs(fview) if from_chunks is None else from_chunks:
        index.setdefault(chunk.crc, []).append(chunk)
    result = RollsumMatches()
    crcs_seen: set[int] = set()
    for chunk in chunk_crcs(tview):
        result.total += 1
        candidates = index.get(chunk.crc)
        if candidates is None:
            continue
        crcs_seen.add(chunk.crc)
        start, length = chunk.start, chunk.length
        for cand in candidates:
            if cand.length != length:
                continue
            if fview[cand.start : cand.start + length] == tview[start : start + length]:
                result.matches.append((length, start, cand.start))
                result.bufmatches += 1
                result.match_size += length
                break
    result.crcmatches = len(crcs_seen)
    return result
