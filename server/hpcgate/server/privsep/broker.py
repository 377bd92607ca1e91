"""The server's side of privilege separation: per-user workers and commands run as the user.

Multi-user mode: the server gets each user's worker from the root spawner (`spawner.py`,
over a Unix socket; the gateway itself is unprivileged) or, when it runs as root itself,
starts it directly (`launcher.py`). Single-user mode (not root, no spawner): the server
acts only as itself and refuses every other identity.

A `UserWorker` is one long-lived worker process per identity (see `worker.py` for the
protocol). Requests are multiplexed by id over one Unix socket; descriptors the worker
opened come back with SCM_RIGHTS, so the server moves bytes at full speed on a descriptor
whose permission check the kernel made for the user. A dead worker is restarted on the next
call; an idle one is stopped after `idle_timeout`.

Commands (`spawn`, `run`) are started by the user's worker, which already is the user:
no privilege drop to exec, and no root process ever resolves the working directory.
"""

from __future__ import annotations

import asyncio
import base64
import collections
import contextlib
import errno
import json
import logging
import math
import os
import signal
import socket
import stat
import time
import uuid
from collections.abc import Awaitable, Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, cast

from hpcgate.server.privsep import worker as worker_program
from hpcgate.server.privsep.errors import (
    CommandTimeout,
    CommandWithheld,
    ForbiddenUser,
    PrivsepError,
    WorkerTimeout,
    WorkerUnavailable,
    os_error,
)
from hpcgate.server.privsep.identity import UserIdentity, lookup, lookup_uid_blocking
from hpcgate.server.privsep.launcher import (
    DEFAULT_PATH,
    Launched,
    Launcher,
    WorkerCredentials,
    WorkerLauncher,
    credentials,
    user_env,
)
from hpcgate.server.privsep.policy import Policy
from hpcgate.server.privsep.replies import (
    BatchRead,
    BatchWritten,
    Copied,
    Described,
    ListPage,
    UploadBegun,
    WalkPage,
)
from hpcgate.server.privsep.spawner import SpawnerClient
from hpcgate.server.privsep.worker import HEADER, MAX_FDS, MAX_FRAME

log = logging.getLogger(__name__)

Mode = Literal["multi-user", "single-user"]
Reply = tuple[dict[str, Any], list[int]]
Roots = list[str] | None  # allowed roots the worker checks resolved paths against


# Worker processes per user at most (see PrivilegeSeparation.worker).
MAX_LANES = 4


@dataclass(frozen=True)
class FileStat:
    """lstat()/stat() as seen by the user."""

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

    @property
    def is_dir(self) -> bool:
        return stat.S_ISDIR(self.mode)

    @property
    def is_file(self) -> bool:
        return stat.S_ISREG(self.mode)

    @property
    def is_symlink(self) -> bool:
        return stat.S_ISLNK(self.mode)


@dataclass(frozen=True)
class CommandOutput:
    returncode: int  # negative: killed by that signal
    stdout: bytes
    stderr: bytes


IDENTITY_CACHE_SIZE = 4096  # accounts whose lookup `identity` remembers

# Variables the dynamic loader and glibc act on (glibc's UNSECURE_ENVVARS without TMPDIR,
# plus every LD_*). They never come from a request: `spawn` and `run` refuse them, as
# they did when a root half of the privilege drop ran with the command's environment, so
# the same request behaves the same in every deployment.
LOADER_VARIABLES = frozenset(
    {
        "GCONV_PATH",
        "GETCONF_DIR",
        "GLIBC_TUNABLES",
        "HOSTALIASES",
        "LOCALDOMAIN",
        "LOCPATH",
        "MALLOC_TRACE",
        "NIS_PATH",
        "NLSPATH",
        "RESOLV_HOST_CONF",
        "RES_OPTIONS",
        "TZDIR",
    }
)


def is_loader_variable(name: str) -> bool:
    return name.startswith("LD_") or name in LOADER_VARIABLES


def _close_all(fds: Collection[int]) -> None:
    for fd in fds:
        with contextlib.suppress(OSError):
            os.close(fd)


