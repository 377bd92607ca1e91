"""Slurm's hooks on the real controller (scripts/cluster.sh installs them): watchers
hear of job starts and ends within milliseconds of the hook's call, even when the poll
would wait 30 s; jobs run as ever when no gateway listens; a flood is coalesced.

The test listens beside the gateway (its own socket in the hooks' directory), so it
knows when Slurm called the hook for each job: the latency is measured from there.
"""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import threading
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import replace
from pathlib import Path

import grpc
import pytest

from conftest import GatewayFactory, bearer, fast_config
from hpcgate.server.app import Gateway
from hpcgate.server.slurm.hook import HOOK_DIR, Notice, parse_notice, send
from hpcgate.v1 import compute_pb2 as S
from hpcgate.v1 import compute_pb2_grpc

pytestmark = pytest.mark.slurm
EXEC = ("read", "execute")
SLOW_POLL = 30.0  # the poll alone would take up to this long to see a change
LATENCY = 0.2  # the bound from Slurm's hook call to the watcher


class Observer:
    """A socket in the hooks' directory: every notice Slurm's hook sends, as it comes
    (read by a thread: the kernel queues only net.unix.max_dgram_qlen datagrams)."""

    def __init__(self) -> None:
        self.path = Path(HOOK_DIR) / f"observer-{uuid.uuid4().hex[:8]}.sock"
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(self.path))
        os.chmod(self.path, 0o660)
        os.chown(self.path, -1, os.stat(HOOK_DIR).st_gid)
        self.notices: list[Notice] = []
        self.reader = threading.Thread(target=self._drain, daemon=True)
        self.reader.start()

    def _drain(self) -> None:
        while data := self.sock.recv(4096):
            if (notice := parse_notice(data)) is not None:
                self.notices.append(notice)

    def told(self, job_id: str, event: str) -> Notice | None:
        return next((n for n in self.notices if (n.job_id, n.event) == (job_id, event)), None)

    def close(self) -> None:
        self.sock.sendto(b"", str(self.path))  # wakes the reader, which stops
        self.reader.join(5)
        self.sock.close()
        self.path.unlink(missing_ok=True)


@pytest.fixture
async def hooked(slurm_cluster: None, gateway_factory: GatewayFactory, tmp_path: Path) -> Gateway:
    """A gateway whose poll would take 30 s: only the hooks can make it quick."""
    config = fast_config(tmp_path)
    watch = replace(config.watch, poll_floor=SLOW_POLL, poll_ceiling=SLOW_POLL)
    return await gateway_factory(replace(config, watch=watch))


@pytest.fixture
def observer(hooked: Gateway) -> Iterator[Observer]:
    seen = Observer()  # after the gateway: its start clears sockets nobody listens on
    yield seen
    seen.close()


@pytest.fixture
async def stub(hooked: Gateway) -> AsyncIterator[compute_pb2_grpc.ComputeServiceStub]:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{hooked.port}") as channel:
        yield compute_pb2_grpc.ComputeServiceStub(channel)


async def _until_state(stream: grpc.aio.UnaryStreamCall, job_id: str, states: set[int],
                       timeout: float = 20) -> tuple[S.JobEvent, float]:  # fmt: skip
    """The first event of `job_id` in one of `states`, and the wall time it arrived."""

    async def read() -> tuple[S.JobEvent, float]:
        while True:
            message = await stream.read()
            assert message is not grpc.aio.EOF
            if message.WhichOneof("kind") != "event":
                continue
            event = message.event
            if event.job.job_id == job_id and event.state in states:
                return event, time.time()

    return await asyncio.wait_for(read(), timeout)


def _sbatch(user: str, *args: str) -> str:
    done = subprocess.run(
        ["runuser", "-u", user, "--", "sbatch", "--parsable", "-o", "/dev/null", *args],
        capture_output=True, text=True, timeout=30, check=True,
    )  # fmt: skip
    return done.stdout.strip().split(";")[0]


def _latency(observer: Observer, job_id: str, event: str, arrived: float) -> float:
    notice = observer.told(job_id, event)
    assert notice is not None, f"Slurm's hook never told of {job_id} {event}"
    return arrived - notice.time


async def _watch(stub: compute_pb2_grpc.ComputeServiceStub, gateway: Gateway, user: str
                 ) -> grpc.aio.UnaryStreamCall:  # fmt: skip
    stream = stub.WatchJobs(S.WatchJobsRequest(parent="systems/local"),
                            metadata=bearer(gateway, user))  # fmt: skip
    first = await stream.read()
    assert first.WhichOneof("kind") == "snapshot"
    return stream


