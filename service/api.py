"""The REST API (``/api/v1``): repositories, versions, content, imports, distributions,
remotes, tasks, tokens.  Names and shapes follow ``contract.md`` §4."""

from __future__ import annotations

import contextlib
import os
import re
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, and_, bindparam, func, select, update
from sqlalchemy.exc import IntegrityError
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

import libpyostree
from libpyostree.errors import OstreeError
from libpyostree.names import is_checksum, validate_rev
from libpyostree.objects import ObjectType

from . import auth, db
from .db import Kind
from .errors import ApiError, bad_request, conflict, not_found
from .modify import ModifyArgs, ModifyError
from .modify import validate as validate_modify
from .state import Service
from .versions import latest_number, load_state, present

Endpoint = Callable[[Request], Awaitable[Response]]
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,254}\Z")
_SEGMENT = re.compile(r"[A-Za-z0-9._-]+\Z")
_MAX_LIMIT = 10000
_DELTA_SETTINGS = ("compute_delta", "delta_depth", "delta_from_scratch")


# -- helpers -----------------------------------------------------------------------------


def service(request: Request) -> Service:
    svc: Service = request.app.state.service
    return svc


def iso(ts: float | None) -> str | None:
    return None if ts is None else datetime.fromtimestamp(ts, UTC).isoformat()


def validate_name(kind: str, name: Any) -> str:
    if not isinstance(name, str) or not _NAME.match(name):
        raise bad_request(
            f"Invalid {kind} name {name!r:.80}: use 1-255 letters, digits, '.', '_' or '-', "
            "starting with a letter or digit"
        )
    return name


def validate_base_path(path: Any) -> str:
    if not isinstance(path, str) or not path or len(path) > 1024:
        raise bad_request("base_path must be a non-empty string of at most 1024 characters")
    segments = path.split("/")
    for s in segments:
        if not _SEGMENT.match(s) or s in (".", ".."):
            raise bad_request(
                f"Invalid base_path {path!r:.80}: segments of letters, digits, '.', '_' or '-' "
                "separated by single '/', no '.' or '..' segments, no leading or trailing '/'"
            )
    if segments[0] == "api":
        raise bad_request("base_path may not start with 'api'")
    return path


async def json_body(request: Request) -> dict[str, Any]:
    try:
        body = await request.json()
    except ValueError:
        raise bad_request("The request body must be a JSON object") from None
    if not isinstance(body, dict):
        raise bad_request("The request body must be a JSON object")
    return body


def page(request: Request) -> tuple[int, int]:
    try:
        limit = int(request.query_params.get("limit", "100"))
        offset = int(request.query_params.get("offset", "0"))
    except ValueError:
        raise bad_request("limit and offset must be integers") from None
    if not 0 < limit <= _MAX_LIMIT or offset < 0:
        raise bad_request(f"limit must be 1..{_MAX_LIMIT} and offset ≥ 0")
    return limit, offset


def listing(request: Request, items: list[dict[str, Any]]) -> JSONResponse:
    limit, offset = page(request)
    return JSONResponse({"count": len(items), "results": items[offset : offset + limit]})


def repository_row(conn: Connection, name: str) -> Any:
    row = conn.execute(select(db.repositories).where(db.repositories.c.name == name)).first()
    if row is None:
        raise not_found(f"Repository {name!r:.80} does not exist")
    return row


def version_number(conn: Connection, repo: Any, text: str) -> int:
    if text == "latest":
        return latest_number(conn, repo.id)
    try:
        number = int(text)
    except ValueError:
        raise bad_request(f"Version must be a number or 'latest', not {text!r:.40}") from None
    rv = db.repository_versions
    exists = conn.execute(
        select(rv.c.id).where(rv.c.repository_id == repo.id, rv.c.number == number)
    ).first()
    if exists is None:
        raise not_found(f"Repository {repo.name} has no version {number}")
    return number


def task_ref(task_id: str) -> JSONResponse:
    return JSONResponse({"task": f"/api/v1/tasks/{task_id}"}, status_code=202)


def repository_json(conn: Connection, row: Any) -> dict[str, Any]:
    latest = latest_number(conn, row.id)
    return {
        "name": row.name,
        "description": row.description,
        "created": iso(row.created),
        "latest_version": latest,
        "retain_versions": row.retain_versions,
        "compute_delta": row.compute_delta,
        "delta_depth": row.delta_depth,
        "delta_from_scratch": row.delta_from_scratch,
        "versions_href": f"/api/v1/repositories/{row.name}/versions",
    }


def version_json(repo_name: str, row: Any) -> dict[str, Any]:
    return {
        "number": row.number,
        "repository": repo_name,
        "created": iso(row.created),
        "summary_sha256": row.summary_digest,
        "content_summary": row.content_summary,
    }


# -- status ----------------------------------------------------------------------------


