"""The Endpoint for this gateway's own files, acting as the caller through their worker.

Reads and writes go through descriptors the caller's worker opened (files/access.py), so
the kernel checks every access as the caller and the system's allowed roots apply; data
is moved in threads, a chunk at a time. A written file goes to a hidden temporary name
beside the target, is read back and hashed through a fresh descriptor when verifying,
and only then renamed into place.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import os
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

from hpcgate.server import privsep
from hpcgate.server.config import FilesConfig, SystemConfig
from hpcgate.server.errors import DomainError
from hpcgate.server.files.access import FileAccess
from hpcgate.server.files.descriptors import Descriptor, read_exactly, write_all
from hpcgate.server.files.reading import HASH_BLOCK
from hpcgate.server.privsep.replies import BatchWritten, WalkItem
from hpcgate.server.tasks.model import TaskFailed
from hpcgate.server.transfers.endpoint import (
    BatchOutcome,
    Endpoint,
    FileData,
    Item,
    ItemKind,
    Written,
)

DATA_LOSS = 15  # google.rpc.Code
CHUNK = 4 * 1024 * 1024  # local reads: large enough that thread hops do not dominate
WALK_PAGE = 5000


@contextlib.contextmanager
def task_errors() -> Iterator[None]:
    """DomainErrors of file access (already canonical, with messages) as TaskFailed."""
    try:
        yield
    except DomainError as e:
        raise TaskFailed(int(e.code), e.message) from None


def _item(data: WalkItem) -> Item:
    return Item(
        rel=data["rel"],
        kind=data["kind"],
        size=int(data["size"]),
        mode=int(data["mode"]),
        mtime_ns=int(data["mtime_ns"]),
        link=data.get("link") or "",
    )


def _batch_item(item: Item, preserve: bool) -> dict[str, Any]:
    if preserve:
        return {"rel": item.rel, "mode": item.mode, "mtime_ns": item.mtime_ns}
    return {"rel": item.rel}


def _outcome(answer: BatchWritten) -> BatchOutcome:
    done = [(f["rel"], Written(f["size"], f["sha256"])) for f in answer.get("done", [])]
    failed = answer.get("failed")
    return BatchOutcome(done, failed["rel"] if failed else None)


class LocalEndpoint:
    def __init__(
        self,
        users: privsep.PrivilegeSeparation,
        identity: privsep.UserIdentity,
        system: SystemConfig,
        limits: FilesConfig,
    ) -> None:
        self.files = FileAccess(users, identity, system, limits)
        self.system = system
        self.label = f"systems/{system.id}"
        self._written_in = ""  # a directory written to since the last flush

    async def describe(self, path: str) -> Item | None:
        try:
            entry = await self.files.entry(path, follow=True, what=f"reading {path}")
        except DomainError as e:
            if e.code.name == "NOT_FOUND":
                return None
            raise TaskFailed(int(e.code), e.message, path) from None
        mode = int(entry["stat"]["mode"])
        if mode & 0o170000 not in (0o040000, 0o100000):
            raise TaskFailed(9, f"{path} is neither a regular file nor a directory", path)
        kind: ItemKind = "dir" if mode & 0o170000 == 0o040000 else "file"
        return Item(
            "", kind, int(entry["stat"]["size"]), mode & 0o7777, int(entry["stat"]["mtime_ns"])
        )

    async def check_readable(self, path: str, kind: str) -> None:
        """Fails (as TaskFailed) unless the caller can read the file or list the directory."""
        with task_errors():
            if kind == "dir":
                await self.files.list_page(
                    path, show_hidden=True, follow=False, after=None, limit=1
                )
            else:
                os.close(await self.files.open_file(path, f"reading {path}"))

    async def walk(self, path: str) -> AsyncIterator[Item]:
        after = ""
        while True:
            with task_errors():
                page = await self.files.walk_page(path, after=after, limit=WALK_PAGE)
            for data in page["items"]:
                yield _item(data)
            if not page["more"] or not page["items"]:
                return
            after = page["items"][-1]["rel"]

    async def read_file(self, path: str, offset: int = 0) -> AsyncIterator[bytes]:
        with task_errors():
            fd = Descriptor(await self.files.open_file(path, f"reading {path}"))
        try:
            position = offset

            def read(at: int) -> bytes:
                return fd.run(lambda n: read_exactly(n, CHUNK, at))

            pending = asyncio.ensure_future(asyncio.to_thread(read, position))
            try:
                while True:
                    data = await pending
                    if not data:
                        return
                    position += len(data)
                    pending = asyncio.ensure_future(asyncio.to_thread(read, position))
                    yield data
            finally:
                pending.cancel()
        except OSError as e:
            raise TaskFailed.from_os_error(e, f"reading {path}") from None
        finally:
            fd.close()

    async def write_file(
        self,
        path: str,
        chunks: AsyncIterator[bytes],
        *,
        size: int,
        mode: int | None,
        mtime_ns: int | None,
        verify: bool,
        expected: Callable[[], str] | None = None,
    ) -> Written:
        self._written_in = path.rpartition("/")[0] or "/"
        with task_errors():
            upload = await self.files.upload_begin(path, overwrite=True, mode=mode)
        fd = Descriptor(upload.fd)
        committed = False
        try:
            digest = hashlib.sha256()
            written = 0

            def write(data: bytes) -> None:
                fd.run(lambda n: write_all(n, data))
                if not verify:
                    digest.update(data)

            try:
                async for data in chunks:
                    await asyncio.to_thread(write, data)
                    written += len(data)
            except OSError as e:
                raise TaskFailed.from_os_error(e, f"writing {path}") from None
            fd.close()
            if verify:  # read back what the destination holds, through a fresh descriptor
                temp_path = f"{path.rpartition('/')[0] or ''}/{upload.temp}"
                digest, written = await self._hash(temp_path)
            if expected is not None and digest.hexdigest() != expected():
                raise TaskFailed(
                    DATA_LOSS,
                    f"{path}: the destination's SHA-256 {digest.hexdigest()} differs from the "
                    f"source's {expected()}",
                    path,
                )
            with task_errors():
                await self.files.upload_commit(upload, overwrite=True, mtime_ns=mtime_ns)
            committed = True
            return Written(written, digest.hexdigest())
        finally:
            fd.close()
            if not committed:
                await asyncio.shield(asyncio.ensure_future(self.files.upload_abort(upload)))

    async def _hash(self, path: str) -> tuple[Any, int]:
        with task_errors():
            fd = Descriptor(await self.files.open_file(path, f"verifying {path}"))
        digest = hashlib.sha256()
        size = 0
        try:
            while True:
                data = await asyncio.to_thread(
                    fd.run, lambda n, at=size: read_exactly(n, HASH_BLOCK, at)
                )
                if not data:
                    return digest, size
                await asyncio.to_thread(digest.update, data)
                size += len(data)
        except OSError as e:
            raise TaskFailed.from_os_error(e, f"verifying {path}") from None
        finally:
            fd.close()

    # -- batches of small files ------------------------------------------------------------

    async def read_files(self, root: str, items: list[Item]) -> tuple[list[FileData], str | None]:
        with task_errors():
            answer = await self.files.read_files(root, [{"rel": i.rel} for i in items])
        files = [
            FileData(f["rel"], base64.b64decode(f["data"]), f["sha256"]) for f in answer["files"]
        ]
        failed = answer.get("failed")
        return files, failed["rel"] if failed else None

    async def write_files(
        self, root: str, files: list[tuple[Item, FileData]], *, preserve: bool, verify: bool
    ) -> BatchOutcome:
        self._written_in = root
        batch = [
            _batch_item(item, preserve)
            | {"data": base64.b64encode(data.data).decode(), "sha256": data.sha256}
            for item, data in files
        ]
        with task_errors():
            answer = await self.files.write_files(root, batch, verify=verify)
        return _outcome(answer)

    def copies_directly_from(self, source: Endpoint) -> bool:
        """Whether `copy_files_from` can copy from `source`: the same user's worker does
        both ends, within the same allowed roots."""
        return (
            isinstance(source, LocalEndpoint)
            and source.files.identity == self.files.identity
            and source.files.roots == self.files.roots
        )

    async def copy_files_from(
        self,
        source_root: str,
        root: str,
        items: list[Item],
        *,
        preserve: bool,
        verify: bool,
        lane: int = 0,
    ) -> BatchOutcome:
        """Copies small files (see `copies_directly_from`) without their bytes passing
        through this process: one request for the whole batch, to the user's worker
        process `lane` (two lanes copy two batches at once, on two cores)."""
        self._written_in = root
        batch = [_batch_item(item, preserve) for item in items]
        with task_errors():
            answer = await self.files.copy_files(source_root, root, batch, verify=verify, lane=lane)
        return _outcome(answer)

    async def make_directory(self, path: str, mode: int | None) -> bool:
        try:
            await self.files.mkdir(path, parents=False, mode=0o755 if mode is None else mode)
            return True
        except DomainError as e:
            if e.code.name == "ALREADY_EXISTS":
                existing = await self.describe(path)
                if existing is not None and existing.kind == "dir":
                    return False
            raise TaskFailed(int(e.code), e.message, path) from None

    async def make_symlink(self, target: str, path: str) -> None:
        with task_errors():
            await self.files.remove(path, recursive=False, allow_missing=True)
            await self.files.symlink(target, path)

    async def set_attributes(self, path: str, mode: int | None, mtime_ns: int | None) -> None:
        with task_errors():
            if mode is not None:
                await self.files.chmod(path, mode)
            if mtime_ns is not None:
                await self.files.utime(path, mtime_ns)

    async def remove(self, path: str, *, directory: bool) -> bool:
        try:
            await self.files.remove(path, recursive=False, allow_missing=True)
            return True
        except DomainError as e:
            if directory and e.code.name == "FAILED_PRECONDITION":
                return False  # not empty: something appeared that was not transferred
            raise TaskFailed(int(e.code), e.message, path) from None

    async def rename(self, source: str, destination: str) -> bool:
        """rename(2) without copying; False when the two are on different filesystems."""
        try:
            await self.files.rename_only(source, destination)
            return True
        except DomainError as e:
            if "cross-device" in e.message.lower():
                return False
            raise TaskFailed(int(e.code), e.message, source) from None

    async def flush(self) -> None:
        """syncfs of the filesystem written to since the last flush (one call for all the
        files, instead of an fsync each)."""
        path, self._written_in = self._written_in, ""
        if path:
            with task_errors():
                await self.files.syncfs(path)

    async def close(self) -> None:
        return None
