"""The job event log replicas share (cluster mode): PostgreSQL tables `job_streams`,
`job_events` and `job_states` (state/postgres_schema.py).

Whoever changes a system's job state (the elected poller, or any replica that has just
submitted a job) does it in one transaction: lock the system's `job_streams` row (so
writers take turns and revisions have no gaps), read the events committed since its own
last revision (so it diffs against the newest state, never publishing a change twice),
write its events and the jobs' current records, then NOTIFY. Every replica applies the
committed events, in revision order, to its in-memory hub (events/hub.py), so WatchJobs,
GetJob and ListJobs read the same state with the same revisions on every replica.

One async psycopg connection per system; the hub's write lock makes its use serial.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any, TypeVar

import psycopg

from hpcgate.server.events.finished import decode_job, encode_job
from hpcgate.server.events.model import JobEvent
from hpcgate.server.slurm.adapter import JobRecord

CHANNEL = "hpcgate_jobs"  # NOTIFY payload: the system id
# Events kept per system beyond the hubs' history (older ones are pruned by writers).
PRUNE_EVERY = 200
# Rows decoded on the event loop; more go to a thread (a few ms of JSON at most inline).
DECODE_INLINE = 100
T = TypeVar("T")


@dataclasses.dataclass(frozen=True)
class StreamState:
    """The `job_streams` row: last revision, and the poller's last poll and verdict."""

    revision: int
    polled_at: float | None
    reachable: bool
    reason: str
    complete_since: float | None  # the finished records are complete from this submit time


@dataclasses.dataclass(frozen=True)
class Poll:
    """What the poller learnt at a poll, for the followers' freshness and ListJobs."""

    reachable: bool
    reason: str
    complete_since: datetime | None


@dataclasses.dataclass(frozen=True)
class LiveJob:
    job: JobRecord
    revision: int
    time: datetime


@dataclasses.dataclass(frozen=True)
class Snapshot:
    stream: StreamState
    jobs: list[LiveJob]
    events: list[JobEvent]  # the newest `history` events, oldest first


_READ_STREAM = (
    "SELECT revision, polled_at, reachable, reason, complete_since FROM job_streams"
    " WHERE system = %s"
)
_LOCK_STREAM = _READ_STREAM + " FOR UPDATE"


def _events_of(rows: list[tuple[Any, ...]]) -> list[JobEvent]:
    return [
        JobEvent(revision, kind, previous, decode_job(record), datetime.fromtimestamp(at, UTC))
        for revision, kind, previous, record, at in rows
    ]


def _live_jobs_of(rows: list[tuple[Any, ...]]) -> list[LiveJob]:
    return [
        LiveJob(decode_job(record), revision, datetime.fromtimestamp(at, UTC))
        for record, revision, at in rows
    ]


async def _decoded(
    decode: Callable[[list[tuple[Any, ...]]], list[T]], rows: list[tuple[Any, ...]]
) -> list[T]:
    """Rows decoded; many of them (a replica starting) in a thread, off the event loop."""
    if len(rows) <= DECODE_INLINE:
        return decode(rows)
    return await asyncio.to_thread(decode, rows)


