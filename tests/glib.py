"""GLib as a test oracle for the GVariant codec, and the tagged-JSON value format.

The virtualenv cannot import ``gi``, so GLib is reached through
``/usr/bin/python3 fixtures/glib_oracle.py --serve``: one long-lived subprocess that
answers JSON requests line by line.  Values cross the process boundary as *tagged JSON*
(see the oracle's docstring): bool/int/str as JSON; a double as ``{"d": repr}``;
``ay`` as ``{"ay": hex}``; other arrays as lists; ``a{KV}`` as
``{"dict": [[k, v], ...]}``; tuples and dict entries as ``{"tuple": [...]}``; Nothing as
``null``; a Just of a maybe-typed element as ``{"just": v}``; a variant as
``{"variant": [type, v]}``.

:func:`to_tagged` / :func:`from_tagged` convert between that and libpyostree's Python
values; :func:`value_diff` compares two Python values of a type exactly (floats bit for
bit, ``bool`` never equal to ``int``, dict order significant).
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import struct
import subprocess
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, TypeAlias

from libpyostree.gvariant import Just, Variant

REPO_ROOT = Path(__file__).resolve().parent.parent
ORACLE_SCRIPT = REPO_ROOT / "fixtures" / "glib_oracle.py"
#: The interpreter with python3-gi; GLIB_ORACLE_PYTHON overrides it.
SYSTEM_PYTHON = os.environ.get("GLIB_ORACLE_PYTHON", "/usr/bin/python3")

#: A JSON value in the tagged format.
Tagged: TypeAlias = Any

BASIC_TYPES = "bynqiuxthdsog"

INT_RANGES: dict[str, tuple[int, int]] = {
    "y": (0, 2**8 - 1),
    "n": (-(2**15), 2**15 - 1),
    "q": (0, 2**16 - 1),
    "i": (-(2**31), 2**31 - 1),
    "h": (-(2**31), 2**31 - 1),
    "u": (0, 2**32 - 1),
    "x": (-(2**63), 2**63 - 1),
    "t": (0, 2**64 - 1),
}


# --- type strings -------------------------------------------------------------------


def type_end(sig: str, i: int = 0) -> int:
    """Index just past the complete type that starts at ``sig[i]``."""
    if i >= len(sig):
        raise ValueError(f"truncated type string {sig!r}")
    c = sig[i]
    if c in BASIC_TYPES or c == "v":
        return i + 1
    if c in "am":
        return type_end(sig, i + 1)
    if c == "(":
        i += 1
        while True:
            if i >= len(sig):
                raise ValueError(f"unterminated tuple in {sig!r}")
            if sig[i] == ")":
                return i + 1
            i = type_end(sig, i)
    if c == "{":
        i = type_end(sig, type_end(sig, i + 1))
        if i >= len(sig) or sig[i] != "}":
            raise ValueError(f"bad dict entry in {sig!r}")
        return i + 1
    raise ValueError(f"bad type character {c!r} in {sig!r}")


def split_types(sig: str) -> list[str]:
    """Split a concatenation of complete type strings."""
    out: list[str] = []
    i = 0
    while i < len(sig):
        j = type_end(sig, i)
        out.append(sig[i:j])
        i = j
    return out


def members(type_string: str) -> list[str]:
    """Member types of a tuple or dict entry type."""
    return split_types(type_string[1:-1])


# --- Python value <-> tagged JSON ---------------------------------------------------


def _expect(value: object, kind: type | tuple[type, ...], type_string: str) -> None:
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise TypeError(f"{type_string}: unexpected {type(value).__name__} {value!r}")


def to_tagged(type_string: str, value: object) -> Tagged:
    """Tagged JSON for a Python value of ``type_string``.

    ``Just(x)`` is accepted for any maybe (as ``encode`` accepts it); for a maybe whose
    element is not a maybe it is unwrapped.
    """
    t = type_string
    c = t[0]
    if c == "b":
        _expect(value, bool, t)
        return value
    if c in INT_RANGES:
        _expect(value, int, t)
        return value
    if c == "d":
        _expect(value, float, t)
        assert isinstance(value, float)
        return {"d": repr(value)}
    if c in "sog":
        _expect(value, str, t)
        return value
    if c == "v":
        _expect(value, Variant, t)
        assert isinstance(value, Variant)
        return {"variant": [value.type, to_tagged(value.type, value.value)]}
    if c == "m":
        elem = t[1:]
        if value is None:
            return None
        if elem[0] == "m":
            _expect(value, Just, t)
        if isinstance(value, Just):
            value = value.value
        inner = to_tagged(elem, value)
        return {"just": inner} if elem[0] == "m" else inner
    if c == "a":
        elem = t[1:]
        if elem == "y":
            _expect(value, bytes, t)
            assert isinstance(value, bytes)
            return {"ay": value.hex()}
        if elem[0] == "{":
            _expect(value, dict, t)
            assert isinstance(value, dict)
            ktype, vtype = members(elem)
            return {"dict": [[to_tagged(ktype, k), to_tagged(vtype, v)] for k, v in value.items()]}
        _expect(value, list, t)
        assert isinstance(value, list)
        return [to_tagged(elem, item) for item in value]
    if c in "({":
        _expect(value, tuple, t)
        assert isinstance(value, tuple)
        types = members(t)
        if len(value) != len(types):
            raise TypeError(f"{t}: {len(value)} items for {len(types)} members")
        return {"tuple": [to_tagged(m, v) for m, v in zip(types, value, strict=True)]}
    raise ValueError(f"unsupported type string {t!r}")


def _untag(tagged: Tagged, key: str, type_string: str) -> Any:
    if not isinstance(tagged, dict) or list(tagged) != [key]:
        raise TypeError(f"{type_string}: expected {{{key!r}: ...}}, got {tagged!r}")
    return tagged[key]


def _parse_float(text: Any) -> float:
    if not isinstance(text, str):
        raise TypeError(f"d: expected a repr string, got {text!r}")
    if text.lstrip("+-").startswith("0x"):
        return float.fromhex(text)
    return float(text)


def from_tagged(type_string: str, tagged: Tagged) -> Any:
    """The canonical Python value for tagged JSON of ``type_string``.

    Just is used only for maybes whose element type is a maybe.  Duplicate dict keys
    collapse as in any Python dict (the last value wins).
    """
    t = type_string
    c = t[0]
    if c == "b":
        _expect(tagged, bool, t)
        return tagged
    if c in INT_RANGES:
        _expect(tagged, int, t)
        return tagged
    if c == "d":
        return _parse_float(_untag(tagged, "d", t))
    if c in "sog":
        _expect(tagged, str, t)
        return tagged
    if c == "v":
        vtype, inner = _untag(tagged, "variant", t)
        return Variant(vtype, from_tagged(vtype, inner))
    if c == "m":
        elem = t[1:]
        if tagged is None:
            return None
        if elem[0] == "m":
            return Just(from_tagged(elem, _untag(tagged, "just", t)))
        return from_tagged(elem, tagged)
    if c == "a":
        elem = t[1:]
        if elem == "y":
            return bytes.fromhex(_untag(tagged, "ay", t))
        if elem[0] == "{":
            ktype, vtype = members(elem)
            return {
                from_tagged(ktype, k): from_tagged(vtype, v) for k, v in _untag(tagged, "dict", t)
            }
        _expect(tagged, list, t)
        return [from_tagged(elem, item) for item in tagged]
    if c in "({":
        items = _untag(tagged, "tuple", t)
        types = members(t)
        if not isinstance(items, list) or len(items) != len(types):
            raise TypeError(f"{t}: expected {len(types)} tuple items, got {items!r}")
        return tuple(from_tagged(m, v) for m, v in zip(types, items, strict=True))
    raise ValueError(f"unsupported type string {t!r}")


def canonical(type_string: str, value: object) -> Any:
    """``value`` as decode returns it: Just unwrapped where the element is no maybe."""
    return from_tagged(type_string, to_tagged(type_string, value))


def has_duplicate_keys(type_string: str, tagged: Tagged) -> bool:
    """Whether a tagged value holds an ``a{KV}`` with keys equal as Python dict keys."""
    t = type_string
    c = t[0]
    if c in BASIC_TYPES or tagged is None:
        return False
    if c == "v":
        vtype, inner = tagged["variant"]
        return has_duplicate_keys(vtype, inner)
    if c == "m":
        elem = t[1:]
        return has_duplicate_keys(elem, tagged["just"] if elem[0] == "m" else tagged)
    if c == "a":
        elem = t[1:]
        if elem == "y":
            return False
        if elem[0] == "{":
            ktype, vtype = members(elem)
            entries = tagged["dict"]
            keys = [from_tagged(ktype, k) for k, _ in entries]
            if len(set(keys)) != len(keys):
                return True
            return any(has_duplicate_keys(vtype, v) for _, v in entries)
        return any(has_duplicate_keys(elem, item) for item in tagged)
    if c in "({":
        return any(
            has_duplicate_keys(m, v) for m, v in zip(members(t), tagged["tuple"], strict=True)
        )
    raise ValueError(f"unsupported type string {t!r}")


# --- exact comparison ---------------------------------------------------------------


def same_float(a: float, b: float) -> bool:
    """Bit-exact float equality (so ``-0.0 != 0.0``); any two NaNs are equal."""
    if math.isnan(a) and math.isnan(b):
        return True  # payloads do not survive tagged JSON; byte comparisons check them
    return struct.pack("<d", a) == struct.pack("<d", b)


def _short(value: object, limit: int = 300) -> str:
    text = repr(value)
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} chars)"


def value_diff(type_string: str, actual: object, expected: object, path: str = "$") -> str | None:
    """``None`` if ``actual`` is exactly ``expected`` as a ``type_string`` value.

    Otherwise a description of the first difference, with a path into the value.
    Python types must match exactly (``True`` is not ``1``, a list is not a tuple), floats
    are compared bit for bit, dicts item by item in order, Just only where the
    element type is a maybe.
    """
    t = type_string

    def differ(why: str = "") -> str:
        extra = f" ({why})" if why else ""
        return f"{path} [{t}]: got {_short(actual)}, expected {_short(expected)}{extra}"

    c = t[0]
    if c == "b":
        return None if type(actual) is bool and actual == expected else differ()
    if c in INT_RANGES:
        return None if type(actual) is int and actual == expected else differ()
    if c == "d":
        if type(actual) is not float or not isinstance(expected, float):
            return differ("not a float")
        return None if same_float(actual, expected) else differ("float bits differ")
    if c in "sog":
        return None if type(actual) is str and actual == expected else differ()
    if c == "v":
        if not isinstance(actual, Variant) or not isinstance(expected, Variant):
            return differ("not a Variant")
        if actual.type != expected.type:
            return differ("variant types differ")
        return value_diff(actual.type, actual.value, expected.value, f"{path}.value")
    if c == "m":
        elem = t[1:]
        if actual is None or expected is None:
            return None if actual is None and expected is None else differ()
        if elem[0] == "m":
            if not isinstance(actual, Just) or not isinstance(expected, Just):
                return differ("Just expected for a maybe of a maybe")
            return value_diff(elem, actual.value, expected.value, f"{path}.just")
        if isinstance(actual, Just):
            return differ("Just only belongs to maybes of maybes")
        return value_diff(elem, actual, expected, path)
    if c == "a":
        elem = t[1:]
        if elem == "y":
            return None if type(actual) is bytes and actual == expected else differ()
        if elem[0] == "{":
            if type(actual) is not dict or not isinstance(expected, dict):
                return differ("not a dict")
            if len(actual) != len(expected):
                return differ("lengths differ")
            ktype, vtype = members(elem)
            for n, ((ak, av), (ek, ev)) in enumerate(
                zip(actual.items(), expected.items(), strict=True)
            ):
                diff = value_diff(ktype, ak, ek, f"{path}.key[{n}]") or value_diff(
                    vtype, av, ev, f"{path}[{ak!r}]"
                )
                if diff:
                    return diff
            return None
        if type(actual) is not list or not isinstance(expected, list):
            return differ("not a list")
        if len(actual) != len(expected):
            return differ("lengths differ")
        for n, (a, e) in enumerate(zip(actual, expected, strict=True)):
            diff = value_diff(elem, a, e, f"{path}[{n}]")
            if diff:
                return diff
        return None
    if c in "({":
        if type(actual) is not tuple or not isinstance(expected, tuple):
            return differ("not a tuple")
        types = members(t)
        if len(actual) != len(types) or len(expected) != len(types):
            return differ("wrong number of members")
        for n, (m, a, e) in enumerate(zip(types, actual, expected, strict=True)):
            diff = value_diff(m, a, e, f"{path}[{n}]")
            if diff:
                return diff
        return None
    raise ValueError(f"unsupported type string {t!r}")


def assert_same_value(type_string: str, actual: object, expected: object) -> None:
    diff = value_diff(type_string, actual, expected)
    assert diff is None, diff


# --- the oracle process -------------------------------------------------------------


@dataclass(frozen=True)
class GLibReading:
    """GLib's view of untrusted bytes."""

    #: ``g_variant_is_normal_form()``
    normal: bool
    #: the bytes of ``g_variant_get_normal_form()``
    normal_form: bytes
    #: what GLib's serializer writes for the value read; equal to ``normal_form`` except
    #: where GLib calls bytes normal that it would not write itself (``(ayay)`` as b"")
    canonical: bytes
    #: the value read, as tagged JSON
    tagged: Tagged


