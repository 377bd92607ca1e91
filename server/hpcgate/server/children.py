"""Waiting for child processes on the event loop, without a thread per child.

Python 3.11's default child watcher starts a thread for every subprocess and waits for
it to start: about 2 ms per sbatch on a busy 2-core machine (measured on SubmitJob).
This watcher waits on a pidfd registered with whichever loop started the child, as
Python 3.12+ does by itself; on those versions (or without pidfds) nothing is changed.
"""

from __future__ import annotations

import asyncio
import os
import sys
import warnings
from collections.abc import Callable
from typing import Any

# Child watchers are deprecated in 3.12 and gone in 3.14: the class exists only where
# it is used, so that importing this module works on every version.
if sys.version_info < (3, 12):

    class PidfdWatcher(asyncio.AbstractChildWatcher):
        """A child watcher bound to no loop: each child is watched by the running loop."""

        def add_child_handler(  # type: ignore[override]  # typeshed: a TypeVarTuple signature
            self, pid: int, callback: Callable[..., object], *args: Any
        ) -> None:
            loop = asyncio.get_running_loop()
            pidfd = os.pidfd_open(pid)
            loop.add_reader(pidfd, self._reap, loop, pid, pidfd, callback, args)

        @staticmethod
        def _reap(
            loop: asyncio.AbstractEventLoop,
            pid: int,
            pidfd: int,
            callback: Callable[..., object],
            args: tuple[Any, ...],
        ) -> None:
            loop.remove_reader(pidfd)
            os.close(pidfd)
            try:
                _, status = os.waitpid(pid, 0)
            except ChildProcessError:
                returncode = 255  # reaped elsewhere; what asyncio's own watchers report
            else:
                returncode = os.waitstatus_to_exitcode(status)
            callback(pid, returncode, *args)

        def remove_child_handler(self, pid: int) -> bool:
            return False  # asyncio calls this only for children it no longer waits for

        def attach_loop(self, loop: asyncio.AbstractEventLoop | None) -> None:
            pass

        def close(self) -> None:
            pass

        def is_active(self) -> bool:
            return True

        def __enter__(self) -> PidfdWatcher:
            return self

        def __exit__(self, *exc: object) -> None:
            pass


def install_pidfd_watcher() -> None:
    """Use PidfdWatcher for asyncio subprocesses (Python < 3.12 with pidfd_open only)."""
    if sys.version_info >= (3, 12) or not hasattr(os, "pidfd_open"):
        return
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        if not isinstance(asyncio.get_child_watcher(), PidfdWatcher):
            asyncio.set_child_watcher(PidfdWatcher())
