"""Repository versions: what a version holds, and making a new one atomically.

A version's state is its refs (name → commit), its commits, its objects
((checksum, type) — commits, detached metadata, dirtrees, dirmetas, files) and
its deltas.  Operations compute the wanted state of the next version;
:func:`create_version` diffs it against the latest version and, when something
changed, records the difference, the content summary and the regenerated
summary file in the caller's transaction — so a version appears whole or not
at all.
"""

from __future__ import annotations

import json
import os
import queue
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection, Engine, and_, func, insert, or_, select, update
from sqlalchemy.sql.elements import ColumnElement

from libpyostree.errors import OstreeError
from libpyostree.names import Checksum
from libpyostree.objects import ObjectType
from libpyostree.objects.metadata import parse_commit
from libpyostree.summary import summary_for_refs

from . import db
from .db import Kind
from .pool import Pool

ObjectKey = tuple[str, int]
"""(checksum, ObjectType value)."""
DeltaKey = tuple[str | None, str, str]
"""(from commit or None for scratch, to commit, superblock sha256 hex)."""

_BATCH = 2000
"""Rows per IN (...) lookup: under SQLite's 32766 bound variables (3.32+)."""


@dataclass
class VersionState:
    refs: dict[str, str] = field(default_factory=dict)
    commits: set[str] = field(default_factory=set)
    objects: set[ObjectKey] = field(default_factory=set)
    deltas: set[DeltaKey] = field(default_factory=set)
    ids: dict[ObjectKey, int] = field(default_factory=dict, compare=False)
    """``objects`` row ids known for (some of) ``objects``: saves lookups when a
    version is made from loaded ones (copies, removals)."""

    def copy(self) -> VersionState:
        return VersionState(
            dict(self.refs), set(self.commits), set(self.objects), set(self.deltas), self.ids
        )


def present(n: int) -> ColumnElement[bool]:
    """``repository_content`` rows present in version ``n``."""
    rc = db.repository_content
    return and_(
        rc.c.version_added <= n,
        or_(rc.c.version_removed.is_(None), rc.c.version_removed > n),
    )


def latest_number(conn: Connection, repository_id: int) -> int:
    rv = db.repository_versions
    number = conn.execute(
        select(func.max(rv.c.number)).where(rv.c.repository_id == repository_id)
    ).scalar()
    return int(number or 0)


def load_state(conn: Connection, repository_id: int, number: int) -> VersionState:
    rc = db.repository_content
    mine = and_(rc.c.repository_id == repository_id, present(number))
    state = VersionState()
    r, c, o, d = db.refs, db.commits, db.objects, db.deltas
    state.refs = dict(
        conn.execute(
            select(r.c.name, r.c.commit)
            .join(rc, and_(rc.c.kind == Kind.REF, rc.c.content_id == r.c.id))
            .where(mine)
        ).all()
    )
    state.commits = set(
        conn.execute(
            select(c.c.checksum)
            .join(rc, and_(rc.c.kind == Kind.COMMIT, rc.c.content_id == c.c.id))
            .where(mine)
        ).scalars()
    )
    state.ids = {
        (csum, otype): oid
        for oid, csum, otype in conn.execute(
            select(o.c.id, o.c.checksum, o.c.type)
            .join(rc, and_(rc.c.kind == Kind.OBJECT, rc.c.content_id == o.c.id))
            .where(mine)
        )
    }
    state.objects = set(state.ids)
    state.deltas = set(
        conn.execute(
            select(d.c.from_commit, d.c.to_commit, d.c.digest)
            .join(rc, and_(rc.c.kind == Kind.DELTA, rc.c.content_id == d.c.id))
            .where(mine)
        )
    )
    return state


# -- closures ----------------------------------------------------------------------------


def commit_closure(
    pool: Pool, commits: Iterable[str], have: set[ObjectKey] | None = None
) -> set[ObjectKey]:
    """Every object of the given commits (each to depth 0), read from the pool.

    Dirtrees already in ``have`` are not walked again: a version holding a
    dirtree holds its whole closure.  Pool objects were verified when written.
    """
    have = have or set()
    out: set[ObjectKey] = set()
    repo = pool.repo
    for checksum in commits:
        info = repo.read_commit(checksum, verify=False)
        out |= commit_objects(pool, [checksum])
        stack: list[tuple[str, str]] = [(info.root_dirtree, info.root_dirmeta)]
        while stack:
            tree, meta = stack.pop()
            out.add((meta, ObjectType.DIR_META))
            key = (tree, int(ObjectType.DIR_TREE))
            if key in out or key in have:
                continue
            out.add(key)
            files, dirs = pool.children(tree)
            out.update((f, ObjectType.FILE) for f in files)
            stack.extend(dirs)
    return out


