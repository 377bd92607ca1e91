"""One end of a transfer: files on this gateway's systems, or on a peer hpcgate facility.

The engine (engine.py) only talks to this interface, so a tree moves the same way
between two local filesystems, from here to a peer, or from a peer to here. Every
method acts as one user: the caller locally (their privsep worker), or the peer's
service account remotely. Failures are raised as `TaskFailed` with a canonical code and
a message naming the path, so the engine can fail the task with a useful reason.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Literal, Protocol

ItemKind = Literal["file", "dir", "link"]


@dataclass(frozen=True)
class Item:
    """An entry of a tree, relative to the transfer's root ('' is the root itself)."""

    rel: str
    kind: ItemKind
    size: int = 0
    mode: int = 0o644  # permission bits
    mtime_ns: int = 0
    link: str = ""  # symlink target, verbatim


@dataclass(frozen=True)
class Written:
    """What the destination holds after `write_file`, as it measured it."""

    size: int
    sha256: str  # of the bytes written, re-read from the destination when verified


@dataclass(frozen=True)
class FileData:
    """A small file read whole, with the SHA-256 the source computed as it read it."""

    rel: str  # below the root it was read from
    data: bytes
    sha256: str


@dataclass(frozen=True)
class BatchOutcome:
    """What a batch of small files did: the files now in place (verified when asked), in
    order, and the file it stopped at, if any (the engine then handles that file alone)."""

    done: list[tuple[str, Written]]  # (rel, what the destination holds)
    stopped_at: str | None = None


class Endpoint(Protocol):
    label: str  # e.g. "local:/home/alice/data" or "site-b:/scratch/bob", for messages

    async def describe(self, path: str) -> Item | None:
        """The entry at `path` (rel = ''), symlinks followed; None when it does not exist."""
        ...

    def walk(self, path: str) -> AsyncIterator[Item]:
        """Every entry below the directory `path` (not the root itself), parents before
        children, siblings sorted by name; symlinks are reported, never followed."""
        ...

    def read_file(self, path: str, offset: int = 0) -> AsyncIterator[bytes]:
        """The content of a regular file from `offset`, in chunks."""
        ...

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
        """Writes a file atomically (temporary name, then rename, replacing any existing
        file); with `verify`, the content is read back at the destination and hashed.
        `expected()`, called once `chunks` is exhausted, gives the source's SHA-256: a
        local destination compares it *before* the rename (a mismatch raises TaskFailed
        DATA_LOSS and leaves nothing); a peer can only compare after its Upload has
        completed. If anything fails or the task is cancelled, nothing appears under
        `path` (locally; on a peer, its Upload guarantees the same)."""
        ...

    async def read_files(self, root: str, items: list[Item]) -> tuple[list[FileData], str | None]:
        """The contents of small regular files below `root`, in order, hashed as read; may
        return fewer than asked (a size budget) and the rel of a file that could not be
        read (second value), where the list stops."""
        ...

    async def write_files(
        self, root: str, files: list[tuple[Item, FileData]], *, preserve: bool, verify: bool
    ) -> BatchOutcome:
        """Writes small files below `root` (their directories exist), each atomically as
        `write_file` does, refusing a content whose SHA-256 is not the one given."""
        ...

    async def make_directory(self, path: str, mode: int | None) -> bool:
        """mkdir (parents must exist); True if created, False if it already was one."""
        ...

    async def make_symlink(self, target: str, path: str) -> None:
        """Creates (or replaces) a symlink."""
        ...

    async def set_attributes(self, path: str, mode: int | None, mtime_ns: int | None) -> None:
        """Applies permission bits and/or a modification time (directories, at the end)."""
        ...

    async def remove(self, path: str, *, directory: bool) -> bool:
        """Removes a file/symlink, or an empty directory; False if it was not empty."""
        ...

    async def flush(self) -> None:
        """Makes everything written so far durable (before a checkpoint or deleting sources)."""
        ...

    async def close(self) -> None:
        """Releases connections."""
        ...
