"""The pyostree command line: local verbs, exit codes and one-line errors."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from libpyostree.cli import main
from libpyostree.objects import ObjectType
from libpyostree.repo import Repo


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def repo_with_history(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> tuple[Path, list[str]]:
    repo = tmp_path / "repo"
    assert run(capsys, "init", "--repo", str(repo))[0] == 0
    commits = []
    for i in range(3):
        src = tmp_path / f"src{i}"
        (src / "sub").mkdir(parents=True)
        (src / "sub" / "file.txt").write_text(f"version {i}\n")
        (src / "hello").write_text("hello\n")
        code, out, _ = run(
            capsys, "commit", "--repo", str(repo), "-b", "main", "-s", f"release {i}",
            "--add-metadata-string", f"version=1.{i}", "--timestamp", f"2024-01-0{i + 1}T00:00:00+00:00",
            str(src),
        )  # fmt: skip
        assert code == 0
        commits.append(out.strip())
    return repo, commits


def test_version_and_help() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "libpyostree.cli", "--version"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0 and result.stdout.startswith("pyostree ")


def test_refs_log_show(
    capsys: pytest.CaptureFixture[str], repo_with_history: tuple[Path, list[str]]
) -> None:
    repo, commits = repo_with_history
    assert run(capsys, "refs", "--repo", str(repo))[1] == "main\n"
    code, out, _ = run(capsys, "log", "--repo", str(repo), "main")
    assert code == 0
    assert [line.split()[1] for line in out.splitlines() if line.startswith("commit ")] == commits[
        ::-1
    ]
    code, out, _ = run(capsys, "show", "--repo", str(repo), "main^")
    assert f"commit {commits[1]}" in out and "release 1" in out and "Version: 1.1" in out
    assert "ostree.ref-binding" in out
    code, out, _ = run(capsys, "rev-parse", "--repo", str(repo), "main^^")
    assert out.strip() == commits[0]


def test_ls_and_checkout(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], repo_with_history: tuple[Path, list[str]]
) -> None:
    repo, _ = repo_with_history
    code, out, _ = run(capsys, "ls", "--repo", str(repo), "-R", "main")
    assert code == 0
    assert [line.split()[-1] for line in out.splitlines()] == [
        "/",
        "/hello",
        "/sub",
        "/sub/file.txt",
    ]
    dest = tmp_path / "co"
    assert run(capsys, "checkout", "--repo", str(repo), "main", str(dest))[0] == 0
    assert (dest / "sub" / "file.txt").read_text() == "version 2\n"
    code, _, err = run(capsys, "checkout", "--repo", str(repo), "main", str(dest))
    assert code == 1 and "already exists" in err and err.count("\n") == 1


def test_summary_update_and_view(
    capsys: pytest.CaptureFixture[str], repo_with_history: tuple[Path, list[str]]
) -> None:
    repo, commits = repo_with_history
    code, _, err = run(capsys, "summary", "--repo", str(repo), "--view")
    assert code == 1 and "no summary" in err
    assert run(capsys, "summary", "--repo", str(repo), "-u")[0] == 0
    code, out, _ = run(capsys, "summary", "--repo", str(repo), "-v")
    assert code == 0 and "* main" in out and commits[2] in out and "Version: 1.2" in out


def test_fsck_exit_status_and_problem_lines(
    capsys: pytest.CaptureFixture[str], repo_with_history: tuple[Path, list[str]]
) -> None:
    repo, commits = repo_with_history
    assert run(capsys, "fsck", "--repo", str(repo))[0] == 0
    opened = Repo.open(repo)
    tree = opened.read_commit(commits[2]).root_dirtree
    opened.object_path(tree, ObjectType.DIR_TREE).unlink()
    code, out, _ = run(capsys, "fsck", "--repo", str(repo))
    assert code == 1
    assert out.splitlines() == [f"dirtree {tree}: missing dirtree object (needed by {commits[2]})"]


def test_errors_are_one_line_without_traceback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("OSTREE_REPO", raising=False)
    for argv in (
        ["refs", "--repo", str(tmp_path / "missing")],
        ["refs"],
        ["log", "--repo", str(tmp_path), "main"],
    ):
        code, _, err = run(capsys, *argv)
        assert code == 1
        assert err.startswith("pyostree: error: ") and err.count("\n") == 1
    (tmp_path / "r").mkdir()
    (tmp_path / "r" / "config").write_bytes(b"\xff\xfe garbage")
    code, _, err = run(capsys, "fsck", "--repo", str(tmp_path / "r"))
    assert code == 1 and "config" in err


def test_ostree_repo_environment_variable(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OSTREE_REPO", str(tmp_path / "envrepo"))
    assert run(capsys, "init")[0] == 0
    assert (tmp_path / "envrepo" / "config").exists()
