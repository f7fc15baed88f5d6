"""Micro benchmarks (pytest-benchmark) for the tuned metadata readers.

Run with ``pytest benchmarks/test_decode_bench.py --benchmark-enable``.  The
assertions check correctness only; timings are reported, never asserted (two
shared cores make wall-clock assertions meaningless).
"""

from __future__ import annotations

import hashlib
from typing import Any

from libpyostree.gvariant import Variant, decode
from libpyostree.names import Checksum
from libpyostree.objects import Commit, DirTree, parse_commit, parse_dirtree

ENTRIES = 5000


def _csum(i: int) -> Checksum:
    return Checksum(hashlib.sha256(str(i).encode()).hexdigest())


def _large_dirtree() -> bytes:
    files = tuple((f"lib{i:05d}.so.{i % 7}", _csum(i)) for i in range(ENTRIES))
    dirs = tuple((f"dir{i:04d}", _csum(-i), _csum(i + 1)) for i in range(200))
    return DirTree(files, dirs).to_bytes()


def _commit() -> bytes:
    return Commit(
        root_dirtree=_csum(1),
        root_dirmeta=_csum(2),
        parent=_csum(3),
        subject="Fedora IoT 41.20241101.0",
        body="Built by osbuild\n" * 4,
        timestamp=1_730_000_000,
        metadata={
            "version": Variant("s", "41.20241101.0"),
            "ostree.ref-binding": Variant("as", ["fedora/41/x86_64/iot"]),
            "ostree.bootable": Variant("b", True),
            "ostree.linux": Variant("s", "6.11.5-300.fc41.x86_64"),
            "rpmostree.inputhash": Variant("s", "ab" * 32),
        },
    ).to_bytes()


def test_decode_large_dirtree_tuned(benchmark: Any) -> None:
    data = _large_dirtree()
    tree = benchmark(parse_dirtree, data)
    assert len(tree.files) == ENTRIES and len(tree.dirs) == 200
    stats = getattr(benchmark, "stats", None)
    if stats is not None and stats.stats.median:
        benchmark.extra_info["us_per_entry"] = stats.stats.median * 1e6 / (ENTRIES + 200)


def test_decode_large_dirtree_generic(benchmark: Any) -> None:
    data = _large_dirtree()
    files, _dirs = benchmark(decode, "(a(say)a(sayay))", data)
    assert len(files) == ENTRIES


def test_decode_commit(benchmark: Any) -> None:
    data = _commit()
    commit = benchmark(parse_commit, data)
    assert commit.version == "41.20241101.0"
