"""Static deltas: parse, apply and generate (``reference/ostree-format.md`` §5).

- :mod:`.names`: delta names ↔ ``deltas/…`` and ``delta-indexes/…`` paths.
- :mod:`.superblock`: the superblock, part headers and fallbacks.
- :mod:`.part`: part files (none / xz) and their payload.
- :mod:`.apply`: the opcode interpreter (``S o w r R c B``, bspatch) into an archive repo.
- :mod:`.generate`: the generator (metadata and small files as ``S``, large ones as
  fallbacks; per-file strategies can be plugged in).
- :mod:`.index`: listing deltas, delta indexes.
"""

from .apply import ApplyStats, apply_delta, apply_offline, bspatch, execute_part
from .errors import CorruptDeltaError, DeltaApplyError, DeltaError
from .generate import DeltaOptions, DeltaResult, delete_delta, generate_delta
from .index import delta_digests, list_deltas, list_indexes, parse_index, reindex
from .names import DeltaName, checksum_from_b64, checksum_to_b64, index_path
from .part import PartPayload, build_part, open_part
from .superblock import Fallback, PartHeader, Superblock, build_superblock, parse_superblock

__all__ = [
    "ApplyStats",
    "CorruptDeltaError",
    "DeltaApplyError",
    "DeltaError",
    "DeltaName",
    "DeltaOptions",
    "DeltaResult",
    "Fallback",
    "PartHeader",
    "PartPayload",
    "Superblock",
    "apply_delta",
    "apply_offline",
    "bspatch",
    "build_part",
    "build_superblock",
    "checksum_from_b64",
    "checksum_to_b64",
    "delete_delta",
    "delta_digests",
    "execute_part",
    "generate_delta",
    "index_path",
    "list_deltas",
    "list_indexes",
    "open_part",
    "parse_index",
    "parse_superblock",
    "reindex",
]
