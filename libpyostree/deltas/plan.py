"""Choosing and planning a static delta for a pull, as pure functions
(``reference/ostree-format.md`` §4.2 steps 6-8, §5.5, §5.8).

:func:`choose_delta` is ostree 2022.x's ``initiate_request`` +
``get_best_static_delta_start_for``: given the delta map (the summary's
``ostree.static-deltas``, merged with ``delta-indexes/…/TO.index`` when the remote
indexes its deltas), the commits held locally *and complete* (not partial) with
their timestamps, the local value of the ref (``from_local``) and the target
commit, it answers FROM delta, SCRATCH delta or OBJECT WALK:

- ``deltas=None`` (the remote lists no deltas and does not index them): for a
  ref, the superblock ``from_local→to`` is probed (scratch when there is no
  usable local ref; a partial ``from_local`` is dropped); ``from_local == to``
  walks objects.  For a commit id: probe the scratch delta.  No digest is known.
- with a map: ``to`` held and complete → UNCHANGED (object walk; it only
  re-fetches detached metadata).  Otherwise among ``FROM-to`` entries whose FROM
  is held and complete, the greatest commit timestamp wins (ties: first in map
  order) → FROM.  Else a bare ``to`` entry (SCRATCH) is used only when there is
  no local ref; else → object walk.  Chains (A→B→C) are never combined.

:func:`verify_superblock` checks a fetched superblock against the map's digest
("Invalid checksum for static delta") and against the delta asked for, and
:func:`delta_fetches` lists what remains to fetch once it is parsed: parts not
already satisfied (all their objects present; inline parts need no download)
and fallbacks (``objects/…filez``) not present.
"""

from __future__ import annotations

import enum
import hashlib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from ..errors import OstreeError
from ..names import Checksum
from ..objects import ObjectType
from .errors import CorruptDeltaError, DeltaError
from .names import DeltaName
from .superblock import Fallback, Superblock, parse_superblock


class DeltaSearch(enum.Enum):
    """``DeltaSearchResultType`` of ``get_best_static_delta_start_for``."""

    NO_MATCH = "no-match"
    FROM = "from"
    SCRATCH = "scratch"
    UNCHANGED = "unchanged"


@dataclass(frozen=True, slots=True)
class DeltaDecision:
    """What to do for one target: fetch ``delta``'s superblock, or walk objects
    (``delta`` None).  ``digest`` is the expected sha256 of the superblock (None
    when probing without a map); ``search`` is the map search result (None on the
    probe path); ``reason`` says why, for logs and tests."""

    delta: DeltaName | None
    digest: bytes | None
    search: DeltaSearch | None
    reason: str

    @property
    def uses_delta(self) -> bool:
        return self.delta is not None

    @property
    def kind(self) -> str:
        """``from``, ``scratch`` or ``objects``."""
        if self.delta is None:
            return "objects"
        return "scratch" if self.delta.is_scratch else "from"


def parse_delta_names(names: Iterable[str]) -> list[DeltaName]:
    """Every name of a delta map, parsed; one invalid name fails the whole pull,
    as ``_ostree_parse_delta_name`` does in ``get_best_static_delta_start_for``."""
    out = []
    for name in names:
        try:
            out.append(DeltaName.parse(name))
        except OstreeError as exc:
            raise DeltaError(
                f"Invalid delta name {name!r:.140} in the remote's deltas: {exc}"
            ) from None
    return out


def best_static_delta_start(
    names: Iterable[str], to_commit: str, complete: Mapping[str, int]
) -> tuple[DeltaSearch, Checksum | None]:
    """``get_best_static_delta_start_for``: (result, FROM commit for FROM).

    ``complete`` maps each commit held locally and not partial to its timestamp.
    """
    if to_commit in complete:
        return DeltaSearch.UNCHANGED, None
    parsed = parse_delta_names(names)
    result = DeltaSearch.NO_MATCH
    best: Checksum | None = None
    best_ts = 0
    for name in parsed:
        if name.to_commit != to_commit:
            continue
        if name.from_commit is None:
            result = DeltaSearch.SCRATCH
            continue
        ts = complete.get(name.from_commit)
        if ts is None:
            continue  # not held, or partial
        if best is None or ts > best_ts:
            best, best_ts = name.from_commit, ts
    if best is not None:
        return DeltaSearch.FROM, best
    return result, None


