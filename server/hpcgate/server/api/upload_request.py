"""An Upload stream's messages -> an UploadTarget and the bytes of its chunks."""

from __future__ import annotations

import hashlib
import re
from collections.abc import AsyncIterator

from hpcgate.server.api.timeconv import read_timestamp
from hpcgate.server.errors import FieldViolations, invalid_argument
from hpcgate.server.files.uploads import UploadTarget
from hpcgate.v1 import utilities_pb2

_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


def request_id_checked(value: str, field: str, errors: FieldViolations) -> None:
    if not _REQUEST_ID.match(value):
        errors.add(field, "1-128 characters of A-Z a-z 0-9 . _ : -")


def upload_target(
    header: utilities_pb2.UploadHeader, path: str, errors: FieldViolations
) -> UploadTarget:
    """The header's own fields checked into `errors` (system and path are the servicer's)."""
    if header.HasField("mode") and header.mode > 0o7777:
        errors.add("header.mode", "must be permission bits, at most 0o7777 (4095)")
    if header.expected_sha256 and not _SHA256.match(header.expected_sha256):
        errors.add("header.expected_sha256", "must be 64 lower-case hex digits")
    mtime = read_timestamp(header, "mtime", errors, "header.mtime")
    if mtime is not None and mtime.timestamp() < 0:
        errors.add("header.mtime", "must not be before 1970")
    if header.request_id and not _REQUEST_ID.match(header.request_id):
        errors.add("header.request_id", "1-128 characters of A-Z a-z 0-9 . _ : -")
    if header.resumable and not header.request_id:
        errors.add("header.request_id", "a resumable upload needs one (it names the upload)")
    if header.resumable and not header.HasField("expected_size"):
        errors.add("header.expected_size", "a resumable upload needs it (to know it is whole)")
    if header.offset and not header.resumable:
        errors.add("header.offset", "only a resumable upload continues at an offset")
    elif header.HasField("expected_size") and header.offset > header.expected_size:
        errors.add("header.offset", f"is beyond the expected size of {header.expected_size}")
    return UploadTarget(
        path=path,
        shown_path=header.path or path,
        overwrite=header.overwrite,
        mode=header.mode if header.HasField("mode") else None,
        expected_size=header.expected_size if header.HasField("expected_size") else None,
        expected_sha256=header.expected_sha256,
        mtime_ns=header.mtime.ToNanoseconds() if mtime is not None else None,
        resumable=header.resumable,
        offset=header.offset,
    )


def fingerprint(header: utilities_pb2.UploadHeader, system: str) -> str:
    """What makes two uploads under one request_id the same upload (a resumed one sends
    the same header at another offset)."""
    copy = utilities_pb2.UploadHeader()
    copy.CopyFrom(header)
    copy.request_id = ""
    copy.offset = 0
    copy.system = system
    return hashlib.sha256(copy.SerializeToString(deterministic=True)).hexdigest()


async def chunk_data(messages: AsyncIterator[utilities_pb2.UploadRequest]) -> AsyncIterator[bytes]:
    """The data of the messages after the header; another header is INVALID_ARGUMENT."""
    async for message in messages:
        if message.WhichOneof("kind") != "chunk":
            raise invalid_argument([("chunk", "only the first message may be a header")])
        yield message.chunk.data
