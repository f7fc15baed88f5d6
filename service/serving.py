"""``/content/{base_path}/…``: what a real ``ostree pull`` asks for, as a raw ASGI app.

Requests are resolved without a framework router: the distribution is found by
the longest matching base path, the version by its pin or the repository's
latest, and an object is served only when that version holds it.  A
version's content never changes, so its object set is cached (a few versions,
least recently used); distributions and latest-version numbers are cached
until the process changes them (``invalidate``) or for a few seconds (other
processes sharing the database).

The object GETs of a pull are also answered below ASGI by
:meth:`ContentApp.fast_object`, called from the HTTP protocol
(:mod:`service.protocol`): the same resolution, the same response triple.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import os
import re
import threading
import time
import weakref
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine, and_, select

from libpyostree.deltas.index import build_index
from libpyostree.deltas.names import DeltaName, index_target_from_relpath
from libpyostree.errors import OstreeError
from libpyostree.objects import ObjectType

from . import auth, db
from .db import Kind
from .pool import Pool
from .versions import present

CONFIG = b"[core]\nrepo_version=1\nmode=archive-z2\n"
_TTL = 5.0
_VERSIONS_CACHED = 4
_SMALL = 1 << 20
_CHUNK = 1 << 18
#: The largest object file :meth:`ContentApp.fast_object` reads (on the event loop);
#: larger ones are streamed by the ASGI path.
FAST_MAX = 1 << 18
_OBJECT = re.compile(
    r"objects/([0-9a-f]{2})/([0-9a-f]{62})\.(commit|commitmeta|dirtree|dirmeta|filez)\Z"
)
_SUFFIX_TYPE = {
    "commit": ObjectType.COMMIT,
    "commitmeta": ObjectType.COMMIT_META,
    "dirtree": ObjectType.DIR_TREE,
    "dirmeta": ObjectType.DIR_META,
    "filez": ObjectType.FILE,
}
IMMUTABLE = b"public, max-age=31536000, immutable"
SHORT = b"public, max-age=10"


class _QuietH2cUpgrades(logging.Filter):
    """libcurl, and so ``ostree pull``, offers ``Upgrade: h2c`` on every plain-HTTP
    request.  uvicorn rightly answers in HTTP/1.1 but logs "Unsupported upgrade
    request." each time: a third of the CPU time of serving a pull went to that."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.msg != "Unsupported upgrade request."


_QUIET_H2C_UPGRADES = _QuietH2cUpgrades()


@dataclass(frozen=True)
class Dist:
    name: str
    base_path: str
    repository_id: int | None
    repository: str | None
    version: int | None
    private: bool


@dataclass
class VersionContent:
    summary_digest: str
    refs: dict[str, str]
    objects: frozenset[str]
    """``"XX/rest.suffix"`` relative object paths, as requested."""
    deltas: dict[tuple[str | None, str], str]
    """(from, to) → superblock sha256 (hex)."""