class _Connection:
    """One running worker process and its socket; requests multiplexed by id.

    Reading is a reader callback on the non-blocking socket: frames are reassembled in
    `inbox`, received descriptors queue in `fds` in arrival order. The kernel attaches a
    reply's descriptors to the reply's first byte and never merges them into an earlier
    read, so the n descriptors a complete reply announces are the first n queued.
    """

    def __init__(self, launched: Launched, user: str) -> None:
        self.pid = launched.pid
        self.sock = sock = launched.sock
        self.ended = launched.ended
        self.user = user
        self.loop = asyncio.get_running_loop()
        self.fileno = sock.fileno()
        self.pending: dict[int, asyncio.Future[Reply]] = {}
        self.fds: collections.deque[int] = collections.deque()
        self.inbox = bytearray()
        self.outbox = bytearray()
        self.next_id = 1
        self.closed_reason: str | None = None
        self.loop.add_reader(self.fileno, self._on_readable)

    @property
    def alive(self) -> bool:
        return self.closed_reason is None

    async def request(self, op: str, args: Mapping[str, Any], within: float | None) -> Reply:
        """One request and its reply; `within` None waits as long as it takes."""
        if self.closed_reason is not None:
            raise WorkerUnavailable(self.closed_reason)
        rid, self.next_id = self.next_id, self.next_id + 1
        future: asyncio.Future[Reply] = self.loop.create_future()
        self.pending[rid] = future
        try:
            self._write(worker_program.encode({"id": rid, "op": op, "args": dict(args)}))
            if within is None:
                return await asyncio.shield(future)
            return await asyncio.wait_for(asyncio.shield(future), within)
        except BaseException:
            self.pending.pop(rid, None)
            if future.done() and not future.cancelled() and future.exception() is None:
                _close_all(future.result()[1])  # answered, but the caller is gone
            else:
                future.cancel()  # a late answer's descriptors get closed on arrival
            raise

    def _write(self, frame: bytes) -> None:
        if self.outbox:
            self.outbox += frame
            return
        try:
            sent = self.sock.send(frame)
        except (BlockingIOError, InterruptedError):
            sent = 0
        except OSError as exc:
            self.fail(f"the worker for {self.user} is gone ({exc.strerror or exc})")
            return
        if sent < len(frame):
            self.outbox += frame[sent:]
            self.loop.add_writer(self.fileno, self._on_writable)

    def _on_writable(self) -> None:
        try:
            sent = self.sock.send(self.outbox)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            self.fail(f"the worker for {self.user} is gone ({exc.strerror or exc})")
            return
        del self.outbox[:sent]
        if not self.outbox:
            self.loop.remove_writer(self.fileno)

    def _on_readable(self) -> None:
        for _ in range(64):  # then yield to the loop; the callback fires again
            try:
                data, fds, flags, _ = socket.recv_fds(
                    self.sock, 1 << 16, MAX_FDS, socket.MSG_CMSG_CLOEXEC
                )
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                self.fail(f"the worker for {self.user} is gone ({exc.strerror or exc})")
                return
            self.fds.extend(fds)
            if flags & socket.MSG_CTRUNC:
                self.fail("protocol error: descriptors were truncated")
                return
            if not data:
                self.fail(f"the worker for {self.user} exited")
                return
            self.inbox += data
            try:
                self._parse()
            except (ValueError, TypeError) as exc:
                self.fail(f"protocol error from the worker for {self.user}: {exc}")
                return
            if len(self.fds) > MAX_FDS:  # only a reply still being read may hold some
                self.fail(f"protocol error: the worker for {self.user} sent stray descriptors")
                return

    def _parse(self) -> None:
        while len(self.inbox) >= HEADER.size:
            (size,) = HEADER.unpack_from(self.inbox)
            if size > MAX_FRAME:
                raise ValueError(f"frame of {size} bytes")
            end = HEADER.size + size
            if len(self.inbox) < end:
                return
            message = json.loads(bytes(self.inbox[HEADER.size : end]))
            del self.inbox[:end]
            if not isinstance(message, dict) or not isinstance(message.get("id"), int):
                raise ValueError("a reply without an id")
            count = message.get("fds", 0)
            if not isinstance(count, int) or not 0 <= count <= len(self.fds):
                raise ValueError("descriptor count does not match")
            fds = [self.fds.popleft() for _ in range(count)]
            future = self.pending.pop(message["id"], None)
            if future is None or future.done():
                _close_all(fds)
            else:
                future.set_result((message, fds))

    def fail(self, reason: str) -> None:
        """Closes the socket and fails every request in flight; idempotent."""
        if self.closed_reason is not None:
            return
        self.closed_reason = reason
        self.loop.remove_reader(self.fileno)
        self.loop.remove_writer(self.fileno)
        self.sock.close()
        _close_all(self.fds)
        self.fds.clear()
        for future in self.pending.values():
            if not future.done():
                future.set_exception(WorkerUnavailable(reason))
                future.exception()  # retrieved: a failed greeting may have no waiter
        self.pending.clear()

    async def close(self, grace: float = 2.0) -> None:
        """Closes the socket (the worker exits on EOF); its end is awaited for `grace`
        seconds (then, if this process started it, it is killed)."""
        self.fail(f"the worker for {self.user} was stopped")
        await self.ended(grace)


