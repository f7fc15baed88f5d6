"""Macro benchmark of the service (``pyostree serve``) against nginx and the library.

Three comparisons, each in one invocation, with runs alternating between the two sides
after uncounted warm-ups, and medians compared:

1. **pull**: ``ostree pull --mirror`` (the real CLI) of the corpus into a fresh archive
   repository, from the service's ``/content/{base_path}/`` and from nginx serving the
   same files (target: ours/nginx <= 1.2).
2. **load**: ``--clients`` concurrent HTTP/1.1 clients (httpx, asyncio, one keep-alive
   connection each) fetching ``--requests`` object URLs in all, shuffled, from the
   distribution, from both servers.  Every response must be a 200 with the object's size
   (0 errors required); requests/s and MB/s are printed for both.
3. **import**: upload of the corpus's ``commit.tar`` through the API and its import task
   (from the start of the POST until the task is completed), into a fresh service, against
   ``pyostree import --repo EMPTY commit.tar`` (the library; target: API/library <= 1.2).

nginx serves a directory holding ``config``, ``summary`` and ``refs/heads/REF`` as the
service serves them (fetched from it) and ``objects`` as a symlink to the service's object
pool, so both serve the very same files from the same page cache.  It runs in the
foreground with a generated configuration on 127.0.0.1 (``sendfile on``, no access log;
``--nginx-workers`` worker processes, default 1, as the service is one process).  The
service runs with ``--log-level warning`` (no access log) unless told otherwise.

Peak memory of the service: the sampled peak of the summed RSS (and PSS) of its process
tree (the import verifies content in worker processes), and the kernel's ``VmHWM`` of the
main process, per phase.  The CPU time the server used (process tree, ``/proc``) is printed
beside each pull and load run: with 2 cores, the client often is the bottleneck, and the
server's CPU per request tells the servers' costs apart regardless.

``--profile FILE`` runs the serving service under ``cProfile`` (the event-loop thread) and
prints its hottest functions; the timings of such a run are not comparable.

Exit status 0 whatever the figures (this measures, it does not gate); 1 if a command or a
request failed or a pulled repository differs from the corpus; 2 if a tool is missing.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import pstats
import random
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

# Sibling modules: the script's directory is sys.path[0] when run as a script.
import bench_fsck
import bench_import
import corpus
import httpx

HERE = Path(__file__).resolve().parent
DEFAULT_CORPUS_ROOT = HERE / ".corpus"
PULL_TARGET = 1.2
IMPORT_TARGET = 1.2
MB = bench_fsck.MB
REPOSITORY = "bench"
BASE_PATH = "bench/os"
PHASES = ("import", "pull", "load")
_TICKS = os.sysconf("SC_CLK_TCK")
#: ``pyostree serve`` under cProfile with a CPU clock (the machine may be busy: wall time
#: would charge whatever function was running when the process was descheduled).
_PROFILED = """
import cProfile, sys, time
from service.cli import main
out, sys.argv = sys.argv[1], ["pyostree", *sys.argv[2:]]
profile = cProfile.Profile(time.thread_time)
try:
    profile.runcall(main)
finally:
    profile.dump_stats(out)
