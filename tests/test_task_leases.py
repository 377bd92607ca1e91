"""Tasks in cluster mode: leases, fencing, the reaper, and CancelTask and WatchTask from
any replica.

The store's lease semantics are checked on both backends; the replicas are two
TaskRunners with different owners, each with a StateStore of its own on one real
PostgreSQL database (a fresh one per test), as two servers would be. Leases are one
second long here, so a frozen replica loses its task within about 1.3 s.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from postgres import States, open_backend
from test_tasks import FAST, wait_for

from hpcgate.server.api.tasks import TasksServicer
from hpcgate.server.auth.caller import Caller, reset_caller, set_caller
from hpcgate.server.state.store import StateStore
from hpcgate.server.tasks import (
    NewTask,
    Progress,
    SqlTaskStore,
    TaskContext,
    TaskQuery,
    TaskRecord,
    TaskRunner,
    TaskState,
)
from hpcgate.v1 import tasks_pb2 as T

STEPS = "test.steps"  # resumable: one checkpoint per step
ONESHOT = "test.steps-oneshot"  # the same, not resumable
LEASED = replace(FAST, lease_seconds=1.0)


# -- the store's leases, on both backends ---------------------------------------------


@pytest.fixture(params=["sqlite", "postgresql"])
def backend(request: pytest.FixtureRequest) -> Iterator[States]:
    yield from open_backend(request)


def pending(store: SqlTaskStore, user: str = "alice", kind: str = STEPS, **kw: Any) -> TaskRecord:
    record, _ = store.create(
        NewTask(user=user, kind=kind, system="local", request={"steps": 1}, **kw),
        max_unfinished_per_user=1000,
        request_id_ttl=60,
    )
    return record


def test_a_claim_is_leased_and_fences_every_later_write(backend: States, tmp_path: Path) -> None:
    store = backend.tasks(tmp_path)
    first, second = pending(store), pending(store)
    claimed = store.claim_next("a", 30, 5, kinds=[STEPS])
    assert [r.id for r in claimed] == [first.id, second.id]  # oldest first
    assert all(r.state == TaskState.RUNNING and r.lease_owner == "a" for r in claimed)
    assert all(r.attempts == 1 and r.revision == 2 and r.lease_until for r in claimed)
    assert store.claim_next("b", 30, 5, kinds=[STEPS]) == []
    old = claimed[0]
    until = old.lease_until
    assert until is not None
    assert timedelta(seconds=29) < until - datetime.now(UTC) <= timedelta(seconds=30)

    # Renewal: one statement for all, telling which are held and which were cancelled.
    store.request_cancel(second.id)
    tokens = {r.id: r.lease_token for r in claimed}
    assert store.renew("a", tokens, 60) == {first.id: False, second.id: True}
    assert store.renew("b", tokens, 60) == {}  # not b's
    renewed = store.get(first.id)
    assert renewed is not None and renewed.lease_until and renewed.lease_until > until
    assert renewed.revision == old.revision  # a renewal is no change to watchers

    # Another runner takes the task over (here: it was requeued and claimed again).
    assert store.requeue(old.id, old.lease_token, Progress(files_done=1)) is not None
    new = store.mark_running(old.id, "b", 30)
    assert new is not None and new.lease_token > old.lease_token and new.attempts == 2
    before = store.get(old.id)
    # a's late writes all change nothing.
    assert store.update_progress(old.id, old.lease_token, Progress(files_done=9)) is None
    assert store.save_checkpoint(old.id, old.lease_token, {"step": 9}, Progress()) is None
    assert store.requeue(old.id, old.lease_token) is None
    assert store.finish(old.id, TaskState.FAILED, token=old.lease_token) is None
    assert store.renew("a", {old.id: old.lease_token}, 60) == {}
    assert store.get(old.id) == before
    assert store.load_checkpoint(old.id) is None
    assert store.finish(old.id, TaskState.SUCCEEDED, token=new.lease_token) is not None


def test_claims_pass_by_other_kinds_users_and_systems(backend: States, tmp_path: Path) -> None:
    store = backend.tasks(tmp_path)
    other_kind = pending(store, kind="test.other")
    bob = pending(store, "bob")
    alice = pending(store, "alice")
    assert store.claim_next("a", 30, 5, kinds=[STEPS], skip_users=["bob"]) == [store.get(alice.id)]
    assert store.claim_next("a", 30, 5, kinds=[STEPS], skip_systems=["local"]) == []
    assert store.claim_next("a", 30, 5, kinds=[]) == []
    assert [r.id for r in store.claim_next("a", 30, 5, kinds=[STEPS])] == [bob.id]
    unclaimed = store.get(other_kind.id)
    assert unclaimed is not None and unclaimed.state == TaskState.PENDING


def test_reap_takes_over_expired_leases_only_once(backend: States, tmp_path: Path) -> None:
    store = backend.tasks(tmp_path)
    live, dead = pending(store), pending(store)
    assert store.mark_running(live.id, "a", 30) is not None
    gone = store.mark_running(dead.id, "a", 0.001)
    assert gone is not None
    time.sleep(0.01)
    reaped = store.reap("b", 30)
    assert [r.id for r in reaped] == [dead.id]
    taken = reaped[0]
    assert taken.state == TaskState.RUNNING and taken.lease_owner == "b"
    assert taken.lease_token > gone.lease_token and taken.attempts == 1
    assert store.reap("c", 30) == []  # a second reaper finds nothing
    assert store.renew("a", {dead.id: gone.lease_token}, 30) == {}  # the old owner lost it
    # Ending a PENDING task is conditional on PENDING; a RUNNING one needs its lease.
    assert store.finish(dead.id, TaskState.CANCELLED, token=None) is None
    assert store.requeue(dead.id, taken.lease_token) is not None
    ended = store.finish(dead.id, TaskState.CANCELLED, token=None)
    assert ended is not None and ended.state == TaskState.CANCELLED


def test_the_postgresql_schema_has_leases(pg_dsn: str, tmp_path: Path) -> None:
    state = StateStore(tmp_path, pg_dsn, pool_size=2)
    try:
        with state.connect() as db:
            rows = db.execute(
                "SELECT column_name FROM information_schema.columns WHERE table_name = 'tasks'"
            ).fetchall()
        assert {"lease_owner", "lease_token", "lease_until"} <= {r[0] for r in rows}
        assert SqlTaskStore(state).shared
    finally:
        state.close()


def test_concurrent_claims_take_different_tasks(pg_dsn: str, tmp_path: Path) -> None:
    """FOR UPDATE SKIP LOCKED: claimers on separate connections never take one task twice
    and never wait for each other's rows."""
    states = [StateStore(tmp_path / n, pg_dsn, pool_size=2) for n in "abcd"]
    try:
        stores = [SqlTaskStore(s) for s in states]
        ids = {pending(stores[0], f"user{i % 7}").id for i in range(120)}
        taken: dict[str, list[TaskRecord]] = {}

        def claim(index: int) -> None:
            mine = taken.setdefault(f"r{index}", [])
            while records := stores[index].claim_next(f"r{index}", 30, 3, kinds=[STEPS]):
                mine.extend(records)

        threads = [threading.Thread(target=claim, args=(i,)) for i in range(len(stores))]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        claimed = [r.id for records in taken.values() for r in records]
        assert sorted(claimed) == sorted(ids)  # each exactly once
        tokens = [r.lease_token for records in taken.values() for r in records]
        assert len(set(tokens)) == len(tokens)  # PostgreSQL's tokens are unique
    finally:
        for state in states:
            state.close()


