"""Copy and remove refs and commits: the wanted state of a repository's next version.

Rules (``POST …/modify``, ``pyostree repository copy`` / ``remove``):

- **add_refs** from a source version (default: the target's own latest): the ref,
  its commit and parent commits the source holds down to ``depth`` (0 = head only,
  N, -1 = all), each with its closure. A ref of the same name is replaced.
- **add_commits**: the same for single commits; no ref moves.
- A ``source`` with no adds copies that whole version (refs, commits, objects,
  deltas), then the removals apply.
- **remove_refs**: the ref goes, with the commits of its history that no remaining
  ref's history reaches.
- **remove_commits**: the commit goes; refs pointing at a removed commit go too
  (reported in the task result).
- Objects are exactly the closure of the remaining commits (computed from the
  pool's dirtrees, cached); deltas stay only while both ends remain.

:func:`validate` runs in the request (4xx before any task) and again in the task.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection, select

from libpyostree.errors import OstreeError
from libpyostree.names import is_checksum, validate_rev

from . import db
from .deltas import keep_connected
from .pool import Pool
from .versions import (
    VersionState,
    commit_closure,
    commit_parents,
    history,
    latest_number,
    load_state,
)


class ModifyError(OstreeError):
    """The request names something that does not exist or contradicts itself."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status
        self.code = "not_found" if status == 404 else "invalid"


@dataclass(frozen=True)
class ModifyArgs:
    add_refs: tuple[str, ...] = ()
    add_commits: tuple[str, ...] = ()
    remove_refs: tuple[str, ...] = ()
    remove_commits: tuple[str, ...] = ()
    source: str | None = None
    source_version: int | None = None
    depth: int = 0

    def to_json(self) -> dict[str, Any]:
        return {
            "add_refs": list(self.add_refs),
            "add_commits": list(self.add_commits),
            "remove_refs": list(self.remove_refs),
            "remove_commits": list(self.remove_commits),
            "source": self.source,
            "source_version": self.source_version,
            "depth": self.depth,
        }

    @classmethod
    def from_json(cls, body: dict[str, Any]) -> ModifyArgs:
        """Parse the request body (or stored task args); ModifyError on bad input."""
        known = {"add_refs", "add_commits", "remove_refs", "remove_commits", "source", "depth"}
        known |= {"source_version"}
        unknown = set(body) - known
        if unknown:
            raise ModifyError(f"Unknown fields: {', '.join(sorted(unknown))}")

        def names(key: str, commits: bool) -> tuple[str, ...]:
            value = body.get(key) or []
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise ModifyError(f"{key} must be a list of strings")
            for v in value:
                if commits:
                    if not is_checksum(v):
                        raise ModifyError(f"{key}: {v!r:.80} is not a commit checksum")
                else:
                    try:
                        validate_rev(v)
                    except OstreeError as exc:
                        raise ModifyError(f"{key}: {exc}") from None
            if len(set(value)) != len(value):
                raise ModifyError(f"{key} lists an item twice")
            return tuple(value)

        source = body.get("source")
        source_name: str | None = None
        source_version = body.get("source_version")
        if isinstance(source, dict):
            extra = set(source) - {"repository", "version"}
            if extra:
                raise ModifyError(f"Unknown source fields: {', '.join(sorted(extra))}")
            source_name = source.get("repository")
            source_version = source.get("version")
        elif isinstance(source, str):
            source_name = source
        elif source is not None:
            raise ModifyError("source must be {repository, version?}")
        if source_name is not None and not isinstance(source_name, str):
            raise ModifyError("source.repository must be a repository name")
        if source_version is not None and (
            not isinstance(source_version, int)
            or isinstance(source_version, bool)
            or source_version < 0
        ):
            raise ModifyError("source.version must be a version number")
        depth = body.get("depth", 0)
        if not isinstance(depth, int) or isinstance(depth, bool) or depth < -1:
            raise ModifyError("depth must be -1 (all history), 0 (the commit only) or N > 0")
        args = cls(
            names("add_refs", False),
            names("add_commits", True),
            names("remove_refs", False),
            names("remove_commits", True),
            source_name,
            source_version,
            depth,
        )
        both = set(args.add_refs) & set(args.remove_refs)
        if both:
            raise ModifyError(f"Refs both added and removed: {', '.join(sorted(both))}")
        both = set(args.add_commits) & set(args.remove_commits)
        if both:
            raise ModifyError(f"Commits both added and removed: {', '.join(sorted(both))}")
        if not (args.add_refs or args.add_commits or args.remove_refs or args.remove_commits) and (
            args.source is None
        ):
            raise ModifyError("Nothing to do: give refs or commits to add or remove, or a source")
        return args


