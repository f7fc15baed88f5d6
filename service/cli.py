"""The ``pyostree`` console script: the library's local verbs plus the service commands."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from libpyostree import cli


def cmd_serve(args: argparse.Namespace) -> int:
    try:
        import uvicorn

        from service.app import create_app
    except ImportError as exc:
        raise cli.CliError(
            f"the service needs its extras: pip install 'libpyostree[service]' ({exc})"
        ) from None
    data_dir = Path(args.data_dir).resolve()
    os.makedirs(data_dir, exist_ok=True)
    uvicorn.run(create_app(data_dir), host=args.host, port=args.port, log_level="info")
    return 0


def add_service_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("serve", help="run the service (only /api/v1/status so far)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8080)
    p.add_argument("--data-dir", default="./data")
    p.add_argument("--workers", type=int, default=1)
    p.set_defaults(func=cmd_serve)


def main(argv: Sequence[str] | None = None) -> int:
    return cli.main(argv, extend=add_service_commands)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
