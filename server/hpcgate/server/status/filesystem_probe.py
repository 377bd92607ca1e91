"""A filesystem check that cannot hang the server on a dead mount.

statvfs() and a directory read on a dead NFS or Lustre mount can block forever, in
uninterruptible sleep. Running them in a thread would leak a thread per attempt; we run
them in a short-lived child process instead, with a deadline, and never start a second
check of a mount while the first is still stuck.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
import time
from dataclasses import dataclass

# Runs in the child: statvfs for the figures, one directory entry for the access check,
# and the type of the mount holding the path (longest mount point in /proc/self/mounts).
_CHECK = """
import json, os, sys
p = sys.argv[1]
st = os.statvfs(p)
with os.scandir(p) as it:
    next(it, None)
fstype, best, real = "", -1, os.path.realpath(p)
try:
    with open("/proc/self/mounts") as f:
        for line in f:
            parts = line.split()
            if len(parts) < 3:
                continue
            mnt = parts[1].replace(chr(92) + "040", " ")
            if (real == mnt or real.startswith(mnt.rstrip("/") + "/")) and len(mnt) > best:
                best, fstype = len(mnt), parts[2]
except OSError:
    pass
print(json.dumps({"total": st.f_blocks * st.f_frsize, "free": st.f_bfree * st.f_frsize,
                  "avail": st.f_bavail * st.f_frsize, "files": st.f_files,
                  "ffree": st.f_ffree, "favail": st.f_favail,
                  "ro": bool(st.f_flag & os.ST_RDONLY), "type": fstype}))
"""


@dataclass(frozen=True)
class FilesystemReading:
    ok: bool
    error: str = ""
    total_bytes: int = 0
    used_bytes: int = 0
    available_bytes: int = 0
    latency: float = 0.0
    total_inodes: int = 0
    used_inodes: int = 0
    available_inodes: int = 0
    read_only: bool = False
    fs_type: str = ""


class FilesystemProbe:
    """Checks one path; remembers a stuck check so it is not started twice."""

    def __init__(self, path: str, timeout: float) -> None:
        self.path = path
        self.timeout = timeout
        self._stuck: asyncio.subprocess.Process | None = None
        self._stuck_since = 0.0

    async def check(self) -> FilesystemReading:
        if self._stuck is not None:
            if self._stuck.returncode is None:
                waited = time.monotonic() - self._stuck_since
                return FilesystemReading(
                    ok=False, error=f"{self.path} has not answered for {waited:.0f} s"
                )
            self._stuck = None
        started = time.monotonic()
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-I",
            "-c",
            _CHECK,
            self.path,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        try:
            out, err = await asyncio.wait_for(proc.communicate(), self.timeout)
        except asyncio.CancelledError:
            await _end(proc)  # the prober stops: the child must not outlive it
            raise
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):  # it may have just exited
                proc.kill()
            self._stuck, self._stuck_since = proc, started
            return FilesystemReading(
                ok=False, error=f"{self.path} did not answer within {self.timeout:g} s"
            )
        latency = time.monotonic() - started
        if proc.returncode != 0:
            lines = err.decode(errors="replace").strip().splitlines()
            message = lines[-1] if lines else f"check exited with {proc.returncode}"
            return FilesystemReading(ok=False, error=f"{self.path}: {message}", latency=latency)
        figures = json.loads(out)
        total, free, avail = figures["total"], figures["free"], figures["avail"]
        return FilesystemReading(
            ok=True,
            total_bytes=total,
            used_bytes=total - free,
            available_bytes=avail,
            latency=latency,
            total_inodes=figures["files"],
            used_inodes=figures["files"] - figures["ffree"],
            available_inodes=figures["favail"],
            read_only=figures["ro"],
            fs_type=figures["type"],
        )


async def _end(proc: asyncio.subprocess.Process) -> None:
    """Kill a child and reap it (briefly: one stuck on a dead mount cannot be reaped), so
    its transport is closed while the event loop still runs."""
    with contextlib.suppress(ProcessLookupError):
        proc.kill()
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(proc.wait(), 1.0)
