"""The version model (``service/versions.py``): content held with ranges
(``version_added <= n < version_removed``), versions created and deleted without
changing what any other version holds."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import Engine, func, select

from libpyostree.commit import commit_directory
from libpyostree.objects import parse_summary
from service import db
from service.pool import Pool
from service.state import Service, Settings
from service.versions import (
    VersionState,
    commit_closure,
    create_version,
    delete_version,
    latest_number,
    load_state,
    summary_bytes,
)


@dataclass
class Model:
    engine: Engine
    pool: Pool
    root: Path
    repository_id: int
    trees: int = 0

    def commit(self, files: dict[str, bytes], parent: str | None = None) -> str:
        """A commit in the pool (no ref: refs live in version states)."""
        self.trees += 1
        tree = self.root / f"tree{self.trees}"
        tree.mkdir()
        for name, data in files.items():
            (tree / name).write_bytes(data)
        return str(
            commit_directory(
                self.pool.repo,
                tree,
                parent=parent or "",
                timestamp=1_700_000_000 + self.trees,
                owner_uid=0,
                owner_gid=0,
            )
        )

    def state(self, refs: dict[str, str]) -> VersionState:
        """The state holding exactly these refs' commits and their closures."""
        commits = set(refs.values())
        return VersionState(dict(refs), commits, commit_closure(self.pool, commits), set())

    def create(self, refs: dict[str, str]) -> int | None:
        with db.writing(self.engine) as conn:
            base = load_state(conn, self.repository_id, latest_number(conn, self.repository_id))
            return create_version(conn, self.pool, self.repository_id, base, self.state(refs))

    def load(self, number: int) -> VersionState:
        with self.engine.connect() as conn:
            return load_state(conn, self.repository_id, number)

    def delete(self, number: int) -> None:
        with db.writing(self.engine) as conn:
            delete_version(conn, self.repository_id, number)

    def numbers(self) -> list[int]:
        rv = db.repository_versions
        with self.engine.connect() as conn:
            return list(
                conn.execute(
                    select(rv.c.number)
                    .where(rv.c.repository_id == self.repository_id)
                    .order_by(rv.c.number)
                ).scalars()
            )

    def latest(self) -> int:
        with self.engine.connect() as conn:
            return latest_number(conn, self.repository_id)

    def rows(self) -> list[tuple[int, int, int, int | None]]:
        """``repository_content`` as (kind, content_id, added, removed)."""
        rc = db.repository_content
        with self.engine.connect() as conn:
            return sorted(
                (int(k), int(c), int(a), r)
                for k, c, a, r in conn.execute(
                    select(rc.c.kind, rc.c.content_id, rc.c.version_added, rc.c.version_removed)
                )
            )

    def counts(self, number: int) -> dict[str, dict[str, int]]:
        rv = db.repository_versions
        with self.engine.connect() as conn:
            summary: dict[str, dict[str, int]] = conn.execute(
                select(rv.c.content_summary).where(
                    rv.c.repository_id == self.repository_id, rv.c.number == number
                )
            ).scalar_one()
        return summary


@pytest.fixture
def model(tmp_path: Path) -> Iterator[Model]:
    svc = Service(Settings(tmp_path / "data"))
    try:
        with db.writing(svc.engine) as conn:
            repo_id = conn.execute(
                db.repositories.insert().values(
                    name="r", description="", created=time.time(), next_version=1
                )
            ).inserted_primary_key[0]  # type: ignore[index]
            conn.execute(
                db.repository_versions.insert().values(
                    repository_id=repo_id,
                    number=0,
                    created=time.time(),
                    summary_digest=svc.pool.put_file(svc.empty_summary()),
                    content_summary={},
                )
            )
        sources = tmp_path / "sources"
        sources.mkdir()
        yield Model(svc.engine, svc.pool, sources, int(repo_id))
    finally:
        svc.engine.dispose()


def test_version_zero_is_empty(model: Model) -> None:
    assert model.numbers() == [0]
    assert model.load(0) == VersionState()
    # The same empty state again is no change at all.
    assert model.create({}) is None
    assert model.numbers() == [0]


