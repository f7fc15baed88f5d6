"""Small deltas: bup rollsum chunking, bsdiff patches, and the generator's rollsum and
bsdiff strategies (``reference/ostree-format.md`` §5.4, §5.7).

The ostree tests build A and B with the real ``ostree``: in B, ``data/big.bin``
(1.5 MB random) has a byte changed every 4000 bytes (no chunk survives: bsdiff),
``log/app.log`` (1 MB text) has 100 kB appended (rollsum), ``lib/libfoo.so.1``
became ``lib/libfoo.so.2`` with 4 bytes changed every 3000 (bsdiff after a "fuzzy"
name match),
``pkg/blob.xz`` and the private ``secret.bin`` changed (never diffed).
"""

from __future__ import annotations

import lzma
import os
import random
import shutil
import zlib
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from libpyostree.commit import commit_directory
from libpyostree.deltas import DeltaName, DeltaOptions, apply_offline, generate_delta, rollsum
from libpyostree.deltas import bsdiff as bsd
from libpyostree.deltas.apply import bspatch, scan_ops
from libpyostree.deltas.part import open_part
from libpyostree.deltas.similar import SizeNames, similar_files
from libpyostree.deltas.superblock import Superblock, parse_superblock
from libpyostree.names import Checksum
from libpyostree.objects import ObjectType
from libpyostree.repo import Repo
from libpyostree.walk import iter_commit_closure
from tests.ostree_cli import BASE_TIME, iso, ostree_commit, run_ostree, run_pyostree, write_file

# --- rollsum --------------------------------------------------------------------------------


def _ref_find_ofs(buf: bytes, start: int) -> int:
    """``bupsplit_find_ofs``, byte by byte (window of zeros, 32-bit unsigned sums)."""
    s1, s2 = 64 * 31, 64 * 63 * 31
    window = [0] * 64
    wofs = 0
    for count in range(len(buf) - start):
        ch = buf[start + count]
        drop = window[wofs]
        s1 = (s1 + ch - drop) & 0xFFFFFFFF
        s2 = (s2 + s1 - 64 * (drop + 31)) & 0xFFFFFFFF
        window[wofs] = ch
        wofs = (wofs + 1) % 64
        if s2 & 0x1FFF == 0x1FFF:
            return count + 1
    return 0


def _ref_split(buf: bytes) -> list[tuple[int, int]]:
    """``rollsum_chunks_crc32``'s cutting, transcribed."""
    out: list[tuple[int, int]] = []
    start, end = 0, False
    while start < len(buf):
        remaining = len(buf) - start
        if not end:
            offset = _ref_find_ofs(buf, start)
            if offset == 0:
                end, offset = True, min(32768, remaining)
            elif offset > 32768:
                offset = 32768
        else:
            offset = min(32768, remaining)
        out.append((start, offset))
        start += offset
    return out


def _low_entropy(rnd: random.Random, size: int) -> bytes:
    return bytes(rnd.choice(b"ab") for _ in range(size))


def test_rollsum_split_matches_bupsplit() -> None:
    rnd = random.Random(5)
    cases = [
        b"",
        b"x",
        rnd.randbytes(63),
        rnd.randbytes(64),
        rnd.randbytes(300_000),  # spans two blocks of the vectorised scan
        bytes(100_000),  # no boundary at all: fixed 32 KiB chunks
        bytes(70_000) + rnd.randbytes(70_000),  # boundaries only after a long run
        _low_entropy(rnd, 120_000),  # many short chunks, boundaries < 64 bytes apart
    ]
    cases += [rnd.randbytes(rnd.randint(0, 40_000)) for _ in range(10)]
    for data in cases:
        chunks = rollsum.split(data)
        assert chunks == _ref_split(data), len(data)
        # A partition of the data into chunks of at most 32 KiB.
        assert sum(n for _s, n in chunks) == len(data)
        assert all(0 < n <= rollsum.CHUNK_MAX for _s, n in chunks)
        assert [s for s, _n in chunks] == [0, *(s + n for s, n in chunks)][: len(chunks)]


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=3000), st.integers(0, 2))
def test_rollsum_split_property(data: bytes, alphabet: int) -> None:
    if alphabet:  # low-entropy variants hit boundaries often, also near chunk starts
        data = bytes(b % (alphabet + 1) for b in data) * 4
    assert rollsum.split(data) == _ref_split(data)


