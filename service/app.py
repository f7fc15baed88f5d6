"""The Starlette application.  So far only ``GET /api/v1/status``; repositories,
versions, imports, distributions and tasks arrive with the service issue."""

from __future__ import annotations

from pathlib import Path

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

import libpyostree


def create_app(data_dir: Path) -> Starlette:
    async def status(request: Request) -> JSONResponse:
        return JSONResponse(
            {
                "version": libpyostree.__version__,
                "database": None,
                "storage": {"data_dir": str(data_dir)},
                "task_workers": 0,
            }
        )

    return Starlette(routes=[Route("/api/v1/status", status)])
