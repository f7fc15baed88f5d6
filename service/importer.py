"""Run a library import in a child process.

Why a child: the service process has threads (the event loop, task workers),
so the library would verify content in threads under the GIL; a fresh,
single-threaded child forks its own verification workers and uses every
core.  Its peak memory goes back to the system when it exits, a crash in it
cannot take the service down, and cancelling is terminating it (objects it
already wrote are complete and verified; unreferenced ones are orphans).

The child reports progress and its result over a pipe.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any

from libpyostree.errors import OstreeError

_SPAWN = multiprocessing.get_context("spawn")
log = logging.getLogger("pyostree.import")
_POLL = 0.25


class ImportFailed(OstreeError):
    """The child's import failed; ``code`` names the library error (``import_refused``…)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class ChildResult:
    commits: list[str]
    refs: dict[str, str]
    objects_added: int
    objects_present: int


def _snake(name: str) -> str:
    name = name.removesuffix("Error")
    return "".join("_" + ch.lower() if ch.isupper() else ch for ch in name).lstrip("_")


def _child(pool: str, kwargs: dict[str, Any], conn: Connection) -> None:
    from libpyostree.archive import ImportProgress, import_archive
    from libpyostree.names import Checksum
    from libpyostree.repo import Repo

    parent = kwargs.pop("parent_pid")

    def progress(p: ImportProgress) -> None:
        if os.getppid() != parent:  # the service died (kill -9): stop, don't finish alone
            os._exit(1)
        conn.send(("progress", p.objects, p.bytes_read, p.bytes_total))

    try:
        refs = {n: Checksum(c) for n, c in kwargs.pop("target_refs").items()}
        result = import_archive(
            Repo.open(pool), progress=progress, target_refs=refs, update_summary=False, **kwargs
        )
        conn.send(
            (
                "done",
                ChildResult(
                    [str(c) for c in result.commits],
                    {n: str(c) for n, c in result.refs.items()},
                    result.objects_added,
                    result.objects_present,
                ),
            )
        )
    except OstreeError as exc:
        conn.send(("error", _snake(type(exc).__name__), str(exc)))
    except BaseException as exc:
        conn.send(("error", "internal", f"{type(exc).__name__}: {exc}", traceback.format_exc()))
    finally:
        conn.close()


def run_import(
    pool: str,
    *,
    archive: str,
    ref: str | None,
    sha256: str | None,
    target_refs: dict[str, str],
    progress: Callable[[int, int, int | None], None],
    canceled: Callable[[], bool],
) -> ChildResult:
    """Import ``archive`` into the pool at ``pool`` in a child process.

    ``progress(objects, bytes_read, bytes_total)`` is called in this thread;
    when ``canceled()`` turns true the child is terminated and
    :class:`ImportFailed` (code ``canceled``) raised.
    """
    receiver, sender = _SPAWN.Pipe(duplex=False)
    kwargs: dict[str, Any] = {
        "archive": archive,
        "ref": ref,
        "sha256": sha256,
        "target_refs": target_refs,
    }
    # Not a daemon: daemonic processes may not fork the library's verification workers.
    kwargs["parent_pid"] = os.getpid()
    child = _SPAWN.Process(target=_child, args=(pool, kwargs, sender))
    child.start()
    sender.close()
    try:
        while True:
            if canceled():
                child.terminate()
                raise ImportFailed("canceled", "Canceled on request")
            if not receiver.poll(_POLL):
                if not child.is_alive() and not receiver.poll():
                    raise ImportFailed(
                        "internal", f"The import process died (exit code {child.exitcode})"
                    )
                continue
            try:
                message = receiver.recv()
            except EOFError:
                raise ImportFailed(
                    "internal", f"The import process died (exit code {child.exitcode})"
                ) from None
            if message[0] == "progress":
                progress(*message[1:])
            elif message[0] == "done":
                result: ChildResult = message[1]
                return result
            else:
                if len(message) > 3:
                    log.error("import process crashed:\n%s", message[3])
                raise ImportFailed(message[1], message[2])
    finally:
        receiver.close()
        child.join(timeout=30)
        if child.is_alive():
            child.kill()
            child.join()
