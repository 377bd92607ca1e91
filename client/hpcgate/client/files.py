"""`client.files`: files on a system: upload, download, list, move, copy, run commands.

Transfers stream in chunks (memory stays flat whatever the size), read and write local
files in threads (the event loop never blocks on the disk) and check the SHA-256 of the
whole file on both ends: a mismatch raises `DataLoss`, never a silently wrong file.

    async with connect(token=token, system="local") as client:
        sent = await client.files.upload("results.h5", "/home/alice/results.h5")
        await client.files.download("/home/alice/run.log", "run.log", overwrite=True)
        result = await client.files.run(["ls", "-l"], cwd="/home/alice")
"""

from __future__ import annotations

import asyncio
import builtins
import hashlib
import os
import shlex
import stat as stat_module
import uuid
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO, Literal, TypeVar, overload

import grpc

from hpcgate.client.errors import (
    Aborted,
    AlreadyExists,
    Cancelled,
    DataLoss,
    DeadlineExceeded,
    FailedPrecondition,
    HpcgateError,
    InvalidArgument,
    NotFound,
    ResourceExhausted,
    Unavailable,
    from_rpc_error,
)
from hpcgate.v1 import utilities_pb2 as u
from hpcgate.v1 import utilities_pb2_grpc

if TYPE_CHECKING:
    from hpcgate.client.core import Client

Progress = Callable[[int, int | None], object]
"""`progress(done_bytes, total_bytes_or_None)`, called with non-decreasing `done_bytes`."""
LocalPath = str | os.PathLike[str]
RemotePath = str | bytes  # bytes: a raw path that is not valid UTF-8 (`path_bytes`)

M = TypeVar("M")
CHUNK = 1024 * 1024  # bytes per Upload message, as the proto suggests
RESUME_MIN = 8 * CHUNK  # smaller files are sent again whole rather than resumed
HELD_ATTEMPTS = 6  # GetUploadStatus calls while the server winds up an interrupted stream
# Failures after which what the server holds is still worth continuing.
_KEEP_NOTE = (Unavailable, DeadlineExceeded, ResourceExhausted, Aborted, Cancelled)
_DIRECTORY = u.FILE_TYPE_DIRECTORY
_FILE = u.FILE_TYPE_FILE
_SYMLINK = u.FILE_TYPE_SYMLINK
_ALGORITHMS = {
    "sha256": u.CHECKSUM_ALGORITHM_SHA256, "sha512": u.CHECKSUM_ALGORITHM_SHA512,
    "md5": u.CHECKSUM_ALGORITHM_MD5, "blake2b": u.CHECKSUM_ALGORITHM_BLAKE2B,
}  # fmt: skip


@dataclass(frozen=True)
class Transferred:
    """One file uploaded or downloaded; `sha256` matched on both ends."""

    source: str
    destination: str
    size: int
    sha256: str


@dataclass(frozen=True)
class CommandOutput:
    """Output of a running command, as it arrives: `stream` is "stdout" or "stderr"."""

    stream: str
    data: bytes


@dataclass(frozen=True)
class CommandResult:
    """How a command ended. From `run`, with its whole output decoded as UTF-8 (invalid
    bytes replaced); from `run_stream`, stdout and stderr are empty (they came as
    `CommandOutput`)."""

    exit_code: int
    stdout: str = ""
    stderr: str = ""
    signal: int = 0
    timed_out: bool = False
    output_truncated: bool = False
    duration: float = 0.0

    @property
    def ok(self) -> bool:
        return self.exit_code == 0 and self.signal == 0 and not self.timed_out


@dataclass(frozen=True)
class _Item:
    """One entry of a tree being copied, relative to its root ("a/b.txt")."""

    relative: str
    kind: Literal["dir", "file", "link"]
    size: int = 0
    target: str = ""  # a link's target
    remote: RemotePath = ""  # the remote path, for trees being downloaded
    mode: int = 0


class _Meter:
    """Reports progress for one file or a whole tree, never backwards (a retried upload
    starts again from byte 0: it is reported once it gets past what was reported)."""

    def __init__(self, progress: Progress | None, total: int | None = None) -> None:
        self.progress = progress
        self.total = total
        self.fixed = total is not None  # a tree's total, known before the first file
        self.base = 0  # bytes of the files done before this one
        self.high = -1

    def learn(self, size: int) -> None:
        if not self.fixed:
            self.total = size

    def at(self, position: int) -> None:
        done = self.base + position
        if self.progress is not None and done > self.high:
            self.high = done
            self.progress(done, self.total)

    def next_file(self, size: int) -> None:
        self.base += size


def _with_path(message: M, path: RemotePath, name: str = "path") -> M:
    """The request with `path` set, or `path_bytes` for a raw path."""
    setattr(message, f"{name}_bytes" if isinstance(path, bytes) else name, path)
    return message


@asynccontextmanager
async def _closing(stream: AsyncIterator[M]) -> AsyncIterator[AsyncIterator[M]]:
    """Closes a `Client.stream` generator (so its call is cancelled) however we leave it."""
    try:
        yield stream
    finally:
        close = getattr(stream, "aclose", None)
        if close is not None:
            await close()


