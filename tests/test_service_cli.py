"""The client nouns of ``pyostree`` against a real ``pyostree serve``.

One service runs for the module (a subprocess on a free port); every command goes
through :func:`service.cli.main` in-process, as a user would type it.  Each test
uses its own repository and distribution names, so they do not depend on each other.
"""

from __future__ import annotations

import io
import json
import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from libpyostree.commit import commit_directory
from libpyostree.gvariant import Variant
from libpyostree.repo import Repo
from service.cli import main
from service.client import _CHUNK, Progress, _upload
from tests.archives import repo_members, sha256_file, write_osbuild_tar, write_tar
from tests.service_server import ServiceServer, running_service

REF = "fedora/41/x86_64/iot"

Run = Callable[..., tuple[int, str, str]]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServiceServer]:
    with running_service(tmp_path_factory.mktemp("cli-service") / "data") as srv:
        yield srv


@pytest.fixture
def pyostree(
    server: ServiceServer, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> Run:
    """``pyostree ARGS…`` against the module's service: (exit code, stdout, stderr)."""
    monkeypatch.setenv("PYOSTREE_SERVER", server.url)
    monkeypatch.setenv("PYOSTREE_TOKEN", (server.data_dir / "admin-token").read_text().strip())

    def run(*argv: str) -> tuple[int, str, str]:
        capsys.readouterr()
        code = main(list(argv))
        out, err = capsys.readouterr()
        return code, out, err

    return run


def ok(run: Run, *argv: str) -> str:
    code, out, err = run(*argv)
    assert code == 0, f"pyostree {' '.join(argv)} → {code}: {err}"
    return out


def ok_json(run: Run, *argv: str) -> Any:
    return json.loads(ok(run, *argv, "--json"))


def fails(run: Run, *argv: str) -> str:
    """The one-line error of a command that must fail."""
    code, out, err = run(*argv)
    assert code != 0, f"pyostree {' '.join(argv)} succeeded: {out}"
    lines = [line for line in err.splitlines() if line.startswith("pyostree: error: ")]
    assert len(lines) == 1, err
    return lines[0].removeprefix("pyostree: error: ")


# -- archives made with the library ----------------------------------------------------------------


class Builds:
    """A local archive repository where commits are made, and tars of it."""

    def __init__(self, root: Path, salt: str = "") -> None:
        self.root = root
        self.salt = salt
        self.repo_path = root / "build-repo"
        self.repo = Repo.init(self.repo_path)
        self.n = 0

    def commit(self, ref: str = REF, version: str | None = None) -> str:
        self.n += 1
        src = self.root / f"tree{self.n}"
        (src / "usr" / "bin").mkdir(parents=True)
        (src / "usr" / "bin" / "hello").write_text(f"hello {self.n}{self.salt}\n")
        (src / "etc").mkdir()
        (src / "etc" / "os-release").write_text(f"VERSION_ID={self.n}\n")
        return str(
            commit_directory(
                self.repo,
                src,
                branch=ref,
                subject=f"build {self.n}",
                timestamp=1704067200 + self.n,
                metadata={"version": Variant("s", version or f"41.{self.n}")},
            )
        )

    def osbuild_tar(self, ref: str = REF) -> Path:
        """osbuild's ``commit.tar`` (``compose.json`` + ``repo/``)."""
        return write_osbuild_tar(self.repo_path, self.root / f"commit{self.n}.tar", ref)

    def repo_tar(self) -> Path:
        """A tarred archive repository (``tar -cf repo.tar repo/``)."""
        dest = self.root / f"repo{self.n}.tar"
        return write_tar(dest, repo_members(self.repo_path, "repo"))


@pytest.fixture
def builds(tmp_path: Path) -> Builds:
    return Builds(tmp_path)


# -- repositories ----------------------------------------------------------------------------------


def test_repository_create_list_show_update_delete(pyostree: Run) -> None:
    out = ok(pyostree, "repository", "create", "cli-crud", "--description", "Edge builds")
    assert out == "Created repository cli-crud (version 0)\n"
    repo = ok_json(pyostree, "repository", "create", "cli-crud-2", "--retain-versions", "3")
    assert repo["name"] == "cli-crud-2" and repo["retain_versions"] == 3

    listed = ok(pyostree, "repository", "list")
    header, *rows = listed.splitlines()
    assert header.split() == ["NAME", "LATEST", "RETAIN", "CREATED", "DESCRIPTION"]
    assert any(r.startswith("cli-crud ") and r.endswith("Edge builds") for r in rows)
    page = ok_json(pyostree, "repository", "list")
    assert {"cli-crud", "cli-crud-2"} <= {r["name"] for r in page["results"]}
    assert page["count"] == len(page["results"])

    shown = ok(pyostree, "repository", "show", "cli-crud")
    assert "Name:            cli-crud\n" in shown
    assert "Latest version:  0\n" in shown and "Refs:            0\n" in shown
    assert ok_json(pyostree, "repository", "show", "cli-crud")["description"] == "Edge builds"

    updated = ok_json(pyostree, "repository", "update", "cli-crud", "--retain-versions", "5")
    assert updated["retain_versions"] == 5
    assert "Nothing to update" in fails(pyostree, "repository", "update", "cli-crud").capitalize()

    assert ok(pyostree, "repository", "delete", "cli-crud") == "Deleted repository cli-crud\n"
    task = ok_json(pyostree, "repository", "delete", "cli-crud-2")
    assert task["state"] == "completed" and task["kind"] == "delete_repository"
    names = {r["name"] for r in ok_json(pyostree, "repository", "list")["results"]}
    assert not names & {"cli-crud", "cli-crud-2"}


def test_unknown_repository_is_one_line_error(pyostree: Run) -> None:
    assert fails(pyostree, "repository", "show", "no-such-repo") == (
        "Repository 'no-such-repo' does not exist"
    )
    assert "does not exist" in fails(pyostree, "repository", "version", "list", "no-such-repo")
    assert "does not exist" in fails(pyostree, "repository", "delete", "no-such-repo")


def test_duplicate_repository_conflicts(pyostree: Run) -> None:
    ok(pyostree, "repository", "create", "cli-dup")
    assert fails(pyostree, "repository", "create", "cli-dup") == "Repository cli-dup already exists"
    assert "Invalid repository name" in fails(pyostree, "repository", "create", "bad/name")


# -- imports, versions and content -------------------------------------------------------------------


def test_import_osbuild_commit_then_child_commit_with_ref(pyostree: Run, builds: Builds) -> None:
    ok(pyostree, "repository", "create", "cli-edge")
    first = builds.commit(version="41.1")
    code, out, err = pyostree("repository", "import", "cli-edge", str(builds.osbuild_tar()))
    assert code == 0, err
    assert out.startswith("Created version 1 of cli-edge (refs +1, commits +1, objects +")
    # Upload progress, then the task's progress items, on stderr.
    assert re.search(r"Uploading commit1\.tar \[#+\] 100%", err), err
    assert "Task import completed" in err and "Verifying objects" in err

    refs = ok(pyostree, "repository", "ref", "list", "cli-edge")
    assert refs.splitlines() == ["REF                   COMMIT", f"{REF}  {first}"]

    child = builds.commit(version="41.2")
    archive = builds.osbuild_tar()
    task = ok_json(
        pyostree, "repository", "import", "cli-edge", str(archive), "--ref", REF,
        "--sha256", sha256_file(archive),
    )  # fmt: skip
    assert task["state"] == "completed" and task["created_version"] == 2
    assert [
        r["commit"] for r in ok_json(pyostree, "repository", "ref", "list", "cli-edge")["results"]
    ] == [child]
    # Every version keeps its own refs.
    old = ok_json(pyostree, "repository", "ref", "list", "cli-edge", "--version", "1")
    assert [(r["name"], r["commit"]) for r in old["results"]] == [(REF, first)]
    assert (
        ok_json(pyostree, "repository", "ref", "list", "cli-edge", "--prefix", "nope")["count"] == 0
    )

    commits = ok(pyostree, "repository", "commit", "list", "cli-edge")
    header, *rows = commits.splitlines()
    assert header.split() == ["COMMIT", "DATE", "VERSION", "SUBJECT"]
    assert [r.split()[0] for r in rows] == [child, first]
    assert rows[0].split()[3:] == ["41.2", "build", "2"]
    history = ok_json(pyostree, "repository", "commit", "list", "cli-edge", "--ref", REF)
    assert [(c["checksum"], c["parent"]) for c in history["results"]] == [
        (child, first),
        (first, None),
    ]
    assert (
        ok_json(pyostree, "repository", "commit", "list", "cli-edge", "--version", "1")["count"]
        == 1
    )

    versions = ok(pyostree, "repository", "version", "list", "cli-edge")
    header, *rows = versions.splitlines()
    assert header.split()[:6] == ["VERSION", "CREATED", "REFS", "COMMITS", "OBJECTS", "DELTAS"]
    assert [r.split()[0] for r in rows] == ["2", "1", "0"]
    assert "commits +1" in rows[0]
    shown = ok(pyostree, "repository", "version", "show", "cli-edge", "2")
    assert "Version:        2\n" in shown and "Commits:        2 (+1 -0)\n" in shown
    assert ok_json(pyostree, "repository", "version", "show", "cli-edge", "latest")["number"] == 2

    # The same archive again adds nothing.
    assert ok(pyostree, "repository", "import", "cli-edge", str(archive)) == (
        "Nothing new: cli-edge stays at version 2\n"
    )

    assert ok(pyostree, "repository", "version", "delete", "cli-edge", "1") == (
        "Deleted version 1 of cli-edge\n"
    )
    numbers = [v["number"] for v in ok_json(pyostree, "repository", "version", "list", "cli-edge")[
        "results"
    ]]  # fmt: skip
    assert numbers == [2, 0]
    assert "no version 1" in fails(pyostree, "repository", "version", "show", "cli-edge", "1")


def test_import_tarred_archive_repository(pyostree: Run, builds: Builds) -> None:
    ok(pyostree, "repository", "create", "cli-tarred")
    head = builds.commit(ref="mirror/main")
    builds.commit(ref="mirror/other")
    ok(pyostree, "repository", "import", "cli-tarred", str(builds.repo_tar()))
    refs = ok_json(pyostree, "repository", "ref", "list", "cli-tarred")
    assert {r["name"]: r["commit"] for r in refs["results"]}["mirror/main"] == head
    assert refs["count"] == 2


def test_failed_import_exits_with_the_task_error(pyostree: Run, builds: Builds) -> None:
    ok(pyostree, "repository", "create", "cli-bad-import")
    builds.commit()
    archive = builds.osbuild_tar()
    message = fails(pyostree, "repository", "import", "cli-bad-import", str(archive),
                    "--sha256", "0" * 64)  # fmt: skip
    assert "sha256" in message.lower()
    # A ref that the archive does not extend (the repository has no such ref yet is fine;
    # a different history is not).
    ok(pyostree, "repository", "import", "cli-bad-import", str(archive))
    other = Builds(builds.root / "other", salt="another history")
    other.commit()
    other.commit()
    message = fails(pyostree, "repository", "import", "cli-bad-import", str(other.osbuild_tar()),
                    "--ref", REF)  # fmt: skip
    assert "extend" in message or "head" in message, message
    failed = ok_json(pyostree, "task", "list", "--state", "failed")["results"]
    assert any(t["repository"] == "cli-bad-import" for t in failed)
    assert "cannot read" in fails(
        pyostree, "repository", "import", "cli-bad-import", "/nonexistent.tar"
    )


def test_import_no_wait_prints_the_task_to_follow(pyostree: Run, builds: Builds) -> None:
    ok(pyostree, "repository", "create", "cli-nowait")
    builds.commit()
    code, out, err = pyostree(
        "repository", "import", "cli-nowait", str(builds.osbuild_tar()), "--no-wait"
    )
    assert code == 0, err
    task_id = out.strip()
    assert re.fullmatch(r"[0-9a-f-]{36}", task_id), out
    assert f"pyostree task show {task_id}" in err
    deadline = time.monotonic() + 120
    while (task := ok_json(pyostree, "task", "show", task_id))["state"] not in (
        "completed",
        "failed",
        "canceled",
    ):
        assert time.monotonic() < deadline, task
        time.sleep(0.1)
    assert task["state"] == "completed" and task["created_version"] == 1
    shown = ok(pyostree, "task", "show", task_id)
    assert f"ID:              {task_id}\n" in shown and "State:           completed\n" in shown
    assert "Progress:" in shown
    ref = ok_json(pyostree, "repository", "delete", "cli-nowait", "--no-wait")
    assert ref["task"].startswith("/api/v1/tasks/")


# -- tasks -----------------------------------------------------------------------------------------------


def test_task_list_show_cancel(pyostree: Run, builds: Builds) -> None:
    ok(pyostree, "repository", "create", "cli-tasks")
    builds.commit()
    archive = str(builds.osbuild_tar())
    ok(pyostree, "repository", "import", "cli-tasks", archive)
    listed = ok(pyostree, "task", "list", "--state", "completed")
    header, *rows = listed.splitlines()
    assert header.split() == ["ID", "STATE", "KIND", "REPOSITORY", "CREATED", "VERSION"]
    assert all(r.split()[1] == "completed" for r in rows)
    tasks = ok_json(pyostree, "task", "list")["results"]
    done = next(t for t in tasks if t["repository"] == "cli-tasks" and t["kind"] == "import")
    assert ok_json(pyostree, "task", "show", done["id"])["id"] == done["id"]

    # A finished task cannot be canceled; an unknown one does not exist.
    assert "already finished" in fails(pyostree, "task", "cancel", done["id"])
    assert "does not exist" in fails(pyostree, "task", "show", "nope")
    assert "does not exist" in fails(pyostree, "task", "cancel", "nope")

    # Cancel a task just submitted: depending on timing it is canceled (waiting),
    # asked to stop (running) or already finished.
    out = ok(pyostree, "repository", "import", "cli-tasks", archive, "--no-wait")
    task_id = out.strip()
    code, out, err = pyostree("task", "cancel", task_id)
    if code == 0:
        assert out.startswith(f"Task {task_id}: "), out
    else:
        assert "already finished" in err


# -- distributions ---------------------------------------------------------------------------------------


def test_distribution_create_update_delete(
    pyostree: Run, builds: Builds, server: ServiceServer
) -> None:
    ok(pyostree, "repository", "create", "cli-dist-repo")
    builds.commit()
    ok(pyostree, "repository", "import", "cli-dist-repo", str(builds.osbuild_tar()))

    out = ok(pyostree, "distribution", "create", "cli-dist", "--base-path", "cli/iot",
             "--repository", "cli-dist-repo")  # fmt: skip
    assert f"URL:        {server.url}/content/cli/iot/\n" in out
    assert "Version:    latest\n" in out and "Private:    no\n" in out
    config = httpx.get(f"{server.url}/content/cli/iot/config", timeout=10)
    assert config.status_code == 200 and b"archive" in config.content

    listed = ok(pyostree, "distribution", "list")
    assert any(line.split()[:4] == ["cli-dist", "cli/iot", "cli-dist-repo", "latest"]
               for line in listed.splitlines())  # fmt: skip
    assert ok_json(pyostree, "distribution", "show", "cli-dist")["base_path"] == "cli/iot"

    pinned = ok_json(pyostree, "distribution", "update", "cli-dist", "--version", "0", "--private")
    assert pinned["version"] == 0 and pinned["private"] is True
    moved = ok_json(pyostree, "distribution", "update", "cli-dist", "--latest", "--public",
                    "--base-path", "cli/iot2")  # fmt: skip
    assert (moved["version"], moved["private"], moved["base_path"]) == (None, False, "cli/iot2")
    assert "no version 7" in fails(pyostree, "distribution", "update", "cli-dist", "--version", "7")
    assert "nothing to update" in fails(pyostree, "distribution", "update", "cli-dist")
    with pytest.raises(SystemExit) as exc:  # a usage error, from argparse
        pyostree("distribution", "update", "cli-dist", "--version", "1", "--latest")
    assert exc.value.code == 2

    ok(pyostree, "distribution", "create", "cli-dist-b", "--base-path", "cli/other",
       "--repository", "cli-dist-repo", "--version", "1")  # fmt: skip
    assert "overlaps" in fails(pyostree, "distribution", "create", "cli-dist-c",
                               "--base-path", "cli/other/sub", "--repository", "cli-dist-repo")  # fmt: skip

    assert ok(pyostree, "distribution", "delete", "cli-dist") == "Deleted distribution cli-dist\n"
    assert ok(pyostree, "distribution", "delete", "cli-dist-b", "--json") == ""
    assert "does not exist" in fails(pyostree, "distribution", "show", "cli-dist")


# -- remotes ------------------------------------------------------------------------------------------------


def test_remote_create_list_show_update_delete(pyostree: Run) -> None:
    out = ok(pyostree, "remote", "create", "cli-upstream", "--url", "https://example.com/repo",
             "--include-ref", "fedora/*", "--include-ref", "rhel/*",
             "--exclude-ref", "*/debug", "--depth", "2")  # fmt: skip
    assert "Include refs:   fedora/*, rhel/*\n" in out and "Depth:          2\n" in out
    listed = ok(pyostree, "remote", "list")
    assert any(line.split() == ["cli-upstream", "https://example.com/repo", "2",
                                "fedora/*,rhel/*", "*/debug"]
               for line in listed.splitlines())  # fmt: skip
    shown = ok_json(pyostree, "remote", "show", "cli-upstream")
    assert shown["include_refs"] == ["fedora/*", "rhel/*"] and shown["exclude_refs"] == ["*/debug"]

    updated = ok_json(pyostree, "remote", "update", "cli-upstream", "--url",
                      "http://mirror.example.com/repo", "--depth", "-1", "--password", "s3cret",
                      "--no-tls-validation")  # fmt: skip
    assert updated["url"] == "http://mirror.example.com/repo" and updated["depth"] == -1
    assert updated["password"] == "***" and updated["tls_validation"] is False
    assert updated["include_refs"] == ["fedora/*", "rhel/*"]  # untouched
    assert "url must be" in fails(pyostree, "remote", "update", "cli-upstream", "--url", "ftp://x")
    assert "nothing to update" in fails(pyostree, "remote", "update", "cli-upstream")

    assert ok(pyostree, "remote", "delete", "cli-upstream") == "Deleted remote cli-upstream\n"
    assert (
        fails(pyostree, "remote", "show", "cli-upstream") == "Remote 'cli-upstream' does not exist"
    )


# -- settings: server and token -------------------------------------------------------------------------------


def test_token_from_the_default_data_dir(
    pyostree: Run, server: ServiceServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("PYOSTREE_TOKEN")
    assert server.data_dir.name == "data"
    monkeypatch.chdir(server.data_dir.parent)  # ./data/admin-token, as after `make serve`
    ok(pyostree, "repository", "list")
    monkeypatch.chdir("/")
    ok(pyostree, "repository", "list", "--data-dir", str(server.data_dir))


def test_explicit_server_and_token_flags(
    pyostree: Run, server: ServiceServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    token = (server.data_dir / "admin-token").read_text().strip()
    monkeypatch.delenv("PYOSTREE_TOKEN")
    monkeypatch.setenv("PYOSTREE_SERVER", "http://127.0.0.1:9")
    ok(pyostree, "task", "list", "--server", server.url, "--token", token)


def test_no_token_is_a_clear_error(
    pyostree: Run, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("PYOSTREE_TOKEN")
    monkeypatch.chdir(tmp_path)
    message = fails(pyostree, "repository", "list")
    assert message.startswith("no token: pass --token, set PYOSTREE_TOKEN")
    assert "data/admin-token" in message


def test_bad_token_and_unreachable_server(pyostree: Run, monkeypatch: pytest.MonkeyPatch) -> None:
    assert fails(pyostree, "repository", "list", "--token", "wrong") == "The token is not valid"
    monkeypatch.setenv("PYOSTREE_SERVER", "http://127.0.0.1:9")
    assert fails(pyostree, "repository", "list").startswith(
        "cannot reach the service at http://127.0.0.1:9"
    )


# -- progress and uploads (no service needed) -----------------------------------------------------------------


class FakeTTY(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_plain_lines_are_rate_limited() -> None:
    stream = io.StringIO()
    progress = Progress(stream)
    for i in range(1000):
        progress.update(f"step {i}")
    progress.finish("done")
    assert stream.getvalue() == "step 0\ndone\n"


def test_progress_rewrites_one_line_on_a_terminal() -> None:
    stream = FakeTTY()
    progress = Progress(stream, interval=0)
    progress.update("uploading a long line")
    progress.update("short")
    progress.finish()
    assert stream.getvalue() == "\ruploading a long line\rshort                \n"


def test_upload_streams_in_chunks(tmp_path: Path) -> None:
    path = tmp_path / "big.tar"
    size = 2 * _CHUNK + 123
    path.write_bytes(b"x" * size)
    stream = io.StringIO()
    chunks = _upload(path, size, Progress(stream))
    assert not isinstance(chunks, (bytes, list))
    sizes = [len(c) for c in chunks]
    assert sizes == [_CHUNK, _CHUNK, 123]
    assert stream.getvalue().splitlines()[-1].startswith("Uploading big.tar [")
