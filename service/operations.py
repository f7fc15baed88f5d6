"""What tasks do: import an uploaded archive, delete a version, delete a repository.

Each operation computes the wanted state of the repository's next version
from its latest one and hands it to :func:`service.versions.create_version`
in one transaction.  Objects are written to the pool first (idempotent); a
failure before that transaction leaves no version behind, only pool files
that orphan cleanup reclaims.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable

from sqlalchemy import Engine, select

from libpyostree import records

from . import db
from .deltas import add_deltas, ensure_delta, keep_connected
from .importer import ChildResult, ImportFailed, run_import, run_pull
from .modify import ModifyArgs, plan
from .orphans import cleanup
from .pool import Pool
from .tasks import Handler, TaskCanceled, TaskContext, TaskFailed
from .versions import (
    ObjectKey,
    ObjectRows,
    VersionState,
    commit_closure,
    commit_objects,
    commit_parents,
    create_version,
    delete_version,
    latest_number,
    load_state,
    pool_parents,
)

TRANSPORT_OPTIONS = frozenset(
    {
        "tls_validation",
        "ca_cert",
        "client_cert",
        "client_key",
        "username",
        "password",
        "headers",
        "proxy_url",
    }
)
"""Remote options that go to :class:`libpyostree.http.RemoteOptions`."""

VersionListener = Callable[[int], None]
"""Called with a repository id after its versions changed (serving caches)."""


def make_handlers(engine: Engine, pool: Pool, changed: VersionListener) -> dict[str, Handler]:
    def state_of(repo_id: int) -> tuple[int, VersionState]:
        with engine.connect() as conn:
            number = latest_number(conn, repo_id)
            return number, load_state(conn, repo_id, number)

    def publish(
        ctx: TaskContext, repo_id: int, base: VersionState, new: VersionState
    ) -> int | None:
        """Deltas for ``new`` (per the repository's settings), then the version."""
        new.deltas = keep_connected(new.deltas, new.commits)
        with engine.connect() as conn:
            settings = conn.execute(
                select(db.repositories).where(db.repositories.c.id == repo_id)
            ).one()
            parents = commit_parents(conn, new.commits)
        parents.update(pool_parents(pool, new.commits - parents.keys()))
        add_deltas(pool, settings, new, parents, ctx.progress)
        ctx.check_canceled()
        with db.writing(engine) as conn:
            number = create_version(conn, pool, repo_id, base, new)
        changed(repo_id)
        return number

    def import_task(ctx: TaskContext) -> int | None:
        repo_id = _repository(ctx)
        upload = str(ctx.args["upload"])
        ref = ctx.args.get("ref")
        try:
            _number, base = state_of(repo_id)

            def progress(objects: int, done: int, total: int | None) -> None:
                ctx.progress("Reading the archive (bytes)", done, total)
                ctx.progress("Verifying objects", objects)

            ctx.progress("Reading the archive (bytes)", 0, os.path.getsize(upload), force=True)
            try:
                result = run_import(
                    str(pool.root),
                    archive=upload,
                    ref=ref,
                    sha256=ctx.args.get("sha256"),
                    target_refs=base.refs,
                    progress=progress,
                    canceled=ctx.cancel_event.is_set,
                )
            except ImportFailed as exc:
                if exc.code == "canceled":
                    raise TaskCanceled() from None
                raise
            ctx.check_canceled()
            new = base.copy()
            new.refs.update(result.refs)
            added = _chain(pool, result, ref, base)
            new.commits |= added
            if set(result.commits) - base.commits <= added:
                # The child walked the tree of every archive commit; those the version
                # already holds bring nothing it lacks.
                new.objects |= result.tree_objects()
                new.objects |= commit_objects(pool, added)
            else:  # ?ref= with other commits in the archive: only the chain's trees
                ctx.progress("Walking the new commits", 0, len(added), force=True)
                new.objects |= commit_closure(pool, added, base.objects)
                ctx.progress("Walking the new commits", len(added), len(added))
            ctx.check_canceled()
            return publish(ctx, repo_id, base, new)
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(upload)

    def delete_version_task(ctx: TaskContext) -> int | None:
        repo_id = _repository(ctx)
        number = int(ctx.args["number"])
        rv = db.repository_versions
        with db.writing(engine) as conn:
            numbers = [
                n for (n,) in conn.execute(select(rv.c.number).where(rv.c.repository_id == repo_id))
            ]
            if number not in numbers:
                raise TaskFailed(f"Version {number} does not exist")
            if len(numbers) == 1:
                raise TaskFailed("Cannot delete the only version of a repository")
            delete_version(conn, repo_id, number)
        changed(repo_id)
        return None

    def delete_repository_task(ctx: TaskContext) -> int | None:
        repo_id = _repository(ctx)
        r = db.repositories
        with db.writing(engine) as conn:
            conn.execute(
                db.repository_content.delete().where(
                    db.repository_content.c.repository_id == repo_id
                )
            )
            conn.execute(
                db.repository_versions.delete().where(
                    db.repository_versions.c.repository_id == repo_id
                )
            )
            conn.execute(r.delete().where(r.c.id == repo_id))
        changed(repo_id)
        return None

    def modify_task(ctx: TaskContext) -> int | None:
        repo_id = _repository(ctx)
        args = ModifyArgs.from_json(ctx.args)
        ctx.progress("Computing the new version", 0, 1, force=True)
        with engine.connect() as conn:
            planned = plan(conn, pool, repo_id, args)
        ctx.check_canceled()
        ctx.result = planned.result or None
        number = publish(ctx, repo_id, planned.base, planned.new)
        ctx.progress("Computing the new version", 1, 1)
        return number

    def sync_task(ctx: TaskContext) -> int | None:
        repo_id = _repository(ctx)
        with engine.connect() as conn:
            remote = conn.execute(
                select(db.remotes).where(db.remotes.c.name == ctx.args["remote"])
            ).first()
        if remote is None:
            raise TaskFailed(f"Remote {ctx.args['remote']} no longer exists")
        options = dict(remote.options)
        transport = {k: v for k, v in options.items() if k in TRANSPORT_OPTIONS and v is not None}
        _number, base = state_of(repo_id)

        def progress(objects: int, done: int, outstanding: int) -> None:
            ctx.progress("Fetching objects", objects)
            ctx.progress("Fetching (bytes)", done)

        ctx.progress("Fetching objects", 0, force=True)
        try:
            with ObjectRows(engine) as rows:
                pulled = run_pull(
                    str(pool.root),
                    url=remote.url,
                    include_refs=options.get("include_refs"),
                    exclude_refs=options.get("exclude_refs"),
                    depth=int(options.get("depth") or 0),
                    options=transport,
                    # Deltas start from what the version holds (ostree's local refs).
                    local_refs=dict(base.refs),
                    progress=progress,
                    stored=rows.add,
                    canceled=ctx.cancel_event.is_set,
                )
        except ImportFailed as exc:
            if exc.code == "canceled":
                raise TaskCanceled() from None
            raise
        ctx.check_canceled()
        refs: dict[str, str] = pulled["refs"]
        visited = set(pulled["visited"])
        # The pull walked the trees of the commits it fetched: only the others (held
        # already, or brought by a delta) are walked here.
        walked: set[str] = set()
        trees: set[ObjectKey] = set()
        if pulled["trees"] is not None:
            walked = set(pulled["walked"])
            trees = set(records.unpack(bytes.fromhex(pulled["trees"])))
        if ctx.args.get("mirror"):
            # The version becomes exactly the upstream selection.
            new = VersionState(refs=dict(refs), commits=visited)
            new.objects = trees | commit_objects(pool, walked)
            new.objects |= commit_closure(pool, visited - walked, trees)
        else:
            new = base.copy()
            new.refs.update(refs)
            new.objects |= trees | commit_objects(pool, walked)
            new.objects |= commit_closure(pool, visited - base.commits - walked, new.objects)
            new.commits |= visited
        new.deltas = set(base.deltas)  # publish keeps those whose commits remain
        new.ids = rows.ids  # the rows of what the pull stored, made while it ran
        ctx.result = {"refs": refs, "objects_fetched": pulled["fetched"]}
        return publish(ctx, repo_id, base, new)

    def delta_task(ctx: TaskContext) -> int | None:
        repo_id = _repository(ctx)
        _number, base = state_of(repo_id)
        frm, to = ctx.args.get("from"), str(ctx.args["to"])
        for commit in (frm, to):
            if commit is not None and commit not in base.commits:
                raise TaskFailed(f"Commit {commit} is not in the repository's latest version")
        ctx.progress("Generating static deltas", 0, 1, force=True)
        new = base.copy()
        new.deltas = set(base.deltas)
        new.deltas.add(ensure_delta(pool, frm, to))
        ctx.progress("Generating static deltas", 1, 1)
        return publish(ctx, repo_id, base, new)

    def orphans_task(ctx: TaskContext) -> int | None:
        result = cleanup(
            engine,
            pool,
            float(ctx.args.get("older_than") or 0),
            ctx.progress,
        )
        ctx.result = result.to_json()
        return None

    return {
        "import": import_task,
        "modify": modify_task,
        "sync": sync_task,
        "delta": delta_task,
        "orphans_cleanup": orphans_task,
        "delete_version": delete_version_task,
        "delete_repository": delete_repository_task,
    }


def _chain(pool: Pool, result: ChildResult, ref: str | None, base: VersionState) -> set[str]:
    """The archive's commits the new version gains: all of them when importing
    everything; with ``ref``, the chain the ref moved along (the archive's other
    commits are not part of that import)."""
    if ref is None:
        return set(result.commits) - base.commits
    head = result.refs.get(ref)
    archived = set(result.commits)
    chain: set[str] = set()
    current: str | None = head
    while current is not None and current in archived and current not in base.commits:
        chain.add(current)
        parent = pool.repo.read_commit(current, verify=False).parent
        current = str(parent) if parent is not None else None
    return chain


def _repository(ctx: TaskContext) -> int:
    if ctx.repository_id is None:
        raise TaskFailed("The repository of this task no longer exists")
    return ctx.repository_id
