"""A deterministic, OS-like OSTree repository for the fsck macro benchmark.

Why a synthetic corpus: benchmarking against a real distribution image would need
network access and would change whenever the image does.  Instead this module writes
a tree that *looks* like ``/usr`` of a Debian-ish system in the ways that matter to
``fsck`` -- the file-count/size distribution (mostly 100 B-50 KB, median ~3 KB, a
few multi-megabyte blobs), the compressibility mix (text deflates ~3x, ELF-like
binaries ~2x, images/firmware not at all), directory shapes (one 5000-entry
directory, chains 8+ levels deep, thousands of small directories), symlinks, empty
files, executables and setuid bits -- and commits it with the real ``ostree`` CLI so
both implementations verify exactly the same objects.

Everything is derived from one seeded :class:`random.Random`; nothing depends on the
clock, the umask or directory-listing order, so the same parameters always give the
same commit checksum (modulo the ``ostree`` version).  Building takes minutes, so a
finished build is marked with ``DEST/.complete-<params-hash>`` and reused.

Three variants:

* :func:`build_corpus` -- one commit of ~45 000 files, ~500 MB; the timing corpus.
* :func:`build_large_corpus` -- a 60 000-file base plus two update commits on the same
  branch that rewrite ~30 % of the files and add new ones: >100 000 objects, for the
  peak-RSS test.

* :func:`build_delta_pair` -- the base corpus and an update of it (1,200 files modified,
  300 removed, 300 added) as two commits, for the static-delta benchmark.

Run ``python benchmarks/corpus.py DEST [--large | --delta-pair BASE]`` to build (or reuse)
one.
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import textwrap
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

#: Bump whenever the generator changes what it writes, so cached corpora are rebuilt.
GENERATOR_VERSION = 1

BRANCH = "os/x86_64/base"
#: Commit timestamps are fixed so that commit checksums are reproducible.
TIMESTAMPS = ("2024-01-01T00:00:00Z", "2024-01-02T00:00:00Z", "2024-01-03T00:00:00Z")
#: Default file count of the timing corpus; large files scale down below it.
BASE_FILES = 45_000
#: The one huge directory, and how many entries it has.
BIG_DIR = "usr/share/man/man3"
BIG_DIR_ENTRIES = 5_000

MIB = 1024 * 1024


@dataclass(frozen=True)
class CorpusParams:
    """Everything that determines a corpus; its hash names the cache marker.

    ``updates`` extra commits each rewrite ``churn`` of the regular files, add
    ``growth * files`` new ones and delete ``removal`` of them -- the shape of an
    OS update, and the cheapest way to get >100k objects without a 1 GB tree.
    """

    files: int = BASE_FILES
    seed: int = 1
    updates: int = 0
    churn: float = 0.30
    growth: float = 0.10
    removal: float = 0.01

    def digest(self) -> str:
        """Short stable hash of the parameters and the generator version."""
        blob = json.dumps({"v": GENERATOR_VERSION, **asdict(self)}, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]


LARGE_PARAMS = CorpusParams(files=60_000, seed=2, updates=2)


# --------------------------------------------------------------------------- content


# Kept as text (split below) because 90 quoted words would be unreadable.
_COMMON_WORDS_TEXT = (
    "the of and to a in is it that for on with as was be by this are or from at an not "
    "which have can if you all will one has but use may when there file more no other "
    "their also only these should new been each used any set default must value such "
    "into system option see data user then so than its like version support would time "
    "list error configuration package output example first following two name path "
    "command program"
)
_COMMON_WORDS = _COMMON_WORDS_TEXT.split()
_ONSETS = ("", "b", "c", "d", "f", "g", "h", "k", "l", "m", "n", "p", "r", "s", "t", "v", "w")
_ONSETS2 = ("st", "tr", "pr", "ch", "sh", "th", "br", "cl")
_VOWELS = ("a", "e", "i", "o", "u", "ea", "ou", "io")
_CODAS = ("", "", "n", "r", "s", "t", "l", "nd", "st", "ng", "m")
_LANGS_TEXT = (
    "af am ar as ast az be bg bn br bs ca cs cy da de el en_AU en_CA en_GB eo es et eu fa fi "
    "fr ga gl gu he hi hr hu hy id is it ja ka kk km kn ko ku lt lv mk ml mn mr ms my nb ne "
    "nl nn oc or pa pl pt pt_BR ro ru si sk sl sq sr sr@latin sv ta te tg th tr ug uk ur uz "
    "vi wa zh_CN zh_HK zh_TW"
)
_LANGS = _LANGS_TEXT.split()


def _zipf_cum(n: int, exponent: float) -> list[float]:
    """Cumulative Zipf weights: a few very common items and a long tail, like language."""
    return list(itertools.accumulate(1.0 / (i + 1) ** exponent for i in range(n)))


class Content:
    """Deterministic byte generators with realistic deflate ratios.

    Generating every byte with ``random`` calls would take far too long for 500 MB,
    so each kind of content is drawn as a slice of a pre-generated *pool* at a random
    offset.  Deflate only looks 32 KiB back, so a file cut from a 2 MB pool compresses
    like the pool's statistics say, yet two files almost never collide (content
    objects are deduplicated by checksum, which would shrink the object count).
    """

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.vocab = self._vocabulary()
        self._word_cum = _zipf_cum(len(self.vocab), 1.1)
        # Phrases re-used with a Zipf law give deflate the repeated strings it finds in
        # real prose; word-by-word sampling alone only reaches ~2x.
        self._phrases = [self._words(rng.randint(2, 5)) for _ in range(4000)]
        self._phrase_cum = _zipf_cum(len(self._phrases), 1.0)
        self.pools: dict[str, bytes] = {
            "text": self._prose_pool(2 * MIB),
            "c": self._c_pool(MIB),
            "py": self._py_pool(MIB),
            "conf": self._conf_pool(MIB // 2),
            "list": self._list_pool(MIB),
            "code": self._code_pool(3 * MIB),
            "symbols": self._symbol_pool(MIB // 2),
        }

    # -- pools ---------------------------------------------------------------------

    def _vocabulary(self) -> list[str]:
        rng = self.rng
        words: set[str] = set()
        while len(words) < 3000:
            syllables = rng.choice((1, 2, 2, 2, 3, 3))
            words.add(
                "".join(
                    rng.choice(_ONSETS + _ONSETS2 if i else _ONSETS)
                    + rng.choice(_VOWELS)
                    + rng.choice(_CODAS)
                    for i in range(syllables)
                )
            )
        # Short words are the frequent ones, as in natural language.  (Sort the set
        # first: its iteration order depends on PYTHONHASHSEED.)
        rare = sorted(words - set(_COMMON_WORDS))
        rare.sort(key=lambda w: len(w) + rng.random() * 4)
        return list(dict.fromkeys(_COMMON_WORDS)) + rare

    def _words(self, k: int) -> str:
        return " ".join(self.rng.choices(self.vocab, cum_weights=self._word_cum, k=k))

    def word(self) -> str:
        """One vocabulary word, for file and directory names."""
        return self.rng.choice(self.vocab[60:1500])

    def ident(self) -> str:
        """A C-ish identifier such as ``foo_bar``."""
        return "_".join(self.word() for _ in range(self.rng.choice((1, 2, 2, 3))))

    def sentence(self) -> str:
        s = " ".join(
            self.rng.choices(self._phrases, cum_weights=self._phrase_cum, k=self.rng.randint(2, 6))
        )
        return s[0].upper() + s[1:] + self.rng.choice(".....?:;")

    def _prose_pool(self, size: int) -> bytes:
        out: list[str] = []
        total = 0
        while total < size:
            para = " ".join(self.sentence() for _ in range(self.rng.randint(2, 8)))
            chunk = textwrap.fill(para, 72) + "\n\n"
            out.append(chunk)
            total += len(chunk)
        return "".join(out).encode()

    def _c_pool(self, size: int) -> bytes:
        rng = self.rng
        out: list[str] = []
        total = 0
        types = ("int", "unsigned int", "size_t", "void", "char *", "const char *", "uint32_t")
        while total < size:
            r = rng.random()
            if r < 0.25:
                name = self.ident().upper()
                line = f"#define {name} {rng.choice(('0x', ''))}{rng.randrange(4096)}"
            elif r < 0.55:
                args = ", ".join(
                    f"{rng.choice(types)} {self.ident()}" for _ in range(rng.randint(0, 4))
                )
                line = f"extern {rng.choice(types)} {self.ident()}({args or 'void'});"
            elif r < 0.75:
                fields = "".join(
                    f"\t{rng.choice(types)} {self.ident()};\n" for _ in range(rng.randint(2, 8))
                )
                line = f"struct {self.ident()} {{\n{fields}}};\n"
            else:
                line = "/* " + textwrap.fill(self.sentence(), 74, subsequent_indent=" * ") + " */"
            out.append(line + "\n")
            total += len(line) + 1
        return "".join(out).encode()

    def _py_pool(self, size: int) -> bytes:
        rng = self.rng
        out: list[str] = []
        total = 0
        while total < size:
            name = self.ident()
            args = ", ".join(["self", *(self.ident() for _ in range(rng.randint(0, 3)))])
            body = "".join(
                f"        {self.ident()} = self.{self.ident()}({self.ident()})\n"
                for _ in range(rng.randint(1, 6))
            )
            chunk = (
                f"    def {name}({args}):\n"
                f'        """{self.sentence()}"""\n'
                f"{body}"
                f"        return {self.ident()}\n\n"
            )
            if rng.random() < 0.1:
                chunk = f"\nclass {self.word().capitalize()}{self.word().capitalize()}:\n" + chunk
            out.append(chunk)
            total += len(chunk)
        return "".join(out).encode()

    def _conf_pool(self, size: int) -> bytes:
        rng = self.rng
        out: list[str] = []
        total = 0
        while total < size:
            r = rng.random()
            if r < 0.3:
                line = "# " + self.sentence()
            elif r < 0.4:
                line = f"\n[{self.word()}]"
            else:
                value = rng.choice(
                    (self.word(), str(rng.randrange(10000)), "yes", "no", f"/{self.word()}")
                )
                line = f"{self.ident()} = {value}"
            out.append(line + "\n")
            total += len(line) + 1
        return "".join(out).encode()

    def _list_pool(self, size: int) -> bytes:
        """File lists (dpkg ``*.list``): long shared prefixes, so deflate does ~5x."""
        rng = self.rng
        out: list[str] = []
        total = 0
        prefixes = ("/usr/share/doc/", "/usr/lib/", "/usr/share/man/man1/", "/usr/include/")
        while total < size:
            pkg = self.word()
            for _ in range(rng.randint(3, 30)):
                line = f"{rng.choice(prefixes)}{pkg}/{self.word()}.{rng.choice(('h', 'so', 'gz'))}"
                out.append(line + "\n")
                total += len(line) + 1
        return "".join(out).encode()

    def _code_pool(self, size: int) -> bytes:
        """Machine-code-like bytes: Zipf-distributed random "instructions" (~1.6x)."""
        rng = self.rng
        insns = [rng.randbytes(rng.choice((1, 2, 2, 3, 3, 4, 5, 5, 6, 7))) for _ in range(1500)]
        cum = _zipf_cum(len(insns), 0.9)
        out = bytearray()
        while len(out) < size:
            out += b"".join(rng.choices(insns, cum_weights=cum, k=100_000))
        return bytes(out[:size])

    def _symbol_pool(self, size: int) -> bytes:
        out: list[str] = []
        total = 0
        while total < size:
            sym = self.ident() + self.rng.choice(("", "", "@GLIBC_2.2.5", "@@LIB_1.0"))
            out.append(sym)
            total += len(sym) + 1
        return "\0".join(out).encode()

    # -- files ---------------------------------------------------------------------

    def take(self, pool: str, n: int) -> bytes:
        """``n`` bytes of ``pool`` starting at a random offset, wrapping around."""
        data = self.pools[pool]
        parts: list[bytes] = []
        while n > 0:
            off = self.rng.randrange(len(data))
            chunk = data[off : off + n]
            parts.append(chunk)
            n -= len(chunk)
        return b"".join(parts)

    def elf(self, size: int) -> bytes:
        """An ELF-shaped blob: code, strings, data, zero padding, symbols (~2x deflate)."""
        rng = self.rng
        header = b"\x7fELF\x02\x01\x01" + bytes(9) + rng.randbytes(48)
        body = max(0, size - len(header))
        code = body * 50 // 100
        rodata = body * 15 // 100
        data = body * 10 // 100
        zeros = body * 10 // 100
        symbols = body - code - rodata - data - zeros
        return b"".join(
            (
                header,
                self.take("code", code),
                self.take("text", rodata),
                rng.randbytes(data),
                bytes(zeros),
                self.take("symbols", symbols),
            )
        )[:size]

    def make(self, kind: str, size: int) -> bytes:
        """Bytes of the given kind and exact size."""
        if kind == "empty" or size <= 0:
            return b""
        if kind in ("text", "c", "py", "conf", "list"):
            return self.take(kind, size)
        if kind == "elf":
            return self.elf(size)
        if kind == "mo":
            # gettext catalogue: magic, a table of offsets, then text.
            head = b"\xde\x12\x04\x95" + self.rng.randbytes(min(size // 8, 4096))
            return (head + self.take("text", size))[:size]
        if kind == "random":
            # Already-compressed data: PNG, gzip, firmware, fonts.
            return self.rng.randbytes(size)
        raise ValueError(f"unknown content kind {kind!r}")


# (median bytes, sigma, min, max) of a lognormal size distribution per file class.
_SIZES: dict[str, tuple[int, float, int, int]] = {
    "doc": (2000, 1.2, 100, 400_000),
    "c": (3500, 1.1, 200, 300_000),
    "py": (3000, 1.2, 100, 300_000),
    "conf": (800, 1.1, 40, 60_000),
    "list": (1500, 1.3, 60, 200_000),
    "bin": (14_000, 1.2, 4096, 3_000_000),
    "lib": (16_000, 1.3, 4096, 4_000_000),
    "ko": (12_000, 1.0, 4096, 1_000_000),
    "mo": (5000, 1.0, 300, 200_000),
    "png": (1200, 1.1, 100, 200_000),
    "man": (2000, 0.8, 300, 60_000),
    "tz": (1500, 0.6, 100, 20_000),
}

# Files of a few MB each, ~100 MB together at full scale, mixed compressibility.
_LARGE_FILES: tuple[tuple[str, str, int], ...] = (
    ("usr/lib/firmware/brcm/brcmfmac-fw-bundle.bin", "random", 28),
    ("usr/lib/x86_64-linux-gnu/libLLVM-15.so.1", "elf", 24),
    ("usr/lib/locale/locale-archive", "mo", 14),
    ("usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc", "random", 12),
    ("var/cache/apt/pkgcache.bin", "list", 10),
    ("usr/lib/modules/6.1.0-18-amd64/vmlinuz", "random", 8),
    ("usr/share/hwdata/pci.ids", "text", 4),
)

_SETUID = ("su", "sudo", "passwd", "mount", "umount", "newgrp", "chsh", "chfn", "gpasswd")
_SETGID = ("wall", "ssh-agent", "crontab")


# ------------------------------------------------------------------------------ tree


@dataclass
class TreeStats:
    """What the generator wrote; saved to ``corpus.json`` for the benchmark report."""

    regular_files: int = 0
    empty_files: int = 0
    symlinks: int = 0
    directories: int = 0
    total_bytes: int = 0
    max_depth: int = 0
    largest_directory: int = 0
    median_file_size: int = 0
    setuid_files: int = 0
    commits: list[str] = field(default_factory=list)


class TreeWriter:
    """Writes files with Python (no per-file subprocess) and remembers what it wrote.

    The record of every regular file (kind, mode, size) is what lets the update
    commits of the large corpus rewrite files with content of the same kind.
    """

    def __init__(self, root: Path, rng: random.Random, content: Content) -> None:
        self.root = root
        self.rng = rng
        self.content = content
        # relpath -> (size class, content kind, mode)
        self.files: dict[str, tuple[str, str, int]] = {}
        self.symlinks: dict[str, str] = {}
        self.dirs: set[str] = set()
        self.pinned: set[str] = set()  # files the update commits must not touch

    def size_for(self, size_class: str) -> int:
        median, sigma, lo, hi = _SIZES[size_class]
        return max(lo, min(hi, int(self.rng.lognormvariate(0.0, sigma) * median)))

    def mkdir(self, rel: str, mode: int = 0o755) -> None:
        if not rel or rel in self.dirs:
            return
        parent = os.path.dirname(rel)
        if parent:
            self.mkdir(parent)
        path = self.root / rel
        path.mkdir(exist_ok=True)
        os.chmod(path, mode)
        self.dirs.add(rel)

    def write(
        self, rel: str, size_class: str, kind: str, mode: int = 0o644, size: int | None = None
    ) -> None:
        """Write one regular file; ``size`` defaults to a draw from ``size_class``."""
        if size is None:
            size = 0 if kind == "empty" else self.size_for(size_class)
        self.write_bytes(rel, self.content.make(kind, size), mode)
        self.files[rel] = (size_class, kind, mode)

    def write_bytes(self, rel: str, data: bytes, mode: int) -> None:
        self.mkdir(os.path.dirname(rel))
        fd = os.open(self.root / rel, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fchmod(fd, mode)
        finally:
            os.close(fd)

    def symlink(self, rel: str, target: str) -> None:
        self.mkdir(os.path.dirname(rel))
        os.symlink(target, self.root / rel)
        self.symlinks[rel] = target

    def unique(self, rel: str) -> str:
        """``rel`` or, if taken, ``rel`` with a numeric suffix before the extension."""
        if rel not in self.files and rel not in self.symlinks and rel not in self.dirs:
            return rel
        stem, dot, ext = rel.rpartition(".")
        if not dot or "/" in ext:
            stem, ext = rel, ""
        for n in itertools.count(2):
            cand = f"{stem}-{n}.{ext}" if ext else f"{stem}-{n}"
            if cand not in self.files and cand not in self.symlinks and cand not in self.dirs:
                return cand
        raise AssertionError("unreachable")


class Grower:
    """Grows a directory hierarchy under a base directory as files are placed.

    Each file lands in an existing directory, or with probability ``p_new`` in a new
    subdirectory of a random existing one, which yields the bushy-but-deep shape of
    real ``include``/``site-packages`` trees (~8 files per directory, depths up to
    ``max_depth`` below the base).
    """

    def __init__(self, tw: TreeWriter, base: str, p_new: float = 0.12, max_depth: int = 7) -> None:
        self.tw = tw
        self.base = base
        self.p_new = p_new
        self.max_depth = max_depth
        self.dirs: list[tuple[str, int]] = [(base, 0)]

    def pick(self) -> str:
        rng = self.tw.rng
        if rng.random() < self.p_new or len(self.dirs) == 1:
            parent, depth = rng.choice(self.dirs)
            if depth < self.max_depth:
                child = (self.tw.unique(f"{parent}/{self.tw.content.word()}"), depth + 1)
                self.tw.mkdir(child[0])
                self.dirs.append(child)
                return child[0]
        return rng.choice(self.dirs)[0]


def _generate_tree(tw: TreeWriter, n_files: int) -> None:
    """Lay out the whole base tree; the sections below mirror a Debian ``/``."""
    rng, content = tw.rng, tw.content
    scale = min(1.0, n_files / BASE_FILES)

    # Top-level skeleton: merged-/usr symlinks to directories, special modes.
    for d in ("usr/bin", "usr/sbin", "usr/lib", "usr/lib64", "etc", "var/lib", "var/cache"):
        tw.mkdir(d)
    for d in ("dev", "proc", "sys", "run", "home", "mnt", "opt", "srv", "boot", "var/log"):
        tw.mkdir(d)
    tw.mkdir("root", 0o700)
    tw.mkdir("tmp", 0o1777)
    tw.mkdir("var/tmp", 0o1777)
    for name in ("bin", "sbin", "lib"):
        tw.symlink(name, f"usr/{name}")
    tw.symlink("lib64", "usr/lib64")
    tw.symlink("usr/lib64/ld-linux-x86-64.so.2", "/usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2")

    # Large files first so that their number does not depend on n_files.
    for rel, kind, mb in _LARGE_FILES:
        size = int(mb * MIB * scale) + rng.randrange(4096)
        tw.write(rel, "lib", kind, size=size)
        tw.pinned.add(rel)
    budget = n_files - len(_LARGE_FILES)

    big_dir_entries = BIG_DIR_ENTRIES if n_files >= 4 * BIG_DIR_ENTRIES else n_files // 9
    big_dir_files = big_dir_entries - big_dir_entries // 10
    shares = {
        "bin": 0.035,
        "sbin": 0.008,
        "lib": 0.07,
        "python": 0.13,
        "modules": 0.05,
        "include": 0.09,
        "locale": 0.12,
        "icons": 0.05,
        "man": 0.025,
        "etc": 0.025,
        "dpkg": 0.05,
        "zoneinfo": 0.012,
    }
    counts = {name: int(budget * share) for name, share in shares.items()}
    counts["doc"] = budget - sum(counts.values()) - big_dir_files

    # /usr/bin, /usr/sbin: executables, a few setuid/setgid.
    for name in _SETUID:
        tw.write(f"usr/bin/{name}", "bin", "elf", 0o4755)
    for name in _SETGID:
        tw.write(f"usr/bin/{name}", "bin", "elf", 0o2755)
    for _ in range(counts["bin"] - len(_SETUID) - len(_SETGID)):
        tw.write(tw.unique(f"usr/bin/{content.word()}"), "bin", "elf", 0o755)
    for _ in range(counts["sbin"]):
        tw.write(tw.unique(f"usr/sbin/{content.word()}"), "bin", "elf", 0o755)
    tw.write("usr/lib/dbus-1.0/dbus-daemon-launch-helper", "bin", "elf", 0o4754)
    tw.write("usr/lib/os-release", "conf", "conf")

    # Shared libraries with the usual versioned symlink chains (relative), and as many
    # plugin modules in subdirectories (kept out of libdir so man3 stays the one huge
    # directory).
    libdir = "usr/lib/x86_64-linux-gnu"
    for _ in range(counts["lib"] // 2):
        major = rng.randrange(7)
        base = f"lib{content.word()}{rng.choice(('', '', '-2', 'c', 'util'))}.so"
        real = tw.unique(f"{libdir}/{base}.{major}.{rng.randrange(30)}.{rng.randrange(10)}")
        tw.write(real, "lib", "elf", 0o644)
        soname = f"{libdir}/{base}.{major}"
        if soname not in tw.symlinks and soname not in tw.files:
            tw.symlink(soname, os.path.basename(real))
            if rng.random() < 0.3 and f"{libdir}/{base}" not in tw.symlinks:
                tw.symlink(f"{libdir}/{base}", os.path.basename(soname))
    plugin_growers = [
        Grower(tw, f"{libdir}/{name}", p_new=0.08, max_depth=3)
        for name in ("gstreamer-1.0", "qt6/plugins", "dri", "gdk-pixbuf-2.0/2.10.0", "perl5/5.36")
    ]
    for _ in range(counts["lib"] - counts["lib"] // 2):
        d = rng.choice(plugin_growers).pick()
        tw.write(tw.unique(f"{d}/lib{content.ident()}.so"), "lib", "elf", 0o644)
    tw.write(f"{libdir}/ld-linux-x86-64.so.2.36", "lib", "elf", 0o755)
    tw.symlink(f"{libdir}/ld-linux-x86-64.so.2", "ld-linux-x86-64.so.2.36")

    # Python packages: deep trees, empty __init__.py files, some directory symlinks.
    grower = Grower(tw, "usr/lib/python3/dist-packages", p_new=0.15, max_depth=7)
    for _ in range(counts["python"]):
        d = grower.pick()
        if f"{d}/__init__.py" not in tw.files and rng.random() < 0.5:
            tw.write(f"{d}/__init__.py", "py", "empty")
        else:
            tw.write(tw.unique(f"{d}/{content.ident()}.py"), "py", "py")
    for d, depth in grower.dirs[1:40]:
        if depth == 1:
            tw.symlink(tw.unique(f"{d}/data"), f"../../../../share/{os.path.basename(d)}")

    # Kernel modules: naturally 9-11 levels deep.
    kernel = "usr/lib/modules/6.1.0-18-amd64/kernel"
    subsystems = [
        "drivers/net/ethernet/intel",
        "drivers/net/wireless/realtek/rtw88",
        "drivers/gpu/drm/amd/amdgpu",
        "drivers/media/usb/gspca/m5602",
        "sound/soc/intel/boards",
        "fs/nls",
        "net/netfilter/ipvs",
        "drivers/scsi",
    ]
    for _ in range(counts["modules"]):
        sub = rng.choice(subsystems)
        if rng.random() < 0.3 and sub.count("/") < 5:
            sub = f"{sub}/{content.word()}"
            subsystems.append(sub)
        tw.write(tw.unique(f"{kernel}/{sub}/{content.word()}.ko"), "ko", "elf")

    # Headers: a grown tree per library.
    include_growers = [
        Grower(tw, f"usr/include/{name}", p_new=0.1, max_depth=6)
        for name in ("boost", "linux", "gtk-4.0/gtk", "qt6/QtCore", "x86_64-linux-gnu/bits")
    ]
    for _ in range(counts["include"]):
        d = rng.choice(include_growers).pick()
        tw.write(tw.unique(f"{d}/{content.ident()}.{rng.choice(('h', 'h', 'hpp'))}"), "c", "c")

    # Translations: one catalogue per (language, domain).
    n_locale = counts["locale"]
    domains = max(1, -(-n_locale // int(len(_LANGS) * 0.8)))
    domain_names = list(dict.fromkeys(content.word() for _ in range(domains)))
    written = 0
    for domain, lang in itertools.product(domain_names, _LANGS):
        if written == n_locale:
            break
        if rng.random() < 0.8:
            rel = tw.unique(f"usr/share/locale/{lang}/LC_MESSAGES/{domain}.mo")
            tw.write(rel, "mo", "mo")
            written += 1
    while written < n_locale:
        tw.write(tw.unique(f"usr/share/locale/{rng.choice(_LANGS)}/LC_MESSAGES/x.mo"), "mo", "mo")
        written += 1

    # Icons: incompressible PNGs and compressible SVGs.
    sizes = ("16x16", "22x22", "24x24", "32x32", "48x48", "64x64", "128x128", "256x256")
    cats = ("apps", "actions", "devices", "mimetypes", "places", "status")
    for _ in range(counts["icons"]):
        if rng.random() < 0.15:
            rel = f"usr/share/icons/hicolor/scalable/{rng.choice(cats)}/{content.word()}.svg"
            tw.write(tw.unique(rel), "png", "conf")
        else:
            rel = f"usr/share/icons/hicolor/{rng.choice(sizes)}/{rng.choice(cats)}"
            tw.write(tw.unique(f"{rel}/{content.word()}.png"), "png", "random")

    # Man pages: the one very large directory (man3), plus a few smaller sections.
    man3 = BIG_DIR
    for _ in range(big_dir_files):
        tw.write(tw.unique(f"{man3}/{content.ident()}.3.gz"), "man", "random")
    pages = sorted(p for p in tw.files if p.startswith(man3 + "/"))
    for _ in range(big_dir_entries - big_dir_files):
        alias = tw.unique(f"{man3}/{content.ident()}.3.gz")
        tw.symlink(alias, os.path.basename(rng.choice(pages)))
    for _ in range(counts["man"]):
        section = rng.choice(("1", "1", "5", "7", "8"))
        rel = f"usr/share/man/man{section}/{content.word()}.{section}.gz"
        tw.write(tw.unique(rel), "man", "random")

    # /etc: configs, restrictive modes, absolute and relative (some dangling) symlinks.
    etc_dirs = ["etc"]
    for _ in range(40):
        etc_dirs.append(tw.unique(f"etc/{content.word()}{rng.choice(('', '.d'))}"))
        tw.mkdir(etc_dirs[-1])
    for _ in range(counts["etc"]):
        rel = tw.unique(f"{rng.choice(etc_dirs)}/{content.word()}{rng.choice(('.conf', ''))}")
        tw.write(rel, "conf", "empty" if rng.random() < 0.05 else "conf")
    for name, mode in (("shadow", 0o640), ("gshadow", 0o640), ("sudoers", 0o440)):
        tw.write(f"etc/{name}", "conf", "conf", mode)
    for key in ("rsa", "ecdsa", "ed25519"):
        tw.write(f"etc/ssh/ssh_host_{key}_key", "conf", "random", 0o600, size=400)
    tw.symlink("etc/localtime", "/usr/share/zoneinfo/Etc/UTC")
    tw.symlink("etc/os-release", "../usr/lib/os-release")
    tw.symlink("etc/mtab", "../proc/self/mounts")
    tw.symlink("etc/resolv.conf", "../run/systemd/resolve/stub-resolv.conf")
    bins = sorted(p for p in tw.files if p.startswith("usr/bin/"))
    for target in rng.sample(bins, min(40, len(bins))):
        name = os.path.basename(target)
        tw.symlink(f"etc/alternatives/{name}", "/" + target)
    for _ in range(int(150 * scale) + 1):
        cert = f"{content.word()}_{content.word()}_Root_CA"
        rel = tw.unique(f"etc/ssl/certs/{cert}.pem")
        tw.symlink(rel, f"/usr/share/ca-certificates/mozilla/{cert}.crt")

    # dpkg database: highly compressible file lists.
    for _ in range(counts["dpkg"]):
        ext = rng.choice(("list", "list", "md5sums", "conffiles", "postinst"))
        mode = 0o755 if ext == "postinst" else 0o644
        tw.write(tw.unique(f"var/lib/dpkg/info/{content.word()}.{ext}"), "list", "list", mode)

    # Time zones.
    regions = ("Africa", "America", "Asia", "Australia", "Europe", "Pacific", "Etc")
    tw.write("usr/share/zoneinfo/Etc/UTC", "tz", "random")
    for _ in range(counts["zoneinfo"] - 1):
        rel = f"usr/share/zoneinfo/{rng.choice(regions)}/{content.word().capitalize()}"
        tw.write(tw.unique(rel), "tz", "random")

    # Documentation: many small text files, some byte-identical license texts (as in
    # real images, identical files dedupe into one content object).
    licenses = [content.take("text", rng.randint(3000, 35000)) for _ in range(6)]
    written = 0
    pkgs: list[str] = []
    while written < counts["doc"]:
        pkg = tw.unique(f"usr/share/doc/{content.word()}{rng.choice(('', '', '-common', '2'))}")
        pkgs.append(pkg)
        names = ["copyright", "README", "NEWS", "changelog", "AUTHORS", "TODO", "examples/x"]
        for name in names[: rng.randint(1, len(names))]:
            if written == counts["doc"]:
                break
            if name == "copyright" and rng.random() < 0.5:
                tw.write_bytes(f"{pkg}/copyright", rng.choice(licenses), 0o644)
                tw.files[f"{pkg}/copyright"] = ("doc", "text", 0o644)
            elif name == "examples/x":
                for _ in range(rng.randint(1, 8)):
                    if written == counts["doc"]:
                        break
                    tw.write(tw.unique(f"{pkg}/examples/{content.word()}.txt"), "doc", "text")
                    written += 1
                continue
            else:
                tw.write(f"{pkg}/{name}", "doc", "text")
            written += 1
    for pkg in pkgs[:: max(1, len(pkgs) // 50)][1:]:
        tw.symlink(tw.unique(f"{pkg}-doc"), os.path.basename(pkg))


def _update_tree(tw: TreeWriter, params: CorpusParams, round_no: int) -> None:
    """Simulate an OS update: rewrite ``churn`` of the files, add and remove some."""
    rng = tw.rng
    candidates = sorted(p for p in tw.files if p not in tw.pinned)
    for rel in rng.sample(candidates, int(len(candidates) * params.churn)):
        size_class, kind, mode = tw.files[rel]
        tw.write(rel, size_class, kind, mode)
    # Keep the big directory at ~5000 entries: neither grow it nor shrink it.
    candidates = [p for p in candidates if not p.startswith(BIG_DIR + "/")]
    for rel in rng.sample(candidates, int(params.files * params.growth)):
        size_class, kind, mode = tw.files[rel]
        stem, dot, ext = os.path.basename(rel).partition(".")
        new = tw.unique(f"{os.path.dirname(rel)}/{stem}_u{round_no}{dot}{ext}")
        tw.write(new, size_class, kind, mode)
    for rel in rng.sample(candidates, int(len(candidates) * params.removal)):
        os.unlink(tw.root / rel)
        del tw.files[rel]


# ------------------------------------------------------------------------ the builder


def _ostree(*args: str) -> str:
    return subprocess.run(
        ["ostree", *args], check=True, capture_output=True, text=True
    ).stdout.strip()


def _commit(repo: Path, tree: Path, subject: str, timestamp: str) -> str:
    return _ostree(
        "commit",
        f"--repo={repo}",
        "-b",
        BRANCH,
        f"--timestamp={timestamp}",
        "--owner-uid=0",
        "--owner-gid=0",
        "--no-xattrs",
        # The corpus is a cache that is rebuilt if incomplete; fsync only slows it.
        "--fsync=false",
        "-s",
        subject,
        str(tree),
    )


def _tree_stats(tw: TreeWriter) -> TreeStats:
    sizes: list[int] = []
    setuid = 0
    for rel in tw.files:
        st = os.lstat(tw.root / rel)
        sizes.append(st.st_size)
        setuid += bool(st.st_mode & 0o6000)
    entries: dict[str, int] = {}
    for rel in itertools.chain(tw.files, tw.symlinks, tw.dirs):
        parent = os.path.dirname(rel)
        entries[parent] = entries.get(parent, 0) + 1
    return TreeStats(
        regular_files=len(sizes),
        empty_files=sum(1 for s in sizes if s == 0),
        symlinks=len(tw.symlinks),
        directories=len(tw.dirs) + 1,
        total_bytes=sum(sizes),
        max_depth=max(rel.count("/") + 1 for rel in tw.dirs),
        largest_directory=max(entries.values()),
        median_file_size=int(statistics.median(sizes)),
        setuid_files=setuid,
    )


def repo_stats(repo: Path) -> dict[str, int]:
    """Object counts per type, plus ``objects`` and ``disk_bytes`` (allocated size)."""
    counts: dict[str, int] = {}
    disk = 0
    for dirpath, _dirs, names in os.walk(repo):
        in_objects = Path(dirpath).parent.name == "objects"
        for name in names:
            disk += os.lstat(os.path.join(dirpath, name)).st_blocks * 512
            if in_objects:
                ext = name.rpartition(".")[2]
                counts[ext] = counts.get(ext, 0) + 1
    return {**dict(sorted(counts.items())), "objects": sum(counts.values()), "disk_bytes": disk}


def _clear(dest: Path, repo: Path) -> None:
    """Make ``dest`` and remove a previous build's repo, tree, markers and info."""
    dest.mkdir(parents=True, exist_ok=True)
    for stale in [repo, dest / "tree", *dest.glob(".complete-*"), dest / "corpus.json"]:
        if stale.is_dir() and not stale.is_symlink():
            shutil.rmtree(stale)
        elif stale.exists() or stale.is_symlink():
            stale.unlink()


