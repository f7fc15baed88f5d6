"""The running service: settings, database, pool, task runner and serving cache."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import Engine

from . import auth, db
from .operations import make_handlers
from .pool import Pool
from .serving import ContentCache
from .tasks import TaskRunner
from .versions import VersionState, summary_bytes

log = logging.getLogger("pyostree")


@dataclass(frozen=True)
class Settings:
    data_dir: Path
    database_url: str | None = None
    workers: int = 1
    max_upload_size: int = 64 << 30

    @property
    def url(self) -> str:
        return self.database_url or f"sqlite:///{self.data_dir / 'pyostree.db'}"


class Service:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        self.engine: Engine = db.make_engine(settings.url)
        db.migrate(self.engine)
        self.pool = Pool(settings.data_dir / "pool")
        self.cache = ContentCache(self.engine)
        self.runner = TaskRunner(
            self.engine, settings.workers, make_handlers(self.engine, self.pool, self.changed)
        )
        self.token_file = auth.ensure_admin_token(self.engine, settings.data_dir)

    def changed(self, _repository_id: int | None) -> None:
        """Repositories, versions or distributions changed: serving must look again."""
        self.cache.invalidate()

    def empty_summary(self) -> bytes:
        return summary_bytes(self.pool, VersionState(), 0)

    def start(self) -> None:
        recovered = self.runner.recover()
        if recovered:
            log.warning("%d task(s) left running by a stopped service are now failed", recovered)
        self._clean_uploads()
        self.runner.start()

    def stop(self) -> None:
        self.runner.stop()
        self.engine.dispose()

    def _clean_uploads(self) -> None:
        """Uploads no waiting task will read (their task failed with the old process)."""
        from sqlalchemy import select

        uploads = self.settings.data_dir / "uploads"
        if not uploads.is_dir():
            return
        with self.engine.connect() as conn:
            wanted = {
                str(args.get("upload"))
                for (args,) in conn.execute(
                    select(db.tasks.c.args).where(db.tasks.c.state == "waiting")
                )
            }
        for path in uploads.iterdir():
            if str(path) not in wanted:
                path.unlink(missing_ok=True)
