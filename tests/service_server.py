"""A real ``pyostree serve`` (uvicorn) in a subprocess, for end-to-end tests.

:class:`ServiceServer` starts ``pyostree serve`` on a free ``127.0.0.1`` port with a
given data directory, waits until ``GET /api/v1/status`` answers and reads the admin
token from ``DATA_DIR/admin-token``.  It can be stopped (SIGTERM), killed (SIGKILL,
as a crash would) and started again on the same data directory.  :class:`ApiClient`
is a small ``httpx`` client for the REST API and ``/content/…``.

Everything waits with deadlines and polls; nothing asserts on wall-clock durations.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

import httpx

from tests.ostree_cli import free_port

#: Task states after which a task never changes again.
FINAL_STATES = ("completed", "failed", "canceled")

_START_TIMEOUT = 60.0
_TASK_TIMEOUT = 300.0


class ServiceError(AssertionError):
    """The service did not start, or an API call did not answer as expected."""


class ApiClient:
    """``httpx`` against one running service; ``/api/v1`` calls carry the admin token."""

    def __init__(self, base_url: str, token: str) -> None:
        self.base_url = base_url
        self.token = token
        self.http = httpx.Client(
            base_url=base_url,
            headers={"Authorization": f"Bearer {token}"},
            timeout=httpx.Timeout(120.0, connect=10.0),
        )

    def close(self) -> None:
        self.http.close()

    # -- plain requests

    def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        return self.http.request(method, path, **kwargs)

    def get(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.http.get(path, **kwargs)

    def json(self, method: str, path: str, expect: int = 200, **kwargs: Any) -> Any:
        """``METHOD path`` that must answer ``expect``; its JSON body."""
        resp = self.http.request(method, path, **kwargs)
        if resp.status_code != expect:
            raise ServiceError(
                f"{method} {path}: expected {expect}, got {resp.status_code}: {resp.text[:2000]}"
            )
        return resp.json() if resp.content else None

    # -- resources

    def create_repository(self, name: str, **fields: Any) -> dict[str, Any]:
        out: dict[str, Any] = self.json(
            "POST", "/api/v1/repositories", 201, json={"name": name, **fields}
        )
        return out

    def create_distribution(
        self, name: str, base_path: str, repository: str, version: int | None = None
    ) -> dict[str, Any]:
        body: dict[str, Any] = {"name": name, "base_path": base_path, "repository": repository}
        if version is not None:
            body["version"] = version
        out: dict[str, Any] = self.json("POST", "/api/v1/distributions", 201, json=body)
        return out

    def content_url(self, base_path: str) -> str:
        """The URL an ``ostree`` remote uses for a distribution."""
        return f"{self.base_url}/content/{base_path}/"

    def version(self, repository: str, number: int | str = "latest") -> dict[str, Any]:
        out: dict[str, Any] = self.json(
            "GET", f"/api/v1/repositories/{repository}/versions/{number}"
        )
        return out

    def versions(self, repository: str) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = self.json("GET", f"/api/v1/repositories/{repository}/versions")[
            "results"
        ]
        return out

    def latest_number(self, repository: str) -> int:
        number: int = self.json("GET", f"/api/v1/repositories/{repository}")["latest_version"]
        return number

    def results(self, path: str, **params: str) -> list[dict[str, Any]]:
        """The ``results`` of a list endpoint."""
        out: list[dict[str, Any]] = self.json("GET", path, params=params)["results"]
        return out

    # -- tasks

    def submit_import(
        self,
        repository: str,
        archive: Path | bytes | BinaryIO,
        *,
        ref: str | None = None,
        sha256: str | None = None,
    ) -> str:
        """Upload ``archive`` as the raw body of an import; the task's href."""
        params = {}
        if ref is not None:
            params["ref"] = ref
        if sha256 is not None:
            params["sha256"] = sha256
        url = f"/api/v1/repositories/{repository}/import"
        if isinstance(archive, Path):
            with open(archive, "rb") as f:
                body = self.json("POST", url, 202, params=params, content=_chunks(f))
        else:
            content = archive if isinstance(archive, bytes) else _chunks(archive)
            body = self.json("POST", url, 202, params=params, content=content)
        href: str = body["task"]
        assert href.startswith("/api/v1/tasks/"), body
        return href

    def task(self, href: str) -> dict[str, Any]:
        out: dict[str, Any] = self.json("GET", href)
        return out

    def wait_task(self, href: str, timeout: float = _TASK_TIMEOUT) -> dict[str, Any]:
        """Poll the task until it is completed, failed or canceled; its last JSON."""
        deadline = time.monotonic() + timeout
        delay = 0.02
        while True:
            task = self.task(href)
            if task["state"] in FINAL_STATES:
                return task
            if time.monotonic() > deadline:
                raise ServiceError(f"task {href} still {task['state']} after {timeout}s: {task}")
            time.sleep(delay)
            delay = min(delay * 1.5, 0.25)

    def run_task(self, href: str) -> dict[str, Any]:
        """Wait for the task, which must complete."""
        task = self.wait_task(href)
        if task["state"] != "completed":
            raise ServiceError(f"task {href} {task['state']}: {task['error']}")
        return task

    def import_archive(
        self, repository: str, archive: Path | bytes, *, ref: str | None = None
    ) -> dict[str, Any]:
        """Import and wait; the completed task."""
        return self.run_task(self.submit_import(repository, archive, ref=ref))


