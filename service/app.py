"""The ASGI application: ``/content/…`` served by :class:`~service.serving.ContentApp`
directly (no router in the hot path), everything else by Starlette, behind
bearer-token authentication for ``/api/v1``."""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException

from . import auth
from .api import routes
from .errors import ApiError, api_error_handler, error_body, http_error_handler
from .serving import ContentApp
from .state import Service, Settings

PUBLIC = {"/api/v1/status", "/api/v1/openapi.json"}
READ_METHODS = {"GET", "HEAD", "OPTIONS"}


class App:
    """The top-level ASGI app."""

    def __init__(self, svc: Service, start_workers: bool = True) -> None:
        self.service = svc

        @contextlib.asynccontextmanager
        async def lifespan(_app: Starlette) -> AsyncIterator[None]:
            if start_workers:
                svc.start()
            try:
                yield
            finally:
                svc.stop()

        self.api = Starlette(
            routes=routes(),
            exception_handlers={ApiError: api_error_handler, HTTPException: http_error_handler},
            lifespan=lifespan,
        )
        self.api.state.service = svc
        self.content = ContentApp(svc.engine, svc.pool, svc.cache)

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            path: str = scope["path"]
            if path.startswith("/content/"):
                await self.content(scope, receive, send)
                return
            if path.startswith("/api/") and path not in PUBLIC:
                denied = self._authorize(scope)
                if denied is not None:
                    await _json(send, *denied)
                    return
        await self.api(scope, receive, send)

    def _authorize(self, scope: dict[str, Any]) -> tuple[int, dict[str, Any]] | None:
        header = ""
        for name, value in scope["headers"]:
            if name == b"authorization":
                header = value.decode("latin-1")
        kind, _, token = header.partition(" ")
        if kind.lower() != "bearer" or not token.strip():
            return 401, error_body("unauthenticated", "Send 'Authorization: Bearer <token>'")
        scope_ = auth.scope_of(self.service.engine, token.strip())
        if scope_ is None:
            return 401, error_body("unauthenticated", "The token is not valid")
        if scope_ != "admin" and (
            scope["method"] not in READ_METHODS or scope["path"].startswith("/api/v1/tokens")
        ):
            return 403, error_body("forbidden", f"A {scope_!r} token may only read")
        return None


async def _json(send: Any, status: int, body: dict[str, Any]) -> None:
    data = json.dumps(body).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(data)).encode()),
                (b"www-authenticate", b"Bearer"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": data})


def create_app(data_dir: Path | Settings, *, start_workers: bool = True) -> App:
    settings = data_dir if isinstance(data_dir, Settings) else Settings(Path(data_dir))
    return App(Service(settings), start_workers=start_workers)
