"""Write a commit's tree into a directory as the current user (``ostree checkout -U``).

Directories are created writable and get their recorded mode only after their
children are written (so read-only directories work).  Modes follow ostree
2022.7's user mode (``checkout_one_file_at`` / ``checkout_tree_at``): regular
files lose setuid/setgid and gain owner-read when they lack it (so the checkout
can be read back); directories keep their full recorded mode, setgid and sticky
included.  Ownership is not applied; xattrs are applied on request where the
filesystem allows (``user.*`` for non-root).
"""

from __future__ import annotations

import contextlib
import os
import stat
from pathlib import Path

from .errors import OstreeError
from .names import Checksum, validate_filename
from .repo import Repo

_PERMS = 0o7777


def user_file_mode(mode: int) -> int:
    """The permission bits ``ostree checkout -U`` gives a regular file of ``mode``."""
    perms = mode & _PERMS & ~(stat.S_ISUID | stat.S_ISGID)
    return perms | stat.S_IRUSR if not perms & stat.S_IRUSR else perms


def checkout(
    repo: Repo, rev: str, dest: str | os.PathLike[str], *, xattrs: bool = False, subpath: str = "/"
) -> Checksum:
    """Check out ``rev`` (or its ``subpath`` directory) into the new directory ``dest``."""
    commit_csum = repo.resolve_rev(rev)
    commit = repo.read_commit(commit_csum)
    tree, meta = commit.root_dirtree, commit.root_dirmeta
    for part in [p for p in subpath.split("/") if p]:
        entries = {name: (t, m) for name, t, m in repo.read_dirtree(tree).dirs}
        if part not in entries:
            raise OstreeError(f"No such directory {subpath!r} in commit {commit_csum}")
        tree, meta = entries[part]
    root = Path(dest)
    if root.exists() or root.is_symlink():
        raise OstreeError(f"Destination {root} already exists")
    root.mkdir(mode=0o700)
    pending_modes: list[tuple[Path, int, Checksum]] = []
    stack: list[tuple[Checksum, Checksum, Path]] = [(tree, meta, root)]
    while stack:
        tree_csum, meta_csum, path = stack.pop()
        dirmeta = repo.read_dirmeta(meta_csum)
        pending_modes.append((path, dirmeta.mode & _PERMS, meta_csum))
        dirtree = repo.read_dirtree(tree_csum)
        for name, file_csum in dirtree.files:
            validate_filename(name)
            header, content = repo.read_file(file_csum)
            target = path / name
            if header.is_symlink:
                os.symlink(header.symlink_target, target)
            else:
                fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                with os.fdopen(fd, "wb") as f:
                    f.write(content)
                    os.fchmod(f.fileno(), user_file_mode(header.mode))
            if xattrs:
                _apply_xattrs(target, header.xattrs)
        for name, sub_tree, sub_meta in dirtree.dirs:
            validate_filename(name)
            sub = path / name
            sub.mkdir(mode=0o700)
            stack.append((sub_tree, sub_meta, sub))
    # Children first, so that a read-only parent does not block its children.
    for path, mode, meta_csum in reversed(pending_modes):
        if xattrs:
            _apply_xattrs(path, repo.read_dirmeta(meta_csum).xattrs)
        os.chmod(path, mode)
    return commit_csum


def _apply_xattrs(path: Path, xattrs: tuple[tuple[bytes, bytes], ...]) -> None:
    for name, value in xattrs:
        with contextlib.suppress(OSError):
            os.setxattr(path, name.rstrip(b"\0"), value, follow_symlinks=False)