class NotServed(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class ContentCache:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._lock = threading.Lock()
        self._dists: dict[str, Dist] = {}
        self._latest: dict[int, int] = {}
        self._summaries: dict[tuple[int, int], str] = {}
        self._created: dict[tuple[int, int], float] = {}
        self._loaded = 0.0
        self._versions: OrderedDict[tuple[int, int, float], VersionContent] = OrderedDict()
        self._nested = False
        """Whether a base path is a segment-prefix of another (never, through the API)."""
        self._objects: dict[str, tuple[int, VersionContent] | None] = {}
        """:meth:`object_version`'s memo, per base path, for the current distributions."""

    def invalidate(self) -> None:
        with self._lock:
            self._loaded = 0.0

    def _refresh(self) -> None:
        if time.monotonic() - self._loaded < _TTL:
            return
        d, r, rv = db.distributions, db.repositories, db.repository_versions
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(
                    d.c.name, d.c.base_path, d.c.repository_id, r.c.name, d.c.version, d.c.private
                ).select_from(d.outerjoin(r, r.c.id == d.c.repository_id))
            ).all()
            columns = (rv.c.repository_id, rv.c.number, rv.c.summary_digest, rv.c.created)
            versions = conn.execute(select(*columns).order_by(rv.c.number)).all()
        with self._lock:
            self._dists = {row[1]: Dist(*row) for row in rows}
            self._latest = {repo: number for repo, number, _d, _c in versions}
            self._summaries = {(repo, number): digest for repo, number, digest, _c in versions}
            # SQLite reuses the id of a deleted repository (and numbers restart), so a
            # cached version is keyed by its creation time too: never another's content.
            self._created = {(repo, number): created for repo, number, _d, created in versions}
            self._nested = any(
                path[:cut] in self._dists
                for path in self._dists
                for cut in range(len(path))
                if path[cut] == "/"
            )
            self._objects = {}
            self._loaded = time.monotonic()

    def resolve(self, path: str) -> tuple[Dist, str]:
        """(distribution, the rest of the path) for ``base_path/rest``."""
        self._refresh()
        dists = self._dists
        cut = path.rfind("/")
        while cut > 0:  # every proper prefix ending before a "/", longest first
            dist = dists.get(path[:cut])
            if dist is not None:
                return dist, path[cut + 1 :]
            cut = path.rfind("/", 0, cut)
        raise NotServed(404, f"No distribution serves {path!r}")

    def object_version(self, path: str) -> tuple[str, int, VersionContent] | None:
        """(rest, version number, version content) of ``path`` = ``BASE/objects/…`` when
        ``BASE`` is a public distribution's base path that serves a version: what
        :meth:`resolve` and :meth:`version_of` give for it, in one dictionary lookup (the
        object GETs of a pull, by the ten thousand).  None for anything else.

        Exactly :meth:`resolve`'s answer: when no base path is a segment-prefix of
        another (the API refuses overlapping ones; checked for every reload), ``BASE``
        is the only base path that can be a prefix of ``path``.  The memo holds the
        version of each base path asked for (a few at most) until the next reload, which
        asks :meth:`version_of` again (and so keeps the version recently used).
        """
        self._refresh()
        cut = path.rfind("/objects/")
        if cut <= 0:
            return None
        base = path[:cut]
        try:
            found = self._objects[base]
        except KeyError:
            found = self._object_version(base)
        if found is None:
            return None
        return path[cut + 1 :], *found

    def _object_version(self, base: str) -> tuple[int, VersionContent] | None:
        dist = self._dists.get(base)
        found = None
        if dist is not None and not dist.private and not self._nested:
            with contextlib.suppress(NotServed):  # no repository or version: _serve says so
                found = self.version_of(dist)
        if len(self._objects) >= _VERSIONS_CACHED:
            self._objects = {}
        self._objects[base] = found
        return found

    def version_of(self, dist: Dist) -> tuple[int, VersionContent]:
        if dist.repository_id is None:
            raise NotServed(404, f"Distribution {dist.name} has no repository")
        if dist.version is None:
            number = self._latest.get(dist.repository_id)
            if number is None:
                raise NotServed(404, f"Repository {dist.repository} has no version")
        else:
            number = dist.version
        key = (dist.repository_id, number)
        if key not in self._summaries:
            raise NotServed(
                404,
                f"Distribution {dist.name} serves version {number} of repository "
                f"{dist.repository}, which was deleted",
            )
        cached = (*key, self._created[key])
        with self._lock:
            content = self._versions.get(cached)
            if content is not None:
                self._versions.move_to_end(cached)
                return number, content
        content = self._load(dist.repository_id, number, self._summaries[key])
        with self._lock:
            self._versions[cached] = content
            while len(self._versions) > _VERSIONS_CACHED:
                self._versions.popitem(last=False)
        return number, content

    def _load(self, repository_id: int, number: int, digest: str) -> VersionContent:
        rc = db.repository_content
        with self.engine.connect() as conn:
            mine = and_(rc.c.repository_id == repository_id, present(number))
            refs = dict(
                conn.execute(
                    select(db.refs.c.name, db.refs.c.commit)
                    .join(rc, and_(rc.c.kind == Kind.REF, rc.c.content_id == db.refs.c.id))
                    .where(mine)
                ).all()
            )
            suffix = {int(t): t.archive_suffix for t in ObjectType}
            objects = frozenset(
                f"{c[:2]}/{c[2:]}.{suffix[t]}"
                for c, t in conn.execute(
                    select(db.objects.c.checksum, db.objects.c.type)
                    .join(rc, and_(rc.c.kind == Kind.OBJECT, rc.c.content_id == db.objects.c.id))
                    .where(mine)
                )
            )
            d = db.deltas
            deltas = {
                (f, t): g
                for f, t, g in conn.execute(
                    select(d.c.from_commit, d.c.to_commit, d.c.digest)
                    .join(rc, and_(rc.c.kind == Kind.DELTA, rc.c.content_id == d.c.id))
                    .where(mine)
                )
            }
        return VersionContent(digest, refs, objects, deltas)