def test_rollsum_boundaries_are_content_defined() -> None:
    rnd = random.Random(11)
    data = rnd.randbytes(400_000)
    before = rollsum.split(data)
    assert before == rollsum.split(bytes(data))  # deterministic
    assert 20 < len(before) < 200  # about 8 KiB on average
    # An insertion only moves the boundaries around it: later chunks are the same.
    shifted = rollsum.split(rnd.randbytes(1000) + data)
    tail = {(s + 1000, n) for s, n in before[3:]}
    assert tail <= set(shifted)


def test_rollsum_matches_appended_file() -> None:
    rnd = random.Random(2)
    old = rnd.randbytes(500_000)
    new = old + rnd.randbytes(50_000)
    m = rollsum.compute_matches(old, new)
    assert m.total == len(rollsum.split(new))
    assert m.match_ratio >= 80
    assert [t for _n, t, _f in m.matches] == sorted(t for _n, t, _f in m.matches)
    for length, to_start, from_start in m.matches:
        assert new[to_start : to_start + length] == old[from_start : from_start + length]
    crcs = {c.crc for c in rollsum.chunk_crcs(new)}
    assert all(
        c.crc == zlib.crc32(new[c.start : c.start + c.length]) for c in rollsum.chunk_crcs(new)
    )
    assert m.crcmatches <= len(crcs)
    # Every byte changed in place: nothing matches.
    scattered = bytearray(old)
    for i in range(0, len(scattered), 4000):
        scattered[i] ^= 0xFF
    assert rollsum.compute_matches(old, bytes(scattered)).match_ratio < 50


# --- bsdiff ---------------------------------------------------------------------------------


def _edit(rnd: random.Random, data: bytes, edits: int) -> bytes:
    out = bytearray(data)
    for _ in range(edits):
        pos = rnd.randint(0, len(out))
        out[pos : pos + rnd.randint(0, 40)] = rnd.randbytes(rnd.randint(0, 60))
    return bytes(out)


def test_bsdiff_stream_format() -> None:
    # Control words are sign-magnitude little-endian: -5 has bit 63 set.
    assert bsd.encode_control(1, 2, -5) == (
        (1).to_bytes(8, "little") + (2).to_bytes(8, "little") + bytes.fromhex("0500000000000080")
    )
    old = b"hello world, " * 200
    new = old[:1000] + b"INSERTED" + old[1000:]
    patch = bsd.diff(old, new)
    assert patch is not None
    assert not patch.startswith((b"BSDIFF", b"ENDSLEY", b"BZh"))  # raw, not bzip2
    assert bspatch(old, patch, len(new)) == new
    # Re-interleaving checks its input.
    with pytest.raises(ValueError):
        bsd.interleave(bsd.encode_control(5, 0, 0), b"abc", b"")