def _sha256_prefix(path: Path, size: int) -> tuple[str, str]:
    """SHA-256 of the whole file, and of its first `size` bytes ("" if it is shorter)."""
    hasher = hashlib.sha256()
    prefix = "" if size else hasher.hexdigest()
    done = 0
    with path.open("rb") as source:
        while block := source.read(CHUNK if size <= done else min(CHUNK, size - done)):
            hasher.update(block)
            done += len(block)
            if done == size:
                prefix = hasher.hexdigest()
    return hasher.hexdigest(), prefix


def _sha256_file(path: Path) -> str:
    hasher = hashlib.sha256()
    with path.open("rb") as source:
        while block := source.read(CHUNK):
            hasher.update(block)
    return hasher.hexdigest()


class Files:
    """`client.files`: every call takes `system` (the client's default when None)."""

    def __init__(self, client: Client) -> None:
        self._client = client

    def _stub(self) -> utilities_pb2_grpc.UtilitiesServiceAsyncStub:
        return utilities_pb2_grpc.UtilitiesServiceStub(self._client.channel)

    def _system(self, system: str | None) -> str:
        return self._client.system(system).removeprefix("systems/")

    # -- metadata and small operations ---------------------------------------------------

    async def stat(
        self, path: RemotePath, system: str | None = None, *, follow_symlinks: bool = False
    ) -> u.FileEntry:
        """The entry (lstat; stat with `follow_symlinks`)."""
        request = _with_path(
            u.StatRequest(system=self._system(system), follow_symlinks=follow_symlinks), path
        )
        return (await self._client.unary(self._stub().Stat, request, retry=True)).entry

    async def mkdir(
        self,
        path: str,
        system: str | None = None,
        *,
        parents: bool = False,
        mode: int | None = None,
    ) -> u.FileEntry:
        """mkdir, or `mkdir -p` with `parents` (then an existing directory is fine, so the
        call is safe to retry)."""
        request = u.MakeDirectoryRequest(system=self._system(system), path=path, parents=parents)
        if mode is not None:
            request.mode = mode
        reply = await self._client.unary(self._stub().MakeDirectory, request, retry=parents)
        return reply.entry

    async def move(
        self,
        source: RemotePath,
        destination: str,
        system: str | None = None,
        *,
        overwrite: bool = False,
    ) -> u.FileEntry:
        """Rename within the system; `destination` is the full new path."""
        request = u.MoveRequest(
            system=self._system(system), destination_path=destination, overwrite=overwrite
        )
        _with_path(request, source, "source_path")
        return (await self._client.unary(self._stub().Move, request, retry=False)).entry

    async def copy(
        self,
        source: str,
        destination: str,
        system: str | None = None,
        *,
        recursive: bool = False,
        overwrite: bool = False,
        preserve: bool = False,
    ) -> u.CopyResponse:
        """A small synchronous copy (the server refuses big ones: use
        `client.storage.transfer`). The reply has the new entry and the bytes copied."""
        request = u.CopyRequest(
            system=self._system(system), source_path=source, destination_path=destination,
            recursive=recursive, overwrite=overwrite, preserve=preserve,
        )  # fmt: skip
        return await self._client.unary(self._stub().Copy, request, retry=False)

    async def remove(
        self,
        path: RemotePath,
        system: str | None = None,
        *,
        recursive: bool = False,
        missing_ok: bool = False,
    ) -> None:
        """rm (`rm -r` with `recursive`); with `missing_ok` a missing path is fine, and the
        call is retried when the server is briefly unavailable."""
        request = u.RemoveRequest(
            system=self._system(system), recursive=recursive, allow_missing=missing_ok
        )
        _with_path(request, path)
        await self._client.unary(self._stub().Remove, request, retry=missing_ok)

    async def chmod(self, path: str, mode: int | str, system: str | None = None) -> u.FileEntry:
        """`mode` as bits (0o750) or as chmod(1) has it ("750", "u+x,g-w")."""
        request = u.ChangeModeRequest(system=self._system(system), path=path)
        if isinstance(mode, str):
            request.mode_string = mode
        else:
            request.mode_bits = mode
        return (await self._client.unary(self._stub().ChangeMode, request, retry=True)).entry

    async def symlink(self, target: str, link: str, system: str | None = None) -> u.FileEntry:
        """A symlink at `link` pointing to `target` (stored verbatim, may be relative)."""
        request = u.CreateSymlinkRequest(system=self._system(system), target=target,
                                         link_path=link)  # fmt: skip
        return (await self._client.unary(self._stub().CreateSymlink, request, retry=False)).entry

    async def checksum(
        self, path: str, system: str | None = None, *, algorithm: str = "sha256"
    ) -> u.ChecksumResponse:
        """A file's checksum, computed on the system (`algorithm` sha256, sha512, md5 or
        blake2b); the reply has `hex_digest` and the `size` hashed."""
        chosen = _ALGORITHMS.get(algorithm.lower())
        if chosen is None:
            raise InvalidArgument(
                f"unknown checksum algorithm {algorithm!r}: sha256, sha512, md5 or blake2b"
            )
        request = u.ChecksumRequest(system=self._system(system), path=path, algorithm=chosen)
        return await self._client.unary(self._stub().Checksum, request, retry=True)

    # -- reading parts of files ----------------------------------------------------------

    async def view(
        self,
        path: str,
        system: str | None = None,
        *,
        offset: int = 0,
        length: int = 0,
        max_bytes: int = 0,
    ) -> u.ViewResponse:
        """Bytes from `offset` (negative: from the end), `length` of them (0: to the end),
        capped at `max_bytes` (0: the server's default); the reply says `truncated`."""
        return await self._view(path, system, max_bytes, u.ByteRange(offset=offset, length=length))

    async def head(
        self,
        path: str,
        system: str | None = None,
        *,
        lines: int = 10,
        bytes: int | None = None,
        max_bytes: int = 0,
    ) -> u.ViewResponse:
        """The first `lines` lines, or the first `bytes` bytes when given (0: nothing)."""
        if (bytes if bytes is not None else lines) == 0:
            return u.ViewResponse()
        if bytes is not None:
            return await self._view(path, system, max_bytes, u.ByteRange(length=bytes))
        return await self._view(path, system, max_bytes, head_lines=lines)

    async def tail(
        self,
        path: str,
        system: str | None = None,
        *,
        lines: int = 10,
        bytes: int | None = None,
        max_bytes: int = 0,
    ) -> u.ViewResponse:
        """The last `lines` lines, or the last `bytes` bytes when given (0: nothing)."""
        if (bytes if bytes is not None else lines) == 0:
            return u.ViewResponse()
        if bytes is not None:
            return await self._view(path, system, max_bytes, u.ByteRange(offset=-bytes))
        return await self._view(path, system, max_bytes, tail_lines=lines)

    async def _view(
        self,
        path: str,
        system: str | None,
        max_bytes: int,
        byte_range: u.ByteRange | None = None,
        *,
        head_lines: int = 0,
        tail_lines: int = 0,
    ) -> u.ViewResponse:
        request = u.ViewRequest(system=self._system(system), path=path, max_bytes=max_bytes)
        if byte_range is not None:
            request.byte_range.CopyFrom(byte_range)
        elif head_lines:
            request.head_lines = head_lines
        else:
            request.tail_lines = tail_lines
        return await self._client.unary(self._stub().View, request, retry=True)

    # -- transfers -----------------------------------------------------------------------

    @overload
    async def upload(
        self, local: LocalPath, remote: str, *, system: str | None = ...,
        recursive: Literal[False] = ..., overwrite: bool = ..., mode: int | None = ...,
        preserve: bool = ..., progress: Progress | None = ..., resume: bool = ...,
    ) -> Transferred: ...  # fmt: skip
    @overload
    async def upload(
        self, local: LocalPath, remote: str, *, system: str | None = ...,
        recursive: Literal[True], overwrite: bool = ..., mode: int | None = ...,
        preserve: bool = ..., progress: Progress | None = ..., resume: bool = ...,
    ) -> builtins.list[Transferred]: ...  # fmt: skip
    @overload
    async def upload(
        self, local: LocalPath, remote: str, *, system: str | None = ...,
        recursive: bool, overwrite: bool = ..., mode: int | None = ...,
        preserve: bool = ..., progress: Progress | None = ..., resume: bool = ...,
    ) -> Transferred | builtins.list[Transferred]: ...  # fmt: skip

    async def upload(
        self,
        local: LocalPath,
        remote: str,
        *,
        system: str | None = None,
        recursive: bool = False,
        overwrite: bool = False,
        mode: int | None = None,
        preserve: bool = False,
        progress: Progress | None = None,
        resume: bool = True,
    ) -> Transferred | builtins.list[Transferred]:
        """Write the local file to `remote` (the full path; ALREADY_EXISTS when it exists,
        unless `overwrite`). The server verifies the size, the client the SHA-256.

        `recursive`: `local` is a directory and `remote` becomes a copy of it (created,
        with missing parents; symlinks are recreated as links); one `Transferred` per
        file. `preserve` keeps permission bits and modification times; `mode` sets the
        bits of a single uploaded file. `progress` counts the bytes of the whole upload.
        A dropped connection is retried: each file carries a request id, so a retry
        never writes twice.

        The server writes each file to a hidden temporary file beside it
        (`.<name>.hpcgate-<random>.part`) and renames it when complete. An upload given up
        (`progress` raises, the task is cancelled) cancels the call without waiting for
        the server, which removes that file when it gets the cancellation: it may still
        be seen for a moment after this raises, never under the target's name.

        `resume` (files of RESUME_MIN bytes or more): the upload is resumable. The server
        keeps what it received when the upload is interrupted (a dropped connection, a
        killed process, this call cancelled) for a day by default; a retry, or a later
        call with the same arguments in any process of this user on this machine (the
        request id is noted in `~/.cache/hpcgate/uploads`), checks the SHA-256 of what it
        holds against the same prefix of the local file and sends only the rest."""
        system_id = self._system(system)
        source = Path(local)
        options = _UploadOptions(overwrite=overwrite, preserve=preserve, resume=resume)
        if recursive:
            meter = _Meter(progress, 0)
            return await self._upload_tree(source, remote, system_id, options, meter)
        meter = _Meter(progress)
        return await self._upload_file(source, remote, system_id, options, mode, meter)

    async def upload_status(
        self, request_id: str, system: str | None = None
    ) -> u.GetUploadStatusResponse:
        """What the server holds of a resumable upload (GetUploadStatus); NotFound when
        nothing."""
        request = u.GetUploadStatusRequest(system=self._system(system), request_id=request_id)
        return await self._client.unary(self._stub().GetUploadStatus, request, retry=True)

    async def _upload_file(
        self,
        local: Path,
        remote: str,
        system: str,
        options: _UploadOptions,
        mode: int | None,
        meter: _Meter,
    ) -> Transferred:
        reader = _UploadReader(local, meter)
        info = await asyncio.to_thread(reader.open)
        try:
            header = _upload_header(remote, system, info, overwrite=options.overwrite,
                                    mode=mode, preserve=options.preserve)  # fmt: skip
            meter.learn(info.st_size)
            if options.resume and info.st_size >= RESUME_MIN:
                reply = await self._upload_resumable(reader, local, header, info)
                digest: str | None = header.expected_sha256  # the server checked it
            else:
                # Hashed first, so the server refuses different bytes before the file gets
                # its name (one more read of the file, at hashing speed).
                header.expected_sha256 = await asyncio.to_thread(_sha256_file, local)
                reply = await self._send(reader, header)
                # A repeated request id may be answered before every chunk was read.
                digest = reader.hexdigest() if reader.complete else None
        finally:
            await asyncio.to_thread(reader.close)
        if digest is None:
            digest = await asyncio.to_thread(_sha256_file, local)
        if reply.sha256 != digest:
            raise DataLoss(
                f"uploading {local} to {reply.path}: the server wrote SHA-256 {reply.sha256}, "
                f"the local file has {digest}; upload it again"
            )
        meter.next_file(reply.size)
        return Transferred(str(local), reply.path, reply.size, reply.sha256)

    async def _upload_resumable(
        self, reader: _UploadReader, local: Path, header: u.UploadHeader, info: os.stat_result
    ) -> u.UploadResponse:
        """A resumable Upload, continuing what the server holds under the request id noted
        for this local file and target (when its SHA-256 matches the local prefix)."""
        header.resumable, header.request_id = True, ""
        note = _ResumeNote.of(local, header, info)
        known = await asyncio.to_thread(note.load)
        header.request_id = known or f"client-{uuid.uuid4().hex}"
        held = await self._held(header) if known else None
        # One read of the file: the whole SHA-256, and the prefix's to compare.
        whole, prefix = await asyncio.to_thread(_sha256_prefix, local, held[0] if held else -1)
        header.expected_sha256 = whole
        offset = held[0] if held is not None and held[1] == prefix else 0
        if known is None:
            await asyncio.to_thread(note.save, header.request_id)
        try:
            reply = await self._send(reader, header, offset)
        except HpcgateError as e:
            if not isinstance(e, _KEEP_NOTE):  # what the server holds is of no more use
                await asyncio.to_thread(note.drop)
            raise
        await asyncio.to_thread(note.drop)
        return reply

    async def _held(self, header: u.UploadHeader) -> tuple[int, str] | None:
        """(bytes, SHA-256) the server holds of this resumable upload; None when none."""
        for attempt in range(HELD_ATTEMPTS):
            try:
                status = await self.upload_status(header.request_id, header.system)
            except NotFound:
                return None
            except Aborted:  # the server still winds up an interrupted stream of it
                await asyncio.sleep(1.0 + attempt)
                continue
            if status.complete or status.size > header.expected_size:
                return None
            return status.size, status.sha256
        return None

    async def _send(
        self, reader: _UploadReader, header: u.UploadHeader, offset: int = 0
    ) -> u.UploadResponse:
        """One Upload, again after UNAVAILABLE or a rate limit (same request id): from the
        start, or for a resumable one from what the server holds."""
        policy = self._client.retry
        attempt = 0
        while True:
            header.offset = offset
            await asyncio.to_thread(reader.rewind, offset)
            try:
                return await self._stub().Upload(reader.messages(header))
            except (grpc.RpcError, asyncio.CancelledError) as e:
                if reader.error is not None:  # reading the file or the progress callback
                    raise reader.error from None
                if isinstance(e, asyncio.CancelledError):
                    raise
                error = from_rpc_error(e)
            if offset and isinstance(error, FailedPrecondition | NotFound):
                offset = 0  # what the server held went, or changed: start over
                continue
            # ABORTED: the server still winds up this upload's previous stream.
            waiting = header.resumable and isinstance(error, Aborted)
            if not (waiting and attempt < HELD_ATTEMPTS) and not policy.should_retry(
                attempt, error
            ):  # same request id: never twice
                raise error
            await asyncio.sleep(1.0 if waiting else policy.delay(attempt, error))
            attempt += 1
            if header.resumable:  # bytes this call sent, so no need to compare them
                held = await self._held(header)
                offset = held[0] if held is not None else 0

    async def _upload_tree(
        self, local: Path, remote: str, system: str, options: _UploadOptions, meter: _Meter
    ) -> builtins.list[Transferred]:
        overwrite, preserve = options.overwrite, options.preserve
        items = await asyncio.to_thread(_local_tree, local)
        meter.total = sum(item.size for item in items if item.kind == "file")
        await self.mkdir(remote, system, parents=True)
        done: list[Transferred] = []
        for item in items:  # links come last, as in downloads
            target = f"{remote}/{item.relative}"
            if item.kind == "dir":
                await self.mkdir(target, system, parents=True)
            elif item.kind == "file":
                done.append(
                    await self._upload_file(local / item.relative, target, system, options,
                                            None, meter)
                )  # fmt: skip
            else:
                await self._remote_symlink(item.target, target, system, overwrite=overwrite)
        if preserve:  # directories' bits last, deepest first: a read-only one stays fillable
            for item in reversed([i for i in items if i.kind == "dir"]):
                await self.chmod(f"{remote}/{item.relative}", item.mode, system)
            root = await asyncio.to_thread(local.stat)
            await self.chmod(remote, stat_module.S_IMODE(root.st_mode), system)
        return done

    async def _remote_symlink(
        self, target: str, link: str, system: str, *, overwrite: bool
    ) -> None:
        try:
            await self.symlink(target, link, system)
        except AlreadyExists:
            if not overwrite:
                raise
            await self.remove(link, system)
            await self.symlink(target, link, system)

    @overload
    async def download(
        self, remote: RemotePath, local: LocalPath, *, system: str | None = ...,
        recursive: Literal[False] = ..., overwrite: bool = ..., resume: bool = ...,
        preserve: bool = ..., progress: Progress | None = ...,
    ) -> Transferred: ...  # fmt: skip
    @overload
    async def download(
        self, remote: RemotePath, local: LocalPath, *, system: str | None = ...,
        recursive: Literal[True], overwrite: bool = ..., resume: bool = ...,
        preserve: bool = ..., progress: Progress | None = ...,
    ) -> builtins.list[Transferred]: ...  # fmt: skip
    @overload
    async def download(
        self, remote: RemotePath, local: LocalPath, *, system: str | None = ...,
        recursive: bool, overwrite: bool = ..., resume: bool = ...,
        preserve: bool = ..., progress: Progress | None = ...,
    ) -> Transferred | builtins.list[Transferred]: ...  # fmt: skip

    async def download(
        self,
        remote: RemotePath,
        local: LocalPath,
        *,
        system: str | None = None,
        recursive: bool = False,
        overwrite: bool = False,
        resume: bool = True,
        preserve: bool = False,
        progress: Progress | None = None,
    ) -> Transferred | builtins.list[Transferred]:
        """Fetch the remote file into `local` (the full path; AlreadyExists when it exists,
        unless `overwrite`), verified against the server's SHA-256 (DataLoss otherwise).

        Data goes to `<local>.part`, renamed to `local` when complete. With `resume`, a
        `.part` left by an interrupted download of the same file version is continued
        from its size (its bytes are hashed first, so the whole file is still verified);
        a dropped connection resumes the same way. `recursive`: `remote` is a directory
        and `local` becomes a copy of it (symlinks recreated as links). `preserve` keeps
        the permission bits and modification times. `progress` counts bytes of the
        whole download, from the resumed offset."""
        system_id = self._system(system)
        target = Path(local)
        options = _DownloadOptions(overwrite=overwrite, resume=resume, preserve=preserve)
        if recursive:
            return await self._download_tree(remote, target, system_id, options,
                                             _Meter(progress, 0))  # fmt: skip
        return await self._download_file(remote, target, system_id, options, _Meter(progress))

    async def _download_file(
        self, remote: RemotePath, local: Path, system: str, options: _DownloadOptions,
        meter: _Meter,
    ) -> Transferred:  # fmt: skip
        if not options.overwrite and await asyncio.to_thread(os.path.lexists, local):
            raise AlreadyExists(f"{local} exists: pass overwrite=True to replace it")
        part = _PartFile(local.with_name(local.name + ".part"))
        await asyncio.to_thread(part.open, options.resume)
        try:
            header = await self._fetch_retrying(remote, part, system, meter)
        except DataLoss:
            await asyncio.to_thread(part.discard)
            raise
        finally:
            await asyncio.to_thread(part.close)
        await asyncio.to_thread(part.finish, local, header if options.preserve else None)
        meter.next_file(part.size)
        name = remote if isinstance(remote, str) else os.fsdecode(remote)
        return Transferred(name, str(local), part.size, part.hasher.hexdigest())

    async def _fetch_retrying(
        self, remote: RemotePath, part: _PartFile, system: str, meter: _Meter
    ) -> u.DownloadHeader:
        """`_fetch`, resumed after UNAVAILABLE or a rate limit, and from byte 0 when the
        `.part` is of another version of the file (or longer than it)."""
        policy = self._client.retry
        attempt = 0
        while True:
            try:
                return await self._fetch(remote, part, system, meter)
            except _Stale:
                await asyncio.to_thread(part.restart)
            except InvalidArgument:
                if part.size == 0:
                    raise
                await asyncio.to_thread(part.restart)  # offset beyond the end: it shrank
            except HpcgateError as e:
                if not policy.should_retry(attempt, e):
                    raise
                await asyncio.sleep(policy.delay(attempt, e))
                attempt += 1

    async def _fetch(
        self, remote: RemotePath, part: _PartFile, system: str, meter: _Meter
    ) -> u.DownloadHeader:
        """One Download from the part's size to the trailer, which must match."""
        request = _with_path(u.DownloadRequest(system=system, offset=part.size), remote)
        header: u.DownloadHeader | None = None
        expected = part.size
        # One chunk is written and hashed in a thread while the next one arrives.
        writing: asyncio.Future[None] | None = None
        try:
            async with _closing(self._client.stream(self._stub().Download, request)) as stream:
                async for message in stream:
                    kind = message.WhichOneof("kind")
                    if kind == "header":
                        header = message.header
                        if not part.continues(header):
                            raise _Stale
                        meter.learn(header.size)
                        meter.at(part.size)
                    elif kind == "chunk" and header is not None:
                        if message.chunk.offset != expected:
                            raise DataLoss(f"chunk at offset {message.chunk.offset}, expected "
                                           f"{expected}: download again")  # fmt: skip
                        data = message.chunk.data  # each access copies the bytes
                        expected += len(data)
                        if writing is not None:
                            await writing
                            meter.at(part.size)
                        writing = asyncio.ensure_future(asyncio.to_thread(
                            part.append, data, header.mtime.seconds))  # fmt: skip
                    elif kind == "trailer" and header is not None:
                        if writing is not None:
                            await writing
                            writing = None
                            meter.at(part.size)
                        part.verify(message.trailer, remote)
                        return header
        finally:
            if writing is not None:  # the thread must be done with the file before it closes
                with suppress(Exception):
                    await asyncio.shield(writing)
        raise DataLoss(f"the download of {remote!r} ended without its trailer: download again")

    async def _download_tree(
        self, remote: RemotePath, local: Path, system: str, options: _DownloadOptions,
        meter: _Meter,
    ) -> builtins.list[Transferred]:  # fmt: skip
        root = await self.stat(remote, system, follow_symlinks=True)
        if root.type != _DIRECTORY:
            raise FailedPrecondition(f"{root.path} is not a directory (recursive=True)")
        items = await self._remote_tree(remote, system)
        meter.total = sum(item.size for item in items if item.kind == "file")
        await asyncio.to_thread(local.mkdir, parents=True, exist_ok=True)
        done: list[Transferred] = []
        for item in items:  # links come last: nothing is written through a new link
            target = local / item.relative
            if item.kind == "dir":
                await asyncio.to_thread(target.mkdir, exist_ok=True)
            elif item.kind == "file":
                done.append(await self._download_file(item.remote, target, system, options, meter))
            else:
                await asyncio.to_thread(_local_symlink, item.target, target, options.overwrite)
        if options.preserve:
            await asyncio.to_thread(_apply_modes, local, root, items)
        return done

    async def _remote_tree(self, root: RemotePath, system: str) -> builtins.list[_Item]:
        """Every entry below `root`, parents before children, symlinks last."""
        items: list[_Item] = []
        links: list[_Item] = []
        pending: list[tuple[str, RemotePath]] = [("", root)]
        while pending:
            prefix, directory = pending.pop()
            async for entry in self.list(directory, system, hidden=True):
                name = os.fsdecode(entry.name_bytes) if entry.name_bytes else entry.name
                if name in ("", ".", "..") or "/" in name or "\0" in name:
                    raise DataLoss(f"the server listed an entry named {name!r} in {directory!r}")
                path: RemotePath = entry.path_bytes or entry.path
                item = _Item(prefix + name, _KINDS.get(entry.type, "file"), entry.size,
                             entry.link_target, path, entry.mode)  # fmt: skip
                if entry.type == _DIRECTORY:
                    items.append(item)
                    pending.append((f"{item.relative}/", path))
                elif entry.type == _FILE:
                    items.append(item)
                elif entry.type == _SYMLINK:
                    links.append(item)
        return items + links

    # -- listing -------------------------------------------------------------------------

    async def list(
        self,
        path: RemotePath,
        system: str | None = None,
        *,
        hidden: bool = False,
        follow_symlinks: bool = False,
        page_size: int = 0,
    ) -> AsyncIterator[u.FileEntry]:
        """Every entry of a directory, sorted by name, over all pages (`hidden`: names
        starting with `.` too; `follow_symlinks`: describe links' targets, as `ls -L`)."""
        token = ""
        while True:
            request = u.ListDirectoryRequest(
                system=self._system(system), show_hidden=hidden, follow_symlinks=follow_symlinks,
                page_size=page_size, page_token=token,
            )  # fmt: skip
            _with_path(request, path)
            reply = await self._client.unary(self._stub().ListDirectory, request, retry=True)
            for entry in reply.entries:
                yield entry
            token = reply.next_page_token
            if not token:
                return

    # -- commands ------------------------------------------------------------------------

    async def run(
        self,
        argv: Sequence[str] | str,
        system: str | None = None,
        *,
        cwd: str | None = None,
        env: Mapping[str, str] | None = None,
        stdin: bytes | str | None = None,
        timeout: float | None = None,  # noqa: ASYNC109 (the command's limit, on the server)
        shell: bool = False,
        max_output_bytes: int = 0,
    ) -> CommandResult:
        """Run a command on the system's login host and wait for it: exit code and output.

        `argv` is run without a shell (a string is split as a shell would, without being
        interpreted); with `shell=True`, a string is a `/bin/sh -c` command line. A
        command over `timeout` seconds (server default 60) is killed: `timed_out`."""
        out: builtins.list[bytes] = []
        err: builtins.list[bytes] = []
        async for event in self.run_stream(argv, system, cwd=cwd, env=env, stdin=stdin,
                                           timeout=timeout, shell=shell,
                                           max_output_bytes=max_output_bytes):  # fmt: skip
            if isinstance(event, CommandOutput):
                (out if event.stream == "stdout" else err).append(event.data)
            else:
                return CommandResult(
                    event.exit_code, b"".join(out).decode(errors="replace"),
                    b"".join(err).decode(errors="replace"), event.signal, event.timed_out,
                    event.output_truncated, event.duration,
                )  # fmt: skip
        raise DataLoss("the command's stream ended without its result")

    async def run_stream(
        self,
        argv: Sequence[str] | str,
        system: str | None = None,
        *,
        cwd: str | None = None,
        env: Mapping[str, str] | None = None,
        stdin: bytes | str | None = None,
        timeout: float | None = None,  # noqa: ASYNC109 (the command's limit, on the server)
        shell: bool = False,
        max_output_bytes: int = 0,
    ) -> AsyncIterator[CommandOutput | CommandResult]:
        """`run`, as it happens: `CommandOutput` chunks, then one `CommandResult` (whose
        stdout and stderr are empty). Not retried: a command may not be safe to repeat.
        Stopping the iteration cancels the call (the server kills the command)."""
        request = _command_request(argv, self._system(system), cwd=cwd, env=env, stdin=stdin,
                                   timeout=timeout, shell=shell,
                                   max_output_bytes=max_output_bytes)  # fmt: skip
        async with _closing(self._client.stream(self._stub().RunCommand, request)) as stream:
            async for message in stream:
                kind = message.WhichOneof("kind")
                if kind == "stdout":
                    yield CommandOutput("stdout", message.stdout)
                elif kind == "stderr":
                    yield CommandOutput("stderr", message.stderr)
                elif kind == "result":
                    yield _result(message.result)


