"""RunCommand: a short command run as the caller, its output streamed as it is produced.

The command is started by `PrivilegeSeparation.spawn`: the caller's worker, which runs
with the caller's uid, gid and groups, starts it in a new session (its own process group)
with a clean environment and hands its pipes to the server. No shell is involved unless
the request asks for one with `command` + `use_shell`, which runs `/bin/sh -c command`.

Decisions (see also the RunCommand comment in utilities.proto):

- `use_shell` together with `argv` is INVALID_ARGUMENT: a shell runs only a `command`
  string, so an argv is always executed as given.
- Environment keys must be shell-style names. `USER` and `LOGNAME` are refused (they name
  the caller's identity, which a request cannot change), and so are the variables the
  dynamic loader and glibc act on (`LD_*`, `GCONV_PATH`, `GLIBC_TUNABLES`, ...: glibc's own
  list for setuid programs, minus `TMPDIR`), as they were when a root half of the
  privilege drop ran with the command's environment: requests behave the same on every
  deployment.
- A missing or non-executable program would only show as exec's error, so before
  spawning, `argv[0]` is resolved the way execvp(3) will resolve it: every
  candidate (each PATH entry of the command's environment, or the path itself when it has
  a `/`, relative to the working directory) is stat-ed by the caller's worker, i.e. by
  the kernel as the caller. NOT_FOUND when no candidate exists, PERMISSION_DENIED when
  one exists but is not a regular file with an execute bit for the caller. The bits are
  read generously (the group bits count for non-members: with an ACL they are its mask),
  so an ACL never makes us refuse what the kernel would allow; what this check cannot see
  (a noexec mount, a race) still ends as the status of exec's error (NOT_FOUND,
  PERMISSION_DENIED); a missing script interpreter is exit status 127.
- Output: both pipes are read concurrently in chunks of up to 64 KiB, each chunk is one
  message, in arrival order. The generator is the only consumer and the queue holds two
  chunks, so a slow client stalls the pipes (and the command), never the server's memory.
  Past `max_output_bytes` bytes are read and dropped, so the command keeps running.
- Timeout: SIGTERM to the process group, SIGKILL `kill_grace` seconds later, signalled as
  the caller (the worker's killpg). It is reported in the result (`timed_out`), not as an
  RPC error. Client cancellation (or any failure) SIGKILLs the group at once and reaps it;
  it is noticed through the end of the RPC's task, because gRPC abandons a cancelled
  handler's generators at their `yield` without closing them.
- The command's stdin/stdout/stderr pipes belong to the caller, so `/dev/stderr` or
  `/dev/stdin` can be reopened by name.
  When the command ends normally, whatever it left behind in its process group is killed
  too, so no RunCommand process outlives its RPC (one that starts a new session escapes;
  see docs/privsep.md).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import errno
import logging
import os
import posixpath
import signal
import stat
import time
from collections.abc import AsyncGenerator, AsyncIterator, Mapping
from dataclasses import dataclass

from hpcgate.server import privsep
from hpcgate.server.config import CommandsConfig
from hpcgate.server.errors import Code, DomainError, from_os_error, from_privsep

log = logging.getLogger(__name__)

CHUNK = 64 * 1024
# Chunks waiting for the client, both streams together: the memory bound per command.
QUEUED_CHUNKS = 2
# How long a SIGKILLed command may take to be reaped before we stop waiting (a process
# stuck in uninterruptible sleep on a dead mount cannot be reaped any sooner).
REAP_TIMEOUT = 10.0
# How long a forced close still forwards output already written to a live consumer.
DRAIN_TIMEOUT = 2.0


@dataclass(frozen=True)
class CommandSpec:
    """A command to run, as the edge validated it (api/command_request.py)."""

    argv: tuple[str, ...]
    cwd: str | None  # None: the caller's home
    env: dict[str, str]  # added to the clean environment
    timeout: float
    max_output: int
    stdin: bytes


@dataclass(frozen=True)
class CommandOutput:
    """A chunk of the command's output, as it arrived: `stream` is "stdout" or "stderr"."""

    stream: str
    data: bytes


