"""Python values for GVariant types that have no natural Python counterpart."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class Variant:
    """A boxed value of type ``v``: the child's type string and its value."""

    type: str
    value: Any


@dataclass(frozen=True, slots=True)
class Just:
    """An explicit Just for maybe types whose element is itself a maybe (``mmT``).

    ``mT`` maps to ``None`` (Nothing) or the plain value; only ``Just(None)`` in
    ``mmT`` needs this wrapper, and decode uses it for every Just of a maybe.
    """

    value: Any
