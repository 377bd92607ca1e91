"""WatchJobs and ReadJobOutput on the real cluster, and the hub's bounded fan-out."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
from google.protobuf import duration_pb2

from conftest import bearer, cluster
from hpcgate.server.app import Gateway
from hpcgate.server.config import WatchConfig
from hpcgate.server.events.hub import JobHub, SlowConsumer
from hpcgate.server.slurm.adapter import JobRecord
from hpcgate.v1 import compute_pb2 as S
from hpcgate.v1 import compute_pb2_grpc

pytestmark = pytest.mark.slurm
EXEC = ("read", "execute")


@pytest.fixture
async def stub(gateway: Gateway) -> AsyncIterator[compute_pb2_grpc.ComputeServiceStub]:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{gateway.port}") as ch:
        yield compute_pb2_grpc.ComputeServiceStub(ch)


async def submit(stub, gateway, user: str, script: str, **options) -> S.Job:
    reply = await stub.SubmitJob(
        S.SubmitJobRequest(parent="systems/local", script=script, options=S.JobOptions(**options)),
        metadata=bearer(gateway, user, EXEC),
    )
    return reply.job


async def events_until(
    stream, job_id: str, final: int, timeout: float = 60
) -> list[S.WatchJobsResponse]:
    """Messages of `stream` until `job_id` reaches state `final`."""
    seen = []

    async def collect() -> None:
        while True:
            message = await stream.read()
            assert message is not grpc.aio.EOF
            seen.append(message)
            if (
                message.WhichOneof("kind") == "event"
                and message.event.job.job_id == job_id
                and message.event.state == final
            ):
                return

    await asyncio.wait_for(collect(), timeout)
    return seen


def job_events(messages, job_id: str) -> list[S.JobEvent]:
    return [
        m.event
        for m in messages
        if m.WhichOneof("kind") == "event" and m.event.job.job_id == job_id
    ]


async def test_watcher_sees_a_job_through_its_states_in_order(stub, gateway) -> None:
    stream = stub.WatchJobs(
        S.WatchJobsRequest(
            parent="systems/local", heartbeat_interval=duration_pb2.Duration(seconds=1)
        ),
        metadata=bearer(gateway, "alice"),
    )
    first = await stream.read()
    assert first.WhichOneof("kind") == "snapshot" and first.snapshot.last
    job = await submit(stub, gateway, "alice", "#!/bin/sh\nsleep 3\n", stdout_path="/dev/null")
    messages = await events_until(stream, job.job_id, S.JOB_STATE_COMPLETED)
    events = job_events(messages, job.job_id)
    states = [e.state for e in events]
    assert states[0] in (S.JOB_STATE_PENDING, S.JOB_STATE_RUNNING)
    assert S.JOB_STATE_RUNNING in states and states[-1] == S.JOB_STATE_COMPLETED
    assert states.index(S.JOB_STATE_RUNNING) < states.index(S.JOB_STATE_COMPLETED)
    revisions = [e.revision for e in events]
    assert revisions == sorted(revisions) and len(set(revisions)) == len(revisions)
    assert events[-1].previous_state in (S.JOB_STATE_RUNNING, S.JOB_STATE_COMPLETING)
    assert all(m.revision >= first.revision for m in messages)
    stream.cancel()


async def test_resume_after_a_disconnect_loses_nothing(stub, gateway) -> None:
    md = bearer(gateway, "bob")
    stream = stub.WatchJobs(S.WatchJobsRequest(parent="systems/local"), metadata=md)
    snapshot = await stream.read()
    last = snapshot.revision
    stream.cancel()
    # While disconnected: a job is created and finishes.
    job = await submit(stub, gateway, "bob", "#!/bin/sh\ntrue\n", stdout_path="/dev/null")
    hub = gateway.hubs["local"]
    for _ in range(60):
        record = hub.get(job.job_id)
        if record is not None and record.finished:
            break
        await asyncio.sleep(0.5)
    resumed = stub.WatchJobs(
        S.WatchJobsRequest(parent="systems/local", resume_from_revision=last), metadata=md
    )
    messages = await events_until(resumed, job.job_id, S.JOB_STATE_COMPLETED, timeout=10)
    assert all(m.WhichOneof("kind") != "snapshot" for m in messages)  # replay, no snapshot
    events = job_events(messages, job.job_id)
    assert events[0].type == S.JOB_EVENT_TYPE_CREATED
    assert all(e.revision > last for e in events)
    resumed.cancel()
    # A revision the server never had (or no longer has): told to resync, then a snapshot.
    stale = stub.WatchJobs(
        S.WatchJobsRequest(parent="systems/local", resume_from_revision=hub.revision + 1000),
        metadata=md,
    )
    assert (await stale.read()).WhichOneof("kind") == "resync_required"
    assert (await stale.read()).WhichOneof("kind") == "snapshot"
    stale.cancel()


async def test_stream_survives_a_controller_outage(stub, gateway, restore_slurmctld) -> None:
    job = await submit(stub, gateway, "alice", "#!/bin/sh\nsleep 4\n", stdout_path="/dev/null")
    stream = stub.WatchJobs(
        S.WatchJobsRequest(
            parent="systems/local",
            names=[job.name],
            heartbeat_interval=duration_pb2.Duration(seconds=1),
        ),
        metadata=bearer(gateway, "alice"),
    )
    assert (await stream.read()).WhichOneof("kind") == "snapshot"
    for _ in range(40):  # until it runs
        record = gateway.hubs["local"].get(job.job_id)
        if record is not None and record.state == "RUNNING":
            break
        await asyncio.sleep(0.25)
    await asyncio.to_thread(cluster, "stop", "slurmctld")
    kinds = []

    async def until_unreachable() -> None:
        while True:
            message = await stream.read()
            kinds.append(message.WhichOneof("kind"))
            if message.WhichOneof("kind") == "scheduler" and not message.scheduler.reachable:
                return

    await asyncio.wait_for(until_unreachable(), 20)
    await asyncio.sleep(5)  # the job ends while nobody can see it
    await asyncio.to_thread(cluster, "start", "slurmctld")
    messages = await events_until(stream, job.job_id, S.JOB_STATE_COMPLETED, timeout=60)
    assert any(m.WhichOneof("kind") == "scheduler" and m.scheduler.reachable for m in messages)
    stream.cancel()


async def test_follow_streams_output_in_order_until_the_job_ends(stub, gateway) -> None:
    marker = uuid.uuid4().hex[:8]
    out = f"/home/alice/follow-{marker}.out"
    job = await submit(
        stub,
        gateway,
        "alice",
        "#!/bin/bash\nfor i in 1 2 3 4 5; do echo line $i; sleep 0.4; done\n",
        stdout_path=out,
    )
    data = b""
    last = None
    async for message in stub.ReadJobOutput(
        S.ReadJobOutputRequest(name=job.name, follow=True), metadata=bearer(gateway, "alice")
    ):
        data += message.data
        last = message
    assert data.decode().splitlines() == [f"line {i}" for i in range(1, 6)]
    assert last is not None and last.eof and last.job_finished
    # From an offset, without follow; and bob may not read alice's output.
    tail = [
        m
        async for m in stub.ReadJobOutput(
            S.ReadJobOutputRequest(name=job.name, offset=-7), metadata=bearer(gateway, "alice")
        )
    ]
    assert b"".join(m.data for m in tail) == b"line 5\n"
    with pytest.raises(grpc.aio.AioRpcError) as e:
        async for _ in stub.ReadJobOutput(
            S.ReadJobOutputRequest(name=job.name), metadata=bearer(gateway, "bob")
        ):
            pass
    assert e.value.code() == grpc.StatusCode.PERMISSION_DENIED
    Path(out).unlink()


async def test_a_thousand_streams_share_one_poller_and_free_their_subscriptions(
    stub, gateway
) -> None:
    hub = gateway.hubs["local"]
    md = bearer(gateway, "alice")
    polls_before = hub.polls
    streams = [
        stub.WatchJobs(S.WatchJobsRequest(parent="systems/local"), metadata=md) for _ in range(1000)
    ]
    await asyncio.gather(*(s.read() for s in streams))
    assert hub.subscriber_count == 1000
    await asyncio.sleep(2)
    assert hub.polls - polls_before <= 4  # one poller at the floor rate, not one per stream
    for s in streams:
        s.cancel()
    for _ in range(100):
        if hub.subscriber_count == 0:
            break
        await asyncio.sleep(0.05)
    assert hub.subscriber_count == 0


class _NoSlurm:
    async def queue_jobs(self, job_ids=(), users=()):
        return []


async def test_a_slow_consumer_is_cut_off_not_buffered() -> None:
    hub = JobHub("t", _NoSlurm(), WatchConfig(stream_queue_size=10, history_size=100))  # type: ignore[arg-type]
    with hub.subscribe(lambda job: True) as sub:
        for i in range(50):
            hub.record(JobRecord(job_id=str(i), state="PENDING"))
        assert sub.queue.qsize() <= 10
        with pytest.raises(SlowConsumer):
            await sub.next(0.1)
    assert hub.subscriber_count == 0
    # The history is bounded too, and says when a revision has left it.
    for i in range(200):
        hub.record(JobRecord(job_id=f"x{i}", state="PENDING"))
    assert len(hub.history) == 100
    assert hub.events_since(1) is None
    assert [e.revision for e in hub.events_since(hub.revision - 3)] == [
        hub.revision - 2,
        hub.revision - 1,
        hub.revision,
    ]


async def test_a_slurmdbd_that_hangs_never_delays_queue_events(stub, gateway) -> None:
    """Accounting is read apart from the queue polls: with every sacct taking 30 s, a
    watcher still sees the job start and end as squeue shows them."""
    hub = gateway.hubs["local"]
    real = hub.adapter.accounting_jobs

    async def hanging(*args, **kwargs):  # type: ignore[no-untyped-def]
        await asyncio.sleep(30)
        return await real(*args, **kwargs)

    hub.adapter.accounting_jobs = hanging
    try:
        heartbeat = duration_pb2.Duration(seconds=1)
        stream = stub.WatchJobs(
            S.WatchJobsRequest(parent="systems/local", heartbeat_interval=heartbeat),
            metadata=bearer(gateway, "alice"),
        )
        assert (await stream.read()).WhichOneof("kind") == "snapshot"
        job = await submit(stub, gateway, "alice", "#!/bin/sh\nsleep 2\n", stdout_path="/dev/null")
        messages = await events_until(stream, job.job_id, S.JOB_STATE_COMPLETED, timeout=20)
        states = [e.state for e in job_events(messages, job.job_id)]
        assert S.JOB_STATE_RUNNING in states and states[-1] == S.JOB_STATE_COMPLETED
        stream.cancel()
    finally:
        hub.adapter.accounting_jobs = real
