"""Syntax checks for the D-Bus string types ``o`` and ``g`` (GLib's rules)."""

from __future__ import annotations

import re

from ..errors import GVariantError
from ._types import _Parser

_OBJECT_PATH = re.compile(rb"/\Z|(/[A-Za-z0-9_]+)+\Z")
_SIGNATURE_CHARS = frozenset(b"ybnqiuxthdvasog(){}")


def is_object_path(raw: bytes) -> bool:
    """``raw`` (without the NUL) is a valid D-Bus object path."""
    return _OBJECT_PATH.match(raw) is not None


def is_signature(raw: bytes) -> bool:
    """``raw`` (without the NUL) is a sequence of complete types without maybes.

    GLib (g_variant_serialiser_is_signature) allows only the D-Bus type characters
    and requires each type in the sequence to scan completely.
    """
    if not _SIGNATURE_CHARS.issuperset(raw):
        return False
    text = raw.decode("ascii")
    parser = _Parser(text)
    try:
        while parser.pos < len(text):
            parser.parse(1)
    except GVariantError:
        return False
    return True
