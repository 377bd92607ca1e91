"""Cluster mode for the job hubs: which replica polls Slurm, and how the others follow.

Per system, the replica holding a PostgreSQL advisory lock polls Slurm (`JobHub.run`);
the lock lives in a session of its own, so a replica that dies lets go at once, and one
that freezes (SIGSTOP, a stalled VM) is cut off by `idle_session_timeout` a few seconds
later, since its keep-alive queries stop. Every replica (the poller too) follows the job
journal (events/journal.py): one LISTEN connection rings the hubs, which apply what was
committed. A new poller continues the revision sequence from the journal, so clients
resume their streams on any replica without a resync. A notice of Slurm's hooks that
reaches a replica which does not poll that system goes to the one that does over
PostgreSQL (`forward_notice`, channel HOOK_CHANNEL).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

import psycopg

from hpcgate.server.events.hub import JobHub
from hpcgate.server.events.journal import CHANNEL

log = logging.getLogger(__name__)
# Seconds between attempts to become the poller, and between keep-alives once it is.
ELECTION_INTERVAL = 1.0
# Seconds after which PostgreSQL ends the session of a poller that stopped talking.
SILENT_POLLER_TIMEOUT = 4.0
# NOTIFY channel of hook notices a follower passes on: payload "SYSTEM JOB TIME".
HOOK_CHANNEL = "hpcgate_hooks"


class ClusterJobs:
    """Elects the pollers and feeds every hub from the journal; `run()` until cancelled."""

    def __init__(self, dsn: str, hubs: dict[str, JobHub], replica: str) -> None:
        self.dsn = dsn
        self.hubs = hubs
        self.replica = replica  # shown as the poller session's application_name
        self.elections = 0  # times this replica became a poller (for tests and metrics)
        self.forwarded = 0  # hook notices passed on to the poller (for tests)
        self._sender: psycopg.AsyncConnection[Any] | None = None
        self._sending = asyncio.Lock()

    async def run(self) -> None:
        async with asyncio.TaskGroup() as group:
            group.create_task(self._listen(), name="jobs-listen")
            for system_id, hub in self.hubs.items():
                group.create_task(hub.follow(), name=f"jobs-follow-{system_id}")
                group.create_task(self._elect(hub), name=f"jobs-elect-{system_id}")

    async def _listen(self) -> None:
        """Ring a system's hub whenever its journal gets events."""
        while True:
            try:
                conn = await psycopg.AsyncConnection.connect(self.dsn, autocommit=True)
                async with conn:
                    await conn.execute(f"LISTEN {CHANNEL}")
                    await conn.execute(f"LISTEN {HOOK_CHANNEL}")
                    for hub in self.hubs.values():
                        hub.ring()  # whatever came while we were not listening
                    async for notify in conn.notifies():
                        if notify.channel == HOOK_CHANNEL:
                            self._take_forwarded(notify.payload)
                            continue
                        rung = self.hubs.get(notify.payload)
                        if rung is not None:
                            rung.ring()
            except (psycopg.Error, OSError) as e:
                log.warning("job journal notifications lost (%s); reconnecting", e)
                await asyncio.sleep(ELECTION_INTERVAL)

    def _take_forwarded(self, payload: str) -> None:
        """A notice another replica passed on: read the job if this replica polls."""
        try:
            system, job_id, told = payload.split(" ")
            hub = self.hubs[system]
            stamp = float(told)
        except (KeyError, ValueError):
            return
        if hub.leading:
            hub.notified(job_id, stamp)

    async def forward_notice(self, system: str, job_id: str, told_at: float) -> bool:
        """Passes a hook notice to the replica polling `system` (best effort: the poll
        covers a notice lost here); returns whether it was sent."""
        payload = f"{system} {job_id} {told_at:.6f}"
        try:
            async with self._sending:
                if self._sender is None or self._sender.closed:
                    self._sender = await psycopg.AsyncConnection.connect(
                        self.dsn, autocommit=True, connect_timeout=5
                    )
                await self._sender.execute("SELECT pg_notify(%s, %s)", (HOOK_CHANNEL, payload))
        except (psycopg.Error, OSError) as e:
            log.warning("could not pass a hook notice on to the poller: %s", e)
            return False
        self.forwarded += 1
        return True

    async def close(self) -> None:
        if self._sender is not None:
            await self._sender.close()
            self._sender = None

    async def _elect(self, hub: JobHub) -> None:
        while True:
            try:
                conn = await psycopg.AsyncConnection.connect(
                    self.dsn, autocommit=True, application_name=f"hpcgate-poller {self.replica}"
                )
                async with conn:
                    await conn.execute(
                        "SELECT set_config('idle_session_timeout', %s, false)",
                        (f"{int(SILENT_POLLER_TIMEOUT * 1000)}ms",),
                    )
                    await self._wait_for_lock(conn, hub.system_id)
                    await self._poll_while_leading(conn, hub)
            except (psycopg.Error, OSError) as e:
                log.warning("poller election for %s: %s; retrying", hub.system_id, e)
                await asyncio.sleep(ELECTION_INTERVAL)

    @staticmethod
    async def _wait_for_lock(conn: psycopg.AsyncConnection[Any], system_id: str) -> None:
        while True:
            cursor = await conn.execute(
                "SELECT pg_try_advisory_lock(hashtextextended(%s, 0))",
                (f"hpcgate-poller/{system_id}",),
            )
            row = await cursor.fetchone()
            if row is not None and row[0]:
                return
            await asyncio.sleep(ELECTION_INTERVAL)

    async def _poll_while_leading(self, conn: psycopg.AsyncConnection[Any], hub: JobHub) -> None:
        """Poll Slurm for the hub's system until the lock's session fails."""
        self.elections += 1
        log.info("polling Slurm for %s (elected)", hub.system_id)
        await hub.catch_up()  # start from everything the previous poller committed
        hub.leading = True
        poller = asyncio.get_running_loop().create_task(hub.run(), name=f"jobs-{hub.system_id}")
        try:
            while not poller.done():
                await asyncio.sleep(ELECTION_INTERVAL)
                await conn.execute("SELECT 1")  # fails once PostgreSQL dropped our session
        finally:
            hub.leading = False
            poller.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await poller
            log.info("stopped polling Slurm for %s", hub.system_id)
