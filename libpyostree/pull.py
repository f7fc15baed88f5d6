"""Pull from an OSTree HTTP repository into an archive repository.

The :class:`~libpyostree.pullplan.Planner` decides what to fetch; this driver
keeps a bounded number of requests in flight from one thread (libcurl's multi
interface, :class:`~libpyostree.http.Transport`), verifies ``.filez`` content
in two verifier threads beside it (inflate, sha256 and file writes release the
GIL), and writes each verified object with one atomic link.  Metadata is verified by the
planner before it is written.  Commits and their detached metadata are
written only when the whole pull has succeeded, then refs: a commit in the
repository always has its complete closure, so an interrupted pull is
resumed by running it again (stored objects are never fetched twice) and a
failed one leaves no commit or ref behind.

Static deltas (``deltas=True``, the default; ostree itself never uses them
for archive repositories, we do): delta parts are fetched (size capped by
their header), checked against their sha256, and applied by the worker
verifier threads with :func:`libpyostree.deltas.apply.execute_part`, every object
re-hashed before it is stored; the target commit is still written last.
"""

from __future__ import annotations

import contextlib
import os
import queue
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

__all__ = ["PullProgress", "PullResult", "RemoteOptions", "StoredObject", "pull"]


@dataclass(frozen=True, slots=True)
class PullProgress:
    objects_fetched: int
    bytes_fetched: int
    outstanding: int
    """Requests queued or in flight."""
    stored: tuple[StoredObject, ...] = ()
    """The fetched dirtrees, dirmetas and files written since the previous report
    (commits and detached metadata are written last, objects from static deltas
    are not listed): the service records them while the pull still runs."""


StoredObject = tuple[str, ObjectType, int]
"""(checksum, type, size of the stored file in bytes)."""


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
    fetched = size = 0
    stored: list[StoredObject] = []

    def store(fetch: Fetch, body: bytes | IO[bytes] | None) -> int:
        """Verify and store a ``.filez`` or apply a delta part (in a verifier thread)."""
        if fetch.kind is FetchKind.DELTA_PART:
            return _apply_part(repo, planner, fetch, body)
        assert body is not None
        return _store_content(fetch, body, objects_dir, tmpdir)

    def start(fetch: Fetch) -> None:
        if fetch.kind is FetchKind.DELTA_PART:
            if fetch.inline:
                verifier.submit(fetch, None, 0)
            else:
                transport.submit(fetch.path, fetch, max_size=fetch.max_size, not_found_ok=False)
        elif fetch.kind is FetchKind.OBJECT and fetch.objtype is ObjectType.FILE:
            transport.submit(fetch.path, fetch, not_found_ok=False, spill_dir=tmpdir)
        else:
            transport.submit(fetch.path, fetch, max_size=fetch.max_size)

    verifier = _Verifier(store, _VERIFIERS)
    window = 4 * max(1, options.concurrency)
    try:
        for fetch in planner.start():
            start(fetch)
        last = 0.0
        while transport.pending or verifier.pending:
            if transport.pending:
                responses = transport.wait(0.02 if verifier.pending else 1.0)
            else:
                responses = []
                verifier.wait()
            for response in responses:
                fetch = response.tag
                if response.error is not None:
                    raise response.error
                if response.body is not None or response.file is not None:
                    fetched += 1
                    size += response.size
                if fetch.kind is FetchKind.DELTA_PART or (
                    fetch.kind is FetchKind.OBJECT and fetch.objtype is ObjectType.FILE
                ):
                    verifier.submit(fetch, response.file or response.body, response.size)
                else:
                    for checksum, objtype, raw in planner.feed(fetch, response.body):
                        repo.write_object_raw(checksum, objtype, raw)
                        stored.append((checksum, objtype, len(raw)))
            for fetch, written, body_size in verifier.done():
                if fetch.kind is FetchKind.DELTA_PART:
                    planner.part_applied(fetch, written)
                else:
                    planner.stored(fetch)
                    assert fetch.checksum is not None
                    stored.append((fetch.checksum, ObjectType.FILE, body_size))
            # Keep the transfers busy with a few queued behind them; bodies wait for
            # the verifiers within a bound, in number and bytes.
            room = window - transport.pending - verifier.pending
            if verifier.queued_bytes < _MAX_QUEUED_BYTES and room > 0:
                for fetch in planner.pop(room):
                    start(fetch)
            now = time.monotonic()
            if progress is not None and now - last >= 0.2:
                last = now
                outstanding = transport.pending + verifier.pending
                progress(PullProgress(fetched, size, outstanding, tuple(stored)))
                stored.clear()
        result = planner.result()
        _publish(
            repo, result, write_refs=write_refs, mirror=mirror, remote=remote, all_refs=refs is None
        )
        if progress is not None:
            progress(PullProgress(fetched, size, 0, tuple(stored)))
        return result
    finally:
        verifier.close()
        transport.close()


