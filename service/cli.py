"""The ``pyostree`` console script: the library's local verbs plus the service commands."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from libpyostree import cli
from libpyostree.errors import OstreeError
from service.client import add_client_commands


def cmd_serve(args: argparse.Namespace) -> int:
    try:
        import uvicorn

        from service.app import create_app
    except ImportError as exc:
        raise cli.CliError(
            f"the service needs its extras: pip install 'libpyostree[service]' ({exc})"
        ) from None
    from service.state import Settings

    data_dir = Path(args.data_dir).resolve()
    os.makedirs(data_dir, exist_ok=True)
    settings = Settings(
        data_dir,
        database_url=args.database_url,
        workers=args.workers,
        max_upload_size=args.max_upload_size,
    )
    try:
        app = create_app(settings)
    except OstreeError as exc:
        raise cli.CliError(str(exc)) from None
    if app.service.token_file is not None:
        print(f"Admin token written to {app.service.token_file}", file=sys.stderr, flush=True)
    else:
        print(f"Admin token: see {data_dir / 'admin-token'}", file=sys.stderr, flush=True)
    try:
        from service.protocol import CoalescingHttpToolsProtocol

        http: Any = CoalescingHttpToolsProtocol
    except ImportError:  # no httptools: uvicorn's pure-Python h11 protocol
        http = "auto"
    uvicorn.run(
        app,
        host=args.host,
        port=args.port,
        log_level=args.log_level,
        # One log line per object costs as much as serving it: off unless asked for.
        access_log=args.access_log,
        http=http,
    )
    return 0


def add_service_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("serve", help="run the service (REST API, content, task workers)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8080)
    p.add_argument("--data-dir", default="./data")
    p.add_argument("--workers", type=int, default=2, help="task worker threads")
    p.add_argument("--database-url", default=None, help="SQLAlchemy URL (default: SQLite)")
    p.add_argument("--max-upload-size", type=int, default=64 << 30, help="largest upload, in bytes")
    p.add_argument("--log-level", default="info")
    p.add_argument("--access-log", action="store_true", help="log every request")
    p.set_defaults(func=cmd_serve)
    add_client_commands(sub)


def main(argv: Sequence[str] | None = None) -> int:
    return cli.main(argv, extend=add_service_commands)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