async def status(request: Request) -> Response:
    svc = service(request)
    with svc.engine.connect() as conn:
        counts = {
            state: n
            for state, n in conn.execute(
                select(db.tasks.c.state, func.count()).group_by(db.tasks.c.state)
            )
        }
    return JSONResponse(
        {
            "version": libpyostree.__version__,
            "database": {"url": svc.engine.url.render_as_string(hide_password=True)},
            "storage": {"data_dir": str(svc.settings.data_dir), "pool": str(svc.pool.root)},
            "task_workers": {"count": svc.settings.workers, "tasks": counts},
        }
    )


# -- repositories ----------------------------------------------------------------------


def _delta_settings(body: dict[str, Any]) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for key in ("compute_delta", "delta_from_scratch"):
        if key in body:
            if not isinstance(body[key], bool):
                raise bad_request(f"{key} must be true or false")
            values[key] = body[key]
    if "delta_depth" in body:
        depth = body["delta_depth"]
        if not isinstance(depth, int) or isinstance(depth, bool) or not 0 <= depth <= 64:
            raise bad_request("delta_depth must be an integer from 0 to 64")
        values["delta_depth"] = depth
    return values


def _retain(value: Any) -> int | None:
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise bad_request("retain_versions must be a positive integer or null")
    return value


def _description(value: Any) -> str:
    if not isinstance(value, str) or len(value) > 10000:
        raise bad_request("description must be a string of at most 10000 characters")
    return value


async def repositories_create(request: Request) -> Response:
    body = await json_body(request)
    name = validate_name("repository", body.get("name"))
    description = _description(body.get("description", ""))
    retain = _retain(body.get("retain_versions"))
    deltas = _delta_settings(body)
    unknown = set(body) - {"name", "description", "retain_versions", *_DELTA_SETTINGS}
    if unknown:
        raise bad_request(f"Unknown fields: {', '.join(sorted(unknown))}")
    svc = service(request)
    now = time.time()
    try:
        with db.writing(svc.engine) as conn:
            repo_id = conn.execute(
                db.repositories.insert().values(
                    name=name,
                    description=description,
                    created=now,
                    next_version=1,
                    retain_versions=retain,
                    **deltas,
                )
            ).inserted_primary_key[0]  # type: ignore[index]
            digest = svc.pool.put_file(svc.empty_summary())
            conn.execute(
                db.repository_versions.insert().values(
                    repository_id=repo_id,
                    number=0,
                    created=now,
                    summary_digest=digest,
                    content_summary=_empty_counts(),
                )
            )
            row = repository_row(conn, name)
            out = repository_json(conn, row)
    except IntegrityError:
        raise conflict(f"Repository {name} already exists") from None
    svc.changed(None)
    return JSONResponse(out, status_code=201)


def _empty_counts() -> dict[str, dict[str, int]]:
    zero = {"refs": 0, "commits": 0, "objects": 0, "deltas": 0}
    return {"added": dict(zero), "removed": dict(zero), "present": dict(zero)}


async def repositories_list(request: Request) -> Response:
    svc = service(request)
    q = select(db.repositories).order_by(db.repositories.c.name)
    name = request.query_params.get("name")
    if name is not None:
        q = q.where(db.repositories.c.name == name)
    with svc.engine.connect() as conn:
        items = [repository_json(conn, row) for row in conn.execute(q)]
    return listing(request, items)


async def repository_get(request: Request) -> Response:
    with service(request).engine.connect() as conn:
        row = repository_row(conn, request.path_params["name"])
        return JSONResponse(repository_json(conn, row))


async def repository_patch(request: Request) -> Response:
    body = await json_body(request)
    values: dict[str, Any] = {}
    if "description" in body:
        values["description"] = _description(body["description"])
    if "retain_versions" in body:
        values["retain_versions"] = _retain(body["retain_versions"])
    if "name" in body:
        values["name"] = validate_name("repository", body["name"])
    values.update(_delta_settings(body))
    unknown = set(body) - {"description", "retain_versions", "name", *_DELTA_SETTINGS}
    if unknown:
        raise bad_request(f"Unknown fields: {', '.join(sorted(unknown))}")
    svc = service(request)
    try:
        with db.writing(svc.engine) as conn:
            row = repository_row(conn, request.path_params["name"])
            if values:
                conn.execute(
                    update(db.repositories).where(db.repositories.c.id == row.id).values(**values)
                )
            out = repository_json(conn, repository_row(conn, values.get("name", row.name)))
    except IntegrityError:
        raise conflict(f"Repository {values.get('name')} already exists") from None
    svc.changed(None)
    return JSONResponse(out)


async def repository_delete(request: Request) -> Response:
    svc = service(request)
    with svc.engine.connect() as conn:
        row = repository_row(conn, request.path_params["name"])
    return task_ref(svc.runner.submit("delete_repository", {"name": row.name}, row.id))


# -- import ------------------------------------------------------------------------------


