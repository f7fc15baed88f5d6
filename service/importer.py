"""Run a library import or pull in a child process (``python -m service.importer``).

Why a child: the service process has threads (the event loop, task workers),
so the library would verify content in threads under the GIL; a fresh,
single-threaded child forks its own verification workers and uses every
core.  Its peak memory goes back to the system when it exits, a crash in it
cannot take the service down, and cancelling is terminating it (objects it
already wrote are complete and verified; unreferenced ones are orphans).

Protocol: the request is one JSON object on the child's stdin; the child
writes JSON lines to stdout — ``["progress", …]`` (import: objects, bytes read,
bytes total; pull: objects, bytes fetched, requests outstanding) and, from a
pull, ``["stored", [[checksum, type, size], …]]`` (objects written since the
previous one) …, then ``["done", result]`` or
``["error", code, message]``.
A plain subprocess rather than ``multiprocessing``: spawn would re-import the
embedding program's ``__main__``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fnmatch
import json
import logging
import os
import subprocess
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from libpyostree import records
from libpyostree.errors import OstreeError

if TYPE_CHECKING:
    from libpyostree.archive import ImportResult

    from .versions import ObjectRow

log = logging.getLogger("pyostree.import")


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
    trees: bytes
    """:attr:`libpyostree.archive.ImportResult.trees`: the archive commits' tree objects."""

    @classmethod
    def of(cls, result: ImportResult) -> ChildResult:
        return cls(
            commits=[str(c) for c in result.commits],
            refs={n: str(c) for n, c in result.refs.items()},
            objects_added=result.objects_added,
            objects_present=result.objects_present,
            trees=result.trees,
        )

    def to_json(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "trees": self.trees.hex()}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ChildResult:
        return cls(**{**data, "trees": bytes.fromhex(data["trees"])})

    def tree_objects(self) -> set[tuple[str, int]]:
        out: set[tuple[str, int]] = set(records.unpack(self.trees))
        return out


def error_code(exc: BaseException) -> str:
    """The error's ``code``, else snake_case of its class: ``ImportRefusedError`` →
    ``import_refused`` (task errors and the child's reports use the same codes)."""
    code = getattr(exc, "code", None)
    if isinstance(code, str):
        return code
    name = type(exc).__name__.removesuffix("Error")
    out = "".join("_" + ch.lower() if ch.isupper() else ch for ch in name).lstrip("_")
    return out or "error"


def _emit(out: IO[str], *message: Any) -> None:
    out.write(json.dumps(message) + "\n")
    out.flush()


Send = Callable[..., None]
"""``send(kind, *values)``: one message to the service."""


def _import(request: dict[str, Any], send: Send) -> dict[str, Any]:
    from libpyostree.archive import ImportProgress, import_archive
    from libpyostree.names import Checksum
    from libpyostree.repo import Repo

    def report(p: ImportProgress) -> None:
        send("progress", p.objects, p.bytes_read, p.bytes_total)

    result = import_archive(
        Repo.open(request["pool"]),
        request["archive"],
        ref=request["ref"],
        sha256=request["sha256"],
        target_refs={n: Checksum(c) for n, c in request["target_refs"].items()},
        progress=report,
        update_summary=False,
    )
    return ChildResult.of(result).to_json()


def _pull(request: dict[str, Any], send: Send) -> dict[str, Any]:
    from libpyostree.http import RemoteOptions
    from libpyostree.pull import PullProgress, pull
    from libpyostree.repo import Repo

    def report(p: PullProgress) -> None:
        if p.stored:
            send("stored", p.stored)
        send("progress", p.objects_fetched, p.bytes_fetched, p.outstanding)

    include, exclude = request["include_refs"], request["exclude_refs"]

    def selected(name: str) -> bool:
        if include is not None and not any(fnmatch.fnmatchcase(name, g) for g in include):
            return False
        return not (exclude and any(fnmatch.fnmatchcase(name, g) for g in exclude))

    refs = None
    if include is not None and not any(set(g) & set("*?[") for g in include):
        refs = list(include)  # plain names: no summary needed
    result = pull(
        Repo.open(request["pool"]),
        request["url"],
        refs,
        depth=request["depth"],
        options=RemoteOptions(**request["options"]),
        progress=report,
        write_refs=False,
        ref_filter=selected,
        local_refs=request.get("local_refs") or {},
    )
    return {
        "refs": {n: str(c) for n, c in result.refs.items()},
        "visited": sorted(result.visited),
        "fetched": result.fetched,
        "walked": sorted(result.commits),
        "trees": None if result.trees is None else result.trees.hex(),
    }


_OPERATIONS = {"import": _import, "pull": _pull}