@dataclass(frozen=True)
class CommandResult:
    """How the command ended (`signal` 0 unless a signal killed it)."""

    exit_code: int
    signal: int
    timed_out: bool
    output_truncated: bool
    duration: float  # seconds


def _may_execute(st: privsep.FileStat, identity: privsep.UserIdentity) -> bool:
    """Whether the mode bits let the caller exec the file (generously: see the module doc)."""
    if not st.is_file:
        return False  # execve of a directory or device is EACCES
    if st.uid == identity.uid:
        return bool(st.mode & stat.S_IXUSR)
    if st.gid in identity.groups:
        return bool(st.mode & stat.S_IXGRP)
    return bool(st.mode & (stat.S_IXOTH | stat.S_IXGRP))


def _wake(ready: asyncio.Future[None]) -> None:
    if not ready.done():  # the fd may be reported ready again before the waiter runs
        ready.set_result(None)


async def _read(fd: int) -> bytes:
    """Up to CHUNK bytes from a non-blocking pipe, as soon as there are any; b"" at EOF."""
    loop = asyncio.get_running_loop()
    while True:
        try:
            return os.read(fd, CHUNK)
        except BlockingIOError:
            pass
        ready: asyncio.Future[None] = loop.create_future()
        loop.add_reader(fd, _wake, ready)
        try:
            await ready
        finally:
            loop.remove_reader(fd)


async def _feed(fd: int, data: bytes) -> None:
    """Writes `data` to a non-blocking pipe, then closes it (stdin's EOF)."""
    loop = asyncio.get_running_loop()
    view = memoryview(data)
    try:
        while view:
            try:
                view = view[os.write(fd, view) :]
                continue
            except BlockingIOError:
                pass
            except BrokenPipeError:
                return  # the command does not read its input: not an error
            ready: asyncio.Future[None] = loop.create_future()
            loop.add_writer(fd, _wake, ready)
            try:
                await ready
            finally:
                loop.remove_writer(fd)
    finally:
        os.close(fd)


