"""Cluster mode with real processes on real PostgreSQL and Slurm: one poller per system,
failover after kill -9 with revisions that continue, streams resumed on another replica,
one job per request_id across replicas, and tasks that survive a frozen replica."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import time
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import grpc
import psycopg
import pytest
from cluster_helpers import Replica, poller_of
from files_helpers import user_dir
from test_server_process import free_port
from transfer_helpers import make_tree, snapshot, wait_task

from conftest import ROOT, require
from hpcgate.client import Client
from hpcgate.server.slurm.hook import Notice, encode_notice
from hpcgate.v1 import compute_pb2 as S
from hpcgate.v1 import compute_pb2_grpc, storage_pb2_grpc, tasks_pb2_grpc
from hpcgate.v1 import storage_pb2 as st
from hpcgate.v1 import tasks_pb2 as t

pytestmark = pytest.mark.slurm
PARENT = "systems/local"


async def eventually(check: Callable[[], bool], timeout: float = 20, what: str = "") -> float:
    """Seconds until `check()` holds; fails after `timeout`."""
    started = time.monotonic()
    while not check():
        if time.monotonic() - started > timeout:
            pytest.fail(f"not within {timeout} s: {what}")
        await asyncio.sleep(0.05)
    return time.monotonic() - started


@pytest.fixture
async def replicas(
    slurm_cluster: None, pg_dsn: str, tmp_path: Path, venv_bin: Path
) -> AsyncIterator[tuple[Replica, Replica]]:
    """Two replicas on one fresh database; the first is the poller."""
    a = Replica(tmp_path, venv_bin, "replica-a", pg_dsn)
    b = Replica(tmp_path, venv_bin, "replica-b", pg_dsn)
    try:
        await a.start()
        await eventually(lambda: poller_of(pg_dsn) == ["replica-a"], what="a polls")
        await b.start()
        yield a, b
    finally:
        await asyncio.gather(a.stop(), b.stop())


def job_script(name: str, body: str) -> S.SubmitJobRequest:
    return S.SubmitJobRequest(
        parent=PARENT,
        script=f"#!/bin/sh\n{body}\n",
        options=S.JobOptions(job_name=name, stdout_path="/dev/null"),
    )


async def read_until(
    stream: grpc.aio.UnaryStreamCall, done: Callable[[list[S.WatchJobsResponse]], bool]
) -> list[S.WatchJobsResponse]:
    messages: list[S.WatchJobsResponse] = []
    try:
        async with asyncio.timeout(60):
            while not done(messages):
                messages.append(await stream.read())
    except TimeoutError:
        queue = subprocess.run(["squeue", "-o", "%i %u %T %j %r"], capture_output=True,
                               text=True).stdout  # fmt: skip
        seen = [(m.revision, m.event.job.job_id, m.event.state) for m in messages
                if m.WhichOneof("kind") == "event"]  # fmt: skip
        pytest.fail(f"not within 60 s; events seen: {seen}; the queue:\n{queue}")
    return messages


def saw(job_id: str, state: int) -> Callable[[list[S.WatchJobsResponse]], bool]:
    return lambda ms: any(
        m.WhichOneof("kind") == "event" and m.event.job.job_id == job_id and m.event.state == state
        for m in ms
    )


async def test_one_poller_failover_and_a_resumed_stream_misses_nothing(
    replicas: tuple[Replica, Replica], pg_dsn: str
) -> None:
    a, b = replicas
    md = a.token("alice", "read", "execute")
    await asyncio.sleep(2)  # b had time to try: it follows, it does not poll
    assert poller_of(pg_dsn) == ["replica-a"]
    async with (
        grpc.aio.insecure_channel(a.address) as chan_a,
        grpc.aio.insecure_channel(b.address) as chan_b,
    ):
        on_a, on_b = (
            compute_pb2_grpc.ComputeServiceStub(chan_a),
            compute_pb2_grpc.ComputeServiceStub(chan_b),
        )
        watch = on_a.WatchJobs(S.WatchJobsRequest(parent=PARENT), metadata=md)
        await watch.read()  # the snapshot
        # Submitted through b, readable through a at once, with the same revision.
        first = (await on_b.SubmitJob(job_script("failover-1", "sleep 300"), metadata=md)).job
        read = (await on_a.GetJob(S.GetJobRequest(name=first.name), metadata=md)).job
        assert read.job_id == first.job_id and read.revision == first.revision > 0
        seen = await read_until(watch, saw(first.job_id, S.JOB_STATE_RUNNING))
        last = seen[-1].revision
        watch.cancel()

        await a.kill()  # kill -9 of the poller
        takeover = await eventually(lambda: poller_of(pg_dsn) == ["replica-b"], 15, "b polls")
        await on_b.CancelJob(S.CancelJobRequest(name=first.name), metadata=md)
        second = (await on_b.SubmitJob(job_script("failover-2", "true"), metadata=md)).job
        created = S.JOB_STATE_PENDING  # (the node may be busy: its later states may wait)

        resumed = on_b.WatchJobs(
            S.WatchJobsRequest(parent=PARENT, resume_from_revision=last, include_updates=True),
            metadata=md,
        )
        messages = await read_until(
            resumed,
            lambda ms: (
                saw(first.job_id, S.JOB_STATE_CANCELLED)(ms) and saw(second.job_id, created)(ms)
            ),
        )
        resumed.cancel()
    kinds = {m.WhichOneof("kind") for m in messages}
    assert "resync_required" not in kinds and "snapshot" not in kinds
    revisions = [m.revision for m in messages if m.WhichOneof("kind") == "event"]
    assert revisions == sorted(set(revisions)) and revisions[0] > last
    with psycopg.connect(pg_dsn) as db:
        rows = db.execute(
            "SELECT revision, job_id FROM job_events WHERE system = 'local' AND revision > %s"
            " ORDER BY revision",
            (last,),
        ).fetchall()
    journal = [revision for revision, _ in rows]
    assert journal == list(range(last + 1, last + 1 + len(journal)))  # no gap
    # Alice's events up to the last one read (later ones may come after we stopped).
    ours = [
        revision
        for revision, job in rows
        if job in (first.job_id, second.job_id) and revision <= revisions[-1]
    ]
    assert set(ours) <= set(revisions)  # the stream on b missed none of alice's events
    assert b.logged("(elected)") == 1 and a.logged("(elected)") == 1
    print(f"takeover after kill -9: {takeover:.2f} s")
    assert takeover < 10


async def test_a_hook_notice_at_a_replica_that_does_not_poll_reaches_the_poller(
    slurm_cluster: None, pg_dsn: str, tmp_path: Path, venv_bin: Path
) -> None:
    """Slurm's hook may reach only a follower (the replica on the controller's host):
    it passes the notice on, and the poller reads the job long before its next poll."""
    hooks = tmp_path / "hooks"  # not /run/hpcgate-hooks: only this test's notices
    hooks.mkdir()

    def watch(name: str) -> str:
        return f'poll_floor = 60.0\npoll_ceiling = 60.0\nhook_socket = "{hooks}/{name}.sock"\n'

    a = Replica(tmp_path, venv_bin, "replica-a", pg_dsn, watch("a"))
    b = Replica(tmp_path, venv_bin, "replica-b", pg_dsn, watch("b"))
    job_id = ""
    try:
        await a.start()
        await eventually(lambda: poller_of(pg_dsn) == ["replica-a"], what="a polls")
        await b.start()
        md = b.token("alice")
        async with grpc.aio.insecure_channel(b.address) as channel:
            stream = compute_pb2_grpc.ComputeServiceStub(channel).WatchJobs(
                S.WatchJobsRequest(parent=PARENT), metadata=md
            )
            await stream.read()  # the snapshot
            done = subprocess.run(
                ["runuser", "-u", "alice", "--", "sbatch", "--parsable", "-o", "/dev/null",
                 "--begin=now+1hour", "--wrap", "true"],
                capture_output=True, text=True, check=True, timeout=30,
            )  # fmt: skip
            job_id = done.stdout.strip().split(";")[0]
            sent = time.monotonic()
            notice = encode_notice(Notice("started", job_id, "", "local", time.time()))
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
                sock.sendto(notice, str(hooks / "b.sock"))  # the follower's only
            async with asyncio.timeout(10):  # a's next poll: 60 s away
                while True:
                    message = await stream.read()
                    if message.WhichOneof("kind") == "event" and message.event.job.job_id == job_id:
                        break
            stream.cancel()
        assert time.monotonic() - sent < 5
    finally:
        if job_id:
            subprocess.run(["scancel", job_id], check=False, timeout=30)
        await asyncio.gather(a.stop(), b.stop())


async def test_the_same_request_id_on_two_replicas_gives_one_job(
    replicas: tuple[Replica, Replica],
) -> None:
    a, b = replicas
    md = a.token("alice", "read", "execute")
    async with (
        grpc.aio.insecure_channel(a.address) as chan_a,
        grpc.aio.insecure_channel(b.address) as chan_b,
    ):
        stubs = [compute_pb2_grpc.ComputeServiceStub(c) for c in (chan_a, chan_b)]
        for _ in range(3):
            name = f"dup-{uuid.uuid4().hex[:8]}"
            # Held in the queue, so that squeue alone shows every job of this name.
            request = job_script(name, "true")
            request.options.extra_arguments.append("--begin=now+1hour")
            request.request_id = str(uuid.uuid4())
            replies = await asyncio.gather(
                *(stub.SubmitJob(request, metadata=md) for stub in stubs)
            )
            assert replies[0].job.job_id == replies[1].job.job_id
            queued = subprocess.run(
                ["squeue", "-h", "-u", "alice", "-n", name, "-o", "%i"],
                capture_output=True, text=True, check=True,
            ).stdout.split()  # fmt: skip
            subprocess.run(["scancel", "-n", name, "-u", "alice"], check=True)
            assert queued == [replies[0].job.job_id]


def task_row(dsn: str, task_id: str) -> tuple[str, str, int, int]:
    with psycopg.connect(dsn) as db:
        row = db.execute(
            "SELECT state, lease_owner, attempts, revision FROM tasks WHERE id = %s", (task_id,)
        ).fetchone()
    assert row is not None
    return row


async def start_transfer(
    replica: Replica, md: list[tuple[str, str]], directory: Path, files_done: int
) -> str:
    async with grpc.aio.insecure_channel(replica.address) as channel:
        started = await storage_pb2_grpc.StorageServiceStub(channel).StartTransfer(
            st.StartTransferRequest(
                kind=t.TRANSFER_KIND_COPY,
                recursive=True,
                preserve=True,
                source=t.TransferEndpoint(system="local", path=f"{directory}/src"),
                destination=t.TransferEndpoint(system="local", path=f"{directory}/dst"),
            ),
            metadata=md,
        )
        tasks = tasks_pb2_grpc.TasksServiceStub(channel)
        name = started.task.name
        async with asyncio.timeout(60):
            while True:  # until it runs and has checkpointed some files
                task = (await tasks.GetTask(t.GetTaskRequest(name=name), metadata=md)).task
                if task.state == t.TASK_STATE_RUNNING and task.progress.files_done >= files_done:
                    return name
                await asyncio.sleep(0.05)


async def test_a_frozen_replicas_task_is_taken_over_and_its_late_writes_refused(
    replicas: tuple[Replica, Replica], pg_dsn: str
) -> None:
    md = replicas[0].token("alice", "read", "write")
    with user_dir("alice") as directory:
        make_tree(directory / "src", "alice", files=2500, big=256 * 1024 * 1024)
        name = await start_transfer(replicas[0], md, directory, files_done=300)  # checkpointed
        task_id = name.split("/")[1]
        _, owner_name, _, _ = task_row(pg_dsn, task_id)
        owner, other = replicas if owner_name == "replica-a" else replicas[::-1]
        frozen = owner.freeze()
        try:
            async with grpc.aio.insecure_channel(other.address) as channel:
                done = await wait_task(channel, md, name, timeout=180)
            assert done.state == t.TASK_STATE_SUCCEEDED, done.error.message
            state, holder, attempts, revision = task_row(pg_dsn, task_id)
            assert (state, holder) == ("SUCCEEDED", other.name) and attempts >= 2
            assert snapshot(directory / "dst") == snapshot(directory / "src")
        finally:
            owner.thaw(frozen)
        await asyncio.sleep(4)  # the thawed replica tries its writes, learns it lost
        assert task_row(pg_dsn, task_id) == (state, holder, attempts, revision)
        assert owner.logged("lease lost") >= 1


async def test_cancel_on_one_replica_stops_a_task_running_on_the_other(
    replicas: tuple[Replica, Replica], pg_dsn: str
) -> None:
    md = replicas[0].token("alice", "read", "write")
    with user_dir("alice") as directory:
        # Big enough to take several seconds: the cancel must arrive while it runs.
        make_tree(directory / "src", "alice", files=8000, big=512 * 1024 * 1024)
        name = await start_transfer(replicas[0], md, directory, files_done=1)
        _, owner_name, _, _ = task_row(pg_dsn, name.split("/")[1])
        other = replicas[1] if owner_name == "replica-a" else replicas[0]
        async with grpc.aio.insecure_channel(other.address) as channel:
            started = time.monotonic()
            await tasks_pb2_grpc.TasksServiceStub(channel).CancelTask(
                t.CancelTaskRequest(name=name), metadata=md
            )
            done = await wait_task(channel, md, name, timeout=30)
        assert done.state == t.TASK_STATE_CANCELLED
        assert time.monotonic() - started < 5


async def test_the_client_spreads_calls_over_replicas_listed_in_its_target(
    replicas: tuple[Replica, Replica],
) -> None:
    a, b = replicas
    token = a.token("alice")[0][1].removeprefix("Bearer ")
    before = (a.logged('"message": "rpc"'), b.logged('"message": "rpc"'))
    client = Client.connect(f"ipv4:{a.address},{b.address}", token=token)
    try:
        for _ in range(20):
            await client.status.systems()
    finally:
        await client.close()
    after = (a.logged('"message": "rpc"'), b.logged('"message": "rpc"'))
    assert after[0] - before[0] >= 5 and after[1] - before[1] >= 5  # both served


async def test_every_replica_reads_the_same_jobs_with_the_same_revisions(
    replicas: tuple[Replica, Replica],
) -> None:
    a, b = replicas
    md = a.token("alice", "read", "execute")
    async with (
        grpc.aio.insecure_channel(a.address) as chan_a,
        grpc.aio.insecure_channel(b.address) as chan_b,
    ):
        on_a = compute_pb2_grpc.ComputeServiceStub(chan_a)
        on_b = compute_pb2_grpc.ComputeServiceStub(chan_b)
        watch = on_b.WatchJobs(S.WatchJobsRequest(parent=PARENT), metadata=md)
        await watch.read()
        job = (await on_a.SubmitJob(job_script("same-reads", "true"), metadata=md)).job
        await read_until(watch, saw(job.job_id, S.JOB_STATE_COMPLETED))
        watch.cancel()
        await asyncio.sleep(1.5)  # the poller archives the final record; b takes it in
        reads = [
            (await stub.GetJob(S.GetJobRequest(name=job.name), metadata=md)).job
            for stub in (on_a, on_b)
        ]
        lists = [
            {j.job_id: j for j in (await stub.ListJobs(S.ListJobsRequest(parent=PARENT),
                                                        metadata=md)).jobs}
            for stub in (on_a, on_b)
        ]  # fmt: skip
    assert reads[0].state == reads[1].state == S.JOB_STATE_COMPLETED
    assert reads[0].revision == reads[1].revision > job.revision
    assert job.job_id in lists[0] and job.job_id in lists[1]
    assert lists[0][job.job_id].revision == lists[1][job.job_id].revision


async def test_haproxy_balances_grpc_over_the_replicas(
    replicas: tuple[Replica, Replica], tmp_path: Path
) -> None:
    """deploy/haproxy.cfg, as `make run-cluster` runs it, on this test's ports: gRPC and
    the HTTP front (Connect) both reach both replicas."""
    a, b = replicas
    front, stats, http_front = free_port(), free_port(), free_port()
    config = (ROOT / "deploy" / "haproxy.cfg").read_text()
    for old, new in (("127.0.0.1:50060", f"127.0.0.1:{front}"), ("127.0.0.1:50069",
                     f"127.0.0.1:{stats}"), ("127.0.0.1:50061", a.address),
                     ("127.0.0.1:50062", b.address), ("127.0.0.1:8060",
                     f"127.0.0.1:{http_front}"), ("127.0.0.1:8061", a.http_address),
                     ("127.0.0.1:8062", b.http_address)):  # fmt: skip
        assert old in config
        config = config.replace(old, new)
    (tmp_path / "haproxy.cfg").write_text(config)
    env = dict(os.environ, HPCGATE_HAPROXY_PIDFILE=str(tmp_path / "haproxy.pid"))
    script = str(ROOT / "scripts" / "haproxy.sh")
    up = subprocess.run(["bash", script, "up", str(tmp_path / "haproxy.cfg")], env=env,
                        capture_output=True, text=True, timeout=600)  # fmt: skip
    require(up.returncode == 0, f"scripts/haproxy.sh up failed: {up.stderr[-2000:]}")
    try:
        token = a.token("alice")[0][1].removeprefix("Bearer ")
        await asyncio.sleep(5)  # both replicas pass HAProxy's health check (rise 2, 2 s)
        before = (a.logged('"message": "rpc"'), b.logged('"message": "rpc"'))
        for _ in range(10):  # a new connection per call: HAProxy picks a replica per call
            client = Client.connect(f"127.0.0.1:{front}", token=token)
            try:
                await client.status.systems()
            finally:
                await client.close()
        after = (a.logged('"message": "rpc"'), b.logged('"message": "rpc"'))
        assert after[0] - before[0] >= 2 and after[1] - before[1] >= 2
        # The HTTP front: curl's Connect calls (HTTP/1.1 and h2c) reach both replicas.
        for version in ("--http1.1", "--http2-prior-knowledge") * 4:
            done = subprocess.run(
                ["curl", "-sS", "--fail-with-body", version, "-H", "content-type: application/json",
                 "-H", f"authorization: Bearer {token}", "-d", "{}",
                 f"http://127.0.0.1:{http_front}/hpcgate.v1.AuthService/GetTokenInfo"],
                capture_output=True, text=True, timeout=30, check=False,
            )  # fmt: skip
            assert done.returncode == 0, done.stdout + done.stderr
            assert json.loads(done.stdout)["user"] == "alice"
        final = (a.logged('"message": "rpc"'), b.logged('"message": "rpc"'))
        assert final[0] - after[0] >= 2 and final[1] - after[1] >= 2
    finally:
        subprocess.run(["bash", script, "down"], env=env, capture_output=True, timeout=60)
