"""libpyostree against the real ``ostree`` 2022.7 CLI.

1. Reading: every object of an ostree-made repository (the session's zoo) hashes to its
   name and parses strictly; fsck, ``ls``, ``refs``, ``log``, ``rev-parse``, the summary
   and typed commit metadata agree with what ``ostree`` itself says.
2. Writing: a tree committed by libpyostree is byte-identical to ``ostree commit`` of the
   same directory, passes ``ostree fsck``, and real ``ostree pull`` (mirror, normal,
   ``--depth=-1``) works over HTTP from a repository we wrote and summarised.
3. Checkout: ``pyostree checkout`` writes what ``ostree checkout -U`` writes: names,
   contents, symlink targets, file types and permission bits.
4. Bad input: corrupted copies of an ostree-made repository give our specific error or
   fsck line (never a traceback), every corrupted object is reported, and ``ostree fsck``
   fails on the same copy.
"""

from __future__ import annotations

import ast
import hashlib
import os
import re
import shutil
import stat
import struct
import zlib
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from libpyostree.checkout import checkout
from libpyostree.commit import commit_directory
from libpyostree.errors import (
    CorruptObjectError,
    ObjectNotFoundError,
    RefNotFoundError,
    RepoError,
)
from libpyostree.fsck import FsckProblem, fsck
from libpyostree.gvariant import Variant, decode, is_normal_form, offset_size
from libpyostree.names import Checksum, is_checksum
from libpyostree.objects import (
    DIRTREE_TYPE,
    Commit,
    DirTree,
    FileHeader,
    ObjectType,
    content_checksum,
    filez_checksum,
    metadata_checksum,
    parse_commit,
    parse_commitmeta,
    parse_dirmeta,
    parse_dirtree,
    parse_filez,
)
from libpyostree.objects._framing import frame_pair
from libpyostree.repo import Repo
from libpyostree.summary import read_summary, update_summary
from libpyostree.walk import iter_commit_closure
from tests.ostree_cli import (
    BASE_TIME,
    MAIN_BODY,
    MAIN_SUBJECT,
    ZOO_DETACHED,
    ZOO_METADATA,
    ZOO_METADATA_STRINGS,
    ZOO_REFS,
    Zoo,
    build_small_repo,
    iso,
    log_checksums,
    make_small_tree,
    ostree_commit,
    ostree_result,
    pyostree_result,
    run_ostree,
    run_pyostree,
    serve_http,
)

pytestmark = pytest.mark.ostree

#: A fast user-mode checkout that leaves the repository alone (no uncompressed cache).
OSTREE_CHECKOUT = ("checkout", "-U", "--disable-cache", "--fsync=false")


@pytest.fixture(scope="module")
def zoo_repo(ostree_repo_zoo: Zoo) -> Repo:
    return Repo.open(ostree_repo_zoo.path)


def lookup(repo: Repo, rev: str, path: str) -> tuple[Checksum, ObjectType]:
    """The object at ``path`` in ``rev``: a file's content object or a directory's dirtree."""
    commit = repo.read_commit(repo.resolve_rev(rev))
    tree = commit.root_dirtree
    *parents, last = [p for p in path.split("/") if p] or [""]
    for part in parents:
        tree = {n: t for n, t, _ in repo.read_dirtree(tree).dirs}[part]
    if not last:
        return tree, ObjectType.DIR_TREE
    listing = repo.read_dirtree(tree)
    files = dict(listing.files)
    if last in files:
        return files[last], ObjectType.FILE
    return {n: t for n, t, _ in listing.dirs}[last], ObjectType.DIR_TREE


# --- 1. reading ostree-made repositories ------------------------------------------------


def test_every_object_ostree_wrote_hashes_to_its_name_and_parses(ostree_repo_zoo: Zoo) -> None:
    parsers: dict[str, Callable[[bytes], object]] = {
        "commit": parse_commit,
        "dirtree": parse_dirtree,
        "dirmeta": parse_dirmeta,
    }
    counts: Counter[str] = Counter()
    wrong: list[str] = []
    for dirpath, _dirs, names in os.walk(ostree_repo_zoo.path / "objects"):
        for name in names:
            path = Path(dirpath, name)
            stem, _, suffix = name.partition(".")
            checksum = path.parent.name + stem
            assert is_checksum(checksum), path
            data = path.read_bytes()
            counts[suffix] += 1
            if suffix == "filez":
                actual, _info = filez_checksum(data)
            elif suffix in parsers:
                actual = metadata_checksum(data)
                parsers[suffix](data)  # strict: normal form, valid names and modes
            elif suffix == "commitmeta":
                # Detached metadata is named after its commit, not hashed.
                assert path.with_suffix(".commit").exists()
                assert parse_commitmeta(data) == {
                    k: Variant("s", v) for k, v in ZOO_DETACHED.items()
                }
                continue
            else:
                pytest.fail(f"unexpected object file {path}")
            if actual != checksum:
                wrong.append(f"{suffix} {checksum}: we compute {actual}")
    assert wrong == []
    assert counts["commit"] == 9  # main, iot, tarball, meta, nobind and 4 in the chain
    assert counts["commitmeta"] == 1
    assert counts["filez"] > 3000 and counts["dirtree"] > 20 and counts["dirmeta"] > 5