class _Execution:
    """One running command: its pipes, the tasks reading them, its timeout watchdog."""

    def __init__(
        self,
        users: privsep.PrivilegeSeparation,
        identity: privsep.UserIdentity,
        spec: CommandSpec,
        kill_grace: float,
    ) -> None:
        self.users = users
        self.identity = identity
        self.spec = spec
        self.kill_grace = kill_grace
        self.queue: asyncio.Queue[tuple[str, bytes]] = asyncio.Queue(QUEUED_CHUNKS)
        self.budget = spec.max_output
        self.truncated = False
        self.timed_out = False
        self.proc: privsep.SpawnedCommand | None = None
        self.started = 0.0
        self.tasks: list[asyncio.Task[None]] = []
        self.watchdog: asyncio.Task[None] | None = None
        self.finished = False
        self._closer: asyncio.Task[None] | None = None

    async def start(self, env: Mapping[str, str]) -> None:
        """Spawns the command with pipes for its output (and input); starts the tasks."""
        self.proc = proc = await self.users.spawn(
            self.identity,
            self.spec.argv,
            cwd=self.spec.cwd,
            env=env,
            stdin=bool(self.spec.stdin),
        )
        self.started = time.monotonic()
        for fd in (proc.stdout, proc.stderr, proc.stdin):
            if fd is not None:
                os.set_blocking(fd, False)
        self.tasks = [
            asyncio.create_task(self._pump(proc.stdout, "stdout")),
            asyncio.create_task(self._pump(proc.stderr, "stderr")),
        ]
        if proc.stdin is not None:
            self.tasks.append(asyncio.create_task(_feed(proc.stdin, self.spec.stdin)))
        self.watchdog = asyncio.create_task(self._watch())

    async def _pump(self, fd: int, kind: str) -> None:
        """Moves one pipe's output to the queue, dropping what exceeds the budget."""
        try:
            while True:
                try:
                    data = await _read(fd)
                except OSError as exc:  # not expected from a pipe; end this stream
                    log.warning("reading a command's %s failed: %s", kind, exc)
                    break
                if not data:
                    break
                kept = data[: self.budget]
                if len(kept) < len(data):
                    self.truncated = True
                if kept:
                    self.budget -= len(kept)
                    await self.queue.put((kind, kept))
        finally:
            os.close(fd)
        await self.queue.put((kind, b""))  # end of this stream

    async def _signal(self, signum: int) -> bool:
        """Signals the process group as the caller; False when nothing was left to signal."""
        proc = self.proc
        assert proc is not None
        try:
            worker = await self.users.worker(self.identity)
            await worker.kill_group(proc.pid, signum)
            return True
        except ProcessLookupError:
            return False
        except (privsep.PrivsepError, OSError) as exc:
            # Only the caller's worker may signal the caller's processes; without it (e.g.
            # privsep closed at shutdown) the group is out of reach.
            log.warning("signalling a command's process group as the user failed: %s", exc)
            return False

    async def _watch(self) -> None:
        await asyncio.sleep(self.spec.timeout)
        assert self.proc is not None
        if self.proc.returncode is None:
            # Decided before signalling: the leader may die of SIGTERM, and `finish` cancel
            # this task, before the worker has even answered the killpg.
            self.timed_out = True
            await self._signal(signal.SIGTERM)
        elif await self._signal(signal.SIGTERM):
            self.timed_out = True  # the leader is gone but the group still ran
        else:
            return  # an empty group is no timeout: only output is on its way to a slow client
        await asyncio.sleep(self.kill_grace)
        await self._signal(signal.SIGKILL)

    async def output(self) -> AsyncGenerator[tuple[str, bytes], None]:
        """The output chunks in arrival order, until both pipes are closed."""
        open_streams = 2
        while open_streams:
            kind, data = await self.queue.get()
            if data:
                yield kind, data
            elif not kind:
                return  # closed while output was still pending
            else:
                open_streams -= 1

    async def finish(self) -> CommandResult:
        """Waits for the leader, kills leftovers in its group, and describes the end."""
        assert self.proc is not None and self.watchdog is not None
        try:
            code = await self.proc.wait()
        except privsep.PrivsepError as exc:
            raise DomainError(
                Code.UNAVAILABLE,
                f"the command's exit status was lost ({exc}); it may still be running",
            ) from exc
        duration = time.monotonic() - self.started
        self.watchdog.cancel()
        await asyncio.wait([self.watchdog])  # unlike `await`, keeps our own cancellation
        await self._signal(signal.SIGKILL)  # background processes it left behind
        self.finished = True
        return CommandResult(
            exit_code=max(code, 0),
            signal=-code if code < 0 else 0,
            timed_out=self.timed_out,
            output_truncated=self.truncated,
            duration=duration,
        )

    def close_soon(self, *, drain: bool = False) -> asyncio.Task[None]:
        """`close()` in a task of its own, started once (callable from a done callback)."""
        if self._closer is None:
            self._closer = asyncio.get_running_loop().create_task(self.close(drain=drain))
        return self._closer

    async def close(self, *, drain: bool = False) -> None:
        """Cleanup: the group SIGKILLed and its leader reaped, tasks stopped, pipes closed.

        With `drain` (a consumer is still reading), the output written before the kill
        is still delivered, for up to DRAIN_TIMEOUT seconds.
        """
        others = [task for task in (self.watchdog, *self.tasks[2:]) if task is not None]
        for task in others:
            task.cancel()
        proc = self.proc
        if proc is not None and not self.finished:
            await self._signal(signal.SIGKILL)  # all of the group at once
            try:
                await asyncio.wait_for(proc.wait(), REAP_TIMEOUT)
            except (TimeoutError, privsep.PrivsepError):
                log.error(
                    "a killed command was not reaped",
                    extra={"fields": {"user": self.identity.name, "pid": proc.pid}},
                )
        pumps = self.tasks[:2]
        if drain and pumps:
            await asyncio.wait(pumps, timeout=DRAIN_TIMEOUT)
        stuck = [task for task in pumps if not task.done()]
        for task in stuck:
            task.cancel()
        await asyncio.gather(*others, *pumps, return_exceptions=True)
        if stuck:
            # Wake a consumer still waiting in output(): nothing more will arrive.
            while not self.queue.empty():
                self.queue.get_nowait()
            self.queue.put_nowait(("", b""))


