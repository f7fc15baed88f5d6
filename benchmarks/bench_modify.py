"""Macro benchmark of ``POST …/modify`` (issue 5): copy and removal times.

One in-process service (the real ASGI app through Starlette's TestClient, one task
worker thread) on a fresh data directory beside the corpus:

1. ``commit.tar`` of the base corpus (:mod:`corpus`, ~50k objects; built and cached
   in ``benchmarks/.corpus/base`` if missing, which takes minutes) is imported into
   repository ``src`` (timed, for reference).
2. **copy**: ``modify`` of repository ``dst`` with ``add_refs=[BRANCH]`` from ``src``:
   the ref, its commit and its closure are recorded in the database; no object bytes
   are copied.  Timed from the task's ``started`` to its ``finished`` (target: ≤ 3 s),
   once with the dirtree cache as the import left it (warm) and once, into another
   repository, after clearing it (cold).
3. **remove**: repository ``two`` holds the corpus commit and a small commit (ref
   ``small``); two whole-version copies of it each remove the small commit, which
   recomputes the closure of what remains (the corpus commit): once with the pool's
   dirtree cache warm, once cold.  ``Pool.tree_reads`` (dirtree files parsed) is
   printed beside each time.

Exit status 0 whatever the figures (this measures, it does not gate); 1 when a task
fails or a count is wrong.

Run: ``.venv/bin/python benchmarks/bench_modify.py [--corpus DIR] [--keep]``.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Iterator, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any, cast

# Sibling modules: the script's directory is sys.path[0] when run as a script.
import bench_import
import corpus

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from libpyostree.commit import commit_directory  # noqa: E402
from libpyostree.repo import Repo  # noqa: E402
from service.app import App, create_app  # noqa: E402
from service.pool import Pool  # noqa: E402
from service.state import Settings  # noqa: E402

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient

R = "/api/v1/repositories"
TARGET_COPY_SECONDS = 3.0


class Failed(Exception):
    pass


class Client:
    def __init__(self, client: TestClient, token: str) -> None:
        self.client = client
        self.headers = {"Authorization": f"Bearer {token}"}

    def call(self, method: str, path: str, expect: int, **kw: Any) -> Any:
        resp = self.client.request(method, path, headers=self.headers, **kw)
        if resp.status_code != expect:
            raise Failed(f"{method} {path}: {resp.status_code} {resp.text[:500]}")
        return resp.json() if resp.content else None

    def wait(self, href: str) -> dict[str, Any]:
        while True:
            task: dict[str, Any] = self.call("GET", href, 200)
            if task["state"] in ("completed", "failed", "canceled"):
                if task["state"] != "completed":
                    raise Failed(f"task {href} {task['state']}: {task['error']}")
                return task
            time.sleep(0.01)

    def modify(self, repo: str, **body: Any) -> dict[str, Any]:
        return self.wait(self.call("POST", f"{R}/{repo}/modify", 202, json=body)["task"])

    def import_(self, repo: str, tar: Path, ref: str | None = None) -> dict[str, Any]:
        params = {"ref": ref} if ref else {}
        href = self.call("POST", f"{R}/{repo}/import", 202, params=params, content=_chunks(tar))[
            "task"
        ]
        return self.wait(href)

    def present(self, repo: str) -> dict[str, int]:
        out: dict[str, int] = self.call("GET", f"{R}/{repo}/versions/latest", 200)[
            "content_summary"
        ]["present"]
        return out


def _chunks(path: Path, size: int = 1 << 20) -> Iterator[bytes]:
    with open(path, "rb") as f:
        while chunk := f.read(size):
            yield chunk


def seconds(task: dict[str, Any]) -> float:
    return (
        datetime.fromisoformat(task["finished"]) - datetime.fromisoformat(task["started"])
    ).total_seconds()


def clear_tree_cache(pool: Pool) -> None:
    """Empty the pool's dirtree cache, as after a restart."""
    with pool._trees_lock:
        pool._trees.clear()
        pool._tree_entries = 0