def test_zoo_covers_every_framing_offset_width(zoo_repo: Repo) -> None:
    """The zoo is only as good as its shapes: check it really has them."""

    def raw_tree(path: str) -> bytes:
        csum, kind = lookup(zoo_repo, "main", path)
        assert kind is ObjectType.DIR_TREE
        return zoo_repo.read_object_raw(csum, ObjectType.DIR_TREE)

    assert offset_size(len(raw_tree("/unicode/dir-ñ"))) == 1
    assert offset_size(len(raw_tree("/wide-w2"))) == 2
    assert offset_size(len(raw_tree("/wide-w4"))) == 4
    assert offset_size(len(raw_tree("/wide3000"))) == 4
    assert len(parse_dirtree(raw_tree("/wide3000")).files) == 3000
    # Elements longer than 255 bytes get 2-byte offsets of their own.
    assert "a" * 250 in dict(parse_dirtree(raw_tree("/files")).files)
    assert [n for n, _, _ in parse_dirtree(raw_tree("/subdirs")).dirs] == ["d" * 250]
    deep = "/deep/" + "/".join(f"level{i:02d}" for i in range(1, 21))
    assert lookup(zoo_repo, "main", deep + "/leaf")[1] is ObjectType.FILE


def test_xattrs_from_a_tarball_are_hashed_in_stored_order(zoo_repo: Repo) -> None:
    """``ostree commit --tree=tar=`` (2022.7) stores xattrs in libarchive's order,
    unsorted, and names the object after that order; we must re-hash them as stored."""
    csum, _ = lookup(zoo_repo, "tarball", "/etc/labelled")
    data = zoo_repo.read_object_raw(csum, ObjectType.FILE)
    header = parse_filez(data).header
    names = [name for name, _ in header.xattrs]
    assert names == [b"trusted.t\0", b"user.a\0", b"user.b\0", b"security.ima\0"]
    assert names != sorted(names)
    assert filez_checksum(data)[0] == csum
    assert zoo_repo.read_file(csum)[1] == b"labelled\n"
    # A writer sorts: the same file written by libpyostree has another name.
    assert content_checksum(header, b"labelled\n") != csum
    etc = {n: m for n, _, m in zoo_repo.read_dirtree(lookup(zoo_repo, "tarball", "/")[0]).dirs}
    assert zoo_repo.read_dirmeta(etc["etc"]).xattrs == ((b"user.z\0", b"z"), (b"user.a\0", b"a"))


