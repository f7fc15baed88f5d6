"""The database schema (SQLAlchemy Core) and engine set-up.

Content is global and deduplicated (``objects``, ``commits``, ``refs``,
``deltas``); what a repository version holds is recorded with ranges in
``repository_content``: a row is present in version *n* when
``version_added <= n`` and (``version_removed`` is NULL or ``n <
version_removed``).  Unchanged content costs no rows per new version.

The schema is created and evolved only by the Alembic migrations in
``service/migrations`` (:func:`migrate`); the tables here must match them
(``tests/test_service_api.py`` compares the two).  Only portable SQL: the same
schema runs on PostgreSQL.
"""

from __future__ import annotations

import enum
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    Connection,
    Engine,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    SmallInteger,
    String,
    Table,
    Text,
    UniqueConstraint,
    create_engine,
    event,
    false,
    text,
    true,
)

metadata = MetaData()


class Kind(enum.IntEnum):
    """What a ``repository_content`` row points at."""

    OBJECT = 1
    COMMIT = 2
    REF = 3
    DELTA = 4


repositories = Table(
    "repositories",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("name", String(255), nullable=False, unique=True),
    Column("description", Text, nullable=False, default=""),
    Column("created", Float, nullable=False),
    Column("next_version", Integer, nullable=False, default=1),
    Column("retain_versions", Integer, nullable=True),
    Column("compute_delta", Boolean, nullable=False, server_default=true()),
    Column("delta_depth", Integer, nullable=False, server_default=text("1")),
    Column("delta_from_scratch", Boolean, nullable=False, server_default=false()),
)

repository_versions = Table(
    "repository_versions",
    metadata,
    Column("id", Integer, primary_key=True),
    Column(
        "repository_id",
        Integer,
        ForeignKey("repositories.id", ondelete="CASCADE"),
        nullable=False,
    ),
    Column("number", Integer, nullable=False),
    Column("created", Float, nullable=False),
    Column("summary_digest", String(64), nullable=False),
    Column("content_summary", JSON, nullable=False),
    UniqueConstraint("repository_id", "number", name="uq_repository_versions_number"),
)

objects = Table(
    "objects",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("checksum", String(64), nullable=False),
    Column("type", SmallInteger, nullable=False),
    Column("size", BigInteger, nullable=False),
    UniqueConstraint("checksum", "type", name="uq_objects_checksum_type"),
)

commits = Table(
    "commits",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("checksum", String(64), nullable=False, unique=True),
    Column("parent", String(64), nullable=True),
    Column("subject", Text, nullable=False),
    Column("body", Text, nullable=False),
    Column("timestamp", BigInteger, nullable=False),
    Column("version", Text, nullable=True),
    Column("ref_bindings", JSON, nullable=False),
    Column("root_dirtree", String(64), nullable=False),
    Column("root_dirmeta", String(64), nullable=False),
    Column("signed", Boolean, nullable=False),
    Column("size", BigInteger, nullable=False),
)

refs = Table(
    "refs",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("name", String(1024), nullable=False),
    Column("commit", String(64), nullable=False),
    UniqueConstraint("name", "commit", name="uq_refs_name_commit"),
)

deltas = Table(
    "deltas",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("from_commit", String(64), nullable=True),
    Column("to_commit", String(64), nullable=False),
    Column("digest", String(64), nullable=False),
    Column("size", BigInteger, nullable=False),
    UniqueConstraint("from_commit", "to_commit", "digest", name="uq_deltas_pair"),
)

repository_content = Table(
    "repository_content",
    metadata,
    Column("id", Integer, primary_key=True),
    Column(
        "repository_id",
        Integer,
        ForeignKey("repositories.id", ondelete="CASCADE"),
        nullable=False,
    ),
    Column("kind", SmallInteger, nullable=False),
    Column("content_id", Integer, nullable=False),
    Column("version_added", Integer, nullable=False),
    Column("version_removed", Integer, nullable=True),
    Index("ix_repository_content_added", "repository_id", "kind", "version_added"),
    Index("ix_repository_content_removed", "repository_id", "kind", "version_removed"),
    Index("ix_repository_content_content", "kind", "content_id"),
)

remotes = Table(
    "remotes",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("name", String(255), nullable=False, unique=True),
    Column("url", Text, nullable=False),
    Column("options", JSON, nullable=False),
    Column("created", Float, nullable=False),
)

distributions = Table(
    "distributions",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("name", String(255), nullable=False, unique=True),
    Column("base_path", String(1024), nullable=False, unique=True),
    Column(
        "repository_id",
        Integer,
        ForeignKey("repositories.id", ondelete="SET NULL"),
        nullable=True,
    ),
    Column("version", Integer, nullable=True),
    Column("private", Boolean, nullable=False, default=False),
    Column("created", Float, nullable=False),
)

tasks = Table(
    "tasks",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("kind", String(64), nullable=False),
    Column("state", String(16), nullable=False),
    Column(
        "repository_id",
        Integer,
        ForeignKey("repositories.id", ondelete="SET NULL"),
        nullable=True,
    ),
    Column("args", JSON, nullable=False),
    Column("progress", JSON, nullable=False),
    Column("error", JSON, nullable=True),
    Column("created_version", Integer, nullable=True),
    Column("result", JSON, nullable=True),
    Column("cancel_requested", Boolean, nullable=False, default=False),
    Column("created", Float, nullable=False),
    Column("started", Float, nullable=True),
    Column("finished", Float, nullable=True),
    Index("ix_tasks_state", "state", "created"),
)

tokens = Table(
    "tokens",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("name", String(255), nullable=False, unique=True),
    Column("digest", String(64), nullable=False, unique=True),
    Column("scope", String(16), nullable=False),
    Column("created", Float, nullable=False),
)


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    dbapi_connection.isolation_level = None  # we emit BEGIN ourselves (below)
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


def _sqlite_begin(conn: Connection) -> None:
    # A write transaction takes SQLite's write lock up front, so two writers
    # never deadlock upgrading a read lock; reads stay plain deferred BEGINs.
    immediate = conn.get_execution_options().get("immediate", False)
    conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


@contextmanager
def writing(engine: Engine) -> Iterator[Connection]:
    """A write transaction (``BEGIN IMMEDIATE`` on SQLite), committed on success."""
    with engine.connect().execution_options(immediate=True) as conn, conn.begin():
        yield conn


def make_engine(url: str) -> Engine:
    """An engine; for SQLite, WAL mode, foreign keys and a generous busy timeout."""
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})
        event.listen(engine, "connect", _sqlite_pragmas)
        event.listen(engine, "begin", _sqlite_begin)
        return engine
    return create_engine(url, pool_pre_ping=True)


def migrate(engine: Engine) -> None:
    """Bring the schema to the newest Alembic revision."""
    from alembic import command
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(Path(__file__).parent / "migrations"))
    with writing(engine) as conn:
        config.attributes["connection"] = conn
        command.upgrade(config, "head")
