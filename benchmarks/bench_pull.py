"""Macro benchmark of pulling (issue 6): ``pyostree pull`` vs ``ostree pull``, and the
service's sync vs the library.

The realistic corpus (:mod:`corpus`, ~50k objects, one ref ``os/x86_64/base``; built
and cached in ``benchmarks/.corpus/base`` if missing, which takes minutes) is served by
nginx (Debian package, foreground, generated configuration on 127.0.0.1, ``sendfile
on``, no access log).  The served directory holds a copy of the corpus's ``config`` and
``refs``, ``objects`` as a symlink to the corpus's, and a ``summary`` made there by
``ostree summary -u`` (the corpus has none).  Each run pulls everything into a fresh
archive repository:

- **ostree**: ``ostree pull --mirror origin`` (the real CLI; at most 8 requests in flight);
- **library**: ``python -m libpyostree.cli pull --mirror URL`` (a new process, like ostree);
- **service** (unless ``--no-service``): a fresh ``pyostree serve`` (started untimed),
  a remote for nginx and ``POST …/sync {mirror: true}``, timed from the POST until the
  task's ``finished`` time (the pull runs in the service's child process; the task is
  polled as the CLI polls it).

Runs alternate between the sides after one uncounted warm-up of each; medians are
compared: library/ostree (target <= 1.0) and service/library (target <= 1.2; the
ratios of each run's back-to-back pair are printed too).  Every
result is checked (object count equal to the corpus's; the ref present).

``--profile FILE`` additionally runs the library pull once in this process under
``cProfile`` and prints its hottest functions (and saves the stats to FILE).

The machine is usually shared: figures are "under load" unless it is idle.  Exit
status 0 whatever the figures (this measures, it does not gate); 1 if a pull failed
or a result differs; 2 if a tool is missing.

Run: ``.venv/bin/python benchmarks/bench_pull.py [--runs 3] [--corpus DIR] [--no-service]``.
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

# Sibling modules: the script's directory is sys.path[0] when run as a script.
import corpus

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

LIBRARY_TARGET = 1.0
SERVICE_TARGET = 1.2


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def wait_ready(url: str, proc: subprocess.Popen[bytes], what: str) -> None:
    deadline = time.monotonic() + 60
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:
                resp.read()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{what} never answered {url}") from None
            time.sleep(0.05)


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=30)


def ostree(*args: str | os.PathLike[str]) -> str:
    return subprocess.run(
        ["ostree", *map(str, args)], check=True, capture_output=True, text=True
    ).stdout


def serve_root(repo: Path, www: Path) -> None:
    """``www``: config and refs copied, objects linked, a summary made by ostree."""
    www.mkdir(parents=True)
    shutil.copy(repo / "config", www / "config")
    shutil.copytree(repo / "refs", www / "refs")
    for name in ("tmp", "state", "extensions"):
        (www / name).mkdir()
    (www / "objects").symlink_to(repo.resolve() / "objects")
    ostree("summary", f"--repo={www}", "-u")


def start_nginx(work: Path, root: Path) -> tuple[subprocess.Popen[bytes], str]:
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    port = free_port()
    temp = work / "temp"
    temp.mkdir(parents=True, exist_ok=True)
    user = "user root root;\n" if os.geteuid() == 0 else ""
    conf = work / "nginx.conf"
    conf.write_text(
        f"daemon off;\nworker_processes 1;\n{user}pid {work}/nginx.pid;\n"
        f"error_log {work}/error.log warn;\nevents {{ worker_connections 1024; }}\n"
        "http {\n  default_type application/octet-stream;\n  access_log off;\n"
        "  sendfile on;\n  tcp_nopush on;\n  keepalive_requests 1000000;\n"
        + "".join(
            f"  {t}_temp_path {temp}/{t};\n"
            for t in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
        )
        + f"  server {{\n    listen 127.0.0.1:{port};\n    root {root};\n  }}\n}}\n"
    )
    proc = subprocess.Popen(
        [nginx, "-e", str(work / "error.log"), "-p", str(work), "-c", str(conf)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}/"
    try:
        wait_ready(url + "config", proc, "nginx")
    except BaseException:
        stop(proc)
        raise
    return proc, url


def count_objects(repo: Path) -> int:
    return sum(len(os.listdir(d)) for d in (repo / "objects").iterdir() if d.is_dir())


def new_repo(path: Path) -> Path:
    if path.exists():
        shutil.rmtree(path)
    ostree("init", f"--repo={path}", "--mode=archive")
    return path


class Sides:
    def __init__(self, work: Path, url: str, branch: str, expected: int) -> None:
        self.work = work
        self.url = url
        self.branch = branch
        self.expected = expected
        self.serial = 0

    def _check(self, repo: Path, what: str) -> None:
        found = count_objects(repo)
        if found != self.expected:
            raise RuntimeError(f"{what}: {found} objects, the corpus has {self.expected}")
        if not (repo / "refs" / "heads" / self.branch).is_file():
            raise RuntimeError(f"{what}: no refs/heads/{self.branch}")

    def ostree(self) -> float:
        dest = new_repo(self.work / "dest")
        ostree("remote", "add", f"--repo={dest}", "--no-gpg-verify", "origin", self.url)
        start = time.perf_counter()
        ostree("pull", f"--repo={dest}", "--mirror", "origin")
        seconds = time.perf_counter() - start
        self._check(dest, "ostree pull")
        shutil.rmtree(dest)
        return seconds

    def library(self) -> float:
        dest = new_repo(self.work / "dest")
        argv = [sys.executable, "-m", "libpyostree.cli", "pull", "--repo", str(dest)]
        start = time.perf_counter()
        subprocess.run(
            [*argv, "--mirror", "-q", self.url], check=True, cwd=ROOT, stdout=subprocess.DEVNULL
        )
        seconds = time.perf_counter() - start
        self._check(dest, "pyostree pull")
        shutil.rmtree(dest)
        return seconds

    def service(self) -> float:
        import httpx

        self.serial += 1
        data = self.work / f"service-{self.serial}"
        port = free_port()
        pyostree = Path(sys.executable).parent / "pyostree"
        argv = [str(pyostree), "serve", "--host", "127.0.0.1", "--port", str(port)]
        argv += ["--data-dir", str(data), "--workers", "1", "--log-level", "warning"]
        with open(self.work / "service.log", "ab") as log:
            proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)
        try:
            base = f"http://127.0.0.1:{port}"
            wait_ready(f"{base}/api/v1/status", proc, "pyostree serve")
            token = (data / "admin-token").read_text().strip()
            with httpx.Client(
                base_url=base, headers={"authorization": f"Bearer {token}"}, timeout=600
            ) as client:

                def call(method: str, path: str, **kw: Any) -> Any:
                    resp = client.request(method, path, **kw)
                    if resp.status_code >= 400:
                        raise RuntimeError(f"{method} {path}: {resp.status_code} {resp.text}")
                    return resp.json()

                call("POST", "/api/v1/repositories", json={"name": "bench"})
                call("POST", "/api/v1/remotes", json={"name": "nginx", "url": self.url})
                # Polled like `pyostree repository sync` does (0.1 s, growing to 1 s):
                # the end is the task's own `finished` time, so the figure does not
                # depend on the polling, and polling adds no more load than the CLI's.
                start = time.time()
                task = call(
                    "POST",
                    "/api/v1/repositories/bench/sync",
                    json={"remote": "nginx", "mirror": True},
                )["task"]
                delay = 0.1
                while (state := call("GET", task))["state"] not in (
                    "completed",
                    "failed",
                    "canceled",
                ):
                    time.sleep(delay)
                    delay = min(delay * 1.5, 1.0)
                seconds = datetime.fromisoformat(state["finished"]).timestamp() - start
                if state["state"] != "completed" or state["created_version"] != 1:
                    raise RuntimeError(f"sync: {state}")
                refs = call("GET", "/api/v1/repositories/bench/versions/1/refs")["results"]
                if [r["name"] for r in refs] != [self.branch]:
                    raise RuntimeError(f"sync: refs {refs}")
        finally:
            stop(proc)
            shutil.rmtree(data, ignore_errors=True)
        return seconds


def profile_library(work: Path, url: str, out: Path) -> None:
    from libpyostree.pull import pull
    from libpyostree.repo import Repo

    dest = new_repo(work / "profiled")
    profiler = cProfile.Profile()
    start = time.perf_counter()
    profiler.enable()
    pull(Repo.open(dest), url, mirror=True)
    profiler.disable()
    print(f"profiled library pull (in process): {time.perf_counter() - start:.2f}s")
    profiler.dump_stats(out)
    stats = pstats.Stats(profiler)
    stats.sort_stats("tottime").print_stats(25)
    shutil.rmtree(dest)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--corpus", type=Path, default=ROOT / "benchmarks" / ".corpus" / "base")
    parser.add_argument("--runs", type=int, default=3, help="counted runs per side")
    parser.add_argument("--no-service", action="store_true", help="skip the service sync")
    parser.add_argument("--work", type=Path, help="scratch directory (default: a temp dir)")
    parser.add_argument("--profile", type=Path, help="cProfile the library pull into FILE")
    args = parser.parse_args(argv)
    for tool in ("ostree", "nginx"):
        if shutil.which(tool) is None and not Path(f"/usr/sbin/{tool}").exists():
            print(f"{tool} is not installed", file=sys.stderr)
            return 2

    repo = corpus.build_corpus(args.corpus)
    branch = str(corpus.load_info(args.corpus)["branch"])
    expected = count_objects(repo)
    work = Path(tempfile.mkdtemp(prefix="bench-pull-", dir=args.work))
    load = os.getloadavg()[0]
    print(f"corpus {repo}: {expected} objects, ref {branch}; load average {load:.1f}")
    nginx: subprocess.Popen[bytes] | None = None
    try:
        serve_root(repo, work / "www")
        nginx, url = start_nginx(work / "nginx", work / "www")
        sides = Sides(work, url, branch, expected)
        runners: dict[str, Callable[[], float]] = {
            "ostree": sides.ostree,
            "library": sides.library,
        }
        if not args.no_service:
            runners["service"] = sides.service
        times: dict[str, list[float]] = {name: [] for name in runners}
        for name, run in runners.items():  # warm-up: page cache, nginx, imports
            print(f"warm-up {name}: {run():.2f}s", flush=True)
        for i in range(args.runs):
            order = list(runners.items())
            if i % 2:
                order.reverse()
            for name, run in order:
                seconds = run()
                times[name].append(seconds)
                print(f"run {i + 1} {name}: {seconds:.2f}s", flush=True)
        if args.profile is not None:
            profile_library(work, url, args.profile)
    except (RuntimeError, subprocess.CalledProcessError) as exc:
        print(f"FAILED: {exc}", file=sys.stderr)
        return 1
    finally:
        if nginx is not None:
            stop(nginx)
        shutil.rmtree(work, ignore_errors=True)

    med = {name: statistics.median(values) for name, values in times.items()}
    print(f"\n{'side':<10}{'median':>10}{'min':>10}{'max':>10}   ({args.runs} runs)")
    for name, values in times.items():
        print(f"{name:<10}{med[name]:>9.2f}s{min(values):>9.2f}s{max(values):>9.2f}s")
    ratio = med["library"] / med["ostree"]
    print(f"pull ratio library/ostree = {ratio:.2f} (target <= {LIBRARY_TARGET})")
    if "service" in med:
        ratio = med["service"] / med["library"]
        print(f"sync ratio service/library = {ratio:.2f} (target <= {SERVICE_TARGET})")
        # Each run's service and library pulls ran back to back: their ratio is
        # less sensitive to the machine's slow and fast spells than the medians.
        pairs = [s / lib for s, lib in zip(times["service"], times["library"], strict=True)]
        shown = " ".join(f"{r:.2f}" for r in pairs)
        print(f"  per run (back to back): {shown}; median {statistics.median(pairs):.2f}")
    print(f"load average now {os.getloadavg()[0]:.1f} (2 cores shared: figures under load)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