# -- two replicas on one PostgreSQL ---------------------------------------------------


@dataclass
class Journal:
    """What the handlers of both replicas did."""

    runs: list[tuple[str, str, int]] = field(default_factory=list)  # (owner, task, from)
    cancelled: list[tuple[str, str]] = field(default_factory=list)
    late: list[tuple[str, str]] = field(default_factory=list)  # writes after a freeze

    def runs_of(self, task_id: str) -> list[tuple[str, int]]:
        return [(owner, start) for owner, task, start in self.runs if task == task_id]


def steps_handler(
    owner: str, journal: Journal, freeze: asyncio.Event | None = None
) -> Callable[[TaskContext], Awaitable[dict[str, Any]]]:
    """request: {"steps": n, "delay": s, "freeze_at": k}. A checkpoint after each step.
    With `freeze`, the run stops before step k until the event is set: a replica that
    froze (a long GC pause, a stopped VM) and then wakes up and goes on writing."""

    async def handle(ctx: TaskContext) -> dict[str, Any]:
        request = ctx.task.request
        first = (ctx.checkpoint or {}).get("step", 0)
        journal.runs.append((owner, ctx.task.id, first))
        try:
            for step in range(first, request["steps"]):
                if freeze is not None and step == request.get("freeze_at"):
                    await freeze.wait()
                    journal.late.append((owner, ctx.task.id))
                    await ctx.save_checkpoint({"step": step + 1, "late": owner})
                await asyncio.sleep(request.get("delay", 0.0))
                await ctx.progress(files_done=step + 1, files_total=request["steps"])
                await ctx.save_checkpoint({"step": step + 1})
        except asyncio.CancelledError:
            journal.cancelled.append((owner, ctx.task.id))
            raise
        return {"by": owner, "from": first}

    return handle