def commit_objects(pool: Pool, commits: Iterable[str]) -> set[ObjectKey]:
    """The commits' own objects: each commit and its detached metadata, if any."""
    out: set[ObjectKey] = set()
    for checksum in commits:
        out.add((checksum, ObjectType.COMMIT))
        if pool.repo.has_object(checksum, ObjectType.COMMIT_META):
            out.add((checksum, ObjectType.COMMIT_META))
    return out


# -- making versions ---------------------------------------------------------------------


def _chunks(items: list[Any]) -> Iterator[list[Any]]:
    for i in range(0, len(items), _BATCH):
        yield items[i : i + _BATCH]


def _object_ids(
    conn: Connection,
    pool: Pool | None,
    keys: set[ObjectKey],
    known: dict[ObjectKey, int],
    sizes: dict[ObjectKey, int] | None = None,
) -> dict[ObjectKey, int]:
    """Ids of the ``objects`` rows for ``keys`` (``known`` ones are not looked up),
    inserting the missing ones; their sizes come from ``sizes``, else from the
    files in ``pool``.

    A big commit brings ~100k objects: lookups and the insert go straight to the
    driver (SQLAlchemy's per-statement compilation and per-row parameter
    processing cost several times SQLite's own work here)."""
    ids: dict[ObjectKey, int] = {k: known[k] for k in keys if k in known}
    by_csum = sorted({c for c, t in keys if (c, t) not in ids})
    _lookup_objects(conn, by_csum, keys, ids)
    missing = sorted(k for k in keys if k not in ids)  # index order: faster inserts
    if missing:
        rows = []
        root = str(pool.repo.path / "objects") if pool is not None else ""
        suffix = {int(t): t.archive_suffix for t in ObjectType}
        for csum, otype in missing:
            if sizes is not None and (csum, otype) in sizes:
                rows.append((csum, otype, sizes[csum, otype]))
                continue
            try:  # plain strings: pathlib costs more than the stat itself here
                size = os.stat(f"{root}/{csum[:2]}/{csum[2:]}.{suffix[otype]}").st_size
            except FileNotFoundError:
                raise OstreeError(
                    f"Object {csum}.{ObjectType(otype).name_str} is not in the pool"
                ) from None
            rows.append((csum, otype, size))
        _bulk_insert(conn, db.objects, ("checksum", "type", "size"), rows)
        _lookup_objects(conn, sorted({c for c, _t in missing}), keys, ids)
    return ids


ObjectRow = tuple[str, int, int]
"""(checksum, ObjectType value, size of the pool file)."""


class ObjectRows:
    """Makes the ``objects`` rows of objects a running pull has stored, in a
    thread beside it, and keeps their ids (:attr:`ids`).

    The version's transaction then only has to link them: for a 50k-object
    sync that moves ~1 s of lookups and inserts off the critical path, into
    time when the service process is idle waiting for the pull's child.  Rows
    are committed as they come, :data:`_ROWS_PER_TRANSACTION` at a time; should the task fail,
    rows no version references are reclaimed by orphan cleanup (which never
    runs beside another task).  Use as a context manager: leaving it waits for
    the rows in flight.
    """

    def __init__(self, engine: Engine) -> None:
        self.ids: dict[ObjectKey, int] = {}
        self._engine = engine
        self._queue: queue.SimpleQueue[list[ObjectRow] | None] = queue.SimpleQueue()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="pyostree-object-rows")

    def __enter__(self) -> ObjectRows:
        self._thread.start()
        return self

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        self._queue.put(None)
        self._thread.join()
        if self._error is not None and exc_type is None:
            raise self._error

    def add(self, rows: list[ObjectRow]) -> None:
        """Rows to make (from the thread reading the pull's messages)."""
        self._queue.put(rows)

    def _run(self) -> None:
        pending: list[ObjectRow] = []
        while True:
            rows = self._queue.get()
            if rows is not None:
                pending.extend(rows)
                if len(pending) < _ROWS_PER_TRANSACTION:
                    continue
            if pending and self._error is None:
                sizes = {(checksum, otype): size for checksum, otype, size in pending}
                try:
                    with db.writing(self._engine) as conn:
                        self.ids.update(_object_ids(conn, None, set(sizes), {}, sizes))
                except Exception as exc:  # raised by __exit__, in the task's thread
                    self._error = exc
            pending = []
            if rows is None:
                return


