"""service.versions.ObjectRows: the ``objects`` rows a running pull's reports make."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from sqlalchemy import Engine, insert, select, text

from service import db
from service.versions import ObjectRow, ObjectRows


@pytest.fixture
def engine(tmp_path: Path) -> Engine:
    engine = db.make_engine(f"sqlite:///{tmp_path / 'rows.db'}")
    db.migrate(engine)
    return engine


def rows(start: int, stop: int) -> list[ObjectRow]:
    return [(hashlib.sha256(b"%d" % i).hexdigest(), 1 + i % 4, 100 + i) for i in range(start, stop)]


def stored(engine: Engine) -> dict[tuple[str, int], tuple[int, int]]:
    o = db.objects
    with engine.connect() as conn:
        return {
            (c, t): (i, s)
            for i, c, t, s in conn.execute(select(o.c.id, o.c.checksum, o.c.type, o.c.size))
        }


def test_rows_and_ids(engine: Engine) -> None:
    # One row exists already (an earlier import): it is reused, not duplicated.
    first = rows(0, 1)[0]
    with db.writing(engine) as conn:
        conn.execute(insert(db.objects).values(checksum=first[0], type=first[1], size=first[2]))
    with ObjectRows(engine) as made:
        made.add(rows(0, 700))  # under a transaction's worth, then over it
        made.add(rows(700, 2600))
        made.add(rows(2500, 3100))  # reports may repeat an object
    table = stored(engine)
    assert len(table) == 3100
    assert made.ids == {key: oid for key, (oid, _size) in table.items()}
    assert {key: size for key, (_oid, size) in table.items()} == {
        (c, t): s for c, t, s in rows(0, 3100)
    }


def test_failure_is_raised_on_exit(engine: Engine) -> None:
    with db.writing(engine) as conn:
        conn.execute(text("DROP TABLE objects"))
    with pytest.raises(Exception, match="objects"), ObjectRows(engine) as made:
        made.add(rows(0, 10))


def test_the_body_error_wins(engine: Engine) -> None:
    with db.writing(engine) as conn:
        conn.execute(text("DROP TABLE objects"))
    with pytest.raises(KeyError), ObjectRows(engine) as made:
        made.add(rows(0, 10))
        raise KeyError("the pull failed")
