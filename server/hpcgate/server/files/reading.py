"""Reading files the caller's worker opened: Download chunks, View selections, checksums.

The worker hands over a read-only descriptor (opened as the caller); everything here only
preads from it, in worker threads so the event loop never blocks on disk or hashing, with
at most two chunks in flight besides the one being sent (memory stays flat whatever the
size).
"""

from __future__ import annotations

import asyncio
import ctypes
import functools
import hashlib
import os
import platform
import threading
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from contextlib import aclosing, suppress
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


# glibc mallopt(3) parameters.
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
_LARGE_BUFFERS = 32 * 1024 * 1024  # glibc's own cap for its dynamic mmap threshold


@functools.cache
def keep_large_buffers() -> bool:
    """Lets glibc reuse freed chunk-sized buffers instead of returning them to the kernel.

    Each chunk allocates a few buffers of its size (the read, protobuf's arena, the
    serialized message, gRPC's slice). By default glibc serves them with mmap or trims
    the heap after each free, so every buffer is page-faulted in and zeroed again: on
    the 2-CPU machine of bench/files_bench.py that made Download of 1 MiB chunks 1.4x
    slower (0.7 server CPU-s per GiB more), and of 4 MiB chunks 1.8x. Buffers up to
    32 MiB now come from the heap, and up to 32 MiB of free heap stays per arena: a
    bounded amount, whatever the file sizes (16 MiB was too little for 4 MiB chunks).
    Process-wide and idempotent; False where the C library is not glibc."""
    if platform.libc_ver()[0] != "glibc":
        return False
    libc = ctypes.CDLL(None)
    return bool(
        libc.mallopt(_M_MMAP_THRESHOLD, _LARGE_BUFFERS)
        and libc.mallopt(_M_TRIM_THRESHOLD, _LARGE_BUFFERS)
    )


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
    keep_large_buffers()
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
        async with aclosing(_chunks(fd, digest, offset, st.st_size, chunk_size)) as chunks:
            async for chunk in chunks:
                if not chunk.data:
                    raise _aborted(path)  # shorter than it was: truncated under us
                yield chunk
        if _changed(st, await asyncio.to_thread(fd.run, os.fstat)):
            raise _aborted(path)
        yield Trailer(digest.hexdigest(), st.st_size)
    finally:
        fd.close()


READ_AHEAD = 2  # chunks read and hashed ahead of the one being sent


async def _chunks(
    fd: Descriptor, digest: hashlib._Hash, start: int, end: int, chunk_size: int
) -> AsyncGenerator[Chunk, None]:
    """The chunks of [start, end), hashed into `digest` in order (an empty one: the file
    ended early). A thread of this download's own reads and hashes up to READ_AHEAD chunks
    ahead, one handover per chunk, so sending waits for neither the disk nor SHA-256, and
    no worker of the shared pool is held for the whole download. In memory: at most
    READ_AHEAD + 1 chunks. Each chunk is queued after it was hashed: once the last one
    is out, the digest is complete."""
    loop = asyncio.get_running_loop()
    ready: asyncio.Queue[Chunk | BaseException] = asyncio.Queue()
    room = threading.Semaphore(READ_AHEAD)
    stop = threading.Event()

    def hand_over(item: Chunk | BaseException) -> None:
        with suppress(RuntimeError):  # the loop is closed: the server is stopping
            loop.call_soon_threadsafe(ready.put_nowait, item)

    def read(at: int) -> bytes:
        return fd.run(lambda n: read_exactly(n, min(chunk_size, end - at), at))

    def produce() -> None:
        at = start
        try:
            while at < end:
                while not room.acquire(timeout=1.0):
                    if stop.is_set():
                        return
                if stop.is_set():
                    return
                data = read(at)
                digest.update(data)  # releases the GIL: the event loop runs meanwhile
                hand_over(Chunk(at, data))
                if not data:
                    return
                at += len(data)
        except BaseException as e:  # raised in the stream, not in this thread
            hand_over(e)

    threading.Thread(target=produce, name="hpcgate-download", daemon=True).start()
    try:
        position = start
        while position < end:
            item = await ready.get()
            if isinstance(item, BaseException):
                raise item
            room.release()
            position += len(item.data)
            yield item
            if not item.data:
                return
    finally:
        stop.set()  # a producer waiting for room gives up
        room.release()


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
