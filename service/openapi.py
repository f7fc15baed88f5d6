"""The OpenAPI 3.1 document for ``/api/v1``, built from the routes themselves so it
cannot drift from them (``tests/test_service_api.py`` validates it, checks that its
operations are exactly the routes, and validates real responses against its schemas).

Each route's endpoint name looks up an :class:`Op` in :data:`OPERATIONS` (summary,
success status and body, request body, query parameters); a route without one still
appears, described from its docstring, and the tests flag it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import libpyostree
from libpyostree.objects import ObjectType

Schema = dict[str, Any]


def ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


def listing(item: str) -> Schema:
    """The list envelope: ``{"count": N, "results": [...]}``."""
    return {
        "type": "object",
        "required": ["count", "results"],
        "properties": {
            "count": {"type": "integer", "minimum": 0},
            "results": {"type": "array", "items": ref(item)},
        },
    }


def _nullable(schema: Schema) -> Schema:
    return {"oneOf": [schema, {"type": "null"}]}


def _object(required: list[str], properties: dict[str, Schema], **extra: Any) -> Schema:
    return {"type": "object", "required": required, "properties": properties, **extra}


_STR: Schema = {"type": "string"}
_INT: Schema = {"type": "integer"}
_BOOL: Schema = {"type": "boolean"}
_TIME: Schema = {"type": "string", "format": "date-time"}
_CHECKSUM: Schema = {"type": "string", "pattern": "^[0-9a-f]{64}$"}
_DELTA_SETTINGS: dict[str, Schema] = {
    "compute_delta": {
        "type": "boolean",
        "description": "Generate static deltas for every new version (default true)",
    },
    "delta_depth": {
        "type": "integer",
        "minimum": 0,
        "maximum": 64,
        "description": "Deltas to each ref's head from its N previous commits (default 1)",
    },
    "delta_from_scratch": {
        "type": "boolean",
        "description": "Also a delta from scratch to each ref's head (default false)",
    },
}
_NAME: Schema = {"type": "string", "pattern": "^[A-Za-z0-9][A-Za-z0-9._-]{0,254}$"}
_OBJECT_TYPES = [t.name_str for t in ObjectType]
_TASK_STATES = ["waiting", "running", "completed", "failed", "canceled"]
_COUNTS = _object(
    ["refs", "commits", "objects", "deltas"],
    {k: {"type": "integer", "minimum": 0} for k in ("refs", "commits", "objects", "deltas")},
)
_ERROR_BODY = _object(["code", "message"], {"code": _STR, "message": _STR})

SCHEMAS: dict[str, Schema] = {
    "Error": _object(["error"], {"error": _ERROR_BODY}),
    "TaskRef": _object(["task"], {"task": {"type": "string", "description": "The task's URL"}}),
    "Status": _object(
        ["version", "database", "storage", "task_workers"],
        {
            "version": _STR,
            "database": _object(["url"], {"url": _STR}),
            "storage": _object(["data_dir", "pool"], {"data_dir": _STR, "pool": _STR}),
            "task_workers": _object(
                ["count", "tasks"],
                {
                    "count": _INT,
                    "tasks": {
                        "type": "object",
                        "description": "Number of tasks in each state",
                        "additionalProperties": _INT,
                    },
                },
            ),
        },
    ),
    "Repository": _object(
        [
            "name",
            "description",
            "created",
            "latest_version",
            "retain_versions",
            "compute_delta",
            "delta_depth",
            "delta_from_scratch",
            "versions_href",
        ],
        {
            "name": _NAME,
            "description": _STR,
            "created": _TIME,
            "latest_version": _INT,
            "retain_versions": _nullable({"type": "integer", "minimum": 1}),
            **_DELTA_SETTINGS,
            "versions_href": _STR,
        },
    ),
    "RepositoryCreate": _object(
        ["name"],
        {
            "name": _NAME,
            "description": _STR,
            "retain_versions": _nullable({"type": "integer", "minimum": 1}),
            **_DELTA_SETTINGS,
        },
        additionalProperties=False,
    ),
    "DeltaCreate": _object(
        ["to"],
        {
            "to": {**_CHECKSUM, "description": "The target commit"},
            "from": {**_CHECKSUM, "description": "The start commit (default: from scratch)"},
        },
        additionalProperties=False,
    ),
    "RepositoryUpdate": _object(
        [],
        {
            "name": _NAME,
            "description": _STR,
            "retain_versions": _nullable({"type": "integer", "minimum": 1}),
            **_DELTA_SETTINGS,
        },
        additionalProperties=False,
    ),
    "ContentCounts": _COUNTS,
    "Version": _object(
        ["number", "repository", "created", "summary_sha256", "content_summary"],
        {
            "number": {"type": "integer", "minimum": 0},
            "repository": _STR,
            "created": _TIME,
            "summary_sha256": _CHECKSUM,
            "content_summary": _object(
                ["added", "removed", "present"],
                {
                    "added": ref("ContentCounts"),
                    "removed": ref("ContentCounts"),
                    "present": ref("ContentCounts"),
                },
            ),
        },
    ),
    "Ref": _object(["name", "commit"], {"name": _STR, "commit": _CHECKSUM}),
    "Modify": {
        "type": "object",
        "description": "Adds come from the source version; a source without adds copies "
        "that whole version",
        "properties": {
            "add_refs": {"type": "array", "items": _STR},
            "add_commits": {"type": "array", "items": _CHECKSUM},
            "remove_refs": {"type": "array", "items": _STR},
            "remove_commits": {"type": "array", "items": _CHECKSUM},
            "source": {
                "oneOf": [
                    _object(
                        ["repository"],
                        {"repository": _NAME, "version": _nullable({"type": "integer"})},
                        additionalProperties=False,
                    ),
                    _NAME,
                ]
            },
            "depth": {
                "type": "integer",
                "minimum": -1,
                "description": "Parents to copy along (-1: all)",
            },
        },
        "additionalProperties": False,
    },
    "VersionDiff": _object(
        ["version", "base", "refs", "commits"],
        {
            "version": _INT,
            "base": _INT,
            "refs": _object(
                ["added", "removed", "moved"],
                {
                    "added": {"type": "array", "items": ref("Ref")},
                    "removed": {"type": "array", "items": ref("Ref")},
                    "moved": {
                        "type": "array",
                        "items": _object(
                            ["name", "from", "to"],
                            {"name": _STR, "from": _CHECKSUM, "to": _CHECKSUM},
                        ),
                    },
                },
            ),
            "commits": _object(
                ["added", "removed"],
                {
                    "added": {"type": "array", "items": _CHECKSUM},
                    "removed": {"type": "array", "items": _CHECKSUM},
                },
            ),
        },
    ),
    "Sync": _object(
        ["remote"],
        {
            "remote": _NAME,
            "mirror": {
                "type": "boolean",
                "default": False,
                "description": "Make the version equal the upstream selection",
            },
        },
        additionalProperties=False,
    ),
    "CommitsDiff": _object(
        ["from", "to", "added", "removed", "modified"],
        {
            "from": _CHECKSUM,
            "to": _CHECKSUM,
            "added": {"type": "array", "items": _STR},
            "removed": {"type": "array", "items": _STR},
            "modified": {"type": "array", "items": _STR},
        },
    ),
    "OrphansCleanup": _object(
        [],
        {
            "older_than": {
                "type": "number",
                "minimum": 0,
                "description": "Keep unreferenced files younger than this (seconds)",
            }
        },
        additionalProperties=False,
    ),
    "Commit": _object(
        [
            "checksum",
            "parent",
            "subject",
            "body",
            "timestamp",
            "version",
            "ref_bindings",
            "root_dirtree",
            "root_dirmeta",
            "signed",
            "size",
        ],
        {
            "checksum": _CHECKSUM,
            "parent": _nullable(_CHECKSUM),
            "subject": _STR,
            "body": _STR,
            "timestamp": {"type": "integer", "description": "Seconds since the epoch"},
            "version": _nullable(_STR),
            "ref_bindings": {"type": "array", "items": _STR},
            "root_dirtree": _CHECKSUM,
            "root_dirmeta": _CHECKSUM,
            "signed": _BOOL,
            "size": _INT,
        },
    ),
    "Object": _object(
        ["checksum", "type", "size"],
        {"checksum": _CHECKSUM, "type": {"enum": _OBJECT_TYPES}, "size": _INT},
    ),
    "Delta": _object(
        ["from", "to", "superblock_sha256", "size"],
        {
            "from": _nullable(_CHECKSUM),
            "to": _CHECKSUM,
            "superblock_sha256": _CHECKSUM,
            "size": _INT,
        },
    ),
    "Task": _object(
        [
            "id",
            "href",
            "kind",
            "state",
            "repository",
            "progress",
            "error",
            "created_version",
            "result",
            "created",
            "started",
            "finished",
        ],
        {
            "id": _STR,
            "href": _STR,
            "kind": _STR,
            "state": {"enum": _TASK_STATES},
            "repository": _nullable(_STR),
            "progress": {
                "type": "array",
                "items": _object(
                    ["message", "done", "total"],
                    {"message": _STR, "done": _INT, "total": _nullable(_INT)},
                ),
            },
            "error": _nullable(_ERROR_BODY),
            "created_version": _nullable(_INT),
            "result": _nullable(
                {"type": "object", "description": "What the task reports besides a version"}
            ),
            "created": _TIME,
            "started": _nullable(_TIME),
            "finished": _nullable(_TIME),
        },
    ),
    "Distribution": _object(
        ["name", "base_path", "base_url", "repository", "version", "private", "created"],
        {
            "name": _NAME,
            "base_path": _STR,
            "base_url": _STR,
            "repository": _nullable(_STR),
            "version": _nullable({"type": "integer", "minimum": 0}),
            "private": _BOOL,
            "created": _TIME,
        },
    ),
    "DistributionCreate": _object(
        ["name", "base_path"],
        {
            "name": _NAME,
            "base_path": _STR,
            "repository": _nullable(_STR),
            "version": _nullable({"type": "integer", "minimum": 0}),
            "private": _BOOL,
        },
        additionalProperties=False,
    ),
    "DistributionUpdate": _object(
        [],
        {
            "name": _NAME,
            "base_path": _STR,
            "repository": _nullable(_STR),
            "version": _nullable({"type": "integer", "minimum": 0}),
            "private": _BOOL,
        },
        additionalProperties=False,
    ),
    "Remote": _object(
        ["name", "url", "created"],
        {
            "name": _NAME,
            "url": _STR,
            "created": _TIME,
            "include_refs": _nullable({"type": "array", "items": _STR}),
            "exclude_refs": _nullable({"type": "array", "items": _STR}),
            "depth": _nullable(_INT),
            "tls_validation": _nullable(_BOOL),
            "ca_cert": _nullable(_STR),
            "client_cert": _nullable(_STR),
            "client_key": _nullable({"const": "***", "description": "Never shown"}),
            "username": _nullable(_STR),
            "password": _nullable({"const": "***", "description": "Never shown"}),
            "headers": _nullable({"type": "object", "additionalProperties": _STR}),
            "proxy_url": _nullable(_STR),
        },
    ),
    "RemoteWrite": {
        "type": "object",
        "description": "Create: name and url are required; update: any subset",
        "properties": {
            "name": _NAME,
            "url": {"type": "string", "pattern": "^https?://"},
            "include_refs": _nullable({"type": "array", "items": _STR}),
            "exclude_refs": _nullable({"type": "array", "items": _STR}),
            "depth": _nullable({"type": "integer", "minimum": -1}),
            "tls_validation": _nullable(_BOOL),
            "ca_cert": _nullable(_STR),
            "client_cert": _nullable(_STR),
            "client_key": _nullable(_STR),
            "username": _nullable(_STR),
            "password": _nullable(_STR),
            "headers": _nullable({"type": "object", "additionalProperties": _STR}),
            "proxy_url": _nullable(_STR),
        },
        "additionalProperties": False,
    },
    "Token": _object(
        ["name", "scope", "created"],
        {"name": _NAME, "scope": {"enum": ["admin", "read"]}, "created": _TIME},
    ),
    "TokenCreate": _object(
        ["name"],
        {"name": _NAME, "scope": {"enum": ["admin", "read"], "default": "read"}},
        additionalProperties=False,
    ),
    "TokenCreated": _object(
        ["name", "scope", "token"],
        {
            "name": _NAME,
            "scope": {"enum": ["admin", "read"]},
            "token": {"type": "string", "description": "Shown only once"},
        },
    ),
}


def _query(name: str, schema: Schema, description: str) -> Schema:
    return {"name": name, "in": "query", "schema": schema, "description": description}


@dataclass(frozen=True)
class Op:
    summary: str
    response: Schema | None = None
    """The success body's schema; None: no body."""
    status: str = "200"
    request: str | None = None
    """Schema name of a JSON request body."""
    query: tuple[Schema, ...] = ()
    paged: bool = False
    body_optional: bool = False


