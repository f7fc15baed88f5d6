"""Pull from an OSTree HTTP repository into an archive repository.

The :class:`~libpyostree.pullplan.Planner` decides what to fetch; this driver
fetches with a bounded number of requests in flight (a thread pool over one
keep-alive :class:`~libpyostree.http.Transport`), verifies ``.filez`` content
in those threads (inflate + sha256 release the GIL on large buffers), and
writes each verified object with one atomic link.  Metadata is verified by the
planner before it is written.  Commits and their detached metadata are
written only when the whole pull has succeeded, then refs: a commit in the
repository always has its complete closure, so an interrupted pull is
resumed by running it again (stored objects are never fetched twice) and a
failed one leaves no commit or ref behind.

Static deltas (``deltas=True``, the default; ostree itself never uses them
for archive repositories, we do): delta parts are fetched (size capped by
their header), checked against their sha256, and applied by the worker
threads with :func:`libpyostree.deltas.apply.execute_part`, every object
re-hashed before it is stored; the target commit is still written last.
"""

from __future__ import annotations

import contextlib
import os
import queue
import tempfile
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import IO

from ._workers import filez_file_checksum
from .deltas.apply import execute_part, is_commit_partial
from .deltas.errors import CorruptDeltaError
from .deltas.part import open_part
from .errors import CorruptObjectError, OstreeError
from .http import RemoteOptions, Transport
from .names import Checksum, validate_remote_name
from .objects import ObjectType, filez_object_checksum
from .pullplan import Fetch, FetchKind, Planner, PullResult
from .repo import Repo, link_new_file
from .summary import update_summary

__all__ = ["PullProgress", "PullResult", "RemoteOptions", "pull"]


@dataclass(frozen=True, slots=True)
class PullProgress:
    objects_fetched: int
    bytes_fetched: int
    outstanding: int
    """Requests queued or in flight."""


def pull(
    repo: Repo,
    url: str,
    refs: Sequence[str] | None = None,
    *,
    depth: int = 0,
    mirror: bool = False,
    remote: str = "origin",
    options: RemoteOptions | None = None,
    progress: Callable[[PullProgress], None] | None = None,
    write_refs: bool = True,
    ref_filter: Callable[[str], bool] | None = None,
    deltas: bool = True,
    local_refs: Mapping[str, str] | None = None,
) -> PullResult:
    """Pull ``refs`` (None: every ref in the remote's summary) with history to ``depth``.

    Refs are written as ``refs/heads/NAME`` with ``mirror``, else as
    ``refs/remotes/REMOTE/NAME``; ``write_refs=False`` writes none (the
    service's pool: the result says what was pulled); ``ref_filter`` drops refs
    (the service's include/exclude globs); ``deltas=False`` never uses static
    deltas (``--disable-static-deltas``); ``local_refs`` (remote ref name →
    commit) replaces the repository's refs as the starting points deltas are
    chosen from (the service passes its version's refs).  A mirror of every ref
    also stores the remote's ``summary`` (and ``summary.sig``) verbatim, as
    ostree does.
    """
    if not mirror:
        validate_remote_name(remote)
    options = options or RemoteOptions()
    transport = Transport(url, options)
    planner = Planner(
        refs=refs,
        depth=depth,
        have=repo.has_object,
        read_local=repo.read_object_raw,
        ref_filter=ref_filter,
        deltas=deltas,
        local_ref=(
            local_refs.get
            if local_refs is not None
            else lambda name: _local_ref(repo, name if mirror else f"{remote}:{name}")
        ),
        commit_complete=lambda checksum: _commit_complete(repo, checksum),
    )
    tmpdir = str(repo.path / "tmp")
    objects_dir = str(repo.path / "objects")
    counters = [0, 0]  # objects, bytes; updated from several threads: only for progress
    part_objects: dict[Fetch, int] = {}

    def fetch_one(fetch: Fetch) -> bytes | None:
        if fetch.kind is FetchKind.DELTA_PART:
            part_objects[fetch] = _apply_part(repo, transport, planner, fetch, counters)
            return None
        if fetch.kind is FetchKind.OBJECT and fetch.objtype is ObjectType.FILE:
            counters[1] += _fetch_content(transport, fetch, objects_dir, tmpdir)
            counters[0] += 1
            return None
        data = transport.get(fetch.path, max_size=fetch.max_size)
        if data is not None:
            counters[1] += len(data)
            counters[0] += 1
        return data

    workers = _Workers(fetch_one, max(1, options.concurrency))
    try:
        for fetch in planner.start():
            workers.submit(fetch)
        last = 0.0
        while workers.pending:
            fetch, data, error = workers.next_done()
            if error is not None:
                raise error
            if fetch.kind is FetchKind.OBJECT and fetch.objtype is ObjectType.FILE:
                planner.stored(fetch)
            elif fetch.kind is FetchKind.DELTA_PART:
                planner.part_applied(fetch, part_objects.pop(fetch, 0))
            else:
                for checksum, objtype, raw in planner.feed(fetch, data):
                    repo.write_object_raw(checksum, objtype, raw)
            # Keep every worker busy, with a little queued behind them.
            for fetch in planner.pop(2 * workers.size - workers.pending):
                workers.submit(fetch)
            now = time.monotonic()
            if progress is not None and now - last >= 0.2:
                last = now
                progress(PullProgress(counters[0], counters[1], workers.pending))
        result = planner.result()
        _publish(
            repo, result, write_refs=write_refs, mirror=mirror, remote=remote, all_refs=refs is None
        )
        if progress is not None:
            progress(PullProgress(counters[0], counters[1], 0))
        return result
    finally:
        workers.close()
        transport.close()


