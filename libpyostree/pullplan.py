"""The pull planner: what to fetch next from an OSTree HTTP repository, sans I/O.

A :class:`Planner` is fed the bytes of what it asked for and answers with
more requests, like ostree 2022.x's object walk (``reference/ostree-format.md``
§4.2 and §4.4):

1. ``config`` (required: non-archive remotes are refused), ``summary`` and
   ``summary.sig`` (optional, unless every ref is wanted).
2. Refs resolve through the summary (normal form required; its commit sizes
   cap the ``.commit`` downloads), or through ``refs/heads/NAME`` without one.
3. Each wanted commit: ``.commitmeta`` (404 is fine) and ``.commit``; then its
   root dirmeta and dirtree, every dirtree entry, and parents to ``depth``
   (0: the commit only, N, -1: all; a missing parent ends the history).

With ``deltas`` on, each requested ref whose commit is not held may come
through a static delta instead (§4.2 steps 6-8, :mod:`libpyostree.deltas.plan`):
the delta index (``delta-indexes/…/TO.index``, when the summary — or, without a
summary, ``config`` — says deltas are indexed; 404 means none), then the
superblock (sha256 checked against the published digest; 404 falls back to the
object walk), then the parts not already satisfied (:attr:`FetchKind.DELTA_PART`:
the driver fetches, verifies and applies them, then calls :meth:`Planner.part_applied`)
and the missing fallbacks (plain ``.filez`` fetches).  Once every part is
applied, the target commit (from the superblock) goes through the object walk
as if fetched: its ``.commitmeta`` is fetched, its tree is found present, and
parents are walked to ``depth``.  Ancestors never come through deltas.

Nothing held locally is fetched again.  Dirtrees held locally are read
(through ``read_local``) so their missing children are still found — an
interrupted pull may have stored a tree but not all of its files.  Commits are
the exception: the caller stores them last, so a stored commit means a
complete closure and its tree is not walked.

The planner verifies metadata (sha256 of the bytes, normal form, structure,
file names, ref bindings) before using it; verifying ``.filez`` content is the
driver's job (CPU-heavy, done in parallel), which then calls :meth:`Planner.stored`.
"""

from __future__ import annotations

import enum
import hashlib
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

from . import records
from .deltas.errors import DeltaError
from .deltas.index import parse_index
from .deltas.names import DeltaName, index_path
from .deltas.plan import DeltaDecision, choose_delta, delta_fetches, verify_superblock
from .deltas.superblock import MAX_SUPERBLOCK_SIZE, Superblock
from .errors import CorruptObjectError, OstreeError
from .gvariant import is_normal_form
from .keyfile import KeyFile
from .names import Checksum, is_checksum, validate_rev
from .objects import ObjectType, build_commitmeta, parse_commit, parse_dirmeta, parse_dirtree
from .objects.summary import Summary, parse_summary

MAX_METADATA_SIZE = 128 * 1024 * 1024
"""OSTREE_MAX_METADATA_SIZE."""


class PullError(OstreeError):
    """The remote is unusable or lacks something required (refs, objects, config)."""


class FetchKind(enum.Enum):
    CONFIG = "config"
    SUMMARY = "summary"
    SUMMARY_SIG = "summary.sig"
    REF = "ref"
    OBJECT = "object"
    DELTA_INDEX = "delta-index"
    DELTA_SUPERBLOCK = "delta-superblock"
    DELTA_PART = "delta-part"
    """Fetched (unless ``inline``), verified and applied by the driver, which then
    calls :meth:`Planner.part_applied`."""


@dataclass(frozen=True, slots=True)
class Fetch:
    """One file to GET, relative to the remote's URL."""

    path: str
    kind: FetchKind
    checksum: str | None = None
    objtype: ObjectType | None = None
    optional: bool = False
    """A 404 (or 403/410) is an answer, not an error."""
    max_size: int | None = None
    ref: str | None = None
    delta: str | None = None
    """Delta fetches: the delta name (``FROM-TO`` or ``TO``)."""
    part: int | None = None
    """DELTA_PART: the part index."""
    digest: bytes | None = None
    """DELTA_SUPERBLOCK: the published sha256 (None: unknown); DELTA_PART: the
    part's sha256 from its header."""
    inline: bool = False
    """DELTA_PART: the part is inside the superblock; nothing to download."""