_KINDS: dict[int, Literal["dir", "file", "link"]] = {
    _DIRECTORY: "dir", _FILE: "file", _SYMLINK: "link",
}  # fmt: skip


def _result(r: u.RunCommandResult) -> CommandResult:
    seconds = r.duration.ToTimedelta().total_seconds()
    return CommandResult(r.exit_code, signal=r.signal, timed_out=r.timed_out,
                         output_truncated=r.output_truncated, duration=seconds)  # fmt: skip


def _command_request(
    argv: Sequence[str] | str,
    system: str,
    *,
    cwd: str | None,
    env: Mapping[str, str] | None,
    stdin: bytes | str | None,
    timeout: float | None,
    shell: bool,
    max_output_bytes: int,
) -> u.RunCommandRequest:
    request = u.RunCommandRequest(
        system=system, working_directory=cwd or "", environment=dict(env or {}),
        stdin=stdin.encode() if isinstance(stdin, str) else stdin or b"",
        max_output_bytes=max_output_bytes,
    )  # fmt: skip
    if shell:
        request.command = argv if isinstance(argv, str) else shlex.join(argv)
        request.use_shell = True
    else:
        request.argv.extend(shlex.split(argv) if isinstance(argv, str) else argv)
    if timeout is not None:
        request.timeout.FromNanoseconds(int(timeout * 1e9))
    return request


