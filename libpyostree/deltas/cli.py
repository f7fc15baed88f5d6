"""``pyostree static-delta generate|list|show|apply-offline`` (like ``ostree static-delta``)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

from ..cli import CliError, _repo_path
from ..repo import Repo
from .apply import apply_offline, scan_ops
from .generate import DeltaOptions, generate_delta
from .index import list_deltas
from .names import DeltaName
from .part import open_part
from .superblock import parse_superblock

SubParsers = "argparse._SubParsersAction[argparse.ArgumentParser]"


def format_size(size: int) -> str:
    """GLib's ``g_format_size`` (decimal units, one decimal)."""
    if size < 1000:
        return f"{size} byte" if size == 1 else f"{size} bytes"
    value = float(size)
    for unit in ("kB", "MB", "GB", "TB", "PB", "EB"):
        value /= 1000
        if value < 1000 or unit == "EB":
            return f"{value:.1f}\u00a0{unit}"  # GLib puts a no-break space here
    raise AssertionError("unreachable")  # pragma: no cover


def cmd_generate(args: argparse.Namespace) -> int:
    repo = Repo.open(_repo_path(args))
    if args.empty and args.from_rev:
        raise CliError("cannot use --empty with --from")
    to = repo.resolve_rev(args.to_rev)
    if args.empty:
        from_rev = None
    elif args.from_rev:
        from_rev = repo.resolve_rev(args.from_rev)
    else:
        from_rev = repo.resolve_rev(to + "^")
    print("Generating static delta:")
    print(f"  From: {from_rev or 'empty'}")
    print(f"  To:   {to}")
    sys.stdout.flush()
    options = DeltaOptions(
        min_fallback_size=args.min_fallback_size,
        max_chunk_size=args.max_chunk_size,
        compression=args.compression,
        inline=args.inline,
        bsdiff=not args.disable_bsdiff,
        max_bsdiff_size=args.max_bsdiff_size,
    )
    generate_delta(repo, to, from_rev, options=options)
    if (repo.path / "summary").exists():
        from ..summary import update_summary

        update_summary(repo)
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    names = list_deltas(Repo.open(_repo_path(args)))
    if not names:
        print("(No static deltas)")
    for name in names:
        print(name)
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    repo = Repo.open(_repo_path(args))
    name = DeltaName.parse(args.delta)
    directory = repo.path / name.dir
    try:
        sb = parse_superblock((directory / "superblock").read_bytes())
    except FileNotFoundError:
        raise CliError(f"No static delta {name}") from None
    print(f"Delta: {name}")
    print("Signed: no")
    print(f"From: {sb.from_commit}" if sb.from_commit else "From <scratch>")
    print(f"To: {sb.to_commit}")
    endian = "little" if sb.endianness == "l" else "big"
    print(f"Endianness: {endian}{' (heuristic)' if sb.endianness_heuristic else ''}")
    print(f"Timestamp: {sb.timestamp}")
    print("Number of parents: 0")
    print(f"Number of fallback entries: {len(sb.fallbacks)}")
    for fb in sb.fallbacks:
        print(f"  {fb.checksum}")
    fsize = sum(f.compressed_size for f in sb.fallbacks)
    fusize = sum(f.uncompressed_size for f in sb.fallbacks)
    print(f"Total Fallback Size: {fsize} ({format_size(fsize)})")
    print(f"Total Fallback Uncompressed Size: {fusize} ({format_size(fusize)})")
    print(f"Number of parts: {len(sb.parts)}")
    for i, part in enumerate(sb.parts):
        print(f"PartMeta{i}: nobjects={len(part.objects)} size={part.size} usize={part.usize}")
        data = sb.inline_parts.get(i)
        if data is None:
            data = (directory / str(i)).read_bytes()
        payload = open_part(data, None)
        print(
            f"PartPayload{i}: nmodes={len(payload.modes)} nxattrs={len(payload.xattrs)} "
            f"blobsize={len(payload.blob)} opsize={len(payload.ops)}"
        )
        n = scan_ops(part.objects, payload)
        print(
            f"PartPayloadOps{i}: openspliceclose={n['S']} open={n['o']} write={n['w']} "
            f"setread={n['r']} unsetread={n['R']} close={n['c']} bspatch={n['B']}"
        )
    psize = sum(p.size for p in sb.parts)
    pusize = sum(p.usize for p in sb.parts)
    print(f"Total Part Size: {psize} ({format_size(psize)})")
    print(f"Total Part Uncompressed Size: {pusize} ({format_size(pusize)})")
    print(f"Total Size: {psize + fsize} ({format_size(psize + fsize)})")
    print(f"Total Uncompressed Size: {pusize + fusize} ({format_size(pusize + fusize)})")
    return 0


def cmd_apply_offline(args: argparse.Namespace) -> int:
    repo = Repo.open(_repo_path(args))
    stats = apply_offline(repo, Path(args.path))
    if not args.quiet:
        print(
            f"{stats.parts_applied} parts applied, {stats.parts_skipped} skipped; "
            f"{stats.objects_written} objects written",
            file=sys.stderr,
        )
    return 0


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``static-delta`` and its verbs to the ``pyostree`` parser."""
    top = sub.add_parser("static-delta", help="static deltas", description="static deltas")
    verbs = top.add_subparsers(dest="delta_command", metavar="VERB", required=True)

    def verb(
        name: str, func: Callable[[argparse.Namespace], int], help: str
    ) -> argparse.ArgumentParser:
        p = verbs.add_parser(name, help=help, description=help)
        p.add_argument("--repo", help="repository path (default: $OSTREE_REPO)")
        p.set_defaults(func=func)
        return p

    p = verb("generate", cmd_generate, "generate a delta FROM→TO (default FROM: TO^)")
    p.add_argument("--from", dest="from_rev", metavar="REV")
    p.add_argument("--empty", action="store_true", help="a delta from scratch")
    p.add_argument("--to", dest="to_rev", metavar="REV", required=True)
    p.add_argument("--inline", action="store_true", help="put the parts in the superblock")
    p.add_argument(
        "--min-fallback-size", type=int, default=4, metavar="MB",
        help="files larger than this (10^6 bytes) become fallbacks; 0 disables (default 4)",
    )  # fmt: skip
    p.add_argument("--max-chunk-size", type=int, default=32, metavar="MB", help="default 32")
    p.add_argument("--compression", choices=["xz", "none"], default="xz")
    p.add_argument("--disable-bsdiff", action="store_true", help="no bsdiff (rollsum still)")
    p.add_argument(
        "--max-bsdiff-size", type=int, default=128, metavar="MB",
        help="bsdiff only files whose old and new sizes add up to at most this (default 128)",
    )  # fmt: skip
    verb("list", cmd_list, "list the deltas of a repository")
    p = verb("show", cmd_show, "describe one delta")
    p.add_argument("delta", metavar="NAME", help="FROM-TO or TO")
    p = verb("apply-offline", cmd_apply_offline, "apply a delta directory or superblock file")
    p.add_argument("path", metavar="PATH", help="delta directory or its superblock")
    p.add_argument("-q", "--quiet", action="store_true")
