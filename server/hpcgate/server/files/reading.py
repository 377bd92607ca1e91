"""Reading files the caller's worker opened: Download chunks, View selections, checksums.

The worker hands over a read-only descriptor (opened as the caller); everything here only
preads from it, in worker threads so the event loop never blocks on disk, with at most
one chunk in flight besides the one being sent (memory stays flat whatever the size).
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import threading
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

from hpcgate.server.errors import Code, DomainError, invalid_argument
from hpcgate.server.files.descriptors import Descriptor, read_exactly

HASH_BLOCK = 4 * 1024 * 1024
ALGORITHMS: dict[str, Callable[[], Any]] = {
    "sha256": hashlib.sha256,
    "sha512": hashlib.sha512,
    "md5": lambda: hashlib.md5(usedforsecurity=False),
    "blake2b": lambda: hashlib.blake2b(),
}


@dataclass(frozen=True)
class FileHeader:
    """What a download starts with: the file as it was opened."""

    size: int
    mode: int  # permission bits
    mtime_ns: int


@dataclass(frozen=True)
class Chunk:
    offset: int
    data: bytes


@dataclass(frozen=True)
class Trailer:
    """What a download ends with: the SHA-256 of the whole file."""

    sha256: str
    total_bytes: int


def _hash_range(
    fd: int, digest: hashlib._Hash, start: int, end: int, stop: threading.Event
) -> None:
    offset = start
    while offset < end and not stop.is_set():
        data = read_exactly(fd, min(HASH_BLOCK, end - offset), offset)
        if not data:
            return
        digest.update(data)
        offset += len(data)


def _changed(before: os.stat_result, after: os.stat_result) -> bool:
    return (before.st_size, before.st_mtime_ns) != (after.st_size, after.st_mtime_ns)


def _aborted(path: str) -> DomainError:
    return DomainError(
        Code.ABORTED,
        f"{path} changed (size or modification time) while it was being read; download it "
        "again, or from offset 0 if you resumed",
    )


async def download(
    fd: Descriptor, path: str, offset: int, chunk_size: int
) -> AsyncIterator[FileHeader | Chunk | Trailer]:
    """Header, chunks from `offset`, trailer with the SHA-256 of the whole file. Owns `fd`."""
    try:
        st = await asyncio.to_thread(fd.run, os.fstat)
        if offset > st.st_size:
            raise invalid_argument(
                [("offset", f"{offset} is beyond the end of the file ({st.st_size} bytes)")]
            )
        yield FileHeader(st.st_size, st.st_mode & 0o7777, st.st_mtime_ns)
        digest = hashlib.sha256()
        if offset:  # the trailer covers the whole file, so the skipped prefix is hashed too
            never = threading.Event()
            await asyncio.to_thread(fd.run, lambda n: _hash_range(n, digest, 0, offset, never))

        def read_and_hash(at: int) -> bytes:
            data = fd.run(lambda n: read_exactly(n, min(chunk_size, st.st_size - at), at))
            digest.update(data)
            return data

        position = offset
        pending = asyncio.ensure_future(asyncio.to_thread(read_and_hash, position))
        try:
            while position < st.st_size:
                data = await pending
                if not data:
                    raise _aborted(path)  # shorter than it was: truncated under us
                at = position
                position += len(data)
                if position < st.st_size:  # read ahead while this chunk is being sent
                    pending = asyncio.ensure_future(asyncio.to_thread(read_and_hash, position))
                yield Chunk(at, data)
        finally:
            pending.cancel()  # a read-ahead nobody will send (the thread finishes on its own)
        if _changed(st, await asyncio.to_thread(fd.run, os.fstat)):
            raise _aborted(path)
        yield Trailer(digest.hexdigest(), st.st_size)
    finally:
        fd.close()


async def checksum(fd: Descriptor, algorithm: str, time_limit: float, path: str) -> tuple[str, int]:
    """(hex digest, size) of the whole file by `algorithm` (a key of ALGORITHMS);
    DEADLINE_EXCEEDED past `time_limit`. Owns `fd`."""
    digest = ALGORITHMS[algorithm]()
    stop = threading.Event()
    try:
        size = (await asyncio.to_thread(fd.run, os.fstat)).st_size
        work = asyncio.ensure_future(
            asyncio.to_thread(fd.run, lambda n: _hash_range(n, digest, 0, size, stop))
        )
        try:
            await asyncio.wait_for(asyncio.shield(work), time_limit)
        except TimeoutError:
            raise DomainError(
                Code.DEADLINE_EXCEEDED,
                f"hashing {path} ({size} bytes) took longer than {time_limit:g} s; download it "
                "instead: the Download trailer carries its SHA-256",
            ) from None
        finally:
            stop.set()
        return digest.hexdigest(), size
    finally:
        fd.close()


@dataclass(frozen=True)
class Selection:
    data: bytes
    offset: int
    truncated: bool
    file_size: int


def view_bytes(fd: int, offset: int, length: int, cap: int) -> Selection:
    """A byte range: a negative offset counts from the end; length 0 = to the end."""
    size = os.fstat(fd).st_size
    start = max(0, size + offset) if offset < 0 else offset
    if start > size:
        raise invalid_argument(
            [("byte_range.offset", f"{offset} is beyond the end of the file ({size} bytes)")]
        )
    wanted = size - start if length == 0 else min(length, size - start)
    data = read_exactly(fd, min(wanted, cap), start)
    return Selection(data, start, wanted > cap, size)


def view_head(fd: int, lines: int, cap: int) -> Selection:
    """The first `lines` lines (the last one may lack a newline at the end of the file)."""
    size = os.fstat(fd).st_size
    data = read_exactly(fd, min(size, cap + 1), 0)
    end, found = 0, 0
    while found < lines:
        newline = data.find(b"\n", end)
        if newline < 0:
            end = len(data)
            break
        end, found = newline + 1, found + 1
    truncated = end > cap
    return Selection(data[: min(end, cap)], 0, truncated, size)


def view_tail(fd: int, lines: int, cap: int) -> Selection:
    """The last `lines` lines; when they exceed the cap, the oldest bytes are dropped."""
    size = os.fstat(fd).st_size
    start = max(0, size - cap - 1)
    data = read_exactly(fd, size - start, start)
    body = data[:-1] if data.endswith(b"\n") else data  # a final newline ends the last line
    cut, found = len(body), 0
    while found < lines:
        newline = body.rfind(b"\n", 0, cut)
        if newline < 0:
            cut = -1
            break
        cut, found = newline, found + 1
    if cut < 0 and start > 0:  # the lines go back further than what was read: over the cap
        first = len(data) - cap
        return Selection(data[first:], start + first, True, size)
    first = cut + 1 if cut >= 0 else 0
    if len(data) - first > cap:
        first = len(data) - cap
        return Selection(data[first:], start + first, True, size)
    return Selection(data[first:], start + first, False, size)
