"""Macro benchmark: ``pyostree fsck`` against ``ostree fsck`` on the same repository.

Why it is built this way:

* Both tools verify the *same* archive repository, built once by :mod:`corpus` with
  the real ``ostree`` CLI and cached under ``benchmarks/.corpus/``.
* Runs alternate (ostree, pyostree, ostree, ...) so that slow drift of a shared
  machine (other tenants, thermal state) hits both tools alike, and one uncounted
  warm-up of each comes first so both read from a warm page cache: we compare CPU
  work, not disk luck.
* Wall time is ``time.perf_counter`` around spawn-to-reap of the child.  The median
  is reported because it ignores the odd run disturbed by a neighbour.
* Peak memory comes from ``os.wait4``: the kernel's ``ru_maxrss`` of exactly that
  child (``getrusage(RUSAGE_CHILDREN)`` would mix in every earlier child).  Linux
  folds the peaks of the child's own reaped children in as a *maximum*, not a sum,
  so a tool that fans out to worker processes would look smaller than it is; a
  sampler therefore also records the peak *sum* of RSS over the child's process
  tree (every 50 ms), and the RSS verdict uses the larger of the two.

The exit status is 0 whatever the ratio (this measures, it does not gate), 1 if
either fsck failed on any run, 2 if a tool is missing.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

# A sibling module: the script's directory is sys.path[0] when run as a script.
import corpus

HERE = Path(__file__).resolve().parent
DEFAULT_CORPUS_ROOT = HERE / ".corpus"
RATIO_TARGET = 0.5
RSS_TARGET_BYTES = 300 * 1000 * 1000  # "300 MB", decimal -- the stricter reading
MB = 1000 * 1000
#: 1-minute load average above which the results get a "machine busy" warning.  This
#: benchmark itself keeps it near 1 (ostree is single-threaded) or 2 (a 2-thread tool).
BUSY_LOAD = (os.cpu_count() or 1) + 0.5


# ------------------------------------------------------------------- measuring a run


class TreeRssSampler:
    """Tracks the peak of the summed RSS of a process and all its descendants.

    ``/proc/PID/task/*/children`` is not available on every kernel (it is not here),
    so descendants are found by scanning ``/proc/*/stat`` for parent pids.  That scan
    costs ~1 ms, so it runs every ``rescan`` seconds while the cheap per-pid
    ``statm`` reads run every ``interval``; worker pools live for the whole run, so
    the slower rescan does not miss them.
    """

    def __init__(self, root_pid: int, interval: float = 0.05, rescan: float = 0.5) -> None:
        self.root_pid = root_pid
        self.interval = interval
        self.rescan = rescan
        self.peak_bytes = 0
        self.peak_processes = 0
        self._page = os.sysconf("SC_PAGE_SIZE")
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)

    def __enter__(self) -> TreeRssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _descendants(self) -> list[int]:
        parents: dict[int, list[int]] = {}
        for entry in os.scandir("/proc"):
            if not entry.name.isdigit():
                continue
            try:
                with open(f"/proc/{entry.name}/stat", "rb") as f:
                    stat = f.read()
            except OSError:
                continue
            # Field 4 (ppid) follows the parenthesised command name, which may hold spaces.
            ppid = int(stat[stat.rindex(b")") + 2 :].split()[1])
            parents.setdefault(ppid, []).append(int(entry.name))
        found, todo = [], [self.root_pid]
        while todo:
            pid = todo.pop()
            found.append(pid)
            todo.extend(parents.get(pid, ()))
        return found

    def _rss(self, pid: int) -> int:
        try:
            with open(f"/proc/{pid}/statm", "rb") as f:
                return int(f.read().split()[1]) * self._page
        except (OSError, IndexError, ValueError):
            return 0  # exited (or a zombie) between scan and read

    def _run(self) -> None:
        pids: list[int] = [self.root_pid]
        next_scan = 0.0
        while not self._stop.is_set():
            now = time.monotonic()
            if now >= next_scan:
                pids = self._descendants()
                next_scan = now + self.rescan
            total = sum(self._rss(pid) for pid in pids)
            if total > self.peak_bytes:
                self.peak_bytes = total
                self.peak_processes = len(pids)
            self._stop.wait(self.interval)


@dataclass
class Run:
    """One measured execution of one tool."""

    tool: str
    seconds: float
    maxrss_bytes: int  # kernel ru_maxrss from wait4 (max over the child and its children)
    tree_rss_bytes: int  # sampled peak of the summed RSS of the process tree
    processes: int  # processes in the tree at the sampled peak
    returncode: int
    output_tail: str

    @property
    def peak_bytes(self) -> int:
        return max(self.maxrss_bytes, self.tree_rss_bytes)


def measure(tool: str, cmd: Sequence[str]) -> Run:
    """Run ``cmd`` once; its output goes to a temp file so pipes cannot stall it."""
    with tempfile.TemporaryFile() as out:
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=out)
        with TreeRssSampler(proc.pid) as sampler:
            _pid, status, usage = os.wait4(proc.pid, 0)
            seconds = time.perf_counter() - start  # before the sampler's join
        # Tell Popen the child is reaped, or it would try to wait for it again.
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        tail = out.read()[-2000:].decode(errors="replace")
    return Run(
        tool=tool,
        seconds=seconds,
        maxrss_bytes=usage.ru_maxrss * 1024,
        tree_rss_bytes=sampler.peak_bytes,
        processes=sampler.peak_processes,
        returncode=proc.returncode,
        output_tail=tail,
    )


# ------------------------------------------------------------------------ the report


@dataclass
class ToolSummary:
    """Per-tool aggregate over the counted runs."""

    tool: str
    cmd: list[str]
    times: list[float] = field(default_factory=list)
    median: float = 0.0
    minimum: float = 0.0
    maxrss_bytes: int = 0
    tree_rss_bytes: int = 0
    max_processes: int = 0
    failures: int = 0

    @classmethod
    def of(cls, tool: str, cmd: list[str], runs: list[Run]) -> ToolSummary:
        times = [r.seconds for r in runs]
        return cls(
            tool=tool,
            cmd=cmd,
            times=times,
            median=statistics.median(times),
            minimum=min(times),
            maxrss_bytes=max(r.maxrss_bytes for r in runs),
            tree_rss_bytes=max(r.tree_rss_bytes for r in runs),
            max_processes=max(r.processes for r in runs),
            failures=sum(r.returncode != 0 for r in runs),
        )

    @property
    def peak_bytes(self) -> int:
        return max(self.maxrss_bytes, self.tree_rss_bytes)


def _mb(n: int) -> str:
    return f"{n / MB:.1f} MB"


def find_pyostree() -> Path | None:
    """The venv's console script: beside ``sys.executable`` (not resolved: a venv's
    ``python`` is a symlink out of the venv), else the repository's ``.venv``."""
    for cand in (
        Path(sys.executable).parent / "pyostree",
        HERE.parent / ".venv" / "bin" / "pyostree",
    ):
        if cand.is_file() and os.access(cand, os.X_OK):
            return cand
    return None


