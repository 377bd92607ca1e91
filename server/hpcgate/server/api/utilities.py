"""UtilitiesService: files and short commands on a system, as the caller.

Each RPC validates its request (files/paths.py for paths), resolves the caller's POSIX
identity, then does the work in the caller's privsep worker (files/access.py), so every
permission decision is the kernel's. Large data never passes through the worker: it opens
the file as the caller and hands the descriptor over (files/reading.py, files/uploads.py).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import logging
import os
from collections.abc import AsyncIterator
from dataclasses import astuple
from typing import Any

import grpc

from hpcgate.server import privsep
from hpcgate.server.api import file_batches
from hpcgate.server.api.command_request import command_spec
from hpcgate.server.api.convert.files import (
    CHECKSUM_ALGORITHMS,
    command_message,
    download_message,
    file_entry,
    upload_response,
)
from hpcgate.server.api.errors import ApiError, FieldViolations
from hpcgate.server.api.resources import lookup_system, unknown_system
from hpcgate.server.api.upload_request import (
    chunk_data,
    fingerprint,
    request_id_checked,
    upload_target,
)
from hpcgate.server.auth.caller import current_caller
from hpcgate.server.config import Config, SystemConfig
from hpcgate.server.files import modes, paths, reading, uploads
from hpcgate.server.files.access import FileAccess
from hpcgate.server.files.commands import CommandRunner
from hpcgate.server.files.descriptors import Descriptor
from hpcgate.server.files.errors import file_error
from hpcgate.server.files.paths import display
from hpcgate.server.files.resumable import PartialKey, ResumableUploads
from hpcgate.server.state.store import StateStore
from hpcgate.server.users import identity_of
from hpcgate.v1 import utilities_pb2, utilities_pb2_grpc

log = logging.getLogger(__name__)

_LIST_TOKEN = b"n:"


def _list_token(name: str) -> str:
    return base64.urlsafe_b64encode(_LIST_TOKEN + os.fsencode(name)).decode()


def _after_name(token: str) -> str | None:
    try:
        raw = base64.urlsafe_b64decode(token.encode())
    except (binascii.Error, ValueError):
        return None
    return os.fsdecode(raw[2:]) if raw.startswith(_LIST_TOKEN) and len(raw) > 2 else None


class UtilitiesServicer(utilities_pb2_grpc.UtilitiesServiceServicer):
    def __init__(self, config: Config, users: privsep.PrivilegeSeparation, store: StateStore):
        self.config = config
        self.limits = config.files
        self.users = users
        self.uploads = uploads.UploadRequests(store)
        self.resumable = ResumableUploads(store, config.files.upload_resume_retention)
        self.commands = CommandRunner(config.commands, users)

    # -- helpers ------------------------------------------------------------------------

    def _system(self, value: str, errors: FieldViolations, field: str = "system") -> str:
        system = lookup_system(self.config, value, field, errors, bare_id=True)
        return system.id if system is not None else ""

    def _system_config(self, system_id: str) -> SystemConfig:
        system = self.config.system(system_id)
        if system is None:
            raise unknown_system(self.config, system_id)
        return system

    async def _identity(self) -> privsep.UserIdentity:
        return await identity_of(self.users, current_caller().user)

    async def _access(self, system_id: str) -> FileAccess:
        system = self._system_config(system_id)
        return FileAccess(self.users, await self._identity(), system, self.limits)

    # -- metadata -----------------------------------------------------------------------

    async def ListDirectory(
        self,
        request: utilities_pb2.ListDirectoryRequest,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> utilities_pb2.ListDirectoryResponse:
        errors = FieldViolations()
        system = self._system(request.system, errors)
        path = paths.checked(
            errors, "path", request.path, request.path_bytes, raw_field="path_bytes"
        )
        if request.page_size < 0:
            errors.add("page_size", "must be 0 (server default) or positive")
        after = None
        if request.page_token:
            after = _after_name(request.page_token)
            if after is None:
                errors.add("page_token", "is not a token returned by ListDirectory")
        errors.raise_if_any()
        files = await self._access(system)
        limit = min(request.page_size or self.limits.list_page_size, self.limits.list_max_page_size)
        entries, more = await files.list_page(
            path,
            show_hidden=request.show_hidden,
            follow=request.follow_symlinks,
            after=after,
            limit=limit,
        )
        response = utilities_pb2.ListDirectoryResponse(entries=[file_entry(e) for e in entries])
        if more and entries:
            response.next_page_token = _list_token(str(entries[-1]["name"]))
        return response

    async def Stat(
        self, request: utilities_pb2.StatRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> utilities_pb2.StatResponse:
        errors = FieldViolations()
        system = self._system(request.system, errors)
        path = paths.checked(
            errors, "path", request.path, request.path_bytes, raw_field="path_bytes"
        )
        errors.raise_if_any()
        files = await self._access(system)
        entry = await files.entry(
            path, follow=request.follow_symlinks, what=f"stat {display(path)}"
        )
        return utilities_pb2.StatResponse(entry=file_entry(entry))

    # -- changes ------------------------------------------------------------------------

    async def MakeDirectory(
        self,
        request: utilities_pb2.MakeDirectoryRequest,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> utilities_pb2.MakeDirectoryResponse:
        errors = FieldViolations()
        system = self._system(request.system, errors)
        path = paths.checked(errors, "path", request.path)
        if path == "/":
            errors.add("path", "'/' always exists")
        if request.HasField("mode") and request.mode > 0o7777:
            errors.add("mode", "must be permission bits, at most 0o7777 (4095)")
        errors.raise_if_any()
        files = await self._access(system)
        mode = request.mode if request.HasField("mode") else 0o755
        entry = await files.mkdir(path, parents=request.parents, mode=mode)
        return utilities_pb2.MakeDirectoryResponse(entry=file_entry(entry))

    async def Move(
        self, request: utilities_pb2.MoveRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> utilities_pb2.MoveResponse:
        errors = FieldViolations()
        system = self._system(request.system, errors)
        source = paths.checked(
            errors,
            "source_path",
            request.source_path,
            request.source_path_bytes,
            raw_field="source_path_bytes",
        )
        destination = paths.checked(errors, "destination_path", request.destination_path)
        if source == "/" or destination == "/":
            errors.add(
                "source_path" if source == "/" else "destination_path",
                "'/' cannot be moved or replaced",
            )
        errors.raise_if_any()
        files = await self._access(system)
        entry = await files.rename(source, destination, overwrite=request.overwrite)
        return utilities_pb2.MoveResponse(entry=file_entry(entry))

    async def Copy(
        self, request: utilities_pb2.CopyRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> utilities_pb2.CopyResponse:
        errors = FieldViolations()
        system = self._system(request.system, errors)
        source = paths.checked(errors, "source_path", request.source_path)
        destination = paths.checked(errors, "destination_path", request.destination_path)
        if destination == "/":
            errors.add("destination_path", "'/' cannot be replaced")
        if source and destination and (destination + "/").startswith(source.rstrip("/") + "/"):
            errors.add("destination_path", "must not be the source or inside it")
        errors.raise_if_any()
        files = await self._access(system)
        result = await files.copy(
            source,
            destination,
            recursive=request.recursive,
            overwrite=request.overwrite,
            preserve=request.preserve,
        )
        return utilities_pb2.CopyResponse(
            entry=file_entry(result["entry"]),
            bytes_copied=int(result["bytes"]),
            files_copied=int(result["files"]),
        )

    async def Remove(
        self, request: utilities_pb2.RemoveRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> utilities_pb2.RemoveResponse:
        errors = FieldViolations()
        system = self._system(request.system, errors)
        path = paths.checked(
            errors, "path", request.path, request.path_bytes, raw_field="path_bytes"
        )
        errors.raise_if_any()
        if path == "/":
            raise ApiError(grpc.StatusCode.FAILED_PRECONDITION, "refusing to remove '/'")
        files = await self._access(system)
        if path.rstrip("/") == files.identity.home.rstrip("/"):
            raise ApiError(
                grpc.StatusCode.FAILED_PRECONDITION,
                f"{path} is your home directory; it cannot be removed",
            )
        await files.remove(path, recursive=request.recursive, allow_missing=request.allow_missing)
        return utilities_pb2.RemoveResponse()

    async def ChangeMode(
        self, request: utilities_pb2.ChangeModeRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> utilities_pb2.ChangeModeResponse:
        errors = FieldViolations()
        system = self._system(request.system, errors)
        path = paths.checked(errors, "path", request.path)
        which = request.WhichOneof("mode")
        bits: int | None = None
        symbolic = ""
        if which is None:
            errors.add("mode", "set mode_bits or mode_string")
        elif which == "mode_bits":
            if request.mode_bits > 0o7777:
                errors.add("mode_bits", "must be at most 0o7777 (4095)")
            bits = request.mode_bits
        else:
            try:
                bits, symbolic = modes.parse(request.mode_string)
            except modes.ModeError as e:
                errors.add("mode_string", str(e))
        errors.raise_if_any()
        files = await self._access(system)
        if bits is None:
            # Symbolic modes apply to the current bits (a concurrent chmod in between is
            # last-writer-wins, as with two chmod(1) runs).
            current = await files.entry(path, follow=True, what=f"chmod {display(path)}")
            st_mode = int(current["stat"]["mode"])
            bits = modes.apply(
                symbolic, st_mode, is_dir=(st_mode & 0o170000) == 0o040000, umask=self.users.umask
            )
        entry = await files.chmod(path, bits)
        return utilities_pb2.ChangeModeResponse(entry=file_entry(entry))

    async def CreateSymlink(
        self,
        request: utilities_pb2.CreateSymlinkRequest,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> utilities_pb2.CreateSymlinkResponse:
        errors = FieldViolations()
        system = self._system(request.system, errors)
        link_path = paths.checked(errors, "link_path", request.link_path)
        if not request.target:
            errors.add("target", "is required")
        elif "\0" in request.target or len(request.target.encode()) >= paths.PATH_MAX:
            errors.add("target", f"must have no NUL bytes and fewer than {paths.PATH_MAX} bytes")
        errors.raise_if_any()
        files = await self._access(system)
        entry = await files.symlink(request.target, link_path)
        return utilities_pb2.CreateSymlinkResponse(entry=file_entry(entry))

    # -- content ------------------------------------------------------------------------

    async def Checksum(
        self, request: utilities_pb2.ChecksumRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> utilities_pb2.ChecksumResponse:
        errors = FieldViolations()
        system = self._system(request.system, errors)
        path = paths.checked(errors, "path", request.path)
        algorithm = request.algorithm or utilities_pb2.CHECKSUM_ALGORITHM_SHA256
        if algorithm not in CHECKSUM_ALGORITHMS:
            errors.add("algorithm", "unknown algorithm; offered: SHA256, SHA512, MD5, BLAKE2B")
        errors.raise_if_any()
        files = await self._access(system)
        fd = await files.open_file(path, f"hashing {display(path)}")
        digest, size = await reading.checksum(
            Descriptor(fd), CHECKSUM_ALGORITHMS[algorithm], self.limits.operation_timeout,
            display(path),
        )  # fmt: skip
        return utilities_pb2.ChecksumResponse(algorithm=algorithm, hex_digest=digest, size=size)

    async def View(
        self, request: utilities_pb2.ViewRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> utilities_pb2.ViewResponse:
        errors = FieldViolations()
        system = self._system(request.system, errors)
        path = paths.checked(errors, "path", request.path)
        which = request.WhichOneof("selection")
        if which == "head_lines" and request.head_lines == 0:
            errors.add("head_lines", "must be positive")
        if which == "tail_lines" and request.tail_lines == 0:
            errors.add("tail_lines", "must be positive")
        errors.raise_if_any()
        cap = min(request.max_bytes or self.limits.view_default_bytes, self.limits.view_max_bytes)
        files = await self._access(system)
        fd = Descriptor(await files.open_file(path, f"viewing {display(path)}"))
        try:
            if which == "head_lines":
                lines = request.head_lines
                selection = await asyncio.to_thread(
                    fd.run, lambda n: reading.view_head(n, lines, cap)
                )
            elif which == "tail_lines":
                lines = request.tail_lines
                selection = await asyncio.to_thread(
                    fd.run, lambda n: reading.view_tail(n, lines, cap)
                )
            else:
                offset, length = request.byte_range.offset, request.byte_range.length
                selection = await asyncio.to_thread(
                    fd.run, lambda n: reading.view_bytes(n, offset, length, cap)
                )
        except OSError as e:
            raise file_error(e, f"reading {display(path)}") from None
        finally:
            fd.close()
        return utilities_pb2.ViewResponse(
            data=selection.data,
            offset=selection.offset,
            truncated=selection.truncated,
            max_bytes=cap,
            file_size=selection.file_size,
        )

    async def Download(
        self, request: utilities_pb2.DownloadRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> AsyncIterator[utilities_pb2.DownloadResponse]:
        errors = FieldViolations()
        system = self._system(request.system, errors)
        path = paths.checked(
            errors, "path", request.path, request.path_bytes, raw_field="path_bytes"
        )
        if request.chunk_size > self.limits.max_chunk_size:
            errors.add("chunk_size", f"must be at most {self.limits.max_chunk_size} bytes")
        elif 0 < request.chunk_size < 4096:
            errors.add("chunk_size", "must be at least 4096 bytes (or 0 for the default)")
        errors.raise_if_any()
        files = await self._access(system)
        fd = await files.open_file(path, f"downloading {display(path)}")
        chunk_size = request.chunk_size or self.limits.download_chunk_size
        async for item in reading.download(
            Descriptor(fd), display(path), request.offset, chunk_size
        ):
            yield download_message(item)

    async def Upload(
        self,
        request_iterator: AsyncIterator[utilities_pb2.UploadRequest],
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> utilities_pb2.UploadResponse:
        stream = aiter(request_iterator)
        try:
            first = await anext(stream)
        except StopAsyncIteration:
            raise ApiError(
                grpc.StatusCode.INVALID_ARGUMENT, "the stream was empty: send a header first"
            ) from None
        errors = FieldViolations()
        if first.WhichOneof("kind") != "header":
            errors.add("header", "the first message must be a header (path, mode, overwrite...)")
            errors.raise_if_any()
        header = first.header
        system = self._system(header.system, errors, "header.system")
        path = paths.checked(errors, "header.path", header.path)
        if path == "/":
            errors.add("header.path", "must name a file, not '/'")
        target = upload_target(header, path, errors)
        errors.raise_if_any()
        if header.HasField("expected_size") and header.expected_size > self.limits.upload_max_bytes:
            raise ApiError(
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                f"{header.expected_size} bytes exceed the server's upload limit of "
                f"{self.limits.upload_max_bytes} bytes",
            )
        files = await self._access(system)
        user = files.identity.name
        if header.request_id:
            request_hash = fingerprint(header, system)
            found = await asyncio.to_thread(self.uploads.find, user, system, header.request_id)
            if found is not None:
                if found[0] != request_hash:
                    raise ApiError(
                        grpc.StatusCode.ALREADY_EXISTS,
                        f"request_id {header.request_id!r} was used for a different upload in "
                        "the last 24 hours; use a new request_id",
                    )
                return upload_response(found[1])
        if target.resumable:
            key = PartialKey(user, system, header.request_id)
            uploaded = await self.resumable.receive(
                files, key, request_hash, target, chunk_data(stream), self.limits.upload_max_bytes
            )
        else:
            uploaded = await uploads.receive(
                files, target, chunk_data(stream), self.limits.upload_max_bytes
            )
        if header.request_id:
            await asyncio.to_thread(
                self.uploads.record, user, system, header.request_id, request_hash, uploaded
            )
        return upload_response(uploaded)

    async def GetUploadStatus(
        self,
        request: utilities_pb2.GetUploadStatusRequest,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> utilities_pb2.GetUploadStatusResponse:
        errors = FieldViolations()
        system = self._system(request.system, errors)
        request_id_checked(request.request_id, "request_id", errors)
        errors.raise_if_any()
        files = await self._access(system)
        key = PartialKey(files.identity.name, system, request.request_id)
        held = await self.resumable.status(files, key)
        if held is not None:
            status = utilities_pb2.GetUploadStatusResponse(
                path=held.path, size=held.size, sha256=held.sha256
            )
            status.expire_time.FromNanoseconds(int(held.expires_at * 1e9))
            return status
        found = await asyncio.to_thread(self.uploads.find, *astuple(key))
        if found is None:
            raise ApiError(
                grpc.StatusCode.NOT_FOUND,
                f"you have no upload under request_id {request.request_id!r} on {system} "
                "(never started as resumable, or expired): upload from offset 0",
            )
        done = found[1]
        return utilities_pb2.GetUploadStatusResponse(
            path=done.path, size=done.size, sha256=done.sha256, complete=True
        )

    async def sweep_uploads(self) -> None:
        """Removes expired partial uploads every `upload_sweep_interval` seconds."""
        while True:
            await asyncio.sleep(self.limits.upload_sweep_interval)
            try:
                await self.resumable.sweep(self._access_as)
            except Exception:  # the state store down: the next sweep tries again
                log.warning("sweeping expired partial uploads failed", exc_info=True)

    async def _access_as(self, user: str, system_id: str) -> FileAccess:
        system = self._system_config(system_id)
        return FileAccess(self.users, await identity_of(self.users, user), system, self.limits)

    # -- many small files (api/file_batches.py) -----------------------------------------

    async def UploadFiles(
        self,
        request_iterator: AsyncIterator[utilities_pb2.UploadFilesRequest],
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> AsyncIterator[utilities_pb2.UploadFilesResponse]:
        stream = aiter(request_iterator)
        async for response in file_batches.upload_files(self._access, stream, self._system):
            yield response

    async def DownloadFiles(
        self,
        request: utilities_pb2.DownloadFilesRequest,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> AsyncIterator[utilities_pb2.DownloadFilesResponse]:
        async for response in file_batches.download_files(self._access, request, self._system):
            yield response

    # -- commands -----------------------------------------------------------------------

    async def RunCommand(
        self, request: utilities_pb2.RunCommandRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> AsyncIterator[utilities_pb2.RunCommandResponse]:
        errors = FieldViolations()
        system = self._system(request.system, errors)
        errors.raise_if_any()
        self._system_config(system)
        identity = await self._identity()
        self.commands.ensure_enabled()
        spec = command_spec(request, self.config.commands)
        async for item in self.commands.stream(identity, spec):
            yield command_message(item)
