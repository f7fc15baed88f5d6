"""A small reader/writer for GLib key files (the repository ``config``).

Only what ostree's ``config`` uses: ``[group]`` headers, ``key=value`` lines,
``#`` comments and blank lines.  Anything else is an error, so a garbage config
is reported rather than half-understood.
"""

from __future__ import annotations

from .errors import RepoError


class KeyFile:
    """Ordered groups of ordered ``key=value`` pairs."""

    def __init__(self) -> None:
        self.groups: dict[str, dict[str, str]] = {}

    @classmethod
    def parse(cls, text: str, *, source: str = "key file") -> KeyFile:
        keyfile = cls()
        group: dict[str, str] | None = None
        for lineno, raw in enumerate(text.splitlines(), 1):
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            if line.startswith("[") and line.endswith("]") and len(line) > 2:
                group = keyfile.groups.setdefault(line[1:-1], {})
                continue
            if group is None or "=" not in line:
                raise RepoError(f"{source}: line {lineno} is not a group or key=value: {raw!r:.80}")
            key, _, value = line.partition("=")
            key = key.strip()
            if not key:
                raise RepoError(f"{source}: line {lineno} has an empty key")
            group[key] = value.strip()
        return keyfile

    def get(self, group: str, key: str, default: str | None = None) -> str | None:
        return self.groups.get(group, {}).get(key, default)

    def get_bool(self, group: str, key: str, default: bool = False) -> bool:
        value = self.get(group, key)
        if value is None:
            return default
        if value in ("true", "1"):
            return True
        if value in ("false", "0"):
            return False
        raise RepoError(f"Invalid boolean {value!r} for {group}.{key}")

    def set(self, group: str, key: str, value: str) -> None:
        self.groups.setdefault(group, {})[key] = value

    def dumps(self) -> str:
        out = []
        for name, entries in self.groups.items():
            out.append(f"[{name}]")
            out.extend(f"{key}={value}" for key, value in entries.items())
            out.append("")
        return "\n".join(out)