# -- upload helpers ------------------------------------------------------------------------


def _upload_header(
    remote: str,
    system: str,
    info: os.stat_result,
    *,
    overwrite: bool,
    mode: int | None,
    preserve: bool,
) -> u.UploadHeader:
    """The header of one file: its size (so a file changing meanwhile fails the upload)
    and a fresh request id (so a retry never writes twice)."""
    header = u.UploadHeader(
        system=system, path=remote, overwrite=overwrite, expected_size=info.st_size,
        request_id=f"client-{uuid.uuid4().hex}",
    )  # fmt: skip
    if mode is not None:
        header.mode = mode
    elif preserve:
        header.mode = stat_module.S_IMODE(info.st_mode)
    if preserve:
        header.mtime.FromNanoseconds(info.st_mtime_ns)
    return header


@dataclass(frozen=True)
class _UploadOptions:
    overwrite: bool
    preserve: bool
    resume: bool


class _ResumeNote:
    """The request id of an unfinished resumable upload of one local file (this inode,
    size and mtime) to one target with one header, in the user's cache directory: a later
    call, from any process, continues that upload instead of starting another."""

    def __init__(self, path: Path) -> None:
        self.path = path

    @classmethod
    def of(cls, local: Path, header: u.UploadHeader, info: os.stat_result) -> _ResumeNote:
        key = hashlib.sha256(header.SerializeToString(deterministic=True))
        key.update(f"\0{local.resolve()}\0{info.st_ino}\0{info.st_mtime_ns}".encode())
        cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
        return cls(cache / "hpcgate" / "uploads" / key.hexdigest()[:40])

    def load(self) -> str | None:
        try:
            text = self.path.read_text().strip()
        except (OSError, UnicodeDecodeError):
            return None
        return text if text.startswith("client-") and len(text) <= 128 else None

    def save(self, request_id: str) -> None:
        """Best effort: without a note, a later call starts over (nothing worse)."""
        with suppress(OSError):
            self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            temp = self.path.with_suffix(f".{os.getpid()}")
            temp.write_text(request_id)
            temp.replace(self.path)

    def drop(self) -> None:
        with suppress(OSError):
            self.path.unlink(missing_ok=True)


