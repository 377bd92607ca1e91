"""Starting a user's worker process: the one step of privilege separation that needs root.

`WorkerLauncher` starts workers from this process. As root, the child execs util-linux
`setpriv --reuid --regid --groups`, which sets groups, gid and uid before it execs the
interpreter, so nothing the user controls ever runs with root's credentials. (Not
subprocess's user=/group= arguments: those force a real fork() of a multi-threaded gRPC
process, whose fork handlers crash the child; without them Python starts children with
vfork, which runs no handlers.) As anyone else it starts workers as its own user.

The launcher reads the worker's greeting (its credentials) and refuses a worker that does
not run exactly as the identity, then hands over the socket. Who holds the socket decides
the worker's life: the worker exits when it reads end-of-file. The launcher reaps the
process and logs what it wrote on stderr.

A gateway that is not root gets its workers from the spawner (`spawner.py`), a small root
process running a `WorkerLauncher`, through `SpawnerClient`; both are `Launcher`s.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import logging
import os
import shutil
import socket
import stat
import sys
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from hpcgate.server.privsep import worker as worker_program
from hpcgate.server.privsep.errors import PrivsepError, WorkerUnavailable
from hpcgate.server.privsep.identity import UserIdentity
from hpcgate.server.privsep.worker import HEADER, MAX_FRAME

log = logging.getLogger(__name__)

DEFAULT_PATH = "/usr/local/bin:/usr/bin:/bin"
# Interpreters tried for the worker when the server's own is not runnable by every user
# (e.g. a virtualenv under a 0700 home); any Python >= 3.10 runs worker.py.
FALLBACK_PYTHONS = ("/usr/bin/python3", "/usr/local/bin/python3")


@dataclass(frozen=True)
class WorkerCredentials:
    """What the worker process actually runs as (getresuid/getresgid/getgroups)."""

    uid: int
    euid: int
    suid: int
    gid: int
    egid: int
    sgid: int
    groups: tuple[int, ...]
    pid: int


def credentials(result: Mapping[str, Any]) -> WorkerCredentials:
    """The credentials in a worker's greeting or `whoami` answer."""
    return WorkerCredentials(
        uid=int(result["uid"]),
        euid=int(result["euid"]),
        suid=int(result["suid"]),
        gid=int(result["gid"]),
        egid=int(result["egid"]),
        sgid=int(result["sgid"]),
        groups=tuple(int(g) for g in result["groups"]),
        pid=int(result["pid"]),
    )


def check_credentials(identity: UserIdentity, creds: WorkerCredentials) -> None:
    """Defence in depth: a worker must run exactly as its identity, never as root."""
    uids = {creds.uid, creds.euid, creds.suid}
    ok = (
        uids == {identity.uid}
        and {creds.gid, creds.egid, creds.sgid} == {identity.gid}
        and set(creds.groups) == set(identity.groups)
    )
    if not ok or 0 in uids:
        raise WorkerUnavailable(f"the worker runs with unexpected credentials: {creds}")


@dataclass
class Launched:
    """A worker that greeted with the right credentials: its socket (now the caller's:
    closing it stops the worker) and a way to wait, at most some seconds, for its end."""

    sock: socket.socket
    pid: int
    credentials: WorkerCredentials
    ended: Callable[[float], Awaitable[None]]


class Launcher(Protocol):
    async def launch(self, identity: UserIdentity) -> Launched: ...


def user_env(identity: UserIdentity, path: str = DEFAULT_PATH) -> dict[str, str]:
    """The clean environment per-user processes start from; nothing is inherited."""
    return {
        "PATH": path,
        "HOME": identity.home,
        "USER": identity.name,
        "LOGNAME": identity.name,
        "LANG": "C.UTF-8",
    }


def _runnable_by_everyone(path: str) -> bool:
    """Whether `path` and every directory leading to it (as given and resolved) are o+x."""
    real = os.path.realpath(path)
    try:
        if not os.stat(real).st_mode & stat.S_IXOTH:
            return False
        for start in {os.path.dirname(os.path.abspath(path)), os.path.dirname(real)}:
            directory = start
            while True:
                if not os.stat(directory).st_mode & stat.S_IXOTH:
                    return False
                if directory == "/":
                    break
                directory = os.path.dirname(directory)
    except OSError:
        return False
    return True


def default_worker_python() -> str:
    """The server's interpreter if every user can run it, else a system python3."""
    for candidate in (sys.executable, *FALLBACK_PYTHONS):
        if candidate and _runnable_by_everyone(candidate):
            return candidate
    return sys.executable