_ROWS_PER_TRANSACTION = 2000
"""Rows gathered before a transaction: random checksums touch index pages all over,
so a transaction per report (~600 rows) costs about a third more CPU for the same
50k rows; larger batches would leave more to write after the pull ends."""


def _lookup_objects(
    conn: Connection, checksums: list[str], keys: set[ObjectKey], ids: dict[ObjectKey, int]
) -> None:
    """Add to ``ids`` the rows of ``checksums`` whose (checksum, type) is in ``keys``."""
    o = db.objects
    marker = _MARKERS.get(conn.dialect.paramstyle)
    for chunk in _chunks(checksums):
        if marker is None:  # numeric/named drivers: the portable (slower) way
            rows: Iterable[Any] = conn.execute(
                select(o.c.id, o.c.checksum, o.c.type).where(o.c.checksum.in_(chunk))
            )
        else:
            rows = conn.exec_driver_sql(
                f"SELECT id, checksum, type FROM objects "
                f"WHERE checksum IN ({', '.join([marker] * len(chunk))})",
                tuple(chunk),
            ).fetchall()
        for oid, csum, otype in rows:
            if (csum, otype) in keys:
                ids[(csum, otype)] = oid


_MARKERS = {"qmark": "?", "format": "%s", "pyformat": "%s"}


def _bulk_insert(
    conn: Connection, table: Any, columns: tuple[str, ...], rows: list[tuple[Any, ...]]
) -> None:
    """A plain multi-row INSERT straight to the driver's ``executemany``: a new
    version of a big commit adds ~100k membership rows, and SQLAlchemy's
    per-row parameter processing cost more than SQLite's work."""
    marker = _MARKERS.get(conn.dialect.paramstyle)
    if marker is None:  # numeric/named drivers: the portable (slower) way
        conn.execute(insert(table), [dict(zip(columns, row, strict=True)) for row in rows])
        return
    sql = (
        f"INSERT INTO {table.name} ({', '.join(columns)}) "
        f"VALUES ({', '.join([marker] * len(columns))})"
    )
    conn.exec_driver_sql(sql, rows)


def _link(conn: Connection, repository_id: int, kind: Kind, ids: list[int], number: int) -> None:
    """``repository_content`` rows adding content ``ids`` in version ``number``.

    On SQLite, one statement over a JSON array: a 50k-object version is linked
    in a third of the time ``executemany`` takes binding each row from Python."""
    if not ids:
        return
    if conn.dialect.name == "sqlite":
        conn.exec_driver_sql(
            "INSERT INTO repository_content (repository_id, kind, content_id, version_added) "
            "SELECT ?, ?, value, ? FROM json_each(?)",
            (repository_id, int(kind), number, json.dumps(ids)),
        )
        return
    rows = [(repository_id, int(kind), cid, number) for cid in ids]
    columns = ("repository_id", "kind", "content_id", "version_added")
    _bulk_insert(conn, db.repository_content, columns, rows)


def _commit_ids(conn: Connection, pool: Pool, checksums: set[str]) -> dict[str, int]:
    c = db.commits
    ids: dict[str, int] = {}
    for chunk in _chunks(sorted(checksums)):
        ids.update(conn.execute(select(c.c.checksum, c.c.id).where(c.c.checksum.in_(chunk))).all())
    rows = []
    for checksum in sorted(checksums - ids.keys()):
        data = pool.repo.read_object_raw(checksum, ObjectType.COMMIT)
        info = parse_commit(data)
        meta = pool.repo.read_commitmeta(checksum) or {}
        rows.append(
            {
                "checksum": checksum,
                "parent": info.parent,
                "subject": info.subject,
                "body": info.body,
                "timestamp": info.timestamp,
                "version": info.version,
                "ref_bindings": info.ref_bindings,
                "root_dirtree": info.root_dirtree,
                "root_dirmeta": info.root_dirmeta,
                "signed": any(k == "ostree.gpgsigs" or k.startswith("ostree.sign.") for k in meta),
                "size": len(data),
            }
        )
    if rows:
        conn.execute(insert(c), rows)
        for chunk in _chunks([r["checksum"] for r in rows]):
            ids.update(
                conn.execute(select(c.c.checksum, c.c.id).where(c.c.checksum.in_(chunk))).all()
            )
    return ids


