"""Macro benchmark: ``pyostree import commit.tar`` against ``tar -x`` + ``ostree pull-local``.

What is compared:

* (A) ``pyostree import --repo EMPTY commit.tar``: stream the archive, verify every
  object, publish it into a fresh, empty archive repository.
* (B) what people do without us (RHEL for Edge docs, ``reference/peers.md`` §4.5):
  ``tar -xf commit.tar -C TMP``, ``ostree init --mode=archive --repo=EMPTY``, then
  ``ostree pull-local --untrusted --depth=-1 --repo=EMPTY TMP/repo REF``.  ``--untrusted``
  makes ostree re-checksum every object, as our import always does; ``--depth=-1`` takes
  the whole history, which is what the import brings in.  Its time is the sum of the
  three commands.

``commit.tar`` is the osbuild layout (``./compose.json`` + ``./repo/``, GNU format; see
``tests/archives.py``) of the benchmark corpus (:mod:`corpus`), written once and cached
next to it (``commit.tar`` + ``commit.tar.stamp``, rebuilt when the corpus changes).

Runs alternate A, B, A, B, ... after one uncounted warm-up of each (page cache), and every
run starts from fresh, empty directories on the corpus's file system, all deleted only at
the end (see the comment in :func:`main` for why).  The ratio is ``median(A) / median(B)``
(target <= 0.8).  Peak memory of A is measured as :func:`bench_fsck.measure` does: the
kernel's ``ru_maxrss`` of that child (``os.wait4``) and the sampled peak of the summed RSS
of its process tree (the import verifies content in worker processes); the RSS verdict
(target 300 MB with ``--large``) uses the larger.  The summed PSS is printed too.  The
disk the import needs beyond the archive is sampled with ``statvfs`` (free space) and
printed next to the size of the imported objects.

Exit status 0 whatever the figures (this measures, it does not gate); 1 if a command
failed or the two results differ; 2 if a tool is missing.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

# Sibling modules: the script's directory is sys.path[0] when run as a script.
import bench_fsck
import corpus

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
DEFAULT_CORPUS_ROOT = HERE / ".corpus"
RATIO_TARGET = 0.8
RSS_TARGET_BYTES = bench_fsck.RSS_TARGET_BYTES
MB = bench_fsck.MB
#: Bump when the way commit.tar is written changes, so cached copies are rebuilt.
TAR_VERSION = 1


# ------------------------------------------------------------------------- commit.tar


def _stamp(dest: Path) -> str:
    markers = sorted(p.name for p in dest.glob(".complete-*"))
    return json.dumps({"corpus": markers, "tar_version": TAR_VERSION})


def commit_tar(dest: Path, repo: Path, ref: str) -> Path:
    """``dest/commit.tar`` in the osbuild layout, built unless a matching one is cached."""
    tar = dest / "commit.tar"
    stamp = dest / "commit.tar.stamp"
    if tar.is_file() and stamp.is_file() and stamp.read_text() == _stamp(dest):
        return tar
    # The archive writer lives with the tests (one implementation of the layout).
    sys.path.insert(0, str(ROOT))
    from tests.archives import write_osbuild_tar

    started = time.monotonic()
    print(f"writing {tar} (osbuild layout of {repo}) ...", flush=True)
    partial = tar.with_suffix(".tar.partial")
    write_osbuild_tar(repo, partial, ref)
    os.replace(partial, tar)
    stamp.write_text(_stamp(dest))
    print(f"  {tar.stat().st_size / MB:.1f} MB in {time.monotonic() - started:.1f} s")
    return tar


# ---------------------------------------------------------------------- disk sampling


class FreeSpaceSampler:
    """Peak drop of the free space of a file system while a command runs.

    ext4 allocates blocks for written data lazily (at writeback), so the page cache is
    flushed (``sync``) before the first sample, to leave out earlier runs, and again
    before the last, to count this run's writes; neither flush is inside the timing."""

    def __init__(self, path: Path, interval: float = 0.05) -> None:
        self.path = path
        self.interval = interval
        os.sync()
        self.start_free = self._free()
        self.min_free = self.start_free
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="disk-sampler", daemon=True)

    def _free(self) -> int:
        st = os.statvfs(self.path)
        return st.f_bavail * st.f_frsize

    def _run(self) -> None:
        while not self._stop.is_set():
            self.min_free = min(self.min_free, self._free())
            self._stop.wait(self.interval)

    def __enter__(self) -> FreeSpaceSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        os.sync()
        self.min_free = min(self.min_free, self._free())

    @property
    def peak_used(self) -> int:
        return max(0, self.start_free - self.min_free)


