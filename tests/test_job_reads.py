"""Reads served from the hub's shared state on the real cluster: revisions on every job,
a ListJobs revision that WatchJobs resumes from, ended jobs kept (and kept across a
restart), and inventory answered from the prober's last probe."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import grpc
import pytest

from conftest import bearer
from hpcgate.server.app import Gateway
from hpcgate.server.config import WatchConfig
from hpcgate.server.events.finished import CachedJob, FinishedJobs, decode, encode
from hpcgate.server.events.hub import JobHub
from hpcgate.server.slurm.adapter import JobRecord, JobStepRecord
from hpcgate.server.state.job_archive import JobArchive
from hpcgate.server.state.store import StateStore
from hpcgate.v1 import compute_pb2 as S
from hpcgate.v1 import compute_pb2_grpc

EXEC = ("read", "execute")


@pytest.fixture
async def stub(gateway: Gateway) -> AsyncIterator[compute_pb2_grpc.ComputeServiceStub]:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{gateway.port}") as ch:
        yield compute_pb2_grpc.ComputeServiceStub(ch)


async def until_state(stub, gateway, name: str, done, timeout: float = 60) -> S.Job:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        job = (await stub.GetJob(S.GetJobRequest(name=name), metadata=bearer(gateway, "alice"))).job
        if done(job) or asyncio.get_running_loop().time() > deadline:
            return job
        await asyncio.sleep(0.3)


@pytest.mark.slurm
async def test_jobs_carry_revisions_and_list_resumes_a_watch(stub, gateway) -> None:
    md = bearer(gateway, "alice", EXEC)
    submitted = (
        await stub.SubmitJob(
            S.SubmitJobRequest(
                parent="systems/local",
                script="#!/bin/sh\nsleep 1\n",
                request_id=f"reads-{datetime.now(UTC).timestamp()}",
                options=S.JobOptions(stdout_path="/dev/null", job_name="reads"),
            ),
            metadata=md,
        )
    ).job
    assert submitted.revision > 0 and submitted.HasField("updated_at")
    assert submitted.state == S.JOB_STATE_PENDING and submitted.job_name == "reads"
    # Read your write: the new job is there at once, with the same revision.
    got = (await stub.GetJob(S.GetJobRequest(name=submitted.name), metadata=md)).job
    assert got.job_id == submitted.job_id and got.revision >= submitted.revision

    listed = await stub.ListJobs(S.ListJobsRequest(parent="systems/local"), metadata=md)
    mine = next(j for j in listed.jobs if j.job_id == submitted.job_id)
    # The list's revision is taken before its jobs are read: a job that changed meanwhile
    # (Slurm's hooks make that a matter of milliseconds) is newer than it, and the watch
    # resumed from it replays that change, so there is no gap.
    assert listed.revision > 0 and mine.revision > 0 and mine.HasField("updated_at")
    # Resuming from the list's revision replays only what happened after it.
    stream = stub.WatchJobs(
        S.WatchJobsRequest(
            parent="systems/local", names=[submitted.name], resume_from_revision=listed.revision
        ),
        metadata=md,
    )
    seen = []
    while True:
        message = await asyncio.wait_for(stream.read(), 60)
        assert message.WhichOneof("kind") in ("event", "heartbeat", "scheduler")
        if message.WhichOneof("kind") == "event":
            assert message.revision > listed.revision
            assert message.event.job.revision == message.revision
            assert message.event.job.updated_at == message.event.time
            seen.append(message.event.state)
            if message.event.state == S.JOB_STATE_COMPLETED:
                break
    stream.cancel()
    assert S.JOB_STATE_COMPLETED in seen

    done = await until_state(stub, gateway, submitted.name, lambda j: j.steps and j.end_time)
    assert done.state == S.JOB_STATE_COMPLETED and done.exit_code == 0
    assert "batch" in [s.step_id for s in done.steps] and done.revision >= listed.revision
    # Ended, settled: reading it again costs Slurm nothing.
    hub = gateway.hubs["local"]
    calls = hub.read_accounting_calls
    for _ in range(20):
        again = (await stub.GetJob(S.GetJobRequest(name=submitted.name), metadata=md)).job
        assert again == done
    assert hub.read_accounting_calls == calls


@pytest.mark.slurm
async def test_inventory_comes_from_the_last_probe(stub, gateway) -> None:
    md = bearer(gateway, "alice")
    prober = gateway.probers["local"]
    known = prober.fresh_inventory()
    assert known is not None
    partitions = (
        await stub.ListPartitions(S.ListPartitionsRequest(parent="systems/local"), metadata=md)
    ).partitions
    assert {p.partition for p in partitions} == {p.name for p in known.partitions}
    nodes = (await stub.ListNodes(S.ListNodesRequest(parent="systems/local"), metadata=md)).nodes
    # The figures are the probe's, stamped with when the probe read them.
    read_at = known.read_at.replace(microsecond=known.read_at.microsecond // 1000 * 1000)
    for item in [*partitions, *nodes]:
        assert abs(item.updated_at.ToDatetime(UTC) - read_at) < timedelta(milliseconds=1)
    await stub.ListReservations(S.ListReservationsRequest(parent="systems/local"), metadata=md)


# -- the finished-job cache, its bounds and its archive ------------------------------------


def ended(job_id: str, user: str = "alice", submitted: datetime | None = None) -> JobRecord:
    now = datetime.now(UTC)
    return JobRecord(
        job_id=job_id,
        user=user,
        state="COMPLETED",
        submit_time=submitted or now,
        end_time=now,
        elapsed_seconds=3,
        state_flags=("X",),
        allocated_tres={"cpu": 1},
        steps=(JobStepRecord("batch", start_time=now, end_time=now, allocated_tres={"cpu": 1}),),
    )


def test_cache_is_bounded_and_its_complete_window_moves_with_what_it_drops() -> None:
    cache = FinishedJobs(capacity=3)
    start = datetime.now(UTC) - timedelta(hours=1)
    cache.complete_since = start
    for i in range(5):
        cache.put(CachedJob(ended(str(i), submitted=start + timedelta(minutes=i)), i, start, True))
    assert len(cache) == 3 and cache.get("0") is None and cache.get("4") is not None
    assert cache.complete_since is not None and cache.complete_since > start + timedelta(minutes=1)
    assert {e.record.job_id for e in cache.of_users(["alice"])} == {"2", "3", "4"}
    cache.remove("3")
    assert {e.record.job_id for e in cache.of_users(None)} == {"2", "4"}
    task = dataclasses.replace(ended("9"), array_job_id=7, array_task_id=2)
    cache.put(CachedJob(task, 1, start, True))
    found = cache.find("7_2")
    assert found is not None and found.record.job_id == "9" and cache.find("7_3") is None


def test_encoded_records_round_trip_and_unknown_fields_are_ignored() -> None:
    entry = CachedJob(ended("5"), 12, datetime.now(UTC), True)
    assert decode(encode(entry)) == entry
    text = encode(entry).replace('"job_id":"5"', '"job_id":"5","from_the_future":1')
    assert decode(text) == entry
    with pytest.raises((ValueError, KeyError, TypeError)):
        decode('{"record": {}}')


async def test_ended_jobs_survive_a_restart(tmp_path: Path) -> None:
    store = StateStore(tmp_path)

    class NoSlurm:
        async def accounting_jobs(self, *args: object, **kwargs: object) -> list[JobRecord]:
            raise AssertionError("a restarted hub must answer from its archive")

    settings = WatchConfig(backfill=0, finished_cache_size=100)
    first = JobHub("local", NoSlurm(), settings, JobArchive(store, "local", 100))  # type: ignore[arg-type]
    first.record(dataclasses.replace(ended("41"), state="RUNNING"))
    first.record(ended("41"))
    first._settle([first.view("41")])  # type: ignore[list-item]
    await asyncio.sleep(0.2)  # the archive write runs in a thread
    second = JobHub("local", NoSlurm(), settings, JobArchive(store, "local", 100))  # type: ignore[arg-type]
    await second.load_archive()
    view = second.view("41")
    assert view is not None and view.record == first.view("41").record  # type: ignore[union-attr]
    assert view.has_steps and view.updated_at is not None
    with store.connect() as db:
        db.execute("UPDATE finished_jobs SET record = 'not json'")
    third = JobHub("local", NoSlurm(), settings, JobArchive(store, "local", 100))  # type: ignore[arg-type]
    await third.load_archive()  # a row it cannot read is skipped, not fatal
    assert third.view("41") is None