def _ref_ids(conn: Connection, pairs: set[tuple[str, str]]) -> dict[tuple[str, str], int]:
    r = db.refs
    ids: dict[tuple[str, str], int] = {}
    names = sorted({n for n, _c in pairs})
    for chunk in _chunks(names):
        for rid, name, commit in conn.execute(
            select(r.c.id, r.c.name, r.c.commit).where(r.c.name.in_(chunk))
        ):
            if (name, commit) in pairs:
                ids[(name, commit)] = rid
    missing = [{"name": n, "commit": c} for n, c in sorted(pairs - ids.keys())]
    if missing:
        conn.execute(insert(r), missing)
        return _ref_ids(conn, pairs)
    return ids


def _delta_size(pool: Pool, key: DeltaKey) -> int:
    """Bytes of the delta's files in the pool (superblock and parts)."""
    from libpyostree.deltas.names import DeltaName

    name = DeltaName(Checksum(key[0]) if key[0] else None, Checksum(key[1]))
    directory = pool.repo.path / name.dir
    if not directory.is_dir():
        return 0
    return sum(p.stat().st_size for p in directory.iterdir() if p.is_file())


def _delta_ids(conn: Connection, pool: Pool, keys: set[DeltaKey]) -> dict[DeltaKey, int]:
    d = db.deltas
    ids: dict[DeltaKey, int] = {}
    for key in keys:
        found = conn.execute(
            select(d.c.id).where(
                d.c.from_commit.is_(None) if key[0] is None else d.c.from_commit == key[0],
                d.c.to_commit == key[1],
                d.c.digest == key[2],
            )
        ).scalar()
        if found is None:
            found = conn.execute(
                insert(d).values(
                    from_commit=key[0],
                    to_commit=key[1],
                    digest=key[2],
                    size=_delta_size(pool, key),
                )
            ).inserted_primary_key[0]  # type: ignore[index]
        ids[key] = int(found)
    return ids


def _counts(
    added: dict[Kind, int], removed: dict[Kind, int], state: VersionState
) -> dict[str, dict[str, int]]:
    names = {Kind.REF: "refs", Kind.COMMIT: "commits", Kind.OBJECT: "objects", Kind.DELTA: "deltas"}
    sizes = {
        Kind.REF: len(state.refs),
        Kind.COMMIT: len(state.commits),
        Kind.OBJECT: len(state.objects),
        Kind.DELTA: len(state.deltas),
    }
    return {
        "added": {names[k]: added.get(k, 0) for k in names},
        "removed": {names[k]: removed.get(k, 0) for k in names},
        "present": {names[k]: sizes[k] for k in names},
    }


def summary_bytes(pool: Pool, state: VersionState, timestamp: int) -> bytes:
    deltas = {(f"{f}-{t}" if f else t): bytes.fromhex(digest) for f, t, digest in state.deltas}
    return summary_for_refs(
        pool.repo,
        {n: Checksum(c) for n, c in state.refs.items()},
        deltas=deltas,
        timestamp=timestamp,
    )