async def test_a_short_jobs_start_and_completion_arrive_within_200_ms(
    hooked: Gateway, stub: compute_pb2_grpc.ComputeServiceStub, observer: Observer
) -> None:
    stream = await _watch(stub, hooked, "alice")
    reply = await stub.SubmitJob(
        S.SubmitJobRequest(parent="systems/local", script="#!/bin/sh\nsleep 1\n",
                           options=S.JobOptions(stdout_path="/dev/null")),
        metadata=bearer(hooked, "alice", EXEC),
    )  # fmt: skip
    job_id = reply.job.job_id
    _, at = await _until_state(stream, job_id, {S.JOB_STATE_CONFIGURING, S.JOB_STATE_RUNNING})
    assert _latency(observer, job_id, "started", at) < LATENCY
    ended, at = await _until_state(stream, job_id, {S.JOB_STATE_COMPLETED})
    assert _latency(observer, job_id, "ended", at) < LATENCY
    # The event's time is the hook's call: when Slurm told of the change.
    told = observer.told(job_id, "ended")
    assert told is not None and abs(ended.time.ToDatetime().timestamp() - told.time) < 0.01
    stream.cancel()


async def test_scancel_outside_the_gateway_is_heard_within_200_ms(
    hooked: Gateway, stub: compute_pb2_grpc.ComputeServiceStub, observer: Observer
) -> None:
    stream = await _watch(stub, hooked, "bob")
    running = _sbatch("bob", "--wrap", "sleep 120")  # submitted outside the gateway too
    await _until_state(stream, running, {S.JOB_STATE_CONFIGURING, S.JOB_STATE_RUNNING})
    pending = _sbatch("bob", "--begin=now+1hour", "--wrap", "true")
    await asyncio.sleep(0.5)
    for job_id in (running, pending):
        subprocess.run(["runuser", "-u", "bob", "--", "scancel", job_id], check=True, timeout=30)
        _, at = await _until_state(stream, job_id, {S.JOB_STATE_CANCELLED})
        assert _latency(observer, job_id, "ended", at) < LATENCY
    stream.cancel()


def _sacct_state(job_id: str) -> str:
    done = subprocess.run(
        ["sacct", "-n", "-X", "-P", "-o", "State", "-j", job_id],
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    return done.stdout.strip()


async def test_jobs_run_and_end_normally_with_no_gateway_listening(slurm_cluster: None) -> None:
    # A socket whose gateway died (kill -9 leaves the file) and none listening at all.
    dead = Path(HOOK_DIR) / f"dead-{uuid.uuid4().hex[:8]}.sock"
    Path(HOOK_DIR).mkdir(exist_ok=True)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(dead))
    sock.close()
    try:
        started = time.monotonic()
        job_id = _sbatch("alice", "--wrap", "true")
        for _ in range(300):
            if _sacct_state(job_id) == "COMPLETED":
                break
            await asyncio.sleep(0.1)
        assert _sacct_state(job_id) == "COMPLETED"  # not held, not requeued by the prolog
        assert time.monotonic() - started < 30
    finally:
        dead.unlink(missing_ok=True)


async def test_a_flood_of_500_ends_in_a_second_is_coalesced(
    hooked: Gateway, stub: compute_pb2_grpc.ComputeServiceStub
) -> None:
    """500 notices in one second (ids of jobs that exist and that do not) cost the
    controller a bounded number of queries, not 500."""
    job_ids = [_sbatch("alice", "--begin=now+1hour", "--wrap", "true") for _ in range(5)]
    squeue = hooked.metrics.slurm_commands.labels("squeue")
    before, hub = squeue._value.get(), hooked.hubs["local"]
    reads_before = hub.notice_reads
    first = int(job_ids[0])
    started = time.monotonic()
    for i in range(500):
        send(Notice("ended", str(first + i % 50), "", "local", time.time()))
        if i % 50 == 49:
            await asyncio.sleep(0.1)
    await asyncio.sleep(0.5)
    elapsed = time.monotonic() - started
    queries = squeue._value.get() - before
    subprocess.run(["scancel", *job_ids], check=True, timeout=30)
    assert hub.notice_reads - reads_before >= 1
    # At most one read per hook_min_interval (0.05 s), whatever the number of notices.
    assert queries <= elapsed / hooked.config.watch.hook_min_interval + 2, (queries, elapsed)


def test_other_users_cannot_send_to_the_gateway(hooked: Gateway) -> None:
    assert hooked.config.watch.hook_socket is not None
    code = (
        "import socket,sys; s=socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)\n"
        "try:\n s.sendto(b'x', sys.argv[1])\nexcept PermissionError: print('refused')\n"
    )
    done = subprocess.run(
        ["runuser", "-u", "alice", "--", "/usr/bin/python3", "-c", code,
         str(hooked.config.watch.hook_socket)],
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert done.stdout.strip() == "refused", done.stderr
