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
import re
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

from hpcgate.server.api.timeconv import read_timestamp
from hpcgate.server.errors import Code, DomainError, FieldViolations, invalid_argument
from hpcgate.server.files.access import FileAccess, Upload
from hpcgate.server.files.descriptors import Descriptor, write_all
from hpcgate.server.files.errors import file_error
from hpcgate.server.state.store import StateStore
from hpcgate.v1 import utilities_pb2

_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
REQUEST_RETENTION = 86400.0


def check_header(header: utilities_pb2.UploadHeader, errors: FieldViolations) -> None:
    """Validates the header's own fields (system and path are checked by the servicer)."""
    if header.HasField("mode") and header.mode > 0o7777:
        errors.add("header.mode", "must be permission bits, at most 0o7777 (4095)")
    if header.expected_sha256 and not _SHA256.match(header.expected_sha256):
        errors.add("header.expected_sha256", "must be 64 lower-case hex digits")
    mtime = read_timestamp(header, "mtime", errors, "header.mtime")
    if mtime is not None and mtime.timestamp() < 0:
        errors.add("header.mtime", "must not be before 1970")
    if header.request_id and not _REQUEST_ID.match(header.request_id):
        errors.add("header.request_id", "1-128 characters of A-Z a-z 0-9 . _ : -")


@dataclass(frozen=True)
class Received:
    size: int
    sha256: str


async def receive(
    files: FileAccess,
    header: utilities_pb2.UploadHeader,
    path: str,
    chunks: AsyncIterator[utilities_pb2.UploadRequest],
    limit: int,
) -> utilities_pb2.UploadResponse:
    """Writes the rest of the stream to a temporary file and renames it into place."""
    upload = await files.upload_begin(
        path, overwrite=header.overwrite, mode=header.mode if header.HasField("mode") else None
    )
    committed = False
    fd = Descriptor(upload.fd)
    try:
        received = await _fill(fd, upload, header, chunks, limit)
        mtime = header.mtime.ToNanoseconds() if header.HasField("mtime") else None
        await files.upload_commit(upload, overwrite=header.overwrite, mtime_ns=mtime)
        committed = True
        return utilities_pb2.UploadResponse(
            path=header.path or path, size=received.size, sha256=received.sha256
        )
    finally:
        fd.close()
        if not committed:
            # Shielded: a client that went away cancels this task, the cleanup must still run.
            await asyncio.shield(asyncio.ensure_future(files.upload_abort(upload)))


async def _fill(
    fd: Descriptor,
    upload: Upload,
    header: utilities_pb2.UploadHeader,
    chunks: AsyncIterator[utilities_pb2.UploadRequest],
    limit: int,
) -> Received:
    digest = hashlib.sha256()
    size = 0
    expected = header.expected_size if header.HasField("expected_size") else None

    def write(data: bytes) -> None:
        fd.run(lambda n: write_all(n, data))
        digest.update(data)

    async for message in chunks:
        if message.WhichOneof("kind") != "chunk":
            raise invalid_argument([("chunk", "only the first message may be a header")])
        data = message.chunk.data
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
    if header.expected_sha256 and hex_digest != header.expected_sha256:
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


def fingerprint(header: utilities_pb2.UploadHeader, system: str) -> str:
    copy = utilities_pb2.UploadHeader()
    copy.CopyFrom(header)
    copy.request_id = ""
    copy.system = system
    return hashlib.sha256(copy.SerializeToString(deterministic=True)).hexdigest()


class UploadRequests:
    """Completed uploads by (user, system, request_id), kept for a day."""

    def __init__(self, store: StateStore) -> None:
        self.store = store

    def find(
        self, user: str, system: str, request_id: str
    ) -> tuple[str, utilities_pb2.UploadResponse] | None:
        with self.store.connect() as db:
            db.execute(
                "DELETE FROM upload_requests WHERE created_at < ?",
                (time.time() - REQUEST_RETENTION,),
            )
            row = db.execute(
                "SELECT request_hash, path, size, sha256 FROM upload_requests "
                "WHERE user = ? AND system = ? AND request_id = ?",
                (user, system, request_id),
            ).fetchone()
        if row is None:
            return None
        response = utilities_pb2.UploadResponse(path=row[1], size=row[2], sha256=row[3])
        return str(row[0]), response

    def record(
        self,
        user: str,
        system: str,
        request_id: str,
        request_hash: str,
        response: utilities_pb2.UploadResponse,
    ) -> None:
        with self.store.connect() as db:
            db.execute(
                "INSERT OR REPLACE INTO upload_requests VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
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
