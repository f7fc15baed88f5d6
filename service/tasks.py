"""Database-backed tasks, run by worker threads inside the service process.

A task is a row (waiting → running → completed | failed | canceled).  Workers
claim the oldest waiting task whose repository no running task holds — that
is the exclusive per-repository lock, so two imports into one repository run
one after the other and land as consecutive versions.  Cancelling a waiting
task is immediate; a running task sees the request at its next progress
report.  At start-up, tasks a dead process left running become failed.
"""

from __future__ import annotations

import logging
import threading
import time
import traceback
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Engine, and_, exists, or_, select, update
from sqlalchemy.orm import aliased

from libpyostree.errors import OstreeError

from . import db
from .importer import error_code

log = logging.getLogger("pyostree.tasks")

WAITING, RUNNING, COMPLETED, FAILED, CANCELED = (
    "waiting",
    "running",
    "completed",
    "failed",
    "canceled",
)
FINAL = (COMPLETED, FAILED, CANCELED)
EXCLUSIVE = ("orphans_cleanup",)
"""Kinds that run alone: no other task runs beside them (orphan cleanup must not
delete a pool file an import is about to count as present)."""
_PROGRESS_INTERVAL = 0.5


class TaskCanceled(Exception):
    """Raised inside a task when cancellation was requested."""


class TaskFailed(OstreeError):
    """A task's expected failure: its message is the task's error (no traceback)."""


@dataclass
class TaskContext:
    engine: Engine
    task_id: str
    args: dict[str, Any]
    repository_id: int | None
    cancel_event: threading.Event
    result: dict[str, Any] | None = None
    """What the task reports besides a created version (stored in ``tasks.result``)."""
    _progress: list[dict[str, Any]] = field(default_factory=list)
    _last_write: float = 0.0

    def check_canceled(self) -> None:
        if self.cancel_event.is_set():
            raise TaskCanceled()

    def progress(
        self, message: str, done: int, total: int | None = None, *, force: bool = False
    ) -> None:
        """Report one progress item (by message); written at most every half second."""
        for item in self._progress:
            if item["message"] == message:
                item["done"], item["total"] = done, total
                break
        else:
            self._progress.append({"message": message, "done": done, "total": total})
        now = time.monotonic()
        if force or now - self._last_write >= _PROGRESS_INTERVAL:
            self._last_write = now
            with db.writing(self.engine) as conn:
                conn.execute(
                    update(db.tasks)
                    .where(db.tasks.c.id == self.task_id)
                    .values(progress=[dict(p) for p in self._progress])
                )
                requested = conn.execute(
                    select(db.tasks.c.cancel_requested).where(db.tasks.c.id == self.task_id)
                ).scalar()
            if requested:
                self.cancel_event.set()
        self.check_canceled()


Handler = Callable[[TaskContext], "int | None"]
"""Runs a task; returns the created version number (or None)."""


