"""The OpenAPI 3.1 document for ``/api/v1``, built from the routes themselves so it
cannot drift from them (``tests/test_service_api.py`` validates it)."""

from __future__ import annotations

import re
from typing import Any

import libpyostree

_ERROR = {"$ref": "#/components/schemas/Error"}
_TASK = {"$ref": "#/components/schemas/TaskRef"}


def _op_id(method: str, path: str) -> str:
    words = [w for w in re.split(r"[/{}_.-]+", path.removeprefix("/api/v1/")) if w]
    return method.lower() + "_" + "_".join(words)


def document() -> dict[str, Any]:
    from .api import routes

    paths: dict[str, dict[str, Any]] = {}
    for route in routes():
        for method in sorted((route.methods or set()) - {"HEAD"}):
            params = [
                {"name": p, "in": "path", "required": True, "schema": {"type": "string"}}
                for p in re.findall(r"{(\w+)}", route.path)
            ]
            doc = (route.endpoint.__doc__ or route.name.replace("_", " ")).strip()
            responses: dict[str, Any] = {
                "200": {"description": "OK", "content": {"application/json": {"schema": {}}}},
                "4XX": {
                    "description": "Client error",
                    "content": {"application/json": {"schema": _ERROR}},
                },
            }
            if method == "POST" and route.name.endswith("create"):
                responses["201"] = {"description": "Created"}
                responses.pop("200")
            if route.name in {
                "repository_delete",
                "repository_import",
                "version_delete",
            }:
                responses["202"] = {
                    "description": "A task was queued",
                    "content": {"application/json": {"schema": _TASK}},
                }
                responses.pop("200")
            if method == "DELETE" and "202" not in responses:
                responses["204"] = {"description": "Deleted"}
                responses.pop("200")
            op: dict[str, Any] = {
                "operationId": _op_id(method, route.path),
                "summary": doc.splitlines()[0],
                "parameters": params,
                "responses": responses,
            }
            if route.path in ("/api/v1/status", "/api/v1/openapi.json"):
                op["security"] = []
            if route.name == "repository_import":
                op["requestBody"] = {
                    "required": True,
                    "content": {
                        "application/octet-stream": {
                            "schema": {"type": "string", "contentMediaType": "application/x-tar"}
                        }
                    },
                }
                op["parameters"] += [
                    {"name": "ref", "in": "query", "schema": {"type": "string"}},
                    {"name": "sha256", "in": "query", "schema": {"type": "string"}},
                ]
            elif method in ("POST", "PATCH") and route.name != "task_cancel":
                op["requestBody"] = {
                    "required": True,
                    "content": {"application/json": {"schema": {"type": "object"}}},
                }
            if method == "GET" and route.name.endswith("_list"):
                op["parameters"] += [
                    {"name": "limit", "in": "query", "schema": {"type": "integer"}},
                    {"name": "offset", "in": "query", "schema": {"type": "integer"}},
                ]
            paths.setdefault(route.path, {})[method.lower()] = op
    return {
        "openapi": "3.1.0",
        "info": {"title": "libpyostree service", "version": libpyostree.__version__},
        "servers": [{"url": "/"}],
        "security": [{"bearer": []}],
        "paths": paths,
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": {
                "Error": {
                    "type": "object",
                    "required": ["error"],
                    "properties": {
                        "error": {
                            "type": "object",
                            "required": ["code", "message"],
                            "properties": {
                                "code": {"type": "string"},
                                "message": {"type": "string"},
                            },
                        }
                    },
                },
                "TaskRef": {
                    "type": "object",
                    "required": ["task"],
                    "properties": {"task": {"type": "string"}},
                },
            },
        },
    }