async def repository_import(request: Request) -> Response:
    svc = service(request)
    ref = request.query_params.get("ref") or None
    sha256 = request.query_params.get("sha256") or None
    if ref is not None:
        try:
            validate_rev(ref)
        except OstreeError as exc:
            raise bad_request(str(exc)) from None
    if sha256 is not None and not is_checksum(sha256.lower()):
        raise bad_request("sha256 must be 64 hex digits")
    with svc.engine.connect() as conn:
        row = repository_row(conn, request.path_params["name"])
    limit = svc.settings.max_upload_size
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise ApiError(413, "too_large", f"The upload is larger than the limit of {limit} bytes")
    uploads = svc.settings.data_dir / "uploads"
    uploads.mkdir(exist_ok=True)
    path = uploads / f"{uuid.uuid4()}.upload"
    size = 0
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    ok = False
    try:
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise ApiError(
                    413, "too_large", f"The upload is larger than the limit of {limit} bytes"
                )
            view = memoryview(chunk)
            while view:
                view = view[os.write(fd, view) :]
        if size == 0:
            raise bad_request("The request body is empty: send the archive as the body")
        ok = True
    finally:
        os.close(fd)
        if not ok:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
    # The import checks ?sha256= itself, before anything becomes visible.
    args = {"upload": str(path), "ref": ref, "sha256": sha256, "size": size}
    return task_ref(svc.runner.submit("import", args, row.id))


# -- modify, orphans ---------------------------------------------------------------------


async def repository_modify(request: Request) -> Response:
    """Add refs/commits from a source version, remove refs/commits, or copy a whole
    version, as one new version (a task)."""
    body = await json_body(request)
    svc = service(request)
    try:
        args = ModifyArgs.from_json(body)
        with svc.engine.connect() as conn:
            row = repository_row(conn, request.path_params["name"])
            validate_modify(conn, row.id, args)
    except ModifyError as exc:
        raise ApiError(exc.status, exc.code, str(exc)) from None
    return task_ref(svc.runner.submit("modify", args.to_json(), row.id))


async def repository_sync(request: Request) -> Response:
    """Fetch the remote's selected refs (with history to its depth) as a new version
    (a task); ``mirror`` makes the version equal the upstream selection."""
    body = await json_body(request)
    unknown = set(body) - {"remote", "mirror"}
    if unknown:
        raise bad_request(f"Unknown fields: {', '.join(sorted(unknown))}")
    mirror = body.get("mirror", False)
    if not isinstance(mirror, bool):
        raise bad_request("mirror must be true or false")
    remote_name = body.get("remote")
    if not isinstance(remote_name, str):
        raise bad_request("remote must be the name of a remote")
    svc = service(request)
    with svc.engine.connect() as conn:
        row = repository_row(conn, request.path_params["name"])
        _remote_row(conn, remote_name)
    args = {"remote": remote_name, "mirror": mirror}
    return task_ref(svc.runner.submit("sync", args, row.id))


async def repository_delta(request: Request) -> Response:
    """Generate the static delta ``from`` → ``to`` (from scratch without ``from``) as
    a new version holding it (a task); both commits must be in the latest version."""
    body = await json_body(request)
    unknown = set(body) - {"from", "to"}
    if unknown:
        raise bad_request(f"Unknown fields: {', '.join(sorted(unknown))}")
    to, frm = body.get("to"), body.get("from")
    if not isinstance(to, str) or not is_checksum(to):
        raise bad_request("to must be a commit checksum (64 lowercase hex)")
    if frm is not None and (not isinstance(frm, str) or not is_checksum(frm)):
        raise bad_request("from must be a commit checksum (64 lowercase hex) or absent")
    if frm == to:
        raise bad_request("from and to are the same commit")
    svc = service(request)
    with svc.engine.connect() as conn:
        row = repository_row(conn, request.path_params["name"])
        state = load_state(conn, row.id, latest_number(conn, row.id))
    for commit in (frm, to):
        if commit is not None and commit not in state.commits:
            raise bad_request(f"Commit {commit} is not in the latest version of {row.name}")
    return task_ref(svc.runner.submit("delta", {"from": frm, "to": to}, row.id))


async def orphans_cleanup(request: Request) -> Response:
    """Delete pool files and rows no version of any repository references (a task)."""
    body = await json_body(request) if await request.body() else {}
    older_than = body.get("older_than", 0)
    if not isinstance(older_than, int | float) or isinstance(older_than, bool) or older_than < 0:
        raise bad_request("older_than must be a number of seconds ≥ 0")
    unknown = set(body) - {"older_than"}
    if unknown:
        raise bad_request(f"Unknown fields: {', '.join(sorted(unknown))}")
    svc = service(request)
    return task_ref(svc.runner.submit("orphans_cleanup", {"older_than": older_than}, None))


# -- versions ------------------------------------------------------------------------------