class TaskRunner:
    def __init__(self, engine: Engine, workers: int, handlers: dict[str, Handler]) -> None:
        self.engine = engine
        self.workers = workers
        self.handlers = handlers
        self._wake = threading.Condition()
        self._notified = 0
        """Bumped by :meth:`notify`: a worker whose claim found nothing sleeps only
        if no notification came meanwhile (else a task submitted during the claim
        would wait for the next poll)."""
        self._stop = False
        self._threads: list[threading.Thread] = []
        self._cancel: dict[str, threading.Event] = {}
        self._claim_lock = threading.Lock()
        self.on_finished: Callable[[str], None] | None = None

    # -- life cycle

    def recover(self) -> int:
        """Tasks left running by a dead process become failed; returns how many."""
        with db.writing(self.engine) as conn:
            result = conn.execute(
                update(db.tasks)
                .where(db.tasks.c.state == RUNNING)
                .values(
                    state=FAILED,
                    finished=time.time(),
                    error={
                        "code": "interrupted",
                        "message": "The service stopped while this task was running",
                    },
                )
            )
        return int(result.rowcount)

    def start(self) -> None:
        self.recover()
        for i in range(self.workers):
            thread = threading.Thread(target=self._loop, name=f"pyostree-worker-{i}", daemon=True)
            thread.start()
            self._threads.append(thread)

    def stop(self) -> None:
        with self._wake:
            self._stop = True
            self._wake.notify_all()
        for event in self._cancel.values():
            event.set()
        for thread in self._threads:
            thread.join(timeout=30)

    # -- API side

    def submit(self, kind: str, args: dict[str, Any], repository_id: int | None) -> str:
        task_id = str(uuid.uuid4())
        with db.writing(self.engine) as conn:
            conn.execute(
                db.tasks.insert().values(
                    id=task_id,
                    kind=kind,
                    state=WAITING,
                    repository_id=repository_id,
                    args=args,
                    progress=[],
                    cancel_requested=False,
                    created=time.time(),
                )
            )
        self.notify()
        return task_id

    def notify(self) -> None:
        with self._wake:
            self._notified += 1
            self._wake.notify_all()

    def cancel(self, task_id: str) -> str | None:
        """Request cancellation; returns the task's state afterwards (None: unknown)."""
        t = db.tasks
        with db.writing(self.engine) as conn:
            state = conn.execute(select(t.c.state).where(t.c.id == task_id)).scalar()
            if state is None:
                return None
            if state == WAITING:
                conn.execute(
                    update(t)
                    .where(t.c.id == task_id)
                    .values(state=CANCELED, finished=time.time(), cancel_requested=True)
                )
                return CANCELED
            if state == RUNNING:
                conn.execute(update(t).where(t.c.id == task_id).values(cancel_requested=True))
        event = self._cancel.get(task_id)
        if event is not None:
            event.set()
        return str(state)

    # -- workers

    def _claim(self) -> tuple[str, str, dict[str, Any], int | None] | None:
        t = db.tasks
        other = aliased(t)
        # Claimable: no running task holds the same repository, no exclusive task
        # runs, and an exclusive task waits until nothing runs.
        busy = exists().where(
            and_(
                other.c.state == RUNNING,
                or_(
                    other.c.repository_id == t.c.repository_id,
                    other.c.kind.in_(EXCLUSIVE),
                    t.c.kind.in_(EXCLUSIVE),
                ),
            )
        )
        # ... and no exclusive task waits since before it (no starvation).
        earlier = aliased(t)
        queued = exists().where(
            and_(
                earlier.c.state == WAITING,
                earlier.c.kind.in_(EXCLUSIVE),
                earlier.c.created < t.c.created,
            )
        )
        with self._claim_lock, db.writing(self.engine) as conn:
            row = conn.execute(
                select(t.c.id, t.c.kind, t.c.args, t.c.repository_id)
                .where(t.c.state == WAITING, ~busy, ~queued)
                .order_by(t.c.created)
                .limit(1)
            ).first()
            if row is None:
                return None
            claimed = conn.execute(
                update(t)
                .where(t.c.id == row.id, t.c.state == WAITING)
                .values(state=RUNNING, started=time.time())
            )
            if claimed.rowcount != 1:
                return None
            return row.id, row.kind, dict(row.args), row.repository_id

    def _loop(self) -> None:
        while True:
            with self._wake:
                if self._stop:
                    return
                notified = self._notified
            claimed = self._claim()
            if claimed is None:
                with self._wake:
                    if self._stop:
                        return
                    if self._notified == notified:
                        self._wake.wait(timeout=1.0)
                continue
            self._run(*claimed)
            self.notify()  # the repository lock is free: others may go

    def _run(self, task_id: str, kind: str, args: dict[str, Any], repo_id: int | None) -> None:
        event = self._cancel.setdefault(task_id, threading.Event())
        ctx = TaskContext(self.engine, task_id, args, repo_id, event)
        values: dict[str, Any]
        try:
            handler = self.handlers[kind]
            version = handler(ctx)
            values = {"state": COMPLETED, "created_version": version}
        except TaskCanceled:
            values = {
                "state": CANCELED,
                "error": {"code": "canceled", "message": "Canceled on request"},
            }
        except OstreeError as exc:
            values = {"state": FAILED, "error": {"code": error_code(exc), "message": str(exc)}}
        except Exception as exc:
            log.error("task %s (%s) crashed:\n%s", task_id, kind, traceback.format_exc())
            values = {
                "state": FAILED,
                "error": {"code": "internal", "message": f"{type(exc).__name__}: {exc}"},
            }
        finally:
            self._cancel.pop(task_id, None)
        values["finished"] = time.time()
        values["progress"] = ctx._progress
        values["result"] = ctx.result
        with db.writing(self.engine) as conn:
            conn.execute(update(db.tasks).where(db.tasks.c.id == task_id).values(**values))
        if self.on_finished is not None:
            self.on_finished(task_id)