def settle(seconds: float) -> None:
    """Before timed runs: sync, then let recent deletions age ``seconds`` (see
    ``bench_import.py``: ext4 here creates files slowly after a mass deletion)."""
    if seconds > 0:
        print(f"settling: sync, then {seconds:.0f} s for recent deletions to age", flush=True)
        os.sync()
        time.sleep(seconds)


def _build(dest: Path, params: CorpusParams) -> Path:
    marker = dest / f".complete-{params.digest()}"
    repo = dest / "repo"
    if repo.is_dir() and marker.exists():
        return repo
    _clear(dest, repo)

    started = time.monotonic()
    rng = random.Random(params.seed)
    tree = dest / "tree"
    tree.mkdir()
    os.chmod(tree, 0o755)
    old_umask = os.umask(0o022)
    try:
        content = Content(rng)
        tw = TreeWriter(tree, rng, content)
        _generate_tree(tw, params.files)
        stats = _tree_stats(tw)
        _ostree("init", "--mode=archive", f"--repo={repo}")
        stats.commits.append(_commit(repo, tree, "base", TIMESTAMPS[0]))
        for round_no in range(1, params.updates + 1):
            _update_tree(tw, params, round_no)
            timestamp = TIMESTAMPS[min(round_no, len(TIMESTAMPS) - 1)]
            stats.commits.append(_commit(repo, tree, f"update {round_no}", timestamp))
        if params.updates:
            head = _tree_stats(tw)
            head.commits = stats.commits
            stats = head
    finally:
        os.umask(old_umask)

    info = {
        "params": asdict(params),
        "generator_version": GENERATOR_VERSION,
        "branch": BRANCH,
        "tree": asdict(stats),
        "repo": repo_stats(repo),
        "build_seconds": round(time.monotonic() - started, 1),
    }
    (dest / "corpus.json").write_text(json.dumps(info, indent=2) + "\n")
    marker.write_text(json.dumps(asdict(params)) + "\n")
    return repo