async def versions_list(request: Request) -> Response:
    rv = db.repository_versions
    with service(request).engine.connect() as conn:
        repo = repository_row(conn, request.path_params["name"])
        rows = conn.execute(
            select(rv).where(rv.c.repository_id == repo.id).order_by(rv.c.number.desc())
        ).all()
    return listing(request, [version_json(repo.name, r) for r in rows])


async def version_get(request: Request) -> Response:
    rv = db.repository_versions
    with service(request).engine.connect() as conn:
        repo = repository_row(conn, request.path_params["name"])
        number = version_number(conn, repo, request.path_params["number"])
        row = conn.execute(
            select(rv).where(rv.c.repository_id == repo.id, rv.c.number == number)
        ).one()
    return JSONResponse(version_json(repo.name, row))


async def version_delete(request: Request) -> Response:
    svc = service(request)
    with svc.engine.connect() as conn:
        repo = repository_row(conn, request.path_params["name"])
        number = version_number(conn, repo, request.path_params["number"])
        count = conn.execute(
            select(func.count()).where(db.repository_versions.c.repository_id == repo.id)
        ).scalar()
    if count == 1:
        raise conflict("Cannot delete the only version of a repository")
    return task_ref(svc.runner.submit("delete_version", {"number": number}, repo.id))


def _content_scope(request: Request) -> tuple[Service, Any, int]:
    svc = service(request)
    with svc.engine.connect() as conn:
        repo = repository_row(conn, request.path_params["name"])
        number = version_number(conn, repo, request.path_params["number"])
    return svc, repo, number


def _mine(repo_id: int, number: int, kind: Kind, content_id: Any) -> Any:
    rc = db.repository_content
    return and_(
        rc.c.repository_id == repo_id,
        rc.c.kind == kind,
        rc.c.content_id == content_id,
        present(number),
    )


async def version_diff(request: Request) -> Response:
    """Refs added, removed and moved, commits added and removed, between a version
    and ``base`` (default: the version before it)."""
    svc = service(request)
    rv = db.repository_versions
    with svc.engine.connect() as conn:
        repo = repository_row(conn, request.path_params["name"])
        number = version_number(conn, repo, request.path_params["number"])
        base: int | None
        if "base" in request.query_params:
            base = version_number(conn, repo, request.query_params["base"])
        else:
            base = conn.execute(
                select(func.max(rv.c.number)).where(
                    rv.c.repository_id == repo.id, rv.c.number < number
                )
            ).scalar()
            if base is None:
                raise bad_request(f"Version {number} is the oldest: give ?base=")
        new, old = load_state(conn, repo.id, number), load_state(conn, repo.id, int(base))
    refs = {
        "added": [
            {"name": n, "commit": c} for n, c in sorted(new.refs.items()) if n not in old.refs
        ],
        "removed": [
            {"name": n, "commit": c} for n, c in sorted(old.refs.items()) if n not in new.refs
        ],
        "moved": [
            {"name": n, "from": old.refs[n], "to": c}
            for n, c in sorted(new.refs.items())
            if n in old.refs and old.refs[n] != c
        ],
    }
    commits = {
        "added": sorted(new.commits - old.commits),
        "removed": sorted(old.commits - new.commits),
    }
    return JSONResponse({"version": number, "base": base, "refs": refs, "commits": commits})


async def commits_diff(request: Request) -> Response:
    """Files added, removed and modified between two commits the repository holds
    (like ``ostree diff``)."""
    from libpyostree.diff import diff_commits

    svc = service(request)
    ends = [request.query_params.get("from"), request.query_params.get("to")]
    for value in ends:
        if value is None or not is_checksum(value):
            raise bad_request("from and to must be commit checksums (64 lowercase hex)")
    c, rc = db.commits, db.repository_content
    with svc.engine.connect() as conn:
        repo = repository_row(conn, request.path_params["name"])
        for value in ends:
            held = conn.execute(
                select(rc.c.id)
                .join(c, and_(rc.c.kind == Kind.COMMIT, rc.c.content_id == c.c.id))
                .where(rc.c.repository_id == repo.id, c.c.checksum == value)
                .limit(1)
            ).first()
            if held is None:
                raise not_found(f"No version of repository {repo.name} holds commit {value}")
    assert ends[0] is not None and ends[1] is not None
    result = await run_in_threadpool(diff_commits, svc.pool.repo, ends[0], ends[1], verify=False)
    return JSONResponse(
        {
            "from": ends[0],
            "to": ends[1],
            "added": list(result.added),
            "removed": list(result.removed),
            "modified": list(result.modified),
        }
    )


