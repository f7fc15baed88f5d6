"""Commit closures: every object a commit needs, walked with an explicit stack.

The closure of commit C (``ostree-repo-traverse.c``): C, its ``.commitmeta`` if
present, the root dirtree and dirmeta, every object those dirtrees name, and
with ``depth`` > 0 (or -1 for all) the parent's closure with ``depth - 1``.  A
missing parent commit is tolerated, as ostree does (history may be shallow); a
missing tree object is an error.  Objects are reported once per (checksum, type).
"""

from __future__ import annotations

from collections.abc import Iterator

from .names import Checksum, validate_checksum
from .objects import Commit, ObjectType
from .repo import Repo


def iter_commit_closure(
    repo: Repo, commit: str, depth: int = 0, *, verify: bool = True
) -> Iterator[tuple[Checksum, ObjectType]]:
    """Yield ``(checksum, type)`` for every object in the closure of ``commit``.

    Raises :class:`~libpyostree.errors.ObjectNotFoundError` for a missing
    dirtree, dirmeta or the starting commit; missing parents end the history.
    """
    seen: set[tuple[str, ObjectType]] = set()
    current: Checksum | None = validate_checksum(commit)
    remaining = depth
    first = True
    while current is not None:
        if not first and not repo.has_object(current, ObjectType.COMMIT):
            return  # a shallow history: the parent is not here
        first = False
        info = repo.read_commit(current, verify=verify)
        yield current, ObjectType.COMMIT
        if repo.has_object(current, ObjectType.COMMIT_META):
            yield current, ObjectType.COMMIT_META
        stack: list[tuple[Checksum, Checksum]] = [(info.root_dirtree, info.root_dirmeta)]
        while stack:
            tree_csum, meta_csum = stack.pop()
            if (meta_csum, ObjectType.DIR_META) not in seen:
                seen.add((meta_csum, ObjectType.DIR_META))
                if not repo.has_object(meta_csum, ObjectType.DIR_META):
                    repo.read_object_raw(meta_csum, ObjectType.DIR_META)  # raises not-found
                yield meta_csum, ObjectType.DIR_META
            if (tree_csum, ObjectType.DIR_TREE) in seen:
                continue
            seen.add((tree_csum, ObjectType.DIR_TREE))
            tree = repo.read_dirtree(tree_csum, verify=verify)
            yield tree_csum, ObjectType.DIR_TREE
            for _name, file_csum in tree.files:
                if (file_csum, ObjectType.FILE) not in seen:
                    seen.add((file_csum, ObjectType.FILE))
                    yield file_csum, ObjectType.FILE
            for _name, sub_tree, sub_meta in reversed(tree.dirs):
                stack.append((sub_tree, sub_meta))
        if remaining == 0 or info.parent is None:
            return
        remaining = remaining - 1 if remaining > 0 else -1
        current = info.parent


def iter_history(repo: Repo, commit: str) -> Iterator[tuple[Checksum, Commit]]:
    """The commit and its ancestors that are present, newest first.

    The commit itself must exist (:class:`~libpyostree.errors.ObjectNotFoundError`
    otherwise, as ``ostree log`` fails); only missing ancestors end the history.
    """
    current: Checksum | None = validate_checksum(commit)
    first = True
    while current is not None and (first or repo.has_object(current, ObjectType.COMMIT)):
        first = False
        info = repo.read_commit(current)
        yield current, info
        current = info.parent