_VERIFIERS = 2
"""Threads verifying and storing ``.filez`` bodies: inflate, sha256 and file writes
release the GIL, so they run beside the transfer loop on another core."""

_MAX_QUEUED_BYTES = 64 << 20
"""Fetched bodies waiting for a verifier, at most (in memory; spilled ones count too)."""

_Body = bytes | IO[bytes] | None


class _Verifier:
    """Threads running ``job(fetch, body)``; results come back through one queue."""

    def __init__(self, job: Callable[[Fetch, _Body], int], size: int) -> None:
        self.job = job
        self.pending = 0
        self.queued_bytes = 0
        self._todo: queue.SimpleQueue[tuple[Fetch, _Body, int] | None] = queue.SimpleQueue()
        self._done: queue.SimpleQueue[tuple[Fetch, int, int, BaseException | None]] = (
            queue.SimpleQueue()
        )
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(target=self._run, name=f"pyostree-verify-{i}", daemon=True)
            for i in range(size)
        ]
        for thread in self._threads:
            thread.start()

    def _run(self) -> None:
        while True:
            item = self._todo.get()
            if item is None:
                return
            fetch, body, size = item
            try:
                if self._stop.is_set():
                    raise OstreeError("pull stopped")
                self._done.put((fetch, self.job(fetch, body), size, None))
            except BaseException as exc:
                self._done.put((fetch, 0, size, exc))
            finally:
                if body is not None and not isinstance(body, bytes):
                    body.close()  # a spilled body's temporary file

    def submit(self, fetch: Fetch, body: _Body, size: int) -> None:
        self.pending += 1
        self.queued_bytes += size
        self._todo.put((fetch, body, size))

    def wait(self) -> None:
        """Block until a job is done (then :meth:`done` returns it)."""
        item = self._done.get()
        self._done.put(item)

    def done(self) -> list[tuple[Fetch, int, int]]:
        """The jobs finished so far, with the body sizes they were given (raises the
        first failure)."""
        out: list[tuple[Fetch, int, int]] = []
        while True:
            try:
                fetch, written, size, error = self._done.get_nowait()
            except queue.Empty:
                return out
            self.pending -= 1
            self.queued_bytes -= size
            if error is not None:
                raise error
            out.append((fetch, written, size))

    def close(self) -> None:
        """Stop: queued jobs are skipped, running ones finish."""
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


def _apply_part(repo: Repo, planner: Planner, fetch: Fetch, data: _Body) -> int:
    """Verify and apply one delta part (in a verifier thread); returns the number of
    objects it wrote.  ``data`` is the downloaded part (None: inline)."""
    assert fetch.checksum is not None and fetch.part is not None
    sb = planner.superblock(fetch.checksum)
    header = sb.parts[fetch.part]
    if fetch.inline:
        payload = open_part(sb.inline_parts[fetch.part], None)
    else:
        assert isinstance(data, bytes)
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


def _store_content(fetch: Fetch, body: bytes | IO[bytes], objects_dir: str, tmpdir: str) -> int:
    """Verify and store one ``.filez`` (in a verifier thread).  Bodies in memory are
    written with one atomic link; spilled ones (over 16 MiB) are verified in
    chunks from their temporary file and hard-linked into place."""
    checksum = fetch.checksum
    assert checksum is not None
    final = f"{objects_dir}/{checksum[:2]}/{checksum[2:]}.filez"
    if isinstance(body, bytes):
        _filez_name(checksum, body)
        try:
            link_new_file(final, body, tmpdir)
        except FileNotFoundError:  # the first object of its fan-out directory
            os.makedirs(os.path.dirname(final), exist_ok=True)
            link_new_file(final, body, tmpdir)
        return 1
    body.flush()
    actual = filez_file_checksum(body.name)
    if actual != checksum:
        raise _corrupt_file(checksum, actual)
    os.makedirs(os.path.dirname(final), exist_ok=True)
    with contextlib.suppress(FileExistsError):
        os.link(body.name, final)
    return 1


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