# ------------------------------------------------------------------------------ a run


class TreePssSampler(bench_fsck.TreeRssSampler):
    """Like :class:`bench_fsck.TreeRssSampler`, summing PSS instead of RSS: forked workers
    share the parent's pages copy-on-write, which a sum of RSS counts once per process."""

    def _rss(self, pid: int) -> int:
        try:
            with open(f"/proc/{pid}/smaps_rollup", "rb") as f:
                for line in f:
                    if line.startswith(b"Pss:"):
                        return int(line.split()[1]) * 1024
        except (OSError, IndexError, ValueError):
            pass
        return 0  # exited (or a zombie) between scan and read


def measure(tool: str, cmd: Sequence[str]) -> tuple[bench_fsck.Run, int]:
    """:func:`bench_fsck.measure` plus the peak summed PSS of the process tree."""
    with tempfile.TemporaryFile() as out:
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=out)
        with bench_fsck.TreeRssSampler(proc.pid) as rss, TreePssSampler(proc.pid) as pss:
            _pid, status, usage = os.wait4(proc.pid, 0)
            seconds = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        tail = out.read()[-2000:].decode(errors="replace")
    run = bench_fsck.Run(
        tool=tool,
        seconds=seconds,
        maxrss_bytes=usage.ru_maxrss * 1024,
        tree_rss_bytes=rss.peak_bytes,
        processes=rss.peak_processes,
        returncode=proc.returncode,
        output_tail=tail,
    )
    return run, pss.peak_bytes


@dataclass
class Step:
    cmd: list[str]
    run: bench_fsck.Run
    tree_pss_bytes: int = 0


@dataclass
class Result:
    """One measured execution of A or B (B has three steps)."""

    tool: str
    steps: list[Step] = field(default_factory=list)
    disk_peak_bytes: int = 0
    repo_bytes: int = 0
    objects: int = 0
    head: str = ""

    @property
    def seconds(self) -> float:
        return sum(s.run.seconds for s in self.steps)

    @property
    def ok(self) -> bool:
        return all(s.run.returncode == 0 for s in self.steps)

    @property
    def peak_bytes(self) -> int:
        return max((s.run.peak_bytes for s in self.steps), default=0)


def _step(result: Result, name: str, cmd: list[str]) -> bool:
    run, pss = measure(name, cmd)
    result.steps.append(Step(cmd, run, pss))
    if run.returncode != 0:
        print(f"\n!! {' '.join(cmd)} exited with status {run.returncode}; output tail:")
        print("   " + run.output_tail.strip().replace("\n", "\n   "))
    return run.returncode == 0


def _objects_and_bytes(repo: Path) -> tuple[int, int]:
    count = size = 0
    for dirpath, _dirs, names in os.walk(repo / "objects"):
        for name in names:
            count += 1
            size += os.lstat(os.path.join(dirpath, name)).st_blocks * 512
    return count, size


def _finish(result: Result, repo: Path, ostree: str, ref: str, inspect: bool) -> None:
    if not result.ok:
        return
    proc = subprocess.run(
        [ostree, "rev-parse", f"--repo={repo}", ref], capture_output=True, text=True, check=False
    )
    result.head = proc.stdout.strip()
    if inspect:
        result.objects, result.repo_bytes = _objects_and_bytes(repo)


def run_import(  # noqa: PLR0917
    work: Path, pyostree: str, ostree: str, tar: Path, ref: str, inspect: bool
) -> Result:
    result = Result("pyostree import")
    repo = work / "a-repo"
    subprocess.run([ostree, "init", "--mode=archive", f"--repo={repo}"], check=True)
    with FreeSpaceSampler(work) as disk:
        _step(result, "pyostree", [pyostree, "import", "--repo", str(repo), str(tar)])
    result.disk_peak_bytes = disk.peak_used
    _finish(result, repo, ostree, ref, inspect)
    return result


def run_pull_local(work: Path, ostree: str, tar: Path, ref: str, inspect: bool) -> Result:
    result = Result("tar -x + pull-local")
    extracted, repo = work / "b-extract", work / "b-repo"
    extracted.mkdir()
    pull = [ostree, "pull-local", "--untrusted", "--depth=-1", f"--repo={repo}"]
    with FreeSpaceSampler(work) as disk:
        _ = (
            _step(result, "tar", ["tar", "-xf", str(tar), "-C", str(extracted)])
            and _step(result, "ostree", [ostree, "init", "--mode=archive", f"--repo={repo}"])
            and _step(result, "ostree", [*pull, str(extracted / "repo"), ref])
        )
    result.disk_peak_bytes = disk.peak_used
    _finish(result, repo, ostree, ref, inspect)
    return result