class UserWorker:
    """A handle on one user's worker: stays valid across restarts and idle stops."""

    def __init__(self, owner: PrivilegeSeparation, identity: UserIdentity) -> None:
        self.identity = identity
        self._owner = owner
        self._conn: _Connection | None = None
        self._lock = asyncio.Lock()
        self._in_flight = 0
        self.last_used = time.monotonic()
        self.starts = 0

    @property
    def pid(self) -> int | None:
        """The worker process's pid while it runs, else None."""
        conn = self._conn
        return conn.pid if conn is not None and conn.alive else None

    def idle_for(self, now: float) -> float:
        if self._conn is None or self._in_flight:
            return 0.0
        return now - self.last_used

    async def _connection(self) -> _Connection:
        async with self._lock:
            conn = self._conn
            if conn is not None and conn.alive:
                return conn
            self._conn = None
            if conn is not None:
                log.warning(
                    "restarting the privsep worker",
                    extra={"fields": {"user": self.identity.name, "reason": conn.closed_reason}},
                )
                await conn.close(grace=1.0)  # reap the dead one
            self._conn = await self._owner._start(self.identity)
            self.starts += 1
            return self._conn

    async def stop(self, *, only_if_idle_for: float | None = None) -> None:
        async with self._lock:
            if self._conn is None:
                return
            idle = self.idle_for(time.monotonic())
            if only_if_idle_for is not None and (self._in_flight or idle < only_if_idle_for):
                return
            conn, self._conn = self._conn, None
            await conn.close()
            if only_if_idle_for is not None:
                log.info(
                    "privsep worker stopped (idle)",
                    extra={"fields": {"user": self.identity.name, "pid": conn.pid}},
                )

    async def call(
        self,
        op: str,
        args: Mapping[str, Any] | None = None,
        *,
        idempotent: bool = True,
        deadline: float | None = None,
    ) -> Reply:
        """One request; returns (result, descriptors) — the caller owns the descriptors.

        Raises an OSError for the worker's errno, WorkerTimeout, or WorkerUnavailable.
        An idempotent request is retried once on a freshly started worker if the worker
        died under it. `deadline` (seconds) overrides the default request deadline (long copies).
        """
        attempts = 2 if idempotent else 1
        timeout = deadline or self._owner.request_timeout
        within = None if math.isinf(timeout) else timeout
        for attempt in range(attempts):
            conn = await self._connection()
            self._in_flight += 1
            self.last_used = time.monotonic()
            try:
                message, fds = await conn.request(op, args or {}, within)
            except WorkerUnavailable:
                if attempt + 1 < attempts:
                    continue
                raise
            except TimeoutError:
                raise WorkerTimeout(
                    f"the worker for {self.identity.name} did not answer {op!r} "
                    f"within {timeout:g} s"
                ) from None
            finally:
                self._in_flight -= 1
                self.last_used = time.monotonic()
            if message.get("ok") is True and isinstance(message.get("result"), dict):
                return message["result"], fds
            _close_all(fds)
            error = message.get("error")
            error = error if isinstance(error, dict) else {}
            path = error.get("path")
            raise os_error(
                str(error.get("errno", "EIO")),
                str(error.get("message", "")),
                path if isinstance(path, str) else None,
            )
        raise AssertionError("unreachable")

    async def whoami(self) -> WorkerCredentials:
        result, _ = await self.call("whoami")
        return credentials(result)

    async def ping(self, delay: float = 0.0) -> None:
        await self.call("ping", {"delay": delay})

    async def open(
        self,
        path: str,
        flags: Collection[str] = ("read",),
        mode: int = 0o666,
        *,
        no_symlinks: bool = False,
    ) -> int:
        """Opens `path` as the user and returns the descriptor (O_CLOEXEC; the caller
        closes it).

        `flags` among read, write, create, exclusive, truncate, append, directory. A
        symlink as the final component fails with ELOOP; with `no_symlinks`, a symlink
        anywhere in the path does. Only regular files and directories are opened.
        """
        args = {"path": path, "flags": list(flags), "mode": mode, "no_symlinks": no_symlinks}
        _, fds = await self.call("open", args, idempotent="exclusive" not in flags)
        fd = _single(fds)
        # Not trusting the worker with this: a compromised one could send any descriptor
        # the user can get, e.g. a FIFO or a device the server would then block on.
        kind = stat.S_IFMT(os.fstat(fd).st_mode)
        if kind not in (stat.S_IFREG, stat.S_IFDIR):
            os.close(fd)
            raise WorkerUnavailable(
                f"protocol error: the worker sent a descriptor of type {kind:o}"
            )
        return fd

    async def stat(self, path: str, *, follow_symlinks: bool = False) -> FileStat:
        result, _ = await self.call("stat", {"path": path, "follow_symlinks": follow_symlinks})
        return FileStat(**{name: int(result[name]) for name in FileStat.__dataclass_fields__})

    async def kill_group(self, pgid: int, signum: int = signal.SIGKILL) -> None:
        """Signals a process group as the user (ProcessLookupError if it is gone)."""
        await self.call("killpg", {"pgid": pgid, "signal": int(signum)})

    async def run(
        self,
        argv: Sequence[str],
        *,
        cwd: str | None,
        env: Mapping[str, str],
        input: bytes,
        time_limit: float,
        umask: int = -1,
        gate: Awaitable[bool] | None = None,
    ) -> CommandOutput:
        """Runs a short command to completion in the worker (see `PrivilegeSeparation.run`).

        Never retried (a submission must not run twice); if the awaiting task is cancelled,
        the command's process group is killed."""
        tag = uuid.uuid4().hex
        args = {"argv": list(argv), "cwd": cwd, "env": dict(env), "tag": tag, "umask": umask,
                "input": base64.b64encode(input).decode(), "timeout": time_limit,
                "gated": gate is not None}  # fmt: skip
        running = asyncio.ensure_future(
            self.call("run", args, idempotent=False, deadline=time_limit + 10)
        )
        try:
            if gate is not None:
                go = False
                try:
                    go = await self._decision(gate, running)
                finally:
                    if not go:  # its answer (ECANCELED) is of no interest
                        running.add_done_callback(lambda f: f.cancelled() or f.exception())
                    await asyncio.shield(self.call("run_release", {"tag": tag, "go": go}))
                if not go:
                    raise CommandWithheld(f"`{argv[0]}` was not let go; it was killed unfed")
            result, _ = await running
        except asyncio.CancelledError:
            with contextlib.suppress(PrivsepError, OSError, TimeoutError):
                await asyncio.shield(self.call("run_kill", {"tag": tag}))
            raise
        except OSError as e:
            if e.errno == errno.ETIME:
                raise CommandTimeout(
                    f"`{argv[0]}` as {self.identity.name} did not finish within {time_limit:g} s"
                ) from None
            raise
        decode = base64.b64decode
        return CommandOutput(
            int(result["returncode"]), decode(result["stdout"]), decode(result["stderr"])
        )

    @staticmethod
    async def _decision(gate: Awaitable[bool], running: asyncio.Future[Reply]) -> bool:
        """The gate's answer; or, when the run ends first (the worker died, the directory
        was refused), that run's error, and the gate is no longer waited for."""
        deciding = asyncio.ensure_future(gate)
        either: set[asyncio.Future[Any]] = {deciding, running}
        try:
            await asyncio.wait(either, return_when=asyncio.FIRST_COMPLETED)
        except BaseException:
            deciding.cancel()
            raise
        if deciding.done():
            return deciding.result()
        deciding.cancel()
        await running  # raises what ended it
        raise WorkerUnavailable("protocol error: a gated run ended before it was let go")

    async def directory(self, path: str) -> int:
        """An O_PATH descriptor of a directory the user can search (for a command's cwd)."""
        _, fds = await self.call("cwd", {"path": path})
        return _single(fds)

    # -- file operations (see worker.py for what each does; `roots` confine them) ---------

    async def _file_op(
        self, op: str, args: Mapping[str, Any], *, idempotent: bool = True,
        deadline: float | None = None,
    ) -> dict[str, Any]:  # fmt: skip
        result, fds = await self.call(op, args, idempotent=idempotent, deadline=deadline)
        _close_all(fds)
        return result

    async def _file_fd(self, op: str, args: Mapping[str, Any], *, idempotent: bool) -> Reply:
        result, fds = await self.call(op, args, idempotent=idempotent)
        return result, [_single(fds)]

    async def entry(self, path: str, *, follow: bool, roots: Roots) -> Described:
        args = {"path": path, "follow_symlinks": follow, "roots": roots}
        return cast(Described, await self._file_op("entry", args))

    async def list_page(
        self, path: str, *, show_hidden: bool, follow: bool, after: str | None, limit: int,
        roots: Roots, deadline: float | None = None,
    ) -> ListPage:  # fmt: skip
        args = {"path": path, "show_hidden": show_hidden, "follow_symlinks": follow,
                "after": after, "limit": limit, "roots": roots}  # fmt: skip
        return cast(ListPage, await self._file_op("list", args, deadline=deadline))

    async def mkdir(self, path: str, *, parents: bool, mode: int, roots: Roots) -> Described:
        args = {"path": path, "parents": parents, "mode": mode, "roots": roots}
        return cast(Described, await self._file_op("mkdir", args, idempotent=False))

    async def rename(
        self, source: str, destination: str, *, overwrite: bool, roots: Roots,
        max_bytes: int | None = None, max_files: int | None = None, no_copy: bool = False,
        deadline: float | None = None,
    ) -> Described:  # fmt: skip
        """rename(2), or across filesystems a bounded copy and delete (not with no_copy:
        then EXDEV)."""
        args: dict[str, Any] = {
            "source": source, "destination": destination, "overwrite": overwrite,
            "no_copy": no_copy, "roots": roots,
        }  # fmt: skip
        if max_bytes is not None:
            args |= {"max_bytes": max_bytes, "max_files": max_files}
        result = await self._file_op("rename", args, idempotent=False, deadline=deadline)
        return cast(Described, result)

    async def copy(
        self, source: str, destination: str, *, recursive: bool, overwrite: bool,
        preserve: bool, max_bytes: int, max_files: int, roots: Roots,
        deadline: float | None = None,
    ) -> Copied:  # fmt: skip
        args = {"source": source, "destination": destination, "recursive": recursive,
                "overwrite": overwrite, "preserve": preserve, "max_bytes": max_bytes,
                "max_files": max_files, "roots": roots}  # fmt: skip
        return cast(Copied, await self._file_op("copy", args, idempotent=False, deadline=deadline))

    async def remove(
        self, path: str, *, recursive: bool, allow_missing: bool, roots: Roots,
        deadline: float | None = None,
    ) -> None:  # fmt: skip
        args = {"path": path, "recursive": recursive, "allow_missing": allow_missing,
                "roots": roots}  # fmt: skip
        await self._file_op("remove", args, idempotent=False, deadline=deadline)

    async def chmod(self, path: str, mode: int, *, roots: Roots) -> Described:
        args = {"path": path, "mode": mode, "roots": roots}
        return cast(Described, await self._file_op("chmod", args))

    async def symlink(self, target: str, link_path: str, *, roots: Roots) -> Described:
        args = {"path": link_path, "target": target, "roots": roots}
        return cast(Described, await self._file_op("symlink", args, idempotent=False))

    async def open_file(self, path: str, *, roots: Roots = None) -> int:
        """A read-only descriptor of a regular file (the caller closes it)."""
        _, fds = await self._file_fd("open_file", {"path": path, "roots": roots}, idempotent=True)
        return fds[0]

    async def upload_begin(
        self, path: str, *, overwrite: bool, mode: int | None, roots: Roots
    ) -> tuple[UploadBegun, int]:
        """A new temporary file beside `path` and its descriptor (the caller closes it)."""
        args = {"path": path, "overwrite": overwrite, "mode": mode, "roots": roots}
        result, fds = await self._file_fd("upload_begin", args, idempotent=False)
        return cast(UploadBegun, result), fds[0]

    async def upload_commit(
        self, path: str, temp: str, *, mode: int, overwrite: bool, mtime_ns: int | None,
        roots: Roots,
    ) -> Described:  # fmt: skip
        args = {"path": path, "temp": temp, "mode": mode, "overwrite": overwrite,
                "mtime_ns": mtime_ns, "roots": roots}  # fmt: skip
        return cast(Described, await self._file_op("upload_commit", args, idempotent=False))

    async def upload_abort(self, path: str, temp: str) -> None:
        await self._file_op("upload_abort", {"path": path, "temp": temp})

    async def upload_reopen(self, path: str, temp: str, *, roots: Roots) -> tuple[int, int]:
        """The size of a kept temporary file and a read-write descriptor of it (the caller
        closes it)."""
        args = {"path": path, "temp": temp, "roots": roots}
        result, fds = await self._file_fd("upload_reopen", args, idempotent=True)
        return int(result["size"]), fds[0]

    async def walk(
        self, path: str, *, after: str, limit: int, roots: Roots, deadline: float | None = None
    ) -> WalkPage:
        args = {"path": path, "after": after, "limit": limit, "roots": roots}
        return cast(WalkPage, await self._file_op("walk", args, deadline=deadline))

    async def utime(self, path: str, mtime_ns: int, *, roots: Roots) -> None:
        await self._file_op("utime", {"path": path, "mtime_ns": mtime_ns, "roots": roots})

    async def syncfs(self, path: str, *, roots: Roots, deadline: float | None = None) -> None:
        """syncfs(2) of the filesystem holding `path`."""
        await self._file_op("syncfs", {"path": path, "roots": roots}, deadline=deadline)

    # Batches of small files (worker.py: op_copy_files, op_read_files, op_write_files).

    async def copy_files(
        self, source: str, destination: str, items: list[dict[str, Any]], *, verify: bool,
        roots: Roots, deadline: float | None = None,
    ) -> BatchWritten:  # fmt: skip
        args = {"source": source, "destination": destination, "items": items,
                "verify": verify, "roots": roots}  # fmt: skip
        result = await self._file_op("copy_files", args, idempotent=False, deadline=deadline)
        return cast(BatchWritten, result)

    async def read_files(
        self, path: str, items: list[dict[str, Any]], *, roots: Roots,
        deadline: float | None = None,
    ) -> BatchRead:  # fmt: skip
        args = {"path": path, "items": items, "roots": roots}
        return cast(BatchRead, await self._file_op("read_files", args, deadline=deadline))

    async def write_files(
        self, path: str, items: list[dict[str, Any]], *, verify: bool, roots: Roots,
        deadline: float | None = None,
    ) -> BatchWritten:  # fmt: skip
        args = {"path": path, "items": items, "verify": verify, "roots": roots}
        result = await self._file_op("write_files", args, idempotent=False, deadline=deadline)
        return cast(BatchWritten, result)


