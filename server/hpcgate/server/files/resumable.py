"""Resumable uploads: an Upload with `resumable` keeps its temporary file when the stream
ends early, so the client continues from what the server holds instead of starting over.

The hidden file beside the target (`.NAME.hpcgate-HEX.part`, the caller's, made by their
worker) is recorded in table `upload_partials` under (user, system, request_id) as soon as
it exists, so it is found again by the same user only, and removed by `sweep` once
`retention` seconds have passed since its last stream ended (or since it was created,
when the server stopped mid-stream). An interrupted stream cuts the file to the bytes it
hashed, fsyncs it and records their size and SHA-256; a continuing stream hashes the held
prefix again from the disk (SHA-256 state cannot be saved), so the expected SHA-256 and
the response are always of the whole file. The file gets its name only when complete and
verified, as any upload.

One stream per request id at a time on this server: a second one waits up to
`active_wait` seconds (a client that was killed and restarted at once overtakes the
cleanup of its old stream), then gets ABORTED.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, replace

from hpcgate.server.errors import Code, DomainError
from hpcgate.server.files.access import FileAccess, Upload, run_to_the_end
from hpcgate.server.files.descriptors import Descriptor
from hpcgate.server.files.errors import file_error
from hpcgate.server.files.uploads import Sink, Uploaded, UploadTarget, fill, hash_prefix
from hpcgate.server.state.store import StateStore

log = logging.getLogger(__name__)

ACTIVE_WAIT = 5.0  # seconds a stream waits for another one with its request id to end
SWEEP_BATCH = 200  # expired partial files removed per sweep at most


@dataclass(frozen=True)
class PartialKey:
    user: str
    system: str
    request_id: str


@dataclass(frozen=True)
class Partial:
    """A kept (or filling) temporary file, as recorded."""

    request_hash: str
    path: str  # the target
    temp: str  # the temporary file's name beside it
    mode: int  # the mode it gets when committed
    size: int  # bytes held when the last stream ended; -1 = not measured
    sha256: str  # of those bytes
    expires_at: float


@dataclass(frozen=True)
class Held:
    """What GetUploadStatus answers about a partial file."""

    path: str
    size: int
    sha256: str
    expires_at: float


class Partials:
    """Table `upload_partials` (state/store.py): synchronous, called through threads."""

    def __init__(self, store: StateStore) -> None:
        self.store = store

    def find(self, key: PartialKey) -> Partial | None:
        with self.store.connect() as db:
            row = db.execute(
                "SELECT request_hash, path, temp, mode, size, sha256, expires_at"
                ' FROM upload_partials WHERE "user" = ? AND system = ? AND request_id = ?',
                (key.user, key.system, key.request_id),
            ).fetchone()
        return None if row is None else Partial(*row)

    def save(self, key: PartialKey, p: Partial) -> None:
        with self.store.connect() as db:
            db.execute(
                "INSERT INTO upload_partials VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT"
                ' ("user", system, request_id) DO UPDATE SET request_hash = excluded.request_hash,'
                " path = excluded.path, temp = excluded.temp, mode = excluded.mode,"
                " size = excluded.size, sha256 = excluded.sha256, expires_at = excluded.expires_at",
                (key.user, key.system, key.request_id, p.request_hash, p.path, p.temp, p.mode,
                 p.size, p.sha256, p.expires_at),
            )  # fmt: skip

    def measured(self, key: PartialKey, p: Partial) -> None:
        """Records size, SHA-256 and expiry of the file `p.temp` (not of a newer one)."""
        with self.store.connect() as db:
            db.execute(
                "UPDATE upload_partials SET size = ?, sha256 = ?, expires_at = ?"
                ' WHERE "user" = ? AND system = ? AND request_id = ? AND temp = ?',
                (p.size, p.sha256, p.expires_at, key.user, key.system, key.request_id, p.temp),
            )

    def forget(self, key: PartialKey, temp: str, expired_at: float | None = None) -> None:
        """Drops the record of `temp` (only if it expired before `expired_at`, when given)."""
        sql = (
            'DELETE FROM upload_partials WHERE "user" = ? AND system = ? AND request_id = ?'
            " AND temp = ?"
        )
        args: tuple[object, ...] = (key.user, key.system, key.request_id, temp)
        if expired_at is not None:
            sql += " AND expires_at < ?"
            args += (expired_at,)
        with self.store.connect() as db:
            db.execute(sql, args)

    def expired(self, now: float, limit: int) -> list[tuple[PartialKey, Partial]]:
        with self.store.connect() as db:
            rows = db.execute(
                'SELECT "user", system, request_id, request_hash, path, temp, mode, size,'
                " sha256, expires_at FROM upload_partials WHERE expires_at < ?"
                " ORDER BY expires_at LIMIT ?",
                (now, limit),
            ).fetchall()
        return [(PartialKey(*row[:3]), Partial(*row[3:])) for row in rows]


def _gone(key: PartialKey) -> DomainError:
    return DomainError(
        Code.NOT_FOUND,
        f"you have no unfinished upload under request_id {key.request_id!r} on "
        f"{key.system} (never started as resumable, completed, or expired): upload from "
        "offset 0",
    )


class ResumableUploads:
    """Receives resumable Uploads, answers GetUploadStatus, removes expired partial files."""

    def __init__(self, store: StateStore, retention: float) -> None:
        self.partials = Partials(store)
        self.retention = retention
        self.active_wait = ACTIVE_WAIT
        self._locks: dict[PartialKey, asyncio.Lock] = {}
        self._holders: Counter[PartialKey] = Counter()

    @contextlib.asynccontextmanager
    async def _holding(self, key: PartialKey) -> AsyncIterator[None]:
        """This request id to itself on this server (ABORTED after `active_wait`)."""
        lock = self._locks.setdefault(key, asyncio.Lock())
        self._holders[key] += 1
        try:
            try:
                await asyncio.wait_for(lock.acquire(), self.active_wait)
            except TimeoutError:
                raise DomainError(
                    Code.ABORTED,
                    f"another Upload with request_id {key.request_id!r} is still running; "
                    "retry once it has ended (or cancel it)",
                ) from None
            try:
                yield
            finally:
                lock.release()
        finally:
            self._holders[key] -= 1
            if not self._holders[key]:  # nobody holds or waits: bounded by running uploads
                del self._holders[key], self._locks[key]

    async def receive(
        self,
        files: FileAccess,
        key: PartialKey,
        request_hash: str,
        target: UploadTarget,
        chunks: AsyncIterator[bytes],
        limit: int,
    ) -> Uploaded:
        async with self._holding(key):
            upload, held, partial = await self._open(files, key, request_hash, target)
            fd = Descriptor(upload.fd)
            sink = Sink(fd, upload.path)
            done = False
            try:
                if held:
                    await self._resume(sink, held)
                await fill(sink, target, chunks, limit)
                sink.rejected = True  # a failed commit removes the file: nothing is kept
                await files.upload_commit(
                    upload, overwrite=target.overwrite, mtime_ns=target.mtime_ns
                )
                done = True
            finally:
                if not done:  # kept, or removed when wrong; before the handler ends
                    await run_to_the_end(self._interrupted(files, key, partial, upload, sink))
                fd.close()
            await run_to_the_end(asyncio.to_thread(self.partials.forget, key, partial.temp))
        return Uploaded(target.shown_path, sink.size, sink.digest.hexdigest())

    async def _resume(self, sink: Sink, held: int) -> None:
        try:
            await asyncio.to_thread(sink.resume, held)  # the prefix's hash, off the loop
        except OSError as exc:
            raise file_error(exc, f"reading back the {held} bytes held of {sink.path}") from None

    async def _open(
        self, files: FileAccess, key: PartialKey, request_hash: str, target: UploadTarget
    ) -> tuple[Upload, int, Partial]:
        """The temporary file to write: a new one (offset 0) or the one held."""
        partial = await asyncio.to_thread(self.partials.find, key)
        if partial is not None and partial.request_hash != request_hash:
            raise DomainError(
                Code.ALREADY_EXISTS,
                f"request_id {key.request_id!r} names an unfinished upload with a different "
                "header (path, size, SHA-256, mode...): send the same header, or use a new "
                "request_id",
            )
        if target.offset == 0:
            if partial is not None:  # starting over: what was held goes
                await self._discard(files, key, partial)
            upload, partial = await self._begin(files, key, request_hash, target)
            return upload, 0, partial
        if partial is None:
            raise _gone(key)
        try:
            upload, held = await files.upload_reopen(partial.path, partial.temp, partial.mode)
        except DomainError as e:
            if e.code == Code.NOT_FOUND:  # removed behind our back
                await asyncio.to_thread(self.partials.forget, key, partial.temp)
                raise _gone(key) from None
            raise
        if held != target.offset:
            os.close(upload.fd)
            raise DomainError(
                Code.FAILED_PRECONDITION,
                f"the server holds {held} bytes of this upload, not {target.offset}: "
                f"continue from offset {held} (GetUploadStatus gives their SHA-256), or "
                "from 0 to start again",
            )
        return upload, held, partial

    async def _begin(
        self, files: FileAccess, key: PartialKey, request_hash: str, target: UploadTarget
    ) -> tuple[Upload, Partial]:
        upload = await files.upload_begin(target.path, overwrite=target.overwrite, mode=target.mode)
        partial = Partial(
            request_hash, upload.path, upload.temp, upload.mode, -1, "",
            time.time() + self.retention,
        )  # fmt: skip
        try:  # recorded before any byte: a server that dies mid-stream still sweeps it
            await asyncio.to_thread(self.partials.save, key, partial)
        except BaseException:
            with contextlib.suppress(OSError):
                os.close(upload.fd)
            await run_to_the_end(files.upload_abort(upload))
            raise
        return upload, partial

    async def _interrupted(
        self, files: FileAccess, key: PartialKey, partial: Partial, upload: Upload, sink: Sink
    ) -> None:
        """Keeps the held bytes (cut to what was hashed, fsynced, measured), or removes
        the file when its content was found wrong. Never raises: a cleanup."""
        try:
            if sink.rejected:
                await self._discard(files, key, partial)
                return
            size, sha256 = await asyncio.to_thread(sink.settle)
            kept = replace(
                partial, size=size, sha256=sha256, expires_at=time.time() + self.retention
            )
            await asyncio.to_thread(self.partials.measured, key, kept)
        except Exception:
            # The record stays (unmeasured, or as before): status hashes the file, or the
            # sweep removes it when it expires.
            log.warning("keeping the partial upload %s failed", upload.temp, exc_info=True)

    async def _discard(self, files: FileAccess, key: PartialKey, partial: Partial) -> None:
        await files.upload_abort(Upload(partial.path, partial.temp, partial.mode, -1))
        await asyncio.to_thread(self.partials.forget, key, partial.temp)

    async def status(self, files: FileAccess, key: PartialKey) -> Held | None:
        """What is held under `key` for this caller; None when nothing is."""
        async with self._holding(key):
            partial = await asyncio.to_thread(self.partials.find, key)
            if partial is None:
                return None
            try:
                upload, held = await files.upload_reopen(partial.path, partial.temp, partial.mode)
            except DomainError as e:
                if e.code != Code.NOT_FOUND:
                    raise
                await asyncio.to_thread(self.partials.forget, key, partial.temp)
                return None
            fd = Descriptor(upload.fd)
            try:
                if held != partial.size or not partial.sha256:  # not measured: hash the disk
                    partial = replace(partial, size=held, sha256=await _hash(fd, held, upload))
                    await asyncio.to_thread(self.partials.measured, key, partial)
            finally:
                fd.close()
        return Held(partial.path, held, partial.sha256, partial.expires_at)

    async def sweep(self, access_for: Callable[[str, str], Awaitable[FileAccess]]) -> int:
        """Removes expired partial files, each as its user; returns how many."""
        now = time.time()
        removed = 0
        for key, partial in await asyncio.to_thread(self.partials.expired, now, SWEEP_BATCH):
            if key in self._locks:
                continue  # a stream is using it: it will set a new expiry
            try:
                files = await access_for(key.user, key.system)
                await files.upload_remove(partial.path, partial.temp)
            except DomainError as e:
                if e.code not in (Code.NOT_FOUND, Code.PERMISSION_DENIED):
                    log.warning("removing the expired upload %s: %s", partial.temp, e)
                    continue  # tried again at the next sweep
            await asyncio.to_thread(self.partials.forget, key, partial.temp, now)
            removed += 1
        return removed


async def _hash(fd: Descriptor, size: int, upload: Upload) -> str:
    digest = hashlib.sha256()
    try:
        await asyncio.to_thread(fd.run, lambda n: hash_prefix(n, size, digest))
    except OSError as exc:
        raise file_error(exc, f"reading the partial upload of {upload.path}") from None
    return digest.hexdigest()