_TASK = ref("TaskRef")
_CONTENT_VERSION = "The version: a number or 'latest'"

OPERATIONS: dict[str, Op] = {
    "status": Op("Service status: version, database, storage and task workers", ref("Status")),
    "openapi": Op("This OpenAPI document", {"type": "object"}),
    "repositories_create": Op("Create a repository", ref("Repository"), "201", "RepositoryCreate"),
    "repositories_list": Op(
        "List repositories",
        listing("Repository"),
        query=(_query("name", _STR, "Only the repository of this name"),),
        paged=True,
    ),
    "repository_get": Op("Get a repository", ref("Repository")),
    "repository_patch": Op(
        "Rename a repository or change its settings", ref("Repository"), request="RepositoryUpdate"
    ),
    "repository_delete": Op("Delete a repository and all its versions (a task)", _TASK, "202"),
    "repository_import": Op(
        "Import a commit archive (the request body) as a new version (a task)", _TASK, "202"
    ),
    "repository_modify": Op(
        "Add or remove refs and commits, or copy a version, as one new version (a task)",
        _TASK,
        "202",
        "Modify",
    ),
    "repository_delta": Op(
        "Generate a static delta (from scratch without 'from') as a new version (a task)",
        _TASK,
        "202",
        "DeltaCreate",
    ),
    "repository_sync": Op(
        "Fetch a remote's selected refs as a new version (a task)", _TASK, "202", "Sync"
    ),
    "commits_diff": Op(
        "Files added, removed and modified between two commits the repository holds",
        ref("CommitsDiff"),
        query=(
            {**_query("from", _CHECKSUM, "The older commit"), "required": True},
            {**_query("to", _CHECKSUM, "The newer commit"), "required": True},
        ),
    ),
    "orphans_cleanup": Op(
        "Delete pool files and rows no repository version references (a task)",
        _TASK,
        "202",
        "OrphansCleanup",
        body_optional=True,
    ),
    "version_diff": Op(
        "What changed between a version and a base version (default: the one before it)",
        ref("VersionDiff"),
        query=(_query("base", _STR, "The version to compare with: a number or 'latest'"),),
    ),
    "versions_list": Op(
        "List a repository's versions, newest first", listing("Version"), paged=True
    ),
    "version_get": Op("Get a repository version", ref("Version")),
    "version_delete": Op(
        "Delete a repository version; other versions keep their content (a task)", _TASK, "202"
    ),
    "refs_list": Op(
        "List the refs of a repository version",
        listing("Ref"),
        query=(
            _query("name", _STR, "Only the ref of this name"),
            _query("name_startswith", _STR, "Only refs whose name starts with this"),
            _query("commit", _CHECKSUM, "Only refs pointing at this commit"),
        ),
        paged=True,
    ),
    "commits_list": Op(
        "List the commits of a repository version",
        listing("Commit"),
        query=(
            _query("checksum", _CHECKSUM, "Only the commit of this checksum"),
            _query("ref", _STR, "The history of this ref, newest first"),
        ),
        paged=True,
    ),
    "objects_list": Op(
        "List the objects of a repository version",
        listing("Object"),
        query=(
            _query("type", {"enum": _OBJECT_TYPES}, "Only objects of this type"),
            _query("checksum", _CHECKSUM, "Only objects of this checksum"),
        ),
        paged=True,
    ),
    "deltas_list": Op(
        "List the static deltas of a repository version", listing("Delta"), paged=True
    ),
    "tasks_list": Op(
        "List tasks, newest first",
        listing("Task"),
        query=(_query("state", {"enum": _TASK_STATES}, "Only tasks in this state"),),
        paged=True,
    ),
    "task_get": Op("Get a task: state, progress, error and created version", ref("Task")),
    "task_cancel": Op(
        "Cancel a task: a waiting one at once, a running one at its next progress report",
        ref("Task"),
    ),
    "distributions_create": Op(
        "Create a distribution: serve a repository (latest or pinned version) under a base path",
        ref("Distribution"),
        "201",
        "DistributionCreate",
    ),
    "distributions_list": Op("List distributions", listing("Distribution"), paged=True),
    "distribution_get": Op("Get a distribution", ref("Distribution")),
    "distribution_patch": Op(
        "Change a distribution", ref("Distribution"), request="DistributionUpdate"
    ),
    "distribution_delete": Op("Delete a distribution", None, "204"),
    "remotes_create": Op("Create a remote to sync from", ref("Remote"), "201", "RemoteWrite"),
    "remotes_list": Op("List remotes", listing("Remote"), paged=True),
    "remote_get": Op("Get a remote (secrets are masked)", ref("Remote")),
    "remote_patch": Op("Change a remote", ref("Remote"), request="RemoteWrite"),
    "remote_delete": Op("Delete a remote", None, "204"),
    "tokens_create": Op(
        "Create an API token (its secret is returned only now)",
        ref("TokenCreated"),
        "201",
        "TokenCreate",
    ),
    "tokens_list": Op("List API tokens (names and scopes)", listing("Token"), paged=True),
    "token_delete": Op("Revoke an API token", None, "204"),
}

