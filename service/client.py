"""The client nouns of ``pyostree`` (``repository``, ``distribution``, ``remote``,
``task``): they talk to a running service over its REST API (``contract.md`` §3, §4).

What stays true:

- Every failure is a :class:`ClientError` (a :class:`~libpyostree.cli.CliError`), so
  ``pyostree`` prints one line and exits 1: an HTTP error gives the API's
  ``error.message``, a failed task gives the task's ``error.message``, an unreachable
  server or a missing token says which setting to fix.
- ``--json`` prints the API's JSON on stdout and nothing else there; a list is every
  page, as one ``{"count", "results"}``.  Deletions answered with 204 print nothing.
- Progress goes to stderr only: one rewritten line on a terminal, otherwise a plain
  line at most every second.
- Uploads stream from the file in chunks; an archive is never held in memory whole.

Settings: ``--server`` / ``$PYOSTREE_SERVER`` (default ``http://127.0.0.1:8080``);
``--token`` / ``$PYOSTREE_TOKEN``, else ``DATA_DIR/admin-token`` (``--data-dir``,
default ``./data``, where ``make serve`` writes it).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO, TypeAlias
from urllib.parse import quote

from libpyostree import __version__
from libpyostree.cli import CliError

if TYPE_CHECKING:
    import httpx

DEFAULT_SERVER = "http://127.0.0.1:8080"
DEFAULT_DATA_DIR = "./data"
TOKEN_FILE = "admin-token"
_CHUNK = 1 << 20
_PAGE = 1000

SubParsers: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"


class ClientError(CliError):
    """A request, a task or the client's settings failed; the message is one line."""

    def __init__(self, message: str) -> None:
        super().__init__(" ".join(message.split()))


# -- HTTP ----------------------------------------------------------------------------------


def _seg(value: object) -> str:
    """One URL path segment (names are validated by the API; this keeps them one segment)."""
    return quote(str(value), safe="")


def _error_message(response: httpx.Response) -> str:
    try:
        body = response.json()
        message = body["error"]["message"]
        if isinstance(message, str) and message:
            return message
    except (ValueError, KeyError, TypeError):
        pass
    text = response.text.strip()[:200]
    return f"HTTP {response.status_code} {response.reason_phrase}" + (f": {text}" if text else "")


class Client:
    """A thin, synchronous client of ``/api/v1``; a context manager."""

    def __init__(
        self,
        server: str,
        token: str | None,
        *,
        transport: httpx.BaseTransport | None = None,
        timeout: float = 60.0,
    ) -> None:
        try:
            import httpx
        except ImportError as exc:  # pragma: no cover - the service extras bring httpx
            raise ClientError(
                f"the client needs its extras: pip install 'libpyostree[service]' ({exc})"
            ) from None
        self.server = server.rstrip("/")
        headers = {"User-Agent": f"pyostree/{__version__}", "Accept": "application/json"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        self._http = httpx.Client(
            base_url=self.server,
            headers=headers,
            timeout=httpx.Timeout(timeout, connect=10.0),
            transport=transport,
            # Plain http has no TLS: skip loading the CA bundle (most of a command's time).
            verify=not self.server.lower().startswith("http://"),
        )

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: dict[str, Any] | None = None,
        content: Iterator[bytes] | None = None,
        headers: dict[str, str] | None = None,
    ) -> Any:
        """The response's JSON (None for an empty body); raises :class:`ClientError`."""
        import httpx

        try:
            response = self._http.request(
                method, path, json=json, params=params, content=content, headers=headers
            )
        except httpx.TimeoutException as exc:
            raise ClientError(
                f"{self.server} did not answer in time ({exc or 'timeout'})"
            ) from None
        except httpx.ConnectError as exc:
            raise ClientError(
                f"cannot reach the service at {self.server}: {exc} "
                "(is `pyostree serve` running? set --server or PYOSTREE_SERVER)"
            ) from None
        except httpx.TransportError as exc:
            raise ClientError(f"{method} {self.server}{path} failed: {exc}") from None
        if response.status_code >= 400:
            raise ClientError(_error_message(response))
        if not response.content:
            return None
        try:
            return response.json()
        except ValueError:
            raise ClientError(
                f"{method} {path}: the server answered HTTP {response.status_code} without JSON"
            ) from None

    def get(self, path: str, **params: Any) -> Any:
        return self.request("GET", path, params=params or None)

    def list_all(self, path: str, **params: Any) -> dict[str, Any]:
        """Every page of a list endpoint, as one ``{"count", "results"}``."""
        results: list[Any] = []
        offset = 0
        while True:
            page = self.get(path, limit=_PAGE, offset=offset, **params)
            results.extend(page["results"])
            offset += _PAGE
            if offset >= page["count"] or not page["results"]:
                return {"count": page["count"], "results": results}

    def wait(self, href: str, progress: Progress | None) -> dict[str, Any]:
        """Poll the task until it finishes; a failed or canceled task raises."""
        delay = 0.1
        try:
            while True:
                task: dict[str, Any] = self.get(href)
                if progress is not None:
                    progress.update(_task_line(task))
                if task["state"] in ("completed", "failed", "canceled"):
                    break
                time.sleep(delay)
                delay = min(delay * 1.5, 1.0)
        except KeyboardInterrupt:
            if progress is not None:
                progress.finish()
            print(
                f"The task goes on: pyostree task show {href.rsplit('/', 1)[-1]}",
                file=sys.stderr,
            )
            raise
        if progress is not None:
            progress.finish(_task_line(task))
        if task["state"] == "failed":
            error = task.get("error") or {}
            raise ClientError(str(error.get("message") or f"Task {task['id']} failed"))
        if task["state"] == "canceled":
            raise ClientError(f"Task {task['id']} was canceled")
        return task


