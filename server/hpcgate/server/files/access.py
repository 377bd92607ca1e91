"""File operations as the caller: typed calls to their privsep worker, confined to roots.

Every method runs in the caller's worker process (their uid, gid and groups), so the
kernel makes each permission decision; `roots` (the system's allowed_roots expanded for
the caller) are checked by the worker on resolved descriptors. Failures come back as
DomainErrors with canonical codes (files/errors.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
from collections.abc import AsyncIterator, Coroutine, Mapping
from dataclasses import dataclass
from typing import Any

from hpcgate.server import privsep
from hpcgate.server.config import FilesConfig, SystemConfig
from hpcgate.server.errors import Code
from hpcgate.server.files.errors import file_error
from hpcgate.server.privsep.replies import BatchRead, BatchWritten, Copied, Described, WalkPage


def expand_roots(templates: tuple[str, ...], identity: privsep.UserIdentity) -> list[str] | None:
    """The system's allowed roots for this caller; None when the system sets none."""
    if not templates:
        return None
    roots = []
    for template in templates:
        root = template.replace("{user}", identity.name)
        if root == "~" or root.startswith("~/"):
            root = identity.home.rstrip("/") + root[1:]
        roots.append(root)
    return roots


@dataclass
class Upload:
    """A temporary file being filled: the descriptor is the server's to write and close."""

    path: str
    temp: str
    mode: int
    fd: int