_PUBLIC = {"/api/v1/status", "/api/v1/openapi.json"}


def _op_id(method: str, path: str) -> str:
    words = [w for w in re.split(r"[/{}_.-]+", path.removeprefix("/api/v1/")) if w]
    return method.lower() + "_" + "_".join(words)


def _fallback(method: str, name: str, doc: str | None) -> Op:
    """A route not (yet) in :data:`OPERATIONS`."""
    summary = (doc or name.replace("_", " ")).strip().splitlines()[0]
    if method == "DELETE":
        return Op(summary, None, "204")
    if method == "POST" and name.endswith("create"):
        return Op(summary, {"type": "object"}, "201", "")
    return Op(summary, {"type": "object"}, "200", "" if method in ("POST", "PATCH") else None)


def _path_parameter(name: str, path: str) -> Schema:
    description = {
        "name": "The resource's name",
        "number": _CONTENT_VERSION,
        "id": "The task's id",
    }.get(name, name)
    schema: Schema = _STR
    if name == "number" and "/versions/" in path:
        schema = {"oneOf": [{"type": "integer", "minimum": 0}, {"const": "latest"}]}
    return {
        "name": name,
        "in": "path",
        "required": True,
        "schema": schema,
        "description": description,
    }


def _operation(method: str, path: str, name: str, op: Op) -> Schema:
    params = [_path_parameter(p, path) for p in re.findall(r"{(\w+)}", path)]
    params += list(op.query)
    if op.paged:
        params += [
            _query("limit", {"type": "integer", "minimum": 1, "default": 100}, "Page size"),
            _query("offset", {"type": "integer", "minimum": 0, "default": 0}, "Items to skip"),
        ]
    success: Schema = {
        "description": {"200": "OK", "201": "Created", "202": "A task was queued"}.get(
            op.status, "No content"
        )
    }
    if op.response is not None:
        success["content"] = {"application/json": {"schema": op.response}}
    errors = {
        "description": "Client error",
        "content": {"application/json": {"schema": ref("Error")}},
    }
    out: Schema = {
        "operationId": _op_id(method, path),
        "summary": op.summary,
        "parameters": params,
        "responses": {op.status: success, "4XX": errors},
    }
    if path in _PUBLIC:
        out["security"] = []
    if name == "repository_import":
        out["requestBody"] = {
            "required": True,
            "description": "The archive (tar, optionally gzip/xz/zstd compressed), streamed",
            "content": {
                "application/octet-stream": {
                    "schema": {"type": "string", "contentMediaType": "application/x-tar"}
                }
            },
        }
        out["parameters"] += [
            _query("ref", _STR, "Import only this ref; its commits must extend the current head"),
            _query("sha256", _CHECKSUM, "The archive's expected sha256"),
        ]
    elif op.request is not None:
        schema = ref(op.request) if op.request else {"type": "object"}
        out["requestBody"] = {
            "required": not op.body_optional,
            "content": {"application/json": {"schema": schema}},
        }
    return out


def document() -> dict[str, Any]:
    from .api import routes

    paths: dict[str, dict[str, Any]] = {}
    for route in routes():
        for method in sorted((route.methods or set()) - {"HEAD"}):
            op = OPERATIONS.get(route.name) or _fallback(method, route.name, route.endpoint.__doc__)
            paths.setdefault(route.path, {})[method.lower()] = _operation(
                method, route.path, route.name, op
            )
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "libpyostree service",
            "version": libpyostree.__version__,
            "description": "Repositories with immutable versions of OSTree content, imports, "
            "tasks and distributions served to ostree pull under /content/{base_path}/.",
        },
        "servers": [{"url": "/"}],
        "security": [{"bearer": []}],
        "paths": paths,
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": SCHEMAS,
        },
    }
