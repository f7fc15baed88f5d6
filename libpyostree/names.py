"""Validation of names as ostree checks them on pull: checksums, file names, refs, remotes.

Each ``validate_*`` function returns its (possibly normalised) argument or raises
:class:`~libpyostree.errors.InvalidNameError` with the reason ostree would give.
"""

from __future__ import annotations

import re
from typing import NewType

from .errors import InvalidNameError

Checksum = NewType("Checksum", str)
"""A 64-character lowercase hex SHA-256 object name."""

_CHECKSUM = re.compile(r"[0-9a-f]{64}\Z")
# OSTREE_REF_FRAGMENT_REGEXP "[\w\d][-._\w\d]*" (GRegex with Unicode \w).
_REF = re.compile(r"(?:[\w\d][-._\w\d]*/)*[\w\d][-._\w\d]*\Z")
_REMOTE = re.compile(r"[\w\d][-._\w\d]*\Z")


def is_checksum(text: str) -> bool:
    return isinstance(text, str) and _CHECKSUM.match(text) is not None


def validate_checksum(text: str) -> Checksum:
    """A checksum string: exactly 64 lowercase hex digits (uppercase is refused, as ostree does)."""
    if not is_checksum(text):
        raise InvalidNameError(f"Invalid checksum {text!r:.80}: need 64 lowercase hex digits")
    return Checksum(text)


def checksum_from_bytes(raw: bytes) -> Checksum:
    """The hex name of a 32-byte binary checksum as found inside metadata objects."""
    if len(raw) != 32:
        raise InvalidNameError(f"Invalid checksum of length {len(raw)}, expected 32 bytes")
    return Checksum(raw.hex())


def validate_filename(name: str | bytes) -> str:
    """A dirtree entry name: valid UTF-8, not empty, not ``.`` or ``..``, no ``/``.

    ostree's ``ot_util_filename_validate`` does not check for the empty name; we do,
    since no tree built by ostree can contain one.
    """
    if isinstance(name, bytes):
        try:
            text = name.decode("utf-8")
        except UnicodeDecodeError:
            raise InvalidNameError(f"Invalid UTF-8 in filename {name!r:.80}") from None
    else:
        text = name
    if text in (".", ".."):
        raise InvalidNameError(f"Invalid path uplink or self-referential filename {text!r}")
    if "/" in text:
        raise InvalidNameError(f"Invalid / in filename {text}")
    if not text:
        raise InvalidNameError("Invalid empty filename")
    if "\0" in text:
        raise InvalidNameError(f"Invalid NUL in filename {text!r:.80}")
    return text


def validate_rev(ref: str) -> str:
    """A ref name as ``ostree_validate_rev`` accepts: slash-separated ``[\\w\\d][-._\\w\\d]*``."""
    if not isinstance(ref, str) or not ref:
        raise InvalidNameError("Invalid empty ref name")
    if _REF.match(ref) is None:
        raise InvalidNameError(f"Invalid ref name {ref!r:.200}")
    return ref


_COLLECTION_ELEMENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


def validate_collection_id(collection_id: str) -> str:
    """A reverse-DNS collection ID (``ostree_validate_collection_id``): two or more
    dot-separated elements of ``[A-Za-z_][A-Za-z0-9_]*``, at most 255 characters."""
    parts = collection_id.split(".") if isinstance(collection_id, str) else []
    if (
        len(parts) < 2
        or len(collection_id) > 255
        or not all(_COLLECTION_ELEMENT.match(part) for part in parts)
    ):
        raise InvalidNameError(f"Invalid collection ID {collection_id!r:.200}")
    return collection_id


def validate_remote_name(name: str) -> str:
    if not isinstance(name, str) or _REMOTE.match(name) is None:
        raise InvalidNameError(f"Invalid remote name {name!r:.200}")
    return name
