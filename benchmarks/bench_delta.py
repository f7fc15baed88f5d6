"""Macro benchmark: ``pyostree static-delta generate|apply-offline`` against ``ostree``'s.

The pair (:func:`corpus.build_delta_pair`, cached in ``benchmarks/.corpus/delta``): FROM
is the base corpus's commit; TO is an update of it with about 1,200 files modified,
300 removed and 300 added (issue 7).

What is compared, in every run (fresh directories, nothing deleted until the end):

* **generate**: ``pyostree static-delta generate`` and ``ostree static-delta generate``
  FROM→TO, each into its own hard-linked copy (``cp -al``, not timed) of the pair's
  archive repository, with the same, default, options spelled out: bsdiff and rollsum on,
  xz, ``--max-chunk-size 32``, ``--min-fallback-size 4``, ``--max-bsdiff-size 128``.
  Time ratio ``median(ours) / median(ostree)`` (target <= 1.0); size ratio of the two
  deltas, superblock plus parts (target <= 1.05).
* **apply**: ``pyostree static-delta apply-offline`` of our delta into an archive
  repository holding FROM, and ``ostree static-delta apply-offline`` of ostree's delta
  into a ``bare-user`` repository holding FROM (``--ostree-mode``; ``bare-user-only``
  refuses the corpus's setuid files with "invalid mode 0104755").  Both targets are
  filled with ``ostree pull-local`` beforehand, not timed.  The ratio is reported.

On the first counted run (every run with ``--check-all``) both targets are checked: the
TO commit must be there, not marked partial, and ``ostree fsck`` must pass.  Peak RSS of
ours is measured as :func:`bench_fsck.measure` does.  ``--profile FILE`` then runs our
generator once more under cProfile and prints where the time goes.

Exit status 0 whatever the figures; 1 if a command failed or a check did not pass; 2 if a
tool is missing.
"""

from __future__ import annotations

import argparse
import json
import os
import pstats
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

# Sibling modules: the script's directory is sys.path[0] when run as a script.
import bench_fsck
import corpus

HERE = Path(__file__).resolve().parent
DEFAULT_CORPUS_ROOT = HERE / ".corpus"
TIME_TARGET = 1.0
SIZE_TARGET = 1.05
MB = bench_fsck.MB
#: The options both generators get (the defaults of both, spelled out).
MIN_FALLBACK_MB = 4
MAX_CHUNK_MB = 32
MAX_BSDIFF_MB = 128


@dataclass
class Side:
    """One tool's generate + apply in one run."""

    tool: str
    generate: bench_fsck.Run | None = None
    apply: bench_fsck.Run | None = None
    delta_bytes: int = 0
    delta_files: int = 0
    checks: dict[str, object] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        runs = (self.generate, self.apply)
        return all(r is not None and r.returncode == 0 for r in runs)


def _run(tool: str, cmd: list[str]) -> bench_fsck.Run:
    run = bench_fsck.measure(tool, cmd)
    if run.returncode != 0:
        print(f"\n!! {' '.join(cmd)} exited with status {run.returncode}; output tail:")
        print("   " + run.output_tail.strip().replace("\n", "\n   "))
    return run


def _quiet(cmd: list[str]) -> None:
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def _delta_dir(repo: Path) -> tuple[Path, int, int]:
    """The one delta directory under ``repo/deltas``, its total size and file count."""
    supers = sorted((repo / "deltas").rglob("superblock"))
    if len(supers) != 1:
        raise RuntimeError(f"expected one delta in {repo}, found {len(supers)}")
    directory = supers[0].parent
    files = [p for p in directory.iterdir() if p.is_file()]
    return directory, sum(p.stat().st_size for p in files), len(files)


def _show(ostree: str, repo: Path, name: str) -> dict[str, str]:
    out = subprocess.run(
        [ostree, "static-delta", "show", f"--repo={repo}", name],
        capture_output=True,
        text=True,
        check=False,
    ).stdout
    keys = ("Number of parts", "Number of fallback entries", "Total Part Size", "Total Size")
    found: dict[str, str] = {}
    for line in out.splitlines():
        key, _, value = line.partition(":")
        if key in keys:
            found[key] = value.strip().split(" (")[0]
    return found


