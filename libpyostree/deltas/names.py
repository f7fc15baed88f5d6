"""Delta names and their paths in a repository (``reference/ostree-format.md`` §3, §5.1).

A delta is named ``FROM-TO`` (two 64-hex commit checksums) or ``TO`` for a delta
from scratch (``_ostree_parse_delta_name``).  On disk both halves use ostree's
"modified base64" of the 32 raw bytes: standard base64 without the ``=`` padding
and with ``/`` replaced by ``_`` (``+`` is kept)::

    deltas/T[0:2]/T[2:]/superblock              from scratch
    deltas/F[0:2]/F[2:]-T/superblock, …/0, …/1  from FROM
    delta-indexes/T[0:2]/T[2:].index            every delta whose target is T
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass

from ..errors import InvalidNameError
from ..names import Checksum, validate_checksum

_B64 = re.compile(r"[A-Za-z0-9+_]{43}\Z")


def checksum_to_b64(checksum: str) -> str:
    """``ostree_checksum_b64_from_bytes``: 43 characters, ``/`` written as ``_``."""
    raw = bytes.fromhex(validate_checksum(checksum))
    return base64.b64encode(raw).decode("ascii").rstrip("=").replace("/", "_")


def checksum_from_b64(text: str) -> Checksum:
    """The inverse of :func:`checksum_to_b64`; :class:`InvalidNameError` for anything else."""
    if not _B64.match(text):
        raise InvalidNameError(f"Invalid modified-base64 checksum {text!r:.80}")
    try:
        raw = base64.b64decode(text.replace("_", "/") + "=", validate=True)
    except binascii.Error:
        raise InvalidNameError(f"Invalid modified-base64 checksum {text!r:.80}") from None
    if checksum_to_b64(raw.hex()) != text:  # non-canonical trailing bits
        raise InvalidNameError(f"Non-canonical modified-base64 checksum {text!r:.80}")
    return Checksum(raw.hex())


@dataclass(frozen=True, slots=True, order=True)
class DeltaName:
    """A delta's identity: ``from_commit`` is None for a delta from scratch."""

    from_commit: Checksum | None
    to_commit: Checksum

    @classmethod
    def parse(cls, name: str) -> DeltaName:
        """``FROM-TO`` or ``TO`` (64 lowercase hex each), as ``_ostree_parse_delta_name``."""
        first, sep, second = name.partition("-")
        if sep:
            return cls(validate_checksum(first), validate_checksum(second))
        return cls(None, validate_checksum(first))

    @classmethod
    def from_relpath(cls, relpath: str) -> DeltaName:
        """The name of a delta directory given relative to ``deltas/`` (``XX/rest``)."""
        prefix, slash, rest = relpath.strip("/").partition("/")
        if not slash or len(prefix) != 2 or "/" in rest:
            raise InvalidNameError(f"Invalid delta directory {relpath!r:.120}")
        first, sep, second = (prefix + rest).partition("-")
        if sep:
            return cls(checksum_from_b64(first), checksum_from_b64(second))
        return cls(None, checksum_from_b64(first))

    def __str__(self) -> str:
        if self.from_commit is None:
            return self.to_commit
        return f"{self.from_commit}-{self.to_commit}"

    @property
    def is_scratch(self) -> bool:
        return self.from_commit is None

    @property
    def dir(self) -> str:
        """``deltas/XX/rest`` (``static_delta_path_base``)."""
        to = checksum_to_b64(self.to_commit)
        if self.from_commit is None:
            return f"deltas/{to[:2]}/{to[2:]}"
        frm = checksum_to_b64(self.from_commit)
        return f"deltas/{frm[:2]}/{frm[2:]}-{to}"

    def path(self, target: str) -> str:
        """``_ostree_get_relative_static_delta_path``: ``deltas/…/TARGET``."""
        return f"{self.dir}/{target}"

    @property
    def superblock_path(self) -> str:
        return self.path("superblock")

    def part_path(self, index: int) -> str:
        return self.path(str(index))

    @property
    def commitmeta_key(self) -> str:
        """The superblock metadata key of the TO commit's detached metadata."""
        return self.path("commitmeta")

    @property
    def index_path(self) -> str:
        return index_path(self.to_commit)


def index_path(to_commit: str) -> str:
    """``delta-indexes/XX/rest.index`` for a target commit."""
    to = checksum_to_b64(to_commit)
    return f"delta-indexes/{to[:2]}/{to[2:]}.index"


def index_target_from_relpath(relpath: str) -> Checksum:
    """The target commit of ``XX/rest.index`` (relative to ``delta-indexes/``)."""
    prefix, slash, rest = relpath.strip("/").partition("/")
    if not slash or len(prefix) != 2 or not rest.endswith(".index"):
        raise InvalidNameError(f"Invalid delta index path {relpath!r:.120}")
    return checksum_from_b64(prefix + rest[: -len(".index")])
