"""Upload: chunks from the client written to a temporary file beside the target, renamed into
place only when the size and SHA-256 match; anything else removes the temporary file (a
resumable upload keeps it when the stream is interrupted: files/resumable.py).

The descriptor of the temporary file was opened by the caller's worker (so the file is
theirs and counts against their quota); the server only writes to it. Chunks are written
and hashed in a thread while the event loop receives the next ones: what arrives meanwhile
is written by the next thread hop in one writev, so a fast client costs one hop per batch,
not per chunk, and memory stays bounded (BATCH_BYTES). `request_id` makes a completed
upload repeatable without writing again (table `upload_requests`).
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import threading
import time
from collections.abc import AsyncIterator
from contextlib import suppress
from dataclasses import dataclass

from hpcgate.server.errors import Code, DomainError, invalid_argument
from hpcgate.server.files.access import FileAccess, run_to_the_end
from hpcgate.server.files.descriptors import Descriptor
from hpcgate.server.files.errors import file_error
from hpcgate.server.state.store import StateStore

REQUEST_RETENTION = 86400.0
# Bytes received while a write runs before the loop waits for it (then writes them all).
BATCH_BYTES = 8 * 1024 * 1024
IOV_MAX = 1024  # writev's limit on parts per call (Linux)
HASH_BLOCK = 4 * 1024 * 1024  # reading back a kept prefix to hash it


@dataclass(frozen=True)
class UploadTarget:
    """Where and how an upload is written, as the edge validated it (api/upload_request.py)."""

    path: str  # where the file goes (checked, absolute)
    shown_path: str  # the path as the request named it (answered back)
    overwrite: bool
    mode: int | None  # None: the replaced file's, else 0644
    expected_size: int | None
    expected_sha256: str  # "" when not given
    mtime_ns: int | None
    resumable: bool = False
    offset: int = 0  # of the first chunk (a resumed upload)


@dataclass(frozen=True)
class Uploaded:
    """A file written in full: where, how big, its SHA-256."""

    path: str
    size: int
    sha256: str


class Sink:
    """Writes and hashes the chunks of one temporary file, in threads. One lock covers
    each write and its hash: a thread cannot be stopped, so after a cancellation the
    settling of a kept file waits for the write still running (`settle`)."""

    def __init__(self, fd: Descriptor, path: str) -> None:
        self.fd = fd
        self.path = path
        self.digest = hashlib.sha256()
        self.size = 0  # bytes written and hashed
        self.lock = threading.Lock()
        self.rejected = False  # the content was found wrong: nothing is worth keeping
        # Chunks received (and checked) while a write runs, for the next write.
        self.pending: list[bytes] = []
        self.queued = 0

    def take(self) -> list[bytes]:
        parts, self.pending, self.queued = self.pending, [], 0
        return parts

    def resume(self, held: int) -> None:
        """Hashes the `held` bytes already in the file and continues after them."""
        with self.lock:
            self.fd.run(lambda n: hash_prefix(n, held, self.digest))
            self.fd.run(lambda n: os.lseek(n, held, os.SEEK_SET))
            self.size = held

    def write(self, parts: list[bytes]) -> None:
        with self.lock:
            self.fd.run(lambda n: _write_parts(n, parts))
            for part in parts:
                self.digest.update(part)  # hashlib releases the GIL on large buffers
                self.size += len(part)

    def fsync(self) -> None:
        self.fd.run(os.fsync)

    def settle(self) -> tuple[int, str]:
        """After an interruption: every chunk received written, the file cut to what was
        hashed (a failed write may have left more), on disk; its size and hash."""
        parts = self.take()
        with suppress(OSError):  # e.g. over quota: what was written before stays
            self.write(parts)
        with self.lock:
            self.fd.run(lambda n: os.ftruncate(n, self.size))
            self.fd.run(os.fsync)
            return self.size, self.digest.hexdigest()


def hash_prefix(fd: int, size: int, digest: hashlib._Hash) -> None:
    """Feeds the first `size` bytes of the file to `digest` (pread: the offset stays)."""
    buffer = bytearray(min(HASH_BLOCK, max(size, 1)))
    view = memoryview(buffer)
    done = 0
    while done < size:
        got = os.preadv(fd, [view[: min(len(buffer), size - done)]], done)
        if got == 0:
            raise OSError(0, f"the kept file ends after {done} of {size} bytes")
        digest.update(view[:got])
        done += got


def _write_parts(fd: int, parts: list[bytes]) -> None:
    views = [memoryview(part) for part in parts if part]
    while views:
        written = os.writev(fd, views[:IOV_MAX])
        while written and written >= len(views[0]):
            written -= len(views[0])
            views.pop(0)
        if written:
            views[0] = views[0][written:]


async def receive(
    files: FileAccess, target: UploadTarget, chunks: AsyncIterator[bytes], limit: int
) -> Uploaded:
    """Writes the chunks to a temporary file and renames it into place."""
    upload = await files.upload_begin(target.path, overwrite=target.overwrite, mode=target.mode)
    committed = False
    fd = Descriptor(upload.fd)
    try:
        sink = Sink(fd, upload.path)
        await fill(sink, target, chunks, limit)
        await files.upload_commit(upload, overwrite=target.overwrite, mtime_ns=target.mtime_ns)
        committed = True
        return Uploaded(target.shown_path, sink.size, sink.digest.hexdigest())
    finally:
        fd.close()
        if not committed:
            # A client that went away cancels this task: the cleanup still runs to its end
            # before the handler does (however often it is cancelled meanwhile).
            await run_to_the_end(files.upload_abort(upload))


async def fill(sink: Sink, target: UploadTarget, chunks: AsyncIterator[bytes], limit: int) -> None:
    """Writes every chunk after `sink.size` bytes, checks size and SHA-256, fsyncs."""
    await _pipe(sink, target, chunks, limit)
    expected = target.expected_size
    if expected is not None and sink.size != expected:
        # A client gone mid-stream may look like one that ended early: a resumable upload
        # keeps what it got either way.
        sink.rejected = not target.resumable
        outcome = (
            f"those bytes are kept: continue from offset {sink.size}"
            if target.resumable
            else "nothing was written"
        )
        raise invalid_argument(
            [
                (
                    "header.expected_size",
                    f"announced {expected} bytes, received {sink.size}; {outcome}",
                )
            ]
        )
    hex_digest = sink.digest.hexdigest()
    if target.expected_sha256 and hex_digest != target.expected_sha256:
        sink.rejected = True
        raise invalid_argument(
            [
                (
                    "header.expected_sha256",
                    f"the received content has SHA-256 {hex_digest}; nothing was written",
                )
            ]
        )
    try:
        await asyncio.to_thread(sink.fsync)  # durable before it gets the final name
    except OSError as exc:
        raise file_error(exc, f"writing {sink.path}") from None


async def _pipe(sink: Sink, target: UploadTarget, chunks: AsyncIterator[bytes], limit: int) -> None:
    """Receives while the previous batch is written: one thread hop per batch."""
    writer = _Writer(sink)
    size = sink.size
    try:
        async for data in chunks:
            size += len(data)
            _check_size(sink, target, size, limit)
            sink.pending.append(data)
            sink.queued += len(data)
            if writer.busy and sink.queued >= BATCH_BYTES:
                await writer.wait()  # bounded memory: the client waits for the disk
            writer.check()
            writer.start()
        await writer.drain()
    except OSError as exc:
        raise file_error(exc, f"writing {sink.path}") from None
    finally:
        writer.close()


class _Writer:
    """One write of the pending chunks at a time, the next started as soon as one ends
    (so nothing received waits for the next message to be written)."""

    def __init__(self, sink: Sink) -> None:
        self.sink = sink
        self.loop = asyncio.get_running_loop()
        self.writing: asyncio.Future[None] | None = None
        self.closed = False  # after the stream: the rest is the cleanup's (Sink.settle)

    @property
    def busy(self) -> bool:
        return self.writing is not None and not self.writing.done()

    def start(self) -> None:
        if self.closed or self.busy or not self.sink.pending:
            return
        if self.writing is not None and self.writing.exception() is not None:
            return  # check() raises it (a cancelled one never ends: busy)
        self.writing = self.loop.run_in_executor(None, self.sink.write, self.sink.take())
        self.writing.add_done_callback(self._ended)

    def _ended(self, future: asyncio.Future[None]) -> None:
        if not future.cancelled():
            self.start()

    def check(self) -> None:
        """Raises the error of the last write, if it failed."""
        if self.writing is not None and self.writing.done() and not self.writing.cancelled():
            self.writing.result()

    async def wait(self) -> None:
        if self.writing is not None:
            await asyncio.wait([self.writing])

    async def drain(self) -> None:
        while self.busy or self.sink.pending:
            await self.wait()
            self.check()
            self.start()
        self.check()

    def close(self) -> None:
        self.closed = True
        if self.writing is not None:  # failed elsewhere meanwhile: its own error is not news
            self.writing.add_done_callback(_retrieve)


def _retrieve(future: asyncio.Future[None]) -> None:
    if not future.cancelled():
        future.exception()


def _check_size(sink: Sink, target: UploadTarget, size: int, limit: int) -> None:
    if size > limit:
        sink.rejected = True
        raise DomainError(
            Code.RESOURCE_EXHAUSTED,
            f"the upload exceeds the server's limit of {limit} bytes; use a transfer "
            "(StorageService.StartTransfer) or split the file",
        )
    expected = target.expected_size
    if expected is not None and size > expected:
        sink.rejected = True
        raise invalid_argument(
            [("header.expected_size", f"more than the announced {expected} bytes arrived")]
        )


class UploadRequests:
    """Completed uploads by (user, system, request_id), kept for a day."""

    def __init__(self, store: StateStore) -> None:
        self.store = store

    def find(self, user: str, system: str, request_id: str) -> tuple[str, Uploaded] | None:
        with self.store.connect() as db:
            db.execute(
                "DELETE FROM upload_requests WHERE created_at < ?",
                (time.time() - REQUEST_RETENTION,),
            )
            row = db.execute(
                "SELECT request_hash, path, size, sha256 FROM upload_requests "
                'WHERE "user" = ? AND system = ? AND request_id = ?',
                (user, system, request_id),
            ).fetchone()
        if row is None:
            return None
        return str(row[0]), Uploaded(path=row[1], size=row[2], sha256=row[3])

    def record(
        self,
        user: str,
        system: str,
        request_id: str,
        request_hash: str,
        response: Uploaded,
    ) -> None:
        with self.store.connect() as db:
            db.execute(
                "INSERT INTO upload_requests VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT"
                ' ("user", system, request_id) DO UPDATE SET request_hash = excluded.request_hash,'
                " path = excluded.path, size = excluded.size, sha256 = excluded.sha256,"
                " created_at = excluded.created_at",
                (
                    user,
                    system,
                    request_id,
                    request_hash,
                    response.path,
                    response.size,
                    response.sha256,
                    time.time(),
                ),
            )