def _single(fds: list[int]) -> int:
    if len(fds) != 1:
        _close_all(fds)
        raise WorkerUnavailable(f"protocol error: expected one descriptor, got {len(fds)}")
    return fds[0]


class SpawnedCommand:
    """A long-running command started by its user's worker (`PrivilegeSeparation.spawn`).

    `pid` is also its process group. `stdout`, `stderr` and, if asked for, `stdin` are the
    server's ends of its pipes (the caller closes them). The worker reports the exit:
    `returncode` is None until then (negative: killed by that signal)."""

    def __init__(self, worker: UserWorker, pid: int, fds: list[int], stdin: bool) -> None:
        self.pid = pid
        self.stdout, self.stderr = fds[0], fds[1]
        self.stdin: int | None = fds[2] if stdin else None
        self.returncode: int | None = None
        self._exit = asyncio.create_task(self._await_exit(worker))
        self._exit.add_done_callback(lambda task: task.cancelled() or task.exception())

    async def _await_exit(self, worker: UserWorker) -> int:
        result, _ = await worker.call("wait", {"pid": self.pid}, idempotent=False,
                                      deadline=math.inf)  # fmt: skip
        self.returncode = int(result["returncode"])
        return self.returncode

    async def wait(self) -> int:
        """The exit status; WorkerUnavailable if the worker died first (the command may
        still run: nothing can tell any more)."""
        return await asyncio.shield(self._exit)