@dataclass
class Replica:
    runner: TaskRunner
    store: SqlTaskStore


@pytest.fixture
async def cluster(pg_dsn: str, tmp_path: Path) -> AsyncIterator[Callable[..., Any]]:
    """Starts replicas (runners with an own StateStore each) on one fresh database."""
    started: list[TaskRunner] = []
    states: list[StateStore] = []

    async def replica(owner: str, journal: Journal, freeze: asyncio.Event | None = None) -> Replica:
        state = StateStore(tmp_path / owner, pg_dsn, pool_size=4)
        states.append(state)
        store = SqlTaskStore(state)
        runner = TaskRunner(store, LEASED, owner=owner)
        runner.register(STEPS, steps_handler(owner, journal, freeze), resumable=True)
        runner.register(ONESHOT, steps_handler(owner, journal, freeze))
        await runner.start()
        started.append(runner)
        return Replica(runner, store)

    yield replica
    for runner in started:
        await runner.stop()  # (again, for a test that stopped one: harmless)
    for state in states:
        state.close()


async def wait_record(
    store: SqlTaskStore, task_id: str, check: Callable[[TaskRecord], bool], timeout: float = 20
) -> TaskRecord:
    found: list[TaskRecord] = []

    async def reached() -> bool:
        record = await asyncio.to_thread(store.get, task_id)
        assert record is not None
        found[:] = [record]
        return check(record)

    await wait_for(reached, timeout, f"task {task_id}")
    return found[0]


async def test_each_task_runs_once_on_one_of_the_replicas(cluster: Any) -> None:
    journal = Journal()
    a, b = await cluster("replica-a", journal), await cluster("replica-b", journal)
    records = []
    for i in range(24):  # created on both, for several users (4 running per user each)
        runner = (a, b)[i % 2].runner
        record, _ = await runner.submit(
            user=f"user{i % 5}", kind=STEPS, system="local", request={"steps": 3, "delay": 0.02}
        )
        records.append(record)
    for record in records:
        done = await wait_record(a.store, record.id, lambda r: r.state.ended)
        assert done.state == TaskState.SUCCEEDED and done.attempts == 1
        assert done.result["by"] == done.lease_owner
    # Each handler ran exactly once, wherever it ran.
    assert sorted(task for _, task, _ in journal.runs) == sorted(r.id for r in records)
    assert {owner for owner, _, _ in journal.runs} <= {"replica-a", "replica-b"}
    assert not journal.cancelled
    assert a.runner.running_count == b.runner.running_count == 0


async def test_a_frozen_replica_loses_its_task_to_the_reaper(cluster: Any) -> None:
    journal = Journal()
    thaw = asyncio.Event()
    a = await cluster("replica-a", journal, thaw)
    record, _ = await a.runner.submit(
        user="alice", kind=STEPS, system="local",
        request={"steps": 40, "delay": 0.05, "freeze_at": 3},
    )  # fmt: skip
    at_freeze = await wait_record(
        a.store, record.id, lambda r: r.progress.files_done == 3 and r.lease_owner == "replica-a"
    )
    assert a.store.load_checkpoint(record.id) == {"step": 3}
    # Replica a freezes: none of its background work reaches the database any more (its
    # handler is stopped at the gate), so its lease runs out.
    a.store.renew = lambda owner, tokens, lease: dict.fromkeys(tokens, False)  # type: ignore[method-assign]
    a.store.claim_next = lambda *args, **kw: []  # type: ignore[method-assign]
    a.store.reap = lambda *args, **kw: []  # type: ignore[method-assign]
    b = await cluster("replica-b", journal)
    taken = await wait_record(
        b.store, record.id, lambda r: r.lease_owner == "replica-b" and r.progress.files_done >= 6
    )
    assert taken.state == TaskState.RUNNING and taken.attempts == 2

    # a wakes up while b runs the task, and writes on: refused, and its handler is
    # stopped without a further write.
    thaw.set()
    await wait_for(lambda: _true(("replica-a", record.id) in journal.cancelled), 5, "a to stop")
    assert ("replica-a", record.id) in journal.late
    now = b.store.get(record.id)
    assert now is not None and now.state == TaskState.RUNNING
    assert (now.lease_owner, now.lease_token) == ("replica-b", taken.lease_token)
    assert "late" not in b.store.load_checkpoint(record.id)
    assert a.runner.running_count == 0

    # b resumed it from a's last checkpoint and finishes it.
    done = await wait_record(b.store, record.id, lambda r: r.state.ended, timeout=15)
    assert done.state == TaskState.SUCCEEDED and done.lease_owner == "replica-b"
    assert done.result == {"by": "replica-b", "from": 3} and done.attempts == 2
    assert journal.runs_of(record.id) == [("replica-a", 0), ("replica-b", 3)]
    assert b.store.load_checkpoint(record.id) == {"step": 40}
    # The same writes straight through a's store, under a's old lease: all refused.
    token = at_freeze.lease_token
    assert a.store.save_checkpoint(record.id, token, {"step": 4}, Progress(files_done=4)) is None
    assert a.store.update_progress(record.id, token, Progress(files_done=4)) is None
    assert a.store.finish(record.id, TaskState.FAILED, token=token) is None
    assert a.store.requeue(record.id, token) is None
    assert a.store.get(record.id) == done
    assert a.store.load_checkpoint(record.id) == {"step": 40}