def test_create_version_records_the_difference(model: Model) -> None:
    a = model.commit({"f": b"a"})
    b = model.commit({"f": b"b", "g": b"shared"})
    assert model.create({"x": a}) == 1
    assert model.create({"x": a}) is None  # nothing changed: no version
    assert model.create({"x": b, "y": a}) == 2
    assert model.load(1) == model.state({"x": a})
    assert model.load(2) == model.state({"x": b, "y": a})
    counts = model.counts(2)
    assert counts["present"] == {
        "refs": 2,
        "commits": 2,
        "objects": len(model.state({"x": b, "y": a}).objects),
        "deltas": 0,
    }
    # x moved (one pair gone, one new), y new.
    assert (counts["added"]["refs"], counts["removed"]["refs"]) == (2, 1)
    assert counts["added"]["commits"] == 1
    assert counts["removed"]["commits"] == 0
    # Unchanged content costs no new rows: a's objects keep their version-1 rows.
    a_rows = [r for r in model.rows() if r[2] == 1 and r[3] is None]
    assert len(a_rows) == len(model.state({"x": a}).objects) + 1  # + commit a; ref x moved
    # The summary file of each version is stored content-addressed.
    with model.engine.connect() as conn:
        digest = conn.execute(
            select(db.repository_versions.c.summary_digest).where(
                db.repository_versions.c.number == 2
            )
        ).scalar_one()
    refs = parse_summary(model.pool.read_file(digest)).refs
    assert {r.name: str(r.checksum) for r in refs} == {"x": b, "y": a}
    assert parse_summary(summary_bytes(model.pool, VersionState(), 0)).refs == ()


def build_history(model: Model) -> tuple[list[str], dict[int, VersionState]]:
    """Versions 1-4 adding, moving and removing refs; returns the commits and states."""
    a = model.commit({"f": b"a", "common": b"c"})
    b = model.commit({"f": b"b", "common": b"c"})
    c = model.commit({"f": b"c"}, parent=b)
    d = model.commit({"f": b"d", "common": b"c"})
    assert model.create({"x": a}) == 1
    assert model.create({"x": a, "y": b}) == 2
    assert model.create({"y": c}) == 3  # x removed, y moved
    assert model.create({"y": c, "z": d, "x": a}) == 4  # x back
    states = {n: model.load(n) for n in model.numbers()}
    assert states[3] == model.state({"y": c})
    return [a, b, c, d], states


def test_deleting_a_middle_version_changes_no_other(model: Model) -> None:
    _commits, states = build_history(model)
    for middle in (2, 3):
        model.delete(middle)
        del states[middle]
        assert model.numbers() == sorted(states)
        for number, state in states.items():
            assert model.load(number) == state, number
        assert model.latest() == 4


def test_deleting_the_latest_restores_the_previous(model: Model) -> None:
    (a, _b, c, _d), states = build_history(model)
    model.delete(4)
    assert model.latest() == 3
    for number in (0, 1, 2, 3):
        assert model.load(number) == states[number]
    # The next version is based on version 3, and takes a new number.
    e = model.commit({"f": b"e"})
    assert model.create({"y": c, "e": e}) == 5
    assert model.load(5) == model.state({"y": c, "e": e})
    for number in (0, 1, 2, 3):
        assert model.load(number) == states[number]
    # Delete the latest twice over a gap: 5, then 3 → 2 is the latest.
    model.delete(5)
    model.delete(3)
    assert model.latest() == 2
    assert model.load(2) == states[2]
    assert model.create({"x": a}) == 6
    assert model.load(6) == model.state({"x": a})
    assert model.load(1) == states[1]


def test_rows_held_by_no_version_are_removed(model: Model) -> None:
    _commits, _states = build_history(model)
    for number in (1, 2, 3):
        model.delete(number)
    # Only versions 0 and 4 remain: every row is present in 4, none in 0.
    assert model.numbers() == [0, 4]
    rows = model.rows()
    assert rows
    for _kind, _cid, added, removed in rows:
        assert added <= 4 and (removed is None or removed > 4)
    held = model.load(4)
    assert len(rows) == len(held.refs) + len(held.commits) + len(held.objects)
    # Deleting 0 too: version 4 alone, still whole.
    model.delete(0)
    assert model.load(4) == held
    assert len(model.rows()) == len(rows)


def test_delete_the_latest_drops_its_rows(model: Model) -> None:
    a = model.commit({"f": b"a"})
    b = model.commit({"f": b"b"})
    assert model.create({"x": a}) == 1
    before = model.rows()
    assert model.create({"x": b}) == 2
    model.delete(2)
    # Back to exactly version 1's rows: those it added are gone, those it removed
    # are present again with no end.
    assert model.rows() == before
    rc = db.repository_content
    with model.engine.connect() as conn:
        assert conn.execute(select(func.count()).where(rc.c.version_added == 2)).scalar() == 0