class _Workers:
    """Threads running ``job`` on submitted fetches; results come back in completion
    order through one queue (cheaper than waiting on a set of futures)."""

    def __init__(self, job: Callable[[Fetch], bytes | None], size: int) -> None:
        self.job = job
        self.size = size
        self.pending = 0
        self._todo: queue.SimpleQueue[Fetch | None] = queue.SimpleQueue()
        self._done: queue.SimpleQueue[tuple[Fetch, bytes | None, BaseException | None]] = (
            queue.SimpleQueue()
        )
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(target=self._run, name=f"pyostree-pull-{i}", daemon=True)
            for i in range(size)
        ]
        for thread in self._threads:
            thread.start()

    def _run(self) -> None:
        while True:
            fetch = self._todo.get()
            if fetch is None:
                return
            if self._stop.is_set():
                self._done.put((fetch, None, OstreeError("pull stopped")))
                continue
            try:
                self._done.put((fetch, self.job(fetch), None))
            except BaseException as exc:
                self._done.put((fetch, None, exc))

    def submit(self, fetch: Fetch) -> None:
        self.pending += 1
        self._todo.put(fetch)

    def next_done(self) -> tuple[Fetch, bytes | None, BaseException | None]:
        item = self._done.get()
        self.pending -= 1
        return item

    def close(self) -> None:
        """Stop: queued fetches are skipped, running ones finish (each is bounded by
        the transport's timeouts)."""
        self._stop.set()
        for _ in self._threads:
            self._todo.put(None)
        for thread in self._threads:
            thread.join()


def _local_ref(repo: Repo, name: str) -> str | None:
    try:
        return repo.read_ref(name)
    except OstreeError:
        return None


def _commit_complete(repo: Repo, checksum: str) -> bool:
    """Held and not partial (``state/CHECKSUM.commitpartial``, left by ostree)."""
    return repo.has_object(checksum, ObjectType.COMMIT) and not is_commit_partial(repo, checksum)


