"""Upload: chunks from the client written to a temporary file beside the target, renamed into
place only when the size and SHA-256 match; anything else removes the temporary file.

The descriptor of the temporary file was opened by the caller's worker (so the file is
theirs and counts against their quota); the server only writes to it, in threads, one
chunk at a time, so memory does not grow with the file. `request_id` makes a completed
upload repeatable without writing again (table `upload_requests`).
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

from hpcgate.server.errors import Code, DomainError, invalid_argument
from hpcgate.server.files.access import FileAccess, Upload, run_to_the_end
from hpcgate.server.files.descriptors import Descriptor, write_all
from hpcgate.server.files.errors import file_error
from hpcgate.server.state.store import StateStore

REQUEST_RETENTION = 86400.0


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


@dataclass(frozen=True)
class Uploaded:
    """A file written in full: where, how big, its SHA-256."""

    path: str
    size: int
    sha256: str


@dataclass(frozen=True)
class Received:
    size: int
    sha256: str


async def receive(
    files: FileAccess, target: UploadTarget, chunks: AsyncIterator[bytes], limit: int
) -> Uploaded:
    """Writes the chunks to a temporary file and renames it into place."""
    upload = await files.upload_begin(target.path, overwrite=target.overwrite, mode=target.mode)
    committed = False
    fd = Descriptor(upload.fd)
    try:
        received = await _fill(fd, upload, target, chunks, limit)
        await files.upload_commit(upload, overwrite=target.overwrite, mtime_ns=target.mtime_ns)
        committed = True
        return Uploaded(target.shown_path, received.size, received.sha256)
    finally:
        fd.close()
        if not committed:
            # A client that went away cancels this task: the cleanup still runs to its end
            # before the handler does (however often it is cancelled meanwhile).
            await run_to_the_end(files.upload_abort(upload))


async def _fill(
    fd: Descriptor,
    upload: Upload,
    target: UploadTarget,
    chunks: AsyncIterator[bytes],
    limit: int,
) -> Received:
    digest = hashlib.sha256()
    size = 0
    expected = target.expected_size

    def write(data: bytes) -> None:
        fd.run(lambda n: write_all(n, data))
        digest.update(data)

    async for data in chunks:
        size += len(data)
        if size > limit:
            raise DomainError(
                Code.RESOURCE_EXHAUSTED,
                f"the upload exceeds the server's limit of {limit} bytes; use a transfer "
                "(StorageService.StartTransfer) or split the file",
            )
        if expected is not None and size > expected:
            raise invalid_argument(
                [("header.expected_size", f"more than the announced {expected} bytes arrived")]
            )
        try:
            await asyncio.to_thread(write, data)
        except OSError as exc:
            raise file_error(exc, f"writing {upload.path}") from None
    if expected is not None and size != expected:
        raise invalid_argument(
            [
                (
                    "header.expected_size",
                    f"announced {expected} bytes, received {size}; nothing was written",
                )
            ]
        )
    hex_digest = digest.hexdigest()
    if target.expected_sha256 and hex_digest != target.expected_sha256:
        raise invalid_argument(
            [
                (
                    "header.expected_sha256",
                    f"the received content has SHA-256 {hex_digest}; nothing was written",
                )
            ]
        )
    try:
        await asyncio.to_thread(fd.run, os.fsync)  # durable before it gets the final name
    except OSError as exc:
        raise file_error(exc, f"writing {upload.path}") from None
    return Received(size, hex_digest)


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