@pytest.mark.skipif(not bsd.have_bsdiff4(), reason="bsdiff4 is not installed")
def test_bsdiff_round_trip_structured() -> None:
    rnd = random.Random(9)
    text = b"\n".join(b"line %d: %s" % (i, rnd.randbytes(8).hex().encode()) for i in range(20_000))
    binary = rnd.randbytes(300_000)
    for old in (text, binary):
        for new in (_edit(rnd, old, 30), old[::-1][:1000] + old, old[: len(old) // 2], b"x"):
            patch = bsd.diff(old, new)
            assert patch is not None
            assert bspatch(old, patch, len(new)) == new
    small = bsd.diff(binary, _edit(rnd, binary, 5))
    assert small is not None
    assert len(lzma.compress(small)) < len(binary) // 20


@settings(max_examples=60, deadline=None)
@given(st.binary(max_size=2000), st.binary(max_size=2000), st.integers(0, 2**32))
def test_bsdiff_round_trip_property(old: bytes, other: bytes, seed: int) -> None:
    rnd = random.Random(seed)
    for new in (other, _edit(rnd, old, 3), old + other):
        patch = bsd.diff(old, new)
        if patch is None:  # the pure-Python fallback declines unrelated data
            assert not bsd.have_bsdiff4()
            continue
        assert bspatch(old, patch, len(new)) == new
        fallback = bsd.positional_diff(old, new, min_equal=0.0)
        if fallback is not None:
            assert bspatch(old, fallback, len(new)) == new


def test_positional_diff() -> None:
    rnd = random.Random(4)
    old = rnd.randbytes(100_000)
    new = bytearray(old)
    for i in range(0, len(new), 997):
        new[i] = (new[i] + 7) & 0xFF
    new += b"tail"
    patch = bsd.positional_diff(old, bytes(new))
    assert patch is not None and len(patch) == 24 + len(new)
    assert bspatch(old, patch, len(new)) == new
    assert bsd.positional_diff(old, rnd.randbytes(100_000)) is None  # unrelated: declined
    assert bsd.positional_diff(b"", b"abc") is None


# --- similarity -------------------------------------------------------------------------------


def _sn(csum: str, size: int, *names: str, mode: int = 0o100644) -> SizeNames:
    return SizeNames(Checksum(csum * 64), size, mode, list(names))


def test_similar_files_rules() -> None:
    frm = sorted(
        [
            _sn("a", 1000, "app.log"),
            _sn("b", 1000, "libfoo.so.1"),
            _sn("c", 5000, "big.bin"),
            _sn("d", 1000, "data.xz"),
            _sn("e", 0, "empty"),
            _sn("f", 10_000, "x.txt", "y.txt"),
        ],
        key=lambda e: e.size,
    )
    to = sorted(
        [
            _sn("1", 1200, "app.log"),  # exact name, +20 %
            _sn("2", 1100, "libfoo.so.2"),  # fuzzy: same prefix before the first dot
            _sn("3", 8000, "big.bin"),  # 5000 < 70 % of 8000: too large a change
            _sn("4", 1000, "data.xz"),  # compressed: never
            _sn("5", 0, "empty"),  # empty: never
            _sn("6", 9000, "y.txt"),  # any of the old names
            _sn("7", 1000, "unrelated"),
        ],
        key=lambda e: e.size,
    )
    pairs = {k[0]: v.checksum[0] for k, v in similar_files(frm, to).items()}
    assert pairs == {"1": "a", "2": "b", "6": "f"}


# --- the generator without ostree --------------------------------------------------------------


def _trees(root: Path) -> tuple[Path, Path]:
    rnd = random.Random(21)
    a, b = root / "a", root / "b"
    words = [rnd.randbytes(4).hex().encode() for _ in range(2000)]
    log = b" ".join(rnd.choice(words) for _ in range(110_000))[:1_000_000]
    big = rnd.randbytes(1_500_000)
    lib = rnd.randbytes(300_000)
    for tree in (a, b):
        write_file(tree / "README", b"same in both\n")
        (tree / "link").symlink_to("README")
    write_file(a / "log" / "app.log", log)
    write_file(a / "data" / "big.bin", big)
    write_file(a / "lib" / "libfoo.so.1", lib)
    write_file(a / "pkg" / "blob.xz", rnd.randbytes(20_000))
    write_file(a / "secret.bin", big[:20_000], 0o600)

    write_file(
        b / "log" / "app.log", log + b" ".join(rnd.choice(words) for _ in range(12_000))[:100_000]
    )
    changed = bytearray(big)
    for i in range(0, len(changed), 4000):
        changed[i] ^= 0x5A
    write_file(b / "data" / "big.bin", bytes(changed))
    patched = bytearray(lib)
    for i in range(1000, len(patched), 3000):
        patched[i : i + 4] = b"\x90\x90\x90\x90"
    write_file(b / "lib" / "libfoo.so.2", bytes(patched))
    write_file(b / "pkg" / "blob.xz", rnd.randbytes(20_000))
    write_file(b / "secret.bin", bytes(changed[:20_000]), 0o600)
    write_file(b / "new.txt", b"new in B\n")
    return a, b


def _ops(repo_path: Path, sb: Superblock, directory: Path) -> dict[str, int]:
    total: dict[str, int] = {}
    for i, part in enumerate(sb.parts):
        data = sb.inline_parts.get(i) or (directory / str(i)).read_bytes()
        for op, n in scan_ops(part.objects, open_part(data, None)).items():
            total[op] = total.get(op, 0) + n
    return total


def _delta_size(directory: Path) -> int:
    return sum(p.stat().st_size for p in directory.iterdir())


def test_generate_rollsum_and_bsdiff_round_trip(tmp_path: Path) -> None:
    a_dir, b_dir = _trees(tmp_path)
    repo = Repo.init(tmp_path / "repo")
    a = commit_directory(repo, a_dir, branch="main", timestamp=BASE_TIME)
    b = commit_directory(repo, b_dir, branch="main", timestamp=BASE_TIME + 60)
    name = DeltaName(a, b)

    plain = generate_delta(repo, b, a, options=DeltaOptions(rollsum=False, bsdiff=False))
    plain_size = _delta_size(repo.path / name.dir)
    assert _ops(repo.path, plain.superblock, repo.path / name.dir)["B"] == 0

    small = generate_delta(repo, b, a)
    small_size = _delta_size(repo.path / name.dir)
    ops = _ops(repo.path, small.superblock, repo.path / name.dir)
    # big.bin and libfoo (bsdiff: r o B c R), app.log (rollsum: o … r w… R w c).
    assert ops["B"] == 2
    assert ops["o"] == 3 and ops["c"] == 3
    assert ops["r"] >= 3 and ops["R"] >= 3
    assert small_size * 5 < plain_size, (small_size, plain_size)

    # Applied by us into a repository holding A: B exactly.
    dst = Repo.init(tmp_path / "dst")
    for checksum, objtype in iter_commit_closure(repo, a):
        dst.write_object_raw(checksum, objtype, repo.read_object_raw(checksum, objtype))
    stats = apply_offline(dst, repo.path / name.dir)
    assert stats.ops.get("B") == 2
    assert set(iter_commit_closure(dst, b)) == set(iter_commit_closure(repo, b))
    for checksum, objtype in iter_commit_closure(repo, b):
        if objtype is ObjectType.FILE:
            assert dst.read_file(checksum) == repo.read_file(checksum)

    # Without bsdiff, the bsdiff candidates are plain S again; rollsum stays.
    generate_delta(repo, b, a, options=DeltaOptions(bsdiff=False, compression="none"))
    no_bsdiff = _ops(
        repo.path,
        parse_superblock((repo.path / name.superblock_path).read_bytes()),
        repo.path / name.dir,
    )
    assert no_bsdiff["B"] == 0 and no_bsdiff["o"] == 1
    # max-bsdiff-size: big.bin (2 x 1.5 MB) no longer qualifies, libfoo still does.
    generate_delta(repo, b, a, options=DeltaOptions(max_bsdiff_size=2, compression="none"))
    limited = _ops(
        repo.path,
        parse_superblock((repo.path / name.superblock_path).read_bytes()),
        repo.path / name.dir,
    )
    assert limited["B"] == 1


# --- with the real ostree -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Checksum, Checksum, Path]:
    root = tmp_path_factory.mktemp("diffs")
    a_dir, b_dir = _trees(root)
    repo = root / "repo"
    run_ostree("init", f"--repo={repo}", "--mode=archive")
    a = ostree_commit(repo, "-b", "main", "-s", "A", f"--timestamp={iso(BASE_TIME)}", a_dir)
    b = ostree_commit(repo, "-b", "main", "-s", "B", f"--timestamp={iso(BASE_TIME + 60)}", b_dir)
    return repo, Checksum(a), Checksum(b), b_dir


def _tree_listing(path: Path) -> dict[str, tuple[int, bytes]]:
    out: dict[str, tuple[int, bytes]] = {}
    for dirpath, dirnames, filenames in os.walk(path):
        for fname in filenames + [d for d in dirnames if os.path.islink(os.path.join(dirpath, d))]:
            full = Path(dirpath) / fname
            rel = str(full.relative_to(path))
            if full.is_symlink():
                out[rel] = (0o120000, os.readlink(full).encode())
            else:
                out[rel] = (full.stat().st_mode & 0o777, full.read_bytes())
    return out


@pytest.mark.ostree
def test_ostree_applies_our_small_delta(
    tmp_path: Path, pair: tuple[Path, Checksum, Checksum, Path]
) -> None:
    src, a, b, b_dir = pair
    repo = tmp_path / "repo"
    shutil.copytree(src, repo)
    name = DeltaName(a, b)
    # The S-only delta first, for comparison.
    generate_delta(Repo.open(repo), b, a, options=DeltaOptions(rollsum=False, bsdiff=False))
    plain_size = _delta_size(repo / name.dir)
    run_pyostree("static-delta", "generate", "--repo", repo, "--from", a, "--to", b)
    size = _delta_size(repo / name.dir)
    assert size * 5 < plain_size, (size, plain_size)
    shown = run_pyostree("static-delta", "show", "--repo", repo, str(name))
    assert "bspatch=2" in shown and "setread=0" not in shown
    assert shown == run_ostree("static-delta", "show", f"--repo={repo}", str(name))

    client = tmp_path / "client"
    run_ostree("init", f"--repo={client}", "--mode=bare-user-only")
    run_ostree("pull-local", f"--repo={client}", repo, a)
    run_ostree("static-delta", "apply-offline", f"--repo={client}", repo / name.dir)
    run_ostree("fsck", f"--repo={client}")
    assert run_ostree("ls", f"--repo={client}", "-R", b) == run_ostree(
        "ls", f"--repo={repo}", "-R", b
    )
    run_ostree("checkout", f"--repo={client}", "-U", b, tmp_path / "out")
    assert _tree_listing(tmp_path / "out") == _tree_listing(b_dir)

    # --disable-bsdiff and --max-bsdiff-size reach the generator.
    gen = ("static-delta", "generate", "--repo", repo, "--from", a, "--to", b, "--compression=none")
    run_pyostree(*gen, "--disable-bsdiff")
    assert "bspatch=0" in run_pyostree("static-delta", "show", "--repo", repo, str(name))
    run_pyostree(*gen, "--max-bsdiff-size=2")
    assert "bspatch=1" in run_pyostree("static-delta", "show", "--repo", repo, str(name))


@pytest.mark.ostree
def test_same_ops_as_ostree(tmp_path: Path, pair: tuple[Path, Checksum, Checksum, Path]) -> None:
    """Same similar files, same rollsum chunks, same op sequences as ``ostree static-delta
    generate`` (bsdiff patches differ in bytes, not in ops)."""
    src, a, b, _b_dir = pair
    theirs_dir = tmp_path / "theirs"
    theirs_dir.mkdir()
    run_ostree(
        "static-delta",
        "generate",
        f"--repo={src}",
        f"--from={a}",
        f"--to={b}",
        f"--filename={theirs_dir / 'superblock'}",
    )
    theirs = parse_superblock((theirs_dir / "superblock").read_bytes())
    repo = tmp_path / "repo"
    shutil.copytree(src, repo)
    ours = generate_delta(Repo.open(repo), b, a)
    ours_dir = repo / DeltaName(a, b).dir
    assert _ops(repo, ours.superblock, ours_dir) == _ops(src, theirs, theirs_dir)
    # As small as ostree's (bsdiff4 and mendsley's bsdiff differ a little).
    ours_size, theirs_size = _delta_size(ours_dir), _delta_size(theirs_dir)
    assert ours_size <= theirs_size * 1.05, (ours_size, theirs_size)
    assert {o for p in ours.superblock.parts for o in p.objects} == {
        o for p in theirs.parts for o in p.objects
    }
    # The rollsum file's ops, in order, byte for byte (literal offsets aside).
    ours_ops = b"".join(
        open_part((ours_dir / str(i)).read_bytes()).ops for i in range(len(ours.superblock.parts))
    )
    theirs_ops = b"".join(
        open_part((theirs_dir / str(i)).read_bytes()).ops for i in range(len(theirs.parts))
    )
    assert _op_letters(ours_ops, ours.superblock) == _op_letters(theirs_ops, theirs)


def _op_letters(ops: bytes, sb: Superblock) -> list[str]:
    """The op codes of every file object, as strings, sorted (object order differs)."""
    from libpyostree.deltas.apply import read_varuint64

    objects = [o for p in sb.parts for o in p.objects]
    nargs = {"o": 3, "w": 2, "r": 1, "R": 0, "c": 0, "B": 2}
    per_object: list[str] = []
    current = ""
    pos = index = 0
    while pos < len(ops):
        op = chr(ops[pos])
        pos += 1
        n = (2 if objects[index][0].is_meta else 4) if op == "S" else nargs[op]
        for _ in range(n):
            _v, pos = read_varuint64(ops, pos)
        current += op
        if op in "Sc":
            index += 1
            per_object.append(current)
            current = ""
        elif op == "R" and per_object and per_object[-1].endswith("c") and not current[:-1]:
            per_object[-1] += "R"  # bsdiff's trailing R belongs to the closed object
            current = ""
    return sorted(per_object)


def test_generate_without_bsdiff4(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without bsdiff4: positional patches for in-place edits, ``S`` for the rest."""
    monkeypatch.setattr(bsd, "_core", None)
    rnd = random.Random(8)
    old_edit, old_moved = rnd.randbytes(200_000), rnd.randbytes(200_000)
    edited = bytearray(old_edit)
    for i in range(0, len(edited), 3000):
        edited[i] ^= 1
    a_dir, b_dir = tmp_path / "a", tmp_path / "b"
    write_file(a_dir / "edit.bin", old_edit)
    write_file(a_dir / "moved.bin", old_moved)
    write_file(b_dir / "edit.bin", bytes(edited))
    # Shifted by one byte and edited all over: no chunk matches, no byte in place.
    moved = bytearray(b"!" + old_moved)
    for i in range(0, len(moved), 3000):
        moved[i] ^= 1
    write_file(b_dir / "moved.bin", bytes(moved))
    repo = Repo.init(tmp_path / "repo")
    a = commit_directory(repo, a_dir, branch="main", timestamp=BASE_TIME)
    b = commit_directory(repo, b_dir, branch="main", timestamp=BASE_TIME + 60)
    result = generate_delta(repo, b, a)
    name = DeltaName(a, b)
    ops = _ops(repo.path, result.superblock, repo.path / name.dir)
    assert ops["B"] == 1 and ops["o"] == 1 and ops["S"] >= 2
    dst = Repo.init(tmp_path / "dst")
    for checksum, objtype in iter_commit_closure(repo, a):
        dst.write_object_raw(checksum, objtype, repo.read_object_raw(checksum, objtype))
    apply_offline(dst, repo.path / name.dir)
    for checksum, objtype in iter_commit_closure(repo, b):
        if objtype is ObjectType.FILE:
            assert dst.read_file(checksum) == repo.read_file(checksum)
