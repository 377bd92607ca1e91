"""The gateway's end of Slurm's hooks: a Unix datagram socket that slurm/hook.py sends
"job N started/ended" to, each notice handed to the job hub of its system.

Who may send is decided by the file system: the socket's directory belongs to the
gateway's account and the hook group (the controller's SlurmUser's group, `slurm`),
mode 2750, and the socket is 0660, so only that group, the gateway and root reach it.
A notice only makes the hub read the job from Slurm sooner; it never says what state
the job is in, so a forged one costs one query, and the hub bounds how many it makes.
"""

from __future__ import annotations

import asyncio
import contextlib
import grp
import logging
import os
import socket
import stat
import threading
from collections.abc import Awaitable, Callable, Mapping, Sequence
from pathlib import Path

from hpcgate.server.config import SystemConfig
from hpcgate.server.events.hub import JobHub
from hpcgate.server.metrics import Metrics
from hpcgate.server.slurm.hook import MAX_NOTICE_BYTES, Notice, parse_notice

log = logging.getLogger(__name__)
# Room for a burst of notices (a few hundred bytes each). The kernel also caps a Unix
# datagram socket's queue at net.unix.max_dgram_qlen datagrams (10 by default), so a
# thread of its own drains it: a busy event loop does not make senders drop notices.
RECEIVE_BUFFER = 4 * 1024 * 1024
DIRECTORY_MODE = 0o2750
# Notices being passed on to the polling replica at once, at most.
MAX_FORWARDING = 1000


def prepare_directory(directory: Path, owner_uid: int, group: str) -> None:
    """Creates the hooks' directory (root only: it sets the owner) as `owner_uid`:`group`
    mode 2750; an existing one is given to them. Without that group, the owner's."""
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    gid = _group_id(group)
    st = os.lstat(directory)
    if not stat.S_ISDIR(st.st_mode):
        raise OSError(f"{directory} is not a directory")
    os.chown(directory, owner_uid, -1 if gid is None else gid, follow_symlinks=False)
    os.chmod(directory, DIRECTORY_MODE)


def _group_id(name: str) -> int | None:
    try:
        return grp.getgrnam(name).gr_gid if name else None
    except KeyError:
        return None


class HookListener:
    """Receives Slurm's hook notices on `path` and passes them to the hubs."""

    def __init__(
        self,
        path: Path,
        group: str,
        hubs: Mapping[str, JobHub],
        systems: Sequence[SystemConfig],
        metrics: Metrics | None = None,
        forward: Callable[[str, str, float], Awaitable[bool]] | None = None,
    ) -> None:
        self.path = path
        # Cluster mode: passes a notice for a system this replica does not poll to the
        # replica that does (ClusterJobs.forward_notice).
        self.forward = forward
        self._forwarding: set[asyncio.Task[bool]] = set()
        self.group = group
        self.hubs = hubs
        self.clusters = {s.id: s.slurm.cluster for s in systems}
        self.metrics = metrics or Metrics.unexposed()
        self.received_count = 0
        self.ignored_count = 0
        self._sock: socket.socket | None = None
        self._reader: threading.Thread | None = None
        self._stopping = threading.Event()

    async def start(self) -> bool:
        """Binds the socket; False (logged, not fatal: polling still works) when it
        cannot, e.g. its directory is missing and cannot be made, or it is taken."""
        try:
            sock = await asyncio.to_thread(self._bind)
        except OSError as e:
            log.warning(
                "Slurm's hooks will not reach this gateway (job events come from polling "
                "only): %s", e,
            )  # fmt: skip
            return False
        self._sock = sock
        self._reader = threading.Thread(
            target=self._drain, args=(sock, asyncio.get_running_loop()),
            name="slurm-hooks", daemon=True,
        )  # fmt: skip
        self._reader.start()
        log.info("listening for Slurm's hooks", extra={"fields": {"socket": str(self.path)}})
        return True

    def _bind(self) -> socket.socket:
        directory = self.path.parent
        if not directory.is_dir() and os.geteuid() == 0:
            prepare_directory(directory, 0, self.group)
        _clear_stale(directory, self.path)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RECEIVE_BUFFER)
            sock.bind(str(self.path))
            os.chmod(self.path, 0o660)
            gid = _group_id(self.group)
            if os.geteuid() == 0 and gid is not None:
                os.chown(self.path, -1, gid)
        except OSError:
            sock.close()
            raise
        return sock

    def _drain(self, sock: socket.socket, loop: asyncio.AbstractEventLoop) -> None:
        """The reader thread: every datagram to the event loop, until `close`."""
        while not self._stopping.is_set():
            try:
                data = sock.recv(MAX_NOTICE_BYTES + 1)
            except OSError:
                return
            if data and not self._stopping.is_set():
                with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
                    loop.call_soon_threadsafe(self.received, data)

    def received(self, data: bytes) -> None:
        notice = parse_notice(data)
        if notice is None:
            self.ignored_count += 1
            self.metrics.hook_notice("", "invalid")
            return
        self.received_count += 1
        for system_id in self._systems_of(notice):
            hub = self.hubs[system_id]
            if hub.notified(notice.job_id, notice.time):
                self.metrics.hook_notice(system_id, notice.event)
            elif (
                not hub.leading
                and self.forward is not None
                and len(self._forwarding) < MAX_FORWARDING  # PostgreSQL slow: the poll covers
            ):
                self.metrics.hook_notice(system_id, "forwarded")
                task = asyncio.ensure_future(self.forward(system_id, notice.job_id, notice.time))
                self._forwarding.add(task)  # held until done: the loop keeps weak references
                task.add_done_callback(self._forwarding.discard)
            else:
                self.metrics.hook_notice(system_id, "not_polling")

    def _systems_of(self, notice: Notice) -> list[str]:
        """The systems a notice is about: the one it names, else those on its Slurm
        cluster (a system without `slurm.cluster` uses the default one: it may be it)."""
        if notice.system:
            return [notice.system] if notice.system in self.hubs else []
        return [
            sid for sid, cluster in self.clusters.items()
            if sid in self.hubs and (not notice.cluster or cluster in ("", notice.cluster))
        ]  # fmt: skip

    async def close(self) -> None:
        if self._sock is None or self._reader is None:
            return
        self._stopping.set()
        with contextlib.suppress(OSError):  # an empty datagram wakes the reader's recv
            self._sock.sendto(b"", str(self.path))
        await asyncio.to_thread(self._reader.join, 5)
        self._sock.close()
        self._sock = self._reader = None
        with contextlib.suppress(OSError):
            os.unlink(self.path)


def _clear_stale(directory: Path, own: Path) -> None:
    """Removes sockets nobody listens on (gateways that died) so that hooks stop sending
    to them; refuses to take `own` from a gateway that still listens there."""
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    try:
        for entry in os.scandir(directory):
            if not entry.name.endswith(".sock"):
                continue
            with contextlib.suppress(OSError):
                if not stat.S_ISSOCK(entry.stat(follow_symlinks=False).st_mode):
                    continue
            try:
                probe.connect(entry.path)
            except ConnectionRefusedError:
                with contextlib.suppress(OSError):
                    os.unlink(entry.path)
                continue
            except OSError:
                continue
            if entry.path == str(own):
                raise OSError(f"another gateway listens on {own}: set [watch] hook_socket")
    finally:
        probe.close()
