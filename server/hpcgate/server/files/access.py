"""File operations as the caller: typed calls to their privsep worker, confined to roots.

Every method runs in the caller's worker process (their uid, gid and groups), so the
kernel makes each permission decision; `roots` (the system's allowed_roots expanded for
the caller) are checked by the worker on resolved descriptors. Failures come back as
DomainErrors with canonical codes (files/errors.py).
"""

from __future__ import annotations

import contextlib
import errno
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from hpcgate.server import privsep
from hpcgate.server.config import FilesConfig, SystemConfig
from hpcgate.server.errors import Code, DomainError
from hpcgate.server.files.errors import file_error


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

    async def call(
        self,
        op: str,
        args: Mapping[str, Any],
        what: str,
        *,
        idempotent: bool = True,
        overrides: Mapping[int, Code] | None = None,
        long: bool = False,
    ) -> tuple[dict[str, Any], list[int]]:
        try:
            worker = await self.users.worker(self.identity)
            return await worker.call(
                op,
                {**args, "roots": self.roots},
                idempotent=idempotent,
                deadline=self.limits.operation_timeout if long else None,
            )
        except (OSError, privsep.PrivsepError) as exc:
            raise file_error(exc, what, overrides) from None

    async def entry(self, path: str, *, follow: bool, what: str) -> dict[str, Any]:
        result, _ = await self.call("entry", {"path": path, "follow_symlinks": follow}, what)
        return result

    async def list_page(
        self, path: str, *, show_hidden: bool, follow: bool, after: str | None, limit: int
    ) -> tuple[list[dict[str, Any]], bool]:
        args = {
            "path": path,
            "show_hidden": show_hidden,
            "follow_symlinks": follow,
            "after": after,
            "limit": limit,
        }
        result, _ = await self.call("list", args, f"listing {path}", long=True)
        return list(result["entries"]), bool(result["more"])

    async def mkdir(self, path: str, *, parents: bool, mode: int) -> dict[str, Any]:
        args = {"path": path, "parents": parents, "mode": mode}
        result, _ = await self.call("mkdir", args, f"creating {path}", idempotent=False)
        return result

    async def rename(self, source: str, destination: str, *, overwrite: bool) -> dict[str, Any]:
        args = {
            "source": source,
            "destination": destination,
            "overwrite": overwrite,
            "max_bytes": self.limits.copy_max_bytes,
            "max_files": self.limits.copy_max_files,
        }
        result, _ = await self.call(
            "rename",
            args,
            f"moving {source} to {destination}",
            idempotent=False,
            overrides=_MOVE_CODES,
            long=True,
        )
        return result

    async def copy(
        self, source: str, destination: str, *, recursive: bool, overwrite: bool, preserve: bool
    ) -> dict[str, Any]:
        args = {
            "source": source,
            "destination": destination,
            "recursive": recursive,
            "overwrite": overwrite,
            "preserve": preserve,
            "max_bytes": self.limits.copy_max_bytes,
            "max_files": self.limits.copy_max_files,
        }
        result, _ = await self.call(
            "copy", args, f"copying {source} to {destination}", idempotent=False, long=True
        )
        return result

    async def remove(self, path: str, *, recursive: bool, allow_missing: bool) -> None:
        args = {"path": path, "recursive": recursive, "allow_missing": allow_missing}
        await self.call("remove", args, f"removing {path}", idempotent=False, long=True)

    async def chmod(self, path: str, mode: int) -> dict[str, Any]:
        result, _ = await self.call("chmod", {"path": path, "mode": mode}, f"chmod {path}")
        return result

    async def symlink(self, target: str, link_path: str) -> dict[str, Any]:
        args = {"path": link_path, "target": target}
        result, _ = await self.call(
            "symlink", args, f"creating the link {link_path}", idempotent=False
        )
        return result

    async def open_file(self, path: str, what: str) -> int:
        """A read-only descriptor of a regular file (the caller must close it)."""
        _, fds = await self.call("open_file", {"path": path}, what)
        if len(fds) != 1:
            for fd in fds:
                _close(fd)
            raise DomainError(Code.INTERNAL, f"{what}: the worker sent no descriptor")
        return fds[0]

    async def upload_begin(self, path: str, *, overwrite: bool, mode: int | None) -> Upload:
        args = {"path": path, "overwrite": overwrite, "mode": mode}
        result, fds = await self.call("upload_begin", args, f"uploading {path}", idempotent=False)
        if len(fds) != 1:
            for fd in fds:
                _close(fd)
            raise DomainError(Code.INTERNAL, f"uploading {path}: no descriptor")
        return Upload(path, str(result["temp"]), int(result["mode"]), fds[0])

    async def upload_commit(
        self, upload: Upload, *, overwrite: bool, mtime_ns: int | None = None
    ) -> dict[str, Any]:
        args = {
            "path": upload.path,
            "temp": upload.temp,
            "mode": upload.mode,
            "overwrite": overwrite,
            "mtime_ns": mtime_ns,
        }
        result, _ = await self.call(
            "upload_commit", args, f"uploading {upload.path}", idempotent=False
        )
        return result

    async def upload_abort(self, upload: Upload) -> None:
        """Removes the temporary file; never raises (called on failure paths)."""
        with contextlib.suppress(OSError, privsep.PrivsepError):
            worker = await self.users.worker(self.identity)
            await worker.call("upload_abort", {"path": upload.path, "temp": upload.temp})


# rename(2)'s EINVAL means "a directory into itself"; EISDIR/ENOTDIR a type clash.
_MOVE_CODES = {errno.EINVAL: Code.FAILED_PRECONDITION}


def _close(fd: int) -> None:
    with contextlib.suppress(OSError):
        os.close(fd)
