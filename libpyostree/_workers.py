"""Worker pools and file re-hashing shared by fsck and archive import.

Content verification is CPU work in zlib and hashlib.  Both release the GIL,
but the per-file Python work and GIL hand-offs still serialise threads, so
forked worker processes are used where that is safe (measured on the 45k-file
corpus: two threads 2.9 s, two processes 1.9 s).
"""

from __future__ import annotations

import hashlib
import io
import multiprocessing
import os
import struct
import threading
import zlib
from concurrent.futures import Executor, ProcessPoolExecutor, ThreadPoolExecutor
from typing import BinaryIO

from .errors import CorruptObjectError, OstreeError
from .objects import filez_object_checksum, parse_file_header

STREAM_THRESHOLD = 16 * 1024 * 1024
"""Files larger than this are re-hashed in chunks instead of read whole."""
INFLATE_WHOLE_LIMIT = 1024 * 1024
"""filez_bytes_checksum inflates content up to this size at once, larger in chunks."""


def default_workers() -> int:
    return min(8, os.cpu_count() or 1)


def executor(workers: int, processes: bool | None) -> Executor:
    """Processes (forked) when ``processes`` is True, or by default when the platform
    forks and this process has no other threads (forking a threaded process is
    unsafe); threads otherwise."""
    if processes is None:
        processes = (
            workers > 1
            and "fork" in multiprocessing.get_all_start_methods()
            and threading.active_count() == 1
        )
    if processes:
        return ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("fork"))
    return ThreadPoolExecutor(workers)


def filez_bytes_checksum(data: bytes) -> str:
    """:func:`filez_object_checksum` in bounded memory: content over
    INFLATE_WHOLE_LIMIT (or claiming to be) is inflated and hashed in chunks."""
    # Every archive header starts with its length, 4 bytes of padding and the
    # content size (big-endian uint64).
    if len(data) >= 16 and int.from_bytes(data[8:16], "big") > INFLATE_WHOLE_LIMIT:
        return _stream_checksum(io.BytesIO(data), len(data))
    return filez_object_checksum(data)


def filez_file_checksum(path: str, whole_limit: int = STREAM_THRESHOLD) -> str:
    """The object name the ``.filez`` at ``path`` deserves (see filez_object_checksum);
    files over ``whole_limit`` bytes are read and inflated in chunks."""
    fd = os.open(path, os.O_RDONLY)
    try:
        size = os.fstat(fd).st_size
        if size > whole_limit:
            with os.fdopen(fd, "rb", closefd=False) as f:
                return _stream_checksum(f, size)
        data = os.read(fd, size)
        while len(data) < size:  # short reads are allowed by POSIX
            more = os.read(fd, size - len(data))
            if not more:
                break
            data += more
        return filez_object_checksum(data)
    finally:
        os.close(fd)


def _stream_checksum(f: BinaryIO, total: int) -> str:
    """Re-hash a large ``.filez`` without holding it in memory."""
    read = f.read
    prefix = read(8)
    if len(prefix) < 8:
        raise CorruptObjectError("Corrupted archive file; truncated header")
    (length,) = struct.unpack(">I", prefix[:4])
    if length == 0 or 8 + length > total:
        raise CorruptObjectError(f"Corrupted archive file; header length {length} exceeds the file")
    header_bytes = prefix + read(length)
    try:
        size, header = parse_file_header(header_bytes, 8, 8 + length, archive=True)
    except OstreeError as exc:
        raise CorruptObjectError(f"Corrupted archive file header: {exc}") from None
    header.validate()
    digest = hashlib.sha256(header.content_stream_header(sort_xattrs=False))
    if header.is_symlink:
        return digest.hexdigest()
    inflater = zlib.decompressobj(-15)
    produced = 0
    try:
        while not inflater.eof:
            chunk = read(1 << 20)
            if not chunk:
                raise CorruptObjectError("Corrupted archive file; truncated deflate stream")
            while chunk:
                # max_length bounds memory even for a decompression bomb
                out = inflater.decompress(chunk, 1 << 20)
                produced += len(out)
                if produced > size:
                    raise CorruptObjectError(f"Corrupted archive file; content exceeds size {size}")
                digest.update(out)
                chunk = inflater.unconsumed_tail
    except zlib.error as exc:
        raise CorruptObjectError(f"Corrupted archive file; invalid deflate data: {exc}") from None
    if inflater.unused_data or read(1):
        raise CorruptObjectError("Corrupted archive file; data after the deflate stream")
    if produced != size:
        raise CorruptObjectError(
            f"Corrupted archive file; content is {produced} bytes, header says {size}"
        )
    return digest.hexdigest()