async def refs_list(request: Request) -> Response:
    svc, repo, number = _content_scope(request)
    r, rc = db.refs, db.repository_content
    q = select(r.c.name, r.c.commit).join(rc, _mine(repo.id, number, Kind.REF, r.c.id))
    params = request.query_params
    if "name" in params:
        q = q.where(r.c.name == params["name"])
    if "name_startswith" in params:
        prefix = params["name_startswith"]
        q = q.where(func.substr(r.c.name, 1, len(prefix)) == prefix)
    if "commit" in params:
        q = q.where(r.c.commit == params["commit"].lower())
    with svc.engine.connect() as conn:
        rows = conn.execute(q.order_by(r.c.name)).all()
    return listing(request, [{"name": n, "commit": c} for n, c in rows])


def commit_json(row: Any) -> dict[str, Any]:
    return {
        "checksum": row.checksum,
        "parent": row.parent,
        "subject": row.subject,
        "body": row.body,
        "timestamp": row.timestamp,
        "version": row.version,
        "ref_bindings": row.ref_bindings,
        "root_dirtree": row.root_dirtree,
        "root_dirmeta": row.root_dirmeta,
        "signed": row.signed,
        "size": row.size,
    }


async def commits_list(request: Request) -> Response:
    svc, repo, number = _content_scope(request)
    c = db.commits
    q = select(c).join(db.repository_content, _mine(repo.id, number, Kind.COMMIT, c.c.id))
    params = request.query_params
    checksum = params["checksum"].lower() if "checksum" in params else None
    if checksum is not None and "ref" not in params:  # with ref: after the history walk
        q = q.where(c.c.checksum == checksum)
    with svc.engine.connect() as conn:
        rows = {row.checksum: row for row in conn.execute(q)}
        if "ref" in params:
            r = db.refs
            head = conn.execute(
                select(r.c.commit)
                .join(db.repository_content, _mine(repo.id, number, Kind.REF, r.c.id))
                .where(r.c.name == params["ref"])
            ).scalar()
            history: list[Any] = []
            while head is not None and head in rows:
                history.append(rows[head])
                head = rows[head].parent
            ordered = [row for row in history if checksum in (None, row.checksum)]
        else:
            ordered = sorted(rows.values(), key=lambda row: (-row.timestamp, row.checksum))
    return listing(request, [commit_json(row) for row in ordered])


async def objects_list(request: Request) -> Response:
    svc, repo, number = _content_scope(request)
    o = db.objects
    limit, offset = page(request)
    q = select(o.c.checksum, o.c.type, o.c.size).join(
        db.repository_content, _mine(repo.id, number, Kind.OBJECT, o.c.id)
    )
    params = request.query_params
    if "type" in params:
        try:
            q = q.where(o.c.type == int(ObjectType.from_str(params["type"])))
        except OstreeError as exc:
            raise bad_request(str(exc)) from None
    if "checksum" in params:
        q = q.where(o.c.checksum == params["checksum"].lower())
    with svc.engine.connect() as conn:
        count = conn.execute(select(func.count()).select_from(q.subquery())).scalar()
        rows = conn.execute(q.order_by(o.c.checksum, o.c.type).limit(limit).offset(offset)).all()
    results = [{"checksum": c, "type": ObjectType(t).name_str, "size": s} for c, t, s in rows]
    return JSONResponse({"count": count, "results": results})


async def deltas_list(request: Request) -> Response:
    svc, repo, number = _content_scope(request)
    d = db.deltas
    q = select(d).join(db.repository_content, _mine(repo.id, number, Kind.DELTA, d.c.id))
    with svc.engine.connect() as conn:
        rows = conn.execute(q.order_by(d.c.to_commit)).all()
    return listing(
        request,
        [
            {
                "from": r.from_commit,
                "to": r.to_commit,
                "superblock_sha256": r.digest,
                "size": r.size,
            }
            for r in rows
        ],
    )


# -- tasks -----------------------------------------------------------------------------------


def task_json(row: Any, repo_name: str | None) -> dict[str, Any]:
    return {
        "id": row.id,
        "href": f"/api/v1/tasks/{row.id}",
        "kind": row.kind,
        "state": row.state,
        "repository": repo_name,
        "progress": row.progress,
        "error": row.error,
        "created_version": row.created_version,
        "result": row.result,
        "created": iso(row.created),
        "started": iso(row.started),
        "finished": iso(row.finished),
    }


def _task_query() -> Any:
    t, r = db.tasks, db.repositories
    return select(t, r.c.name.label("repository_name")).select_from(
        t.outerjoin(r, r.c.id == t.c.repository_id)
    )


async def tasks_list(request: Request) -> Response:
    t = db.tasks
    q = _task_query().order_by(t.c.created.desc())
    state = request.query_params.get("state")
    if state is not None:
        q = q.where(t.c.state == state)
    with service(request).engine.connect() as conn:
        rows = conn.execute(q).all()
    return listing(request, [task_json(r, r.repository_name) for r in rows])