def _check(ostree: str, repo: Path, to_commit: str) -> dict[str, object]:
    """TO present and complete, and ``ostree fsck`` of the whole repository."""
    show = subprocess.run(
        [ostree, "show", f"--repo={repo}", to_commit], capture_output=True, check=False
    )
    fsck = subprocess.run(
        [ostree, "fsck", f"--repo={repo}"], capture_output=True, text=True, check=False
    )
    result: dict[str, object] = {
        "to_present": show.returncode == 0,
        "partial": (repo / "state" / f"{to_commit}.commitpartial").exists(),
        "fsck_ok": fsck.returncode == 0,
    }
    if fsck.returncode != 0:
        result["fsck_tail"] = (fsck.stdout + fsck.stderr)[-1000:]
    result["ok"] = result["to_present"] and not result["partial"] and result["fsck_ok"]
    return result


def _target(ostree: str, work: Path, name: str, *, mode: str, source: Path, commit: str) -> Path:
    repo = work / name
    _quiet([ostree, "init", f"--mode={mode}", f"--repo={repo}"])
    _quiet([ostree, "pull-local", f"--repo={repo}", str(source), commit])
    return repo


def one_run(
    work: Path,
    repo: Path,
    pyostree: str,
    ostree: str,
    commits: tuple[str, str],
    *,
    check: bool,
    ostree_mode: str,
) -> tuple[Side, Side]:
    from_c, to_c = commits
    ours, theirs = Side("pyostree"), Side("ostree")
    our_repo, their_repo = work / "ours-gen", work / "ostree-gen"
    for copy in (our_repo, their_repo):
        subprocess.run(["cp", "-al", str(repo), str(copy)], check=True)

    ours.generate = _run(
        "pyostree",
        [
            pyostree,
            "static-delta",
            "generate",
            "--repo",
            str(our_repo),
            "--from",
            from_c,
            "--to",
            to_c,
            "--compression",
            "xz",
            "--min-fallback-size",
            str(MIN_FALLBACK_MB),
            "--max-chunk-size",
            str(MAX_CHUNK_MB),
            "--max-bsdiff-size",
            str(MAX_BSDIFF_MB),
        ],
    )
    theirs.generate = _run(
        "ostree",
        [
            ostree,
            "static-delta",
            "generate",
            f"--repo={their_repo}",
            f"--from={from_c}",
            f"--to={to_c}",
            f"--min-fallback-size={MIN_FALLBACK_MB}",
            f"--max-chunk-size={MAX_CHUNK_MB}",
            f"--max-bsdiff-size={MAX_BSDIFF_MB}",
        ],
    )
    if not (ours.generate.returncode == 0 and theirs.generate.returncode == 0):
        return ours, theirs
    our_delta, ours.delta_bytes, ours.delta_files = _delta_dir(our_repo)
    their_delta, theirs.delta_bytes, theirs.delta_files = _delta_dir(their_repo)

    our_target = _target(ostree, work, "ours-apply", mode="archive", source=repo, commit=from_c)
    their_target = _target(
        ostree, work, "ostree-apply", mode=ostree_mode, source=repo, commit=from_c
    )
    ours.apply = _run(
        "pyostree",
        [pyostree, "static-delta", "apply-offline", "--repo", str(our_target), str(our_delta)],
    )
    theirs.apply = _run(
        "ostree",
        [ostree, "static-delta", "apply-offline", f"--repo={their_target}", str(their_delta)],
    )
    if check:
        name = f"{from_c}-{to_c}"
        ours.checks = {"show": _show(ostree, our_repo, name)}
        theirs.checks = {"show": _show(ostree, their_repo, name)}
        if ours.apply.returncode == 0:
            ours.checks.update(_check(ostree, our_target, to_c))
        if theirs.apply.returncode == 0:
            theirs.checks.update(_check(ostree, their_target, to_c))
    return ours, theirs


def profile_generate(
    work: Path, repo: Path, pyostree: str, commits: tuple[str, str], *, out: Path, top: int
) -> None:
    """Our generator once more under cProfile, into another copy; print the top entries."""
    copy = work / "profile-gen"
    subprocess.run(["cp", "-al", str(repo), str(copy)], check=True)
    cmd = [sys.executable, "-m", "cProfile", "-o", str(out), pyostree, "static-delta"]
    cmd += ["generate", "--repo", str(copy), "--from", commits[0], "--to", commits[1]]
    started = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    print(
        f"\nprofile of our generate ({time.perf_counter() - started:.1f} s under cProfile): {out}"
    )
    stats = pstats.Stats(str(out))
    stats.sort_stats("tottime").print_stats(top)
    stats.sort_stats("cumulative").print_stats(top)


# ---------------------------------------------------------------------------- report


