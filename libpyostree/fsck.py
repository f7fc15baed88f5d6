"""Verify every object reachable from a repository's commits, reporting every problem.

Metadata (commits, dirtrees, dirmetas) is walked in the calling thread because
it decides what else must be checked; content objects are re-hashed in batches
by a pool of workers that starts as soon as the walk finds them.  The workers
are processes where ``fork`` is safe (measured: two processes verify 45k files
in 1.9 s, two threads in 2.9 s, because per-file Python work and GIL hand-offs
serialise threads even though zlib and hashlib release the GIL), else threads.
Memory is bounded by the set of object names plus one file per worker; files
larger than :data:`~libpyostree._workers.STREAM_THRESHOLD` are read in chunks.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from concurrent.futures import Future
from dataclasses import dataclass, field

from ._workers import default_workers, executor, filez_file_checksum
from .errors import ObjectNotFoundError, OstreeError
from .names import Checksum
from .objects import DirTree, ObjectType
from .repo import Repo

_BATCH = 512

Progress = Callable[[int, int], None]


@dataclass(frozen=True, slots=True)
class FsckProblem:
    checksum: str
    objtype: str
    message: str

    def __str__(self) -> str:
        return f"{self.objtype} {self.checksum}: {self.message}"


@dataclass(slots=True)
class FsckResult:
    problems: list[FsckProblem] = field(default_factory=list)
    commits: int = 0
    metadata_objects: int = 0
    content_objects: int = 0

    @property
    def ok(self) -> bool:
        return not self.problems


def fsck(
    repo: Repo,
    revs: Iterable[str] | None = None,
    *,
    threads: int | None = None,
    progress: Progress | None = None,
    processes: bool | None = None,
) -> FsckResult:
    """Check ``revs`` (with their full present history) or, by default, every ref and
    every commit object in the repository, as ``ostree fsck`` does.

    ``threads`` is the number of parallel workers (default: the CPU count, at
    most 8); ``processes`` forces worker processes (True) or threads (False); by
    default processes are used where ``fork`` is available and this process has
    no other threads."""
    result = FsckResult()
    starts: dict[Checksum, int] = {}
    if revs is not None:
        for rev in revs:
            try:
                starts[repo.resolve_rev(rev)] = -1
            except OstreeError as exc:
                result.problems.append(FsckProblem(rev, "ref", str(exc)))
    else:
        for name, csum in repo.list_refs().items():
            if not repo.has_object(csum, ObjectType.COMMIT):
                result.problems.append(
                    FsckProblem(csum, "commit", f"missing commit (ref {name} points to it)")
                )
            starts.setdefault(csum, 0)
        for csum, _ in repo.iter_objects(ObjectType.COMMIT):
            starts.setdefault(csum, 0)

    objdir = str(repo.path / "objects")
    workers = threads or default_workers()
    pending: list[str] = []
    futures: list[Future[tuple[list[FsckProblem], int]]] = []
    total = 0
    # Content checks start while the metadata walk is still running.  They run in
    # worker processes when we can fork safely: inflate and sha256 release the GIL,
    # but the per-file Python work and GIL hand-offs still serialise threads
    # (45k files: 2.9 s with two threads, 1.9 s with two processes, measured).
    with executor(workers, processes) as pool:

        def on_file(checksum: str) -> None:
            nonlocal total
            total += 1
            pending.append(checksum)
            if len(pending) >= _BATCH:
                futures.append(pool.submit(_check_batch, objdir, pending.copy()))
                pending.clear()

        _check_metadata(repo, starts, result, on_file)
        if pending:
            futures.append(pool.submit(_check_batch, objdir, pending.copy()))
        done = 0
        if progress:
            progress(0, total)
        for future in futures:
            problems, count = future.result()
            result.problems.extend(problems)
            result.content_objects += count - len(problems)
            done += count
            if progress:
                progress(done, total)
    return result


def _check_metadata(
    repo: Repo, starts: dict[Checksum, int], result: FsckResult, on_file: Callable[[str], None]
) -> None:
    seen_commits: set[str] = set()
    seen_trees: set[str] = set()
    seen_metas: set[str] = set()
    seen_files: set[str] = set()
    problems = result.problems
    work = list(starts.items())
    while work:
        csum, depth = work.pop()
        if csum in seen_commits:
            continue
        seen_commits.add(csum)
        if not repo.has_object(csum, ObjectType.COMMIT):
            if depth == -1 and csum not in starts:
                continue  # shallow history: a missing parent is fine
            if csum in starts and not any(p.checksum == csum for p in problems):
                problems.append(FsckProblem(csum, "commit", "missing commit object"))
            continue
        try:
            commit = repo.read_commit(csum)
        except OstreeError as exc:
            problems.append(FsckProblem(csum, "commit", str(exc)))
            continue
        result.commits += 1
        if commit.parent is not None and depth != 0:
            work.append((commit.parent, -1))
        stack = [(commit.root_dirtree, commit.root_dirmeta, csum)]
        while stack:
            tree, meta, owner = stack.pop()
            if meta not in seen_metas:
                seen_metas.add(meta)
                _check_one(repo.read_dirmeta, meta, "dirmeta", owner, result)
            if tree in seen_trees:
                continue
            seen_trees.add(tree)
            parsed = _check_one(repo.read_dirtree, tree, "dirtree", owner, result)
            if not isinstance(parsed, DirTree):
                continue
            for _name, file_csum in parsed.files:
                if file_csum not in seen_files:
                    seen_files.add(file_csum)
                    on_file(file_csum)
            for _name, sub_tree, sub_meta in parsed.dirs:
                stack.append((sub_tree, sub_meta, tree))


def _check_one(
    reader: Callable[[str], object], csum: str, kind: str, owner: str, result: FsckResult
) -> object | None:
    try:
        value: object | None = reader(csum)
    except ObjectNotFoundError:
        result.problems.append(
            FsckProblem(csum, kind, f"missing {kind} object (needed by {owner})")
        )
        return None
    except OstreeError as exc:
        result.problems.append(FsckProblem(csum, kind, str(exc)))
        return None
    result.metadata_objects += 1
    return value


def _check_batch(objdir: str, batch: list[str]) -> tuple[list[FsckProblem], int]:
    problems = []
    for csum in batch:
        path = f"{objdir}/{csum[:2]}/{csum[2:]}.filez"
        try:
            actual = filez_file_checksum(path)
        except FileNotFoundError:
            problems.append(FsckProblem(csum, "file", "missing file object"))
            continue
        except OstreeError as exc:
            problems.append(FsckProblem(csum, "file", str(exc)))
            continue
        except OSError as exc:
            problems.append(FsckProblem(csum, "file", f"cannot read: {exc}"))
            continue
        if actual != csum:
            problems.append(
                FsckProblem(
                    csum,
                    "file",
                    f"Corrupted file object; checksum expected={csum} actual={actual}",
                )
            )
    return problems, len(batch)
