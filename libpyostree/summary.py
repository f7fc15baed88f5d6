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
from collections.abc import Mapping

from .deltas.index import delta_digests
from .gvariant import Variant
from .names import Checksum
from .objects import ObjectType, SummaryRef, build_summary, parse_commit
from .objects.summary import Summary, be_uint64, parse_summary
from .repo import Repo


def generate_summary(repo: Repo, *, timestamp: int | None = None) -> bytes:
    """Build the summary bytes for ``repo`` (does not write them)."""
    deltas = {}
    if not repo.config.get_bool("core", "no-deltas-in-summary"):
        deltas = delta_digests(repo)
    return summary_for_refs(
        repo,
        repo.list_refs(remotes=False),
        deltas=deltas,
        timestamp=timestamp,
        tombstone_commits=repo.config.get_bool("core", "tombstone-commits"),
    )


def summary_for_refs(
    objects: Repo,
    refs: Mapping[str, str],
    *,
    deltas: Mapping[str, bytes] | None = None,
    timestamp: int | None = None,
    tombstone_commits: bool = False,
) -> bytes:
    """The summary of any set of refs whose commits ``objects`` holds.

    ``deltas`` maps delta names (``FROM-TO`` or ``TO``) to the sha256 of their
    superblock.  The service uses this for each repository version: the pool
    holds the objects, the version says which refs exist.
    """
    entries = []
    for name, checksum in sorted(refs.items()):
        data = objects.read_metadata(checksum, ObjectType.COMMIT)
        commit = parse_commit(data)
        meta = {"ostree.commit.timestamp": be_uint64(commit.timestamp)}
        if commit.version is not None:
            meta["ostree.commit.version"] = Variant("s", commit.version)
        entries.append(SummaryRef(name, Checksum(checksum), len(data), meta))
    metadata: dict[str, Variant] = {
        "ostree.summary.last-modified": be_uint64(
            int(time.time()) if timestamp is None else timestamp
        ),
        "ostree.summary.mode": Variant("s", "archive-z2"),
        "ostree.summary.tombstone-commits": Variant("b", tombstone_commits),
        "ostree.summary.indexed-deltas": Variant("b", True),
    }
    if deltas:
        metadata["ostree.static-deltas"] = Variant(
            "a{sv}", {name: Variant("ay", digest) for name, digest in sorted(deltas.items())}
        )
    return build_summary(entries, metadata)


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