@dataclass
class Plan:
    base: VersionState
    new: VersionState
    result: dict[str, Any] = field(default_factory=dict)


def _source_state(
    conn: Connection, target_id: int, args: ModifyArgs
) -> tuple[VersionState, int, str]:
    r = db.repositories
    if args.source is None:
        repo_id = target_id
        name = str(conn.execute(select(r.c.name).where(r.c.id == target_id)).scalar())
    else:
        found = conn.execute(select(r.c.id).where(r.c.name == args.source)).scalar()
        if found is None:
            raise ModifyError(f"Source repository {args.source!r:.80} does not exist", 404)
        repo_id, name = int(found), args.source
    if args.source_version is None:
        number = latest_number(conn, repo_id)
    else:
        number = args.source_version
        rv = db.repository_versions
        if (
            conn.execute(
                select(rv.c.id).where(rv.c.repository_id == repo_id, rv.c.number == number)
            ).first()
            is None
        ):
            raise ModifyError(f"Source repository {name} has no version {number}", 404)
    return load_state(conn, repo_id, number), number, name


def validate(conn: Connection, target_id: int, args: ModifyArgs) -> None:
    """The request-time checks (the task repeats them in :func:`plan`)."""
    base = load_state(conn, target_id, latest_number(conn, target_id))
    _check(conn, target_id, args, base)


def _check(
    conn: Connection, target_id: int, args: ModifyArgs, base: VersionState
) -> tuple[VersionState, int, str]:
    source, number, name = _source_state(conn, target_id, args)
    where = f"version {number} of {name}"
    for ref in args.add_refs:
        if ref not in source.refs:
            raise ModifyError(f"Ref {ref} is not in {where}")
    for commit in args.add_commits:
        if commit not in source.commits:
            raise ModifyError(f"Commit {commit} is not in {where}")
    # Removals apply to the copied version when a whole version is copied.
    whole = args.source is not None and not (args.add_refs or args.add_commits)
    against, label = (source, where) if whole else (base, "the repository's latest version")
    for ref in args.remove_refs:
        if ref not in against.refs:
            raise ModifyError(f"Ref {ref} is not in {label}")
    for commit in args.remove_commits:
        if commit not in against.commits:
            raise ModifyError(f"Commit {commit} is not in {label}")
    return source, number, name


def plan(conn: Connection, pool: Pool, target_id: int, args: ModifyArgs) -> Plan:
    base = load_state(conn, target_id, latest_number(conn, target_id))
    source, _number, _name = _check(conn, target_id, args, base)
    adds = bool(args.add_refs or args.add_commits)
    whole = args.source is not None and not adds  # copy that whole version
    new = source.copy() if whole else base.copy()
    new.ids = {**base.ids, **source.ids}
    # Additions: heads plus history to depth, within what the source holds.
    parents = commit_parents(conn, source.commits)
    wanted: set[str] = set()
    for ref in args.add_refs:
        head = source.refs[ref]
        new.refs[ref] = head
        wanted.update(history(parents, head, args.depth))
    for commit in args.add_commits:
        wanted.update(history(parents, commit, args.depth))
    fresh = wanted - new.commits
    new.commits |= wanted
    new.objects |= commit_closure(pool, fresh, new.objects)
    # Removals.
    removed_refs: list[str] = []
    gone: set[str] = set(args.remove_commits)
    if args.remove_refs:
        all_parents = commit_parents(conn, new.commits)
        dropped = {ref: new.refs.pop(ref) for ref in args.remove_refs}
        kept: set[str] = set()
        for head in new.refs.values():
            kept.update(history(all_parents, head, -1))
        for head in dropped.values():
            gone.update(c for c in history(all_parents, head, -1) if c not in kept)
    if gone:
        new.commits -= gone
        for ref, head in sorted(new.refs.items()):
            if head in gone:
                del new.refs[ref]
                removed_refs.append(ref)
        new.objects = commit_closure(pool, new.commits)
    # Deltas connect commits: they stay (or come along) while both ends are held.
    candidates = new.deltas | source.deltas if adds else new.deltas
    new.deltas = keep_connected(candidates, new.commits)
    result: dict[str, Any] = {}
    if removed_refs:
        result["refs_removed_with_their_commit"] = removed_refs
    if gone:
        result["commits_removed"] = sorted(gone & base.commits)
    return Plan(base, new, result)