def create_version(
    conn: Connection, pool: Pool, repository_id: int, base: VersionState, new: VersionState
) -> int | None:
    """Record ``new`` as the repository's next version; None when nothing changed.

    ``base`` must be the state of the latest version (the caller holds the
    repository's task lock, so it cannot move).  Runs in the caller's transaction,
    which also applies the repository's ``retain_versions``.
    """
    if (
        new.refs == base.refs
        and new.commits == base.commits
        and new.objects == base.objects
        and new.deltas == base.deltas
    ):
        return None
    repo_row = conn.execute(
        select(db.repositories.c.next_version).where(db.repositories.c.id == repository_id)
    ).one()
    number = int(repo_row.next_version)
    latest = latest_number(conn, repository_id)
    rc = db.repository_content
    added: dict[Kind, int] = {}
    removed: dict[Kind, int] = {}

    def apply(kind: Kind, add_ids: Iterable[int], remove_ids: Iterable[int]) -> None:
        new_ids = sorted(add_ids)
        _link(conn, repository_id, kind, new_ids, number)
        gone = sorted(remove_ids)
        for chunk in _chunks(gone):
            conn.execute(
                update(rc)
                .where(
                    rc.c.repository_id == repository_id,
                    rc.c.kind == kind,
                    rc.c.content_id.in_(chunk),
                    present(latest),
                )
                .values(version_removed=number)
            )
        added[kind], removed[kind] = len(new_ids), len(gone)

    obj_add, obj_del = new.objects - base.objects, base.objects - new.objects
    oids = _object_ids(conn, pool, obj_add | obj_del, {**base.ids, **new.ids})
    apply(Kind.OBJECT, (oids[k] for k in obj_add), (oids[k] for k in obj_del))
    com_add, com_del = new.commits - base.commits, base.commits - new.commits
    cids = _commit_ids(conn, pool, com_add | com_del)
    apply(Kind.COMMIT, (cids[k] for k in com_add), (cids[k] for k in com_del))
    new_pairs, old_pairs = set(new.refs.items()), set(base.refs.items())
    rids = _ref_ids(conn, new_pairs ^ old_pairs)
    apply(
        Kind.REF,
        (rids[k] for k in new_pairs - old_pairs),
        (rids[k] for k in old_pairs - new_pairs),
    )
    dids = _delta_ids(conn, pool, new.deltas ^ base.deltas)
    apply(
        Kind.DELTA,
        (dids[k] for k in new.deltas - base.deltas),
        (dids[k] for k in base.deltas - new.deltas),
    )
    now = time.time()
    digest = pool.put_file(summary_bytes(pool, new, int(now)))
    conn.execute(
        insert(db.repository_versions).values(
            repository_id=repository_id,
            number=number,
            created=now,
            summary_digest=digest,
            content_summary=_counts(added, removed, new),
        )
    )
    conn.execute(
        update(db.repositories)
        .where(db.repositories.c.id == repository_id)
        .values(next_version=number + 1)
    )
    apply_retention(conn, repository_id)
    return number


def delete_version(conn: Connection, repository_id: int, number: int) -> None:
    """Delete one version; what every other version holds stays exactly the same."""
    rv, rc = db.repository_versions, db.repository_content
    latest = latest_number(conn, repository_id)
    conn.execute(rv.delete().where(rv.c.repository_id == repository_id, rv.c.number == number))
    if number == latest:
        # Content the deleted version removed is present again in the new latest.
        previous = latest_number(conn, repository_id)
        conn.execute(
            update(rc)
            .where(
                rc.c.repository_id == repository_id,
                rc.c.version_removed > previous,
            )
            .values(version_removed=None)
        )
    # Rows no remaining version holds.
    covered = (
        select(rv.c.id)
        .where(
            rv.c.repository_id == rc.c.repository_id,
            rv.c.number >= rc.c.version_added,
            or_(rc.c.version_removed.is_(None), rv.c.number < rc.c.version_removed),
        )
        .exists()
    )
    conn.execute(rc.delete().where(rc.c.repository_id == repository_id, ~covered))


def apply_retention(conn: Connection, repository_id: int) -> list[int]:
    """Delete the versions older than the latest ``retain_versions``; returns them."""
    keep = conn.execute(
        select(db.repositories.c.retain_versions).where(db.repositories.c.id == repository_id)
    ).scalar()
    if not keep:
        return []
    rv = db.repository_versions
    numbers = list(
        conn.execute(
            select(rv.c.number)
            .where(rv.c.repository_id == repository_id)
            .order_by(rv.c.number.desc())
        ).scalars()
    )
    old = sorted(numbers[keep:])
    for number in old:
        delete_version(conn, repository_id, number)
    return old


def history(parents: dict[str, str | None], head: str, depth: int) -> list[str]:
    """``head`` and its ancestors held in ``parents``, to ``depth`` (0 = head only,
    N parents, -1 = all); a parent that is not held ends the history."""
    out = [head]
    current = parents.get(head)
    while current is not None and current in parents and (depth < 0 or len(out) <= depth):
        out.append(current)
        current = parents[current]
    return out


def commit_parents(conn: Connection, checksums: Iterable[str]) -> dict[str, str | None]:
    """checksum → parent for commits (from the ``commits`` rows)."""
    c = db.commits
    out: dict[str, str | None] = {}
    for chunk in _chunks(sorted(checksums)):
        out.update(
            conn.execute(select(c.c.checksum, c.c.parent).where(c.c.checksum.in_(chunk))).all()
        )
    return out


def pool_parents(pool: Pool, checksums: Iterable[str]) -> dict[str, str | None]:
    """checksum → parent read from the pool's commit objects (commits without rows yet)."""
    out: dict[str, str | None] = {}
    for checksum in checksums:
        parent = pool.repo.read_commit(checksum, verify=False).parent
        out[checksum] = str(parent) if parent is not None else None
    return out