async def task_get(request: Request) -> Response:
    task_id = request.path_params["id"]
    with service(request).engine.connect() as conn:
        row = conn.execute(_TASK_BY_ID, {"task_id": task_id}).first()
    if row is None:
        raise not_found(f"Task {task_id!r:.80} does not exist")
    return JSONResponse(task_json(row, row.repository_name))


_TASK_BY_ID = _task_query().where(db.tasks.c.id == bindparam("task_id"))
"""Built once: clients poll their tasks (statement building costs more than the query)."""


async def task_cancel(request: Request) -> Response:
    svc = service(request)
    task_id = request.path_params["id"]
    state = svc.runner.cancel(task_id)
    if state is None:
        raise not_found(f"Task {task_id!r:.80} does not exist")
    if state in ("completed", "failed"):
        raise conflict(f"Task {task_id} already finished ({state})")
    if state == "canceled":  # never ran: nobody else will remove its upload
        with svc.engine.connect() as conn:
            args = conn.execute(select(db.tasks.c.args).where(db.tasks.c.id == task_id)).scalar()
        upload = (args or {}).get("upload")
        if upload:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(upload)
    return await task_get(request)


# -- distributions ---------------------------------------------------------------------------


def distribution_json(row: Any) -> dict[str, Any]:
    return {
        "name": row.name,
        "base_path": row.base_path,
        "base_url": f"/content/{row.base_path}/",
        "repository": row.repository_name,
        "version": row.version,
        "private": row.private,
        "created": iso(row.created),
    }


def _dist_query() -> Any:
    d, r = db.distributions, db.repositories
    return select(d, r.c.name.label("repository_name")).select_from(
        d.outerjoin(r, r.c.id == d.c.repository_id)
    )


def _dist_row(conn: Connection, name: str) -> Any:
    row = conn.execute(_dist_query().where(db.distributions.c.name == name)).first()
    if row is None:
        raise not_found(f"Distribution {name!r:.80} does not exist")
    return row


def _dist_values(conn: Connection, body: dict[str, Any], partial: bool) -> dict[str, Any]:
    known = {"name", "base_path", "repository", "version", "private"}
    unknown = set(body) - known
    if unknown:
        raise bad_request(f"Unknown fields: {', '.join(sorted(unknown))}")
    values: dict[str, Any] = {}
    if "name" in body or not partial:
        values["name"] = validate_name("distribution", body.get("name"))
    if "base_path" in body or not partial:
        values["base_path"] = validate_base_path(body.get("base_path"))
    if "repository" in body or not partial:
        repo_name = body.get("repository")
        if repo_name is None:
            values["repository_id"] = None
        else:
            values["repository_id"] = repository_row(conn, str(repo_name)).id
    if "version" in body:
        version = body["version"]
        if version is not None and (
            not isinstance(version, int) or isinstance(version, bool) or version < 0
        ):
            raise bad_request("version must be a non-negative integer or null")
        values["version"] = version
    if "private" in body:
        if not isinstance(body["private"], bool):
            raise bad_request("private must be true or false")
        values["private"] = body["private"]
    return values


def _check_version(conn: Connection, repository_id: int | None, version: int | None) -> None:
    if version is None:
        return
    if repository_id is None:
        raise bad_request("A pinned version needs a repository")
    rv = db.repository_versions
    if (
        conn.execute(
            select(rv.c.id).where(rv.c.repository_id == repository_id, rv.c.number == version)
        ).first()
        is None
    ):
        raise bad_request(f"The repository has no version {version}")


def _check_overlap(conn: Connection, base_path: str, own_id: int | None) -> None:
    d = db.distributions
    for other_id, other in conn.execute(select(d.c.id, d.c.base_path)):
        if other_id == own_id:
            continue
        if (
            other == base_path
            or other.startswith(base_path + "/")
            or base_path.startswith(other + "/")
        ):
            raise conflict(f"base_path {base_path} overlaps distribution base_path {other}")


async def distributions_create(request: Request) -> Response:
    body = await json_body(request)
    svc = service(request)
    try:
        with db.writing(svc.engine) as conn:
            values = _dist_values(conn, body, partial=False)
            _check_version(conn, values["repository_id"], values.get("version"))
            _check_overlap(conn, values["base_path"], None)
            conn.execute(
                db.distributions.insert().values(
                    created=time.time(), private=values.pop("private", False), **values
                )
            )
            out = distribution_json(_dist_row(conn, values["name"]))
    except IntegrityError:
        raise conflict(f"Distribution {body.get('name')} already exists") from None
    svc.changed(None)
    return JSONResponse(out, status_code=201)


async def distributions_list(request: Request) -> Response:
    with service(request).engine.connect() as conn:
        rows = conn.execute(_dist_query().order_by(db.distributions.c.name)).all()
    return listing(request, [distribution_json(r) for r in rows])


async def distribution_get(request: Request) -> Response:
    with service(request).engine.connect() as conn:
        return JSONResponse(distribution_json(_dist_row(conn, request.path_params["name"])))


