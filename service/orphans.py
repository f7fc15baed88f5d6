"""Orphan cleanup: delete what no version of any repository references.

Runs as an exclusive task (no other task runs beside it — see
``service.tasks.EXCLUSIVE``), so no import can be counting a pool object as
present while it is deleted.  ``older_than`` (seconds) additionally spares
files modified recently.

Order: database rows first (content rows no ``repository_content`` row points
at), then files: pool objects with no ``objects`` row, summary files no
version names, delta directories with no ``deltas`` row (and their entries in
the pool's delta indexes, which generation writes), and stale staging
directories under ``tmp/``.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import Engine, and_, select

from libpyostree.deltas.index import list_deltas, reindex
from libpyostree.objects import ObjectType

from . import db
from .db import Kind
from .pool import Pool

_SUFFIX = {t.archive_suffix: t for t in ObjectType}


@dataclass
class CleanupResult:
    rows_deleted: dict[str, int]
    files_deleted: int
    bytes_freed: int

    def to_json(self) -> dict[str, object]:
        return {
            "rows_deleted": self.rows_deleted,
            "files_deleted": self.files_deleted,
            "bytes_freed": self.bytes_freed,
        }


def cleanup(
    engine: Engine,
    pool: Pool,
    older_than: float = 0.0,
    progress: Callable[[str, int, int | None], None] | None = None,
) -> CleanupResult:
    cutoff = time.time() - older_than
    rc = db.repository_content
    rows: dict[str, int] = {}
    with db.writing(engine) as conn:
        for name, table, kind in (
            ("objects", db.objects, Kind.OBJECT),
            ("commits", db.commits, Kind.COMMIT),
            ("refs", db.refs, Kind.REF),
            ("deltas", db.deltas, Kind.DELTA),
        ):
            used = select(rc.c.id).where(and_(rc.c.kind == kind, rc.c.content_id == table.c.id))
            rows[name] = int(conn.execute(table.delete().where(~used.exists())).rowcount)
    with engine.connect() as conn:
        wanted = {(c, t) for c, t in conn.execute(select(db.objects.c.checksum, db.objects.c.type))}
        summaries = set(conn.execute(select(db.repository_versions.c.summary_digest)).scalars())
        conn_deltas = [
            (f, t) for f, t in conn.execute(select(db.deltas.c.from_commit, db.deltas.c.to_commit))
        ]
    files = freed = 0
    root = pool.repo.path / "objects"
    prefixes = sorted(os.listdir(root)) if root.is_dir() else []
    for i, prefix in enumerate(prefixes):
        if progress is not None:
            progress("Scanning pool objects (directories)", i, len(prefixes))
        directory = root / prefix
        for entry in os.scandir(directory):
            stem, _, suffix = entry.name.partition(".")
            otype = _SUFFIX.get(suffix)
            if otype is not None and (prefix + stem, int(otype)) in wanted:
                continue
            st = entry.stat(follow_symlinks=False)
            if st.st_mtime > cutoff:
                continue
            os.unlink(entry.path)
            files += 1
            freed += st.st_size
    for directory in pool.files.iterdir() if pool.files.is_dir() else []:
        for entry in os.scandir(directory):
            if directory.name + entry.name in summaries:
                continue
            st = entry.stat(follow_symlinks=False)
            if st.st_mtime <= cutoff:
                os.unlink(entry.path)
                files += 1
                freed += st.st_size
    kept = set(conn_deltas)
    emptied: set[str] = set()
    for delta in list_deltas(pool.repo):
        directory = pool.repo.path / delta.dir
        if (delta.from_commit, delta.to_commit) in kept or (
            (directory / "superblock").stat().st_mtime > cutoff
        ):
            continue
        for entry in os.scandir(directory):
            freed += entry.stat(follow_symlinks=False).st_size
            files += 1
        shutil.rmtree(directory, ignore_errors=True)
        emptied.add(delta.to_commit)
    # Generating a delta also wrote its target's index: drop the removed entries.
    for target in emptied:
        reindex(pool.repo, target)
    tmp = pool.repo.path / "tmp"
    for entry in os.scandir(tmp) if tmp.is_dir() else []:
        # Staging directories of imports that died; an exclusive task runs alone.
        if entry.stat(follow_symlinks=False).st_mtime <= cutoff:
            if entry.is_dir(follow_symlinks=False):
                shutil.rmtree(entry.path, ignore_errors=True)
            else:
                os.unlink(entry.path)
    if progress is not None:
        progress("Scanning pool objects (directories)", len(prefixes), len(prefixes))
    return CleanupResult(rows, files, freed)