def child_main() -> int:
    out = sys.stdout
    sys.stdout = sys.stderr  # nothing else may write to the protocol stream
    request = json.loads(sys.stdin.readline())
    parent = int(request["parent_pid"])

    def send(kind: str, *values: Any) -> None:
        if os.getppid() != parent:  # the service died (kill -9): stop, don't finish alone
            os._exit(1)
        _emit(out, kind, *values)

    try:
        result = _OPERATIONS[request["op"]](request, send)
    except OstreeError as exc:
        _emit(out, "error", error_code(exc), str(exc))
        return 1
    _emit(out, "done", result)
    return 0


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
    request = {
        "op": "import",
        "pool": pool,
        "archive": archive,
        "ref": ref,
        "sha256": sha256,
        "target_refs": target_refs,
    }
    return ChildResult.from_json(run_child(request, progress, canceled))


def run_pull(
    pool: str,
    *,
    url: str,
    include_refs: list[str] | None,
    exclude_refs: list[str] | None,
    depth: int,
    options: dict[str, Any],
    local_refs: dict[str, str],
    progress: Callable[[int, int, int], None],
    stored: Callable[[list[ObjectRow]], None],
    canceled: Callable[[], bool],
) -> dict[str, Any]:
    """Pull the selected refs of ``url`` into the pool, in a child process; returns
    ``{"refs": {name: commit}, "visited": [commit…], "fetched": N, "walked": [commit…],
    "trees": hex or None}`` (:attr:`libpyostree.pullplan.PullResult.trees` of the
    ``walked`` commits, those fetched by this pull).  ``stored(rows)`` is called
    with the objects the child wrote as it goes (see
    :attr:`libpyostree.pull.PullProgress.stored`)."""

    def on_stored(rows: list[list[Any]]) -> None:
        stored([(checksum, objtype, size) for checksum, objtype, size in rows])

    request = {
        "op": "pull",
        "pool": pool,
        "url": url,
        "include_refs": include_refs,
        "exclude_refs": exclude_refs,
        "depth": depth,
        "options": options,
        "local_refs": local_refs,
    }
    return run_child(request, progress, canceled, stored=on_stored)


def run_child(
    request: dict[str, Any],
    progress: Callable[..., None],
    canceled: Callable[[], bool],
    **handlers: Callable[..., None],
) -> dict[str, Any]:
    """Run one operation in a child process and return its result; ``handlers``
    take the child's other messages by kind."""
    request = {**request, "parent_pid": os.getpid()}
    what = str(request["op"])
    env = dict(os.environ)
    here = str(Path(__file__).resolve().parents[1])  # this very code, not another install
    env["PYTHONPATH"] = os.pathsep.join(p for p in (here, env.get("PYTHONPATH")) if p)
    child = subprocess.Popen(
        [sys.executable, "-m", "service.importer"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
        text=True,
    )
    assert child.stdin is not None and child.stdout is not None and child.stderr is not None
    errors: list[str] = []
    drain = threading.Thread(target=lambda: errors.extend(child.stderr), daemon=True)  # type: ignore[arg-type]
    drain.start()
    watcher = threading.Thread(target=_watch, args=(child, canceled), daemon=True)
    watcher.start()
    try:
        child.stdin.write(json.dumps(request) + "\n")
        child.stdin.close()
        for line in child.stdout:
            message = json.loads(line)
            if message[0] == "progress":
                progress(*message[1:])
            elif message[0] in handlers:
                handlers[message[0]](*message[1:])
            elif message[0] == "done":
                result: dict[str, Any] = message[1]
                return result
            else:
                raise ImportFailed(message[1], message[2])
        child.wait()
        if canceled():
            raise ImportFailed("canceled", "Canceled on request")
        drain.join(timeout=5)
        log.error("%s process failed (exit code %s):\n%s", what, child.returncode, "".join(errors))
        tail = "".join(errors).strip().splitlines()[-1:] or ["no output"]
        raise ImportFailed(
            "internal", f"The {what} process failed (exit code {child.returncode}): {tail[0]}"
        )
    finally:
        if child.poll() is None:
            child.kill()
        child.wait()
        child.stdout.close()
        drain.join(timeout=5)
        if not drain.is_alive():
            child.stderr.close()


def _watch(child: subprocess.Popen[str], canceled: Callable[[], bool]) -> None:
    """Terminate the child as soon as cancellation is requested."""
    while child.poll() is None:
        if canceled():
            child.terminate()
            return
        with contextlib.suppress(subprocess.TimeoutExpired):
            child.wait(timeout=0.25)


if __name__ == "__main__":
    sys.exit(child_main())