async def _true(value: bool) -> bool:
    return value


async def test_a_lease_lost_at_renewal_stops_the_handler_silently(cluster: Any) -> None:
    journal = Journal()
    a = await cluster("replica-a", journal)
    record, _ = await a.runner.submit(user="alice", kind=STEPS, request={"steps": 2, "delay": 60})
    await wait_record(a.store, record.id, lambda r: r.state == TaskState.RUNNING)
    await wait_for(lambda: _true(bool(journal.runs)), 5, "the handler to start")
    # Another runner takes the task over (as a reaper would once a's lease expired; again
    # if a's renewal came in between).
    reaped: list[TaskRecord] = []
    while not reaped:
        with a.store.state.connect() as db:
            db.execute("UPDATE tasks SET lease_until = 0 WHERE id = ?", (record.id,))
        reaped = a.store.reap("intruder", 30)
    (taken,) = reaped
    await wait_for(lambda: _true(bool(journal.cancelled)), 3, "a's renewal to notice")
    await asyncio.sleep(0.2)
    assert journal.cancelled == [("replica-a", record.id)]
    assert a.runner.running_count == 0
    assert a.store.get(record.id) == taken  # a wrote nothing after losing the task


async def test_a_pending_task_is_cancelled_from_any_replica(cluster: Any) -> None:
    journal = Journal()
    a = await cluster("replica-a", journal)
    record = pending(a.store, kind="test.nobody-runs-this")
    cancelled = await a.runner.cancel(record.id, "alice")
    assert cancelled is not None and cancelled.state == TaskState.CANCELLED
    assert await a.runner.cancel(record.id, "bob") is None


async def test_a_task_of_a_kind_that_cannot_resume_fails_when_its_replica_vanishes(
    cluster: Any,
) -> None:
    journal = Journal()
    thaw = asyncio.Event()
    a = await cluster("replica-a", journal, thaw)
    record, _ = await a.runner.submit(
        user="alice", kind=ONESHOT, request={"steps": 5, "delay": 0.01, "freeze_at": 2}
    )
    await wait_record(a.store, record.id, lambda r: r.progress.files_done == 2)
    a.store.renew = lambda owner, tokens, lease: dict.fromkeys(tokens, False)  # type: ignore[method-assign]
    a.store.reap = lambda *args, **kw: []  # type: ignore[method-assign]
    b = await cluster("replica-b", journal)
    failed = await wait_record(b.store, record.id, lambda r: r.state.ended, timeout=10)
    assert failed.state == TaskState.FAILED and failed.error is not None
    assert failed.error.code == 10  # ABORTED
    assert "lease expired" in failed.error.message and "cannot be resumed" in failed.error.message
    assert journal.runs_of(record.id) == [("replica-a", 0)]
    thaw.set()


def as_caller(user: str) -> Any:
    now = datetime.now(UTC)
    return set_caller(Caller(user, "test", frozenset({"read", "write"}), "test", "test", now,
                             now + timedelta(hours=1), "t"))  # fmt: skip


async def watched(stream: AsyncIterator[T.WatchTaskResponse]) -> list[T.Task]:
    """The tasks a WatchTask stream sends until it ends."""
    return [m.task async for m in stream if m.WhichOneof("kind") == "task"]


async def progressed(stream: AsyncIterator[T.WatchTaskResponse], than: int) -> T.Task:
    """The next task a WatchTask stream sends with more than `than` files done."""
    async for message in stream:
        if message.WhichOneof("kind") == "task" and message.task.progress.files_done > than:
            return message.task
    raise AssertionError("the stream ended")