class PrivilegeSeparation:
    """Per-user workers and commands. Multi-user mode when the server is root or has a
    spawner (`spawner`: its socket); otherwise single-user mode."""

    def __init__(
        self,
        *,
        spawner: str | None = None,
        idle_timeout: float = 300.0,
        request_timeout: float = 60.0,
        start_timeout: float = 10.0,
        worker_python: str | None = None,
        worker_threads: int = 8,
        path: str = DEFAULT_PATH,
        umask: int = 0o022,
        min_uid: int = 1000,
        deny_users: Collection[str] = ("slurm",),
        identity_ttl: float = 30.0,
    ) -> None:
        multi_user = spawner is not None or os.geteuid() == 0
        self.mode: Mode = "multi-user" if multi_user else "single-user"
        self.spawner = spawner
        self.idle_timeout = idle_timeout
        self.request_timeout = request_timeout
        self.path = path
        self.umask = umask
        self.policy = Policy(min_uid, frozenset(deny_users))
        self.identity_ttl = identity_ttl
        self._launcher: Launcher
        if spawner is not None:
            self._launcher = SpawnerClient(spawner, start_timeout)
        else:
            self._launcher = WorkerLauncher(
                worker_python=worker_python, worker_threads=worker_threads, path=path,
                umask=umask, start_timeout=start_timeout,
            )  # fmt: skip
        self._identities: dict[str, tuple[float, UserIdentity]] = {}
        self._served: UserIdentity | None = None
        self._served_error = ""
        if self.mode == "single-user":
            try:
                self._served = lookup_uid_blocking(os.geteuid())
            except PrivsepError as exc:
                self._served_error = str(exc)
        # (user, lane) -> worker: lane 0 serves everything; more lanes are further worker
        # processes of the same user, for work that runs on several cores at once.
        self._workers: dict[tuple[UserIdentity, int], UserWorker] = {}
        self._reaper: asyncio.Task[None] | None = None
        self._closed = False

    @property
    def workers_alive(self) -> int:
        """Per-user worker processes running now (read by the metrics thread: the list
        is copied in one step, so the dict may change meanwhile)."""
        return sum(1 for handle in list(self._workers.values()) if handle.pid is not None)

    @property
    def served_user(self) -> str | None:
        """Single-user mode: the one user this server acts as. Multi-user mode: None."""
        return self._served.name if self._served else None

    def authorize(self, identity: UserIdentity) -> None:
        """Raises ForbiddenUser unless per-user work may run as `identity` in this mode."""
        if identity.uid == 0:
            raise ForbiddenUser(f"refusing to do per-user work as {identity.name!r} (uid 0)")
        if self.mode == "single-user":
            served = self._single_user_served(identity.name)
            if identity.uid != served.uid:
                raise ForbiddenUser(f"{identity.name!r} is not uid {served.uid}")
            return
        self.policy.check(identity)

    def _single_user_served(self, name: str) -> UserIdentity:
        served = self._served
        if served is None:
            raise ForbiddenUser(f"single-user mode, but {self._served_error}")
        if name != served.name:
            raise ForbiddenUser(
                f"this server runs as {served.name!r} (single-user mode) and acts only as "
                f"that user, not as {name!r}"
            )
        return served

    async def identity(self, name: str) -> UserIdentity:
        """Looks `name` up (off the loop) and checks it may be served in this mode.

        An answer is reused for `identity_ttl` seconds (NSS can be slow, e.g. LDAP), so a
        change to an account (groups, home) reaches new work within that time, as with nscd."""
        if self.mode == "single-user":
            return self._single_user_served(name)
        now = time.monotonic()
        remembered = self._identities.get(name)
        if remembered is not None and remembered[0] > now:
            return remembered[1]
        identity = await lookup(name)
        self.authorize(identity)
        if len(self._identities) >= IDENTITY_CACHE_SIZE:
            del self._identities[next(iter(self._identities))]  # the oldest
        self._identities[name] = (now + self.identity_ttl, identity)
        return identity

    async def worker(self, identity: UserIdentity, lane: int = 0) -> UserWorker:
        """The running worker for `identity`, started if needed. `lane` > 0 names another
        process of the same user (the same privileges; idle ones stop like any), so
        that CPU-bound batches can run in parallel: one worker runs one Python thread
        at a time (its thread pool shares the GIL)."""
        self.authorize(identity)
        if self._closed:
            raise WorkerUnavailable("privilege separation is closed")
        if not 0 <= lane < MAX_LANES:
            raise ValueError(f"lane must be in [0, {MAX_LANES})")
        handle = self._workers.get((identity, lane))
        if handle is None:
            handle = self._workers[(identity, lane)] = UserWorker(self, identity)
        if self._reaper is None:
            self._reaper = asyncio.create_task(self._reap_idle())
        await handle._connection()
        return handle

    def user_env(self, identity: UserIdentity) -> dict[str, str]:
        """The clean environment per-user processes start from; nothing is inherited."""
        return user_env(identity, self.path)

    async def _start(self, identity: UserIdentity) -> _Connection:
        if self._closed:
            raise WorkerUnavailable("privilege separation is closed")
        self.authorize(identity)
        launched = await self._launcher.launch(identity)
        return _Connection(launched, identity.name)

    async def spawn(
        self,
        identity: UserIdentity,
        argv: Sequence[str],
        *,
        cwd: str | None = None,
        env: Mapping[str, str] | None = None,
        stdin: bool = False,
    ) -> SpawnedCommand:
        """Starts `argv` (no shell) as the user, in a new session (its own process group),
        with pipes for its output (and its input with `stdin`).

        The user's worker starts it, so the pipes are the user's. `cwd` defaults to the
        user's home ("/" if that is unusable); an explicit `cwd` the user cannot enter
        raises PermissionError / FileNotFoundError, and so does a program exec refuses.
        The environment is `user_env(identity)` updated with `env`.
        """
        if not argv:
            raise ValueError("argv must not be empty")
        refused = sorted(k for k in (env or {}) if is_loader_variable(k))
        if refused:  # see LOADER_VARIABLES
            raise ValueError(f"refusing loader variables in a per-user environment: {refused}")
        handle = await self.worker(identity)
        args = {
            "argv": list(argv),
            "cwd": cwd,
            "env": {**self.user_env(identity), **(env or {})},
            "umask": self.umask,
            "stdin": stdin,
        }
        result, fds = await handle.call("spawn", args, idempotent=False)
        if len(fds) != (3 if stdin else 2):
            _close_all(fds)
            raise WorkerUnavailable(f"protocol error: spawn sent {len(fds)} descriptors")
        return SpawnedCommand(handle, int(result["pid"]), fds, stdin)

    async def run(
        self,
        identity: UserIdentity,
        argv: Sequence[str],
        *,
        cwd: str | None = None,
        env: Mapping[str, str] | None = None,
        input: bytes | None = None,
        time_limit: float = 60.0,
        gate: Awaitable[bool] | None = None,
    ) -> CommandOutput:
        """Runs `argv` (no shell) as the user, in a new session, and collects the exit
        status and output (up to 1 MiB of each); past `time_limit` seconds, kills the
        command's process group and raises CommandTimeout, as it does when the awaiting
        task is cancelled. Same environment and `cwd` rules as `spawn`; a missing program
        is exit 127.

        The user's worker starts it (it already is the user: no privilege drop to exec,
        no root parent entering `cwd`), so this is the cheap way to run short commands
        such as sbatch. `input` goes through a pipe the user owns, so the command may
        also open it by name (/dev/stdin), as `sbatch /dev/stdin ARGS` does.

        With a `gate`, the command starts at once but is fed `input` only once the gate
        answers True; otherwise it is killed unfed and CommandWithheld is raised. It lets a
        caller make a decision durable (an idempotency record) while the command loads."""
        if not argv:
            raise ValueError("argv must not be empty")
        refused = sorted(k for k in (env or {}) if is_loader_variable(k))
        if refused:  # the same rule as spawn, so a command behaves the same either way
            raise ValueError(f"refusing loader variables in a per-user environment: {refused}")
        handle = await self.worker(identity)
        return await handle.run(
            argv,
            cwd=cwd,
            env={**self.user_env(identity), **(env or {})},
            input=input or b"",
            time_limit=time_limit,
            umask=self.umask,
            gate=gate,
        )

    async def kill_group(
        self, identity: UserIdentity, command: SpawnedCommand, grace: float = 5.0
    ) -> None:
        """SIGKILLs the process group `spawn` created, as the user, and waits up to
        `grace` seconds for the leader's exit to be reported."""
        with contextlib.suppress(PrivsepError, OSError):
            handle = await self.worker(identity)
            await handle.kill_group(command.pid)
        with contextlib.suppress(TimeoutError, PrivsepError):
            await asyncio.wait_for(command.wait(), grace)

    async def _reap_idle(self) -> None:
        interval = max(0.05, min(self.idle_timeout / 2, 30.0))
        while True:
            await asyncio.sleep(interval)
            now = time.monotonic()
            for handle in list(self._workers.values()):
                if handle.idle_for(now) >= self.idle_timeout:
                    try:
                        await handle.stop(only_if_idle_for=self.idle_timeout)
                    except Exception:
                        log.exception("stopping an idle privsep worker failed")

    async def close(self) -> None:
        """Stops every worker; later calls raise WorkerUnavailable."""
        self._closed = True
        if self._reaper is not None:
            self._reaper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reaper
            self._reaper = None
        await asyncio.gather(*(handle.stop() for handle in self._workers.values()))
