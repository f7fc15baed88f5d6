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
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass

from ._workers import STREAM_THRESHOLD, filez_file_checksum
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
) -> PullResult:
    """Pull ``refs`` (None: every ref in the remote's summary) with history to ``depth``.

    Refs are written as ``refs/heads/NAME`` with ``mirror``, else as
    ``refs/remotes/REMOTE/NAME``; ``write_refs=False`` writes none (the
    service's pool: the result says what was pulled); ``ref_filter`` drops refs
    (the service's include/exclude globs).  A mirror of every ref
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
    )
    tmpdir = str(repo.path / "tmp")
    objects_dir = str(repo.path / "objects")
    counters = [0, 0]  # objects, bytes

    def fetch_one(fetch: Fetch) -> bytes | None:
        if fetch.kind is FetchKind.OBJECT and fetch.objtype is ObjectType.FILE:
            assert fetch.checksum is not None
            _fetch_content(transport, fetch, objects_dir, tmpdir, counters)
            return None
        data = transport.get(fetch.path, max_size=fetch.max_size)
        if data is not None:
            counters[1] += len(data)
        return data

    try:
        with ThreadPoolExecutor(max(1, options.concurrency)) as pool:
            inflight: dict[Future[bytes | None], Fetch] = {}
            for fetch in planner.start():
                inflight[pool.submit(fetch_one, fetch)] = fetch
            try:
                while inflight:
                    done, _ = wait(inflight, return_when=FIRST_COMPLETED)
                    for future in done:
                        fetch = inflight.pop(future)
                        data = future.result()
                        if fetch.kind is FetchKind.OBJECT and fetch.objtype is ObjectType.FILE:
                            planner.stored(fetch)
                        else:
                            for checksum, objtype, raw in planner.feed(fetch, data):
                                repo.write_object_raw(checksum, objtype, raw)
                    for fetch in planner.pop(options.concurrency * 2 - len(inflight)):
                        inflight[pool.submit(fetch_one, fetch)] = fetch
                    if progress is not None:
                        progress(PullProgress(counters[0], counters[1], len(inflight)))
            finally:
                for future in inflight:
                    future.cancel()
        result = planner.result()
        result.fetched = max(result.fetched, counters[0])
        _publish(
            repo, result, write_refs=write_refs, mirror=mirror, remote=remote, all_refs=refs is None
        )
        return result
    finally:
        transport.close()


def _fetch_content(
    transport: Transport, fetch: Fetch, objects_dir: str, tmpdir: str, counters: list[int]
) -> None:
    """GET, verify and store one ``.filez`` (runs in a pool thread)."""
    checksum = fetch.checksum
    assert checksum is not None
    final = f"{objects_dir}/{checksum[:2]}/{checksum[2:]}.filez"
    with tempfile.NamedTemporaryFile(dir=tmpdir, prefix="pull-", delete=False) as sink:
        path = sink.name
    try:
        with open(path, "r+b") as f:
            data = transport.get(fetch.path, not_found_ok=False, sink=f)
        del data
        size = os.path.getsize(path)
        counters[1] += size
        if size > STREAM_THRESHOLD:
            actual = filez_file_checksum(path)
            if actual != checksum:
                raise _corrupt_file(checksum, actual)
            os.makedirs(os.path.dirname(final), exist_ok=True)
            with contextlib.suppress(FileExistsError):
                os.link(path, final)
        else:
            with open(path, "rb") as f:
                body = f.read()
            actual = _filez_name(checksum, body)
            os.makedirs(os.path.dirname(final), exist_ok=True)
            link_new_file(final, body, tmpdir)
        counters[0] += 1
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)


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