# -- settings ------------------------------------------------------------------------------


def _token(args: argparse.Namespace) -> str:
    if args.token:
        return str(args.token)
    env = os.environ.get("PYOSTREE_TOKEN")
    if env:
        return env
    path = Path(args.data_dir or DEFAULT_DATA_DIR) / TOKEN_FILE
    try:
        token = path.read_text().strip()
    except FileNotFoundError:
        raise ClientError(
            f"no token: pass --token, set PYOSTREE_TOKEN, or point --data-dir at the service's "
            f"data directory (no {path})"
        ) from None
    except OSError as exc:
        raise ClientError(f"cannot read the token file {path}: {exc.strerror}") from None
    if not token:
        raise ClientError(f"the token file {path} is empty")
    return token


def _client(args: argparse.Namespace) -> Client:
    server = args.server or os.environ.get("PYOSTREE_SERVER") or DEFAULT_SERVER
    return Client(server, _token(args))


# -- output --------------------------------------------------------------------------------


def _print_json(data: Any) -> None:
    print(json.dumps(data, indent=2, sort_keys=False))


def _table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
    """Left-aligned columns, two spaces apart, the last one unpadded; nothing when empty."""
    if not rows:
        return
    cells = [[str(h) for h in headers], *[[_cell(c) for c in row] for row in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    for row in cells:
        padded = [c.ljust(w) for c, w in zip(row[:-1], widths, strict=False)]
        print("  ".join([*padded, row[-1]]).rstrip())


def _cell(value: object) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(value)


def _fields(pairs: Sequence[tuple[str, object]]) -> None:
    width = max(len(k) for k, _ in pairs) + 1
    for key, value in pairs:
        print(f"{key + ':':<{width}} {_cell(value)}")


def _when(iso: str | None) -> str | None:
    if not iso:
        return None
    return dt.datetime.fromisoformat(iso).astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%S")


def _date(ts: int | None) -> str | None:
    if ts is None:
        return None
    return dt.datetime.fromtimestamp(ts, dt.UTC).strftime("%Y-%m-%d %H:%M:%S")


def _size(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")


def _bar(done: int, total: int | None, width: int = 20) -> str:
    if not total:
        return ""
    frac = min(max(done / total, 0.0), 1.0)
    full = int(frac * width)
    return f"[{'#' * full}{'.' * (width - full)}] {frac * 100:3.0f}%"


class Progress:
    """One status line on stderr: rewritten in place (``\\r``) on a terminal, otherwise
    printed as a plain line at most every ``interval`` seconds (and never twice alike)."""

    def __init__(self, stream: TextIO | None = None, interval: float | None = None) -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.tty = self.stream.isatty()
        self.interval = interval if interval is not None else (0.1 if self.tty else 1.0)
        self._last = float("-inf")
        self._shown = ""
        self._width = 0

    def update(self, text: str, *, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._last < self.interval:
            return
        self._last = now
        self._write(text)

    def _write(self, text: str) -> None:
        if self.tty:
            columns = shutil.get_terminal_size((100, 20)).columns
            line = text[: columns - 1]
            self.stream.write("\r" + line + " " * max(self._width - len(line), 0))
            self._width = len(line)
        elif text != self._shown:
            self.stream.write(text + "\n")
        self._shown = text
        self.stream.flush()

    def finish(self, text: str | None = None) -> None:
        """Show ``text`` (if any) as the final state and end the line."""
        if text is not None and text != self._shown:
            self._write(text)
        if self.tty and self._width:
            self.stream.write("\n")
            self.stream.flush()
        self._width = 0


def _progress_item(item: dict[str, Any]) -> str:
    message = str(item.get("message", ""))
    done, total = int(item.get("done") or 0), item.get("total")
    if message.endswith("(bytes)"):
        label = message.removesuffix("(bytes)").rstrip()
        amount = _size(done) + (f"/{_size(total)}" if total else "")
    else:
        label, amount = message, str(done) + (f"/{total}" if total is not None else "")
    bar = _bar(done, total, 12)
    return f"{label}: {amount}" + (f" {bar}" if bar else "")


def _task_line(task: dict[str, Any]) -> str:
    items = [_progress_item(i) for i in task.get("progress") or []]
    head = f"Task {task['kind']} {task['state']}"
    return " | ".join([head, *items])


def _started(args: argparse.Namespace, ref: dict[str, Any]) -> None:
    """``--no-wait``: the task reference, for ``pyostree task show``."""
    if args.json:
        _print_json(ref)
        return
    task_id = str(ref["task"]).rsplit("/", 1)[-1]
    print(task_id)
    print(f"Started task {task_id}: follow it with `pyostree task show {task_id}`", file=sys.stderr)


def _run_task(args: argparse.Namespace, api: Client, ref: dict[str, Any]) -> dict[str, Any] | None:
    """Wait for the task a 202 answer named (None with ``--no-wait``, after printing it)."""
    if args.no_wait:
        _started(args, ref)
        return None
    return api.wait(str(ref["task"]), Progress())


# -- repositories --------------------------------------------------------------------------


def _repo_path(name: str) -> str:
    return f"/api/v1/repositories/{_seg(name)}"


def _counts(summary: dict[str, Any] | None) -> dict[str, int]:
    return dict((summary or {}).get("present") or {})


def _changes(summary: dict[str, Any] | None) -> str:
    summary = summary or {}
    added, removed = summary.get("added") or {}, summary.get("removed") or {}
    parts = []
    for kind in ("refs", "commits", "objects", "deltas"):
        a, r = int(added.get(kind, 0)), int(removed.get(kind, 0))
        if a or r:
            parts.append(
                f"{kind} " + " ".join(s for s in (f"+{a}" * bool(a), f"-{r}" * bool(r)) if s)
            )
    return ", ".join(parts) or "-"


def _delta_settings(args: argparse.Namespace) -> dict[str, Any]:
    body: dict[str, Any] = {}
    if args.compute_delta is not None:
        body["compute_delta"] = args.compute_delta
    if args.delta_depth is not None:
        body["delta_depth"] = args.delta_depth
    if args.delta_from_scratch is not None:
        body["delta_from_scratch"] = args.delta_from_scratch
    return body


def cmd_repository_create(args: argparse.Namespace) -> int:
    body: dict[str, Any] = {"name": args.name}
    if args.description is not None:
        body["description"] = args.description
    if args.retain_versions is not None:
        body["retain_versions"] = args.retain_versions
    body.update(_delta_settings(args))
    with _client(args) as api:
        repo = api.request("POST", "/api/v1/repositories", json=body)
    if args.json:
        _print_json(repo)
    else:
        print(f"Created repository {repo['name']} (version {repo['latest_version']})")
    return 0


def cmd_repository_list(args: argparse.Namespace) -> int:
    with _client(args) as api:
        page = api.list_all("/api/v1/repositories")
    if args.json:
        _print_json(page)
        return 0
    _table(
        ["NAME", "LATEST", "RETAIN", "CREATED", "DESCRIPTION"],
        [
            [r["name"], r["latest_version"], r["retain_versions"], _when(r["created"]),
             r["description"] or ""]
            for r in page["results"]
        ],
    )  # fmt: skip
    return 0


def cmd_repository_show(args: argparse.Namespace) -> int:
    with _client(args) as api:
        repo = api.get(_repo_path(args.name))
        if args.json:
            _print_json(repo)
            return 0
        latest = api.get(f"{_repo_path(args.name)}/versions/{repo['latest_version']}")
    counts = _counts(latest.get("content_summary"))
    _fields(
        [
            ("Name", repo["name"]),
            ("Description", repo["description"] or ""),
            ("Created", _when(repo["created"])),
            ("Latest version", repo["latest_version"]),
            ("Retain versions", repo["retain_versions"] or "all"),
            ("Refs", counts.get("refs", 0)),
            ("Commits", counts.get("commits", 0)),
            ("Objects", counts.get("objects", 0)),
            ("Deltas", counts.get("deltas", 0)),
        ]
    )
    return 0


def cmd_repository_update(args: argparse.Namespace) -> int:
    body: dict[str, Any] = {}
    if args.description is not None:
        body["description"] = args.description
    if args.retain_all:
        body["retain_versions"] = None
    elif args.retain_versions is not None:
        body["retain_versions"] = args.retain_versions
    body.update(_delta_settings(args))
    if not body:
        raise ClientError(
            "nothing to update: give --description, --retain-versions, --retain-all "
            "or a delta setting"
        )
    with _client(args) as api:
        repo = api.request("PATCH", _repo_path(args.name), json=body)
    if args.json:
        _print_json(repo)
    else:
        print(f"Updated repository {repo['name']}")
    return 0


def cmd_repository_delete(args: argparse.Namespace) -> int:
    with _client(args) as api:
        task = _run_task(args, api, api.request("DELETE", _repo_path(args.name)))
    if task is not None:
        if args.json:
            _print_json(task)
        else:
            print(f"Deleted repository {args.name}")
    return 0


def _upload(path: Path, size: int, progress: Progress) -> Iterator[bytes]:
    sent = 0
    label = f"Uploading {path.name}"
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            yield chunk
            sent += len(chunk)
            line = f"{label} {_bar(sent, size)} {_size(sent)}/{_size(size)}"
            progress.update(line, force=sent == size)
    progress.finish()


def cmd_repository_import(args: argparse.Namespace) -> int:
    path = Path(args.archive)
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise ClientError(f"cannot read {path}: {exc.strerror}") from None
    if not path.is_file():
        raise ClientError(f"{path} is not a file")
    params = {k: v for k, v in (("ref", args.ref), ("sha256", args.sha256)) if v}
    with _client(args) as api:
        # Fail early (before streaming gigabytes) when the repository does not exist.
        repo = api.get(_repo_path(args.name))
        ref = api.request(
            "POST",
            f"{_repo_path(args.name)}/import",
            params=params or None,
            content=_upload(path, size, Progress()),
            headers={"Content-Length": str(size), "Content-Type": "application/octet-stream"},
        )
        task = _run_task(args, api, ref)
        if task is None:
            return 0
        if args.json:
            _print_json(task)
            return 0
        number = task.get("created_version")
        if number is None:
            latest = api.get(_repo_path(args.name))["latest_version"]
            print(f"Nothing new: {repo['name']} stays at version {latest}")
            return 0
        version = api.get(f"{_repo_path(args.name)}/versions/{number}")
    print(f"Created version {number} of {repo['name']} ({_changes(version['content_summary'])})")
    return 0


# -- versions and content ------------------------------------------------------------------


def _version_arg(text: str) -> str:
    if text == "latest" or (text.isdigit() and text.isascii()):
        return text
    raise argparse.ArgumentTypeError(f"a version is a number or 'latest', not {text!r}")


def cmd_version_list(args: argparse.Namespace) -> int:
    with _client(args) as api:
        page = api.list_all(f"{_repo_path(args.name)}/versions")
    if args.json:
        _print_json(page)
        return 0
    rows = []
    for v in page["results"]:
        counts = _counts(v["content_summary"])
        rows.append(
            [v["number"], _when(v["created"]), counts.get("refs", 0), counts.get("commits", 0),
             counts.get("objects", 0), counts.get("deltas", 0), _changes(v["content_summary"])]
        )  # fmt: skip
    _table(["VERSION", "CREATED", "REFS", "COMMITS", "OBJECTS", "DELTAS", "CHANGES"], rows)
    return 0


def cmd_version_show(args: argparse.Namespace) -> int:
    with _client(args) as api:
        v = api.get(f"{_repo_path(args.name)}/versions/{_seg(args.number)}")
    if args.json:
        _print_json(v)
        return 0
    summary = v["content_summary"] or {}
    pairs: list[tuple[str, object]] = [
        ("Repository", v["repository"]),
        ("Version", v["number"]),
        ("Created", _when(v["created"])),
        ("Summary sha256", v.get("summary_sha256")),
    ]
    for kind in ("refs", "commits", "objects", "deltas"):
        present = (summary.get("present") or {}).get(kind, 0)
        added = (summary.get("added") or {}).get(kind, 0)
        removed = (summary.get("removed") or {}).get(kind, 0)
        pairs.append((kind.capitalize(), f"{present} (+{added} -{removed})"))
    _fields(pairs)
    return 0


def cmd_version_delete(args: argparse.Namespace) -> int:
    with _client(args) as api:
        ref = api.request("DELETE", f"{_repo_path(args.name)}/versions/{_seg(args.number)}")
        task = _run_task(args, api, ref)
    if task is not None:
        if args.json:
            _print_json(task)
        else:
            print(f"Deleted version {args.number} of {args.name}")
    return 0


def cmd_ref_list(args: argparse.Namespace) -> int:
    params = {"name_startswith": args.prefix} if args.prefix else {}
    with _client(args) as api:
        page = api.list_all(f"{_repo_path(args.name)}/versions/{_seg(args.version)}/refs", **params)
    if args.json:
        _print_json(page)
        return 0
    _table(["REF", "COMMIT"], [[r["name"], r["commit"]] for r in page["results"]])
    return 0


def cmd_commit_list(args: argparse.Namespace) -> int:
    params = {"ref": args.ref} if args.ref else {}
    path = f"{_repo_path(args.name)}/versions/{_seg(args.version)}/commits"
    with _client(args) as api:
        page = api.list_all(path, **params)
    if args.json:
        _print_json(page)
        return 0
    _table(
        ["COMMIT", "DATE", "VERSION", "SUBJECT"],
        [[c["checksum"], _date(c["timestamp"]), c["version"], c["subject"] or ""]
         for c in page["results"]],
    )  # fmt: skip
    return 0


# -- distributions -------------------------------------------------------------------------


def _dist_path(name: str) -> str:
    return f"/api/v1/distributions/{_seg(name)}"


def _dist_url(api: Client, dist: dict[str, Any]) -> str:
    return api.server + str(dist["base_url"])


def _print_distribution(args: argparse.Namespace, api: Client, dist: dict[str, Any]) -> None:
    if args.json:
        _print_json(dist)
        return
    _fields(
        [
            ("Name", dist["name"]),
            ("Base path", dist["base_path"]),
            ("URL", _dist_url(api, dist)),
            ("Repository", dist["repository"]),
            ("Version", "latest" if dist["version"] is None else dist["version"]),
            ("Private", dist["private"]),
            ("Created", _when(dist["created"])),
        ]
    )


def cmd_distribution_create(args: argparse.Namespace) -> int:
    body: dict[str, Any] = {
        "name": args.name,
        "base_path": args.base_path,
        "repository": args.repository,
        "private": args.private,
    }
    if args.version is not None:
        body["version"] = args.version
    with _client(args) as api:
        dist = api.request("POST", "/api/v1/distributions", json=body)
        _print_distribution(args, api, dist)
    return 0


def cmd_distribution_list(args: argparse.Namespace) -> int:
    with _client(args) as api:
        page = api.list_all("/api/v1/distributions")
        if args.json:
            _print_json(page)
            return 0
        _table(
            ["NAME", "BASE_PATH", "REPOSITORY", "VERSION", "PRIVATE", "URL"],
            [[d["name"], d["base_path"], d["repository"],
              "latest" if d["version"] is None else d["version"], d["private"],
              _dist_url(api, d)]
             for d in page["results"]],
        )  # fmt: skip
    return 0


def cmd_distribution_show(args: argparse.Namespace) -> int:
    with _client(args) as api:
        _print_distribution(args, api, api.get(_dist_path(args.name)))
    return 0


def cmd_distribution_update(args: argparse.Namespace) -> int:
    body: dict[str, Any] = {}
    if args.base_path is not None:
        body["base_path"] = args.base_path
    if args.repository is not None:
        body["repository"] = args.repository
    if args.latest:
        body["version"] = None
    elif args.version is not None:
        body["version"] = args.version
    if args.private is not None:
        body["private"] = args.private
    if not body:
        raise ClientError(
            "nothing to update: give --base-path, --repository, --version, --latest, "
            "--private or --public"
        )
    with _client(args) as api:
        dist = api.request("PATCH", _dist_path(args.name), json=body)
        _print_distribution(args, api, dist)
    return 0


def cmd_distribution_delete(args: argparse.Namespace) -> int:
    with _client(args) as api:
        api.request("DELETE", _dist_path(args.name))
    if not args.json:
        print(f"Deleted distribution {args.name}")
    return 0


# -- remotes -------------------------------------------------------------------------------


def _remote_path(name: str) -> str:
    return f"/api/v1/remotes/{_seg(name)}"


def _remote_body(args: argparse.Namespace) -> dict[str, Any]:
    body: dict[str, Any] = {}
    if args.url is not None:
        body["url"] = args.url
    if args.include_ref is not None:
        body["include_refs"] = args.include_ref or None
    if args.exclude_ref is not None:
        body["exclude_refs"] = args.exclude_ref or None
    for key in ("depth", "proxy_url", "username", "password"):
        if getattr(args, key) is not None:
            body[key] = getattr(args, key)
    if args.tls_validation is not None:
        body["tls_validation"] = args.tls_validation
    return body


def _print_remote(args: argparse.Namespace, remote: dict[str, Any]) -> None:
    if args.json:
        _print_json(remote)
        return
    _fields(
        [
            ("Name", remote["name"]),
            ("URL", remote["url"]),
            ("Include refs", ", ".join(remote.get("include_refs") or []) or "all"),
            ("Exclude refs", ", ".join(remote.get("exclude_refs") or []) or None),
            ("Depth", remote.get("depth")),
            ("TLS validation", remote.get("tls_validation")),
            ("Proxy URL", remote.get("proxy_url")),
            ("Username", remote.get("username")),
            ("Created", _when(remote.get("created"))),
        ]
    )


def cmd_remote_create(args: argparse.Namespace) -> int:
    body = {"name": args.name, **_remote_body(args)}
    with _client(args) as api:
        remote = api.request("POST", "/api/v1/remotes", json=body)
    _print_remote(args, remote)
    return 0


def cmd_remote_list(args: argparse.Namespace) -> int:
    with _client(args) as api:
        page = api.list_all("/api/v1/remotes")
    if args.json:
        _print_json(page)
        return 0
    _table(
        ["NAME", "URL", "DEPTH", "INCLUDE", "EXCLUDE"],
        [[r["name"], r["url"], r.get("depth"), ",".join(r.get("include_refs") or []) or "all",
          ",".join(r.get("exclude_refs") or []) or "-"]
         for r in page["results"]],
    )  # fmt: skip
    return 0


def cmd_remote_show(args: argparse.Namespace) -> int:
    with _client(args) as api:
        _print_remote(args, api.get(_remote_path(args.name)))
    return 0


def cmd_remote_update(args: argparse.Namespace) -> int:
    body = _remote_body(args)
    if not body:
        raise ClientError("nothing to update: give at least one option (see --help)")
    with _client(args) as api:
        remote = api.request("PATCH", _remote_path(args.name), json=body)
    _print_remote(args, remote)
    return 0


def cmd_remote_delete(args: argparse.Namespace) -> int:
    with _client(args) as api:
        api.request("DELETE", _remote_path(args.name))
    if not args.json:
        print(f"Deleted remote {args.name}")
    return 0


# -- tasks ---------------------------------------------------------------------------------

TASK_STATES = ("waiting", "running", "completed", "failed", "canceled")


def _task_path(task_id: str) -> str:
    return f"/api/v1/tasks/{_seg(task_id)}"


def cmd_task_list(args: argparse.Namespace) -> int:
    params = {"state": args.state} if args.state else {}
    with _client(args) as api:
        page = api.list_all("/api/v1/tasks", **params)
    if args.json:
        _print_json(page)
        return 0
    _table(
        ["ID", "STATE", "KIND", "REPOSITORY", "CREATED", "VERSION"],
        [[t["id"], t["state"], t["kind"], t["repository"], _when(t["created"]),
          t["created_version"]]
         for t in page["results"]],
    )  # fmt: skip
    return 0


def _print_task(task: dict[str, Any]) -> None:
    pairs: list[tuple[str, object]] = [
        ("ID", task["id"]),
        ("Kind", task["kind"]),
        ("State", task["state"]),
        ("Repository", task["repository"]),
        ("Created", _when(task["created"])),
        ("Started", _when(task["started"])),
        ("Finished", _when(task["finished"])),
        ("Created version", task["created_version"]),
    ]
    if task.get("result"):
        pairs.append(("Result", json.dumps(task["result"], sort_keys=True)))
    error = task.get("error")
    if error:
        pairs.append(("Error", f"{error.get('message')} ({error.get('code')})"))
    for item in task.get("progress") or []:
        pairs.append(("Progress", _progress_item(item)))
    _fields(pairs)


def cmd_task_show(args: argparse.Namespace) -> int:
    with _client(args) as api:
        task = api.get(_task_path(args.id))
    if args.json:
        _print_json(task)
    else:
        _print_task(task)
    return 0


def cmd_task_cancel(args: argparse.Namespace) -> int:
    with _client(args) as api:
        task = api.request("POST", f"{_task_path(args.id)}/cancel")
    if args.json:
        _print_json(task)
    elif task["state"] == "running":
        print(f"Task {task['id']}: cancellation requested (it stops at its next progress report)")
    else:
        print(f"Task {task['id']}: {task['state']}")
    return 0


# -- copy, remove, sync, deltas, orphans, diffs -------------------------------------------


def _version_result(args: argparse.Namespace, api: Client, name: str, task: dict[str, Any]) -> None:
    """Report a task that may have created a version of ``name``."""
    if args.json:
        _print_json(task)
        return
    number = task.get("created_version")
    result = task.get("result") or {}
    for ref in result.get("refs_removed_with_their_commit", []):
        print(f"Ref {ref} was removed with its commit")
    if number is None:
        latest = api.get(_repo_path(name))["latest_version"]
        print(f"Nothing changed: {name} stays at version {latest}")
        return
    version = api.get(f"{_repo_path(name)}/versions/{number}")
    print(f"Created version {number} of {name} ({_changes(version['content_summary'])})")


def _modify(args: argparse.Namespace, name: str, body: dict[str, Any]) -> int:
    with _client(args) as api:
        ref = api.request("POST", f"{_repo_path(name)}/modify", json=body)
        task = _run_task(args, api, ref)
        if task is not None:
            _version_result(args, api, name, task)
    return 0


def cmd_repository_copy(args: argparse.Namespace) -> int:
    source: dict[str, Any] = {"repository": args.source}
    if args.version is not None:
        source["version"] = args.version
    body: dict[str, Any] = {"source": source, "depth": args.depth}
    if args.ref:
        body["add_refs"] = args.ref
    if args.commit:
        body["add_commits"] = args.commit
    return _modify(args, args.dest, body)


def cmd_repository_remove(args: argparse.Namespace) -> int:
    if not args.ref and not args.commit:
        raise ClientError("give at least one --ref or --commit to remove")
    body: dict[str, Any] = {}
    if args.ref:
        body["remove_refs"] = args.ref
    if args.commit:
        body["remove_commits"] = args.commit
    return _modify(args, args.name, body)


def cmd_repository_sync(args: argparse.Namespace) -> int:
    body = {"remote": args.remote, "mirror": args.mirror}
    with _client(args) as api:
        ref = api.request("POST", f"{_repo_path(args.name)}/sync", json=body)
        task = _run_task(args, api, ref)
        if task is not None:
            _version_result(args, api, args.name, task)
    return 0


def cmd_delta_create(args: argparse.Namespace) -> int:
    body: dict[str, Any] = {"to": args.to}
    if args.from_commit:
        body["from"] = args.from_commit
    with _client(args) as api:
        ref = api.request("POST", f"{_repo_path(args.name)}/deltas", json=body)
        task = _run_task(args, api, ref)
        if task is not None:
            _version_result(args, api, args.name, task)
    return 0


def cmd_delta_list(args: argparse.Namespace) -> int:
    with _client(args) as api:
        page = api.list_all(f"{_repo_path(args.name)}/versions/{_seg(args.version)}/deltas")
    if args.json:
        _print_json(page)
        return 0
    rows = [[d["from"] or "(scratch)", d["to"], _size(d["size"])] for d in page["results"]]
    _table(["FROM", "TO", "SIZE"], rows)
    return 0


def cmd_version_diff(args: argparse.Namespace) -> int:
    params = {"base": args.base} if args.base is not None else {}
    path = f"{_repo_path(args.name)}/versions/{_seg(args.number)}/diff"
    with _client(args) as api:
        diff = api.get(path, **params)
    if args.json:
        _print_json(diff)
        return 0
    print(f"Version {diff['version']} against version {diff['base']}")
    for r in diff["refs"]["added"]:
        print(f"A ref    {r['name']} {r['commit']}")
    for r in diff["refs"]["removed"]:
        print(f"D ref    {r['name']} {r['commit']}")
    for r in diff["refs"]["moved"]:
        print(f"M ref    {r['name']} {r['from']} -> {r['to']}")
    for c in diff["commits"]["added"]:
        print(f"A commit {c}")
    for c in diff["commits"]["removed"]:
        print(f"D commit {c}")
    return 0


def cmd_orphans_cleanup(args: argparse.Namespace) -> int:
    body: dict[str, Any] = {}
    if args.older_than is not None:
        body["older_than"] = args.older_than
    with _client(args) as api:
        ref = api.request("POST", "/api/v1/orphans/cleanup", json=body)
        task = _run_task(args, api, ref)
    if task is not None:
        if args.json:
            _print_json(task)
        else:
            result = task.get("result") or {}
            print(
                f"Deleted {result.get('files_deleted', 0)} files "
                f"({_size(result.get('bytes_freed', 0))})"
            )
    return 0


# -- the parsers ---------------------------------------------------------------------------


def _common() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(add_help=False)
    g = p.add_argument_group("service connection")
    g.add_argument("--server", help=f"service URL (default: $PYOSTREE_SERVER or {DEFAULT_SERVER})")
    g.add_argument("--token", help="API token (default: $PYOSTREE_TOKEN or DATA_DIR/admin-token)")
    g.add_argument(
        "--data-dir", help=f"where to find admin-token when no token is given ({DEFAULT_DATA_DIR})"
    )
    g.add_argument("--json", action="store_true", help="print the API's JSON")
    return p


def _waiting() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(add_help=False)
    p.add_argument(
        "--no-wait", action="store_true", help="print the task ID and return without waiting"
    )
    return p


def add_client_commands(sub: SubParsers) -> None:
    """Add ``repository``, ``distribution``, ``remote`` and ``task`` to ``pyostree``."""
    common = _common()
    waiting = _waiting()

    def group(parent: SubParsers, name: str, help: str) -> SubParsers:
        p = parent.add_parser(name, help=help, description=help)
        return p.add_subparsers(dest=f"{name}_action", metavar="ACTION", required=True)

    def action(
        parent: SubParsers,
        name: str,
        func: Callable[[argparse.Namespace], int],
        help: str,
        *,
        task: bool = False,
    ) -> argparse.ArgumentParser:
        parents = [common, waiting] if task else [common]
        p = parent.add_parser(name, help=help, description=help, parents=parents)
        p.set_defaults(func=func)
        return p

    # repository
    repo = group(sub, "repository", "repositories on the service (versions, content, imports)")

    def delta_options(p: argparse.ArgumentParser) -> None:
        g = p.add_mutually_exclusive_group()
        g.add_argument("--compute-delta", dest="compute_delta", action="store_const", const=True)
        g.add_argument(
            "--no-compute-delta", dest="compute_delta", action="store_const", const=False
        )
        p.add_argument("--delta-depth", type=int, metavar="N", help="deltas from N parents")
        g = p.add_mutually_exclusive_group()
        g.add_argument(
            "--delta-from-scratch", dest="delta_from_scratch", action="store_const", const=True
        )
        g.add_argument(
            "--no-delta-from-scratch",
            dest="delta_from_scratch",
            action="store_const",
            const=False,
        )

    p = action(repo, "create", cmd_repository_create, "create a repository")
    p.add_argument("name", metavar="NAME")
    p.add_argument("--description")
    p.add_argument("--retain-versions", type=int, metavar="N", help="keep only the last N")
    delta_options(p)
    p = action(repo, "list", cmd_repository_list, "list repositories")
    p = action(repo, "show", cmd_repository_show, "show a repository")
    p.add_argument("name", metavar="NAME")
    p = action(repo, "update", cmd_repository_update, "change a repository's settings")
    p.add_argument("name", metavar="NAME")
    p.add_argument("--description")
    keep = p.add_mutually_exclusive_group()
    keep.add_argument("--retain-versions", type=int, metavar="N")
    keep.add_argument("--retain-all", action="store_true", help="keep every version")
    delta_options(p)
    p = action(repo, "delete", cmd_repository_delete, "delete a repository", task=True)
    p.add_argument("name", metavar="NAME")
    p = action(
        repo, "import", cmd_repository_import, "upload and import a commit archive", task=True
    )
    p.add_argument("name", metavar="NAME")
    p.add_argument("archive", metavar="ARCHIVE", help="tar, .gz, .xz or .zst")
    p.add_argument("--ref", help="extend this ref: the archive must continue its current head")
    p.add_argument("--sha256", metavar="HEX", help="expected sha256 of the whole archive file")

    versions = group(repo, "version", "repository versions")
    p = action(versions, "list", cmd_version_list, "list the versions of a repository")
    p.add_argument("name", metavar="NAME")
    p = action(versions, "show", cmd_version_show, "show one version")
    p.add_argument("name", metavar="NAME")
    p.add_argument("number", metavar="N", type=_version_arg)
    p = action(versions, "delete", cmd_version_delete, "delete one version", task=True)
    p.add_argument("name", metavar="NAME")
    p.add_argument("number", metavar="N", type=_version_arg)

    p = action(versions, "diff", cmd_version_diff, "refs and commits changed between versions")
    p.add_argument("name", metavar="NAME")
    p.add_argument("number", metavar="N", type=_version_arg)
    p.add_argument("--base", type=_version_arg, metavar="M", help="default: the previous one")

    p = action(
        repo,
        "copy",
        cmd_repository_copy,
        "add refs/commits (with closure and history to --depth) from SOURCE to DEST; "
        "without --ref/--commit, copy the whole version",
        task=True,
    )
    p.add_argument("source", metavar="SOURCE")
    p.add_argument("dest", metavar="DEST")
    p.add_argument("--version", type=int, metavar="N", help="SOURCE's version (default: latest)")
    p.add_argument("--ref", action="append", metavar="REF", help="repeatable")
    p.add_argument("--commit", action="append", metavar="C", help="repeatable")
    p.add_argument("--depth", type=int, default=0, metavar="D", help="parents (-1: all)")
    p = action(repo, "remove", cmd_repository_remove, "remove refs/commits", task=True)
    p.add_argument("name", metavar="NAME")
    p.add_argument("--ref", action="append", metavar="REF", help="repeatable")
    p.add_argument("--commit", action="append", metavar="C", help="repeatable")
    p = action(repo, "sync", cmd_repository_sync, "sync from a remote", task=True)
    p.add_argument("name", metavar="NAME")
    p.add_argument("--remote", required=True, metavar="REMOTE")
    p.add_argument("--mirror", action="store_true", help="the version becomes the upstream's")

    deltas = group(repo, "delta", "static deltas of a repository")
    p = action(deltas, "create", cmd_delta_create, "generate a static delta", task=True)
    p.add_argument("name", metavar="NAME")
    p.add_argument("--to", required=True, metavar="C")
    p.add_argument("--from", dest="from_commit", metavar="C", help="default: from scratch")
    p = action(deltas, "list", cmd_delta_list, "list the deltas of a version")
    p.add_argument("name", metavar="NAME")
    p.add_argument("--version", type=_version_arg, default="latest", metavar="N")

    refs = group(repo, "ref", "refs of a repository version")
    p = action(refs, "list", cmd_ref_list, "list the refs of a version")
    p.add_argument("name", metavar="NAME")
    p.add_argument("--version", type=_version_arg, default="latest", metavar="N")
    p.add_argument("--prefix", help="only refs whose name starts with this")

    commits = group(repo, "commit", "commits of a repository version")
    p = action(commits, "list", cmd_commit_list, "list the commits of a version (newest first)")
    p.add_argument("name", metavar="NAME")
    p.add_argument("--version", type=_version_arg, default="latest", metavar="N")
    p.add_argument("--ref", help="only the history of this ref")

    # distribution
    dists = group(sub, "distribution", "distributions: serve a repository to ostree clients")
    p = action(dists, "create", cmd_distribution_create, "create a distribution")
    p.add_argument("name", metavar="NAME")
    p.add_argument("--base-path", required=True, metavar="P", help="served at /content/P/")
    p.add_argument("--repository", required=True, metavar="R")
    p.add_argument("--version", type=int, metavar="N", help="pin a version (default: latest)")
    p.add_argument("--private", action="store_true", help="require a token to pull")
    p = action(dists, "list", cmd_distribution_list, "list distributions")
    p = action(dists, "show", cmd_distribution_show, "show a distribution")
    p.add_argument("name", metavar="NAME")
    p = action(dists, "update", cmd_distribution_update, "change a distribution")
    p.add_argument("name", metavar="NAME")
    p.add_argument("--base-path", metavar="P")
    p.add_argument("--repository", metavar="R")
    pin = p.add_mutually_exclusive_group()
    pin.add_argument("--version", type=int, metavar="N", help="pin this version")
    pin.add_argument("--latest", action="store_true", help="follow the latest version")
    vis = p.add_mutually_exclusive_group()
    vis.add_argument("--private", dest="private", action="store_const", const=True)
    vis.add_argument("--public", dest="private", action="store_const", const=False)
    p = action(dists, "delete", cmd_distribution_delete, "delete a distribution")
    p.add_argument("name", metavar="NAME")

    # remote
    remotes = group(sub, "remote", "remotes: upstream ostree repositories to sync from")

    def remote_options(p: argparse.ArgumentParser, *, create: bool) -> None:
        p.add_argument("--url", required=create, help="the upstream repository's URL")
        p.add_argument("--include-ref", action="append", metavar="GLOB", help="repeatable")
        p.add_argument("--exclude-ref", action="append", metavar="GLOB", help="repeatable")
        p.add_argument("--depth", type=int, metavar="D", help="parent commits (-1: all)")
        p.add_argument("--proxy-url")
        p.add_argument("--username")
        p.add_argument("--password")
        tls = p.add_mutually_exclusive_group()
        tls.add_argument(
            "--no-tls-validation", dest="tls_validation", action="store_const", const=False
        )
        tls.add_argument(
            "--tls-validation", dest="tls_validation", action="store_const", const=True
        )

    p = action(remotes, "create", cmd_remote_create, "create a remote")
    p.add_argument("name", metavar="NAME")
    remote_options(p, create=True)
    p = action(remotes, "list", cmd_remote_list, "list remotes")
    p = action(remotes, "show", cmd_remote_show, "show a remote")
    p.add_argument("name", metavar="NAME")
    p = action(remotes, "update", cmd_remote_update, "change a remote")
    p.add_argument("name", metavar="NAME")
    remote_options(p, create=False)
    p = action(remotes, "delete", cmd_remote_delete, "delete a remote")
    p.add_argument("name", metavar="NAME")

    # orphans
    orphans = group(sub, "orphans", "pool files and rows no repository version references")
    p = action(orphans, "cleanup", cmd_orphans_cleanup, "delete orphans (a task)", task=True)
    p.add_argument("--older-than", type=float, metavar="SECONDS", help="spare newer files")

    # task
    tasks = group(sub, "task", "tasks: imports, deletions and other long operations")
    p = action(tasks, "list", cmd_task_list, "list tasks (newest first)")
    p.add_argument("--state", choices=TASK_STATES)
    p = action(tasks, "show", cmd_task_show, "show a task with its progress and error")
    p.add_argument("id", metavar="ID")
    p = action(tasks, "cancel", cmd_task_cancel, "cancel a waiting or running task")
    p.add_argument("id", metavar="ID")
