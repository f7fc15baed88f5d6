"""Errors raised by the static-delta code (all :class:`~libpyostree.errors.OstreeError`).

::

    OstreeError
    └── DeltaError                    any static-delta problem
        ├── CorruptDeltaError         bytes that are not a valid delta: truncated or
        │                             non-normal superblock, part checksum mismatch,
        │                             unknown opcode, out-of-bounds offsets, bad bspatch,
        │                             an object that does not hash to its name
        └── DeltaApplyError           a valid delta that cannot be applied here: its
                                      FROM commit is missing or partial, a fallback or
                                      a read source is not in the repository
"""

from __future__ import annotations

from ..errors import OstreeError


class DeltaError(OstreeError):
    """Root of the static-delta errors."""


class CorruptDeltaError(DeltaError):
    """A superblock or part whose bytes are invalid."""


class DeltaApplyError(DeltaError):
    """A delta that cannot be applied to this repository (missing source objects)."""
