"""The shared job journal on real PostgreSQL, without Slurm: writers take turns and never
publish a change twice, followers see the same revisions, a follower left behind the
pruned log reloads, and a commit PostgreSQL refuses leaves memory as it was."""

from __future__ import annotations

import asyncio
from pathlib import Path

import psycopg
import pytest

from hpcgate.server.config import WatchConfig
from hpcgate.server.events.hub import JobHub
from hpcgate.server.events.journal import Journal
from hpcgate.server.slurm.adapter import JobRecord
from hpcgate.server.state.store import StateStore

SETTINGS = WatchConfig(backfill=0, history_size=1000)


class ScriptedQueue:
    """What squeue would say: the test sets the jobs."""

    def __init__(self) -> None:
        self.jobs: dict[str, JobRecord] = {}

    async def queue_jobs(self, job_ids: object = (), users: object = ()) -> list[JobRecord]:
        return list(self.jobs.values())

    async def accounting_jobs(self, **_: object) -> list[JobRecord]:
        return []


def hub(dsn: str, queue: ScriptedQueue) -> JobHub:
    return JobHub("sys", queue, SETTINGS, None, Journal(dsn, "sys", 10_000))  # type: ignore[arg-type]


@pytest.fixture
def dsn(pg_dsn: str, tmp_path: Path) -> str:
    StateStore(tmp_path, pg_dsn, pool_size=2).close()  # the schema
    return pg_dsn


def journal_rows(dsn: str) -> list[tuple[int, str, str]]:
    with psycopg.connect(dsn) as db:
        return db.execute(
            "SELECT revision, kind, job_id FROM job_events WHERE system = 'sys' ORDER BY revision"
        ).fetchall()


async def test_two_pollers_at_once_publish_each_change_once_without_gaps(dsn: str) -> None:
    queue = ScriptedQueue()
    a, b = hub(dsn, queue), hub(dsn, queue)
    a.leading = b.leading = True  # a split brain: both poll
    for step in range(30):
        queue.jobs[str(step)] = JobRecord(job_id=str(step), state="PENDING", user="alice")
        if step >= 3:
            queue.jobs[str(step - 3)] = JobRecord(
                job_id=str(step - 3), state="RUNNING", user="alice"
            )
        await asyncio.gather(a.poll_queue(), b.poll_queue(), a.poll_queue())
    rows = journal_rows(dsn)
    assert [r[0] for r in rows] == list(range(1, len(rows) + 1))  # no gap
    created = [job for _, kind, job in rows if kind == "created"]
    assert sorted(created, key=int) == [str(i) for i in range(30)]  # each once
    changed = [job for _, kind, job in rows if kind == "state_changed"]
    assert sorted(changed, key=int) == [str(i) for i in range(27)]
    assert a.revision == b.revision == len(rows)
    for h in (a, b):
        assert h.journal is not None
        await h.journal.close()


async def test_a_follower_sees_the_pollers_events_with_the_same_revisions(dsn: str) -> None:
    queue = ScriptedQueue()
    poller, follower = hub(dsn, queue), hub(dsn, queue)
    poller.leading = True
    with follower.subscribe(lambda job: True) as watching:
        for i in range(5):
            queue.jobs[str(i)] = JobRecord(job_id=str(i), state="PENDING", user="bob")
            await poller.poll_queue()
        await follower.catch_up()
        seen = [watching.queue.get_nowait() for _ in range(watching.queue.qsize())]
    assert [(e.revision, e.job.job_id) for e in seen] == [
        (e.revision, e.job.job_id) for e in poller.history
    ]
    assert follower.jobs == poller.jobs and follower.fresh
    for h in (poller, follower):
        assert h.journal is not None
        await h.journal.close()


async def test_a_follower_behind_the_pruned_log_starts_from_the_jobs_table(dsn: str) -> None:
    queue = ScriptedQueue()
    poller, late = hub(dsn, queue), hub(dsn, queue)
    poller.leading = True
    for i in range(10):
        queue.jobs[str(i)] = JobRecord(job_id=str(i), state="PENDING", user="bob")
        await poller.poll_queue()
    with psycopg.connect(dsn, autocommit=True) as db:
        db.execute("DELETE FROM job_events WHERE revision <= 5")
    await late.catch_up()  # its revision 0 is behind the oldest kept: reload
    assert late.revision == poller.revision and late.jobs == poller.jobs
    for h in (poller, late):
        assert h.journal is not None
        await h.journal.close()


async def test_a_commit_postgresql_refuses_leaves_memory_as_committed(dsn: str) -> None:
    queue = ScriptedQueue()
    poller = hub(dsn, queue)
    poller.leading = True
    queue.jobs["1"] = JobRecord(job_id="1", state="PENDING", user="bob")
    await poller.poll_queue()
    with psycopg.connect(dsn, autocommit=True) as db:
        db.execute("ALTER TABLE job_events ADD CONSTRAINT refused CHECK (job_id <> 'poison')")
    with poller.subscribe(lambda job: True) as watching:
        queue.jobs["poison"] = JobRecord(job_id="poison", state="PENDING", user="bob")
        queue.jobs["1"] = JobRecord(job_id="1", state="RUNNING", user="bob")
        with pytest.raises(psycopg.errors.CheckViolation):
            await poller.poll_queue()
        assert watching.queue.empty()  # nothing uncommitted was delivered
    assert poller.revision == 1 and set(poller.jobs) == {"1"}
    assert poller.jobs["1"].state == "PENDING"
    del queue.jobs["poison"]
    await poller.poll_queue()  # the next poll publishes the change, once
    assert [r[1:] for r in journal_rows(dsn)] == [("created", "1"), ("state_changed", "1")]
    assert poller.journal is not None
    await poller.journal.close()