"""


# ------------------------------------------------------------------- processes


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def tree_pids(pid: int) -> list[int]:
    return bench_fsck.TreeRssSampler(pid)._descendants()


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of the live processes of ``pid``'s tree."""
    ticks = 0
    for p in tree_pids(pid):
        try:
            with open(f"/proc/{p}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue
        fields = stat[stat.rindex(b")") + 2 :].split()
        ticks += int(fields[11]) + int(fields[12])  # utime, stime (fields 14, 15)
    return ticks / _TICKS


def vm_hwm(pid: int) -> int:
    """The kernel's peak RSS of one process (``VmHWM``), in bytes."""
    try:
        with open(f"/proc/{pid}/status", "rb") as f:
            for line in f:
                if line.startswith(b"VmHWM:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return 0


class Server:
    """A server process in the foreground; its output goes to ``log``."""

    name = "server"
    stop_signal = signal.SIGTERM

    def __init__(self, cmd: list[str], log: Path, url: str) -> None:
        self.cmd = cmd
        self.log = log
        self.url = url  # the distribution's content, ending in "/"
        with open(log, "ab") as out:
            self.proc = subprocess.Popen(
                cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT
            )
        self.rss = bench_fsck.TreeRssSampler(self.proc.pid)
        self.pss = bench_import.TreePssSampler(self.proc.pid)
        self.rss.__enter__()
        self.pss.__enter__()
        self.hwm = 0

    def wait_ready(self, probe: str, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited ({self.proc.returncode}): {self.tail()}")
            try:
                if httpx.get(probe, timeout=2).status_code < 500:
                    return
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self.name} did not answer {probe}: {self.tail()}")
            time.sleep(0.1)

    def cpu(self) -> float:
        return cpu_seconds(self.proc.pid)

    def tail(self) -> str:
        try:
            return self.log.read_bytes()[-2000:].decode(errors="replace")
        except OSError:
            return ""

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.hwm = vm_hwm(self.proc.pid)
            self.proc.send_signal(self.stop_signal)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.rss.__exit__()
        self.pss.__exit__()


class Service(Server):
    name = "service"
    stop_signal = signal.SIGINT  # uvicorn's graceful shutdown (cProfile writes its file)

    def __init__(
        self,
        pyostree: str,
        data_dir: Path,
        log_level: str,
        profile: Path | None = None,
        python: str = sys.executable,
    ) -> None:
        port = free_port()
        serve = [
            "serve",
            "--host=127.0.0.1",
            f"--port={port}",
            f"--data-dir={data_dir}",
            f"--log-level={log_level}",
        ]
        cmd = [pyostree, *serve]
        if profile is not None:
            cmd = [python, "-c", _PROFILED, str(profile), *serve]
        self.base = f"http://127.0.0.1:{port}"
        super().__init__(cmd, data_dir.parent / f"{data_dir.name}.log", f"{self.base}/content/")
        self.url += BASE_PATH + "/"
        try:
            self.wait_ready(f"{self.base}/api/v1/status")
        except BaseException:
            Server.stop(self)
            raise
        token = (data_dir / "admin-token").read_text().strip()
        self.client = httpx.Client(
            base_url=self.base, headers={"authorization": f"Bearer {token}"}, timeout=600
        )

    def stop(self) -> None:
        self.client.close()
        super().stop()

    def call(self, method: str, path: str, **kw: Any) -> Any:
        response = self.client.request(method, path, **kw)
        if response.status_code >= 400:
            raise RuntimeError(f"{method} {path}: {response.status_code} {response.text[:500]}")
        return response.json()


class Nginx(Server):
    name = "nginx"

    def __init__(self, nginx: str, work: Path, root: Path, workers: str) -> None:
        port = free_port()
        conf = work / "nginx.conf"
        temp = work / "temp"
        temp.mkdir(exist_ok=True)
        user = "user root root;\n" if os.geteuid() == 0 else ""  # workers read our 0700 dirs
        conf.write_text(
            f"daemon off;\nworker_processes {workers};\n{user}"
            f"pid {work}/nginx.pid;\nerror_log {work}/error.log warn;\n"
            "events { worker_connections 1024; }\n"
            "http {\n"
            "  default_type application/octet-stream;\n"
            "  access_log off;\n"
            "  sendfile on;\n  tcp_nopush on;\n"
            "  keepalive_requests 1000000;\n"
            + "".join(
                f"  {t}_temp_path {temp}/{t};\n"
                for t in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
            )
            + f"  server {{\n    listen 127.0.0.1:{port};\n    root {root};\n  }}\n"
            "}\n"
        )
        cmd = [nginx, "-e", str(work / "error.log"), "-p", str(work), "-c", str(conf)]
        super().__init__(cmd, work / "nginx.log", f"http://127.0.0.1:{port}/{BASE_PATH}/")
        try:
            self.wait_ready(self.url + "config")
        except BaseException:
            self.stop()
            raise


# ---------------------------------------------------------------------- import


@dataclass
class ImportRun:
    seconds: float = 0.0
    upload_seconds: float = 0.0
    ok: bool = False
    error: str = ""
    tree_rss_bytes: int = 0
    tree_pss_bytes: int = 0
    hwm_bytes: int = 0


def _chunks(path: Path, size: int = 1 << 20) -> Iterator[bytes]:
    with open(path, "rb") as f:
        while chunk := f.read(size):
            yield chunk


def api_import(svc: Service, tar: Path) -> ImportRun:
    """POST the archive, then poll its task: timed from the POST's start to completion."""
    result = ImportRun()
    svc.call("POST", "/api/v1/repositories", json={"name": REPOSITORY})
    headers = {"content-length": str(tar.stat().st_size), "content-type": "application/x-tar"}
    start = time.perf_counter()
    task = svc.call(
        "POST", f"/api/v1/repositories/{REPOSITORY}/import", content=_chunks(tar), headers=headers
    )["task"]
    result.upload_seconds = time.perf_counter() - start
    while True:
        state = svc.call("GET", task)
        if state["state"] in ("completed", "failed", "canceled"):
            break
        time.sleep(0.05)
    result.seconds = time.perf_counter() - start
    result.ok = state["state"] == "completed" and state["created_version"] == 1
    if not result.ok:
        result.error = json.dumps(state)[:2000]
    return result


def run_api_import(pyostree: str, data_dir: Path, tar: Path, log_level: str) -> ImportRun:
    svc = Service(pyostree, data_dir, log_level)
    try:
        result = api_import(svc, tar)
    finally:
        svc.stop()
    result.tree_rss_bytes = svc.rss.peak_bytes
    result.tree_pss_bytes = svc.pss.peak_bytes
    result.hwm_bytes = svc.hwm
    if not result.ok:
        print(f"\n!! the import task did not complete: {result.error}\n{svc.tail()}")
    return result


def run_lib_import(ostree: str, pyostree: str, repo: Path, tar: Path) -> bench_fsck.Run:
    subprocess.run([ostree, "init", "--mode=archive", f"--repo={repo}"], check=True)
    run = bench_fsck.measure("pyostree import", [pyostree, "import", "--repo", str(repo), str(tar)])
    if run.returncode != 0:
        print(f"\n!! pyostree import exited with {run.returncode}:\n{run.output_tail}")
    return run


# ------------------------------------------------------------------------ pull


@dataclass
class PullRun:
    server: str
    seconds: float
    server_cpu: float
    ok: bool
    head: str = ""
    objects: int = 0


def run_pull(  # noqa: PLR0917
    ostree: str, server: Server, repo: Path, ref: str, inspect: bool, expect: tuple[str, int]
) -> PullRun:
    subprocess.run([ostree, "init", "--mode=archive", f"--repo={repo}"], check=True)
    subprocess.run(
        [ostree, "remote", "add", "--no-gpg-verify", f"--repo={repo}", "origin", server.url],
        check=True,
    )
    cpu = server.cpu()
    run = bench_fsck.measure(
        "ostree pull", [ostree, "pull", "--mirror", f"--repo={repo}", "origin", ref]
    )
    result = PullRun(server.name, run.seconds, server.cpu() - cpu, run.returncode == 0)
    if not result.ok:
        print(f"\n!! ostree pull from {server.name} exited with {run.returncode}:")
        print("   " + run.output_tail.strip().replace("\n", "\n   "))
    elif inspect:
        proc = subprocess.run(
            [ostree, "rev-parse", f"--repo={repo}", ref],
            capture_output=True,
            text=True,
            check=False,
        )
        result.head = proc.stdout.strip()
        result.objects = corpus.repo_stats(repo)["objects"]
        if (result.head, result.objects) != expect:
            result.ok = False
            print(
                f"\n!! pulled from {server.name}: head {result.head[:12]}, {result.objects} "
                f"objects; the corpus has {expect[0][:12]}, {expect[1]} objects"
            )
    return result


# ------------------------------------------------------------------------ load


@dataclass
class LoadRun:
    server: str
    seconds: float = 0.0
    requests: int = 0
    errors: int = 0
    body_bytes: int = 0
    server_cpu: float = 0.0
    client_cpu: float = 0.0
    p50_ms: float = 0.0
    p99_ms: float = 0.0
    first_error: str = ""

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    @property
    def mbps(self) -> float:
        return self.body_bytes / MB / self.seconds if self.seconds else 0.0


async def _client(url: str, work: list[tuple[str, int]], run: LoadRun, lat: list[float]) -> None:
    limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=60) as client:
        for path, size in work:
            start = time.perf_counter()
            try:
                response = await client.get(path)
                if response.status_code != 200 or len(response.content) != size:
                    run.errors += 1
                    run.first_error = run.first_error or (
                        f"{path}: {response.status_code}, {len(response.content)} of {size} bytes"
                    )
                run.body_bytes += len(response.content)
            except httpx.HTTPError as exc:
                run.errors += 1
                run.first_error = run.first_error or f"{path}: {exc!r}"
            lat.append(time.perf_counter() - start)


def run_load(server: Server, plan: list[list[tuple[str, int]]]) -> LoadRun:
    run = LoadRun(server.name, requests=sum(len(w) for w in plan))
    lat: list[float] = []

    async def main() -> None:
        await asyncio.gather(*(_client(server.url, w, run, lat) for w in plan))

    cpu, client_cpu = server.cpu(), time.process_time()
    start = time.perf_counter()
    asyncio.run(main())
    run.seconds = time.perf_counter() - start
    run.server_cpu = server.cpu() - cpu
    run.client_cpu = time.process_time() - client_cpu
    lat.sort()
    run.p50_ms = lat[len(lat) // 2] * 1000
    run.p99_ms = lat[min(len(lat) - 1, len(lat) * 99 // 100)] * 1000
    if run.errors:
        print(f"\n!! {run.errors} errors from {server.name}, first: {run.first_error}")
    return run


def load_plan(objects: Path, clients: int, requests: int, seed: int) -> list[list[tuple[str, int]]]:
    """Per client, a shuffled list of (relative URL, size): ``requests`` in all, drawn
    from every object of the pool (without repeats while there are enough)."""
    everything: list[tuple[str, int]] = []
    for sub in sorted(os.listdir(objects)):
        for entry in sorted(os.scandir(objects / sub), key=lambda e: e.name):
            everything.append((f"objects/{sub}/{entry.name}", entry.stat().st_size))
    rng = random.Random(seed)
    chosen: list[tuple[str, int]] = []
    while len(chosen) < requests:
        chosen += rng.sample(everything, min(len(everything), requests - len(chosen)))
    rng.shuffle(chosen)
    return [chosen[i::clients] for i in range(clients)]


# ------------------------------------------------------------------------ setup


def export_for_nginx(svc: Service, objects: Path, ref: str, root: Path) -> None:
    """``root/BASE_PATH/`` with what the service serves: config, summary and the ref from
    the service itself, ``objects`` as a symlink to its pool."""
    dest = root / BASE_PATH
    (dest / "refs" / "heads" / ref).parent.mkdir(parents=True)
    for name in ("config", "summary", f"refs/heads/{ref}"):
        response = httpx.get(svc.url + name, timeout=60)
        response.raise_for_status()
        (dest / name).write_bytes(response.content)
    (dest / "objects").symlink_to(objects)


@dataclass
class Report:
    runs: dict[str, Any] = field(default_factory=dict)
    figures: dict[str, Any] = field(default_factory=dict)
    failed: bool = False


def _mb(n: float) -> str:
    return f"{n / MB:.1f} MB"


def _median(xs: Sequence[float]) -> float:
    return statistics.median(xs) if xs else float("nan")


def _labels(args: argparse.Namespace) -> Iterator[tuple[int, str, bool]]:
    """(index, label, counted) for the warm-ups and the counted runs."""
    for i in range(args.warmup + args.runs):
        counted = i >= args.warmup
        yield i, str(i - args.warmup + 1) if counted else "warm-up", counted


# ----------------------------------------------------------------------- phases


def phase_import(
    args: argparse.Namespace, pyostree: str, work: Path, tar: Path, rep: Report
) -> None:
    print(f"{'import':<8}{'API upload':>12}{'API total':>12}{'library':>12}{'svc RSS':>12}")
    print("-" * 56)
    api: list[ImportRun] = []
    lib: list[bench_fsck.Run] = []
    for i, label, counted in _labels(args):
        a = run_api_import(pyostree, work / f"svc-{i}", tar, args.log_level)
        b = run_lib_import(args.ostree, pyostree, work / f"lib-{i}", tar)
        rep.failed |= not a.ok or b.returncode != 0
        if counted:
            api.append(a)
            lib.append(b)
        cells = [f"{a.upload_seconds:>10.2f} s", f"{a.seconds:>10.2f} s", f"{b.seconds:>10.2f} s"]
        print(f"{label:<8}{''.join(cells)}{_mb(a.tree_rss_bytes):>12}", flush=True)
    med_up = _median([r.upload_seconds for r in api])
    med_api, med_lib = _median([r.seconds for r in api]), _median([r.seconds for r in lib])
    f = {
        "median_upload": med_up,
        "median_api": med_api,
        "median_library": med_lib,
        "ratio": med_api / med_lib,
        "service_tree_rss": max(r.tree_rss_bytes for r in api),
        "service_tree_pss": max(r.tree_pss_bytes for r in api),
        "service_vmhwm": max(r.hwm_bytes for r in api),
        "library_peak": max(r.peak_bytes for r in lib),
    }
    rep.runs["import"] = {"api": [asdict(r) for r in api], "library": [asdict(r) for r in lib]}
    rep.figures["import"] = f
    print("-" * 56)
    print(f"{'median':<8}{med_up:>10.2f} s{med_api:>10.2f} s{med_lib:>10.2f} s")
    print(f"import ratio API/library = {f['ratio']:.2f} (target <= {IMPORT_TARGET})")
    print(
        f"service peak while importing: tree RSS {_mb(f['service_tree_rss'])}, tree PSS "
        f"{_mb(f['service_tree_pss'])}, main process VmHWM {_mb(f['service_vmhwm'])}; "
        f"library import {_mb(f['library_peak'])} (tree RSS)\n"
    )


def phase_pull(  # noqa: PLR0917
    args: argparse.Namespace,
    pair: tuple[Server, Server],
    work: Path,
    ref: str,
    expect: tuple[str, int],
    rep: Report,
) -> None:
    print(f"{'pull':<8}{'ours':>12}{'nginx':>12}{'ours CPU':>12}{'nginx CPU':>12}")
    print("-" * 56)
    pulls: dict[str, list[PullRun]] = {s.name: [] for s in pair}
    for i, label, counted in _labels(args):
        inspect = i == args.warmup  # compare with the corpus once, on the first counted run
        got = [
            run_pull(args.ostree, s, work / f"pull-{i}-{s.name}", ref, inspect, expect)
            for s in pair
        ]
        rep.failed |= not all(r.ok for r in got)
        if counted:
            for r in got:
                pulls[r.server].append(r)
        cells = [f"{r.seconds:>10.2f} s" if r.ok else f"{'FAILED':>12}" for r in got]
        cells += [f"{r.server_cpu:>10.2f} s" for r in got]
        print(f"{label:<8}{''.join(cells)}", flush=True)
    med = {k: _median([r.seconds for r in v]) for k, v in pulls.items()}
    cpu = {k: _median([r.server_cpu for r in v]) for k, v in pulls.items()}
    ratio = med["service"] / med["nginx"]
    rep.runs["pull"] = {k: [asdict(r) for r in v] for k, v in pulls.items()}
    rep.figures["pull"] = {"median": med, "server_cpu": cpu, "ratio": ratio}
    print("-" * 56)
    cells = [f"{med[k]:>10.2f} s" for k in pulls] + [f"{cpu[k]:>10.2f} s" for k in pulls]
    print(f"{'median':<8}{''.join(cells)}")
    print(f"pull ratio ours/nginx = {ratio:.2f} (target <= {PULL_TARGET})\n")


def phase_load(
    args: argparse.Namespace, pair: tuple[Server, Server], objects: Path, rep: Report
) -> None:
    plan = load_plan(objects, args.clients, args.requests, seed=1)
    size = sum(s for w in plan for _p, s in w)
    print(f"load: {args.clients} clients, {args.requests} object GETs ({_mb(size)}) per run")
    head = f"{'req/s':>9}{'MB/s':>8}{'errors':>8}"
    print(f"{'load':<8}{'ours:':>6}{head}{'nginx:':>9}{head}")
    print("-" * 64)
    loads: dict[str, list[LoadRun]] = {s.name: [] for s in pair}
    for _i, label, counted in _labels(args):
        got = [run_load(s, plan) for s in pair]
        rep.failed |= any(r.errors for r in got)
        if counted:
            for r in got:
                loads[r.server].append(r)
        cells = [f"{r.rps:>9.0f}{r.mbps:>8.1f}{r.errors:>8}" for r in got]
        print(f"{label:<8}{'':>6}{cells[0]}{'':>9}{cells[1]}", flush=True)
    summary: dict[str, dict[str, float]] = {}
    for k, v in loads.items():
        summary[k] = {
            "rps": _median([r.rps for r in v]),
            "mbps": _median([r.mbps for r in v]),
            "errors": sum(r.errors for r in v),
            "p50_ms": _median([r.p50_ms for r in v]),
            "p99_ms": _median([r.p99_ms for r in v]),
            "server_cpu_us": _median([r.server_cpu / r.requests * 1e6 for r in v]),
            "client_cpu_share": _median([r.client_cpu / r.seconds for r in v]),
        }
    rep.runs["load"] = {k: [asdict(r) for r in v] for k, v in loads.items()}
    rep.figures["load"] = summary
    s, n = summary["service"], summary["nginx"]
    print("-" * 64)
    cells = [f"{x['rps']:>9.0f}{x['mbps']:>8.1f}{x['errors']:>8.0f}" for x in (s, n)]
    print(f"{'median':<8}{'':>6}{cells[0]}{'':>9}{cells[1]}")
    for k, x in summary.items():
        print(
            f"  {k:<8} latency p50 {x['p50_ms']:.1f} ms, p99 {x['p99_ms']:.1f} ms; server CPU "
            f"{x['server_cpu_us']:.0f} us/request; client CPU {x['client_cpu_share']:.0%} of a core"
        )
    errors = s["errors"] + n["errors"]
    print(
        f"load ratio ours/nginx (req/s) = {s['rps'] / n['rps']:.2f}; "
        f"errors {errors:.0f} (required: 0)\n"
    )


def phase_serve(  # noqa: PLR0917
    args: argparse.Namespace,
    pyostree: str,
    work: Path,
    ref: str,
    expect: tuple[str, int],
    rep: Report,
) -> None:
    """The pull and load phases against a service on the first import's data and nginx."""
    data_dir = work / "svc-0"
    servers: list[Server] = []
    try:
        svc = Service(pyostree, data_dir, args.log_level, profile=args.profile)
        servers.append(svc)
        svc.call(
            "POST",
            "/api/v1/distributions",
            json={"name": "bench", "base_path": BASE_PATH, "repository": REPOSITORY},
        )
        objects = data_dir / "pool" / "objects"
        export_for_nginx(svc, objects, ref, work / "www")
        nginx = Nginx(args.nginx, work, work / "www", args.nginx_workers)
        servers.append(nginx)
        if "pull" in args.phases:
            phase_pull(args, (svc, nginx), work, ref, expect, rep)
        if "load" in args.phases:
            phase_load(args, (svc, nginx), objects, rep)
    finally:
        for server in servers:
            server.stop()
    rss = {"tree_rss": svc.rss.peak_bytes, "tree_pss": svc.pss.peak_bytes, "vmhwm": svc.hwm}
    rep.figures["serving_rss"] = rss
    print(
        f"service peak while serving: tree RSS {_mb(rss['tree_rss'])}, tree PSS "
        f"{_mb(rss['tree_pss'])}, VmHWM {_mb(rss['vmhwm'])}; "
        f"nginx tree RSS {_mb(nginx.rss.peak_bytes)}"
    )
    if args.profile is not None:
        print(f"\nprofile of the serving service ({args.profile}, CPU seconds of its event loop;")
        print("the timings above are skewed by the profiler):")
        pstats.Stats(str(args.profile)).sort_stats("tottime").print_stats(30)


# ------------------------------------------------------------------------- main


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="pyostree serve vs nginx and the library")
    parser.add_argument("--runs", type=int, default=3, help="counted runs of each (default 3)")
    parser.add_argument("--warmup", type=int, default=1, help="uncounted runs first (default 1)")
    parser.add_argument(
        "--only", choices=PHASES, action="append", help="run only this phase (repeatable)"
    )
    parser.add_argument("--large", action="store_true", help="use the >100k-object corpus")
    parser.add_argument(
        "--corpus",
        type=Path,
        help="corpus directory (holds repo/): used as is if complete, else built there;"
        " default benchmarks/.corpus/{base,large}",
    )
    parser.add_argument(
        "--settle",
        type=float,
        default=300,
        help="seconds to wait after a sync before the first run (default 300; see "
        "bench_import.py: ext4 here creates files slowly after mass deletions)",
    )
    parser.add_argument("--clients", type=int, default=32, help="load: concurrent clients")
    parser.add_argument("--requests", type=int, default=20000, help="load: requests in all")
    parser.add_argument(
        "--nginx-workers", default="1", help="nginx worker_processes (default 1; or auto)"
    )
    parser.add_argument(
        "--log-level", default="warning", help="the service's (default warning; info logs requests)"
    )
    parser.add_argument(
        "--profile", type=Path, help="cProfile the serving service into this file (skews timings)"
    )
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    parser.add_argument("--ostree", default=shutil.which("ostree") or "/usr/bin/ostree")
    parser.add_argument("--nginx", default=shutil.which("nginx") or "/usr/sbin/nginx")
    parser.add_argument("--pyostree", type=Path, help="pyostree executable (default: the venv's)")
    parser.add_argument("--json", type=Path, help="also write the results here as JSON")
    args = parser.parse_args(argv)
    if args.runs < 1 or args.clients < 1 or args.requests < args.clients:
        parser.error("need --runs >= 1, --clients >= 1 and --requests >= --clients")
    args.phases = set(args.only or PHASES)

    pyostree = args.pyostree or bench_fsck.find_pyostree()
    tools = {"pyostree": pyostree, "ostree": args.ostree, "nginx": args.nginx}
    missing = [k for k, v in tools.items() if v is None or not Path(v).exists()]
    if shutil.which("tar") is None:
        missing.append("tar")
    if missing:
        print(
            f"missing: {', '.join(missing)} (pyostree: pip install -e '.[service]' into .venv; "
            "apt-get install ostree nginx-light)",
            file=sys.stderr,
        )
        return 2

    variant = "large" if args.large else "base"
    dest = args.corpus or DEFAULT_CORPUS_ROOT / variant
    if args.corpus and corpus.is_complete(dest):
        repo = dest / "repo"
        print(f"corpus:  {dest} (as found)")
    else:
        print(f"corpus:  {dest} ({variant}; building it if not cached, which takes minutes)")
        repo = corpus.build_large_corpus(dest) if args.large else corpus.build_corpus(dest)
    ref = str(corpus.load_info(dest).get("branch", corpus.BRANCH))
    tar = bench_import.commit_tar(dest, repo, ref)
    stats = corpus.repo_stats(repo)
    head = subprocess.run(
        [args.ostree, "rev-parse", f"--repo={repo}", ref],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    print(f"ref:     {ref} = {head[:12]}; {stats['objects']} objects, {_mb(stats['disk_bytes'])}")
    print(f"archive: {tar} ({_mb(tar.stat().st_size)})")
    load_before = os.getloadavg()[0]
    print(
        f"machine: {os.cpu_count()} CPUs, load average {load_before:.2f}; runs: {args.warmup} "
        f"warm-up + {args.runs} counted of each, alternating; phases: "
        + ", ".join(p for p in PHASES if p in args.phases)
    )
    corpus.settle(args.settle)

    # SIGTERM (timeout, kill) unwinds like Ctrl-C: servers are stopped, the work removed.
    signal.signal(signal.SIGTERM, lambda _sig, _frame: sys.exit(143))
    # Nothing is deleted before the end (see bench_import.py: ext4 here creates files
    # slowly for minutes after a mass deletion).
    work = Path(tempfile.mkdtemp(prefix="bench-serve-", dir=dest))
    print(f"work:    {work}\n", flush=True)
    rep = Report()
    try:
        if "import" in args.phases:
            phase_import(args, str(pyostree), work, tar, rep)
        elif not run_api_import(str(pyostree), work / "svc-0", tar, args.log_level).ok:
            rep.failed = True  # the serving phases' data, imported untimed
        if args.phases & {"pull", "load"} and not rep.failed:
            phase_serve(args, str(pyostree), work, ref, (head, stats["objects"]), rep)
    finally:
        if args.keep:
            print(f"kept {work}")
        else:
            print(f"removing {work} ...", flush=True)
            shutil.rmtree(work, ignore_errors=True)

    load = max(load_before, os.getloadavg()[0])
    if load > bench_fsck.BUSY_LOAD:
        print(f"warning: load average reached {load:.2f} -- other work on the machine skews this")
    if args.json:
        out = {"corpus": str(dest), "variant": variant, "objects": stats, **asdict(rep)}
        args.json.write_text(json.dumps(out, indent=2) + "\n")
    if rep.failed:
        print("NOT VALID: a command or a request failed, see above")
    return 1 if rep.failed else 0


if __name__ == "__main__":
    sys.exit(main())
