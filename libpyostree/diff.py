"""Compare the trees of two commits, as ``ostree diff FROM TO`` does (ostree 2022.7).

The rules are those of ``ostree_diff_dirs`` over two commits:

- Two directories whose dirtree checksums are equal are identical: nothing below
  them is read.  Otherwise the entries of FROM are visited in dirtree order, files
  first, then subdirectories:

  - a name missing in TO is *removed* (a removed directory is reported alone,
    never its contents);
  - a file replaced by a directory or the reverse is *modified* (and not descended);
  - two files are *modified* when their content checksums differ: the checksum
    covers content, symlink target, uid, gid, mode and xattrs, so a chmod alone,
    a retargeted symlink and a regular file turned symlink are all modifications;
  - two directories are *modified* when their dirmeta checksums differ (owner,
    mode, xattrs), and are then compared recursively in any case.

  Then the entries of TO missing in FROM are *added*, files then directories; an
  added directory is followed by everything inside it, depth first (files first).
- The root itself is never reported, so a change of the root's mode is invisible.
- Each list is in the order the walk found its entries: a subdirectory's additions
  and removals come before those of its parent found later (ostree appends to
  three lists during one depth-first walk and prints them one after another).

Only checksums in dirtrees are compared; no file object is read.  Deep trees are
walked with an explicit stack, never Python recursion.  Names are looked up by
exact match (ostree binary-searches, which differs only for unsorted dirtrees,
which no ostree writer produces); a name present as both a file and a directory
in TO is taken as the file, as ostree's lookup does.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TypeAlias

from .names import Checksum
from .repo import Repo

__all__ = ["CommitDiff", "TreeDiff", "diff_commits", "diff_dirtrees"]


@dataclass(frozen=True)
class TreeDiff:
    """Paths (``/a/b``, absolute within the commit) in ostree's order."""

    modified: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()
    added: tuple[str, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.modified or self.removed or self.added)

    def lines(self) -> list[str]:
        """The lines ``ostree diff`` prints (without newlines): ``M``, then ``D``, then ``A``."""
        return (
            [f"M    {p}" for p in self.modified]
            + [f"D    {p}" for p in self.removed]
            + [f"A    {p}" for p in self.added]
        )


@dataclass(frozen=True)
class CommitDiff(TreeDiff):
    """A :class:`TreeDiff` between two commits, with the resolved commit checksums."""

    from_commit: Checksum = field(kw_only=True)
    to_commit: Checksum = field(kw_only=True)


_Frame: TypeAlias = Iterator["_Frame"]
"""The walk of one directory: it does its own work and yields the frames of the
subdirectories to descend into, in order (an explicit stack replaces recursion)."""


def _join(parent: str, name: str) -> str:
    return f"{parent.rstrip('/')}/{name}"


class _Walk:
    def __init__(self, repo: Repo, verify: bool) -> None:
        self.repo = repo
        self.verify = verify
        self.modified: list[str] = []
        self.removed: list[str] = []
        self.added: list[str] = []

    def run(self, from_tree: Checksum, to_tree: Checksum, path: str) -> None:
        stack: list[_Frame] = [self._compare(from_tree, to_tree, path)]
        while stack:
            child = next(stack[-1], None)
            if child is None:
                stack.pop()
            else:
                stack.append(child)

    def _compare(self, a_tree: Checksum, b_tree: Checksum, path: str) -> _Frame:
        if a_tree == b_tree:
            return
        a = self.repo.read_dirtree(a_tree, verify=self.verify)
        b = self.repo.read_dirtree(b_tree, verify=self.verify)
        b_files = dict(b.files)
        b_dirs = {name: (tree, meta) for name, tree, meta in b.dirs}
        for name, csum in a.files:
            child = _join(path, name)
            if name in b_files:
                if b_files[name] != csum:
                    self.modified.append(child)
            elif name in b_dirs:
                self.modified.append(child)  # file -> directory
            else:
                self.removed.append(child)
        for name, tree, meta in a.dirs:
            child = _join(path, name)
            if name in b_files:
                self.modified.append(child)  # directory -> file
            elif name in b_dirs:
                b_sub_tree, b_sub_meta = b_dirs[name]
                if b_sub_meta != meta:
                    self.modified.append(child)
                yield self._compare(tree, b_sub_tree, child)
            else:
                self.removed.append(child)
        a_names = {name for name, _ in a.files} | {name for name, _, _ in a.dirs}
        for name, _csum in b.files:
            if name not in a_names:
                self.added.append(_join(path, name))
        for name, tree, _meta in b.dirs:
            if name not in a_names:
                child = _join(path, name)
                self.added.append(child)
                yield self._add_all(tree, child)

    def _add_all(self, tree_csum: Checksum, path: str) -> _Frame:
        tree = self.repo.read_dirtree(tree_csum, verify=self.verify)
        for name, _csum in tree.files:
            self.added.append(_join(path, name))
        for name, sub_tree, _meta in tree.dirs:
            child = _join(path, name)
            self.added.append(child)
            yield self._add_all(sub_tree, child)


def diff_dirtrees(
    repo: Repo, from_tree: str, to_tree: str, *, prefix: str = "/", verify: bool = True
) -> TreeDiff:
    """Compare two directory trees given by their dirtree checksums.

    ``prefix`` is the path the trees sit at (``/`` for commit roots); it starts
    every reported path.  Dirtrees are read verified unless ``verify=False``.
    """
    walk = _Walk(repo, verify)
    walk.run(Checksum(from_tree), Checksum(to_tree), prefix)
    return TreeDiff(tuple(walk.modified), tuple(walk.removed), tuple(walk.added))


def diff_commits(repo: Repo, from_rev: str, to_rev: str, *, verify: bool = True) -> CommitDiff:
    """Compare the trees of two revisions (refs, checksums, prefixes, ``REF^``).

    Raises :class:`~libpyostree.errors.RefNotFoundError` for a revision that does
    not resolve and :class:`~libpyostree.errors.ObjectNotFoundError` for a missing
    commit or dirtree (as ``ostree diff`` fails on a partial commit).
    """
    from_commit = repo.resolve_rev(from_rev)
    to_commit = repo.resolve_rev(to_rev)
    a = repo.read_commit(from_commit, verify=verify)
    b = repo.read_commit(to_commit, verify=verify)
    tree = diff_dirtrees(repo, a.root_dirtree, b.root_dirtree, verify=verify)
    return CommitDiff(
        modified=tree.modified,
        removed=tree.removed,
        added=tree.added,
        from_commit=from_commit,
        to_commit=to_commit,
    )
