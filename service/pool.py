"""The object pool: one archive-mode repository (without refs) shared by all repositories.

Every object is stored once, in ostree's archive layout, written and verified
by :mod:`libpyostree`; which repository version holds what lives in the
database.  Per-version derived files (summaries) are stored content-addressed
under ``files/`` beside ``objects/``.
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections import OrderedDict
from pathlib import Path

from libpyostree.errors import RepoError
from libpyostree.objects import parse_dirtree
from libpyostree.repo import Repo, link_new_file

Children = tuple[tuple[str, ...], tuple[tuple[str, str], ...]]
"""A dirtree's file checksums and (dirtree, dirmeta) pairs of its subdirectories."""

_CACHED_ENTRIES = 2_000_000
"""Bound of the dirtree cache, in entries (~100 bytes each)."""


class Pool:
    def __init__(self, root: Path) -> None:
        self.root = root
        self._trees: OrderedDict[str, Children] = OrderedDict()
        self._tree_entries = 0
        self._trees_lock = threading.Lock()
        self.tree_reads = 0
        """Dirtree files parsed (the rest came from the cache)."""
        try:
            self.repo = Repo.open(root)
        except RepoError:
            if root.exists() and any(root.iterdir()):
                raise
            self.repo = Repo.init(root, mode="archive")
        self._objects = str(self.repo.path / "objects")
        self.files = root / "files"
        self.files.mkdir(exist_ok=True)

    def children(self, tree: str) -> Children:
        """A dirtree's children, from a bounded cache: pool objects never change, so
        walking unchanged trees again (removals, copies, imports onto a history)
        does not re-read their files."""
        with self._trees_lock:
            found = self._trees.get(tree)
            if found is not None:
                self._trees.move_to_end(tree)
                return found
        with open(f"{self._objects}/{tree[:2]}/{tree[2:]}.dirtree", "rb") as f:
            parsed = parse_dirtree(f.read())
        value: Children = (
            tuple(f for _n, f in parsed.files),
            tuple((t, m) for _n, t, m in parsed.dirs),
        )
        with self._trees_lock:
            self.tree_reads += 1
            if tree not in self._trees:
                self._trees[tree] = value
                self._tree_entries += len(value[0]) + len(value[1]) + 1
            while self._tree_entries > _CACHED_ENTRIES and self._trees:
                _k, old = self._trees.popitem(last=False)
                self._tree_entries -= len(old[0]) + len(old[1]) + 1
        return value

    def file_path(self, digest: str) -> Path:
        return self.files / digest[:2] / digest[2:]

    def put_file(self, data: bytes) -> str:
        """Store ``data`` content-addressed; returns its sha256 (hex)."""
        digest = hashlib.sha256(data).hexdigest()
        path = self.file_path(digest)
        if not path.exists():
            os.makedirs(path.parent, exist_ok=True)
            link_new_file(str(path), data, str(self.repo.path / "tmp"))
        return digest

    def read_file(self, digest: str) -> bytes:
        return self.file_path(digest).read_bytes()