def object_path(checksum: str, objtype: ObjectType) -> str:
    return f"objects/{checksum[:2]}/{checksum[2:]}.{objtype.archive_suffix}"


@dataclass
class PullResult:
    refs: dict[str, Checksum]
    """The remote's refs that were pulled, name → commit."""
    commits: dict[Checksum, bytes]
    """Commits fetched in this pull, verified; the caller stores them last."""
    commitmeta: dict[Checksum, bytes]
    visited: set[Checksum]
    """Every commit of the pulled histories (fetched or already held), to depth."""
    summary: bytes | None
    summary_sig: bytes | None
    fetched: int = 0
    """Objects fetched (metadata and content)."""
    deltas_used: list[str] = field(default_factory=list)
    """Static deltas whose superblock was fetched and applied (``FROM-TO`` or ``TO``)."""
    delta_parts_fetched: int = 0
    """Delta parts downloaded (inline parts and parts already satisfied excluded)."""
    delta_parts_skipped: int = 0
    """Parts not needed: all their objects were present."""
    delta_fallbacks: int = 0
    """Fallback objects fetched for deltas (also counted in ``fetched``)."""
    delta_objects: int = 0
    """Objects written by delta parts."""
    trees: bytes | None = None
    """The dirtrees, dirmetas and files of the trees of ``commits`` (each once,
    fetched or already held): the walk visited them anyway, so a caller indexing
    the commits' objects (the service) need not walk them again.  33-byte
    records (binary checksum, type value); see :meth:`tree_objects`.  None when
    a static delta was used (its fallback objects are not walked ones)."""

    def tree_objects(self) -> Iterator[tuple[Checksum, ObjectType]]:
        """:attr:`trees` decoded (nothing when it is None)."""
        return records.unpack(self.trees or b"")


@dataclass
class _CommitWant:
    depth: int
    optional: bool
    binding: str | None


@dataclass
class _DeltaJob:
    """One target commit that may come through a static delta."""

    to_commit: Checksum
    heads: list[str]
    """The refs pointing at it: walked (with their binding) once the delta is done."""
    from_local: str | None
    decision: DeltaDecision | None = None
    superblock: Superblock | None = None
    pending: set[str | int] = field(default_factory=set)
    """Part indexes and fallback checksums not yet applied / stored."""
    walked: bool = False
    """The object walk of the target has started (delta done, or not used)."""


MAX_DELTA_PARTS_IN_FLIGHT = 2
"""``_OSTREE_MAX_OUTSTANDING_DELTAPART_REQUESTS``."""


