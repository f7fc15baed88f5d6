"""Generate a repository's ``summary`` the way ``ostree summary -u`` does.

Refs under ``refs/heads`` (not remote refs) sorted by name, each with the commit
size (host order), checksum, big-endian ``ostree.commit.timestamp`` and
``ostree.commit.version`` when the commit has one.  Additional metadata:
``ostree.summary.last-modified`` (BE), ``ostree.summary.mode`` and
``ostree.summary.tombstone-commits`` (which make 2022.x clients fetch
``config``), ``ostree.summary.indexed-deltas``, and ``ostree.static-deltas``
when deltas exist.  Any stale ``summary.sig`` is removed, as ostree does.
"""

from __future__ import annotations

import contextlib
import os
import time

from .gvariant import Variant
from .objects import ObjectType, SummaryRef, build_summary
from .objects.summary import Summary, be_uint64, parse_summary
from .repo import Repo


def _static_deltas(repo: Repo) -> dict[str, Variant]:
    """Every delta under ``deltas/`` as name → sha256(superblock)."""
    import base64
    import hashlib

    out: dict[str, Variant] = {}
    root = repo.path / "deltas"
    if not root.is_dir():
        return out
    for dirpath, _dirs, files in os.walk(root):
        if "superblock" not in files:
            continue
        rel = os.path.relpath(dirpath, root).replace(os.sep, "")
        names = []
        for half in rel.split("-"):
            raw = base64.b64decode(half.replace("_", "/") + "=")
            names.append(raw.hex())
        with open(os.path.join(dirpath, "superblock"), "rb") as f:
            digest = hashlib.sha256(f.read()).digest()
        out["-".join(names)] = Variant("ay", digest)
    return dict(sorted(out.items()))


def generate_summary(repo: Repo, *, timestamp: int | None = None) -> bytes:
    """Build the summary bytes for ``repo`` (does not write them)."""
    refs = []
    for name, checksum in repo.list_refs(remotes=False).items():
        data = repo.read_metadata(checksum, ObjectType.COMMIT)
        commit = repo.read_commit(checksum)
        meta = {"ostree.commit.timestamp": be_uint64(commit.timestamp)}
        if commit.version is not None:
            meta["ostree.commit.version"] = Variant("s", commit.version)
        refs.append(SummaryRef(name, checksum, len(data), meta))
    metadata: dict[str, Variant] = {
        "ostree.summary.last-modified": be_uint64(
            int(time.time()) if timestamp is None else timestamp
        ),
        "ostree.summary.mode": Variant("s", "archive-z2"),
        "ostree.summary.tombstone-commits": Variant(
            "b", repo.config.get_bool("core", "tombstone-commits")
        ),
        "ostree.summary.indexed-deltas": Variant("b", True),
    }
    deltas = _static_deltas(repo)
    if deltas and not repo.config.get_bool("core", "no-deltas-in-summary"):
        metadata["ostree.static-deltas"] = Variant("a{sv}", deltas)
    return build_summary(refs, metadata)


def update_summary(repo: Repo, *, timestamp: int | None = None) -> bytes:
    """Regenerate and atomically replace ``summary``; drop a stale ``summary.sig``."""
    data = generate_summary(repo, timestamp=timestamp)
    repo.write_file_atomic("summary", data)
    with contextlib.suppress(FileNotFoundError):
        os.unlink(repo.path / "summary.sig")
    return data


def read_summary(repo: Repo) -> Summary:
    with open(repo.path / "summary", "rb") as f:
        return parse_summary(f.read())