def test_fsck_agrees_with_ostree_fsck(ostree_repo_zoo: Zoo, zoo_repo: Repo) -> None:
    ours = fsck(zoo_repo)
    assert ours.ok, [str(p) for p in ours.problems]
    out = run_ostree("fsck", f"--repo={ostree_repo_zoo.path}")
    done, total = map(int, re.findall(r"fsck objects \((\d+)/(\d+)\)", out)[-1])
    assert done == total
    (commits,) = map(int, re.findall(r"object fsck of (\d+) commits completed", out))
    assert ours.commits == commits == 9
    # ostree counts reachable commits, dirtrees, dirmetas and files (not .commitmeta).
    assert ours.commits + ours.metadata_objects + ours.content_objects == total
    on_disk = [
        name
        for _, _, names in os.walk(ostree_repo_zoo.path / "objects")
        for name in names
        if not name.endswith(".commitmeta")
    ]
    assert len(on_disk) == total
    proc = pyostree_result("fsck", "--repo", ostree_repo_zoo.path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "" and "no problems" in proc.stderr


@pytest.fixture(scope="module")
def ls_outputs(ostree_repo_zoo: Zoo) -> dict[str, tuple[str, str]]:
    """``ostree ls -R -C REF`` and ``pyostree ls -R -C REF`` for every ref, run in parallel."""
    repo = ostree_repo_zoo.path

    def both(ref: str) -> tuple[str, str]:
        return (
            run_ostree("ls", f"--repo={repo}", "-R", "-C", ref),
            run_pyostree("ls", "--repo", repo, "-R", "-C", ref),
        )

    with ThreadPoolExecutor(max_workers=4) as pool:
        return dict(zip(ZOO_REFS, pool.map(both, ZOO_REFS), strict=True))


@pytest.mark.parametrize("ref", ZOO_REFS)
def test_ls_recursive_with_checksums_matches_ostree(
    ls_outputs: dict[str, tuple[str, str]], ref: str
) -> None:
    theirs, ours = ls_outputs[ref]
    assert theirs.count("\n") > 5
    assert ours.splitlines() == theirs.splitlines()
    assert ours == theirs  # byte for byte, final newline included


def test_refs_match_ostree_refs(ostree_repo_zoo: Zoo, zoo_repo: Repo) -> None:
    theirs = run_ostree("refs", f"--repo={ostree_repo_zoo.path}").splitlines()
    ours = run_pyostree("refs", "--repo", ostree_repo_zoo.path).splitlines()
    assert set(ours) == set(theirs) == set(ZOO_REFS)
    assert zoo_repo.list_refs() == {name: ostree_repo_zoo.refs[name] for name in sorted(ZOO_REFS)}
    aliases = run_ostree("refs", f"--repo={ostree_repo_zoo.path}", "--alias").split()
    assert aliases == ["stable", "->", "main"]
    assert zoo_repo.ref_alias_target("stable") == "main"
    assert zoo_repo.ref_alias_target("main") is None


@pytest.mark.parametrize("ref", ["chain", "origin:foo", "stable", "fedora/x86_64/iot", "nobind"])
def test_log_lists_the_same_commits_as_ostree_log(ostree_repo_zoo: Zoo, ref: str) -> None:
    theirs = log_checksums(run_ostree("log", f"--repo={ostree_repo_zoo.path}", ref))
    ours = log_checksums(run_pyostree("log", "--repo", ostree_repo_zoo.path, ref))
    assert ours == theirs
    if ref == "chain":
        assert ours == ostree_repo_zoo.chain_commits[::-1]


def test_rev_parse_matches_ostree(ostree_repo_zoo: Zoo, zoo_repo: Repo) -> None:
    main = ostree_repo_zoo.refs["main"]
    revs = [
        "chain",
        "chain^",
        "chain^^",
        "chain^^^",
        "chain^^^^",  # past the root: both fail
        "origin:foo",
        "origin:foo^",
        "foo",  # a bare remote ref name resolves to origin:foo in ostree too
        "stable",
        "fedora/x86_64/iot",
        "fedora/x86_64/iot^",  # no parent
        main[:12],
        f"{ostree_repo_zoo.refs['chain']}^^",
        "no-such-ref",
    ]
    for rev in revs:
        proc = ostree_result("rev-parse", f"--repo={ostree_repo_zoo.path}", rev)
        if proc.returncode == 0:
            assert zoo_repo.resolve_rev(rev) == proc.stdout.strip(), rev
        else:
            with pytest.raises(RefNotFoundError):
                zoo_repo.resolve_rev(rev)
    assert zoo_repo.resolve_rev("chain^^") == ostree_repo_zoo.chain_commits[1]


def test_summary_written_by_ostree_lists_its_refs(ostree_repo_zoo: Zoo, zoo_repo: Repo) -> None:
    summary = read_summary(zoo_repo)  # strict: ostree writes normal form
    theirs = run_ostree("refs", f"--repo={ostree_repo_zoo.path}").splitlines()
    heads = {name: ostree_repo_zoo.refs[name] for name in theirs if ":" not in name}
    assert {ref.name: ref.checksum for ref in summary.refs} == heads
    for ref in summary.refs:
        raw = zoo_repo.read_object_raw(ref.checksum, ObjectType.COMMIT)
        assert ref.commit_size == len(raw)
        commit = parse_commit(raw)
        assert ref.timestamp == commit.timestamp
        assert ref.version == commit.version
    meta = summary.ref("meta")
    assert meta is not None and meta.version == "42.1"
    assert summary.metadata["ostree.summary.mode"] == Variant("s", "archive-z2")
    # ... and ostree's own view of the same file
    view = run_ostree("summary", f"--repo={ostree_repo_zoo.path}", "--view")
    listed = re.findall(
        r"^\* (\S+)\n\s+Latest Commit \((\d+) bytes\):\n\s+([0-9a-f]{64})$", view, re.M
    )
    assert {(r.name, str(r.commit_size), r.checksum) for r in summary.refs} == set(listed)


def _swap(fmt: str, value: int | float) -> int | float:
    """What ostree 2022.7 shows: ``ot_dump_variant`` byteswaps metadata on little-endian
    hosts (it assumes ostree's big-endian convention), so integers and doubles added
    with ``--add-metadata`` (stored little-endian by the GVariant parser) print swapped."""
    swapped: int | float = struct.unpack("<" + fmt, struct.pack(">" + fmt, value))[0]
    return swapped


def _from_ostree_show(text: str, type_string: str) -> object:
    """The value ``ostree show --print-metadata-key`` printed, byteswapped back."""
    ints = {"u": "I", "x": "q", "t": "Q"}
    if type_string in ints:
        m = re.fullmatch(r"(?:u?int(?:32|64) )(-?\d+)", text)
        assert m, text
        return _swap(ints[type_string], int(m.group(1)))
    if type_string == "b":
        return {"true": True, "false": False}[text]
    if type_string in ("s", "as"):
        return ast.literal_eval(text)
    if type_string == "d":
        return _swap("d", float(text))
    if type_string == "o":
        m = re.fullmatch(r"objectpath '(.*)'", text)
        return m and m.group(1)
    if type_string == "ms":
        m = re.fullmatch(r"@ms '(.*)'", text)
        return m and m.group(1)
    if type_string == "(sq)":
        m = re.fullmatch(r"\('(.*)', uint16 (\d+)\)", text)
        assert m, text
        return (m.group(1), _swap("H", int(m.group(2))))
    if type_string == "ay":
        if text.startswith("b'"):
            return ast.literal_eval(text) + b"\0"  # a bytestring shows without its NUL
        return bytes(int(b, 16) for b in re.findall(r"0x([0-9a-f]{2})", text))
    if type_string == "a{sv}":
        out: dict[str, Variant] = {}
        for key, num, string in re.findall(r"'([^']*)': <(?:uint32 (\d+)|'([^']*)')>", text):
            out[key] = Variant("u", _swap("I", int(num))) if num else Variant("s", string)
        return out
    raise AssertionError(f"no reader for {type_string}")


def test_commit_metadata_matches_ostree_show(ostree_repo_zoo: Zoo, zoo_repo: Repo) -> None:
    commit = zoo_repo.read_commit(ostree_repo_zoo.refs["meta"])
    expected = {k: Variant("s", v) for k, v in ZOO_METADATA_STRINGS.items()}
    expected |= {k: value for k, (_, value) in ZOO_METADATA.items()}
    expected["ostree.ref-binding"] = Variant("as", ["meta"])
    assert commit.metadata == expected
    # ostree keeps insertion order (no sorting) and appends the binding last.
    assert list(commit.metadata) == [*ZOO_METADATA_STRINGS, *ZOO_METADATA, "ostree.ref-binding"]
    assert commit.version == "42.1" and commit.ref_bindings == ["meta"]
    repo = f"--repo={ostree_repo_zoo.path}"
    for key, value in expected.items():
        shown = run_ostree("show", repo, "meta", f"--print-metadata-key={key}").strip()
        assert _from_ostree_show(shown, value.type) == value.value, (key, shown)
    assert zoo_repo.read_commitmeta(ostree_repo_zoo.refs["meta"]) == {
        k: Variant("s", v) for k, v in ZOO_DETACHED.items()
    }
    shown = run_ostree("show", repo, "meta", "--print-detached-metadata-key=detached.note")
    assert ast.literal_eval(shown.strip()) == ZOO_DETACHED["detached.note"]
    # --no-bindings: no metadata at all, and ostree agrees there is no binding.
    assert zoo_repo.read_commit(ostree_repo_zoo.refs["nobind"]).metadata == {}
    proc = ostree_result("show", repo, "nobind", "--print-metadata-key=ostree.ref-binding")
    assert proc.returncode != 0
    main = zoo_repo.read_commit(ostree_repo_zoo.refs["main"])
    assert (main.subject, main.body, main.timestamp) == (MAIN_SUBJECT, MAIN_BODY, BASE_TIME)
    assert main.metadata == {"ostree.ref-binding": Variant("as", ["main"])}


# --- 2. repositories written by libpyostree, read by ostree ----------------------------


@pytest.fixture(scope="module")
def our_main_repo(ostree_repo_zoo: Zoo, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The zoo's main tree committed by libpyostree exactly as the zoo committed it."""
    path = tmp_path_factory.mktemp("ours-main") / "repo"
    repo = Repo.init(path)
    commit_directory(
        repo,
        ostree_repo_zoo.main_tree,
        branch="main",
        subject=MAIN_SUBJECT,
        body=MAIN_BODY,
        timestamp=BASE_TIME,
        owner_uid=0,
        owner_gid=0,
    )
    return path


def test_our_commit_of_a_tree_is_byte_identical_to_ostree_commit(
    ostree_repo_zoo: Zoo, zoo_repo: Repo, our_main_repo: Path
) -> None:
    ours = Repo.open(our_main_repo)
    csum = ours.read_ref("main")
    # Same tree, owners, timestamp, subject, body and the one binding: same commit.
    assert csum == ostree_repo_zoo.refs["main"]
    closure = set(iter_commit_closure(zoo_repo, ostree_repo_zoo.refs["main"]))
    assert set(ours.iter_objects()) == closure
    for checksum, objtype in closure:
        if objtype is not ObjectType.FILE:
            raw = ours.read_object_raw(checksum, objtype)
            assert raw == zoo_repo.read_object_raw(checksum, objtype)


def test_ostree_reads_our_repository(
    our_main_repo: Path, ls_outputs: dict[str, tuple[str, str]]
) -> None:
    out = run_ostree("fsck", f"--repo={our_main_repo}")
    assert "completed successfully" in out
    log = run_ostree("log", f"--repo={our_main_repo}", "main")
    assert log_checksums(log) == [Repo.open(our_main_repo).read_ref("main")]
    assert MAIN_SUBJECT in log
    listing = run_ostree("ls", f"--repo={our_main_repo}", "-R", "-C", "main")
    assert listing == ls_outputs["main"][0]


def _checked_out_tree(zoo: Zoo, dest: Path) -> Path:
    """A tree that went through ``ostree checkout -U``: the tarball commit (owners and
    modes such as 2770 dirs) plus several directories of the main tree."""
    run_ostree(*OSTREE_CHECKOUT, f"--repo={zoo.path}", "tarball", dest)
    for sub in ("files", "links", "dirs", "unicode"):
        run_ostree(*OSTREE_CHECKOUT, f"--repo={zoo.path}", f"--subpath=/{sub}", "main", dest / sub)
    return dest


@pytest.mark.parametrize(
    "extra",
    [(), ("--no-bindings",), ("--add-metadata-string=version=7.0",)],
    ids=["branch-binding", "no-bindings", "with-version"],
)
def test_commit_of_a_checked_out_tree_matches_ostree_commit(
    ostree_repo_zoo: Zoo, tmp_path: Path, extra: tuple[str, ...]
) -> None:
    tree = _checked_out_tree(ostree_repo_zoo, tmp_path / "tree")
    args = ["-b", "co", "-s", "checked out", "--timestamp", iso(BASE_TIME + 7)]
    args += ["--owner-uid", "1000", "--owner-gid", "100", *extra]
    theirs_repo, ours_repo = tmp_path / "theirs", tmp_path / "ours"
    run_ostree("init", f"--repo={theirs_repo}", "--mode=archive")
    theirs = ostree_commit(theirs_repo, *args, tree)
    run_pyostree("init", "--repo", ours_repo)
    ours = run_pyostree("commit", "--repo", ours_repo, *args, tree).strip()

    t_commit = Repo.open(theirs_repo).read_commit(theirs)
    o_commit = Repo.open(ours_repo).read_commit(ours)
    assert (o_commit.root_dirtree, o_commit.root_dirmeta) == (
        t_commit.root_dirtree,
        t_commit.root_dirmeta,
    )
    assert o_commit.metadata == t_commit.metadata
    # The commit checksums differ only when the metadata keys are in another order:
    # ostree keeps --add-metadata order and appends ostree.ref-binding, we sort keys.
    assert (ours == theirs) == (list(o_commit.metadata) == list(t_commit.metadata))
    if extra != ("--add-metadata-string=version=7.0",):
        assert ours == theirs
    else:
        assert list(t_commit.metadata) == ["version", "ostree.ref-binding"]
        assert list(o_commit.metadata) == ["ostree.ref-binding", "version"]
    # Every file checksum: ostree's own listing of both repositories is the same.
    assert run_ostree("ls", f"--repo={ours_repo}", "-R", "-C", "co") == run_ostree(
        "ls", f"--repo={theirs_repo}", "-R", "-C", "co"
    )
    assert "completed successfully" in run_ostree("fsck", f"--repo={ours_repo}")
    assert log_checksums(run_ostree("log", f"--repo={ours_repo}", "co")) == [ours]


@pytest.fixture(scope="module")
def our_pull_repo(
    ostree_repo_zoo: Zoo, zoo_repo: Repo, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, list[str]]:
    """A repository written only by libpyostree: ``chain3`` (3 commits), ``tarball-copy``
    (our checkout of the zoo's tarball commit, xattrs applied where we may) and a summary.
    Returns the path and the chain3 commits, oldest first."""
    work = tmp_path_factory.mktemp("ours-pull")
    repo = Repo.init(work / "repo")
    chain: list[str] = []
    for i in range(3):
        make_small_tree(work / f"tree-{i}", i + 10)
        chain.append(
            commit_directory(
                repo,
                work / f"tree-{i}",
                branch="chain3",
                subject=f"ours {i}",
                timestamp=BASE_TIME + i,
                owner_uid=0,
                owner_gid=0,
            )
        )
    checkout(zoo_repo, "tarball", work / "tarball", xattrs=True)
    commit_directory(repo, work / "tarball", branch="tarball-copy", timestamp=BASE_TIME)
    update_summary(repo, timestamp=BASE_TIME)
    return repo.path, chain


@pytest.fixture(scope="module")
def served_repo(our_pull_repo: tuple[Path, list[str]]) -> Iterator[str]:
    with serve_http(our_pull_repo[0]) as url:
        yield url


def test_ostree_summary_parses_our_summary(our_pull_repo: tuple[Path, list[str]]) -> None:
    path, chain = our_pull_repo
    view = run_ostree("summary", f"--repo={path}", "--view")
    listed = re.findall(
        r"^\* (\S+)\n\s+Latest Commit \((\d+) bytes\):\n\s+([0-9a-f]{64})$", view, re.M
    )
    repo = Repo.open(path)
    expected = {
        (name, str(len(repo.read_object_raw(csum, ObjectType.COMMIT))), csum)
        for name, csum in repo.list_refs().items()
    }
    assert set(listed) == expected
    assert (
        "chain3",
        str(len(repo.read_object_raw(chain[-1], ObjectType.COMMIT))),
        chain[-1],
    ) in expected
    assert "Repository Mode (ostree.summary.mode): archive-z2" in view


def _new_client(path: Path, url: str) -> Path:
    run_ostree("init", f"--repo={path}", "--mode=archive")
    run_ostree("remote", "add", f"--repo={path}", "--no-gpg-verify", "origin", url)
    return path


def test_ostree_pull_mirror_from_our_repo(
    served_repo: str, our_pull_repo: tuple[Path, list[str]], tmp_path: Path
) -> None:
    mirror = _new_client(tmp_path / "mirror", served_repo)
    run_ostree("pull", f"--repo={mirror}", "--mirror", "origin")
    assert "completed successfully" in run_ostree("fsck", f"--repo={mirror}")
    assert Repo.open(mirror).list_refs() == Repo.open(our_pull_repo[0]).list_refs()
    assert fsck(Repo.open(mirror)).ok


def test_ostree_pull_from_our_repo(
    served_repo: str, our_pull_repo: tuple[Path, list[str]], tmp_path: Path
) -> None:
    client = _new_client(tmp_path / "client", served_repo)
    run_ostree("pull", f"--repo={client}", "origin", "chain3", "tarball-copy")
    assert "completed successfully" in run_ostree("fsck", f"--repo={client}")
    refs = run_ostree("refs", f"--repo={client}").split()
    assert sorted(refs) == ["origin:chain3", "origin:tarball-copy"]
    # Without --depth only the head commit comes over.
    log = run_ostree("log", f"--repo={client}", "origin:chain3")
    assert log_checksums(log) == [our_pull_repo[1][-1]]


def test_ostree_pull_depth_fetches_our_whole_history(
    served_repo: str, our_pull_repo: tuple[Path, list[str]], tmp_path: Path
) -> None:
    client = _new_client(tmp_path / "client", served_repo)
    run_ostree("pull", f"--repo={client}", "--depth=-1", "origin", "chain3")
    assert "completed successfully" in run_ostree("fsck", f"--repo={client}")
    log = run_ostree("log", f"--repo={client}", "origin:chain3")
    assert log_checksums(log) == our_pull_repo[1][::-1]


# --- 3. checkout ------------------------------------------------------------------------

#: (label, rev, subpath) checked out by both tools.
CHECKOUTS = [
    ("main", "main", "/"),
    ("tarball", "tarball", "/"),
    ("chain-parent", "chain^", "/"),
    ("main-dirs", "stable", "/dirs"),
]


def tree_snapshot(root: Path) -> dict[str, tuple[object, ...]]:
    """Every path under ``root``: file type, permission bits, content hash or link target."""
    out: dict[str, tuple[object, ...]] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in [".", *dirnames, *filenames]:
            path = os.path.normpath(os.path.join(dirpath, name))
            st = os.lstat(path)
            rel = os.path.relpath(path, root)
            if stat.S_ISLNK(st.st_mode):
                out[rel] = ("symlink", os.readlink(path))
            elif stat.S_ISDIR(st.st_mode):
                out[rel] = ("dir", oct(stat.S_IMODE(st.st_mode)))
            elif stat.S_ISREG(st.st_mode):
                with open(path, "rb") as f:
                    digest = hashlib.sha256(f.read()).hexdigest()
                out[rel] = ("file", oct(stat.S_IMODE(st.st_mode)), digest)
            else:
                out[rel] = ("other", stat.S_IFMT(st.st_mode))
    return out


@pytest.fixture(scope="module")
def checkouts(
    ostree_repo_zoo: Zoo, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, tuple[Path, Path]]:
    """label → (``ostree checkout -U`` result, ``pyostree checkout`` result)."""
    base = tmp_path_factory.mktemp("checkouts")
    repo = ostree_repo_zoo.path

    def both(spec: tuple[str, str, str]) -> tuple[Path, Path]:
        label, rev, subpath = spec
        theirs, ours = base / f"{label}-ostree", base / f"{label}-ours"
        run_ostree(*OSTREE_CHECKOUT, f"--repo={repo}", f"--subpath={subpath}", rev, theirs)
        run_pyostree("checkout", "--repo", repo, "--subpath", subpath, rev, ours)
        return theirs, ours

    with ThreadPoolExecutor(max_workers=2) as pool:
        return dict(zip([c[0] for c in CHECKOUTS], pool.map(both, CHECKOUTS), strict=True))


@pytest.mark.parametrize("label", [c[0] for c in CHECKOUTS])
def test_checkout_writes_what_ostree_checkout_user_mode_writes(
    checkouts: dict[str, tuple[Path, Path]], label: str
) -> None:
    theirs, ours = (tree_snapshot(p) for p in checkouts[label])
    differences = {
        path: (theirs.get(path), ours.get(path))
        for path in sorted(theirs.keys() | ours.keys())
        if theirs.get(path) != ours.get(path)
    }
    assert differences == {}
    assert len(theirs) > 5


def test_checkout_modes_follow_ostree_user_mode(checkouts: dict[str, tuple[Path, Path]]) -> None:
    """What ostree 2022.7 ``checkout -U`` does with special modes (and so must we): files
    lose setuid/setgid but keep sticky, unreadable files gain u+r, directories keep all."""
    ours = checkouts["main"][1]

    def mode(rel: str) -> int:
        return stat.S_IMODE(os.lstat(ours / rel).st_mode)

    assert mode("files/setuid") == 0o755
    assert mode("files/setgid") == 0o755
    assert mode("files/setuid-setgid") == 0o755
    assert mode("files/sticky-file") == 0o1644
    assert mode("files/no-perms") == 0o400
    assert mode("files/readonly") == 0o444
    assert mode("dirs/sticky") == 0o1777
    assert mode("dirs/setgid-dir") == 0o2775
    assert mode("dirs/read-only") == 0o555
    assert mode("dirs/private") == 0o700
    assert os.readlink(ours / "links" / "dangling") == "does/not/exist"


# --- 4. bad input -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def small_ostree_repo(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    work = tmp_path_factory.mktemp("small")
    refs = build_small_repo(work / "repo", work)
    return work / "repo", refs


@pytest.fixture
def broken(small_ostree_repo: tuple[Path, dict[str, str]], tmp_path: Path) -> Repo:
    """A private copy of the small ostree-made repository, to corrupt."""
    path = tmp_path / "repo"
    shutil.copytree(small_ostree_repo[0], path, symlinks=True)
    return Repo.open(path)


def flip_byte(path: Path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0xFF
    os.chmod(path, 0o644)
    path.write_bytes(bytes(data))


def truncate(path: Path, size: int) -> None:
    os.chmod(path, 0o644)
    os.truncate(path, size)


def problems_by_checksum(repo: Repo) -> dict[str, FsckProblem]:
    result = fsck(repo)
    by_checksum = {p.checksum: p for p in result.problems}
    assert len(by_checksum) == len(result.problems), result.problems  # each reported once
    return by_checksum


def assert_cli_fsck_reports(repo: Repo, *expected: tuple[str, str]) -> None:
    """``pyostree fsck`` exits 1 and prints a ``TYPE CHECKSUM: why`` line for each problem."""
    proc = pyostree_result("fsck", "--repo", repo.path)
    assert proc.returncode == 1, (proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr
    lines = proc.stdout.splitlines()
    for objtype, checksum in expected:
        assert any(line.startswith(f"{objtype} {checksum}: ") for line in lines), (lines, checksum)


def assert_ostree_fsck_fails(repo: Repo) -> None:
    """Sanity: the real ostree agrees that the copy is broken."""
    proc = ostree_result("fsck", f"--repo={repo.path}")
    assert proc.returncode != 0, proc.stdout


def assert_cli_fails_cleanly(*args: str | os.PathLike[str]) -> str:
    proc = pyostree_result(*args)
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr
    assert proc.stderr.startswith("pyostree: error: ") and proc.stderr.count("\n") == 1
    return proc.stderr


def plant_commit(
    repo: Repo,
    ref: str,
    *,
    files: tuple[tuple[str, Checksum], ...] = (),
    dirs: tuple[tuple[str, Checksum], ...] = (),
    root_tree: bytes | None = None,
) -> Checksum:
    """A commit (at ``ref``) whose root holds ``files`` and ``dirs`` (name, dirtree) —
    or the raw ``root_tree`` bytes — stored under their sha256 like ostree would."""
    dirmeta = repo.read_commit(repo.resolve_rev("small")).root_dirmeta
    if root_tree is None:
        root_tree = DirTree(files, tuple((n, t, dirmeta) for n, t in dirs)).to_bytes()
    tree = metadata_checksum(root_tree)
    repo.write_object_raw(tree, ObjectType.DIR_TREE, root_tree)
    data = Commit(tree, dirmeta, subject="planted", timestamp=BASE_TIME).to_bytes()
    commit = metadata_checksum(data)
    repo.write_object_raw(commit, ObjectType.COMMIT, data)
    repo.set_ref(ref, commit)
    return commit


def test_flipped_byte_in_filez_deflate_body(broken: Repo) -> None:
    csum, _ = lookup(broken, "small", "/data/blob")
    path = broken.object_path(csum, ObjectType.FILE)
    info = parse_filez(path.read_bytes())
    flip_byte(path, info.body_offset + (path.stat().st_size - info.body_offset) // 2)
    with pytest.raises(CorruptObjectError) as exc:
        broken.read_file(csum)
    assert exc.value.checksum == csum and exc.value.objtype == "file"
    assert re.search(r"checksum expected=|invalid deflate|truncated deflate", str(exc.value))
    problem = problems_by_checksum(broken)[csum]
    assert problem.objtype == "file"
    assert_cli_fsck_reports(broken, ("file", csum))
    assert_ostree_fsck_fails(broken)


def test_flipped_byte_in_dirtree(broken: Repo) -> None:
    csum, _ = lookup(broken, "small", "/data")
    path = broken.object_path(csum, ObjectType.DIR_TREE)
    flip_byte(path, path.stat().st_size // 2)
    with pytest.raises(CorruptObjectError, match=f"checksum expected={csum} actual=") as exc:
        broken.read_dirtree(csum)
    assert exc.value.expected == csum and exc.value.actual not in (None, csum)
    assert problems_by_checksum(broken)[csum].objtype == "dirtree"
    assert_cli_fsck_reports(broken, ("dirtree", csum))
    assert_ostree_fsck_fails(broken)


def test_flipped_byte_in_commit(
    broken: Repo, small_ostree_repo: tuple[Path, dict[str, str]]
) -> None:
    csum = small_ostree_repo[1]["small"]
    path = broken.object_path(csum, ObjectType.COMMIT)
    flip_byte(path, 3)
    with pytest.raises(CorruptObjectError, match=f"Corrupted commit object {csum}: checksum"):
        broken.read_commit(csum)
    assert problems_by_checksum(broken)[csum].objtype == "commit"
    assert_cli_fsck_reports(broken, ("commit", csum))
    assert csum in assert_cli_fails_cleanly("log", "--repo", broken.path, "small")
    assert_ostree_fsck_fails(broken)


def test_truncated_filez(broken: Repo) -> None:
    blob, _ = lookup(broken, "small", "/data/blob")
    readme, _ = lookup(broken, "small", "/README")
    blob_path = broken.object_path(blob, ObjectType.FILE)
    truncate(blob_path, blob_path.stat().st_size - 10)  # inside the deflate stream
    truncate(broken.object_path(readme, ObjectType.FILE), 6)  # inside the length prefix
    with pytest.raises(CorruptObjectError, match=r"truncated deflate stream|invalid deflate"):
        broken.read_file(blob)
    with pytest.raises(CorruptObjectError, match="truncated header"):
        broken.read_file(readme)
    problems = problems_by_checksum(broken)
    assert set(problems) == {blob, readme}
    assert "truncated header" in problems[readme].message
    assert_cli_fsck_reports(broken, ("file", blob), ("file", readme))
    assert_ostree_fsck_fails(broken)


def test_truncated_dirtree(broken: Repo) -> None:
    csum, _ = lookup(broken, "small", "/bin")
    path = broken.object_path(csum, ObjectType.DIR_TREE)
    truncate(path, path.stat().st_size // 2)
    with pytest.raises(CorruptObjectError, match=f"checksum expected={csum}"):
        broken.read_dirtree(csum)
    # Not trusting the name, the bytes are not even a dirtree any more:
    with pytest.raises(CorruptObjectError, match=f"Corrupted dirtree object {csum}"):
        broken.read_dirtree(csum, verify=False)
    assert problems_by_checksum(broken)[csum].objtype == "dirtree"
    assert_cli_fsck_reports(broken, ("dirtree", csum))
    assert_ostree_fsck_fails(broken)


def _raw_deflate(data: bytes) -> bytes:
    deflater = zlib.compressobj(6, zlib.DEFLATED, -15)
    return deflater.compress(data) + deflater.flush()


def test_filez_with_device_mode_or_rdev(broken: Repo) -> None:
    """Headers no ostree writer produces, stored under the name ostree would give them;
    ``archive_header`` builds the bytes without the validation ``build_filez`` does."""
    device = FileHeader(0, 0, stat.S_IFCHR | 0o644)
    with_rdev = FileHeader(0, 0, stat.S_IFREG | 0o644, rdev=0x0801)
    dev_csum = content_checksum(device)
    rdev_csum = content_checksum(with_rdev, b"x")
    broken.write_object_raw(dev_csum, ObjectType.FILE, device.archive_header(0) + _raw_deflate(b""))
    broken.write_object_raw(
        rdev_csum, ObjectType.FILE, with_rdev.archive_header(1) + _raw_deflate(b"x")
    )
    plant_commit(broken, "devices", files=(("dev", dev_csum), ("rdev", rdev_csum)))
    with pytest.raises(CorruptObjectError, match="invalid mode 20644") as exc:
        broken.read_file(dev_csum)
    assert exc.value.checksum == dev_csum
    with pytest.raises(CorruptObjectError, match="invalid rdev 2049"):
        broken.read_file(rdev_csum)
    problems = problems_by_checksum(broken)
    assert set(problems) == {dev_csum, rdev_csum}
    assert "invalid mode 20644" in problems[dev_csum].message
    assert "invalid rdev 2049" in problems[rdev_csum].message
    assert_cli_fsck_reports(broken, ("file", dev_csum), ("file", rdev_csum))
    assert_ostree_fsck_fails(broken)


def _non_normal_dirtree(file_csum: Checksum) -> bytes:
    """Six files framed with 2-byte offsets where 1-byte ones suffice: GLib reads the
    entries fine (the width follows from the size), but it is not normal form."""
    elements = [
        frame_pair(f"file-0{i}".encode() + b"\0", bytes.fromhex(file_csum)) for i in range(6)
    ]
    body = b"".join(elements)
    assert len(body) + len(elements) <= 0xFF < len(body) + 2 * len(elements)
    ends, pos = [], 0
    for element in elements:
        pos += len(element)
        ends.append(pos)
    files = body + struct.pack(f"<{len(ends)}H", *ends)
    # the tuple's own offset (end of member 0) is minimal for its total size
    return files + len(files).to_bytes(offset_size(len(files) + 2), "little")


def test_non_normal_dirtree_is_caught_by_normal_form_checking(broken: Repo, tmp_path: Path) -> None:
    readme, _ = lookup(broken, "small", "/README")
    data = _non_normal_dirtree(readme)
    lenient = decode(DIRTREE_TYPE, data, strict=False)
    assert [name for name, _ in lenient[0]] == [f"file-0{i}" for i in range(6)]
    assert not is_normal_form(DIRTREE_TYPE, data)
    bad = metadata_checksum(data)
    broken.write_object_raw(bad, ObjectType.DIR_TREE, data)
    plant_commit(broken, "non-normal", dirs=(("sub", bad),))
    with pytest.raises(CorruptObjectError, match=f"Corrupted dirtree object {bad}: .*not minimal"):
        broken.read_dirtree(bad)
    problems = problems_by_checksum(broken)
    assert set(problems) == {bad} and problems[bad].objtype == "dirtree"
    assert_cli_fsck_reports(broken, ("dirtree", bad))
    # ostree fsck cannot see this: it loads loose metadata as *trusted* GVariants, for
    # which g_variant_is_normal_form() is always true (so does ``pull-local
    # --untrusted``).  A pull over HTTP reads it untrusted and refuses it.
    with serve_http(broken.path) as url:
        client = _new_client(tmp_path / "client", url)
        proc = ostree_result("pull", f"--repo={client}", "origin", "non-normal")
    assert proc.returncode != 0
    assert f"{bad}.dirtree: Not normal form" in proc.stderr


def test_dirtree_entry_named_dotdot_slash(broken: Repo, tmp_path: Path) -> None:
    readme, _ = lookup(broken, "small", "/README")
    tree = DirTree(files=(("../x", readme),)).to_bytes()  # the builder does not validate
    bad = metadata_checksum(tree)
    plant_commit(broken, "escape", root_tree=tree)
    with pytest.raises(CorruptObjectError, match=r"Invalid / in filename \.\./x") as exc:
        broken.read_dirtree(bad)
    assert exc.value.checksum == bad
    problems = problems_by_checksum(broken)
    assert set(problems) == {bad} and "../x" in problems[bad].message
    assert_cli_fsck_reports(broken, ("dirtree", bad))
    message = assert_cli_fails_cleanly("checkout", "--repo", broken.path, "escape", tmp_path / "co")
    assert "../x" in message
    assert not (tmp_path / "x").exists()
    assert_ostree_fsck_fails(broken)


def test_missing_file_object(broken: Repo) -> None:
    csum, _ = lookup(broken, "small", "/bin/tool")
    broken.object_path(csum, ObjectType.FILE).unlink()
    with pytest.raises(ObjectNotFoundError):
        broken.read_file(csum)
    problems = problems_by_checksum(broken)
    assert problems == {csum: FsckProblem(csum, "file", "missing file object")}
    assert_cli_fsck_reports(broken, ("file", csum))
    assert_ostree_fsck_fails(broken)


def test_ref_to_a_missing_commit(broken: Repo) -> None:
    ghost = Checksum("ab" * 32)
    (broken.path / "refs" / "heads" / "ghost").write_text(ghost + "\n")
    problems = problems_by_checksum(broken)
    assert set(problems) == {ghost}
    assert problems[ghost].objtype == "commit" and "ghost" in problems[ghost].message
    assert_cli_fsck_reports(broken, ("commit", ghost))
    assert ghost in assert_cli_fails_cleanly("log", "--repo", broken.path, "ghost")
    assert_ostree_fsck_fails(broken)


def test_garbage_config(broken: Repo) -> None:
    (broken.path / "config").write_bytes(b"\x00\xff not a key file\n[core\nmode")
    with pytest.raises(RepoError, match="config"):
        Repo.open(broken.path)
    assert "config" in assert_cli_fails_cleanly("refs", "--repo", broken.path)
    assert ostree_result("refs", f"--repo={broken.path}").returncode != 0


def test_bare_mode_config_is_refused(broken: Repo) -> None:
    config = broken.path / "config"
    config.write_text(config.read_text().replace("mode=archive-z2", "mode=bare"))
    with pytest.raises(RepoError, match="'bare'"):
        Repo.open(broken.path)
    assert "bare" in assert_cli_fails_cleanly("refs", "--repo", broken.path)


def test_fsck_reports_every_corrupted_object(
    broken: Repo, small_ostree_repo: tuple[Path, dict[str, str]]
) -> None:
    readme, _ = lookup(broken, "small", "/README")
    blob, _ = lookup(broken, "small", "/data/blob")
    tool, _ = lookup(broken, "small", "/bin/tool")
    nested, _ = lookup(broken, "small", "/data/nested")
    other = small_ostree_repo[1]["other"]
    flip_byte(broken.object_path(readme, ObjectType.FILE), -3)
    blob_path = broken.object_path(blob, ObjectType.FILE)
    truncate(blob_path, blob_path.stat().st_size // 2)
    broken.object_path(tool, ObjectType.FILE).unlink()
    flip_byte(broken.object_path(nested, ObjectType.DIR_TREE), 0)
    flip_byte(broken.object_path(other, ObjectType.COMMIT), 10)
    expected = {
        ("file", readme),
        ("file", blob),
        ("file", tool),
        ("dirtree", nested),
        ("commit", other),
    }
    problems = problems_by_checksum(broken)
    assert {(p.objtype, p.checksum) for p in problems.values()} == expected
    assert_cli_fsck_reports(broken, *expected)
    assert_ostree_fsck_fails(broken)