def _print_failure(run: Run) -> None:
    print(f"\n!! {run.tool} fsck exited with status {run.returncode}; output tail:")
    print("   " + run.output_tail.strip().replace("\n", "\n   "))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="pyostree fsck vs ostree fsck macro benchmark")
    parser.add_argument("--runs", type=int, default=5, help="counted runs per tool (default 5)")
    parser.add_argument(
        "--large", action="store_true", help="use the >100k-object corpus; check peak RSS"
    )
    parser.add_argument(
        "--corpus",
        type=Path,
        help="corpus directory (holds repo/): used as is if complete, else built there;"
        " default benchmarks/.corpus/{base,large}",
    )
    parser.add_argument("--ostree", default=shutil.which("ostree") or "/usr/bin/ostree")
    parser.add_argument("--pyostree", type=Path, help="pyostree executable (default: the venv's)")
    parser.add_argument("--ostree-only", action="store_true", help="measure only ostree (baseline)")
    parser.add_argument("--json", type=Path, help="also write the results here as JSON")
    args = parser.parse_args(argv)
    if args.runs < 1:
        parser.error("--runs must be at least 1")

    pyostree = args.pyostree or find_pyostree()
    if not args.ostree_only and pyostree is None:
        print(
            "pyostree not found: pip install -e . into .venv, or pass --pyostree PATH "
            "(--ostree-only measures the baseline alone)",
            file=sys.stderr,
        )
        return 2

    variant = "large" if args.large else "base"
    dest = args.corpus or DEFAULT_CORPUS_ROOT / variant
    if args.corpus and corpus.is_complete(dest):
        # An explicit, finished corpus is used as is, whatever parameters built it
        # (building ours there instead would delete it).
        repo = dest / "repo"
        print(f"corpus: {dest} (as found)")
    else:
        print(f"corpus: {dest} ({variant}; building it if not cached, which takes minutes)")
        repo = corpus.build_large_corpus(dest) if args.large else corpus.build_corpus(dest)
    tree = corpus.load_tree_stats(dest)
    # Counted afresh (not taken from corpus.json) so that --corpus may point anywhere.
    objects = corpus.repo_stats(repo)

    tools: dict[str, list[str]] = {"ostree": [args.ostree, "fsck", f"--repo={repo}"]}
    if not args.ostree_only:
        tools["pyostree"] = [str(pyostree), "fsck", "--repo", str(repo)]

    print(f"repo:   {repo}")
    print(
        f"tree:   {tree.regular_files} files, {tree.symlinks} symlinks, "
        f"{tree.directories} dirs, {_mb(tree.total_bytes)} in the head commit, "
        f"{len(tree.commits)} commit(s)"
    )
    detail = ", ".join(f"{k} {v}" for k, v in objects.items() if k not in ("objects", "disk_bytes"))
    print(f"objects: {objects['objects']} ({detail}); repo on disk {_mb(objects['disk_bytes'])}")
    load_before = os.getloadavg()[0]
    print(
        f"machine: {os.cpu_count()} CPUs, load average {load_before:.2f}; "
        f"runs: 1 warm-up + {args.runs} counted per tool\n"
    )

    all_runs: list[Run] = []
    counted: dict[str, list[Run]] = {name: [] for name in tools}
    width = 8 + 16 * len(tools)
    print(f"{'run':<8}" + "".join(f"{name + ' fsck':>16}" for name in tools))
    print("-" * width)
    for i in range(args.runs + 1):
        label = "warm-up" if i == 0 else str(i)
        cells = []
        for name, cmd in tools.items():
            run = measure(name, cmd)
            all_runs.append(run)
            if i:
                counted[name].append(run)
            cells.append(f"{run.seconds:>14.3f} s" if run.returncode == 0 else f"{'FAILED':>16}")
        print(f"{label:<8}" + "".join(cells), flush=True)

    summaries = {name: ToolSummary.of(name, cmd, counted[name]) for name, cmd in tools.items()}
    print("-" * width)
    rows: list[tuple[str, Callable[[ToolSummary], str]]] = [
        ("median", lambda s: f"{s.median:>14.3f} s"),
        ("min", lambda s: f"{s.minimum:>14.3f} s"),
        ("maxrss", lambda s: f"{_mb(s.maxrss_bytes):>16}"),
        ("tree RSS", lambda s: f"{_mb(s.tree_rss_bytes):>16}"),
        ("procs", lambda s: f"{s.max_processes:>16}"),
    ]
    for label, cell in rows:
        print(f"{label:<8}" + "".join(cell(s) for s in summaries.values()))
    print(
        "\nmaxrss = kernel ru_maxrss via os.wait4 (largest single process); "
        "tree RSS = sampled peak sum over the process tree"
    )
    # Other work on the machine slows a multi-threaded tool more than a single-threaded
    # one, so a busy machine skews the ratio; say so rather than silently report it.
    load = max(load_before, os.getloadavg()[0])
    if load > BUSY_LOAD:
        print(f"warning: load average reached {load:.2f} -- other work on the machine skews this")

    failed = [r for r in all_runs if r.returncode != 0]
    caveat = " -- NOT VALID: an fsck failed, see below" if failed else ""
    ratio: float | None = None
    if "pyostree" in summaries:
        ratio = summaries["pyostree"].median / summaries["ostree"].median
        print(f"fsck ratio pyostree/ostree = {ratio:.2f} (target <= {RATIO_TARGET}){caveat}")
        if args.large:
            peak = summaries["pyostree"].peak_bytes
            verdict = "ok" if peak <= RSS_TARGET_BYTES else "OVER"
            print(
                f"peak RSS pyostree = {_mb(peak)} (target <= {_mb(RSS_TARGET_BYTES)}: {verdict});"
                f" ostree {_mb(summaries['ostree'].peak_bytes)}"
            )
    else:
        median = summaries["ostree"].median
        print(f"ostree fsck median = {median:.3f} s (pyostree not measured){caveat}")

    for run in {r.tool: r for r in failed}.values():
        _print_failure(run)

    if args.json:
        result = {
            "corpus": str(dest),
            "variant": variant,
            "objects": objects,
            "tree": asdict(tree),
            "summaries": {k: asdict(v) for k, v in summaries.items()},
            "runs": [asdict(r) for r in all_runs],
            "ratio": ratio,
        }
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