class Journal:
    """The event log of one system."""

    def __init__(self, dsn: str, system: str, keep: int) -> None:
        self.dsn = dsn
        self.system = system
        self.keep = keep  # events kept in the table: at least the hubs' history
        self._conn: psycopg.AsyncConnection[Any] | None = None
        self._commits = 0

    async def _connection(self) -> psycopg.AsyncConnection[Any]:
        if self._conn is None or self._conn.closed or self._conn.broken:
            self._conn = await psycopg.AsyncConnection.connect(self.dsn, autocommit=True)
        return self._conn

    async def close(self) -> None:
        if self._conn is not None:
            await self._conn.close()
            self._conn = None

    async def _stream(self, conn: psycopg.AsyncConnection[Any], lock: bool) -> StreamState:
        await conn.execute(
            "INSERT INTO job_streams (system, revision) VALUES (%s, 0) ON CONFLICT DO NOTHING",
            (self.system,),
        )
        query = _LOCK_STREAM if lock else _READ_STREAM
        cursor = await conn.execute(query, (self.system,))
        row = await cursor.fetchone()
        assert row is not None
        return StreamState(*row)

    async def _events(
        self, conn: psycopg.AsyncConnection[Any], after: int, limit: int | None = None
    ) -> list[JobEvent]:
        if limit is None:
            cursor = await conn.execute(
                "SELECT revision, kind, previous_state, record, time FROM job_events "
                "WHERE system = %s AND revision > %s ORDER BY revision",
                (self.system, after),
            )
            return await _decoded(_events_of, await cursor.fetchall())
        cursor = await conn.execute(
            "SELECT revision, kind, previous_state, record, time FROM job_events "
            "WHERE system = %s AND revision > %s ORDER BY revision DESC LIMIT %s",
            (self.system, after, limit),
        )
        return await _decoded(_events_of, list(reversed(await cursor.fetchall())))

    async def snapshot(self, history: int) -> Snapshot:
        """Everything a replica starts from: live jobs, the newest events, the stream."""
        conn = await self._connection()
        async with conn.transaction():
            await conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
            stream = await self._stream(conn, lock=False)
            cursor = await conn.execute(
                "SELECT record, revision, time FROM job_states WHERE system = %s",
                (self.system,),
            )
            jobs = await _decoded(_live_jobs_of, await cursor.fetchall())
            events = await self._events(conn, 0, history)
        return Snapshot(stream, jobs, events)

    async def since(self, revision: int) -> tuple[StreamState, list[JobEvent]]:
        """Events committed after `revision` (no lock: a follower catching up)."""
        conn = await self._connection()
        async with conn.transaction():
            await conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
            stream = await self._stream(conn, lock=False)
            events = await self._events(conn, revision)
        return stream, events

    async def finished_since(self, stored: int) -> list[tuple[int, str]]:
        """Final records of ended jobs the poller archived after `stored` (state/job_archive.py
        writes them), oldest first: (stored, text) rows."""
        conn = await self._connection()
        cursor = await conn.execute(
            "SELECT stored, record FROM finished_jobs WHERE system = %s AND stored > %s "
            "ORDER BY stored",
            (self.system, stored),
        )
        return [(int(s), str(r)) for s, r in await cursor.fetchall()]

    async def begin(self, revision: int) -> tuple[StreamState, list[JobEvent]]:
        """Open the write transaction: lock the stream, return what others committed after
        `revision`. Must be followed by `commit` or `rollback`."""
        conn = await self._connection()
        await conn.execute("BEGIN")
        try:
            stream = await self._stream(conn, lock=True)
            return stream, await self._events(conn, revision)
        except BaseException:
            await self.rollback()
            raise

    async def commit(
        self,
        events: Sequence[JobEvent],
        removed: Sequence[str],
        polled: Poll | None,
    ) -> None:
        """Write `events` and the jobs' current records, forget `removed` jobs, note a
        poll (reachable, reason) if one was made, and ring the other replicas."""
        assert self._conn is not None
        conn = self._conn
        try:
            await self._write(conn, events, removed, polled)
            await conn.execute("COMMIT")
        except BaseException:
            await self.rollback()
            raise

    async def _write(
        self,
        conn: psycopg.AsyncConnection[Any],
        events: Sequence[JobEvent],
        removed: Sequence[str],
        polled: Poll | None,
    ) -> None:
        async with conn.cursor() as cursor:
            if events:
                await cursor.executemany(
                    "INSERT INTO job_events VALUES (%s, %s, %s, %s, %s, %s, %s)",
                    [(self.system, e.revision, e.kind, e.previous_state, e.job.job_id,
                      encode_job(e.job), e.time.timestamp()) for e in events],
                )  # fmt: skip
                await cursor.executemany(
                    "INSERT INTO job_states VALUES (%s, %s, %s, %s, %s) ON CONFLICT (system,"
                    " job_id) DO UPDATE SET revision = excluded.revision, time = excluded.time,"
                    " record = excluded.record",
                    [(self.system, e.job.job_id, e.revision, e.time.timestamp(),
                      encode_job(e.job)) for e in events],
                )  # fmt: skip
            if removed:
                await cursor.execute(
                    "DELETE FROM job_states WHERE system = %s AND job_id = ANY(%s)",
                    (self.system, list(removed)),
                )
            if events:
                await cursor.execute(
                    "UPDATE job_streams SET revision = %s WHERE system = %s",
                    (events[-1].revision, self.system),
                )
            if polled is not None:
                since = polled.complete_since
                await cursor.execute(
                    "UPDATE job_streams SET polled_at = %s, reachable = %s, reason = %s, "
                    "complete_since = %s WHERE system = %s",
                    (time.time(), polled.reachable, polled.reason,
                     since.timestamp() if since else None, self.system),
                )  # fmt: skip
            if events:
                await self._prune(cursor, events[-1].revision)
                await cursor.execute("SELECT pg_notify(%s, %s)", (CHANNEL, self.system))

    async def _prune(self, cursor: psycopg.AsyncCursor[Any], revision: int) -> None:
        self._commits += 1
        if self._commits % PRUNE_EVERY == 0:
            await cursor.execute(
                "DELETE FROM job_events WHERE system = %s AND revision <= %s",
                (self.system, revision - self.keep),
            )

    async def rollback(self) -> None:
        if self._conn is not None and not self._conn.closed:
            try:
                await self._conn.execute("ROLLBACK")
            except psycopg.Error:
                await self._conn.close()  # reconnect at the next use
