"""The repository ``summary``: ``(a(s(taya{sv}))a{sv})``.

Member 0 lists refs sorted by ``strcmp`` on their UTF-8 bytes (clients binary
search it); each entry is ``(name, (commit size, commit checksum, metadata))``.
The commit size is in host order (little-endian) while ``ostree.commit.timestamp``
and ``ostree.summary.last-modified`` are big-endian.  Clients require normal form.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..errors import CorruptObjectError, OstreeError
from ..gvariant import Variant, decode, encode
from ..names import Checksum, checksum_from_bytes, validate_rev

SUMMARY_TYPE = "(a(s(taya{sv}))a{sv})"


def _swap64(value: int) -> int:
    return int.from_bytes(value.to_bytes(8, "little"), "big")


def be_uint64(value: int) -> Variant:
    """A ``t`` stored big-endian, as ostree stores timestamps in metadata."""
    return Variant("t", _swap64(value))


def from_be_uint64(value: Variant) -> int:
    return _swap64(value.value)


@dataclass(frozen=True, slots=True)
class SummaryRef:
    name: str
    checksum: Checksum
    commit_size: int
    metadata: dict[str, Variant] = field(default_factory=dict)

    @property
    def timestamp(self) -> int | None:
        value = self.metadata.get("ostree.commit.timestamp")
        return from_be_uint64(value) if value is not None and value.type == "t" else None

    @property
    def version(self) -> str | None:
        value = self.metadata.get("ostree.commit.version")
        return value.value if value is not None and value.type == "s" else None


@dataclass(frozen=True, slots=True)
class Summary:
    refs: tuple[SummaryRef, ...]
    metadata: dict[str, Variant] = field(default_factory=dict)

    def ref(self, name: str) -> SummaryRef | None:
        for entry in self.refs:
            if entry.name == name:
                return entry
        return None

    @property
    def static_deltas(self) -> dict[str, bytes]:
        value = self.metadata.get("ostree.static-deltas")
        if value is None or value.type != "a{sv}":
            return {}
        return {k: v.value for k, v in value.value.items() if isinstance(v, Variant)}


def build_summary(refs: list[SummaryRef], metadata: dict[str, Variant]) -> bytes:
    """Normal-form summary bytes; refs sorted by their UTF-8 bytes, keys sorted by name."""
    entries: list[Any] = [
        (r.name, (r.commit_size, bytes.fromhex(r.checksum), dict(sorted(r.metadata.items()))))
        for r in sorted(refs, key=lambda r: r.name.encode())
    ]
    return encode(SUMMARY_TYPE, (entries, dict(sorted(metadata.items()))))


def parse_summary(data: bytes, *, strict: bool = True) -> Summary:
    """Parse a summary; strict (the default) requires normal form as clients do."""
    raw_refs, meta = decode(SUMMARY_TYPE, data, strict=strict)
    refs = []
    try:
        for name, (size, csum, ref_meta) in raw_refs:
            refs.append(SummaryRef(validate_rev(name), checksum_from_bytes(csum), size, ref_meta))
    except OstreeError as exc:
        raise CorruptObjectError(f"Invalid summary: {exc}") from None
    return Summary(tuple(refs), meta)