class _Slot:
    """One of a user's `max_per_user` places, given back exactly once."""

    def __init__(self, counts: collections.Counter[str], user: str) -> None:
        self.counts = counts
        self.user = user
        self.held = True
        counts[user] += 1

    def release(self) -> None:
        if self.held:
            self.held = False
            self.counts[self.user] -= 1
            if self.counts[self.user] <= 0:
                del self.counts[self.user]


class CommandRunner:
    """Runs RunCommand requests as their callers; counts each user's running commands."""

    def __init__(self, config: CommandsConfig, users: privsep.PrivilegeSeparation) -> None:
        self.config = config
        self.users = users
        self._running: collections.Counter[str] = collections.Counter()
        # Commands started and not yet reaped, with the slot each one holds.
        self._active: dict[_Execution, _Slot] = {}
        # Cleanups still in progress (kept referenced until done).
        self._closing: set[asyncio.Task[None]] = set()

    def running(self, user: str) -> int:
        """How many commands `user` runs through this runner now."""
        return self._running[user]

    def ensure_enabled(self) -> None:
        """PERMISSION_DENIED when this server does not run commands."""
        if not self.config.enabled:
            raise DomainError(
                Code.PERMISSION_DENIED,
                "running commands is disabled on this server (commands.enabled = false)",
            )

    async def stream(
        self, identity: privsep.UserIdentity, spec: CommandSpec
    ) -> AsyncIterator[CommandOutput | CommandResult]:
        """Output chunks as they are produced, then one result (see the module doc).

        Raises DomainError before the first item for a refused command. Consume it from
        one task (as gRPC does): the end of that task also ends the command.
        """
        self.ensure_enabled()
        name = identity.name
        if self._running[name] >= self.config.max_per_user:
            raise DomainError(
                Code.RESOURCE_EXHAUSTED,
                f"{name} already runs {self._running[name]} commands, the most allowed at "
                "once (commands.max_per_user); retry when one has finished",
            )
        slot = _Slot(self._running, name)
        try:
            run = await self._start(identity, spec)
        except BaseException:
            slot.release()
            raise
        self._active[run] = slot
        # A cancelled call abandons its handler's generators at their `yield` without
        # closing them (that waits for the garbage collector), but it does end the RPC's
        # task: that ends the command at once, whichever way the call goes.
        task = asyncio.current_task()

        def abandoned(_: object) -> None:
            self._close(run)

        if task is not None:
            task.add_done_callback(abandoned)
        try:
            async with contextlib.aclosing(run.output()) as chunks:
                async for kind, data in chunks:
                    yield CommandOutput(kind, data)
            yield await run.finish()
        finally:
            if task is not None:
                task.remove_done_callback(abandoned)
            # Shielded: a second cancellation cannot leave the group running.
            await asyncio.shield(self._close(run))

    def _close(self, run: _Execution, *, drain: bool = False) -> asyncio.Task[None]:
        """Kills and reaps what is left of the command (once), then frees its slot."""
        closer = run.close_soon(drain=drain)
        if closer not in self._closing:
            self._closing.add(closer)

            def done(_: object) -> None:
                self._closing.discard(closer)
                slot = self._active.pop(run, None)
                if slot is not None:
                    slot.release()

            closer.add_done_callback(done)
        return closer

    async def close(self) -> None:
        """Kills every running command and waits until each is reaped. For server
        shutdown, before `PrivilegeSeparation.close()`: the kills go through the users'
        workers, and a process group whose leader has exited can only be reached there."""
        closers = [self._close(run, drain=True) for run in list(self._active)]
        await asyncio.gather(*closers, *self._closing, return_exceptions=True)

    async def _start(self, identity: privsep.UserIdentity, spec: CommandSpec) -> _Execution:
        """Checks the working directory and the program as the caller, then spawns."""
        env = {"SHELL": identity.shell} if identity.shell else {}
        env.update(spec.env)
        program = spec.argv[0]
        what = f"running {program!r} as {identity.name}"
        try:
            worker = await self.users.worker(identity)
            if spec.cwd is not None:
                await _check_directory(worker, spec.cwd)
            path = {**self.users.user_env(identity), **env}.get("PATH", "")
            await _check_executable(worker, identity, program, spec.cwd, path)
            run = _Execution(self.users, identity, spec, self.config.kill_grace)
            await run.start(env)
        except privsep.PrivsepError as exc:
            raise from_privsep(exc, what) from exc
        except OSError as exc:
            raise _spawn_error(exc, program, spec.cwd) from exc
        assert run.proc is not None
        log.info(
            "command started",
            extra={"fields": {"user": identity.name, "program": program, "pid": run.proc.pid}},
        )
        return run