def _chunks(f: BinaryIO, size: int = 1 << 20) -> Iterator[bytes]:
    while chunk := f.read(size):
        yield chunk


class ServiceServer:
    """``pyostree serve --data-dir DATA_DIR`` in a subprocess (see the module docstring)."""

    def __init__(self, data_dir: Path, *, workers: int = 2) -> None:
        self.data_dir = data_dir
        self.workers = workers
        self.log_path = data_dir.parent / f"{data_dir.name}.log"
        self.port = 0
        self.proc: subprocess.Popen[bytes] | None = None
        self._client: ApiClient | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def client(self) -> ApiClient:
        if self._client is None:
            raise ServiceError("the service is not running")
        return self._client

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def start(self) -> ApiClient:
        """Start the service (on the port it had, if it ran before) and wait until it answers."""
        if self.running:
            raise ServiceError("the service is already running")
        if not self.port:
            self.port = free_port()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        argv = [
            os.path.join(os.path.dirname(sys.executable), "pyostree"),
            "serve",
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--data-dir",
            str(self.data_dir),
            "--workers",
            str(self.workers),
            "--log-level",
            "warning",
        ]
        if not os.path.exists(argv[0]):
            argv[:1] = [sys.executable, "-m", "service.cli"]
        with open(self.log_path, "ab") as log:
            log.write(f"--- start {' '.join(argv)}\n".encode())
            log.flush()
            self.proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self._wait_ready()
        token = (self.data_dir / "admin-token").read_text().strip()
        self._client = ApiClient(self.url, token)
        return self._client

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + _START_TIMEOUT
        while True:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise ServiceError(
                    f"pyostree serve exited with {self.proc.returncode}:\n{self.log()[-4000:]}"
                )
            try:
                resp = httpx.get(f"{self.url}/api/v1/status", timeout=2.0)
                if resp.status_code == 200:
                    return
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                self.kill()
                raise ServiceError(
                    f"pyostree serve never answered on {self.url}:\n{self.log()[-4000:]}"
                )
            time.sleep(0.05)

    def _close_client(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    def stop(self, timeout: float = 30.0) -> None:
        """SIGTERM and wait (SIGKILL if it does not exit in time)."""
        self._close_client()
        proc = self.proc
        if proc is None:
            return
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=timeout)
        self.proc = None

    def kill(self) -> None:
        """SIGKILL, as a crash or an OOM kill would: no shutdown code runs."""
        self._close_client()
        proc = self.proc
        if proc is None:
            return
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        self.proc = None

    def restart(self) -> ApiClient:
        self.stop()
        return self.start()


@contextlib.contextmanager
def running_service(data_dir: Path, *, workers: int = 2) -> Iterator[ServiceServer]:
    """A started :class:`ServiceServer`, stopped on exit (its log is printed on failure)."""
    server = ServiceServer(data_dir, workers=workers)
    server.start()
    try:
        yield server
    except BaseException:
        sys.stderr.write(f"--- service log ({server.log_path}):\n{server.log()[-6000:]}\n")
        raise
    finally:
        server.stop()