def choose_delta(
    to_commit: str,
    *,
    deltas: Mapping[str, bytes | None] | None,
    complete: Mapping[str, int],
    from_local: str | None,
    is_ref: bool = True,
) -> DeltaDecision:
    """ostree 2022.x's choice for one target (deltas enabled; see the module doc).

    ``deltas``: name → superblock digest (None when unknown), or None when the
    remote neither lists deltas in its summary nor indexes them.
    ``from_local``: the local ref's commit (refs only; None when absent).
    """
    to = Checksum(to_commit)
    if deltas is None:
        if not is_ref:
            return DeltaDecision(DeltaName(None, to), None, None, "probe scratch delta")
        start = from_local if from_local is not None and from_local in complete else None
        if start == to:
            return DeltaDecision(None, None, None, "local ref already at the target")
        name = DeltaName(Checksum(start) if start else None, to)
        why = "probe delta from the local ref" if start else "probe scratch delta (no local ref)"
        return DeltaDecision(name, None, None, why)
    search, start_commit = best_static_delta_start(deltas, to, complete)
    if search is DeltaSearch.FROM:
        assert start_commit is not None
        name = DeltaName(start_commit, to)
        return DeltaDecision(name, _digest(deltas.get(str(name))), search, "newest held FROM")
    if search is DeltaSearch.SCRATCH:
        if from_local is not None:
            return DeltaDecision(
                None, None, search, "scratch delta refused: the ref exists locally"
            )
        name = DeltaName(None, to)
        return DeltaDecision(name, _digest(deltas.get(str(name))), search, "scratch (no local ref)")
    if search is DeltaSearch.UNCHANGED:
        return DeltaDecision(None, None, search, "target already held")
    return DeltaDecision(None, None, search, "no usable delta")


def _digest(value: bytes | None) -> bytes | None:
    return bytes(value) if value is not None and len(value) == 32 else None


def verify_superblock(data: bytes, name: DeltaName, digest: bytes | None) -> Superblock:
    """``on_superblock_fetched``: sha256 against the published digest (when known),
    then parse; the superblock must be the delta that was asked for.  Raises
    :class:`CorruptDeltaError`."""
    if digest is not None:
        actual = hashlib.sha256(data).digest()
        if actual != digest:
            raise CorruptDeltaError(
                f"Invalid checksum for static delta {name}: expected {digest.hex()}, "
                f"superblock has {actual.hex()}"
            )
    sb = parse_superblock(data)
    if sb.to_commit != name.to_commit or sb.from_commit != name.from_commit:
        raise CorruptDeltaError(f"Superblock of static delta {name} describes delta {sb.name}")
    return sb


@dataclass(frozen=True, slots=True)
class PartToApply:
    """One part whose objects are not all present."""

    index: int
    path: str
    """``deltas/…/N``, relative to the remote (meaningless when ``inline``)."""
    size: int
    """Download limit: the header's size."""
    checksum: bytes
    inline: bool


@dataclass(frozen=True, slots=True)
class DeltaFetches:
    """What a parsed superblock still needs (§5.5 steps 2 and 4)."""

    parts: tuple[PartToApply, ...]
    """In part order; inline parts are applied from the superblock, not fetched."""
    skipped_parts: tuple[int, ...]
    """Parts whose objects are all present already."""
    fallbacks: tuple[Fallback, ...]
    """Fallback objects not present: fetch ``objects/XX/Y.filez``."""

    @property
    def downloads(self) -> list[str]:
        """Relative paths to GET: non-inline parts, then fallbacks."""
        out = [p.path for p in self.parts if not p.inline]
        out += [
            f"objects/{f.checksum[:2]}/{f.checksum[2:]}.{ObjectType.FILE.archive_suffix}"
            for f in self.fallbacks
        ]
        return out


def delta_fetches(sb: Superblock, have: Callable[[str, ObjectType], bool]) -> DeltaFetches:
    """Parts not satisfied and fallbacks missing, given ``have(checksum, objtype)``.

    The TO commit counts as present (it is in the superblock and written last)."""
    parts: list[PartToApply] = []
    skipped: list[int] = []
    name = sb.name
    for i, header in enumerate(sb.parts):
        if all(c == sb.to_commit or have(c, t) for t, c in header.objects):
            skipped.append(i)
            continue
        inline = i in sb.inline_parts
        parts.append(PartToApply(i, name.part_path(i), header.size, header.checksum, inline))
    fallbacks = tuple(f for f in sb.fallbacks if not have(f.checksum, ObjectType.FILE))
    return DeltaFetches(tuple(parts), tuple(skipped), fallbacks)


__all__ = [
    "DeltaDecision",
    "DeltaFetches",
    "DeltaSearch",
    "PartToApply",
    "best_static_delta_start",
    "choose_delta",
    "delta_fetches",
    "parse_delta_names",
    "verify_superblock",
]