Headers = list[tuple[bytes, bytes]]
Response = tuple[int, Headers, bytes]
"""(status, headers, body): a whole response, as the ASGI path sends it."""


def _error(status: int, message: str) -> Response:
    body = json.dumps({"error": {"code": "not_served", "message": message}}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    return status, headers, body


def _headers(etag: bytes, cache: bytes, size: int | None) -> Headers:
    headers = [
        (b"content-type", b"application/octet-stream"),
        (b"etag", etag),
        (b"cache-control", cache),
    ]
    if size is not None:
        headers.append((b"content-length", str(size).encode()))
    return headers


class ContentApp:
    """The ASGI app for ``/content/…`` (``scope["path"]`` starts with ``/content/``)."""

    def __init__(self, engine: Engine, pool: Pool, cache: ContentCache) -> None:
        self.engine = engine
        self.pool = pool
        self.cache = cache
        self.objects_root = str(pool.repo.path / "objects")
        self._objects_fd = -1
        """``objects_root`` opened for :meth:`fast_object` (``openat``: a shorter path
        walk), on first use; closed with the app."""
        logging.getLogger("uvicorn.error").addFilter(_QUIET_H2C_UPGRADES)

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        method = scope["method"]
        head = method == "HEAD"
        if method not in ("GET", "HEAD"):
            await _send(send, *_error(405, "Only GET and HEAD are served here"), head=False)
            return
        try:
            await self._serve(scope, send, head)
        except NotServed as exc:
            await _send(send, *_error(exc.status, exc.message), head=head)

    async def _serve(self, scope: dict[str, Any], send: Any, head: bool) -> None:
        raw = scope.get("raw_path") or scope["path"].encode()
        if b"%" in raw:
            raise NotServed(400, "Percent-encoded characters are not allowed in content paths")
        path = scope["path"][len("/content/") :]
        # An empty, "." or ".." segment starts the path or follows a "/" (fast path first).
        if path.startswith((".", "/")) or "/." in path or "//" in path:
            segments = path.split("/")
            if any(s in ("", ".", "..") for s in segments[:-1]) or segments[-1] in (".", ".."):
                raise NotServed(400, "Empty, '.' and '..' path segments are not allowed")
        dist, rest = self.cache.resolve(path)
        if dist.private:
            self._authorize(scope)
        number, content = self.cache.version_of(dist)
        if rest.startswith("objects/"):
            if _OBJECT.match(rest) is None:
                raise NotServed(
                    400,
                    "Invalid object path: objects/XX/<62 lowercase hex>.<commit|commitmeta|"
                    "dirtree|dirmeta|filez>",
                )
            relpath, etag = self._object(number, content, rest)
            path = f"{self.objects_root}/{relpath}"
            await self._file(scope, send, head, path=path, etag=etag, cache=IMMUTABLE)
            return
        if rest == "config":
            await _reply(scope, send, head, body=CONFIG, etag=b'"config-archive-z2"', cache=SHORT)
        elif rest == "summary":
            path = str(self.pool.file_path(content.summary_digest))
            etag = b'"' + content.summary_digest.encode() + b'"'
            await self._file(scope, send, head, path=path, etag=etag, cache=SHORT)
        elif rest.startswith("refs/heads/"):
            commit = content.refs.get(rest[len("refs/heads/") :])
            if commit is None:
                raise NotServed(404, f"Ref {rest[len('refs/heads/') :]} is not in version {number}")
            body = commit.encode() + b"\n"
            etag = b'"' + commit.encode() + b'"'
            await _reply(scope, send, head, body=body, etag=etag, cache=SHORT)
        elif rest == "summary.sig":
            raise NotServed(404, "This distribution's summary is not signed")
        elif rest.startswith("deltas/"):
            directory, _, fname = rest[len("deltas/") :].rpartition("/")
            try:
                name = DeltaName.from_relpath(directory)
            except OstreeError:
                raise NotServed(400, f"Invalid delta path {rest!r:.200}") from None
            if (name.from_commit, name.to_commit) not in content.deltas:
                raise NotServed(404, f"Delta {name} is not in version {number}")
            if fname != "superblock" and not fname.isdigit():
                raise NotServed(404, f"Delta {name} has no file {fname!r:.40}")
            path = str(self.pool.repo.path / name.path(fname))
            etag = b'"' + f"{name}/{fname}".encode() + b'"'
            await self._file(scope, send, head, path=path, etag=etag, cache=IMMUTABLE)
        elif rest.startswith("delta-indexes/"):
            try:
                target = index_target_from_relpath(rest[len("delta-indexes/") :])
            except OstreeError:
                raise NotServed(400, f"Invalid delta index path {rest!r:.200}") from None
            entries = {
                (f"{f}-{t}" if f else t): bytes.fromhex(g)
                for (f, t), g in content.deltas.items()
                if t == target
            }
            if not entries:
                raise NotServed(404, f"No delta to {target} in version {number}")
            body = build_index(entries)
            etag = b'"' + hashlib.sha256(body).hexdigest().encode() + b'"'
            await _reply(scope, send, head, body=body, etag=etag, cache=SHORT)
        else:
            raise NotServed(404, f"{rest} is not served (version {number})")

    def _object(self, number: int, content: VersionContent, rest: str) -> tuple[str, bytes]:
        """The path under ``objects/`` and the strong ETag of ``rest`` (a valid
        ``objects/…`` path) when the version holds that object."""
        relpath = rest[len("objects/") :]
        if relpath not in content.objects:  # a frozenset: O(1)
            raise NotServed(404, f"Object {relpath} is not in version {number}")
        return relpath, b'"' + relpath.replace("/", "").encode() + b'"'

    def fast_object(self, path: str, head: bool) -> Response | None:
        """The response :meth:`__call__` gives to a plain ``GET``/``HEAD`` of ``/content/``
        + ``path``, computed synchronously — or None when ``path`` is not an object of
        a public distribution's version as the ASGI path would serve it, or names a
        file over :data:`FAST_MAX` bytes (GET): the caller then takes the ASGI path.

        For :mod:`service.protocol`'s fast path, which only calls this for requests
        whose headers cannot change the answer (no ``Authorization``,
        ``If-None-Match``, ``Range``, body).  The steps are :meth:`_serve`'s, in its
        order (:meth:`ContentCache.object_version` is ``resolve`` + ``version_of``),
        with its helpers, so the two cannot answer differently;
        ``tests/test_serving_fastpath.py`` compares them.
        """
        if path.startswith((".", "/")) or "/." in path or "//" in path:
            return None  # maybe a 400 for a bad segment: the ASGI path says which
        found = self.cache.object_version(path)
        if found is None:
            return None  # private, no such distribution, repository or version: rare
        rest, number, content = found
        if _OBJECT.match(rest) is None:
            return None
        try:
            relpath, etag = self._object(number, content, rest)
        except NotServed as exc:
            return _error(exc.status, exc.message)
        try:
            if self._objects_fd < 0:
                self._objects_fd = os.open(self.objects_root, os.O_RDONLY | os.O_DIRECTORY)
                weakref.finalize(self, os.close, self._objects_fd)
            fd = os.open(relpath, os.O_RDONLY, dir_fd=self._objects_fd)
        except OSError:
            return None
        try:
            # The size as lseek's plain int: os.fstat builds a whole stat_result.
            size = os.lseek(fd, 0, os.SEEK_END)
            if head:
                return 200, _headers(etag, IMMUTABLE, size), b""
            if size > FAST_MAX:
                return None
            body = os.pread(fd, size, 0)  # a small local file: quick enough for the event loop
        except OSError:
            return None
        finally:
            os.close(fd)
        if len(body) != size:
            return None
        return 200, _headers(etag, IMMUTABLE, size), body

    def _authorize(self, scope: dict[str, Any]) -> None:
        for name, value in scope["headers"]:
            if name == b"authorization":
                kind, _, token = value.decode("latin-1").partition(" ")
                if kind.lower() == "bearer" and auth.scope_of(self.engine, token.strip()):
                    return
                # Every valid scope reads, so the token itself is bad: 401, as on the API.
                raise NotServed(401, "The token is not valid")
        raise NotServed(401, "This distribution is private: send a bearer token")

    async def _file(
        self,
        scope: dict[str, Any],
        send: Any,
        head: bool,
        *,
        path: str,
        etag: bytes,
        cache: bytes,
    ) -> None:
        try:
            fd = os.open(path, os.O_RDONLY)
        except FileNotFoundError:
            raise NotServed(404, "The stored file is missing") from None
        try:
            size = os.fstat(fd).st_size
            if _not_modified(scope, etag):
                await _start(send, 304, etag, cache, None)
                await send({"type": "http.response.body", "body": b""})
                return
            if size <= _SMALL or head:
                body = b"" if head else os.read(fd, size)
                await _start(send, 200, etag, cache, size)
                await send({"type": "http.response.body", "body": body})
                return
            await _start(send, 200, etag, cache, size)
            remaining = size
            while remaining > 0:
                chunk = await asyncio.to_thread(os.read, fd, min(_CHUNK, remaining))
                if not chunk:
                    break
                remaining -= len(chunk)
                await send(
                    {"type": "http.response.body", "body": chunk, "more_body": remaining > 0}
                )
            if remaining > 0:  # the file shrank: never possible for pool files
                await send({"type": "http.response.body", "body": b""})
        finally:
            os.close(fd)


def _not_modified(scope: dict[str, Any], etag: bytes) -> bool:
    for name, value in scope["headers"]:
        if name == b"if-none-match":
            return etag in [v.strip() for v in value.split(b",")] or value.strip() == b"*"
    return False


async def _start(send: Any, status: int, etag: bytes, cache: bytes, size: int | None) -> None:
    headers = _headers(etag, cache, size)
    await send({"type": "http.response.start", "status": status, "headers": headers})


async def _reply(
    scope: dict[str, Any], send: Any, head: bool, *, body: bytes, etag: bytes, cache: bytes
) -> None:
    if _not_modified(scope, etag):
        await _start(send, 304, etag, cache, None)
        await send({"type": "http.response.body", "body": b""})
        return
    await _start(send, 200, etag, cache, len(body))
    await send({"type": "http.response.body", "body": b"" if head else body})


async def _send(send: Any, status: int, headers: Headers, body: bytes, *, head: bool) -> None:
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": b"" if head else body})
