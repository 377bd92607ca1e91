"""Small files to and from a peer facility in batches: UploadFiles and DownloadFiles.

A tree of small files costs one UploadFiles stream (a batch per request, answered in
order) instead of an Upload and a Checksum per file; reading them back costs one
DownloadFiles call per batch. The peer checks every file against the SHA-256 sent with it
before writing it and, with `verify`, re-reads it before renaming it into place. Files are
not fsynced one by one: `sync()` asks the peer for one syncfs of everything the stream
wrote, which the engine does at its checkpoints (before it records progress or deletes
moved sources).

A name that is not valid UTF-8 cannot travel in these RPCs: a batch stops before it, and
the engine sends that file on its own (Upload/Download take raw bytes).
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

import grpc

from hpcgate.server.transfers.endpoint import BatchOutcome, FileData, Item, Written
from hpcgate.v1 import utilities_pb2 as u

if TYPE_CHECKING:
    from hpcgate.server.transfers.peer import PeerEndpoint

SLOWEST_DISK = 10 * 1024 * 1024  # bytes/s: the time a batch may take beyond the timeout


def _utf8(rel: str) -> bool:
    try:
        rel.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _content(item: Item, data: FileData, preserve: bool) -> u.FileContent:
    content = u.FileContent(path=item.rel, data=data.data, sha256=data.sha256)
    if preserve:
        content.mode = item.mode
        content.mtime.FromNanoseconds(item.mtime_ns)
    return content


class PeerBatches:
    """The batch RPCs of one PeerEndpoint; one UploadFiles stream open at a time."""

    def __init__(self, endpoint: PeerEndpoint) -> None:
        self.endpoint = endpoint
        self._call: Any = None  # the open UploadFiles call
        self._directory = ""
        self._verify = False
        self._lock = asyncio.Lock()

    async def _step(self, step: Any, size: int, root: str) -> Any:
        bound = self.endpoint.peer.timeout + size / SLOWEST_DISK
        try:
            return await asyncio.wait_for(step, bound)
        except TimeoutError:
            await self.close()
            raise self.endpoint._silent("writing files below", root) from None
        except grpc.aio.AioRpcError as e:
            await self.close()
            raise self.endpoint._failure(e, "writing files below", root) from None

    async def _stream(self, root: str, verify: bool) -> Any:
        if self._call is not None and (self._directory, self._verify) == (root, verify):
            return self._call
        await self.close()
        header = u.UploadFilesHeader(system=self.endpoint.peer.system, directory=root)
        header.verify = verify
        self._call = self.endpoint.stub.UploadFiles(None)  # written message by message
        self._directory, self._verify = root, verify
        await self._step(self._call.write(u.UploadFilesRequest(header=header)), 0, root)
        return self._call

    async def _exchange(self, root: str, verify: bool, batch: u.FileBatch) -> Any:
        async with self._lock:  # a batch and its answer, before the next batch is sent
            call = await self._stream(root, verify)
            size = sum(len(f.data) for f in batch.files)
            try:
                await self._step(call.write(u.UploadFilesRequest(batch=batch)), size, root)
                reply = await self._step(call.read(), size, root)
            except asyncio.CancelledError:
                await self.close()  # its answer would be taken for the next batch's
                raise
        if reply is grpc.aio.EOF:  # type: ignore[attr-defined]  # ended: its status says why
            await self._step(call, 0, root)
            raise self.endpoint._silent("writing files below", root)
        return reply

    async def write(
        self, root: str, files: list[tuple[Item, FileData]], *, preserve: bool, verify: bool
    ) -> BatchOutcome:
        sendable = []
        for item, data in files:
            if not _utf8(item.rel):
                break
            sendable.append(_content(item, data, preserve))
        stopped_at = files[len(sendable)][0].rel if len(sendable) < len(files) else None
        if not sendable:
            return BatchOutcome([], stopped_at)
        reply = await self._exchange(root, verify, u.FileBatch(files=sendable))
        done = [(w.path, Written(w.size, w.sha256)) for w in reply.written]
        if reply.HasField("failure"):
            return BatchOutcome(done, reply.failure.path)
        return BatchOutcome(done, stopped_at)

    async def sync(self) -> None:
        """Makes everything the open stream wrote durable on the peer (one syncfs)."""
        if self._call is not None:
            await self._exchange(self._directory, self._verify, u.FileBatch(sync=True))

    async def read(self, root: str, items: list[Item]) -> tuple[list[FileData], str | None]:
        paths = []
        for item in items:
            if not _utf8(item.rel):
                break
            paths.append(item.rel)
        stopped_at = items[len(paths)].rel if len(paths) < len(items) else None
        if not paths:
            return [], stopped_at
        request = u.DownloadFilesRequest(
            system=self.endpoint.peer.system, directory=root, paths=paths
        )
        size = sum(i.size for i in items[: len(paths)])
        files: list[FileData] = []
        try:
            call = self.endpoint.stub.DownloadFiles(
                request, timeout=self.endpoint.peer.timeout + size / SLOWEST_DISK
            )
            async for reply in call:
                files += [FileData(f.path, f.data, f.sha256) for f in reply.files]
                if reply.HasField("failure"):
                    return files, reply.failure.path
        except grpc.aio.AioRpcError as e:
            raise self.endpoint._failure(e, "reading files below", root) from None
        return files, stopped_at

    async def close(self) -> None:
        call, self._call = self._call, None
        if call is not None:
            call.cancel()