def _apply_part(
    repo: Repo, transport: Transport, planner: Planner, fetch: Fetch, counters: list[int]
) -> int:
    """Fetch (unless inline), verify and apply one delta part (in a worker thread);
    returns the number of objects it wrote."""
    assert fetch.checksum is not None and fetch.part is not None
    sb = planner.superblock(fetch.checksum)
    header = sb.parts[fetch.part]
    if fetch.inline:
        payload = open_part(sb.inline_parts[fetch.part], None)
    else:
        data = transport.get(fetch.path, max_size=fetch.max_size, not_found_ok=False)
        assert data is not None
        counters[1] += len(data)
        counters[0] += 1
        if len(data) != header.size:
            raise CorruptDeltaError(
                f"Delta part {fetch.path} is {len(data)} bytes, its header says {header.size}"
            )
        try:
            payload = open_part(data, header.checksum)
        except CorruptDeltaError as exc:
            raise CorruptDeltaError(f"{fetch.path}: {exc}") from None
    stats = execute_part(repo, header.objects, payload, index=fetch.part, to_commit=sb.to_commit)
    return stats.objects_written


def _fetch_content(transport: Transport, fetch: Fetch, objects_dir: str, tmpdir: str) -> int:
    """GET, verify and store one ``.filez`` (runs in a worker thread); returns its size.

    Bodies up to 16 MiB are verified in memory; larger ones are spilled to a
    file in ``tmp/``, verified in chunks and hard-linked into place.
    """
    checksum = fetch.checksum
    assert checksum is not None
    final = f"{objects_dir}/{checksum[:2]}/{checksum[2:]}.filez"
    spilled: list[IO[bytes]] = []

    def spill() -> IO[bytes]:
        if not spilled:
            spilled.append(tempfile.NamedTemporaryFile(dir=tmpdir, prefix="pull-"))  # noqa: SIM115 - closed below
        return spilled[0]

    try:
        body = transport.get(fetch.path, not_found_ok=False, spill=spill)
        assert body is not None
        os.makedirs(os.path.dirname(final), exist_ok=True)
        if not spilled:
            _filez_name(checksum, body)
            link_new_file(final, body, tmpdir)
            return len(body)
        sink = spilled[0]
        sink.flush()
        actual = filez_file_checksum(sink.name)
        if actual != checksum:
            raise _corrupt_file(checksum, actual)
        with contextlib.suppress(FileExistsError):
            os.link(sink.name, final)
        return os.fstat(sink.fileno()).st_size
    finally:
        for f in spilled:
            f.close()  # deletes the temp name; the linked object stays


def _filez_name(checksum: str, body: bytes) -> str:
    try:
        actual = filez_object_checksum(body)
    except OstreeError as exc:
        raise CorruptObjectError(
            f"Corrupted file object {checksum}: {exc}", checksum=checksum, objtype="file"
        ) from None
    if actual != checksum:
        raise _corrupt_file(checksum, actual)
    return actual


def _corrupt_file(checksum: str, actual: str) -> CorruptObjectError:
    return CorruptObjectError(
        f"Corrupted file object; checksum expected={checksum} actual={actual}",
        checksum=checksum,
        objtype="file",
        expected=checksum,
        actual=actual,
    )


def _publish(
    repo: Repo, result: PullResult, *, write_refs: bool, mirror: bool, remote: str, all_refs: bool
) -> None:
    """Detached metadata, then commits, then refs: the last things to appear."""
    for checksum, data in sorted(result.commitmeta.items()):
        if checksum in result.commits:
            repo.write_file_atomic(repo.object_relpath(checksum, ObjectType.COMMIT_META), data)
    for checksum, data in sorted(result.commits.items()):
        repo.write_object_raw(checksum, ObjectType.COMMIT, data)
    if not write_refs:
        return
    for name, commit in sorted(result.refs.items()):
        repo.set_ref(name if mirror else f"{remote}:{name}", Checksum(commit))
    if mirror and all_refs and result.summary is not None:
        repo.write_file_atomic("summary", result.summary)
        if result.summary_sig is not None:
            repo.write_file_atomic("summary.sig", result.summary_sig)
        else:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(repo.path / "summary.sig")
    elif mirror and (repo.path / "summary").exists():
        update_summary(repo)