def small_archive(work: Path) -> Path:
    """A tar of a scratch repository holding one small commit on ref ``small``."""
    tree = work / "small-tree"
    (tree / "etc").mkdir(parents=True)
    (tree / "etc" / "small").write_bytes(b"a small commit\n")
    repo = Repo.init(work / "small-repo")
    commit_directory(repo, tree, branch="small", subject="small", timestamp=1_700_000_000)
    tar = work / "small.tar"
    subprocess.run(["tar", "-cf", str(tar), "-C", str(repo.path), "."], check=True)
    return tar


def run(tar: Path, branch: str, work: Path) -> None:
    settings = Settings(work / "data", workers=1)
    app: App = create_app(settings)
    pool = app.service.pool
    with TestClient(cast(Any, app)) as http:  # App types scope as a dict
        api = Client(http, (settings.data_dir / "admin-token").read_text().strip())
        for name in ("src", "dst", "dst-cold", "two", "rm-warm", "rm-cold"):
            api.call("POST", R, 201, json={"name": name})

        task = api.import_("src", tar)
        objects = api.present("src")["objects"]
        print(f"import of {tar.name}: {objects} objects, task {seconds(task):.1f} s")

        reads = pool.tree_reads
        task = api.modify("dst", add_refs=[branch], source={"repository": "src"})
        if api.present("dst")["objects"] != objects:
            raise Failed(f"copy holds {api.present('dst')} objects, expected {objects}")
        copy_warm = seconds(task)
        print(
            f"copy of {branch} ({objects} objects), cache warm: {copy_warm:.3f} s "
            f"(task started→finished; target ≤ {TARGET_COPY_SECONDS:.0f} s), "
            f"dirtrees parsed: {pool.tree_reads - reads}"
        )
        clear_tree_cache(pool)
        reads = pool.tree_reads
        task = api.modify("dst-cold", add_refs=[branch], source={"repository": "src"})
        print(
            f"copy of {branch} ({objects} objects), cache cold: {seconds(task):.3f} s, "
            f"dirtrees parsed: {pool.tree_reads - reads}"
        )

        api.modify("two", add_refs=[branch], source={"repository": "src"})
        api.import_("two", small_archive(work))
        small = api.call("GET", f"{R}/two/versions/latest/refs", 200, params={"name": "small"})
        small_commit = small["results"][0]["commit"]
        for name in ("rm-warm", "rm-cold"):
            api.modify(name, source={"repository": "two"})
        for name, cold in (("rm-warm", False), ("rm-cold", True)):
            if cold:
                clear_tree_cache(pool)
            reads = pool.tree_reads
            task = api.modify(name, remove_commits=[small_commit])
            present = api.present(name)
            if present["objects"] != objects or present["commits"] != 1:
                raise Failed(f"after the removal {name} holds {present}")
            print(
                f"removal of a commit (closure of the {objects}-object commit recomputed), "
                f"cache {'cold' if cold else 'warm'}: {seconds(task):.3f} s, "
                f"dirtrees parsed: {pool.tree_reads - reads}"
            )
    print(
        f"copy target ≤ {TARGET_COPY_SECONDS:.0f} s: "
        f"{'met' if copy_warm <= TARGET_COPY_SECONDS else 'NOT met'} ({copy_warm:.3f} s)"
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument(
        "--corpus",
        type=Path,
        default=bench_import.DEFAULT_CORPUS_ROOT / "base",
        help="corpus directory (built there if missing; default benchmarks/.corpus/base)",
    )
    parser.add_argument("--keep", action="store_true", help="keep the service's data directory")
    args = parser.parse_args(argv)
    if corpus.is_complete(args.corpus):
        repo = args.corpus / "repo"
    else:
        print(f"building the corpus in {args.corpus} (takes minutes) ...", flush=True)
        repo = corpus.build_corpus(args.corpus)
    branch = str(corpus.load_info(args.corpus).get("branch", corpus.BRANCH))
    tar = bench_import.commit_tar(args.corpus, repo, branch)
    work = Path(tempfile.mkdtemp(prefix="bench-modify-", dir=args.corpus))
    try:
        run(tar, branch, work)
    except Failed as exc:
        print(f"FAILED: {exc}", file=sys.stderr)
        return 1
    finally:
        if args.keep:
            print(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
