"""Bearer tokens: stored as sha256 digests; scope ``admin`` (everything) or ``read``.

The first start creates an ``admin`` token and writes it, once, to
``DATA_DIR/admin-token`` (mode 0600).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import secrets
import time
from pathlib import Path

from sqlalchemy import Engine, bindparam, func, select

from . import db

SCOPES = ("admin", "read")
TOKEN_FILE = "admin-token"


def digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def new_token() -> str:
    return "pyo_" + secrets.token_urlsafe(32)


def ensure_admin_token(engine: Engine, data_dir: Path) -> Path | None:
    """Create the first admin token when there is none; returns the file written."""
    with db.writing(engine) as conn:
        if conn.execute(select(func.count()).select_from(db.tokens)).scalar():
            return None
        token = new_token()
        path = data_dir / TOKEN_FILE
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(token + "\n")
        conn.execute(
            db.tokens.insert().values(
                name="admin", digest=digest(token), scope="admin", created=time.time()
            )
        )
    return path


_SCOPE = select(db.tokens.c.scope).where(db.tokens.c.digest == bindparam("digest"))
"""Built once: every API request runs it, and building a statement (and its cache
key) costs more than SQLite's lookup."""


def scope_of(engine: Engine, token: str) -> str | None:
    with engine.connect() as conn:
        scope = conn.execute(_SCOPE, {"digest": digest(token)}).scalar()
    return str(scope) if scope is not None else None