async def _check_directory(worker: privsep.UserWorker, path: str) -> None:
    """The working directory must exist and be enterable by the caller."""
    try:
        os.close(await worker.directory(path))
    except FileNotFoundError as exc:
        raise DomainError(Code.NOT_FOUND, f"working directory {path} does not exist") from exc
    except NotADirectoryError as exc:
        raise DomainError(
            Code.FAILED_PRECONDITION,
            f"working directory {path} is not a directory",
        ) from exc
    except PermissionError as exc:
        raise DomainError(
            Code.PERMISSION_DENIED,
            f"working directory {path}: permission denied (the caller cannot enter it)",
        ) from exc
    except OSError as exc:
        raise from_os_error(exc, f"working directory {path}") from exc


async def _check_executable(
    worker: privsep.UserWorker,
    identity: privsep.UserIdentity,
    program: str,
    cwd: str | None,
    path: str,
) -> None:
    """Resolves `program` as execvp(3) will, as the caller: NOT_FOUND / PERMISSION_DENIED."""
    base = cwd or identity.home or "/"
    if "/" in program:
        candidates = [posixpath.join(base, program)]
    else:  # an empty PATH entry is the working directory, as for execvp
        candidates = [posixpath.join(base, entry, program) for entry in path.split(":")]
    refused: str | None = None
    for candidate in candidates:
        try:
            st = await worker.stat(candidate, follow_symlinks=True)
        except PermissionError:
            refused = refused or candidate
            continue
        except OSError:  # ENOENT, ENOTDIR, ELOOP, ENAMETOOLONG: execvp tries the next
            continue
        if _may_execute(st, identity):
            return
        refused = refused or candidate
    if refused is not None:
        raise DomainError(
            Code.PERMISSION_DENIED,
            f"{refused} is not executable by {identity.name}",
        )
    where = "" if "/" in program else f" in PATH ({path})"
    raise DomainError(Code.NOT_FOUND, f"executable {program!r} not found{where}")


def _spawn_error(error: OSError, program: str, cwd: str | None) -> DomainError:
    """The status for a failed spawn (single-user mode execs without setpriv, so exec's
    own errors arrive here; in both modes the working directory is opened again)."""
    filename = str(error.filename or "")
    about_cwd = filename.startswith("/proc/") or (cwd is not None and filename == cwd)
    what = f"working directory {cwd or '(home)'}" if about_cwd else f"executable {program!r}"
    if error.errno == errno.E2BIG:
        return DomainError(Code.INVALID_ARGUMENT, "argv and environment are too large to exec")
    if isinstance(error, FileNotFoundError):
        return DomainError(Code.NOT_FOUND, f"{what} not found")
    return from_os_error(error, what)
