"""The privileged spawner: the only root process a split deployment keeps.

It does one thing: start a worker for user U and hand the worker's socket to the gateway,
which runs unprivileged as the service account. It listens on a Unix socket that only
that account can use: the socket is root:<service group> 0660 in a directory only root
may change, and each connection's peer uid (SO_PEERCRED, set by the kernel) must be the
service account's, else it is refused.

One request per connection, framed like the worker protocol (4-byte length + JSON):

    request  {"user": "alice"}
    reply    {"ok": true, "pid": 4242, "credentials": {...}}        + 1 descriptor
    error    {"ok": false, "error": {"kind": "ForbiddenUser", "message": "..."}}

The spawner resolves U itself and applies `Policy` itself (no root, no group 0, no system
or denied accounts): it trusts nothing the gateway says but the name. The worker is its
child; it reaps it and logs its stderr. A worker exits when the gateway closes its socket.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import json
import logging
import os
import socket
import stat
import struct
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from hpcgate.server.privsep import worker as worker_program
from hpcgate.server.privsep.errors import (
    ForbiddenUser,
    PrivsepError,
    UnknownUser,
    WorkerUnavailable,
)
from hpcgate.server.privsep.identity import UserIdentity, lookup
from hpcgate.server.privsep.launcher import (
    Launched,
    WorkerLauncher,
    check_credentials,
    credentials,
    read_frame,
)
from hpcgate.server.privsep.policy import Policy
from hpcgate.server.privsep.worker import HEADER, MAX_FRAME

log = logging.getLogger(__name__)

PEER_CREDENTIALS = struct.Struct("3i")  # struct ucred: pid, uid, gid
MAX_CONCURRENT_STARTS = 32
ERRORS: dict[str, type[PrivsepError]] = {
    "UnknownUser": UnknownUser,
    "ForbiddenUser": ForbiddenUser,
    "WorkerUnavailable": WorkerUnavailable,
}


def peer_uid(conn: socket.socket) -> int:
    """The uid of the process at the other end of a Unix socket, as the kernel saw it."""
    raw = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, PEER_CREDENTIALS.size)
    return int(PEER_CREDENTIALS.unpack(raw)[1])


def _socket_directory(directory: Path, gid: int) -> None:
    """Creates the socket's directory (root:gid 0750) or checks that only root may
    change the one that exists: the socket is chmod-ed by name after bind."""
    if not directory.exists():
        directory.mkdir(mode=0o750, parents=True)
        os.chown(directory, 0, gid)
        os.chmod(directory, 0o750)  # noqa: S103 (root:service group; nobody else)
    st = directory.stat()
    if st.st_uid != 0 or st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        raise WorkerUnavailable(
            f"the spawner's socket directory {directory} must be owned by root and writable "
            "by no one else (use a dedicated directory such as /run/hpcgate)"
        )


class Spawner:
    """Serves "start a worker for user U" to one account (`client_uid`)."""

    def __init__(
        self,
        path: Path,
        *,
        client_uid: int,
        client_gid: int,
        policy: Policy,
        launcher: WorkerLauncher,
        request_timeout: float = 10.0,
    ) -> None:
        self.path = path
        self.client_uid = client_uid
        self.client_gid = client_gid
        self.policy = policy
        self.launcher = launcher
        self.request_timeout = request_timeout
        self._listener: socket.socket | None = None
        self._serving: asyncio.Task[None] | None = None
        self._handlers: set[asyncio.Task[None]] = set()
        self._starts = asyncio.Semaphore(MAX_CONCURRENT_STARTS)

    async def start(self) -> None:
        """Binds the socket and serves in the background."""
        if os.geteuid() != 0:
            raise WorkerUnavailable("the spawner must run as root: it starts users' workers")
        _socket_directory(self.path.parent, self.client_gid)
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        listener.bind(str(self.path))
        os.chown(self.path, 0, self.client_gid)
        os.chmod(self.path, 0o660)
        listener.listen(64)
        listener.setblocking(False)
        self._listener = listener
        self._serving = asyncio.create_task(self._accept())
        log.info("privsep spawner listening", extra={"fields": {"socket": str(self.path)}})

    async def close(self) -> None:
        if self._serving is not None:
            self._serving.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._serving
        for task in list(self._handlers):
            task.cancel()
        await asyncio.gather(*self._handlers, return_exceptions=True)
        if self._listener is not None:
            self._listener.close()
            with contextlib.suppress(FileNotFoundError):
                self.path.unlink()

    async def _accept(self) -> None:
        loop = asyncio.get_running_loop()
        assert self._listener is not None
        while True:
            conn, _ = await loop.sock_accept(self._listener)
            task = asyncio.create_task(self._serve(conn))
            self._handlers.add(task)
            task.add_done_callback(self._handlers.discard)

    async def _serve(self, conn: socket.socket) -> None:
        with conn:
            conn.setblocking(False)
            uid = peer_uid(conn)
            if uid != self.client_uid:
                log.warning("privsep spawner: refused a connection",
                            extra={"fields": {"peer_uid": uid}})  # fmt: skip
                self._send(conn, _error("ForbiddenUser", f"uid {uid} may not use the spawner"))
                return
            try:
                request = await read_frame(conn, self.request_timeout)
                launched = await self._launch(request)
            except PrivsepError as exc:
                log.warning("privsep spawner: refused", extra={"fields": {"reason": str(exc)}})
                self._send(conn, _error(type(exc).__name__, str(exc)))
                return
            except TimeoutError:
                return
            with launched.sock:
                reply = {"ok": True, "pid": launched.pid,
                         "credentials": asdict(launched.credentials)}  # fmt: skip
                self._send(conn, reply, launched.sock.fileno())

    async def _launch(self, request: dict[str, Any]) -> Launched:
        user = request.get("user")
        if not isinstance(user, str):
            raise UnknownUser("the request names no user")
        identity = await lookup(user)
        self.policy.check(identity)
        async with self._starts:
            launched = await self.launcher.launch(identity)
        log.info("privsep spawner: worker started",
                 extra={"fields": {"user": identity.name, "pid": launched.pid}})  # fmt: skip
        return launched

    @staticmethod
    def _send(conn: socket.socket, message: dict[str, Any], fd: int | None = None) -> None:
        frame = worker_program.encode(message)  # small: fits an empty socket buffer
        with contextlib.suppress(OSError):  # the gateway gave up waiting
            conn.setblocking(True)
            conn.settimeout(5.0)
            sent = socket.send_fds(conn, [frame], [fd]) if fd is not None else 0
            conn.sendall(frame[sent:])


def _error(kind: str, message: str) -> dict[str, Any]:
    return {"ok": False, "error": {"kind": kind, "message": message}}


class SpawnerClient:
    """The gateway's side: asks the spawner at `path` for workers (a `Launcher`)."""

    def __init__(self, path: str, start_timeout: float = 10.0) -> None:
        self.path = path
        self.timeout = start_timeout + 5.0

    async def launch(self, identity: UserIdentity) -> Launched:
        reply, fd = await asyncio.to_thread(self._exchange, identity.name)
        sock = socket.socket(fileno=fd)
        try:
            creds = credentials(reply.get("credentials") or {})
            check_credentials(identity, creds)  # the spawner resolved the name itself
            pid = int(reply["pid"])
        except (KeyError, TypeError, ValueError) as exc:
            sock.close()
            raise WorkerUnavailable(f"protocol error from the spawner: {exc!r}") from None
        except BaseException:
            sock.close()
            raise
        sock.setblocking(False)
        return Launched(sock, pid, creds, lambda grace: _gone(pid, grace))

    def _exchange(self, user: str) -> tuple[dict[str, Any], int]:
        """Blocking (run in a thread): one request, its reply and the worker's socket."""
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
            conn.settimeout(self.timeout)
            try:
                conn.connect(self.path)
                # A refusal may be sent, and the connection closed, before the request is
                # written: the refusal is still there to read.
                with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                    conn.sendall(worker_program.encode({"user": user}))
                message, fds = _receive(conn)
            except OSError as exc:
                raise WorkerUnavailable(
                    f"cannot reach the privsep spawner at {self.path}: {exc.strerror or exc} "
                    "(is it running, and may this account use its socket?)"
                ) from None
        if message.get("ok") is not True:
            for fd in fds:
                os.close(fd)
            error = message.get("error")
            error = error if isinstance(error, dict) else {}
            kind = ERRORS.get(str(error.get("kind")), WorkerUnavailable)
            raise kind(str(error.get("message") or "the spawner refused"))
        if len(fds) != 1:
            for fd in fds:
                os.close(fd)
            raise WorkerUnavailable(f"protocol error: the spawner sent {len(fds)} descriptors")
        return message, fds[0]


def _receive(conn: socket.socket) -> tuple[dict[str, Any], list[int]]:
    """One framed reply and the descriptors that came with it."""
    data, fds = bytearray(), []
    while True:
        if len(data) >= HEADER.size:
            (size,) = HEADER.unpack_from(data)
            if size > MAX_FRAME:
                raise OSError(errno.EMSGSIZE, "the spawner's reply is too large")
            if len(data) >= HEADER.size + size:
                break
        chunk, received, _, _ = socket.recv_fds(conn, 1 << 16, 1, socket.MSG_CMSG_CLOEXEC)
        fds.extend(received)
        if not chunk:
            for fd in fds:
                os.close(fd)
            raise OSError(errno.ECONNRESET, "the spawner closed the connection")
        data += chunk
    try:
        message = json.loads(bytes(data[HEADER.size :]))
    except ValueError:
        for fd in fds:
            os.close(fd)
        raise OSError(errno.EPROTO, "the spawner's reply is not JSON") from None
    return (message if isinstance(message, dict) else {}), fds


async def _gone(pid: int, grace: float) -> None:
    """Waits up to `grace` seconds for process `pid` to be gone (the spawner reaps it)."""
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        except PermissionError:
            pass  # it exists, as another user
        await asyncio.sleep(0.02)