class _UploadReader:
    """Feeds one file to Upload: chunks read in threads and hashed as they go. An error
    of its own (reading, the progress callback) is kept, since gRPC only cancels the
    call when a request iterator fails."""

    def __init__(self, path: Path, meter: _Meter) -> None:
        self.path = path
        self.meter = meter
        self.file: BinaryIO | None = None
        self.hasher = hashlib.sha256()
        self.sent = 0
        self.complete = False
        self.error: Exception | None = None

    def open(self) -> os.stat_result:
        self.file = self.path.open("rb")
        return os.fstat(self.file.fileno())

    def rewind(self, offset: int = 0) -> None:
        assert self.file is not None
        self.file.seek(offset)
        self.hasher = hashlib.sha256()  # of the bytes sent: the whole file from offset 0
        self.sent = offset
        self.complete = False
        self.error = None

    def close(self) -> None:
        if self.file is not None:
            self.file.close()

    def hexdigest(self) -> str:
        return self.hasher.hexdigest()

    def _read(self) -> bytes:
        assert self.file is not None
        data = self.file.read(CHUNK)
        self.hasher.update(data)
        return data

    async def messages(self, header: u.UploadHeader) -> AsyncIterator[u.UploadRequest]:
        try:
            yield u.UploadRequest(header=header)
            while data := await asyncio.to_thread(self._read):
                yield u.UploadRequest(chunk=u.UploadChunk(data=data))
                self.sent += len(data)
                self.meter.at(self.sent)
            self.meter.at(self.sent)  # an empty file is reported too
            self.complete = True
        except Exception as e:  # not GeneratorExit/CancelledError: gRPC closing the stream
            self.error = e
            raise