class OracleError(RuntimeError):
    """The GLib oracle refused a request, or died."""


def _oracle_env() -> dict[str, str]:
    env = dict(os.environ)
    for name in ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "PYTHONSAFEPATH"):
        env.pop(name, None)
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    return env


def glib_unavailable_reason(python: str = SYSTEM_PYTHON) -> str | None:
    """Why GLib cannot be used through ``python``, or None when it can."""
    probe = "import gi; gi.require_version('GLib', '2.0'); from gi.repository import GLib"
    try:
        proc = subprocess.run(
            [python, "-c", probe],
            capture_output=True,
            text=True,
            env=_oracle_env(),
            timeout=120,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as e:
        return f"cannot run {python}: {e}"
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["(no message)"])[-1]
        return f"{python} cannot load GLib through python3-gi: {last}"
    return None


class GLibOracle:
    """A ``glib_oracle.py --serve`` subprocess; restarted if it dies."""

    def __init__(self, python: str = SYSTEM_PYTHON, script: Path = ORACLE_SCRIPT) -> None:
        self._argv = [python, str(script), "--serve"]
        self._proc: subprocess.Popen[str] | None = None

    def __enter__(self) -> GLibOracle:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _process(self) -> subprocess.Popen[str]:
        if self._proc is not None and self._proc.poll() is not None:
            self._reap()
        if self._proc is None:
            self._proc = subprocess.Popen(
                self._argv,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
                encoding="utf-8",
                env=_oracle_env(),
            )
        return self._proc

    def _reap(self) -> int | None:
        proc, self._proc = self._proc, None
        if proc is None:
            return None
        for stream in (proc.stdin, proc.stdout):
            if stream is not None:
                with contextlib.suppress(OSError):
                    stream.close()
        try:
            return proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            return proc.wait()

    def close(self) -> None:
        self._reap()

    def request(self, req: dict[str, Any]) -> dict[str, Any]:
        """Send one request; the reply, or OracleError for an error reply or a crash."""
        proc = self._process()
        assert proc.stdin is not None and proc.stdout is not None
        line = ""
        try:
            proc.stdin.write(json.dumps(req) + "\n")
            proc.stdin.flush()
            line = proc.stdout.readline()
        except (BrokenPipeError, ConnectionResetError):
            line = ""
        if not line:
            status = self._reap()
            raise OracleError(f"GLib oracle exited with status {status} on request {req!r}")
        reply: dict[str, Any] = json.loads(line)
        if "error" in reply:
            raise OracleError(f"GLib oracle: {reply['error']} (request {req!r})")
        return reply

    def encode_tagged(self, type_string: str, tagged: Tagged) -> bytes:
        reply = self.request({"op": "encode", "type": type_string, "value": tagged})
        return bytes.fromhex(reply["hex"])

    def encode(self, type_string: str, value: object) -> bytes:
        """GLib's serialization of a Python value of ``type_string``."""
        return self.encode_tagged(type_string, to_tagged(type_string, value))

    def read_full(self, type_string: str, data: bytes) -> GLibReading:
        """Everything GLib says about untrusted ``data`` of ``type_string``."""
        reply = self.request({"op": "read", "type": type_string, "hex": data.hex()})
        return GLibReading(
            normal=bool(reply["normal"]),
            normal_form=bytes.fromhex(reply["normal_form_hex"]),
            canonical=bytes.fromhex(reply["canonical_hex"]),
            tagged=reply["value"],
        )

    def read(self, type_string: str, data: bytes) -> tuple[bool, bytes, Any]:
        """GLib's reading of untrusted ``data``: (is normal, normal form, Python value)."""
        reading = self.read_full(type_string, data)
        return reading.normal, reading.normal_form, from_tagged(type_string, reading.tagged)
