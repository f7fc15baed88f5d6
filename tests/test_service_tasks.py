"""service.tasks.TaskRunner on its own: claiming, results, and the wake-up protocol."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, select

from service import db
from service.tasks import COMPLETED, FAILED, FINAL, TaskContext, TaskFailed, TaskRunner


@pytest.fixture
def engine(tmp_path: Path) -> Engine:
    engine = db.make_engine(f"sqlite:///{tmp_path / 'tasks.db'}")
    db.migrate(engine)
    return engine


def wait_final(engine: Engine, task_id: str) -> Any:
    done = threading.Event()
    for _ in range(600):
        with engine.connect() as conn:
            row = conn.execute(select(db.tasks).where(db.tasks.c.id == task_id)).one()
        if row.state in FINAL:
            return row
        done.wait(0.05)
    raise AssertionError(f"task {task_id} never finished")


@pytest.fixture
def runner(engine: Engine) -> Iterator[TaskRunner]:
    def ok(ctx: TaskContext) -> int | None:
        ctx.result = {"echo": ctx.args["value"]}
        return 7

    def fails(ctx: TaskContext) -> int | None:
        raise TaskFailed("no such thing")

    runner = TaskRunner(engine, 1, {"ok": ok, "fails": fails})
    yield runner
    runner.stop()


def test_results_and_failures(engine: Engine, runner: TaskRunner) -> None:
    runner.start()
    done = wait_final(engine, runner.submit("ok", {"value": 3}, None))
    assert (done.state, done.created_version, done.result) == (COMPLETED, 7, {"echo": 3})
    failed = wait_final(engine, runner.submit("fails", {}, None))
    assert failed.state == FAILED
    assert failed.error == {"code": "task_failed", "message": "no such thing"}


def test_notification_during_an_empty_claim_is_not_lost(engine: Engine, runner: TaskRunner) -> None:
    """A task submitted while a worker's claim is finding nothing: the worker must
    claim again at once, not sleep until its next poll."""
    claims = 0
    waits_between = 0
    second_claim = threading.Event()
    claim = runner._claim

    def racing_claim() -> Any:
        nonlocal claims
        claims += 1
        found = claim()
        if claims == 1:
            runner.notify()  # as submit() does, right after this claim looked
        elif claims == 2:
            second_claim.set()
        return found

    class CountingCondition(threading.Condition):
        def wait(self, timeout: float | None = None) -> bool:
            nonlocal waits_between
            if claims == 1:
                waits_between += 1
            return super().wait(timeout)

    runner._claim = racing_claim  # type: ignore[method-assign]
    runner._wake = CountingCondition()
    runner.start()
    assert second_claim.wait(timeout=30)
    assert waits_between == 0