# ------------------------------------------------------------- the delta pair


@dataclass(frozen=True)
class DeltaPairParams:
    """A FROM→TO pair for the static-delta benchmark: the base corpus as FROM, and as TO
    a copy of its tree with ``modified`` files edited, ``removed`` deleted and ``added``
    new ones -- the size of a typical OS point update (issue 7: "about 1,200 modified,
    300 removed, 300 new files").  The base corpus's seven large files are left alone, so
    that the figures are about the many small and medium files, not one 24 MB bsdiff."""

    base: CorpusParams = CorpusParams()
    modified: int = 1200
    removed: int = 300
    added: int = 300
    seed: int = 7
    #: Of the modified files: this share is patched (a few spans replaced, inserted or
    #: deleted, so most bytes are kept, as in a rebuilt binary or an edited text), this
    #: share grows at the end (changelogs), and the rest is rewritten from scratch.
    patched: float = 0.6
    appended: float = 0.15

    def digest(self) -> str:
        blob = json.dumps({"v": GENERATOR_VERSION, "pair": 1, **asdict(self)}, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _sniff(data: bytes) -> str:
    """The content kind a file looks like: ``elf``, ``text`` or ``random``."""
    if data.startswith(b"\x7fELF"):
        return "elf"
    head = data[:512]
    if b"\0" not in head and all(b in b"\t\n\r" or 32 <= b < 127 for b in head):
        return "text"
    return "random"


def _fresh_bytes(content: Content, kind: str, size: int) -> bytes:
    if kind == "text":
        return content.take("text", size)
    if kind == "elf":
        return content.take("code", size)
    return content.rng.randbytes(size)


def _patch(content: Content, data: bytes, kind: str) -> bytes:
    """1-4 edits: spans of 1-6 % of the file replaced by new bytes of about the same
    length (so later offsets shift a little)."""
    rng = content.rng
    out = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        span = max(8, int(len(out) * rng.uniform(0.01, 0.06)))
        at = rng.randrange(max(1, len(out) - span))
        new_len = max(0, span + rng.randint(-span // 4, span // 4))
        out[at : at + span] = _fresh_bytes(content, kind, new_len)
    return bytes(out)


def _replace_file(path: Path, data: bytes, mode: int) -> None:
    """Write ``path`` as a new inode (the TO tree is a hard-linked copy of FROM's)."""
    tmp = path.with_name(path.name + ".~new")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.fchmod(fd, mode)
    finally:
        os.close(fd)
    os.replace(tmp, path)


def _regular_files(tree: Path) -> list[str]:
    out: list[str] = []
    for dirpath, dirs, names in os.walk(tree):
        dirs.sort()
        for name in sorted(names):
            path = os.path.join(dirpath, name)
            if os.path.isfile(path) and not os.path.islink(path):
                out.append(os.path.relpath(path, tree))
    return out


def build_delta_pair(dest: Path, base_dest: Path, params: DeltaPairParams) -> Path:
    """Build (or reuse) the delta pair in ``dest``; return its archive repo.

    The base corpus (``params.base``) is built or reused in ``base_dest``.  ``dest/repo``
    gets FROM with ``ostree pull-local`` (hard links) and TO committed on the same branch
    from ``dest/tree``, a hard-linked copy of the base tree where every edit writes a new
    inode.  ``corpus.json`` lists ``commits`` [FROM, TO] and the edits."""
    dest = Path(dest)
    base_repo = _build(Path(base_dest), params.base)
    base_info = load_info(base_dest)
    base_commit = base_info["tree"]["commits"][0]  # type: ignore[index]
    marker = dest / f".complete-{params.digest()}-{base_commit[:16]}"
    repo = dest / "repo"
    if repo.is_dir() and marker.exists():
        return repo
    _clear(dest, repo)

    started = time.monotonic()
    tree = dest / "tree"
    subprocess.run(["cp", "-al", str(Path(base_dest) / "tree"), str(tree)], check=True)
    _ostree("init", "--mode=archive", f"--repo={repo}")
    _ostree("pull-local", f"--repo={repo}", str(base_repo), BRANCH)

    rng = random.Random(params.seed)
    content = Content(rng)
    large = {rel for rel, _kind, _mb in _LARGE_FILES}
    files = [rel for rel in _regular_files(tree) if rel not in large]
    nonempty = [rel for rel in files if os.path.getsize(tree / rel) > 0]
    modified = rng.sample(nonempty, min(params.modified, len(nonempty)))
    taken = set(modified)
    rest = [rel for rel in files if rel not in taken]
    removed = rng.sample(rest, min(params.removed, len(rest)))
    taken.update(removed)
    gone = set(removed)
    kept = [rel for rel in nonempty if rel not in gone]
    templates = rng.sample(kept, min(params.added, len(kept)))
    how = {"patched": 0, "appended": 0, "rewritten": 0}
    for rel in modified:
        path = tree / rel
        data = path.read_bytes()
        mode = os.lstat(path).st_mode & 0o7777
        kind = _sniff(data)
        r = rng.random()
        if r < params.patched:
            new = _patch(content, data, kind)
            how["patched"] += 1
        elif r < params.patched + params.appended:
            new = data + _fresh_bytes(
                content, kind, max(16, int(len(data) * rng.uniform(0.02, 0.2)))
            )
            how["appended"] += 1
        else:
            new = _fresh_bytes(content, kind, max(1, int(len(data) * rng.uniform(0.8, 1.2))))
            how["rewritten"] += 1
        _replace_file(path, new, mode)
    for rel in removed:
        os.unlink(tree / rel)
    added: list[str] = []
    for rel in templates:
        path = tree / rel
        size = os.path.getsize(path)
        kind = _sniff(path.read_bytes()[:512])
        stem, dot, ext = os.path.basename(rel).partition(".")
        for n in itertools.count(1):
            new_rel = os.path.join(os.path.dirname(rel), f"{stem}_new{n}{dot}{ext}")
            if not os.path.lexists(tree / new_rel):
                break
        data = _fresh_bytes(content, kind, max(1, int(size * rng.uniform(0.5, 1.5))))
        _replace_file(tree / new_rel, data, os.lstat(path).st_mode & 0o7777)
        added.append(new_rel)
    to_commit = _commit(repo, tree, "update", TIMESTAMPS[1])

    info = {
        "params": asdict(params),
        "generator_version": GENERATOR_VERSION,
        "branch": BRANCH,
        "base": str(base_dest),
        "commits": [base_commit, to_commit],
        "edits": {
            "modified": len(modified),
            **how,
            "removed": len(removed),
            "added": len(added),
            "modified_bytes_before": sum(
                os.path.getsize(Path(base_dest) / "tree" / r) for r in modified
            ),
        },
        "repo": repo_stats(repo),
        "build_seconds": round(time.monotonic() - started, 1),
    }
    (dest / "corpus.json").write_text(json.dumps(info, indent=2) + "\n")
    marker.write_text(json.dumps(asdict(params)) + "\n")
    return repo


def is_complete(dest: Path) -> bool:
    """Whether ``dest`` holds a finished corpus of *any* parameters."""
    dest = Path(dest)
    return (dest / "repo").is_dir() and any(dest.glob(".complete-*"))


def build_corpus(dest: Path, *, files: int = BASE_FILES, seed: int = 1) -> Path:
    """Build (or reuse) the timing corpus in ``dest``; return the archive repo path.

    ``dest/tree`` keeps the committed tree (useful to compare checkouts against),
    ``dest/corpus.json`` describes both.  A partial build is detected by the missing
    marker and redone from scratch.
    """
    return _build(Path(dest), CorpusParams(files=files, seed=seed))


def build_large_corpus(dest: Path) -> Path:
    """Build (or reuse) the >100k-object, three-commit corpus for the peak-RSS test."""
    return _build(Path(dest), LARGE_PARAMS)


def load_info(dest: Path) -> dict[str, object]:
    """The ``corpus.json`` written by a finished build."""
    info: dict[str, object] = json.loads((Path(dest) / "corpus.json").read_text())
    return info


def load_tree_stats(dest: Path) -> TreeStats:
    """The :class:`TreeStats` part of ``corpus.json`` (the head commit's tree)."""
    return TreeStats(**json.loads((Path(dest) / "corpus.json").read_text())["tree"])


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("dest", type=Path, help="directory for repo/, tree/ and corpus.json")
    parser.add_argument("--large", action="store_true", help="the >100k-object RSS corpus")
    parser.add_argument("--files", type=int, default=BASE_FILES, help="regular files (base)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--delta-pair",
        type=Path,
        metavar="BASE",
        help="build the static-delta pair in DEST from the base corpus in BASE (built if needed)",
    )
    args = parser.parse_args(argv)
    t0 = time.monotonic()
    if args.delta_pair:
        pair = DeltaPairParams(base=CorpusParams(files=args.files, seed=args.seed))
        repo = build_delta_pair(args.dest, args.delta_pair, pair)
    elif args.large:
        repo = build_large_corpus(args.dest)
    else:
        repo = build_corpus(args.dest, files=args.files, seed=args.seed)
    print(json.dumps(load_info(args.dest), indent=2))
    print(f"repo: {repo} ({time.monotonic() - t0:.1f} s)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