async def distribution_patch(request: Request) -> Response:
    body = await json_body(request)
    svc = service(request)
    try:
        with db.writing(svc.engine) as conn:
            row = _dist_row(conn, request.path_params["name"])
            values = _dist_values(conn, body, partial=True)
            _check_version(
                conn,
                values.get("repository_id", row.repository_id),
                values.get("version", row.version),
            )
            if "base_path" in values:
                _check_overlap(conn, values["base_path"], row.id)
            if values:
                conn.execute(
                    update(db.distributions).where(db.distributions.c.id == row.id).values(**values)
                )
            out = distribution_json(_dist_row(conn, values.get("name", row.name)))
    except IntegrityError:
        raise conflict("A distribution with that name already exists") from None
    svc.changed(None)
    return JSONResponse(out)


async def distribution_delete(request: Request) -> Response:
    svc = service(request)
    with db.writing(svc.engine) as conn:
        row = _dist_row(conn, request.path_params["name"])
        conn.execute(db.distributions.delete().where(db.distributions.c.id == row.id))
    svc.changed(None)
    return Response(status_code=204)


# -- remotes ------------------------------------------------------------------------------------

_REMOTE_OPTIONS = {
    "include_refs": list,
    "exclude_refs": list,
    "depth": int,
    "tls_validation": bool,
    "ca_cert": str,
    "client_cert": str,
    "client_key": str,
    "username": str,
    "password": str,
    "headers": dict,
    "proxy_url": str,
}
_REMOTE_DEFAULTS: dict[str, Any] = {
    "include_refs": None,
    "exclude_refs": None,
    "depth": 0,
    "tls_validation": True,
}


def _remote_values(body: dict[str, Any], partial: bool) -> dict[str, Any]:
    unknown = set(body) - {"name", "url", *_REMOTE_OPTIONS}
    if unknown:
        raise bad_request(f"Unknown fields: {', '.join(sorted(unknown))}")
    values: dict[str, Any] = {}
    if "name" in body or not partial:
        values["name"] = validate_name("remote", body.get("name"))
    if "url" in body or not partial:
        url = body.get("url")
        if not isinstance(url, str) or not re.match(r"https?://[^\s/]+", url):
            raise bad_request("url must be an http:// or https:// URL")
        values["url"] = url
    options: dict[str, Any] = {}
    for key, kind in _REMOTE_OPTIONS.items():
        if key not in body:
            continue
        value = body[key]
        if value is not None and (
            not isinstance(value, kind) or (kind is int and isinstance(value, bool))
        ):
            raise bad_request(f"{key} must be {kind.__name__} or null")
        if isinstance(value, list) and not all(isinstance(v, str) for v in value):
            raise bad_request(f"{key} must be a list of glob strings")
        if key == "depth" and isinstance(value, int) and value < -1:
            raise bad_request("depth must be -1 (all history), 0 or a positive number")
        options[key] = value
    values["options"] = options
    return values


def remote_json(row: Any) -> dict[str, Any]:
    options = {**_REMOTE_DEFAULTS, **row.options}
    hidden = {"password", "client_key"}
    out = {"name": row.name, "url": row.url, "created": iso(row.created)}
    for key in _REMOTE_OPTIONS:
        value = options.get(key)
        out[key] = ("***" if value else None) if key in hidden else value
    return out


def _remote_row(conn: Connection, name: str) -> Any:
    row = conn.execute(select(db.remotes).where(db.remotes.c.name == name)).first()
    if row is None:
        raise not_found(f"Remote {name!r:.80} does not exist")
    return row


async def remotes_create(request: Request) -> Response:
    body = await json_body(request)
    values = _remote_values(body, partial=False)
    svc = service(request)
    try:
        with db.writing(svc.engine) as conn:
            conn.execute(db.remotes.insert().values(created=time.time(), **values))
            out = remote_json(_remote_row(conn, values["name"]))
    except IntegrityError:
        raise conflict(f"Remote {values['name']} already exists") from None
    return JSONResponse(out, status_code=201)


async def remotes_list(request: Request) -> Response:
    with service(request).engine.connect() as conn:
        rows = conn.execute(select(db.remotes).order_by(db.remotes.c.name)).all()
    return listing(request, [remote_json(r) for r in rows])


async def remote_get(request: Request) -> Response:
    with service(request).engine.connect() as conn:
        return JSONResponse(remote_json(_remote_row(conn, request.path_params["name"])))


async def remote_patch(request: Request) -> Response:
    body = await json_body(request)
    values = _remote_values(body, partial=True)
    svc = service(request)
    try:
        with db.writing(svc.engine) as conn:
            row = _remote_row(conn, request.path_params["name"])
            values["options"] = {**row.options, **values["options"]}
            conn.execute(update(db.remotes).where(db.remotes.c.id == row.id).values(**values))
            out = remote_json(_remote_row(conn, values.get("name", row.name)))
    except IntegrityError:
        raise conflict("A remote with that name already exists") from None
    return JSONResponse(out)