def _local_tree(root: Path) -> builtins.list[_Item]:
    """Every entry below a local directory, parents before children, symlinks last (as
    links, not followed; sockets, fifos and devices are skipped)."""
    if not root.is_dir():
        raise NotADirectoryError(f"{root} is not a directory (recursive=True)")
    items: list[_Item] = []
    links: list[_Item] = []

    def visit(directory: str, prefix: str) -> None:
        with os.scandir(directory) as found:
            entries = sorted(found, key=lambda e: e.name)
        for entry in entries:
            relative = prefix + entry.name
            if entry.is_symlink():
                links.append(_Item(relative, "link", target=os.readlink(entry.path)))
            elif entry.is_dir():
                mode = stat_module.S_IMODE(entry.stat().st_mode)
                items.append(_Item(relative, "dir", mode=mode))
                visit(entry.path, relative + "/")
            elif entry.is_file():
                items.append(_Item(relative, "file", size=entry.stat().st_size))

    visit(str(root), "")
    return items + links


# -- download helpers ----------------------------------------------------------------------


@dataclass(frozen=True)
class _DownloadOptions:
    overwrite: bool
    resume: bool
    preserve: bool


class _Stale(Exception):
    """The `.part` on disk belongs to another version of the remote file."""


class _PartFile:
    """The `<local>.part` a download writes: appended to and hashed as it grows, and
    stamped with the remote file's mtime after every chunk, so that a later download can
    tell whether it continues the same version of the file. Methods run in threads."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.file: BinaryIO | None = None
        self.hasher = hashlib.sha256()
        self.size = 0
        self.stamp = 0  # the part's mtime, whole seconds

    def open(self, resume: bool) -> None:
        if resume and self.path.is_file():
            self.file = self.path.open("r+b")
            while block := self.file.read(CHUNK):
                self.hasher.update(block)
                self.size += len(block)
            self.stamp = os.fstat(self.file.fileno()).st_mtime_ns // 10**9
        else:
            self.file = self.path.open("wb")

    def continues(self, header: u.DownloadHeader) -> bool:
        return self.size == 0 or (self.stamp == header.mtime.seconds and header.size >= self.size)

    def restart(self) -> None:
        assert self.file is not None
        self.file.seek(0)
        self.file.truncate()
        self.hasher = hashlib.sha256()
        self.size = 0

    def append(self, data: bytes, stamp: int) -> None:
        assert self.file is not None
        self.file.write(data)
        self.file.flush()
        self.hasher.update(data)
        self.size += len(data)
        os.utime(self.file.fileno(), (stamp, stamp))
        self.stamp = stamp

    def verify(self, trailer: u.DownloadTrailer, remote: RemotePath) -> None:
        digest = self.hasher.hexdigest()
        if trailer.sha256 != digest or trailer.total_bytes != self.size:
            raise DataLoss(
                f"downloading {remote!r}: got {self.size} bytes with SHA-256 {digest}, the "
                f"server has {trailer.total_bytes} bytes with {trailer.sha256}; download again"
            )

    def close(self) -> None:
        if self.file is not None:
            self.file.close()
            self.file = None

    def discard(self) -> None:
        self.close()
        self.path.unlink(missing_ok=True)

    def finish(self, local: Path, preserved: u.DownloadHeader | None) -> None:
        """Renamed into place; the remote mode and mtime kept when `preserved` is given."""
        if preserved is not None:
            os.chmod(self.path, preserved.mode & 0o7777)
            mtime = preserved.mtime.ToNanoseconds()
            os.utime(self.path, ns=(mtime, mtime))
        else:
            os.utime(self.path)  # the stamp was for resuming only
        os.replace(self.path, local)


def _local_symlink(target: str, link: Path, overwrite: bool) -> None:
    if os.path.lexists(link):
        if not overwrite:
            raise AlreadyExists(f"{link} exists: pass overwrite=True to replace it")
        link.unlink()
    os.symlink(target, link)


def _apply_modes(local: Path, root: u.FileEntry, items: builtins.list[_Item]) -> None:
    """Directories' remote permission bits, deepest first (files got theirs already)."""
    for item in reversed(items):
        if item.kind == "dir":
            os.chmod(local / item.relative, item.mode)
    os.chmod(local, root.mode & 0o7777)