@dataclass
class Planner:
    refs: Sequence[str] | None
    """Refs to pull; None for every ref of the remote's summary."""
    depth: int
    have: Callable[[str, ObjectType], bool]
    read_local: Callable[[str, ObjectType], bytes]
    check_bindings: bool = True
    ref_filter: Callable[[str], bool] | None = None
    """Which refs to keep (the service's include/exclude globs)."""
    deltas: bool = False
    """Use static deltas for the requested refs (the driver applies the parts)."""
    local_ref: Callable[[str], str | None] | None = None
    """Remote ref name → the local ref's commit (ostree's ``from_local``), or None."""
    commit_complete: Callable[[str], bool] | None = None
    """Is this commit held and not partial?  Default: ``have(c, COMMIT)``."""

    _queue_meta: deque[Fetch] = field(default_factory=deque)
    _queue_content: deque[Fetch] = field(default_factory=deque)
    _outstanding: int = 0
    _discovery: dict[FetchKind, bytes | None] = field(default_factory=dict)
    _summary: Summary | None = None
    _commit_sizes: dict[str, int] = field(default_factory=dict)
    _resolved: dict[str, Checksum] = field(default_factory=dict)
    _depths: dict[str, int] = field(default_factory=dict)
    _wants: dict[str, _CommitWant] = field(default_factory=dict)
    _parsed_parent: dict[str, str | None] = field(default_factory=dict)
    _seen: set[tuple[str, ObjectType]] = field(default_factory=set)
    _commits: dict[Checksum, bytes] = field(default_factory=dict)
    _commitmeta: dict[Checksum, bytes] = field(default_factory=dict)
    _fetched: int = 0
    _started: bool = False
    _queue_parts: deque[Fetch] = field(default_factory=deque)
    _parts_in_flight: int = 0
    _indexed_deltas: bool = False
    _summary_deltas: dict[str, bytes | None] = field(default_factory=dict)
    _jobs: dict[str, _DeltaJob] = field(default_factory=dict)
    _fallback_waiters: dict[str, list[_DeltaJob]] = field(default_factory=dict)
    _delta_commits: dict[str, bytes] = field(default_factory=dict)
    _deltas_used: list[str] = field(default_factory=list)
    _delta_parts_fetched: int = 0
    _delta_parts_skipped: int = 0
    _delta_fallbacks: int = 0
    _delta_objects: int = 0

    def __post_init__(self) -> None:
        if self.depth < -1:
            raise OstreeError("depth must be -1 (all), 0 or a positive number")
        for ref in self.refs or ():
            validate_rev(ref)

    # -- driving --------------------------------------------------------------------

    def start(self) -> list[Fetch]:
        """The discovery requests; fetch them all, then feed each answer."""
        assert not self._started, "start() once"
        self._started = True
        every_ref = self.refs is None
        first = [
            Fetch("config", FetchKind.CONFIG),
            Fetch("summary", FetchKind.SUMMARY, optional=not every_ref, max_size=MAX_METADATA_SIZE),
            Fetch("summary.sig", FetchKind.SUMMARY_SIG, optional=True, max_size=MAX_METADATA_SIZE),
        ]
        self._outstanding += len(first)
        return first

    def pop(self, limit: int) -> list[Fetch]:
        """Up to ``limit`` requests to start now; metadata first."""
        out: list[Fetch] = []
        while len(out) < limit and self._queue_meta:
            out.append(self._queue_meta.popleft())
        while (
            len(out) < limit
            and self._queue_parts
            and self._parts_in_flight < MAX_DELTA_PARTS_IN_FLIGHT
        ):
            self._parts_in_flight += 1
            out.append(self._queue_parts.popleft())
        while len(out) < limit and self._queue_content:
            out.append(self._queue_content.popleft())
        return out

    @property
    def done(self) -> bool:
        return self._started and self._outstanding == 0

    def feed(self, fetch: Fetch, data: bytes | None) -> list[tuple[Checksum, ObjectType, bytes]]:
        """The answer to ``fetch`` (None: not found).  Returns verified dirtrees and
        dirmetas the caller should store now.  Content (``.filez``) answers go to
        :meth:`stored` instead, once the driver has verified and written them."""
        self._outstanding -= 1
        if data is None and not fetch.optional:
            if fetch.kind is FetchKind.SUMMARY:
                raise PullError("The remote has no summary: name the refs to pull")
            raise PullError(f"Server returned 404 for {fetch.path}: it is required")
        if fetch.kind is FetchKind.OBJECT:
            if data is not None:
                self._fetched += 1
            return self._object(fetch, data)
        if fetch.kind is FetchKind.DELTA_INDEX:
            self._delta_index(fetch, data)
            return []
        if fetch.kind is FetchKind.DELTA_SUPERBLOCK:
            self._superblock(fetch, data)
            return []
        if fetch.kind is FetchKind.DELTA_PART:
            raise PullError("delta parts are applied by the driver: call part_applied()")
        if fetch.kind is FetchKind.REF:
            assert fetch.ref is not None and data is not None
            self._resolved[fetch.ref] = _parse_ref_file(fetch.ref, data)
            if len(self._resolved) == len(self._names()):
                self._want_heads()
            return []
        self._discovery[fetch.kind] = data
        if len(self._discovery) == 3:
            self._discovered()
        return []

    def stored(self, fetch: Fetch) -> None:
        """The driver verified and stored the ``.filez`` of ``fetch``."""
        self._outstanding -= 1
        self._fetched += 1
        assert fetch.checksum is not None
        for job in self._fallback_waiters.pop(fetch.checksum, ()):
            self._delta_fallbacks += 1
            self._delta_progress(job, fetch.checksum)

    def superblock(self, to_commit: str) -> Superblock:
        """The parsed superblock of the delta being applied for ``to_commit``
        (the driver reads part headers and inline parts from it)."""
        sb = self._jobs[to_commit].superblock
        assert sb is not None
        return sb

    def part_applied(self, fetch: Fetch, objects_written: int = 0) -> None:
        """The driver fetched (unless inline), verified and applied the part ``fetch``."""
        assert fetch.kind is FetchKind.DELTA_PART and fetch.checksum and fetch.part is not None
        self._outstanding -= 1
        self._parts_in_flight -= 1
        if not fetch.inline:
            self._delta_parts_fetched += 1
        self._delta_objects += objects_written
        self._delta_progress(self._jobs[fetch.checksum], fetch.part)

    def result(self) -> PullResult:
        assert self.done, "the pull is not finished"
        return PullResult(
            refs=dict(self._resolved),
            commits=dict(self._commits),
            commitmeta=dict(self._commitmeta),
            visited={Checksum(c) for c in self._depths if c in self._parsed_parent},
            summary=self._discovery.get(FetchKind.SUMMARY),
            summary_sig=self._discovery.get(FetchKind.SUMMARY_SIG),
            fetched=self._fetched,
            deltas_used=list(self._deltas_used),
            delta_parts_fetched=self._delta_parts_fetched,
            delta_parts_skipped=self._delta_parts_skipped,
            delta_fallbacks=self._delta_fallbacks,
            delta_objects=self._delta_objects,
            trees=None if self._deltas_used else records.pack(self._seen),
        )

    # -- discovery -------------------------------------------------------------------

    def _discovered(self) -> None:
        config = self._discovery.get(FetchKind.CONFIG)
        assert config is not None
        keyfile = _check_config(config)
        summary = self._discovery.get(FetchKind.SUMMARY)
        self._indexed_deltas = keyfile.get_bool("core", "indexed-deltas")
        if summary is not None:
            try:
                self._summary = parse_summary(summary)
            except OstreeError as exc:
                raise PullError(f"The remote's summary is invalid: {exc}") from None
            indexed = self._summary.metadata.get("ostree.summary.indexed-deltas")
            self._indexed_deltas = bool(
                indexed is not None and indexed.type == "b" and indexed.value
            )
            self._summary_deltas = {
                name: bytes(digest) if isinstance(digest, bytes | bytearray) else None
                for name, digest in self._summary.static_deltas.items()
            }
            remote = {r.name: r for r in self._summary.refs}
            self._commit_sizes = {r.checksum: r.commit_size for r in self._summary.refs}
            names = self._names(list(remote))
            for name in names:
                entry = remote.get(name)
                if entry is None:
                    raise PullError(f"Ref {name} is not in the remote's summary")
                self._resolved[name] = entry.checksum
            self._want_heads()
            return
        assert self.refs is not None  # summary is required otherwise
        for ref in self._names():
            self._push(Fetch(f"refs/heads/{ref}", FetchKind.REF, ref=ref, max_size=4096))

    def _names(self, remote: Sequence[str] = ()) -> list[str]:
        """The refs to pull: the requested ones, else the summary's; filtered."""
        names = list(remote) if self.refs is None else list(self.refs)
        if self.ref_filter is not None:
            names = [n for n in names if self.ref_filter(n)]
        return names

    def _want_heads(self) -> None:
        for name, commit in self._resolved.items():
            if self.deltas:
                self._initiate(name, commit)
            else:
                self._want_commit(commit, self.depth, optional=False, binding=name)

    # -- static deltas (§4.2 steps 6-8) ---------------------------------------------------

    def _complete(self, checksum: str) -> bool:
        if self.commit_complete is not None:
            return self.commit_complete(checksum)
        return self.have(checksum, ObjectType.COMMIT)

    def _initiate(self, name: str, commit: Checksum) -> None:
        job = self._jobs.get(commit)
        if job is not None:
            if job.walked:
                self._want_commit(commit, self.depth, optional=False, binding=name)
            else:
                job.heads.append(name)  # walked with the others when the delta is done
            return
        if commit in self._depths or self._complete(commit):
            # Held already: ostree would still GET the index (or probe a superblock)
            # and then walk; the answer cannot change anything, so walk at once.
            self._want_commit(commit, self.depth, optional=False, binding=name)
            return
        from_local = self.local_ref(name) if self.local_ref is not None else None
        job = self._jobs[commit] = _DeltaJob(commit, [name], from_local)
        if self._indexed_deltas:
            self._push(
                Fetch(
                    index_path(commit),
                    FetchKind.DELTA_INDEX,
                    commit,
                    optional=True,
                    max_size=MAX_METADATA_SIZE,
                )
            )
            return
        self._decide(job, self._summary_deltas or None)

    def _delta_index(self, fetch: Fetch, data: bytes | None) -> None:
        assert fetch.checksum is not None
        merged: dict[str, bytes | None] = dict(self._summary_deltas)
        if data is not None:
            try:
                merged.update(parse_index(data))
            except OstreeError as exc:
                raise PullError(
                    f"The remote's delta index {fetch.path} is invalid: {exc}"
                ) from None
        self._decide(self._jobs[fetch.checksum], merged)

    def _decide(self, job: _DeltaJob, deltas: dict[str, bytes | None] | None) -> None:
        to = job.to_commit
        candidates: set[str] = {to}
        if job.from_local is not None:
            candidates.add(job.from_local)
        for delta in deltas or ():
            frm, sep, target = delta.partition("-")
            if sep and target == to and is_checksum(frm):
                candidates.add(frm)
        complete = {c: self._timestamp(c) for c in candidates if self._complete(c)}
        try:
            job.decision = decision = choose_delta(
                to, deltas=deltas, complete=complete, from_local=job.from_local
            )
        except DeltaError as exc:
            raise PullError(str(exc)) from None
        if decision.delta is None:
            self._walk_heads(job)
            return
        self._push(
            Fetch(
                decision.delta.superblock_path,
                FetchKind.DELTA_SUPERBLOCK,
                to,
                optional=True,
                max_size=MAX_SUPERBLOCK_SIZE,
                delta=str(decision.delta),
                digest=decision.digest,
            )
        )

    def _timestamp(self, checksum: str) -> int:
        try:
            return parse_commit(self.read_local(checksum, ObjectType.COMMIT)).timestamp
        except OstreeError:
            return 0

    def _superblock(self, fetch: Fetch, data: bytes | None) -> None:
        assert fetch.checksum is not None and fetch.delta is not None
        job = self._jobs[fetch.checksum]
        if data is None:  # no such delta: the object walk, as ostree
            self._walk_heads(job)
            return
        sb = verify_superblock(data, DeltaName.parse(fetch.delta), fetch.digest)
        job.superblock = sb
        self._deltas_used.append(fetch.delta)
        todo = delta_fetches(sb, self.have)
        self._delta_parts_skipped += len(todo.skipped_parts)
        for part in todo.parts:
            job.pending.add(part.index)
            self._outstanding += 1
            self._queue_parts.append(
                Fetch(
                    part.path,
                    FetchKind.DELTA_PART,
                    job.to_commit,
                    optional=False,
                    max_size=part.size,
                    delta=fetch.delta,
                    part=part.index,
                    digest=part.checksum,
                    inline=part.inline,
                )
            )
        for fallback in todo.fallbacks:
            csum = fallback.checksum
            if csum in job.pending:
                continue
            job.pending.add(csum)
            self._fallback_waiters.setdefault(csum, []).append(job)
            key = (csum, ObjectType.FILE)
            if key not in self._seen:  # else already on its way
                self._seen.add(key)
                self._push(
                    Fetch(
                        object_path(csum, ObjectType.FILE), FetchKind.OBJECT, csum, ObjectType.FILE
                    )
                )
        if not job.pending:
            self._delta_done(job)

    def _delta_progress(self, job: _DeltaJob, item: str | int) -> None:
        job.pending.discard(item)
        if not job.pending:
            self._delta_done(job)

    def _delta_done(self, job: _DeltaJob) -> None:
        """Every part applied and fallback stored: the commit comes from the superblock."""
        sb = job.superblock
        assert sb is not None
        self._delta_commits[job.to_commit] = sb.commit_bytes
        if sb.commitmeta is not None:
            self._commitmeta[job.to_commit] = build_commitmeta(sb.commitmeta)
        self._walk_heads(job)

    def _walk_heads(self, job: _DeltaJob) -> None:
        job.walked = True
        for name in job.heads:
            self._want_commit(job.to_commit, self.depth, optional=False, binding=name)

    # -- the object walk -----------------------------------------------------------------

    def _push(self, fetch: Fetch) -> None:
        self._outstanding += 1
        if fetch.objtype is ObjectType.FILE:
            self._queue_content.append(fetch)
        else:
            self._queue_meta.append(fetch)

    def _want_commit(
        self, checksum: str, depth: int, *, optional: bool, binding: str | None
    ) -> None:
        previous = self._depths.get(checksum)
        if previous is not None and (previous == -1 or (depth != -1 and depth <= previous)):
            return
        self._depths[checksum] = depth
        if checksum in self._parsed_parent:  # already known: only the history goes deeper
            self._want_parent(checksum)
            return
        if checksum in self._wants:
            return  # in flight; the deeper depth applies when it arrives
        self._wants[checksum] = _CommitWant(depth, optional, binding)
        if self.have(checksum, ObjectType.COMMIT):
            # A stored commit has its whole closure (commits are stored last).
            data = self.read_local(checksum, ObjectType.COMMIT)
            info = parse_commit(data)
            self._parsed_parent[checksum] = info.parent
            self._check_binding(checksum, info.ref_bindings, binding)
            self._want_parent(checksum)
            return
        max_size = self._commit_sizes.get(checksum, MAX_METADATA_SIZE)
        self._push(
            Fetch(
                object_path(checksum, ObjectType.COMMIT_META),
                FetchKind.OBJECT,
                checksum,
                ObjectType.COMMIT_META,
                optional=True,
                max_size=MAX_METADATA_SIZE,
            )
        )
        delta_commit = self._delta_commits.get(checksum)
        if delta_commit is not None:  # from a delta's superblock: as if just fetched
            self._metadata_arrived(checksum, ObjectType.COMMIT, delta_commit)
            return
        self._push(
            Fetch(
                object_path(checksum, ObjectType.COMMIT),
                FetchKind.OBJECT,
                checksum,
                ObjectType.COMMIT,
                optional=optional,
                max_size=max_size,
            )
        )

    def _want_parent(self, checksum: str) -> None:
        depth = self._depths[checksum]
        parent = self._parsed_parent.get(checksum)
        if parent is None or depth == 0:
            return
        self._want_commit(parent, -1 if depth < 0 else depth - 1, optional=True, binding=None)

    def _want(self, checksum: str, objtype: ObjectType) -> None:
        key = (checksum, objtype)
        if key in self._seen:
            return
        self._seen.add(key)
        if self.have(checksum, objtype):
            if objtype is ObjectType.DIR_TREE:
                self._scan_tree(self.read_local(checksum, objtype))
            return
        self._push(
            Fetch(
                object_path(checksum, objtype),
                FetchKind.OBJECT,
                checksum,
                objtype,
                max_size=None if objtype is ObjectType.FILE else MAX_METADATA_SIZE,
            )
        )

    def _scan_tree(self, data: bytes) -> None:
        tree = parse_dirtree(data)
        for _name, file_csum in tree.files:
            self._want(file_csum, ObjectType.FILE)
        for _name, sub_tree, sub_meta in tree.dirs:
            self._want(sub_meta, ObjectType.DIR_META)
            self._want(sub_tree, ObjectType.DIR_TREE)

    def _object(self, fetch: Fetch, data: bytes | None) -> list[tuple[Checksum, ObjectType, bytes]]:
        checksum, objtype = fetch.checksum, fetch.objtype
        assert checksum is not None and objtype is not None
        if objtype is ObjectType.COMMIT_META:
            if data is not None:
                if not is_normal_form("a{sv}", data):
                    raise CorruptObjectError(
                        f"Detached metadata of {checksum} is not normal-form a{{sv}}",
                        checksum=checksum,
                        objtype="commitmeta",
                    )
                self._commitmeta[Checksum(checksum)] = data
            return []
        if data is None:  # an optional (parent) commit the remote does not have
            self._wants.pop(checksum, None)
            self._commitmeta.pop(Checksum(checksum), None)
            return []
        return self._metadata_arrived(checksum, objtype, data)

    def _metadata_arrived(
        self, checksum: str, objtype: ObjectType, data: bytes
    ) -> list[tuple[Checksum, ObjectType, bytes]]:
        _verify_name(checksum, objtype, data)
        try:
            if objtype is ObjectType.COMMIT:
                info = parse_commit(data)
            elif objtype is ObjectType.DIR_TREE:
                self._scan_tree(data)
                return [(Checksum(checksum), objtype, data)]
            elif objtype is ObjectType.DIR_META:
                parse_dirmeta(data)
                return [(Checksum(checksum), objtype, data)]
            else:
                raise PullError(f"Unexpected {objtype.name_str} object {checksum}")
        except CorruptObjectError:
            raise
        except OstreeError as exc:
            raise CorruptObjectError(
                f"Corrupted {objtype.name_str} object {checksum}: {exc}",
                checksum=checksum,
                objtype=objtype.name_str,
            ) from None
        want = self._wants[checksum]
        self._check_binding(checksum, info.ref_bindings, want.binding)
        self._commits[Checksum(checksum)] = data
        self._parsed_parent[checksum] = info.parent
        self._want(info.root_dirmeta, ObjectType.DIR_META)
        self._want(info.root_dirtree, ObjectType.DIR_TREE)
        self._want_parent(checksum)
        return []

    def _check_binding(self, checksum: str, bindings: list[str], ref: str | None) -> None:
        if self.check_bindings and ref is not None and bindings and ref not in bindings:
            raise PullError(
                f"Commit {checksum} has no requested ref {ref!r} in its ref binding metadata "
                f"({', '.join(bindings)})"
            )


def _verify_name(checksum: str, objtype: ObjectType, data: bytes) -> None:
    actual = hashlib.sha256(data).hexdigest()
    if actual != checksum:
        raise CorruptObjectError(
            f"Corrupted {objtype.name_str} object; checksum expected={checksum} actual={actual}",
            checksum=checksum,
            objtype=objtype.name_str,
            expected=checksum,
            actual=actual,
        )


def _parse_ref_file(ref: str, data: bytes) -> Checksum:
    try:
        text = data.decode("utf-8").strip()
    except UnicodeDecodeError:
        text = ""
    if not is_checksum(text):
        shown = data[:64].decode("utf-8", "replace")
        raise PullError(f"Invalid rev {shown!r} for ref {ref}: the remote answered something else")
    return Checksum(text)


def _check_config(data: bytes) -> KeyFile:
    try:
        config = KeyFile.parse(data.decode("utf-8"))
    except (UnicodeDecodeError, OstreeError) as exc:
        raise PullError(f"The remote's config is not a valid key file: {exc}") from None
    mode = config.get("core", "mode") or "bare"
    if mode not in ("archive", "archive-z2"):
        raise PullError(f"Can't pull from archives with mode {mode!r}: only archive remotes")
    return config
