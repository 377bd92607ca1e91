"""UtilitiesService.UploadFiles and DownloadFiles: many small files in one stream.

A tree of small files moved between facilities costs one stream instead of an Upload
and a Checksum per file. The work is done by the caller's privsep worker, a batch of
files per request (worker.py: op_write_files, op_read_files): each file is hashed as it
is read, checked against its SHA-256 before it is written, written under a temporary
name and renamed into place, re-read and checked again first when asked. The server
splits a client's batch into worker batches of at most BATCH_BYTES of content (a worker
frame carries it in base64).
"""

from __future__ import annotations

import errno
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc

from hpcgate.server.api.errors import ApiError, FieldViolations
from hpcgate.server.api.timeconv import read_timestamp
from hpcgate.server.files import paths
from hpcgate.server.files.access import FileAccess
from hpcgate.server.files.errors import file_error
from hpcgate.server.privsep.replies import BatchFailure, BatchWritten
from hpcgate.v1 import utilities_pb2 as u

MAX_FILES = 1000  # per client batch, and per DownloadFiles request
MAX_FILE_BYTES = 2 * 1024 * 1024  # per file: larger ones go by Upload / Download
BATCH_BYTES = 2 * 1024 * 1024  # of content per worker request
_HEX = frozenset("0123456789abcdef")

Access = Callable[[str], Awaitable[FileAccess]]


def relative_problem(path: str) -> str | None:
    """Why `path` is not a plain relative path below a directory, or None."""
    if not path:
        return "must not be empty"
    if "\0" in path:
        return "must not contain NUL"
    if path.startswith("/"):
        return "must be relative to the directory"
    if any(part in ("", ".", "..") for part in path.split("/")):
        return "must not contain empty, '.' or '..' components"
    return None


def _failure(failed: BatchFailure, directory: str, verb: str) -> u.FileFailure:
    """The one-file error a worker's refusal amounts to, as the proto carries it."""
    rel = failed["rel"]
    where = f"{verb} {paths.display(os.path.join(directory, rel))}"
    if failed["errno"] == errno.EBADMSG:
        return u.FileFailure(path=rel, code=15, message=f"{where}: {failed['message']}")
    error = file_error(OSError(failed["errno"], failed["message"]), where)
    return u.FileFailure(path=rel, code=int(error.code), message=error.message)


def _validated_batch(batch: u.FileBatch) -> list[dict[str, Any]]:
    errors = FieldViolations()
    if len(batch.files) > MAX_FILES:
        raise ApiError(
            grpc.StatusCode.RESOURCE_EXHAUSTED,
            f"a batch holds at most {MAX_FILES} files; send {len(batch.files)} in several",
        )
    items = []
    for n, f in enumerate(batch.files):
        where = f"batch.files[{n}]"
        problem = relative_problem(f.path)
        if problem is not None:
            errors.add(f"{where}.path", problem)
        if len(f.sha256) != 64 or not _HEX.issuperset(f.sha256):
            errors.add(f"{where}.sha256", "must be the SHA-256 of data, 64 lower-case hex digits")
        if f.HasField("mode") and f.mode > 0o7777:
            errors.add(f"{where}.mode", "must be permission bits (at most 0o7777)")
        if len(f.data) > MAX_FILE_BYTES:
            raise ApiError(
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                f"{f.path} has {len(f.data)} bytes; a batch holds files of at most "
                f"{MAX_FILE_BYTES} bytes: send larger ones with Upload",
            )
        item: dict[str, Any] = {"rel": f.path, "data": f.data, "sha256": f.sha256}
        if f.HasField("mode"):
            item["mode"] = f.mode
        mtime = read_timestamp(f, "mtime", errors, f"{where}.mtime")
        if mtime is not None and mtime.timestamp() < 0:
            errors.add(f"{where}.mtime", "must not be before 1970")
        elif mtime is not None:
            item["mtime_ns"] = f.mtime.ToNanoseconds()
        items.append(item)
    errors.raise_if_any()
    return items


def _worker_batches(items: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    batches: list[list[dict[str, Any]]] = [[]]
    size = 0
    for item in items:
        if batches[-1] and size + len(item["data"]) > BATCH_BYTES:
            batches.append([])
            size = 0
        batches[-1].append(item)
        size += len(item["data"])
    return batches


async def write_batch(
    files: FileAccess, directory: str, items: list[dict[str, Any]], verify: bool
) -> u.UploadFilesResponse:
    import base64

    response = u.UploadFilesResponse()
    for batch in _worker_batches(items):
        encoded = [i | {"data": base64.b64encode(i["data"]).decode()} for i in batch]
        answer: BatchWritten = await files.write_files(directory, encoded, verify=verify)
        for done in answer.get("done", []):
            response.written.add(path=done["rel"], size=done["size"], sha256=done["sha256"])
        failed = answer.get("failed")
        if failed:
            response.failure.CopyFrom(_failure(failed, directory, "writing"))
            break
    return response


async def upload_files(
    access: Access, stream: AsyncIterator[u.UploadFilesRequest], system_of: Callable[..., str]
) -> AsyncIterator[u.UploadFilesResponse]:
    """The UploadFiles stream: a header, then one response per batch."""
    try:
        first = await anext(stream)
    except StopAsyncIteration:
        raise ApiError(
            grpc.StatusCode.INVALID_ARGUMENT, "the stream was empty: send a header first"
        ) from None
    errors = FieldViolations()
    if first.WhichOneof("kind") != "header":
        errors.add("header", "the first message must be a header (system, directory)")
        errors.raise_if_any()
    header = first.header
    system = system_of(header.system, errors, "header.system")
    directory = paths.checked(errors, "header.directory", header.directory)
    errors.raise_if_any()
    files = await access(system)
    async for message in stream:
        if message.WhichOneof("kind") != "batch":
            errors.add("batch", "only the first message may be a header; send batches")
            errors.raise_if_any()
        items = _validated_batch(message.batch)
        response = await write_batch(files, directory, items, header.verify)
        if message.batch.sync:
            await files.syncfs(directory)
        yield response


async def download_files(
    access: Access, request: u.DownloadFilesRequest, system_of: Callable[..., str]
) -> AsyncIterator[u.DownloadFilesResponse]:
    """The DownloadFiles stream: the files asked, a worker batch per response."""
    import base64

    errors = FieldViolations()
    system = system_of(request.system, errors)
    directory = paths.checked(errors, "directory", request.directory)
    if len(request.paths) > MAX_FILES:
        errors.add("paths", f"at most {MAX_FILES} files per request; ask for the rest next")
    for n, path in enumerate(request.paths):
        problem = relative_problem(path)
        if problem is not None:
            errors.add(f"paths[{n}]", problem)
    errors.raise_if_any()
    files = await access(system)
    wanted = [{"rel": p} for p in request.paths]
    while wanted:
        answer = await files.read_files(directory, wanted)
        read = answer.get("files", [])
        response = u.DownloadFilesResponse(
            files=[
                u.FileContent(path=f["rel"], data=base64.b64decode(f["data"]), sha256=f["sha256"])
                for f in read
            ]
        )
        wanted = wanted[len(read) :]
        failed = answer.get("failed")
        if failed:
            response.failure.CopyFrom(_failure(failed, directory, "reading"))
            wanted = []
        elif not read:
            break  # nothing read and nothing failed: the worker would only repeat itself
        yield response
