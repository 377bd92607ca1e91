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
