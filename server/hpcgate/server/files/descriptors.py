"""A descriptor shared between the event loop and worker threads, closed safely; and the
full-length pread/write loops used on such descriptors.

asyncio cannot stop a thread: when an RPC is cancelled, a pread/write may still be running
in `asyncio.to_thread`. Closing the number under it would let the kernel reuse it for an
unrelated file. `Descriptor.close()` therefore only marks it; the last thread using it
closes it.
"""

from __future__ import annotations

import errno
import os
import threading
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


class Descriptor:
    def __init__(self, fd: int) -> None:
        self._fd = fd
        self._lock = threading.Lock()
        self._users = 0
        self._closing = False
        self._closed = False

    def run(self, work: Callable[[int], T]) -> T:
        """Runs `work(fd)` (in a thread); the descriptor stays open until it returns."""
        with self._lock:
            if self._closing:
                raise OSError(errno.EBADF, "the file was closed")
            self._users += 1
        try:
            return work(self._fd)
        finally:
            with self._lock:
                self._users -= 1
            self._close_if_unused()

    def close(self) -> None:
        with self._lock:
            self._closing = True
        self._close_if_unused()

    def _close_if_unused(self) -> None:
        with self._lock:
            if not self._closing or self._users or self._closed:
                return
            self._closed = True
        os.close(self._fd)


def read_exactly(fd: int, size: int, offset: int) -> bytes:
    """Up to `size` bytes at `offset` (fewer only at the end of the file)."""
    parts, got = [], 0
    while got < size:
        data = os.pread(fd, size - got, offset + got)
        if not data:
            break
        parts.append(data)
        got += len(data)
    return b"".join(parts) if len(parts) != 1 else parts[0]


def write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]
