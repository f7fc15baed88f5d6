"""The ``pyostree`` command line: local repository verbs (like the ``ostree`` CLI).

The console script is :func:`service.cli.main`, which adds the service commands
to these; ``python -m libpyostree.cli`` gives the local verbs alone.

Every failure exits non-zero with a one-line reason on stderr; bad data and
misuse both surface as :class:`~libpyostree.errors.OstreeError`, never as a
traceback.  Service nouns (``repository``, ``remote``, …) arrive with the service.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import stat
import sys
import time
from collections.abc import Callable, Sequence

from . import __version__
from .checkout import checkout
from .commit import commit_directory
from .diff import diff_commits
from .errors import OstreeError
from .fsck import fsck
from .gvariant import Variant
from .objects.summary import parse_summary
from .repo import Repo
from .summary import update_summary
from .walk import iter_history


class CliError(OstreeError):
    """A usage problem found by the CLI itself."""


def _repo_path(args: argparse.Namespace) -> str:
    path = args.repo or os.environ.get("OSTREE_REPO")
    if not path:
        raise CliError("no repository given: use --repo PATH or set OSTREE_REPO")
    return str(path)


def _open(args: argparse.Namespace) -> Repo:
    return Repo.open(_repo_path(args))


def _fmt_time(ts: int) -> str:
    return dt.datetime.fromtimestamp(ts, dt.UTC).strftime("%Y-%m-%d %H:%M:%S +0000")


def _fmt_variant(value: Variant) -> str:
    inner = value.value
    if isinstance(inner, bytes):
        return inner.hex()
    if isinstance(inner, Variant):
        return _fmt_variant(inner)
    return repr(inner)


def cmd_init(args: argparse.Namespace) -> int:
    Repo.init(_repo_path(args), mode=args.mode)
    return 0


def cmd_fsck(args: argparse.Namespace) -> int:
    repo = _open(args)
    result = fsck(repo, args.revs or None, threads=args.threads)
    for problem in result.problems:
        print(problem)
    if not args.quiet:
        print(
            f"Checked {result.commits} commits, {result.metadata_objects} metadata and "
            f"{result.content_objects} content objects: "
            + ("no problems" if result.ok else f"{len(result.problems)} problems"),
            file=sys.stderr,
        )
    return 0 if result.ok else 1


def cmd_refs(args: argparse.Namespace) -> int:
    repo = _open(args)
    for name, csum in repo.list_refs().items():
        if args.prefix and not name.startswith(args.prefix):
            continue
        print(f"{name} {csum}" if args.checksums else name)
    return 0


def cmd_rev_parse(args: argparse.Namespace) -> int:
    print(_open(args).resolve_rev(args.rev))
    return 0


def _print_commit(repo: Repo, csum: str, show_meta: bool) -> None:
    commit = repo.read_commit(csum)
    print(f"commit {csum}")
    if commit.parent:
        print(f"Parent:  {commit.parent}")
    print(f"ContentChecksum:  {commit.content_checksum}")
    print(f"Date:  {_fmt_time(commit.timestamp)}")
    if commit.version is not None:
        print(f"Version: {commit.version}")
    print()
    print(f"    {commit.subject}")
    if commit.body:
        print()
        for line in commit.body.splitlines():
            print(f"    {line}")
    print()
    if show_meta:
        for key, value in sorted(commit.metadata.items()):
            print(f"  {key} ({value.type}) = {_fmt_variant(value)}")


def cmd_log(args: argparse.Namespace) -> int:
    repo = _open(args)
    for csum, _commit in iter_history(repo, repo.resolve_rev(args.rev)):
        _print_commit(repo, csum, False)
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    repo = _open(args)
    _print_commit(repo, repo.resolve_rev(args.rev), True)
    return 0


def _mode_string(mode: int) -> str:
    kind = "d" if stat.S_ISDIR(mode) else "l" if stat.S_ISLNK(mode) else "-"
    return f"{kind}{mode & 0o7777:05o}"


def cmd_ls(args: argparse.Namespace) -> int:
    """Same lines as ``ostree ls``: the directory, its files, then its subdirectories
    (recursively with -R); -C adds checksums (tree and meta for directories)."""
    repo = _open(args)
    commit = repo.read_commit(repo.resolve_rev(args.rev))
    tree, meta = commit.root_dirtree, commit.root_dirmeta
    path = "/"
    parts = [p for p in args.path.split("/") if p]
    for k, part in enumerate(parts):
        dirtree = repo.read_dirtree(tree)
        dirs = {n: (t, m) for n, t, m in dirtree.dirs}
        path = path.rstrip("/") + "/" + part
        if part not in dirs:
            files = dict(dirtree.files)
            if part in files and k == len(parts) - 1:
                _ls_file(repo, files[part], path, args.checksum)
                return 0
            raise CliError(f"No such file or directory: {args.path}")
        tree, meta = dirs[part]

    def dir_line(tree: str, meta: str, path: str) -> None:
        dirmeta = repo.read_dirmeta(meta)
        csums = f" {tree} {meta}" if args.checksum else ""
        print(f"{_mode_string(dirmeta.mode)} {dirmeta.uid} {dirmeta.gid} {0:>6}{csums} {path}")

    if not args.recursive:
        dir_line(tree, meta, path)
        dirtree = repo.read_dirtree(tree)
        prefix = path.rstrip("/") + "/"
        for name, fcsum in dirtree.files:
            _ls_file(repo, fcsum, prefix + name, args.checksum)
        for name, sub_tree, sub_meta in dirtree.dirs:
            dir_line(sub_tree, sub_meta, prefix + name)
        return 0
    # Depth-first in name order, like ostree: a directory, its files, then its subdirectories.
    stack = [(tree, meta, path)]
    while stack:
        tree, meta, path = stack.pop()
        dir_line(tree, meta, path)
        dirtree = repo.read_dirtree(tree)
        prefix = path.rstrip("/") + "/"
        for name, fcsum in dirtree.files:
            _ls_file(repo, fcsum, prefix + name, args.checksum)
        for name, sub_tree, sub_meta in reversed(dirtree.dirs):
            stack.append((sub_tree, sub_meta, prefix + name))
    return 0


def _ls_file(repo: Repo, checksum: str, path: str, show_checksum: bool) -> None:
    header, content = repo.read_file(checksum)
    extra = f" -> {header.symlink_target}" if header.is_symlink else ""
    csum = f" {checksum}" if show_checksum else ""
    mode = _mode_string(header.mode)
    print(f"{mode} {header.uid} {header.gid} {len(content):>6}{csum} {path}{extra}")


def cmd_diff(args: argparse.Namespace) -> int:
    """The lines of ``ostree diff FROM TO``; with one revision, ``REV^`` against ``REV``."""
    from_rev, to_rev = (
        (args.rev + "^", args.rev) if args.to_rev is None else (args.rev, args.to_rev)
    )
    for rev in (from_rev, to_rev):
        if rev.startswith(("/", "./")):  # ostree compares with a directory on disk here
            raise CliError(f"comparing with a directory on disk is not supported: {rev}")
    result = diff_commits(_open(args), from_rev, to_rev)
    text = "".join(line + "\n" for line in result.lines())
    sys.stdout.flush()
    sys.stdout.buffer.write(text.encode("utf-8", "surrogateescape"))
    sys.stdout.buffer.flush()
    return 0


def cmd_checkout(args: argparse.Namespace) -> int:
    checkout(_open(args), args.rev, args.dest, xattrs=args.xattrs, subpath=args.subpath)
    return 0


def cmd_summary(args: argparse.Namespace) -> int:
    repo = _open(args)
    if args.update:
        update_summary(repo)
        return 0
    try:
        data = (repo.path / "summary").read_bytes()
    except FileNotFoundError:
        raise CliError(f"{repo.path} has no summary; run --update first") from None
    summary = parse_summary(data)
    for ref in summary.refs:
        print(f"* {ref.name}")
        print(f"    Latest Commit ({ref.commit_size} bytes):")
        print(f"      {ref.checksum}")
        if ref.version is not None:
            print(f"    Version: {ref.version}")
        if ref.timestamp is not None:
            print(f"    Timestamp: {_fmt_time(ref.timestamp)}")
        print()
    print("Repository Mode (ostree.summary.mode): ", end="")
    mode = summary.metadata.get("ostree.summary.mode")
    print(mode.value if mode else "(unset)")
    for key, value in sorted(summary.metadata.items()):
        print(f"{key} ({value.type}) = {_fmt_variant(value)}")
    return 0


def cmd_commit(args: argparse.Namespace) -> int:
    repo = _open(args)
    metadata: dict[str, Variant] = {}
    for item in args.add_metadata_string:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise CliError(f"--add-metadata-string needs KEY=VALUE, got {item!r}")
        metadata[key] = Variant("s", value)
    timestamp = None
    if args.timestamp is not None:
        try:
            timestamp = int(dt.datetime.fromisoformat(args.timestamp).timestamp())
        except ValueError:
            raise CliError(f"invalid --timestamp {args.timestamp!r}") from None
    csum = commit_directory(
        repo,
        args.tree,
        branch=args.branch,
        subject=args.subject,
        body=args.body,
        parent=args.parent,
        timestamp=timestamp,
        metadata=metadata,
        owner_uid=args.owner_uid,
        owner_gid=args.owner_gid,
        xattrs=not args.no_xattrs,
        bindings=not args.no_bindings,
    )
    print(csum)
    return 0


def cmd_import(args: argparse.Namespace) -> int:
    from .archive import ImportProgress, import_archive

    repo = _open(args)
    last = [0.0]

    def show(p: ImportProgress) -> None:
        now = time.monotonic()
        if now - last[0] < 1.0:
            return
        last[0] = now
        total = f"/{p.bytes_total / 1e6:.1f}" if p.bytes_total else ""
        print(f"{p.objects} objects, {p.bytes_read / 1e6:.1f}{total} MB read", file=sys.stderr)

    result = import_archive(
        repo,
        args.archive,
        ref=args.ref,
        sha256=args.sha256,
        repo_dir=args.repo_dir,
        require_full_history=args.require_full_history,
        progress=None if args.quiet else show,
    )
    for name, commit in result.refs.items():
        print(f"{name} {commit}")
    if not args.quiet:
        state = "imported" if result.changed else "nothing new"
        print(
            f"{state}: {len(result.commits)} commits, {result.objects_added} objects added, "
            f"{result.objects_present} already present",
            file=sys.stderr,
        )
    return 0


def cmd_pull(args: argparse.Namespace) -> int:
    from .http import RemoteOptions
    from .pull import PullProgress, pull

    repo = _open(args)
    last = [0.0]

    def show(p: PullProgress) -> None:
        now = time.monotonic()
        if now - last[0] < 1.0:
            return
        last[0] = now
        print(
            f"{p.objects_fetched} objects, {p.bytes_fetched / 1e6:.1f} MB fetched, "
            f"{p.outstanding} outstanding",
            file=sys.stderr,
        )

    headers = {}
    for item in args.header or []:
        name, sep, value = item.partition(":")
        if not sep:
            raise CliError(f"--header needs NAME: VALUE, not {item!r}")
        headers[name.strip()] = value.strip()
    options = RemoteOptions(
        tls_validation=not args.insecure,
        ca_cert=args.ca_cert,
        client_cert=args.client_cert,
        client_key=args.client_key,
        username=args.username,
        password=args.password,
        headers=headers,
        proxy_url=args.proxy,
        concurrency=args.jobs,
    )
    result = pull(
        repo,
        args.url,
        args.refs or None,
        depth=args.depth,
        mirror=args.mirror,
        remote=args.remote,
        options=options,
        progress=None if args.quiet else show,
        deltas=not args.disable_static_deltas,
    )
    for name, commit in sorted(result.refs.items()):
        print(f"{name} {commit}")
    if not args.quiet:
        for delta in result.deltas_used:
            print(f"static delta {delta}", file=sys.stderr)
        if result.deltas_used:
            print(
                f"{result.delta_parts_fetched} delta parts fetched, "
                f"{result.delta_parts_skipped} already satisfied, "
                f"{result.delta_fallbacks} fallbacks",
                file=sys.stderr,
            )
        print(
            f"{len(result.commits)} commits, {result.fetched} objects fetched",
            file=sys.stderr,
        )
    return 0


def cmd_cat(args: argparse.Namespace) -> int:
    repo = _open(args)
    header, content = repo.read_file(args.checksum)
    sys.stdout.buffer.write(header.symlink_target.encode() if header.is_symlink else content)
    return 0


Extend = Callable[["argparse._SubParsersAction[argparse.ArgumentParser]"], None]


def _parser(extend: Extend | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="pyostree", description="Pure-Python OSTree tools")
    parser.add_argument("--version", action="version", version=f"pyostree {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def verb(
        name: str, func: Callable[[argparse.Namespace], int], help: str
    ) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help, description=help)
        p.add_argument("--repo", help="repository path (default: $OSTREE_REPO)")
        p.set_defaults(func=func)
        return p

    p = verb("init", cmd_init, "create an archive-mode repository")
    p.add_argument("--mode", default="archive", choices=["archive", "archive-z2"])
    p = verb("fsck", cmd_fsck, "verify every reachable object")
    p.add_argument("revs", nargs="*", metavar="REF_OR_COMMIT")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("-q", "--quiet", action="store_true")
    p = verb("refs", cmd_refs, "list refs")
    p.add_argument("prefix", nargs="?")
    p.add_argument("--checksums", action="store_true", help="also print the commit")
    p = verb("rev-parse", cmd_rev_parse, "resolve a revision to a commit checksum")
    p.add_argument("rev")
    p = verb("log", cmd_log, "commit history")
    p.add_argument("rev", metavar="REF")
    p = verb("show", cmd_show, "one commit with its metadata")
    p.add_argument("rev", metavar="REV")
    p = verb("ls", cmd_ls, "list a directory of a commit")
    p.add_argument("rev", metavar="REV")
    p.add_argument("path", nargs="?", default="/")
    p.add_argument("-R", "--recursive", action="store_true")
    p.add_argument("-C", "--checksum", action="store_true")
    p = verb("diff", cmd_diff, "changed paths between two commits (as `ostree diff`)")
    p.add_argument("rev", metavar="FROM", help="with TO omitted: REV, compared with REV^")
    p.add_argument("to_rev", nargs="?", metavar="TO")
    p = verb("checkout", cmd_checkout, "write a commit's tree to a new directory")
    p.add_argument("rev", metavar="REV")
    p.add_argument("dest", metavar="DEST")
    p.add_argument("--subpath", default="/")
    p.add_argument("--xattrs", action="store_true", help="apply xattrs where permitted")
    p = verb("summary", cmd_summary, "regenerate or show the summary")
    group = p.add_mutually_exclusive_group(required=True)
    group.add_argument("-u", "--update", action="store_true")
    group.add_argument("-v", "--view", action="store_true")
    p = verb("commit", cmd_commit, "commit a directory")
    p.add_argument("tree", metavar="DIR")
    p.add_argument("-b", "--branch")
    p.add_argument("-s", "--subject", default="")
    p.add_argument("--body", default="")
    p.add_argument("--parent")
    p.add_argument("--timestamp", help="ISO 8601 time (default: now)")
    p.add_argument("--add-metadata-string", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--owner-uid", type=int)
    p.add_argument("--owner-gid", type=int)
    p.add_argument("--no-xattrs", action="store_true")
    p.add_argument("--no-bindings", action="store_true")
    p = verb("import", cmd_import, "import a commit archive (tar, .gz, .xz, .zst), verified")
    p.add_argument("archive", metavar="ARCHIVE")
    p.add_argument("--ref", help="extend this ref: the archive must continue its current head")
    p.add_argument("--sha256", help="expected sha256 of the whole archive file")
    p.add_argument("--repo-dir", help="repository directory inside the archive")
    p.add_argument("--require-full-history", action="store_true")
    p.add_argument("-q", "--quiet", action="store_true")
    p = verb("pull", cmd_pull, "pull refs from an OSTree HTTP repository, verified")
    p.add_argument("url", metavar="URL")
    p.add_argument("refs", nargs="*", metavar="REF", help="refs to pull (default: every ref)")
    p.add_argument("--depth", type=int, default=0, help="parents to pull; -1 for all")
    p.add_argument("--mirror", action="store_true", help="write refs/heads (and the summary)")
    p.add_argument("--remote", default="origin", help="refs/remotes/REMOTE/… without --mirror")
    p.add_argument("--jobs", type=int, default=16, help="requests in flight")
    p.add_argument("--insecure", action="store_true", help="do not verify TLS certificates")
    p.add_argument("--ca-cert", help="CA bundle (PEM file)")
    p.add_argument("--client-cert", help="TLS client certificate (PEM file)")
    p.add_argument("--client-key", help="TLS client key (PEM file)")
    p.add_argument("--username")
    p.add_argument("--password")
    p.add_argument("--header", action="append", help="extra header NAME: VALUE (repeatable)")
    p.add_argument("--proxy", help="proxy URL")
    p.add_argument(
        "--disable-static-deltas", action="store_true", help="walk objects, never use deltas"
    )
    p.add_argument("-q", "--quiet", action="store_true")
    p = verb("cat", cmd_cat, "print a file object's content")
    p.add_argument("checksum")
    from .deltas.cli import add_parser as add_static_delta_parser

    add_static_delta_parser(sub)
    if extend is not None:
        extend(sub)
    return parser


def main(argv: Sequence[str] | None = None, extend: Extend | None = None) -> int:
    """Run the CLI; ``extend`` lets the service add its commands (the library never
    imports the service)."""
    args = _parser(extend).parse_args(argv)
    try:
        code: int = args.func(args)
    except OstreeError as exc:
        print(f"pyostree: error: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"pyostree: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return code


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
