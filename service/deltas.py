"""Static deltas of repository versions, generated into the pool with the library.

Which deltas a version gets (repository settings): when ``compute_delta`` is on,
for every ref head, deltas to it from its ``delta_depth`` previous commits the
version holds, and from scratch when ``delta_from_scratch`` is on.  They are
computed in the task that creates the version, before its transaction, so the
version's summary and delta indexes list them from the start.  Explicit deltas
(``POST …/deltas``) make a new version holding one more delta.

Delta files in the pool are immutable once written: a delta that exists (made
for another repository, or an earlier version) is reused, never regenerated,
because versions record its superblock digest.  A per-name lock keeps two
tasks of this process from generating the same delta at once.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable, Iterable
from typing import Any

from libpyostree.deltas.generate import generate_delta
from libpyostree.deltas.names import DeltaName
from libpyostree.names import Checksum

from .pool import Pool
from .versions import DeltaKey, VersionState, history

_locks: dict[str, threading.Lock] = {}
_locks_guard = threading.Lock()


def _lock(name: DeltaName) -> threading.Lock:
    with _locks_guard:
        return _locks.setdefault(str(name), threading.Lock())


def ensure_delta(pool: Pool, from_commit: str | None, to_commit: str) -> DeltaKey:
    """The pool's delta FROM→TO, generated unless it exists; (from, to, digest hex)."""
    name = DeltaName(Checksum(from_commit) if from_commit else None, Checksum(to_commit))
    with _lock(name):
        superblock = pool.repo.path / name.superblock_path
        if not superblock.exists():
            generate_delta(pool.repo, to_commit, from_commit)
        digest = hashlib.sha256(superblock.read_bytes()).hexdigest()
    return (from_commit, to_commit, digest)


def wanted(
    state: VersionState, parents: dict[str, str | None], depth: int, scratch: bool
) -> set[tuple[str | None, str]]:
    """(from, to) pairs the settings ask for in ``state``."""
    out: set[tuple[str | None, str]] = set()
    held = {c: p for c, p in parents.items() if c in state.commits}
    for head in set(state.refs.values()):
        if head not in held:
            continue
        for older in history(held, head, depth)[1:]:
            out.add((older, head))
        if scratch:
            out.add((None, head))
    return out


def add_deltas(
    pool: Pool,
    settings: Any,
    new: VersionState,
    parents: dict[str, str | None],
    progress: Callable[[str, int, int | None], None] | None = None,
) -> None:
    """Give ``new`` the deltas its repository's settings ask for (generating them)."""
    if not settings.compute_delta:
        return
    have = {(f, t) for f, t, _d in new.deltas}
    todo = sorted(
        wanted(new, parents, int(settings.delta_depth), bool(settings.delta_from_scratch)) - have,
        key=lambda pair: (pair[1], pair[0] or ""),
    )
    for i, (frm, to) in enumerate(todo):
        if progress is not None:
            progress("Generating static deltas", i, len(todo))
        new.deltas.add(ensure_delta(pool, frm, to))
    if progress is not None and todo:
        progress("Generating static deltas", len(todo), len(todo))


def keep_connected(deltas: Iterable[DeltaKey], commits: set[str]) -> set[DeltaKey]:
    """Deltas whose two ends the version still holds."""
    return {d for d in deltas if d[1] in commits and (d[0] is None or d[0] in commits)}
