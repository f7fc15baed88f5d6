"""Commit a directory into a repository (the ``ostree commit`` of libpyostree).

The tree is walked with an explicit stack; every directory becomes a dirmeta and
a dirtree, every regular file or symlink a content object.  Entries are sorted
by their UTF-8 bytes and xattrs by name, so the result is byte-identical to
``ostree commit`` of the same directory with the same owners and timestamp.
Other file types (devices, sockets, fifos) are refused, as ostree does.
"""

from __future__ import annotations

import os
import stat
import time
from pathlib import Path

from .errors import OstreeError
from .gvariant import Variant
from .names import Checksum, validate_filename, validate_rev
from .objects import Commit, DirMeta, DirTree, FileHeader, ObjectType
from .repo import Repo


def _read_xattrs(path: str) -> tuple[tuple[bytes, bytes], ...]:
    try:
        names = os.listxattr(path, follow_symlinks=False)
    except OSError:
        return ()
    out = []
    for name in names:
        try:
            value = os.getxattr(path, name, follow_symlinks=False)
        except OSError:
            continue
        out.append((name.encode() + b"\0", value))
    return tuple(sorted(out))


def write_directory(
    repo: Repo,
    src: str | os.PathLike[str],
    *,
    owner_uid: int | None = None,
    owner_gid: int | None = None,
    xattrs: bool = True,
) -> tuple[Checksum, Checksum]:
    """Write the tree under ``src``; return (root dirtree, root dirmeta) checksums."""
    root = os.fspath(src)

    def owner(st: os.stat_result) -> tuple[int, int]:
        uid = st.st_uid if owner_uid is None else owner_uid
        gid = st.st_gid if owner_gid is None else owner_gid
        return uid, gid

    def dirmeta_for(path: str) -> Checksum:
        st = os.lstat(path)
        uid, gid = owner(st)
        meta = DirMeta(uid, gid, st.st_mode, _read_xattrs(path) if xattrs else ())
        return repo.write_metadata(ObjectType.DIR_META, meta.to_bytes())

    # Post-order walk: (path, visited) entries; results keyed by directory path.
    results: dict[str, tuple[Checksum, Checksum]] = {}
    stack: list[tuple[str, bool]] = [(root, False)]
    while stack:
        path, visited = stack.pop()
        if not visited:
            stack.append((path, True))
            with os.scandir(path) as it:
                for entry in it:
                    if entry.is_dir(follow_symlinks=False):
                        stack.append((entry.path, False))
            continue
        files: list[tuple[str, Checksum]] = []
        dirs: list[tuple[str, Checksum, Checksum]] = []
        with os.scandir(path) as it:
            entries = sorted(it, key=lambda e: os.fsencode(e.name))
        for entry in entries:
            name = validate_filename(entry.name)
            st = entry.stat(follow_symlinks=False)
            if stat.S_ISDIR(st.st_mode):
                tree, meta = results.pop(entry.path)
                dirs.append((name, tree, meta))
                continue
            uid, gid = owner(st)
            attrs = _read_xattrs(entry.path) if xattrs else ()
            if stat.S_ISLNK(st.st_mode):
                header = FileHeader(uid, gid, st.st_mode, os.readlink(entry.path), attrs)
                files.append((name, repo.write_content(header)))
            elif stat.S_ISREG(st.st_mode):
                with open(entry.path, "rb") as f:
                    content = f.read()
                header = FileHeader(uid, gid, st.st_mode, "", attrs)
                files.append((name, repo.write_content(header, content)))
            else:
                raise OstreeError(f"Unsupported file type for {entry.path} (mode {st.st_mode:o})")
        tree_bytes = DirTree(tuple(files), tuple(dirs)).to_bytes()
        tree_csum = repo.write_metadata(ObjectType.DIR_TREE, tree_bytes)
        results[path] = (tree_csum, dirmeta_for(path))
    return results[root]


def commit_directory(
    repo: Repo,
    src: str | os.PathLike[str],
    *,
    branch: str | None = None,
    subject: str = "",
    body: str = "",
    parent: str | None = None,
    timestamp: int | None = None,
    metadata: dict[str, Variant] | None = None,
    owner_uid: int | None = None,
    owner_gid: int | None = None,
    xattrs: bool = True,
    bindings: bool = True,
) -> Checksum:
    """Commit ``src``; with ``branch``, the parent defaults to its head and the ref
    moves by compare-and-swap.  Like ``ostree commit -b``, the commit records
    ``ostree.ref-binding`` unless ``bindings=False``."""
    if branch is not None:
        validate_rev(branch)
    if not Path(src).is_dir():
        raise OstreeError(f"{src} is not a directory")
    old_head = repo.read_ref(branch) if branch is not None else None
    if parent is None:
        parent = old_head
    elif parent:
        parent = repo.resolve_rev(parent)
    tree, meta = write_directory(repo, src, owner_uid=owner_uid, owner_gid=owner_gid, xattrs=xattrs)
    commit_meta = dict(metadata or {})
    if branch is not None and bindings:
        commit_meta.setdefault("ostree.ref-binding", Variant("as", [branch]))
    commit = Commit(
        root_dirtree=tree,
        root_dirmeta=meta,
        parent=Checksum(parent) if parent else None,
        subject=subject,
        body=body,
        timestamp=int(time.time()) if timestamp is None else timestamp,
        metadata=dict(sorted(commit_meta.items())),
    )
    checksum = repo.write_metadata(ObjectType.COMMIT, commit.to_bytes())
    if branch is not None:
        repo.set_ref(branch, checksum, expected=old_head)
    return checksum