async def read_frame(sock: socket.socket, within: float) -> dict[str, Any]:
    """One length-prefixed JSON object from a non-blocking socket (no descriptors)."""
    loop = asyncio.get_running_loop()

    async def exactly(size: int) -> bytes:
        data = bytearray()
        while len(data) < size:
            chunk = await loop.sock_recv(sock, size - len(data))
            if not chunk:
                raise WorkerUnavailable("the connection closed before a whole message came")
            data += chunk
        return bytes(data)

    async def frame() -> dict[str, Any]:
        (size,) = HEADER.unpack(await exactly(HEADER.size))
        if size > MAX_FRAME:
            raise WorkerUnavailable(f"a message of {size} bytes is too large")
        message = json.loads(await exactly(size))
        if not isinstance(message, dict):
            raise WorkerUnavailable("a message that is not a JSON object")
        return message

    try:
        return await asyncio.wait_for(frame(), within)
    except ValueError as exc:
        raise WorkerUnavailable(f"an unreadable message: {exc}") from None


class WorkerLauncher:
    """Starts workers from this process (as root: as any user; else as itself)."""

    def __init__(
        self,
        *,
        worker_python: str | None = None,
        worker_threads: int = 8,
        path: str = DEFAULT_PATH,
        umask: int = 0o022,
        start_timeout: float = 10.0,
    ) -> None:
        self.worker_python = worker_python or default_worker_python()
        self.worker_threads = worker_threads
        self.path = path
        self.umask = umask
        self.start_timeout = start_timeout
        # Sent to the interpreter on stdin: the user needs no access to the installation.
        self._source = Path(worker_program.__file__).read_bytes()
        self._watchers: set[asyncio.Task[None]] = set()

    def _drop(self, identity: UserIdentity) -> list[str]:
        """The argv prefix that becomes the user before exec (only as root)."""
        if os.geteuid() != 0:
            return []
        setpriv = shutil.which("setpriv", path="/usr/bin:/bin:/usr/sbin:/sbin")
        if setpriv is None:
            raise WorkerUnavailable("setpriv (util-linux) is needed to run work as users")
        groups = ",".join(str(g) for g in identity.groups) or str(identity.gid)
        return [setpriv, f"--reuid={identity.uid}", f"--regid={identity.gid}",
                f"--groups={groups}", "--"]  # fmt: skip

    async def launch(self, identity: UserIdentity) -> Launched:
        started = time.monotonic()
        parent, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            try:
                proc = await asyncio.create_subprocess_exec(
                    *self._drop(identity),
                    self.worker_python, "-I", "-S", "-",
                    str(child.fileno()), str(self.worker_threads),
                    stdin=asyncio.subprocess.PIPE,
                    stdout=asyncio.subprocess.DEVNULL,
                    stderr=asyncio.subprocess.PIPE,
                    pass_fds=(child.fileno(),),
                    cwd="/",
                    env=user_env(identity, self.path),
                    start_new_session=True,
                    umask=self.umask,
                )  # fmt: skip
            finally:
                child.close()
        except OSError as exc:
            parent.close()
            raise WorkerUnavailable(
                f"cannot start a worker for {identity.name} with {self.worker_python}: "
                f"{exc.strerror or exc} (set worker_python to an interpreter every user "
                "can run)"
            ) from exc
        parent.setblocking(False)
        stderr_tail: collections.deque[str] = collections.deque(maxlen=5)
        watcher = asyncio.create_task(self._watch(proc, identity.name, stderr_tail))
        self._watchers.add(watcher)
        watcher.add_done_callback(self._watchers.discard)

        async def ended(grace: float) -> None:
            try:
                await asyncio.wait_for(asyncio.shield(watcher), grace)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                await asyncio.shield(watcher)

        try:
            assert proc.stdin is not None
            proc.stdin.write(self._source)
            with contextlib.suppress(ConnectionError):
                await proc.stdin.drain()
            proc.stdin.close()
            hello = await read_frame(parent, self.start_timeout)
            creds = credentials(hello.get("result") or {})
            if os.geteuid() == 0:
                check_credentials(identity, creds)
            elif {creds.uid, creds.euid, creds.suid} != {os.geteuid()}:
                raise WorkerUnavailable(f"the worker runs with unexpected credentials: {creds}")
        except BaseException as exc:
            parent.close()
            await ended(1.0)
            if isinstance(exc, PrivsepError | TimeoutError | KeyError | ValueError | TypeError):
                detail = " | ".join(stderr_tail)
                raise WorkerUnavailable(
                    f"the worker for {identity.name} did not start: "
                    f"{str(exc) or type(exc).__name__}" + (f"; stderr: {detail}" if detail else "")
                ) from exc
            raise
        log.info(
            "privsep worker started",
            extra={
                "fields": {
                    "user": identity.name,
                    "pid": proc.pid,
                    "seconds": round(time.monotonic() - started, 4),
                }
            },
        )
        return Launched(parent, proc.pid, creds, ended)

    @staticmethod
    async def _watch(
        proc: asyncio.subprocess.Process, user: str, tail: collections.deque[str]
    ) -> None:
        """Logs the worker's stderr until it closes, then reaps the worker."""
        assert proc.stderr is not None
        try:
            async for line in proc.stderr:
                text = line.decode(errors="replace").rstrip()[:2000]
                tail.append(text)
                log.warning("privsep worker: %s", text,
                            extra={"fields": {"user": user, "pid": proc.pid}})  # fmt: skip
        except (ValueError, OSError):
            pass
        await proc.wait()