def _mb(n: float) -> str:
    return f"{n / MB:.2f} MB"


def _ratio(a: float, b: float) -> float:
    return a / b if b else float("nan")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="pyostree static-delta generate/apply-offline vs ostree's"
    )
    parser.add_argument("--runs", type=int, default=3, help="counted runs (default 3)")
    parser.add_argument("--warmup", type=int, default=1, help="uncounted runs first (default 1)")
    parser.add_argument(
        "--corpus", type=Path, help="pair directory (default benchmarks/.corpus/delta)"
    )
    parser.add_argument(
        "--base", type=Path, help="base corpus directory (default benchmarks/.corpus/base)"
    )
    parser.add_argument("--files", type=int, default=corpus.BASE_FILES, help="base corpus size")
    parser.add_argument("--modified", type=int, default=1200)
    parser.add_argument("--removed", type=int, default=300)
    parser.add_argument("--added", type=int, default=300)
    parser.add_argument(
        "--settle",
        type=float,
        default=60,
        help="seconds to wait after a sync before the first run (default 60; see README)",
    )
    parser.add_argument(
        "--ostree-mode",
        default="bare-user",
        help="mode of the repository ostree applies into (default bare-user: bare-user-only"
        " refuses the corpus's setuid files; ostree does not apply into archive)",
    )
    parser.add_argument("--check-all", action="store_true", help="check every run's results")
    parser.add_argument("--profile", type=Path, help="then profile our generate into FILE")
    parser.add_argument("--top", type=int, default=30, help="profile entries to print")
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    parser.add_argument("--ostree", default=shutil.which("ostree") or "/usr/bin/ostree")
    parser.add_argument("--pyostree", type=Path, help="pyostree executable (default: the venv's)")
    parser.add_argument("--json", type=Path, help="also write the results here as JSON")
    args = parser.parse_args(argv)
    if args.runs < 1:
        parser.error("--runs must be at least 1")

    pyostree = args.pyostree or bench_fsck.find_pyostree()
    if pyostree is None or not Path(args.ostree).exists():
        print("need pyostree (pip install -e . into .venv) and ostree", file=sys.stderr)
        return 2

    base = args.base or DEFAULT_CORPUS_ROOT / "base"
    dest = args.corpus or DEFAULT_CORPUS_ROOT / "delta"
    params = corpus.DeltaPairParams(
        base=corpus.CorpusParams(files=args.files),
        modified=args.modified,
        removed=args.removed,
        added=args.added,
    )
    print(f"pair: {dest} from {base} (built if not cached, which takes minutes)", flush=True)
    repo = corpus.build_delta_pair(dest, base, params)
    info = corpus.load_info(dest)
    from_c, to_c = (str(c) for c in info["commits"])  # type: ignore[attr-defined]
    edits = info["edits"]
    print(f"FROM {from_c}\nTO   {to_c}")
    print(f"edits: {json.dumps(edits)}")
    load_before = os.getloadavg()[0]
    print(
        f"machine: {os.cpu_count()} CPUs, load average {load_before:.2f}; "
        f"runs: {args.warmup} warm-up + {args.runs} counted, alternating\n"
    )
    corpus.settle(args.settle)
    signal.signal(signal.SIGTERM, lambda _sig, _frame: sys.exit(143))
    work = Path(tempfile.mkdtemp(prefix="bench-delta-", dir=dest))
    counted: list[tuple[Side, Side]] = []
    failed = False
    checks_ok = True
    head = f"{'run':<8}{'gen ours':>10}{'gen ostree':>12}{'size ours':>12}{'size ostree':>13}"
    head += f"{'apply ours':>12}{'apply ostree':>14}{'RSS gen/apply ours':>22}"
    print(head)
    print("-" * len(head))
    try:
        for i in range(args.warmup + args.runs):
            label = "warm-up" if i < args.warmup else str(i - args.warmup + 1)
            check = args.check_all or i == args.warmup
            run_dir = work / str(i)
            run_dir.mkdir()
            ours, theirs = one_run(
                run_dir,
                repo,
                str(pyostree),
                args.ostree,
                (from_c, to_c),
                check=check,
                ostree_mode=args.ostree_mode,
            )
            if not (ours.ok and theirs.ok):
                failed = True
                print(f"{label:<8}FAILED", flush=True)
                continue
            assert ours.generate and theirs.generate and ours.apply and theirs.apply
            print(
                f"{label:<8}{ours.generate.seconds:>8.2f} s{theirs.generate.seconds:>10.2f} s"
                f"{_mb(ours.delta_bytes):>12}{_mb(theirs.delta_bytes):>13}"
                f"{ours.apply.seconds:>10.2f} s{theirs.apply.seconds:>12.2f} s"
                f"{_mb(ours.generate.peak_bytes):>13} /{_mb(ours.apply.peak_bytes):>9}",
                flush=True,
            )
            for side in (ours, theirs):
                if side.checks:
                    ok = side.checks.get("ok")
                    checks_ok &= bool(ok)
                    print(
                        f"{'':8}{side.tool}: {side.delta_files} files; "
                        + ", ".join(f"{k} {v}" for k, v in side.checks.items() if k != "show")
                        + "; show: "
                        + "; ".join(f"{k} {v}" for k, v in dict(side.checks["show"]).items())  # type: ignore[call-overload]
                    )
            if i >= args.warmup:
                counted.append((ours, theirs))
    except BaseException:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
        raise

    if not counted:
        print("no successful counted run")
        return 1

    def med(values: list[float]) -> float:
        return statistics.median(values)

    gen_o = med([o.generate.seconds for o, _ in counted if o.generate])
    gen_t = med([t.generate.seconds for _, t in counted if t.generate])
    size_o = med([float(o.delta_bytes) for o, _ in counted])
    size_t = med([float(t.delta_bytes) for _, t in counted])
    app_o = med([o.apply.seconds for o, _ in counted if o.apply])
    app_t = med([t.apply.seconds for _, t in counted if t.apply])
    rss_gen = max(o.generate.peak_bytes for o, _ in counted if o.generate)
    rss_app = max(o.apply.peak_bytes for o, _ in counted if o.apply)
    print("-" * len(head))
    print(
        f"{'median':<8}{gen_o:>8.2f} s{gen_t:>10.2f} s{_mb(size_o):>12}{_mb(size_t):>13}"
        f"{app_o:>10.2f} s{app_t:>12.2f} s"
    )
    caveat = " -- NOT VALID: a command failed" if failed else ""
    caveat += " -- NOT VALID: a check failed" if not checks_ok else ""
    r_gen, r_size, r_app = _ratio(gen_o, gen_t), _ratio(size_o, size_t), _ratio(app_o, app_t)
    print(f"\ngenerate time ratio ours/ostree = {r_gen:.2f} (target <= {TIME_TARGET}){caveat}")
    print(f"delta size ratio ours/ostree   = {r_size:.3f} (target <= {SIZE_TARGET})")
    print(f"apply time ratio ours/ostree   = {r_app:.2f} (reported; archive vs {args.ostree_mode})")
    print(
        f"peak RSS ours: generate {_mb(rss_gen)}, apply {_mb(rss_app)} "
        f"(max of maxrss and sampled tree RSS over the counted runs)"
    )
    load = max(load_before, os.getloadavg()[0])
    print(f"load average: {load_before:.2f} at start, {os.getloadavg()[0]:.2f} at end")
    if load > bench_fsck.BUSY_LOAD:
        print(f"warning: load average reached {load:.2f} -- other work on the machine skews this")

    if args.profile:
        profile_generate(work, repo, str(pyostree), (from_c, to_c), out=args.profile, top=args.top)
    if args.json:
        out = {
            "pair": str(dest),
            "commits": [from_c, to_c],
            "edits": edits,
            "medians": {
                "generate_ours": gen_o,
                "generate_ostree": gen_t,
                "size_ours": size_o,
                "size_ostree": size_t,
                "apply_ours": app_o,
                "apply_ostree": app_t,
            },
            "ratios": {"generate": r_gen, "size": r_size, "apply": r_app},
            "peak_rss": {"generate": rss_gen, "apply": rss_app},
            "runs": [
                {
                    side.tool: {
                        "generate": asdict(side.generate) if side.generate else None,
                        "apply": asdict(side.apply) if side.apply else None,
                        "delta_bytes": side.delta_bytes,
                        "checks": side.checks,
                    }
                    for side in pair
                }
                for pair in counted
            ],
        }
        args.json.write_text(json.dumps(out, indent=2, default=str) + "\n")
    if args.keep:
        print(f"\nkept {work}")
    else:
        print(f"\nremoving {work} ...", flush=True)
        shutil.rmtree(work, ignore_errors=True)
    return 1 if failed or not checks_ok else 0


if __name__ == "__main__":
    sys.exit(main())