class FileAccess:
    """One caller's view of one system's files."""

    def __init__(
        self,
        users: privsep.PrivilegeSeparation,
        identity: privsep.UserIdentity,
        system: SystemConfig,
        limits: FilesConfig,
    ) -> None:
        self.users = users
        self.identity = identity
        self.roots = expand_roots(system.allowed_roots, identity)
        self.limits = limits

    @contextlib.asynccontextmanager
    async def _worker(
        self, what: str, overrides: Mapping[int, Code] | None = None, lane: int = 0
    ) -> AsyncIterator[privsep.UserWorker]:
        """The caller's worker (`lane`: which of its processes, see PrivilegeSeparation);
        its failures become canonical errors about `what`."""
        try:
            yield await self.users.worker(self.identity, lane)
        except (OSError, privsep.PrivsepError) as exc:
            raise file_error(exc, what, overrides) from None

    @property
    def _long(self) -> float:
        return self.limits.operation_timeout

    async def entry(self, path: str, *, follow: bool, what: str) -> Described:
        async with self._worker(what) as worker:
            return await worker.entry(path, follow=follow, roots=self.roots)

    async def list_page(
        self, path: str, *, show_hidden: bool, follow: bool, after: str | None, limit: int
    ) -> tuple[list[Described], bool]:
        async with self._worker(f"listing {path}") as worker:
            page = await worker.list_page(
                path, show_hidden=show_hidden, follow=follow, after=after, limit=limit,
                roots=self.roots, deadline=self._long,
            )  # fmt: skip
        return page["entries"], page["more"]

    async def mkdir(self, path: str, *, parents: bool, mode: int) -> Described:
        async with self._worker(f"creating {path}") as worker:
            return await worker.mkdir(path, parents=parents, mode=mode, roots=self.roots)

    async def rename(self, source: str, destination: str, *, overwrite: bool) -> Described:
        async with self._worker(f"moving {source} to {destination}", _MOVE_CODES) as worker:
            return await worker.rename(
                source, destination, overwrite=overwrite, roots=self.roots,
                max_bytes=self.limits.copy_max_bytes, max_files=self.limits.copy_max_files,
                deadline=self._long,
            )  # fmt: skip

    async def rename_only(self, source: str, destination: str) -> Described:
        """rename(2) and nothing else: EXDEV (FAILED_PRECONDITION) across filesystems."""
        async with self._worker(f"moving {source} to {destination}") as worker:
            return await worker.rename(
                source, destination, overwrite=False, roots=self.roots, no_copy=True
            )

    async def copy(
        self, source: str, destination: str, *, recursive: bool, overwrite: bool, preserve: bool
    ) -> Copied:
        async with self._worker(f"copying {source} to {destination}") as worker:
            return await worker.copy(
                source, destination, recursive=recursive, overwrite=overwrite,
                preserve=preserve, max_bytes=self.limits.copy_max_bytes,
                max_files=self.limits.copy_max_files, roots=self.roots, deadline=self._long,
            )  # fmt: skip

    async def remove(self, path: str, *, recursive: bool, allow_missing: bool) -> None:
        async with self._worker(f"removing {path}") as worker:
            await worker.remove(
                path, recursive=recursive, allow_missing=allow_missing, roots=self.roots,
                deadline=self._long,
            )  # fmt: skip

    async def chmod(self, path: str, mode: int) -> Described:
        async with self._worker(f"chmod {path}") as worker:
            return await worker.chmod(path, mode, roots=self.roots)

    async def symlink(self, target: str, link_path: str) -> Described:
        async with self._worker(f"creating the link {link_path}") as worker:
            return await worker.symlink(target, link_path, roots=self.roots)

    async def utime(self, path: str, mtime_ns: int) -> None:
        async with self._worker(f"setting the time of {path}") as worker:
            await worker.utime(path, mtime_ns, roots=self.roots)

    async def syncfs(self, path: str) -> None:
        async with self._worker(f"flushing {path}") as worker:
            await worker.syncfs(path, roots=self.roots, deadline=self._long)

    async def copy_files(
        self,
        source: str,
        destination: str,
        items: list[dict[str, Any]],
        *,
        verify: bool,
        lane: int = 0,
    ) -> BatchWritten:
        """Copies a batch of small regular files between two trees (worker.op_copy_files),
        in the user's worker process `lane` (batches in different lanes run in parallel)."""
        what = f"copying files from {source} to {destination}"
        async with self._worker(what, lane=lane) as worker:
            return await worker.copy_files(
                source, destination, items, verify=verify, roots=self.roots, deadline=self._long
            )

    async def read_files(self, path: str, items: list[dict[str, Any]]) -> BatchRead:
        """Contents of a batch of small regular files below `path` (worker.op_read_files)."""
        async with self._worker(f"reading files below {path}") as worker:
            return await worker.read_files(path, items, roots=self.roots, deadline=self._long)

    async def write_files(
        self, path: str, items: list[dict[str, Any]], *, verify: bool
    ) -> BatchWritten:
        """Writes a batch of small files below `path` (worker.op_write_files)."""
        async with self._worker(f"writing files below {path}") as worker:
            return await worker.write_files(
                path, items, verify=verify, roots=self.roots, deadline=self._long
            )

    async def walk_page(self, path: str, *, after: str, limit: int) -> WalkPage:
        async with self._worker(f"listing {path}") as worker:
            return await worker.walk(
                path, after=after, limit=limit, roots=self.roots, deadline=self._long
            )

    async def open_file(self, path: str, what: str) -> int:
        """A read-only descriptor of a regular file (the caller must close it)."""
        async with self._worker(what) as worker:
            return await worker.open_file(path, roots=self.roots)

    async def upload_begin(self, path: str, *, overwrite: bool, mode: int | None) -> Upload:
        """A new temporary file beside `path`, or nothing at all: a caller cancelled while
        the worker creates the file (a client that gave up early) does not leave it behind.

        Once the request is sent the worker creates the file whatever happens here, and the
        name only comes back in its answer. So the request runs in a task of its own that a
        cancellation does not stop; a cancelled caller waits for that answer, closes the
        descriptor and removes the file, and only then is cancelled (when the RPC handler
        has ended, nothing is left)."""
        begin = asyncio.ensure_future(self._upload_begin(path, overwrite=overwrite, mode=mode))
        try:
            return await asyncio.shield(begin)
        except asyncio.CancelledError:
            await run_to_the_end(self._discard(begin))
            raise

    async def _upload_begin(self, path: str, *, overwrite: bool, mode: int | None) -> Upload:
        async with self._worker(f"uploading {path}") as worker:
            begun, fd = await worker.upload_begin(
                path, overwrite=overwrite, mode=mode, roots=self.roots
            )
        return Upload(path, begun["temp"], begun["mode"], fd)

    async def _discard(self, begin: asyncio.Future[Upload]) -> None:
        """Removes the temporary file of an upload_begin whose caller is gone."""
        try:
            upload = await begin
        except Exception:  # refused or failed: the worker answered that it made no file
            return
        _close(upload.fd)
        await self.upload_abort(upload)

    async def upload_commit(
        self, upload: Upload, *, overwrite: bool, mtime_ns: int | None = None
    ) -> Described:
        async with self._worker(f"uploading {upload.path}") as worker:
            return await worker.upload_commit(
                upload.path, upload.temp, mode=upload.mode, overwrite=overwrite,
                mtime_ns=mtime_ns, roots=self.roots,
            )  # fmt: skip

    async def upload_reopen(self, path: str, temp: str, mode: int) -> tuple[Upload, int]:
        """The kept temporary file of a resumable upload, read-write, and its size."""
        async with self._worker(f"resuming the upload of {path}") as worker:
            size, fd = await worker.upload_reopen(path, temp, roots=self.roots)
        return Upload(path, temp, mode, fd), size

    async def upload_remove(self, path: str, temp: str) -> None:
        """Removes the temporary file `temp` beside `path` (an expired partial upload)."""
        async with self._worker(f"removing the partial upload of {path}") as worker:
            await worker.upload_abort(path, temp)

    async def upload_abort(self, upload: Upload) -> None:
        """Removes the temporary file; never raises (called on failure paths)."""
        with contextlib.suppress(OSError, privsep.PrivsepError):
            worker = await self.users.worker(self.identity)
            await worker.upload_abort(upload.path, upload.temp)


# rename(2)'s EINVAL means "a directory into itself"; EISDIR/ENOTDIR a type clash.
_MOVE_CODES = {errno.EINVAL: Code.FAILED_PRECONDITION}


# Cleanups under way (a reference, so that none is collected midway).
_CLEANUPS: set[asyncio.Task[None]] = set()


async def run_to_the_end(cleanup: Coroutine[Any, Any, None]) -> None:
    """Runs `cleanup` to its end and returns only then, even if the caller is cancelled
    meanwhile (once or again): a cancellation is raised after the cleanup is done, so a
    handler that has ended has left nothing behind."""
    task = asyncio.ensure_future(cleanup)
    _CLEANUPS.add(task)
    task.add_done_callback(_CLEANUPS.discard)
    cancelled: asyncio.CancelledError | None = None
    while not task.done():
        try:
            await asyncio.shield(task)
        except asyncio.CancelledError as e:
            if task.cancelled():  # the cleanup itself was cancelled (the loop is closing)
                raise
            cancelled = e
    if cancelled is not None:
        raise cancelled


def _close(fd: int) -> None:
    with contextlib.suppress(OSError):
        os.close(fd)