def _fresh(work: Path, name: str) -> Path:
    path = work / name
    path.mkdir()
    return path


# ---------------------------------------------------------------------------- report


def _mb(n: int) -> str:
    return f"{n / MB:.1f} MB"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="pyostree import vs tar -x + ostree pull-local --untrusted"
    )
    parser.add_argument("--runs", type=int, default=3, help="counted runs of each (default 3)")
    parser.add_argument("--warmup", type=int, default=1, help="uncounted runs first (default 1)")
    parser.add_argument(
        "--large", action="store_true", help="use the >100k-object corpus; check peak RSS"
    )
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
        help="seconds to wait after a sync before the first run (default 300; see main())",
    )
    parser.add_argument("--ostree", default=shutil.which("ostree") or "/usr/bin/ostree")
    parser.add_argument("--pyostree", type=Path, help="pyostree executable (default: the venv's)")
    parser.add_argument("--json", type=Path, help="also write the results here as JSON")
    args = parser.parse_args(argv)
    if args.runs < 1:
        parser.error("--runs must be at least 1")

    pyostree = args.pyostree or bench_fsck.find_pyostree()
    if pyostree is None or shutil.which("tar") is None or not Path(args.ostree).exists():
        print("need pyostree (pip install -e . into .venv), ostree and tar", file=sys.stderr)
        return 2

    variant = "large" if args.large else "base"
    dest = args.corpus or DEFAULT_CORPUS_ROOT / variant
    if args.corpus and corpus.is_complete(dest):
        repo = dest / "repo"
        print(f"corpus: {dest} (as found)")
    else:
        print(f"corpus: {dest} ({variant}; building it if not cached, which takes minutes)")
        repo = corpus.build_large_corpus(dest) if args.large else corpus.build_corpus(dest)
    info = corpus.load_info(dest)
    ref = str(info.get("branch", corpus.BRANCH))
    tar = commit_tar(dest, repo, ref)
    stats = corpus.repo_stats(repo)
    detail = ", ".join(f"{k} {v}" for k, v in stats.items() if k not in ("objects", "disk_bytes"))
    print(f"ref:     {ref}")
    print(f"archive: {tar} ({_mb(tar.stat().st_size)}); {stats['objects']} objects ({detail})")
    load_before = os.getloadavg()[0]
    print(
        f"machine: {os.cpu_count()} CPUs, load average {load_before:.2f}; "
        f"runs: {args.warmup} warm-up + {args.runs} counted of each, alternating\n"
    )

    # On ext4 without a journal (this VM) the inode allocator skips, one by one, inodes
    # freed in the last 60 s, or 300 s while their inode table block is dirty, which the
    # runs' own allocations make it.  An earlier mass deletion (the end of the previous
    # invocation, a test run) thus slows file creation in the first runs (measured on the
    # large corpus after a 60 s wait: 62 s and 56 s, then 20 s and 21 s for the same
    # import): sync, then let those deletions age.
    corpus.settle(args.settle)
    # SIGTERM (timeout, kill) unwinds like Ctrl-C, so the runs' directories are removed.
    signal.signal(signal.SIGTERM, lambda _sig, _frame: sys.exit(143))
    work = Path(tempfile.mkdtemp(prefix="bench-import-", dir=dest))
    counted: dict[str, list[Result]] = {"A": [], "B": []}
    everything: list[Result] = []
    print(f"{'run':<8}{'A import':>12}{'B tar -x':>12}{'B init':>10}{'B pull':>10}{'B total':>12}")
    print("-" * 64)
    try:
        for i in range(args.warmup + args.runs):
            label = "warm-up" if i < args.warmup else str(i - args.warmup + 1)
            inspect = i == args.warmup  # compare the two results once, on the first counted run
            # Nothing is deleted until the end: on ext4 without a journal (this VM) the
            # inode allocator skips inodes freed in the last minutes one by one, so
            # deleting ~100k files between runs slows the next run's file creation
            # (measured: 17 s, 35 s, 54 s for the same import).
            a = run_import(_fresh(work, f"{i}-a"), str(pyostree), args.ostree, tar, ref, inspect)
            b = run_pull_local(_fresh(work, f"{i}-b"), args.ostree, tar, ref, inspect)
            everything += [a, b]
            if i >= args.warmup:
                counted["A"].append(a)
                counted["B"].append(b)
            cells = [f"{a.seconds:>10.2f} s" if a.ok else f"{'FAILED':>12}"]
            if b.ok:
                cells += [
                    f"{s.run.seconds:>{w}.2f} s" for s, w in zip(b.steps, (10, 8, 8), strict=True)
                ]
                cells.append(f"{b.seconds:>10.2f} s")
            else:
                cells.append(f"{'FAILED':>44}")
            print(f"{label:<8}" + "".join(cells), flush=True)
            if inspect and a.ok and b.ok:
                same = (a.head, a.objects) == (b.head, b.objects)
                print(
                    f"{'':8}results: A {a.objects} objects, head {a.head[:12]}; "
                    f"B {b.objects} objects, head {b.head[:12]}" + ("" if same else "  MISMATCH")
                )
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise

    failed = [r for r in everything if not r.ok]
    first = counted["A"][0], counted["B"][0]
    mismatch = all(r.ok for r in first) and (first[0].head, first[0].objects) != (
        first[1].head,
        first[1].objects,
    )
    med = {k: statistics.median(r.seconds for r in v) for k, v in counted.items()}
    print("-" * 64)
    print(f"{'median':<8}{med['A']:>10.2f} s{'':>32}{med['B']:>10.2f} s")
    ratio = med["A"] / med["B"] if med["B"] else float("nan")
    caveat = " -- NOT VALID: a command failed" if failed else ""
    caveat += " -- NOT VALID: results differ" if mismatch else ""
    print(f"\nimport ratio A/B = {ratio:.2f} (target <= {RATIO_TARGET}){caveat}")
    peak_a = max(r.peak_bytes for r in counted["A"])
    maxrss_a = max(max(s.run.maxrss_bytes for s in r.steps) for r in counted["A"])
    tree_a = max(max(s.run.tree_rss_bytes for s in r.steps) for r in counted["A"])
    procs_a = max(max(s.run.processes for s in r.steps) for r in counted["A"])
    pss_a = max(max(s.tree_pss_bytes for s in r.steps) for r in counted["A"])
    verdict = ("ok" if peak_a <= RSS_TARGET_BYTES else "OVER") if args.large else "n/a: not --large"
    print(
        f"peak RSS A = {_mb(peak_a)} (maxrss {_mb(maxrss_a)}, tree RSS {_mb(tree_a)} over "
        f"{procs_a} processes; target <= {_mb(RSS_TARGET_BYTES)}: {verdict})"
    )
    print(f"peak PSS A = {_mb(pss_a)} (tree PSS: pages shared by the forked workers counted once)")
    print(f"peak RSS B = {_mb(max(r.peak_bytes for r in counted['B']))} (largest step)")
    disk_a = max(r.disk_peak_bytes for r in counted["A"])
    disk_b = max(r.disk_peak_bytes for r in counted["B"])
    print(
        f"extra disk at peak: A {_mb(disk_a)}, B {_mb(disk_b)}; the imported objects take "
        f"{_mb(first[0].repo_bytes)} (statvfs samples: other writers on the file system count)"
    )
    load = max(load_before, os.getloadavg()[0])
    if load > bench_fsck.BUSY_LOAD:
        print(f"warning: load average reached {load:.2f} -- other work on the machine skews this")

    if args.json:
        out = {
            "corpus": str(dest),
            "variant": variant,
            "archive": str(tar),
            "archive_bytes": tar.stat().st_size,
            "objects": stats,
            "medians": med,
            "ratio": ratio,
            "peak_rss_import": peak_a,
            "peak_pss_import": pss_a,
            "runs": [
                {
                    "tool": r.tool,
                    "seconds": r.seconds,
                    "disk_peak_bytes": r.disk_peak_bytes,
                    "steps": [
                        {"cmd": s.cmd, "tree_pss_bytes": s.tree_pss_bytes, **asdict(s.run)}
                        for s in r.steps
                    ],
                }
                for r in everything
            ],
        }
        args.json.write_text(json.dumps(out, indent=2) + "\n")
    # After the report: deleting ~100k-1M files takes minutes on this VM.
    print(f"\nremoving {work} ...", flush=True)
    shutil.rmtree(work, ignore_errors=True)
    return 1 if failed or mismatch else 0


if __name__ == "__main__":
    sys.exit(main())