async def remote_delete(request: Request) -> Response:
    with db.writing(service(request).engine) as conn:
        row = _remote_row(conn, request.path_params["name"])
        conn.execute(db.remotes.delete().where(db.remotes.c.id == row.id))
    return Response(status_code=204)


# -- tokens ---------------------------------------------------------------------------------------


def token_json(row: Any) -> dict[str, Any]:
    return {"name": row.name, "scope": row.scope, "created": iso(row.created)}


async def tokens_create(request: Request) -> Response:
    body = await json_body(request)
    name = validate_name("token", body.get("name"))
    scope = body.get("scope", "read")
    if scope not in auth.SCOPES:
        raise bad_request(f"scope must be one of {', '.join(auth.SCOPES)}")
    token = auth.new_token()
    svc = service(request)
    try:
        with db.writing(svc.engine) as conn:
            conn.execute(
                db.tokens.insert().values(
                    name=name, digest=auth.digest(token), scope=scope, created=time.time()
                )
            )
    except IntegrityError:
        raise conflict(f"Token {name} already exists") from None
    return JSONResponse({"name": name, "scope": scope, "token": token}, status_code=201)


async def tokens_list(request: Request) -> Response:
    with service(request).engine.connect() as conn:
        rows = conn.execute(select(db.tokens).order_by(db.tokens.c.name)).all()
    return listing(request, [token_json(r) for r in rows])


async def token_delete(request: Request) -> Response:
    name = request.path_params["name"]
    with db.writing(service(request).engine) as conn:
        gone = conn.execute(db.tokens.delete().where(db.tokens.c.name == name)).rowcount
    if not gone:
        raise not_found(f"Token {name!r:.80} does not exist")
    return Response(status_code=204)


async def openapi(request: Request) -> Response:
    from .openapi import document

    return JSONResponse(document())


def routes() -> list[Route]:
    r = "/api/v1/repositories"
    v = r + "/{name}/versions/{number}"
    return [
        Route("/api/v1/status", status, methods=["GET"]),
        Route("/api/v1/openapi.json", openapi, methods=["GET"]),
        Route(r, repositories_create, methods=["POST"]),
        Route(r, repositories_list, methods=["GET"]),
        Route(r + "/{name}", repository_get, methods=["GET"]),
        Route(r + "/{name}", repository_patch, methods=["PATCH"]),
        Route(r + "/{name}", repository_delete, methods=["DELETE"]),
        Route(r + "/{name}/import", repository_import, methods=["POST"]),
        Route(r + "/{name}/modify", repository_modify, methods=["POST"]),
        Route(r + "/{name}/sync", repository_sync, methods=["POST"]),
        Route(r + "/{name}/deltas", repository_delta, methods=["POST"]),
        Route(r + "/{name}/commits/diff", commits_diff, methods=["GET"]),
        Route(r + "/{name}/versions", versions_list, methods=["GET"]),
        Route(v, version_get, methods=["GET"]),
        Route(v, version_delete, methods=["DELETE"]),
        Route(v + "/diff", version_diff, methods=["GET"]),
        Route(v + "/refs", refs_list, methods=["GET"]),
        Route(v + "/commits", commits_list, methods=["GET"]),
        Route(v + "/objects", objects_list, methods=["GET"]),
        Route(v + "/deltas", deltas_list, methods=["GET"]),
        Route("/api/v1/orphans/cleanup", orphans_cleanup, methods=["POST"]),
        Route("/api/v1/tasks", tasks_list, methods=["GET"]),
        Route("/api/v1/tasks/{id}", task_get, methods=["GET"]),
        Route("/api/v1/tasks/{id}/cancel", task_cancel, methods=["POST"]),
        Route("/api/v1/distributions", distributions_create, methods=["POST"]),
        Route("/api/v1/distributions", distributions_list, methods=["GET"]),
        Route("/api/v1/distributions/{name}", distribution_get, methods=["GET"]),
        Route("/api/v1/distributions/{name}", distribution_patch, methods=["PATCH"]),
        Route("/api/v1/distributions/{name}", distribution_delete, methods=["DELETE"]),
        Route("/api/v1/remotes", remotes_create, methods=["POST"]),
        Route("/api/v1/remotes", remotes_list, methods=["GET"]),
        Route("/api/v1/remotes/{name}", remote_get, methods=["GET"]),
        Route("/api/v1/remotes/{name}", remote_patch, methods=["PATCH"]),
        Route("/api/v1/remotes/{name}", remote_delete, methods=["DELETE"]),
        Route("/api/v1/tokens", tokens_create, methods=["POST"]),
        Route("/api/v1/tokens", tokens_list, methods=["GET"]),
        Route("/api/v1/tokens/{name}", token_delete, methods=["DELETE"]),
    ]
