"""The object pool: one archive-mode repository (without refs) shared by all repositories.

Every object is stored once, in ostree's archive layout, written and verified
by :mod:`libpyostree`; which repository version holds what lives in the
database.  Per-version derived files (summaries) are stored content-addressed
under ``files/`` beside ``objects/``.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from libpyostree.errors import RepoError
from libpyostree.repo import Repo, link_new_file


class Pool:
    def __init__(self, root: Path) -> None:
        self.root = root
        try:
            self.repo = Repo.open(root)
        except RepoError:
            if root.exists() and any(root.iterdir()):
                raise
            self.repo = Repo.init(root, mode="archive")
        self.files = root / "files"
        self.files.mkdir(exist_ok=True)

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
