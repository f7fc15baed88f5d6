"""The service's REST API and ``/content`` serving, in process (Starlette's TestClient).

Every test builds its archives with the library (:func:`libpyostree.commit.commit_directory`
into a scratch repository, tarred by :mod:`tests.archives`): no ostree CLI, no network.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import shutil
import stat
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from openapi_schema_validator import OAS31Validator
from openapi_schema_validator import validate as openapi_schema_validate
from openapi_spec_validator import validate
from sqlalchemy import update
from starlette.types import ASGIApp

from libpyostree.archive import import_archive
from libpyostree.commit import commit_directory
from libpyostree.errors import OstreeError
from libpyostree.gvariant import Variant
from libpyostree.names import Checksum
from libpyostree.objects import ObjectType, parse_summary
from libpyostree.repo import Repo
from service import db, importer, operations
from service.api import routes
from service.app import App, create_app
from service.importer import ChildResult, ImportFailed, error_code
from service.openapi import OPERATIONS
from service.state import Settings
from service.tasks import FINAL
from tests.archives import dir_member, repo_members, tar_bytes

with warnings.catch_warnings():
    # starlette 1.x asks for httpx2; the httpx it falls back to works the same here.
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient

BASE_TIME = 1_700_000_000
MAX_UPLOAD = 256 * 1024
API = "/api/v1"
R = f"{API}/repositories"


# --- archives ----------------------------------------------------------------------------------


class Source:
    """A scratch archive repository to commit into and tar whole."""

    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(parents=True)
        self.repo = Repo.init(root / "repo")
        self.trees = 0

    def commit(
        self,
        branch: str,
        files: dict[str, bytes],
        *,
        parent: str | None = None,
        subject: str = "",
        body: str = "",
        version: str | None = None,
        signed: bool = False,
    ) -> str:
        """Commit ``files`` on ``branch`` (parent: the branch head; ``""``: none)."""
        self.trees += 1
        tree = self.root / f"tree{self.trees}"
        tree.mkdir()
        for name, data in files.items():
            path = tree / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
        checksum = commit_directory(
            self.repo,
            tree,
            branch=branch,
            subject=subject,
            body=body,
            parent=parent,
            timestamp=BASE_TIME + self.trees,
            owner_uid=0,
            owner_gid=0,
            metadata={"version": Variant("s", version)} if version else None,
        )
        if signed:
            self.repo.write_commitmeta(
                checksum, {"ostree.sign.ed25519": Variant("aay", [bytes(64)])}
            )
        return str(checksum)

    def tar(self) -> bytes:
        """The whole repository as ``./repo/…`` (osbuild's layout, without compose.json)."""
        return tar_bytes([dir_member("./"), *repo_members(self.repo.path, "./repo", read=True)])

    def object_bytes(self, checksum: str, objtype: ObjectType) -> bytes:
        return self.repo.object_path(checksum, objtype).read_bytes()


# --- the service -------------------------------------------------------------------------------


@dataclass
class Api:
    client: TestClient
    app: App
    data_dir: Path
    token: str

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    def get(self, url: str, **kw: Any) -> Any:
        return self.client.get(url, headers={**self.auth, **kw.pop("headers", {})}, **kw)

    def post(self, url: str, **kw: Any) -> Any:
        return self.client.post(url, headers={**self.auth, **kw.pop("headers", {})}, **kw)

    def patch(self, url: str, **kw: Any) -> Any:
        return self.client.patch(url, headers={**self.auth, **kw.pop("headers", {})}, **kw)

    def delete(self, url: str, **kw: Any) -> Any:
        return self.client.delete(url, headers={**self.auth, **kw.pop("headers", {})}, **kw)

    def ok(self, response: Any, status: int = 200) -> Any:
        assert response.status_code == status, response.text
        return response.json() if response.content else None

    def wait(self, response: Any) -> dict[str, Any]:
        """Wait for the task (a 202 response naming it, or its URL) to finish."""
        href = response if isinstance(response, str) else self.ok(response, 202)["task"]
        for _ in range(3000):
            task: dict[str, Any] = self.ok(self.get(href))
            if task["state"] in FINAL:
                return task
            time.sleep(0.005)
        raise AssertionError(f"task {href} did not finish: {task}")

    def create_repository(self, name: str) -> dict[str, Any]:
        out: dict[str, Any] = self.ok(self.post(R, json={"name": name}), 201)
        return out

    def import_(self, repo: str, data: bytes, **params: str) -> dict[str, Any]:
        return self.wait(self.post(f"{R}/{repo}/import", content=data, params=params))

    def imported(self, repo: str, data: bytes, **params: str) -> int | None:
        task = self.import_(repo, data, **params)
        assert task["state"] == "completed", task
        number: int | None = task["created_version"]
        return number

    def versions(self, repo: str) -> list[int]:
        return [v["number"] for v in self.ok(self.get(f"{R}/{repo}/versions"))["results"]]

    def uploads(self) -> list[str]:
        uploads = self.data_dir / "uploads"
        return sorted(os.listdir(uploads)) if uploads.is_dir() else []


def run_import_in_process(
    pool: str,
    *,
    archive: str,
    ref: str | None,
    sha256: str | None,
    target_refs: dict[str, str],
    progress: Callable[[int, int, int | None], None],
    canceled: Callable[[], bool],
) -> ChildResult:
    """:func:`service.importer.run_import` without the child process (which costs a
    second per import): the same library call, its errors mapped the same way."""
    del canceled
    try:
        result = import_archive(
            Repo.open(pool),
            archive,
            ref=ref,
            sha256=sha256,
            target_refs={n: Checksum(c) for n, c in target_refs.items()},
            progress=lambda p: progress(p.objects, p.bytes_read, p.bytes_total),
            update_summary=False,
            workers=1,
        )
    except OstreeError as exc:
        raise ImportFailed(error_code(exc), str(exc)) from None
    return ChildResult.of(result)


@pytest.fixture(autouse=True)
def in_process_imports(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every test imports in process, except where it puts the real child back."""
    monkeypatch.setattr(operations, "run_import", run_import_in_process)


@pytest.fixture(scope="session")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A freshly started, empty DATA_DIR (migrated database, admin token, pool) that
    tests copy: migrating a new SQLite database costs more than a test."""
    data_dir = tmp_path_factory.mktemp("template") / "data"
    create_app(Settings(data_dir), start_workers=False).service.stop()
    return data_dir


@contextlib.contextmanager
def running(
    data_dir: Path,
    *,
    workers: bool = True,
    max_upload: int = MAX_UPLOAD,
    template: Path | None = None,
) -> Iterator[Api]:
    if template is not None:
        shutil.copytree(template, data_dir)
    settings = Settings(data_dir, workers=1, max_upload_size=max_upload)
    app = create_app(settings, start_workers=workers)
    with TestClient(cast(ASGIApp, app)) as client:
        token = (data_dir / "admin-token").read_text().strip()
        yield Api(client, app, data_dir, token)


@pytest.fixture
def api(tmp_path: Path, template: Path) -> Iterator[Api]:
    with running(tmp_path / "data", template=template) as out:
        yield out


@pytest.fixture
def idle(tmp_path: Path, template: Path) -> Iterator[Api]:
    """A service whose task workers never start: every task stays waiting."""
    with running(tmp_path / "data", workers=False, template=template) as out:
        yield out


@pytest.fixture
def source(tmp_path: Path) -> Source:
    return Source(tmp_path / "source")


def validate_schema(instance: Any, schema: dict[str, Any], **kw: Any) -> None:
    openapi_schema_validate(instance, schema, cls=OAS31Validator, **kw)


def error_of(response: Any, status: int) -> dict[str, str]:
    """The ``{"error": {"code", "message"}}`` body of an error response."""
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"}
    assert set(body["error"]) == {"code", "message"}
    assert all(isinstance(v, str) and v for v in body["error"].values())
    error: dict[str, str] = body["error"]
    return error


# --- a populated service shared by the read-only content tests ----------------------------------

STABLE, DEVEL, NESTED = "fedora/iot/stable", "fedora/iot/devel", "os/x86_64/edge/extra"


@dataclass
class World:
    api: Api
    src: Source
    c1: str  # STABLE in version 1
    c2: str  # STABLE in version 2, parent c1
    d1: str  # DEVEL in version 2, signed
    n1: str  # NESTED in version 2


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    root = tmp_path_factory.mktemp("world")
    src = Source(root / "source")
    with pytest.MonkeyPatch.context() as mp, running(root / "data") as api:
        mp.setattr(operations, "run_import", run_import_in_process)
        api.create_repository("iot")
        c1 = src.commit(
            STABLE, {"etc/os-release": b"v1\n", "usr/bin/tool": b"tool 1"}, subject="one"
        )
        assert api.imported("iot", src.tar()) == 1
        c2 = src.commit(
            STABLE,
            {"etc/os-release": b"v2\n", "usr/bin/tool": b"tool 1"},
            subject="two",
            body="the second\n\ncommit",
            version="40.2",
        )
        d1 = src.commit(DEVEL, {"README": b"devel"}, subject="devel", signed=True)
        n1 = src.commit(NESTED, {"extra": b"nested"}, subject="nested")
        assert api.imported("iot", src.tar()) == 2
        for name, base_path, version in (
            ("latest", "iot/latest", None),
            ("pinned", "iot/v1", 1),
        ):
            api.ok(
                api.post(
                    f"{API}/distributions",
                    json={
                        "name": name,
                        "base_path": base_path,
                        "repository": "iot",
                        "version": version,
                    },
                ),
                201,
            )
        yield World(api, src, c1, c2, d1, n1)


# --- auth ------------------------------------------------------------------------------------------


def test_no_token_is_401_with_the_error_shape(api: Api) -> None:
    for headers in ({}, {"Authorization": "Bearer "}, {"Authorization": f"Basic {api.token}"}):
        response = api.client.get(R, headers=headers)
        assert error_of(response, 401)["code"] == "unauthenticated"
        assert response.headers["www-authenticate"] == "Bearer"
    # Unknown paths under /api are not revealed without a token either.
    error_of(api.client.get(f"{API}/nothing-here"), 401)


def test_wrong_token_is_401(api: Api) -> None:
    response = api.client.get(R, headers={"Authorization": "Bearer pyo_not-a-token"})
    assert "not valid" in error_of(response, 401)["message"]


def test_read_token_reads_and_nothing_else(api: Api) -> None:
    api.create_repository("r")
    created = api.ok(api.post(f"{API}/tokens", json={"name": "reader", "scope": "read"}), 201)
    assert created["scope"] == "read"
    read = {"Authorization": f"Bearer {created['token']}"}
    assert api.client.get(R, headers=read).status_code == 200
    assert api.client.get(f"{R}/r/versions/0", headers=read).status_code == 200
    assert api.client.get(f"{API}/tasks", headers=read).status_code == 200
    denied = [
        api.client.post(R, json={"name": "s"}, headers=read),
        api.client.patch(f"{R}/r", json={"description": "x"}, headers=read),
        api.client.delete(f"{R}/r", headers=read),
        api.client.post(f"{R}/r/import", content=b"x", headers=read),
        api.client.post(f"{API}/tokens", json={"name": "more", "scope": "admin"}, headers=read),
        api.client.get(f"{API}/tokens", headers=read),
    ]
    for response in denied:
        assert error_of(response, 403)["code"] == "forbidden"
    assert api.ok(api.get(f"{R}/r"))["description"] == ""
    # Revoked, the token no longer works.
    api.ok(api.delete(f"{API}/tokens/reader"), 204)
    error_of(api.client.get(R, headers=read), 401)


def test_token_names_and_scopes_are_checked(api: Api) -> None:
    error_of(api.post(f"{API}/tokens", json={"name": "t", "scope": "root"}), 400)
    error_of(api.post(f"{API}/tokens", json={"name": "no/slash"}), 400)
    api.ok(api.post(f"{API}/tokens", json={"name": "t"}), 201)
    error_of(api.post(f"{API}/tokens", json={"name": "t"}), 409)
    names = {t["name"]: t["scope"] for t in api.ok(api.get(f"{API}/tokens"))["results"]}
    assert names == {"admin": "admin", "t": "read"}
    error_of(api.delete(f"{API}/tokens/nope"), 404)


def test_status_and_openapi_need_no_token(api: Api) -> None:
    status = api.ok(api.client.get(f"{API}/status"))
    assert {"version", "database", "storage", "task_workers"} <= set(status)
    assert status["task_workers"]["count"] == 1
    assert api.ok(api.client.get(f"{API}/openapi.json"))["openapi"].startswith("3.1")


def test_admin_token_file_is_private_and_written_once(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    with running(data_dir) as api:
        first = api.token
    path = data_dir / "admin-token"
    before = path.stat()
    assert stat.S_IMODE(before.st_mode) == 0o600
    with running(data_dir) as again:
        assert again.app.service.token_file is None
        assert again.token == first
        again.ok(again.get(R))
    after = path.stat()
    assert (after.st_ino, after.st_mtime_ns, stat.S_IMODE(after.st_mode)) == (
        before.st_ino,
        before.st_mtime_ns,
        0o600,
    )


# --- repositories ----------------------------------------------------------------------------------


def test_repository_crud(api: Api) -> None:
    created = api.ok(api.post(R, json={"name": "edge", "description": "RHEL for Edge"}), 201)
    assert created["name"] == "edge"
    assert created["description"] == "RHEL for Edge"
    assert created["latest_version"] == 0
    assert created["versions_href"] == f"{R}/edge/versions"
    assert api.ok(api.get(f"{R}/edge")) == created
    assert api.ok(api.get(R))["results"] == [created]
    patched = api.ok(api.patch(f"{R}/edge", json={"description": "new", "retain_versions": 3}))
    assert (patched["description"], patched["retain_versions"]) == ("new", 3)
    error_of(api.patch(f"{R}/edge", json={"colour": "red"}), 400)
    error_of(api.patch(f"{R}/edge", json={"retain_versions": 0}), 400)
    renamed = api.ok(api.patch(f"{R}/edge", json={"name": "edge2"}))
    assert renamed["name"] == "edge2"
    error_of(api.get(f"{R}/edge"), 404)
    task = api.wait(api.delete(f"{R}/edge2"))
    assert (task["state"], task["kind"]) == ("completed", "delete_repository")
    error_of(api.get(f"{R}/edge2"), 404)
    assert api.ok(api.get(R)) == {"count": 0, "results": []}


def test_duplicate_repository_is_409(api: Api) -> None:
    api.create_repository("a")
    api.create_repository("b")
    assert error_of(api.post(R, json={"name": "a"}), 409)["code"] == "conflict"
    error_of(api.patch(f"{R}/b", json={"name": "a"}), 409)


INVALID_NAMES: list[Any] = ["", "-lead", ".hidden", "a/b", "a b", "ä", "x" * 256, 7, None, ["a"]]


def test_invalid_repository_name_is_400(api: Api) -> None:
    for name in INVALID_NAMES:
        assert error_of(api.post(R, json={"name": name}), 400)["code"] == "invalid", name
    api.create_repository("ok")
    for name in INVALID_NAMES:
        error_of(api.patch(f"{R}/ok", json={"name": name}), 400)
    assert api.ok(api.get(R))["count"] == 1


def test_request_body_must_be_a_json_object(api: Api) -> None:
    error_of(api.post(R, content=b"{not json", headers={"content-type": "application/json"}), 400)
    error_of(api.post(R, json=["name", "x"]), 400)


def test_unknown_resources_are_404(api: Api) -> None:
    api.create_repository("r")
    for url in (
        f"{R}/nope",
        f"{R}/nope/versions",
        f"{R}/nope/versions/latest",
        f"{R}/r/versions/1",
        f"{R}/r/versions/99/refs",
        f"{R}/r/versions/99/commits",
        f"{R}/r/versions/99/objects",
        f"{R}/r/versions/99/deltas",
        f"{API}/tasks/00000000-0000-0000-0000-000000000000",
        f"{API}/distributions/nope",
        f"{API}/remotes/nope",
    ):
        assert error_of(api.get(url), 404)["code"] == "not_found", url
    error_of(api.delete(f"{R}/r/versions/5"), 404)
    error_of(api.post(f"{R}/nope/import", content=b"data"), 404)
    error_of(api.get(f"{R}/r/versions/first"), 400)
    # The router's own errors have the same shape.
    assert error_of(api.get(f"{API}/no-such-thing"), 404)["code"] == "not_found"
    response = api.client.put(R, headers=api.auth)
    assert error_of(response, 405)["code"] == "method_not_allowed"
    assert response.headers["allow"]


def test_version_zero_exists_and_is_empty(api: Api) -> None:
    api.create_repository("r")
    zero = {"refs": 0, "commits": 0, "objects": 0, "deltas": 0}
    for number in ("0", "latest"):
        version = api.ok(api.get(f"{R}/r/versions/{number}"))
        assert version["number"] == 0
        assert version["content_summary"] == {"added": zero, "removed": zero, "present": zero}
        for kind in ("refs", "commits", "objects", "deltas"):
            assert api.ok(api.get(f"{R}/r/versions/{number}/{kind}")) == {
                "count": 0,
                "results": [],
            }
    assert api.versions("r") == [0]
    # The only version cannot be deleted.
    error_of(api.delete(f"{R}/r/versions/0"), 409)


def test_pagination(api: Api) -> None:
    for i in range(5):
        api.create_repository(f"r{i}")

    def names(**params: Any) -> tuple[int, list[str]]:
        body = api.ok(api.get(R, params=params))
        return body["count"], [r["name"] for r in body["results"]]

    assert names() == (5, ["r0", "r1", "r2", "r3", "r4"])
    assert names(limit=2) == (5, ["r0", "r1"])
    assert names(limit=2, offset=2) == (5, ["r2", "r3"])
    assert names(limit=2, offset=4) == (5, ["r4"])
    assert names(offset=9) == (5, [])
    assert names(name="r3") == (1, ["r3"])
    for bad in ({"limit": 0}, {"limit": "x"}, {"offset": -1}, {"limit": 10001}):
        error_of(api.get(R, params=bad), 400)


# --- import ----------------------------------------------------------------------------------------


def test_import_creates_a_version(api: Api, source: Source) -> None:
    api.create_repository("r")
    c1 = source.commit(STABLE, {"a": b"alpha", "d/b": b"beta"}, subject="first")
    task = api.import_("r", source.tar())
    assert task["state"] == "completed", task
    assert (task["kind"], task["repository"], task["created_version"]) == ("import", "r", 1)
    assert task["error"] is None
    assert task["progress"] and all(
        {"message", "done", "total"} == set(p) for p in task["progress"]
    )
    assert api.versions("r") == [1, 0]
    assert api.ok(api.get(f"{R}/r"))["latest_version"] == 1
    # commit + 2 dirtrees + 2 dirmetas (root and d: same dirmeta) + 2 files
    objects = api.ok(api.get(f"{R}/r/versions/1/objects", params={"limit": 100}))
    types = sorted(o["type"] for o in objects["results"])
    assert types == ["commit", "dirmeta", "dirtree", "dirtree", "file", "file"]
    summary = api.ok(api.get(f"{R}/r/versions/1"))["content_summary"]
    assert summary["added"] == {"refs": 1, "commits": 1, "objects": 6, "deltas": 0}
    assert summary["removed"] == {"refs": 0, "commits": 0, "objects": 0, "deltas": 0}
    assert summary["present"] == summary["added"]
    refs = api.ok(api.get(f"{R}/r/versions/latest/refs"))["results"]
    assert refs == [{"name": STABLE, "commit": c1}]
    assert api.uploads() == []

    # A second commit on the ref: one new version, the ref moved.
    c2 = source.commit(STABLE, {"a": b"alpha", "d/b": b"beta 2"}, subject="second")
    assert api.imported("r", source.tar()) == 2
    summary = api.ok(api.get(f"{R}/r/versions/2"))["content_summary"]
    assert summary["present"]["commits"] == 2
    assert summary["added"]["refs"] == summary["removed"]["refs"] == 1
    assert api.ok(api.get(f"{R}/r/versions/2/refs"))["results"] == [{"name": STABLE, "commit": c2}]
    # Version 1 is unchanged.
    assert api.ok(api.get(f"{R}/r/versions/1/refs"))["results"] == [{"name": STABLE, "commit": c1}]


def test_import_runs_in_a_child_process(
    api: Api, source: Source, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The real import path: ``python -m service.importer`` (the other tests import in
    process to stay fast)."""
    monkeypatch.setattr(operations, "run_import", importer.run_import)
    api.create_repository("r")
    c1 = source.commit(STABLE, {"a": b"alpha"})
    assert api.imported("r", source.tar()) == 1
    assert api.ok(api.get(f"{R}/r/versions/1/refs"))["results"] == [{"name": STABLE, "commit": c1}]
    failed = api.import_("r", b"not a tar" * 100)
    assert failed["state"] == "failed"
    assert failed["error"]["code"] != "internal", failed["error"]
    assert api.uploads() == []


def test_import_that_changes_nothing_makes_no_version(api: Api, source: Source) -> None:
    api.create_repository("r")
    source.commit(STABLE, {"a": b"alpha"})
    data = source.tar()
    assert api.imported("r", data) == 1
    task = api.import_("r", data)
    assert (task["state"], task["created_version"]) == ("completed", None)
    assert api.versions("r") == [1, 0]


def test_import_with_ref_must_extend_the_head(api: Api, source: Source, tmp_path: Path) -> None:
    api.create_repository("r")
    head = source.commit(STABLE, {"a": b"one"})
    assert api.imported("r", source.tar(), ref=STABLE) == 1
    # An unrelated commit on the same ref is refused.
    other = Source(tmp_path / "other")
    other.commit(STABLE, {"a": b"unrelated"})
    task = api.import_("r", other.tar(), ref=STABLE)
    assert task["state"] == "failed"
    assert task["created_version"] is None
    assert "does not extend" in task["error"]["message"]
    assert head in task["error"]["message"]
    assert api.versions("r") == [1, 0]
    assert api.uploads() == []
    # A commit on top of the head is accepted.
    nxt = source.commit(STABLE, {"a": b"two"})
    assert api.imported("r", source.tar(), ref=STABLE) == 2
    commits = api.ok(api.get(f"{R}/r/versions/2/commits", params={"ref": STABLE}))["results"]
    assert [c["checksum"] for c in commits] == [nxt, head]


def test_import_invalid_ref_is_400(api: Api) -> None:
    api.create_repository("r")
    for ref in ("bad ref", "../x", "/lead", "trail/", "a//b", "-x"):
        error_of(api.post(f"{R}/r/import", content=b"x" * 10, params={"ref": ref}), 400)
    assert api.uploads() == []
    assert api.ok(api.get(f"{API}/tasks"))["count"] == 0


def test_import_sha256(api: Api, source: Source) -> None:
    api.create_repository("r")
    source.commit(STABLE, {"a": b"alpha"})
    data = source.tar()
    for bad in ("xyz", "0" * 63, "g" * 64):
        error_of(api.post(f"{R}/r/import", content=data, params={"sha256": bad}), 400)
    wrong = api.import_("r", data, sha256="0" * 64)
    assert wrong["state"] == "failed"
    assert "sha256" in wrong["error"]["message"].lower()
    assert api.versions("r") == [0]
    right = hashlib.sha256(data).hexdigest()
    assert api.imported("r", data, sha256=right.upper()) == 1
    assert api.uploads() == []


def test_import_of_something_not_a_tar_fails_clearly(api: Api) -> None:
    api.create_repository("r")
    task = api.import_("r", b"this is a plain text file, not an archive\n" * 40)
    assert task["state"] == "failed"
    message = task["error"]["message"].lower()
    assert "tar" in message or "archive" in message, message
    assert "Traceback" not in task["error"]["message"]
    assert api.versions("r") == [0]
    assert api.uploads() == []


def test_import_empty_body_is_400(api: Api) -> None:
    api.create_repository("r")
    assert "empty" in error_of(api.post(f"{R}/r/import", content=b""), 400)["message"]
    assert api.uploads() == []
    assert api.ok(api.get(f"{API}/tasks"))["count"] == 0


def test_upload_over_the_limit_is_413(api: Api) -> None:
    api.create_repository("r")
    big = b"\0" * (MAX_UPLOAD + 1)
    response = api.post(f"{R}/r/import", content=big)
    assert error_of(response, 413)["code"] == "too_large"
    assert api.uploads() == []

    # Without Content-Length (chunked): counted while streaming.
    def chunks() -> Iterator[bytes]:
        for _ in range(MAX_UPLOAD // 4096 + 2):
            yield b"\0" * 4096

    response = api.post(f"{R}/r/import", content=chunks())
    assert "content-length" not in {k.lower() for k in response.request.headers}
    assert error_of(response, 413)["code"] == "too_large"
    assert api.uploads() == []
    # Exactly at the limit is fine (and then fails as a tar).
    task = api.import_("r", b"\0" * MAX_UPLOAD)
    assert task["state"] == "failed"
    assert api.ok(api.get(f"{API}/tasks"))["count"] == 1
    assert api.versions("r") == [0]


def test_imports_into_one_repository_land_as_consecutive_versions(api: Api, source: Source) -> None:
    api.create_repository("r")
    source.commit("a", {"f": b"1"})
    first = source.tar()
    source.commit("b", {"f": b"2"})
    second = source.tar()
    hrefs = [api.post(f"{R}/r/import", content=data) for data in (first, second)]
    tasks = [api.wait(h) for h in hrefs]
    assert [t["created_version"] for t in tasks] == [1, 2]
    assert [r["name"] for r in api.ok(api.get(f"{R}/r/versions/2/refs"))["results"]] == ["a", "b"]


# --- the content API -------------------------------------------------------------------------------


def test_refs_filters(world: World) -> None:
    api = world.api

    def refs(version: str = "latest", **params: str) -> list[tuple[str, str]]:
        body = api.ok(api.get(f"{R}/iot/versions/{version}/refs", params=params))
        assert body["count"] == len(body["results"])
        return [(r["name"], r["commit"]) for r in body["results"]]

    assert refs() == [(DEVEL, world.d1), (STABLE, world.c2), (NESTED, world.n1)]
    assert refs("1") == [(STABLE, world.c1)]
    assert refs(name=STABLE) == [(STABLE, world.c2)]
    assert refs(name="fedora") == []
    assert refs(name_startswith="fedora/iot/") == [(DEVEL, world.d1), (STABLE, world.c2)]
    assert refs(name_startswith="os/") == [(NESTED, world.n1)]
    assert refs(name_startswith="%") == []
    assert refs(commit=world.c2) == [(STABLE, world.c2)]
    assert refs(commit=world.c2.upper()) == [(STABLE, world.c2)]
    assert refs(commit=world.c1) == []
    assert refs("1", commit=world.c1) == [(STABLE, world.c1)]


def test_commits_fields_and_filters(world: World) -> None:
    api = world.api
    url = f"{R}/iot/versions/latest/commits"
    everything = api.ok(api.get(url))
    assert everything["count"] == 4
    by_checksum = {c["checksum"]: c for c in everything["results"]}
    assert set(by_checksum) == {world.c1, world.c2, world.d1, world.n1}
    c2 = by_checksum[world.c2]
    tree = world.src.repo.read_commit(world.c2)
    assert c2 == {
        "checksum": world.c2,
        "parent": world.c1,
        "subject": "two",
        "body": "the second\n\ncommit",
        "timestamp": tree.timestamp,
        "version": "40.2",
        "ref_bindings": [STABLE],
        "root_dirtree": tree.root_dirtree,
        "root_dirmeta": tree.root_dirmeta,
        "signed": False,
        "size": len(world.src.object_bytes(world.c2, ObjectType.COMMIT)),
    }
    assert by_checksum[world.c1]["parent"] is None
    assert by_checksum[world.c1]["version"] is None
    assert by_checksum[world.d1]["signed"] is True
    assert by_checksum[world.d1]["ref_bindings"] == [DEVEL]

    def checksums(version: str = "latest", **params: str) -> list[str]:
        got = api.ok(api.get(f"{R}/iot/versions/{version}/commits", params=params))
        return [c["checksum"] for c in got["results"]]

    assert checksums(checksum=world.d1) == [world.d1]
    assert checksums(checksum=world.d1.upper()) == [world.d1]
    assert checksums(checksum="0" * 64) == []
    assert checksums(ref=STABLE) == [world.c2, world.c1]
    assert checksums(ref=DEVEL) == [world.d1]
    assert checksums(ref="no/such/ref") == []
    assert checksums("1") == [world.c1]
    assert checksums("1", ref=STABLE) == [world.c1]
    assert checksums(ref=STABLE, limit="1") == [world.c2]


def test_objects_filters_and_paging(world: World) -> None:
    api = world.api
    url = f"{R}/iot/versions/latest/objects"
    everything = api.ok(api.get(url, params={"limit": 1000}))
    present = api.ok(api.get(f"{R}/iot/versions/latest"))["content_summary"]["present"]
    assert everything["count"] == len(everything["results"]) == present["objects"]
    for o in everything["results"]:
        objtype = ObjectType.from_str(o["type"])
        assert o["size"] == len(world.src.object_bytes(o["checksum"], objtype))
    keys = [(o["checksum"], o["type"]) for o in everything["results"]]
    assert keys == sorted(keys)
    assert ("commitmeta" in {t for _c, t in keys}) and ((world.d1, "commitmeta") in keys)
    # Pages cover everything once, in order.
    paged: list[tuple[str, str]] = []
    for offset in range(0, everything["count"], 4):
        page = api.ok(api.get(url, params={"limit": 4, "offset": offset}))
        assert page["count"] == everything["count"]
        paged += [(o["checksum"], o["type"]) for o in page["results"]]
    assert paged == keys
    commits = api.ok(api.get(url, params={"type": "commit"}))
    assert sorted(o["checksum"] for o in commits["results"]) == sorted(
        [world.c1, world.c2, world.d1, world.n1]
    )
    assert commits["count"] == 4
    one = api.ok(api.get(url, params={"checksum": world.c2.upper()}))
    assert [(o["checksum"], o["type"]) for o in one["results"]] == [(world.c2, "commit")]
    root = world.src.repo.read_commit(world.c1).root_dirtree
    assert api.ok(api.get(url, params={"checksum": root, "type": "dirtree"}))["count"] == 1
    assert api.ok(api.get(url, params={"checksum": root, "type": "file"}))["count"] == 0
    error_of(api.get(url, params={"type": "blob"}), 400)
    error_of(api.get(url, params={"limit": 0}), 400)


def test_deltas_list_the_versions_deltas(world: World) -> None:
    """compute_delta is on by default: version 2 got the delta from STABLE's parent."""
    api = world.api
    page = api.ok(api.get(f"{R}/iot/versions/latest/deltas"))
    assert [(d["from"], d["to"]) for d in page["results"]] == [(world.c1, world.c2)]
    assert page["results"][0]["size"] > 0
    assert api.ok(api.get(f"{R}/iot/versions/1/deltas")) == {"count": 0, "results": []}


# --- distributions ---------------------------------------------------------------------------------

D = f"{API}/distributions"


def test_distribution_crud(api: Api) -> None:
    api.create_repository("r")
    created = api.ok(
        api.post(D, json={"name": "d", "base_path": "fedora/iot", "repository": "r"}), 201
    )
    assert created["base_path"] == "fedora/iot"
    assert created["base_url"] == "/content/fedora/iot/"
    assert (created["repository"], created["version"], created["private"]) == ("r", None, False)
    assert api.ok(api.get(f"{D}/d")) == created
    assert api.ok(api.get(D)) == {"count": 1, "results": [created]}
    patched = api.ok(api.patch(f"{D}/d", json={"version": 0, "private": True, "base_path": "x"}))
    assert (patched["version"], patched["private"], patched["base_path"]) == (0, True, "x")
    error_of(api.patch(f"{D}/d", json={"private": "yes"}), 400)
    error_of(api.patch(f"{D}/d", json={"version": -1}), 400)
    error_of(api.patch(f"{D}/d", json={"colour": 1}), 400)
    error_of(api.post(D, json={"name": "d", "base_path": "other"}), 409)
    # Without a repository, nothing is served yet.
    api.ok(api.post(D, json={"name": "empty", "base_path": "nothing"}), 201)
    assert api.client.get("/content/nothing/config").status_code == 404
    error_of(api.post(D, json={"name": "e", "base_path": "e", "version": 0}), 400)
    api.ok(api.delete(f"{D}/d"), 204)
    error_of(api.get(f"{D}/d"), 404)
    error_of(api.delete(f"{D}/d"), 404)


INVALID_BASE_PATHS: list[Any] = [
    "",
    "/lead",
    "trail/",
    "a//b",
    "..",
    "a/../b",
    "./a",
    "a/.",
    "api",
    "api/v1",
    "a b",
    "a%2Fb",
    "x" * 1025,
    3,
    None,
]


def test_invalid_base_path_is_400(api: Api) -> None:
    for base_path in INVALID_BASE_PATHS:
        error_of(api.post(D, json={"name": "d", "base_path": base_path}), 400)
    api.ok(api.post(D, json={"name": "d", "base_path": "fine/path.x/y_z-1"}), 201)
    for base_path in INVALID_BASE_PATHS:
        error_of(api.patch(f"{D}/d", json={"base_path": base_path}), 400)
    assert api.ok(api.get(D))["count"] == 1


def test_overlapping_base_paths_are_409(api: Api) -> None:
    api.ok(api.post(D, json={"name": "a", "base_path": "fedora/iot"}), 201)
    for other in ("fedora", "fedora/iot", "fedora/iot/stable"):
        error_of(api.post(D, json={"name": "b", "base_path": other}), 409)
    api.ok(api.post(D, json={"name": "b", "base_path": "fedora/iot2"}), 201)
    api.ok(api.post(D, json={"name": "c", "base_path": "fedora2"}), 201)
    error_of(api.patch(f"{D}/c", json={"base_path": "fedora/iot/x"}), 409)
    api.ok(api.patch(f"{D}/a", json={"base_path": "fedora/iot"}))


def test_pinned_version_must_exist(api: Api) -> None:
    api.create_repository("r")
    error_of(
        api.post(D, json={"name": "d", "base_path": "d", "repository": "r", "version": 1}), 400
    )
    api.ok(api.post(D, json={"name": "d", "base_path": "d", "repository": "r", "version": 0}), 201)
    error_of(api.patch(f"{D}/d", json={"version": 3}), 400)
    assert api.ok(api.get(f"{D}/d"))["version"] == 0


# --- /content serving ------------------------------------------------------------------------------


def content(world: World, path: str, **kw: Any) -> Any:
    return world.api.client.get(f"/content/{path}", **kw)


def test_serve_config(world: World) -> None:
    response = content(world, "iot/latest/config")
    assert response.status_code == 200
    assert b"mode=archive-z2" in response.content
    assert response.content.startswith(b"[core]\n")


def test_serve_summary_lists_the_version_refs(world: World) -> None:
    latest = parse_summary(content(world, "iot/latest/summary").content)
    assert {r.name: str(r.checksum) for r in latest.refs} == {
        STABLE: world.c2,
        DEVEL: world.d1,
        NESTED: world.n1,
    }
    pinned = parse_summary(content(world, "iot/v1/summary").content)
    assert {r.name: str(r.checksum) for r in pinned.refs} == {STABLE: world.c1}
    sizes = {r.name: r.commit_size for r in latest.refs}
    assert sizes[STABLE] == len(world.src.object_bytes(world.c2, ObjectType.COMMIT))


def test_serve_refs(world: World) -> None:
    for path, commit in (
        (f"iot/latest/refs/heads/{STABLE}", world.c2),
        (f"iot/latest/refs/heads/{NESTED}", world.n1),
        (f"iot/v1/refs/heads/{STABLE}", world.c1),
    ):
        response = content(world, path)
        assert response.status_code == 200, path
        assert response.content == commit.encode() + b"\n"
    assert content(world, f"iot/v1/refs/heads/{DEVEL}").status_code == 404
    assert content(world, "iot/latest/refs/heads/fedora/iot").status_code == 404


def test_serve_objects(world: World) -> None:
    def obj(base: str, checksum: str, objtype: ObjectType) -> Any:
        return content(
            world, f"{base}/objects/{checksum[:2]}/{checksum[2:]}.{objtype.archive_suffix}"
        )

    for checksum, objtype in (
        (world.c2, ObjectType.COMMIT),
        (world.d1, ObjectType.COMMIT_META),
        (world.src.repo.read_commit(world.c2).root_dirtree, ObjectType.DIR_TREE),
    ):
        response = obj("iot/latest", checksum, objtype)
        assert response.status_code == 200
        assert response.content == world.src.object_bytes(checksum, objtype)
        assert response.headers["cache-control"].endswith("immutable")
    files = world.api.ok(
        world.api.get(f"{R}/iot/versions/latest/objects", params={"type": "file"})
    )["results"]
    for f in files:
        assert obj("iot/latest", f["checksum"], ObjectType.FILE).content == world.src.object_bytes(
            f["checksum"], ObjectType.FILE
        )
    # In the pool, but not in the served version.
    assert obj("iot/v1", world.c2, ObjectType.COMMIT).status_code == 404
    assert obj("iot/latest", "ab" * 32, ObjectType.COMMIT).status_code == 404
    # A commit's checksum with the wrong type is a different object.
    assert obj("iot/latest", world.c2, ObjectType.DIR_TREE).status_code == 404


def test_serve_rejects_malformed_paths(world: World) -> None:
    c = world.c2
    for bad in (
        f"iot/latest/objects/{c[:2].upper()}/{c[2:]}.commit",
        f"iot/latest/objects/{c[:2]}/{c[2:].upper()}.commit",
        f"iot/latest/objects/{c[:2]}/{c[2:]}.blob",
        f"iot/latest/objects/{c[:2]}/{c[2:-1]}.commit",
        f"iot/latest/objects/{c}.commit",
    ):
        response = content(world, bad)
        assert response.status_code == 400, bad
        assert response.json()["error"]["message"]
    # A percent-encoded slash (the client keeps it; the raw path carries it).
    assert content(world, "iot%2Flatest/config").status_code == 400
    assert content(world, "iot/latest/refs/heads/fedora%2Fiot%2Fstable").status_code == 400
    # Dot segments never reach us through an HTTP client; send them raw.
    for raw in (
        b"/content/iot/latest/../v1/config",
        b"/content/iot/./latest/config",
        b"/content/iot//latest/config",
        b"/content/iot/latest/refs/heads/..",
    ):
        status, _headers, body = asgi_get(world.api.app, raw)
        assert status == 400, raw
        assert json.loads(body)["error"]["message"]


def asgi_get(
    app: App, raw_path: bytes, headers: list[tuple[bytes, bytes]] | None = None
) -> tuple[int, dict[bytes, bytes], bytes]:
    """One GET straight through the ASGI interface, the path exactly as given."""
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": raw_path.decode(),
        "raw_path": raw_path,
        "query_string": b"",
        "headers": headers or [],
        "client": ("127.0.0.1", 1),
        "server": ("testserver", 80),
    }
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    asyncio.run(app(scope, receive, send))
    start = sent[0]
    body = b"".join(m.get("body", b"") for m in sent[1:])
    return start["status"], dict(start["headers"]), body


def test_serve_not_served_paths(world: World) -> None:
    assert content(world, "iot/latest/summary.sig").status_code == 404
    assert content(world, "iot/latest/deltas/ab/cdef/superblock").status_code == 400
    assert (
        content(
            world, "iot/v1/deltas/q6/urq6urq6urq6urq6urq6urq6urq6urq6urq6urq6s/superblock"
        ).status_code
        == 404
    )
    assert content(world, "iot/latest/delta-indexes/ab/cd.index").status_code == 400
    index = "iot/v1/delta-indexes/q6/urq6urq6urq6urq6urq6urq6urq6urq6urq6urq6s.index"
    assert content(world, index).status_code == 404
    assert content(world, "iot/latest/refs/remotes/x").status_code == 404
    assert content(world, "nowhere/config").status_code == 404
    assert content(world, "iot/config").status_code == 404
    assert world.api.client.post("/content/iot/latest/config").status_code == 405


def test_serve_head(world: World) -> None:
    get = content(world, "iot/latest/summary")
    head = world.api.client.head("/content/iot/latest/summary")
    assert head.status_code == 200
    assert head.content == b""
    assert head.headers["content-length"] == str(len(get.content))
    assert head.headers["etag"] == get.headers["etag"]
    ref = world.api.client.head(f"/content/iot/latest/refs/heads/{STABLE}")
    assert (ref.status_code, ref.content, ref.headers["content-length"]) == (200, b"", "65")
    assert world.api.client.head("/content/iot/latest/summary.sig").status_code == 404


def test_serve_etags(world: World) -> None:
    c = world.c2
    for path in (
        "iot/latest/summary",
        "iot/latest/config",
        f"iot/latest/refs/heads/{STABLE}",
        f"iot/latest/objects/{c[:2]}/{c[2:]}.commit",
    ):
        first = content(world, path)
        etag = first.headers["etag"]
        assert etag.startswith('"') and etag.endswith('"')
        again = content(world, path, headers={"If-None-Match": etag})
        assert (again.status_code, again.content) == (304, b""), path
        assert again.headers["etag"] == etag
        assert content(world, path, headers={"If-None-Match": f'"x", {etag}'}).status_code == 304
        assert content(world, path, headers={"If-None-Match": '"other"'}).status_code == 200
    # Different versions' summaries differ, and so do their ETags.
    v1 = content(world, "iot/v1/summary").headers["etag"]
    assert v1 != content(world, "iot/latest/summary").headers["etag"]


def test_private_distribution(api: Api) -> None:
    api.create_repository("r")
    api.ok(
        api.post(D, json={"name": "p", "base_path": "p", "repository": "r", "private": True}), 201
    )
    response = api.client.get("/content/p/config")
    assert response.status_code == 401
    assert response.json()["error"]["message"]
    assert api.client.get("/content/p/config", headers=api.auth).status_code == 200
    reader = api.ok(api.post(f"{API}/tokens", json={"name": "reader"}), 201)["token"]
    read = {"Authorization": f"Bearer {reader}"}
    assert api.client.get("/content/p/summary", headers=read).status_code == 200
    wrong = api.client.get("/content/p/config", headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 401
    api.ok(api.patch(f"{D}/p", json={"private": False}))
    assert api.client.get("/content/p/config").status_code == 200


def test_serving_follows_the_latest_version(api: Api, source: Source) -> None:
    api.create_repository("r")
    api.ok(api.post(D, json={"name": "d", "base_path": "d", "repository": "r"}), 201)
    assert parse_summary(api.client.get("/content/d/summary").content).refs == ()
    a = source.commit("a", {"f": b"1"})
    assert api.imported("r", source.tar()) == 1
    refs = parse_summary(api.client.get("/content/d/summary").content).refs
    assert [(r.name, str(r.checksum)) for r in refs] == [("a", a)]
    assert api.client.get("/content/d/refs/heads/a").content == a.encode() + b"\n"


def test_deleted_pinned_version_is_404_with_a_message(api: Api, source: Source) -> None:
    api.create_repository("r")
    source.commit("a", {"f": b"1"})
    assert api.imported("r", source.tar()) == 1
    source.commit("b", {"f": b"2"})
    assert api.imported("r", source.tar()) == 2
    api.ok(api.post(D, json={"name": "d", "base_path": "d", "repository": "r", "version": 1}), 201)
    assert api.client.get("/content/d/refs/heads/a").status_code == 200
    task = api.wait(api.delete(f"{R}/r/versions/1"))
    assert task["state"] == "completed", task
    response = api.client.get("/content/d/refs/heads/a")
    assert response.status_code == 404
    assert "deleted" in response.json()["error"]["message"]
    # The repository's deletion leaves the distribution with nothing to serve.
    api.wait(api.delete(f"{R}/r"))
    assert api.ok(api.get(f"{D}/d"))["repository"] is None
    assert api.client.get("/content/d/config").status_code == 404


def test_delete_latest_version_then_import(api: Api, source: Source, tmp_path: Path) -> None:
    api.create_repository("r")
    a = source.commit("a", {"f": b"1"})
    assert api.imported("r", source.tar()) == 1
    other = Source(tmp_path / "other")
    other.commit("b", {"f": b"2"})
    assert api.imported("r", other.tar()) == 2
    assert {r["name"] for r in api.ok(api.get(f"{R}/r/versions/2/refs"))["results"]} == {"a", "b"}
    api.ok(api.post(D, json={"name": "d", "base_path": "d", "repository": "r"}), 201)
    assert api.wait(api.delete(f"{R}/r/versions/latest"))["state"] == "completed"
    assert api.versions("r") == [1, 0]
    assert api.ok(api.get(f"{R}/r"))["latest_version"] == 1
    refs = parse_summary(api.client.get("/content/d/summary").content).refs
    assert [(r.name, str(r.checksum)) for r in refs] == [("a", a)]
    third = Source(tmp_path / "third")
    c = third.commit("c", {"f": b"3"})
    assert api.imported("r", third.tar()) == 3
    assert api.ok(api.get(f"{R}/r/versions/3/refs"))["results"] == [
        {"name": "a", "commit": a},
        {"name": "c", "commit": c},
    ]
    summary = api.ok(api.get(f"{R}/r/versions/3"))["content_summary"]
    assert summary["present"]["commits"] == 2
    assert summary["removed"] == {"refs": 0, "commits": 0, "objects": 0, "deltas": 0}


# --- tasks -----------------------------------------------------------------------------------------


def test_tasks_list_and_get(api: Api, source: Source) -> None:
    api.create_repository("r")
    source.commit("a", {"f": b"1"})
    done = api.import_("r", source.tar())
    failed = api.import_("r", b"not a tar" * 100)
    listed = api.ok(api.get(f"{API}/tasks"))
    assert listed["count"] == 2
    assert [t["id"] for t in listed["results"]] == [failed["id"], done["id"]]
    assert api.ok(api.get(f"{API}/tasks/{done['id']}")) == done
    assert done["href"] == f"{API}/tasks/{done['id']}"
    assert done["started"] is not None and done["finished"] is not None
    only = api.ok(api.get(f"{API}/tasks", params={"state": "failed"}))
    assert [t["id"] for t in only["results"]] == [failed["id"]]
    assert failed["error"]["code"]
    assert api.ok(api.get(f"{API}/tasks", params={"limit": 1, "offset": 1}))["results"] == [done]


def test_cancel_a_waiting_task(idle: Api) -> None:
    api = idle
    api.create_repository("r")
    href = api.ok(api.post(f"{R}/r/import", content=b"payload"), 202)["task"]
    task = api.ok(api.get(href))
    assert task["state"] == "waiting"
    canceled = api.ok(api.post(f"{href}/cancel"))
    assert canceled["state"] == "canceled"
    assert canceled["finished"] is not None
    assert api.ok(api.get(href))["state"] == "canceled"
    assert api.versions("r") == [0]


def test_cancel_a_finished_or_unknown_task(api: Api) -> None:
    api.create_repository("r")
    task = api.import_("r", b"garbage" * 100)
    assert task["state"] == "failed"
    assert error_of(api.post(f"{task['href']}/cancel"), 409)["code"] == "conflict"
    deleted = api.wait(api.delete(f"{R}/r"))
    error_of(api.post(f"{deleted['href']}/cancel"), 409)
    error_of(api.post(f"{API}/tasks/no-such-task/cancel"), 404)


def test_tasks_left_running_fail_on_start(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    with running(data_dir, workers=False) as api:
        api.create_repository("r")
        stuck = api.ok(api.post(f"{R}/r/import", content=b"first"), 202)["task"]
        waiting = api.ok(api.post(f"{R}/r/import", content=b"second"), 202)["task"]
        stuck_id = stuck.rsplit("/", 1)[1]
        with db.writing(api.app.service.engine) as conn:
            conn.execute(update(db.tasks).where(db.tasks.c.id == stuck_id).values(state="running"))
        assert len(api.uploads()) == 2
        assert api.app.service.runner.recover() == 1
        assert api.ok(api.get(stuck))["state"] == "failed"
        with db.writing(api.app.service.engine) as conn:
            conn.execute(
                update(db.tasks)
                .where(db.tasks.c.id == stuck_id)
                .values(state="running", error=None, finished=None)
            )
    with running(data_dir) as api:
        task = api.ok(api.get(stuck))
        assert task["state"] == "failed"
        assert task["error"]["code"] == "interrupted"
        assert "stopped" in task["error"]["message"]
        # The waiting one still runs (and fails: its upload is not a tar).
        assert api.wait(waiting)["state"] == "failed"
        assert api.uploads() == []


# --- OpenAPI ---------------------------------------------------------------------------------------


def test_openapi_is_valid_and_matches_the_routes(api: Api) -> None:
    doc = api.ok(api.client.get(f"{API}/openapi.json"))
    validate(doc)
    documented = {(m.upper(), p) for p, ops in doc["paths"].items() for m in ops}
    served = {(m, r.path) for r in routes() for m in (r.methods or set()) - {"HEAD"}}
    assert documented == served
    ids = [op["operationId"] for ops in doc["paths"].values() for op in ops.values()]
    assert len(ids) == len(set(ids))


def test_openapi_describes_every_operation(api: Api) -> None:
    doc = api.ok(api.client.get(f"{API}/openapi.json"))
    for route in routes():
        assert route.name in OPERATIONS, f"{route.path}: add {route.name} to OPERATIONS"
    for path, ops in doc["paths"].items():
        for method, op in ops.items():
            assert op["summary"] and op["summary"] != op["operationId"], (method, path)
            success = [s for s in op["responses"] if s.startswith("2")]
            assert len(success) == 1, (method, path)
            body = op["responses"][success[0]].get("content", {}).get("application/json")
            if success[0] == "204":
                assert body is None
            else:
                assert body is not None and body["schema"], (method, path)
            if method in ("post", "patch") and not path.endswith(("/cancel", "/import")):
                assert op["requestBody"]["content"]["application/json"]["schema"]["$ref"]
    public = {
        p for p, ops in doc["paths"].items() for op in ops.values() if op.get("security") == []
    }
    assert public == {f"{API}/status", f"{API}/openapi.json"}


def test_responses_match_the_openapi_schemas(world: World) -> None:
    """Real responses validate against the document (every declared property present)."""
    api = world.api
    doc = api.ok(api.client.get(f"{API}/openapi.json"))
    api.ok(
        api.post(
            f"{API}/remotes",
            json={"name": "up", "url": "https://example.com/repo", "password": "s"},
        ),
        201,
    )
    token = api.ok(api.post(f"{API}/tokens", json={"name": "schema-check"}), 201)
    created_remote = api.ok(api.get(f"{API}/remotes/up"))
    assert created_remote["password"] == "***"
    checks: list[tuple[str, str, Any]] = [
        ("post", f"{API}/tokens", token),
        ("post", f"{R}/{{name}}/import", {"task": "/api/v1/tasks/x"}),
    ]
    for template, url in (
        (f"{API}/status", f"{API}/status"),
        (R, R),
        (f"{R}/{{name}}", f"{R}/iot"),
        (f"{R}/{{name}}/versions", f"{R}/iot/versions"),
        (f"{R}/{{name}}/versions/{{number}}", f"{R}/iot/versions/2"),
        (f"{R}/{{name}}/versions/{{number}}/refs", f"{R}/iot/versions/2/refs"),
        (f"{R}/{{name}}/versions/{{number}}/commits", f"{R}/iot/versions/2/commits"),
        (f"{R}/{{name}}/versions/{{number}}/objects", f"{R}/iot/versions/2/objects"),
        (f"{R}/{{name}}/versions/{{number}}/deltas", f"{R}/iot/versions/2/deltas"),
        (f"{API}/tasks", f"{API}/tasks"),
        (D, D),
        (f"{D}/{{name}}", f"{D}/pinned"),
        (f"{API}/remotes", f"{API}/remotes"),
        (f"{API}/remotes/{{name}}", f"{API}/remotes/up"),
        (f"{API}/tokens", f"{API}/tokens"),
    ):
        checks.append(("get", template, api.ok(api.get(url))))
    tasks = api.ok(api.get(f"{API}/tasks"))["results"]
    checks.append(("get", f"{API}/tasks/{{id}}", tasks[0]))
    for method, template, instance in checks:
        responses = doc["paths"][template][method]["responses"]
        status = next(s for s in responses if s.startswith("2"))
        schema = responses[status]["content"]["application/json"]["schema"]
        validate_schema(
            instance,
            {**schema, "components": doc["components"]},
            enforce_properties_required=True,
            check_schema=False,  # the document was validated whole
        )
    validate_schema(
        error_of(api.get(f"{R}/nope"), 404),
        doc["components"]["schemas"]["Error"]["properties"]["error"],
        check_schema=False,
    )
    api.ok(api.delete(f"{API}/remotes/up"), 204)
    api.ok(api.delete(f"{API}/tokens/schema-check"), 204)


# --- schema ----------------------------------------------------------------------------------------


def test_migrations_and_metadata_agree(tmp_path: Path) -> None:
    engine = db.make_engine(f"sqlite:///{tmp_path / 'schema.db'}")
    try:
        db.migrate(engine)
        db.migrate(engine)  # a second run is a no-op
        with engine.connect() as conn:
            diffs = compare_metadata(MigrationContext.configure(conn), db.metadata)
    finally:
        engine.dispose()
    assert diffs == []
