"""Partitions, nodes, reservations and job reads against the real local Slurm 22.05
(scripts/cluster.sh: node `hostname -s` with 8 CPUs, partitions debug (1 h, default) and
long (2 days), MinJobAge=15 s, users alice and bob)."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest

from conftest import require
from hpcgate.server.api.convert import inventory
from hpcgate.server.compute.jobs import JobReader
from hpcgate.server.config import SlurmConfig, WatchConfig
from hpcgate.server.events.hub import JobHub
from hpcgate.server.slurm.adapter import JobRecord
from hpcgate.server.slurm.cli_adapter import CommandLineAdapter
from hpcgate.v1 import compute_pb2

pytestmark = pytest.mark.slurm
SYSTEM = "local"


def node_name() -> str:
    return subprocess.run(["hostname", "-s"], capture_output=True, text=True).stdout.strip()


def sbatch(user: str, *args: str) -> str:
    """Submit as `user` (output discarded); the job id."""
    result = subprocess.run(
        ["runuser", "-u", user, "--", "sbatch", "--parsable", "-D", "/tmp", "-o", "/dev/null",
         *args],
        capture_output=True, text=True, timeout=30, check=True,
    )  # fmt: skip
    return result.stdout.strip().split(";")[0]


def scancel(*job_ids: str) -> None:
    subprocess.run(["scancel", *job_ids], capture_output=True, timeout=30)


@pytest.fixture
async def adapter(slurm_cluster: None) -> AsyncIterator[CommandLineAdapter]:
    require(shutil.which("runuser") is not None, "runuser is needed to submit as alice/bob")
    yield CommandLineAdapter(SlurmConfig())


class Reads:
    """JobReader's answers as plain records, straight from Slurm or through a polled hub
    (the server's way: one poll before each read stands in for the poller's interval)."""

    def __init__(self, adapter: CommandLineAdapter, hub: JobHub | None) -> None:
        self.reader = JobReader(adapter, hub)
        self.hub = hub

    async def _sync(self) -> None:
        if self.hub is not None:
            await self.hub.poll_once()

    async def get(self, job_id: str) -> JobRecord | None:
        await self._sync()
        view = await self.reader.get(job_id)
        return None if view is None else view.record

    async def list(
        self, users: list[str] | None, start: datetime, end: datetime | None
    ) -> list[JobRecord]:
        await self._sync()
        return [v.record for v in await self.reader.list(users, start, end)]

    async def find_by_comment(self, user: str, comment: str) -> str | None:
        return await self.reader.find_by_comment(user, comment)


@pytest.fixture(params=["slurm", "hub"])
def reads(request: pytest.FixtureRequest, adapter: CommandLineAdapter) -> Reads:
    if request.param == "slurm":
        return Reads(adapter, None)
    return through_a_hub(adapter)


def through_a_hub(adapter: CommandLineAdapter) -> Reads:
    settings = WatchConfig(backfill=3600.0, accounting_interval=0.1)
    return Reads(adapter, JobHub(SYSTEM, adapter, settings))


async def test_list_partitions(adapter: CommandLineAdapter) -> None:
    partitions = {p.partition: p for p in await inventory.list_partitions(adapter, SYSTEM)}
    assert {"debug", "long"} <= set(partitions)
    debug, long = partitions["debug"], partitions["long"]
    assert debug.is_default and not long.is_default
    assert debug.name == "systems/local/partitions/debug" and debug.system == SYSTEM
    assert debug.state == compute_pb2.PARTITION_STATE_UP
    assert debug.max_time.seconds == 3600 and long.max_time.seconds == 2 * 86400
    assert debug.default_time.seconds == 3600  # DefaultTime=NONE: the maximum applies
    assert debug.total_cpus == long.total_cpus == 8 and debug.total_nodes == 1
    assert debug.idle_nodes + debug.allocated_nodes + debug.unavailable_nodes == 1
    assert debug.idle_cpus + debug.allocated_cpus + debug.unavailable_cpus == 8
    assert debug.node_list == node_name() and debug.updated_at.seconds > 0
    assert not debug.allowed_accounts and not debug.allowed_qos and debug.max_nodes == 0


async def test_list_nodes(adapter: CommandLineAdapter) -> None:
    (node,) = await inventory.list_nodes(adapter, SYSTEM)
    assert node.node == node_name() and node.name == f"systems/local/nodes/{node.node}"
    assert node.cpus == 8 and node.real_memory_mib == 8000
    assert {"debug", "long"} <= set(node.partitions)
    assert node.sockets * node.cores_per_socket * node.threads_per_core == node.cpus
    assert node.state not in (compute_pb2.NODE_STATE_UNSPECIFIED, compute_pb2.NODE_STATE_OTHER)
    assert node.idle_cpus + node.allocated_cpus <= node.cpus and node.architecture
    assert node.boot_time.seconds > 0 and node.raw_state


async def test_list_reservations(adapter: CommandLineAdapter) -> None:
    name = f"hpcgate-test-{os.getpid()}"
    # Far enough ahead not to hold back other tests' jobs (debug allows 1 hour).
    subprocess.run(
        ["scontrol", "create", "reservation", f"reservationname={name}",
         "starttime=now+30days", "duration=60", f"nodes={node_name()}", "users=alice",
         "flags=maint"],
        capture_output=True, text=True, timeout=30, check=True,
    )  # fmt: skip
    try:
        reservations = await inventory.list_reservations(adapter, SYSTEM)
        found = [r for r in reservations if r.reservation == name]
        assert len(found) == 1
        r = found[0]
        assert r.name == f"systems/local/reservations/{name}"
        assert r.state == compute_pb2.RESERVATION_STATE_INACTIVE
        assert list(r.users) == ["alice"] and "MAINT" in r.flags and not r.accounts
        assert r.duration.seconds == 3600 and r.end_time.seconds - r.start_time.seconds == 3600
        assert r.start_time.ToDatetime(UTC) > datetime.now(UTC) + timedelta(days=29)
        assert r.node_list == node_name() and r.node_count == 1 and r.core_count == 0
        assert r.tres["cpu"] == 8
    finally:
        subprocess.run(["scontrol", "delete", f"reservationname={name}"], timeout=30)
    assert name not in {r.reservation for r in await inventory.list_reservations(adapter, SYSTEM)}


async def test_get_and_list_live_jobs(reads: Reads) -> None:
    reader = reads
    before = datetime.now(UTC) - timedelta(seconds=2)
    running = sbatch("alice", "-J", "live", "--wrap", "sleep 30")
    waiting = sbatch("alice", "--begin=now+1hour", "--wrap", "true")
    try:
        job = await reader.get(running)
        assert job is not None and job.job_id == running
        assert job.state in {"PENDING", "RUNNING", "CONFIGURING"}
        assert job.user == "alice" and job.account == "alpha" and job.partition == "debug"
        assert job.job_name == "live" and job.time_limit_seconds == 3600
        assert job.submit_time is not None and job.submit_time >= before
        held = await reader.get(waiting)
        assert held is not None and held.state == "PENDING" and held.reason == "BeginTime"
        assert held.source == "queue"  # pending: answered from the queue alone
        if reads.hub is not None:  # running: its accounting came with the poll
            await asyncio.sleep(0.5)
            job = await reader.get(running)
            assert job is not None
            assert job.state != "RUNNING" or "batch" in [s.step_id for s in job.steps]
        # Jobs that have not ended are listed even when submitted before the window.
        later = datetime.now(UTC) + timedelta(minutes=5)
        listed = {j.job_id for j in await reader.list(["alice"], later, None)}
        assert {running, waiting} <= listed
        assert await reader.get("999999999") is None
        with pytest.raises(ValueError):
            await reader.get("12.batch")
    finally:
        scancel(running, waiting)
    cancelled = await reader.get(running)
    assert cancelled is not None and cancelled.state in {"CANCELLED", "COMPLETING"}


async def wait_until_gone(adapter: CommandLineAdapter, job_ids: set[str]) -> None:
    """Until the controller has forgotten the jobs (MinJobAge), so only sacct knows them."""
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        queued = await adapter.queue_jobs(users=["alice", "bob"])
        if not {j.job_id for j in queued} & job_ids and not any(
            str(j.array_job_id) in job_ids for j in queued
        ):
            return
        await asyncio.sleep(2)
    pytest.fail(f"jobs {sorted(job_ids)} still in the queue after 90 s")


async def test_jobs_after_they_left_the_queue(adapter: CommandLineAdapter) -> None:
    """Straight from Slurm and through a polled hub, on the same jobs: waiting for Slurm
    to forget them (MinJobAge) takes half a minute, so it is done once for both."""
    both = [
        Reads(adapter, None),
        Reads(
            adapter, JobHub(SYSTEM, adapter, WatchConfig(backfill=3600.0, accounting_interval=0.1))
        ),
    ]
    before = datetime.now(UTC) - timedelta(seconds=2)
    comment = f"hpcgate-test-{os.getpid()}-{time.time_ns()}"
    ok = sbatch("alice", f"--comment={comment}", "--wrap", "true")
    failed = sbatch("alice", "--wrap", "exit 3")
    array = sbatch("alice", "--array=0-2", "--wrap", "true")
    stepped = sbatch("alice", "-n", "2", "--wrap", "srun true; srun true")
    other = sbatch("bob", "--wrap", "true")
    # Still in the queue: the comment is found there.
    for reads in both:
        assert await reads.find_by_comment("alice", comment) == ok

    await wait_until_gone(adapter, {ok, failed, array, stepped, other})
    for reads in both:
        await check_ended_jobs(reads, before, comment, ok, failed, array, stepped, other)


async def check_ended_jobs(
    reads: Reads, before: datetime, comment: str,
    ok: str, failed: str, array: str, stepped: str, other: str,
) -> None:  # fmt: skip
    reader = reads

    done = await reader.get(ok)
    assert done is not None and done.source == "accounting"
    assert (done.state, done.exit_code, done.signal) == ("COMPLETED", 0, 0)
    assert done.end_time is not None and done.batch_host == node_name()
    assert "batch" in [s.step_id for s in done.steps]

    bad = await reader.get(failed)
    assert bad is not None and (bad.state, bad.exit_code) == ("FAILED", 3)

    task = await reader.get(f"{array}_1")
    assert task is not None and task.state == "COMPLETED"
    assert (task.array_job_id, task.array_task_id) == (int(array), 1)
    last = await reader.get(array)  # the array's own id is one of its tasks
    assert last is not None and last.job_id == array and last.array_job_id == int(array)

    steps = await reader.get(stepped)
    assert steps is not None and steps.state == "COMPLETED"
    assert {"batch", "0", "1"} <= {s.step_id for s in steps.steps}
    assert next(s for s in steps.steps if s.step_id == "0").ntasks == 2

    assert await reader.find_by_comment("alice", comment) == ok  # now from accounting
    assert await reader.find_by_comment("alice", "no-such-comment") is None

    mine = await reader.list(["alice"], before, None)
    ids = {j.job_id for j in mine}
    assert {ok, failed, stepped} <= ids and other not in ids
    assert {j.user for j in mine} == {"alice"}
    assert len([j for j in mine if j.array_job_id == int(array)]) == 3
    assert [int(j.job_id) for j in mine] == sorted((int(j.job_id) for j in mine), reverse=True)
    everyone = {j.job_id for j in await reader.list(None, before, None)}
    assert {ok, other} <= everyone
    # A window that ends before the submissions holds none of these (ended) jobs.
    earlier = await reader.list(["alice"], before - timedelta(hours=1), before)
    assert not {ok, failed} & {j.job_id for j in earlier}
    if reads.hub is not None:
        # Ended jobs are final: reading them again costs Slurm nothing.
        calls = reads.hub.read_accounting_calls
        for job_id in (ok, failed, f"{array}_1", stepped):
            again = await reads.reader.get(job_id)
            assert again is not None and again.record.finished and again.has_steps
        assert reads.hub.read_accounting_calls == calls
