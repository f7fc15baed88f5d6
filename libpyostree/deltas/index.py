"""Listing deltas and the per-target delta indexes (``reference/ostree-format.md`` §3).

``delta-indexes/T[0:2]/T[2:].index`` is an ``a{sv}`` holding
``ostree.static-deltas`` → ``a{sv}`` of delta name (``FROM-TO`` or ``TO``) →
``<ay: sha256 of the superblock>``, for every delta whose target is T, sorted by
FROM (``ostree_repo_static_delta_reindex``).  Reindexing also sets
``core.indexed-deltas=true`` in ``config``, as ostree does, so clients that skip
the summary still look for indexes.
"""

from __future__ import annotations

import contextlib
import hashlib
import os

from ..errors import InvalidNameError
from ..gvariant import Variant, decode, encode
from ..names import Checksum
from ..repo import Repo, _atomic_write
from .names import DeltaName, index_path, index_target_from_relpath

STATIC_DELTAS_KEY = "ostree.static-deltas"


def list_deltas(repo: Repo) -> list[DeltaName]:
    """Every delta directory holding a ``superblock`` (``ostree static-delta list``),
    sorted; directories whose names do not decode are ignored."""
    root = repo.path / "deltas"
    out: list[DeltaName] = []
    try:
        prefixes = os.listdir(root)
    except FileNotFoundError:
        return out
    for prefix in prefixes:
        try:
            rests = os.listdir(root / prefix)
        except NotADirectoryError:
            continue
        for rest in rests:
            if not (root / prefix / rest / "superblock").is_file():
                continue
            with contextlib.suppress(InvalidNameError):
                out.append(DeltaName.from_relpath(f"{prefix}/{rest}"))
    return sorted(out, key=str)


def list_indexes(repo: Repo) -> list[Checksum]:
    """Targets that have a delta index file (``ostree static-delta indexes``)."""
    root = repo.path / "delta-indexes"
    out: list[Checksum] = []
    for dirpath, _dirs, files in os.walk(root):
        for fname in files:
            rel = os.path.relpath(os.path.join(dirpath, fname), root)
            with contextlib.suppress(InvalidNameError):
                out.append(index_target_from_relpath(rel))
    return sorted(out)


def superblock_digest(repo: Repo, name: DeltaName) -> bytes:
    with open(repo.path / name.superblock_path, "rb") as f:
        return hashlib.sha256(f.read()).digest()


def build_index(deltas: dict[str, bytes]) -> bytes:
    """Index bytes for name → digest entries (sorted by name, hence by FROM)."""
    inner = {name: Variant("ay", digest) for name, digest in sorted(deltas.items())}
    return encode("a{sv}", {STATIC_DELTAS_KEY: Variant("a{sv}", inner)})


def parse_index(data: bytes) -> dict[str, bytes]:
    """name → superblock digest from index bytes (read leniently, as clients do)."""
    value = decode("a{sv}", data, strict=False)
    entry = value.get(STATIC_DELTAS_KEY)
    if not isinstance(entry, Variant) or entry.type != "a{sv}":
        return {}
    out = {}
    for name, digest in entry.value.items():
        if isinstance(digest, Variant) and digest.type == "ay" and len(digest.value) == 32:
            out[name] = bytes(digest.value)
    return out


def reindex(repo: Repo, to_commit: str | None = None) -> None:
    """Rewrite the index of ``to_commit`` (or of every target), removing indexes of
    targets that no longer have deltas; sets ``core.indexed-deltas=true``."""
    if not repo.config.get_bool("core", "indexed-deltas"):
        repo.config.set("core", "indexed-deltas", "true")
        _atomic_write(repo.path / "config", repo.config.dumps().encode(), repo.path / "tmp")
    by_target: dict[str, dict[str, bytes]] = {}
    targets = {to_commit} if to_commit is not None else set(list_indexes(repo))
    for target in targets:
        by_target[target] = {}
    for name in list_deltas(repo):
        if to_commit is not None and name.to_commit != to_commit:
            continue
        by_target.setdefault(name.to_commit, {})[str(name)] = superblock_digest(repo, name)
    for target, deltas in by_target.items():
        path = repo.path / index_path(target)
        if not deltas:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
            continue
        data = build_index(deltas)
        with contextlib.suppress(FileNotFoundError):
            if path.read_bytes() == data:
                continue
        path.parent.mkdir(parents=True, exist_ok=True)
        _atomic_write(path, data, repo.path / "tmp")


def delta_digests(repo: Repo) -> dict[str, bytes]:
    """Every delta as name → sha256(superblock): the summary's ``ostree.static-deltas``."""
    return {str(name): superblock_digest(repo, name) for name in list_deltas(repo)}