async def test_cancel_and_watch_from_another_replica(cluster: Any) -> None:
    journal = Journal()
    a = await cluster("replica-a", journal)
    record, _ = await a.runner.submit(
        user="alice", kind=STEPS, request={"steps": 10_000, "delay": 0.05}
    )
    running = await wait_record(a.store, record.id, lambda r: r.progress.files_done >= 2)
    # A replica starting now leaves a task under a live lease alone.
    b = await cluster("replica-b", journal)
    await asyncio.sleep(0.5)
    still = b.store.get(record.id)
    assert still is not None and still.state == TaskState.RUNNING
    assert (still.lease_owner, still.lease_token) == (running.lease_owner, running.lease_token)

    service = TasksServicer(b.runner, LEASED, asyncio.Event())
    token = as_caller("alice")
    try:
        stream = service.WatchTask(T.WatchTaskRequest(name=record.name), None)
        first = await anext(stream)
        assert first.task.state == T.TASK_STATE_RUNNING
        # Progress made on a arrives through b's follower.
        await asyncio.wait_for(progressed(stream, first.task.progress.files_done), 3)
        started = time.monotonic()
        reply = await service.CancelTask(T.CancelTaskRequest(name=record.name), None)
        assert reply.task.cancel_requested and reply.task.state == T.TASK_STATE_RUNNING
        states = [t.state for t in await asyncio.wait_for(watched(stream), 5)]
        assert time.monotonic() - started < 2.5
    finally:
        reset_caller(token)
    assert states[-1] == T.TASK_STATE_CANCELLED
    assert ("replica-a", record.id) in journal.cancelled  # a's handler really stopped
    ended = b.store.get(record.id)
    assert ended is not None and ended.state == TaskState.CANCELLED
    assert ended.lease_owner == "replica-a"  # ended by the replica running it


async def test_watch_on_another_replica_sees_running_then_succeeded(cluster: Any) -> None:
    journal = Journal()
    a = await cluster("replica-a", journal)
    record, _ = await a.runner.submit(user="alice", kind=STEPS, request={"steps": 10, "delay": 0.1})
    b = await cluster("replica-b", journal)  # started after the task was claimed by a
    service = TasksServicer(b.runner, LEASED, asyncio.Event())
    token = as_caller("alice")
    try:
        with b.runner.watch("nonexistent"):  # the follower reads only the tasks that exist
            stream = service.WatchTask(T.WatchTaskRequest(name=record.name), None)
            tasks = await asyncio.wait_for(watched(stream), 10)
    finally:
        reset_caller(token)
    states = [t.state for t in tasks]
    assert T.TASK_STATE_RUNNING in states and states[-1] == T.TASK_STATE_SUCCEEDED
    assert states.index(T.TASK_STATE_RUNNING) < len(states) - 1
    assert set(states) <= {T.TASK_STATE_PENDING, T.TASK_STATE_RUNNING, T.TASK_STATE_SUCCEEDED}
    revisions = [t.update_time.ToNanoseconds() for t in tasks]
    assert revisions == sorted(revisions)
    assert tasks[-1].progress.files_done == 10
    assert [owner for owner, _, _ in journal.runs] == ["replica-a"]


async def test_one_request_id_on_two_replicas_at_once_gives_one_task(cluster: Any) -> None:
    journal = Journal()
    a, b = await cluster("replica-a", journal), await cluster("replica-b", journal)
    for n in range(10):
        request = {"steps": 1, "n": n}
        replies = await asyncio.gather(*(
            r.runner.submit(user="alice", kind=STEPS, request=request, request_id=f"req-{n}")
            for r in (a, b, a, b)
        ))  # fmt: skip
        assert len({record.id for record, _ in replies}) == 1
        assert sorted(created for _, created in replies) == [False, False, False, True]
    assert len(a.store.list_tasks("alice", TaskQuery(), 0, 100)) == 10


async def test_a_graceful_stop_hands_resumable_tasks_to_another_replica(cluster: Any) -> None:
    journal = Journal()
    a = await cluster("replica-a", journal)
    record, _ = await a.runner.submit(
        user="alice", kind=STEPS, request={"steps": 30, "delay": 0.05}
    )
    await wait_record(a.store, record.id, lambda r: r.progress.files_done >= 3)
    b = await cluster("replica-b", journal)
    await a.runner.stop()
    done = await wait_record(b.store, record.id, lambda r: r.state.ended, timeout=15)
    assert done.state == TaskState.SUCCEEDED and done.result["by"] == "replica-b"
    assert done.result["from"] >= 3
    assert [owner for owner, task, _ in journal.runs if task == record.id] == [
        "replica-a",
        "replica-b",
    ]
    assert journal.cancelled == [("replica-a", record.id)]
