"""The shapes of the worker's answers to file operations (JSON on the wire), typed.

The worker (worker.py) builds them with plain dicts; the server side reads them only
through `UserWorker`'s typed methods, which return these.
"""

from __future__ import annotations

from typing import Literal, TypedDict


class StatFields(TypedDict):
    mode: int
    ino: int
    dev: int
    nlink: int
    uid: int
    gid: int
    size: int
    atime_ns: int
    mtime_ns: int
    ctime_ns: int


class Described(TypedDict):
    """One file system object as the user sees it (lstat unless followed)."""

    name: str
    path: str
    stat: StatFields
    link: str | None  # the symlink's target
    owner: str  # "" when the uid has no name
    group: str


class ListPage(TypedDict):
    entries: list[Described]
    more: bool


class Copied(TypedDict):
    bytes: int
    files: int
    entry: Described


class WalkItem(TypedDict, total=False):
    rel: str  # the path below the walked directory
    kind: Literal["file", "dir", "link"]
    size: int
    mode: int
    mtime_ns: int
    link: str


class WalkPage(TypedDict):
    items: list[WalkItem]
    more: bool


class UploadBegun(TypedDict):
    temp: str  # the temporary file's name beside the target
    mode: int  # the mode it gets when committed


class BatchFailure(TypedDict):
    """The file a batch stopped at, and why (an errno and the worker's message)."""

    rel: str
    errno: int
    message: str


class BatchFile(TypedDict):
    rel: str
    size: int
    sha256: str


class BatchWritten(TypedDict, total=False):
    """copy_files / write_files: the files now in place, in order, and where it stopped."""

    done: list[BatchFile]
    failed: BatchFailure


class FileContent(TypedDict):
    rel: str
    data: str  # base64
    sha256: str


class BatchRead(TypedDict, total=False):
    """read_files: contents in order, up to the worker's byte budget, and where it stopped."""

    files: list[FileContent]
    failed: BatchFailure
